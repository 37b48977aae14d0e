//! Per-cgroup traffic from `cgroup_skb` programs on the cgroup v2 root.
//!
//! The hooks run for packets a local socket sends (egress) or that are delivered to one (ingress),
//! and `bpf_skb_cgroup_id` names the cgroup of the task that created the socket: the traffic is
//! the container's own, whichever network namespace it shares. Forwarded packets (a bridge or
//! veth carrying a container's packets through the host) have no local socket and are not seen
//! again, so nothing is counted twice.
use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, bpf_skb_cgroup_id},
    programs::SkBuffContext,
};
use nodetel_common::{
    LOOPBACK_IFINDEX, NetCounters, NetKey, STAT_NET_MAP_FULL, STAT_NET_MAP_FULL_BYTES,
};

use crate::{
    maps::{NET_TRAFFIC, atomic_add, stat_add, upsert},
    task,
};

/// The inode number of the packet's socket's network namespace: `sk->__sk_common.skc_net.net
/// ->ns.inum`, offsets from BTF. 0 when unreadable: the device is then shown by index.
#[inline(always)]
fn netns(ctx: &SkBuffContext) -> u32 {
    let Some((sock_net, net_inum)) = task::net_offsets() else {
        return 0;
    };
    // SAFETY: reading the context's socket pointer; the verifier checks the access.
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk } as *const u8;
    if sk.is_null() {
        return 0;
    }
    // SAFETY: bpf_probe_read_kernel tolerates any address and returns an error instead of
    // faulting; each pointer read is checked before it is followed.
    unsafe {
        // The verifier forbids arithmetic on a socket pointer; read back through the stack, the
        // same address is a plain number that may be offset (this is a read, never a write).
        let slot = sk as u64;
        let Ok(base) = bpf_probe_read_kernel(core::hint::black_box(&slot) as *const u64) else {
            return 0;
        };
        let field = (base as *const u8).wrapping_add(sock_net as usize);
        let Ok(net) = bpf_probe_read_kernel(field as *const *const u8) else {
            return 0;
        };
        if net.is_null() {
            return 0;
        }
        bpf_probe_read_kernel(net.wrapping_add(net_inum as usize) as *const u32).unwrap_or(0)
    }
}

#[inline(always)]
pub fn count(ctx: &SkBuffContext, direction: u32) {
    let skb = ctx.skb.skb;
    // SAFETY: `skb` is the context pointer the kernel handed this program; the verifier rewrites
    // these field reads into reads of the real sk_buff.
    let (cgroup_id, ifindex, len) = unsafe { (bpf_skb_cgroup_id(skb), (*skb).ifindex, (*skb).len) };
    if ifindex == LOOPBACK_IFINDEX && !task::count_loopback() {
        return;
    }
    let key = NetKey {
        cgroup_id,
        netns: netns(ctx),
        ifindex,
        direction,
        _pad: 0,
    };
    let add = NetCounters {
        bytes: u64::from(len),
        // One per skb, as the devices count (a veth passes a GSO skb whole, and counts it
        // once): a pod's sum must be its devices' counters, which are cAdvisor's. Counted per
        // segment, a download's packets were 17 times the device's.
        packets: 1,
    };
    if !upsert(&NET_TRAFFIC, &key, &add, |v| add_to(v, &add)) {
        stat_add(STAT_NET_MAP_FULL, 1);
        stat_add(STAT_NET_MAP_FULL_BYTES, add.bytes);
    }
}

/// Atomic: a softirq on this CPU may count into the same value meanwhile (see `atomic_add`).
#[inline(always)]
fn add_to(v: *mut NetCounters, add: &NetCounters) {
    // SAFETY: `v` is a live map value; the field pointers stay inside it.
    unsafe {
        atomic_add(core::ptr::addr_of_mut!((*v).bytes), add.bytes);
        atomic_add(core::ptr::addr_of_mut!((*v).packets), add.packets);
    }
}
