//! Per-cgroup TCP health: retransmitted segments, resets sent and received, connects by result
//! and accepted connections, each charged to the cgroup of the socket (`sk->sk_cgrp_data`, the
//! cgroup v2 of the task that created it; an accepted connection inherits its listener's). Read
//! from the socket, not the current task: retransmits and received resets happen in softirq
//! context, on whatever task the CPU was running.
//!
//! A connect that fails leaves SYN_SENT for CLOSE after the kernel set the socket's error
//! (`tcp_reset` sets ECONNREFUSED, `tcp_write_err` ETIMEDOUT when the SYN retries ran out), so the
//! state change says why.
//!
//! Established connections: a connection entering ESTABLISHED is added to its cgroup's opened
//! count and remembered (socket address -> cgroup) in `ESTABLISHED_SOCKETS`; leaving ESTABLISHED
//! adds to that cgroup's closed count only if it was remembered, so a connection established
//! before the agent never makes the difference negative. Those connections are found once at
//! start-up by the seed, an `iter/task_file` walk of every open file (`tcp_established_seed`).
//! The walk and the state changes race for a connection closing while it walks: a leaving
//! connection the walk has not counted yet leaves a tombstone while the walk runs (key 0 set),
//! and the walk counts only sockets it could insert, so each connection is counted at most once
//! and its close only if its opening was.
//!
//! Round-trip time: the socket's smoothed RTT (`srtt_us`, what `ss -i` shows), sampled when a
//! connection is established (then it is the handshake's round trip) and when it leaves
//! ESTABLISHED (its last smoothed value), into a log2 histogram per cgroup: two samples per
//! connection, at no cost while it carries data (`tcp_probe` fires for every ACK).
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::generated::{bpf_skc_to_tcp_sock, bpf_sock_from_file},
    macros::{btf_tracepoint, map},
    maps::{HashMap, PerCpuHashMap},
    programs::BtfTracePointContext,
};
use nodetel_common::{
    HistKey, STAT_TCP_ESTABLISHED_UNTRACKED, STAT_TCP_MAP_FULL, STAT_TCP_UNREADABLE, TCP_ACCEPTS,
    TCP_CONNECT_OK, TCP_CONNECT_OTHER, TCP_CONNECT_REFUSED, TCP_CONNECT_TIMEOUT,
    TCP_COUNTERS_ENTRIES, TCP_ESTABLISHED_CLOSED, TCP_ESTABLISHED_ENTRIES, TCP_ESTABLISHED_OPENED,
    TCP_RESETS_RECEIVED, TCP_RESETS_SENT, TCP_RETRANS_SEGS, TCP_RTT_BUCKETS, TCP_RTT_ENTRIES,
    TCP_SLOTS, TCP_TOMBSTONE, TcpCounters, TcpOffsets, TcpRttBucket,
};

use crate::{
    maps::{atomic_add, stat_add, upsert},
    task::{self, read_at},
};

#[map(name = "TCP_COUNTERS")]
pub static TCP_COUNTERS: PerCpuHashMap<u64, TcpCounters> =
    PerCpuHashMap::with_max_entries(TCP_COUNTERS_ENTRIES, 0);

#[map(name = "TCP_RTT")]
pub static TCP_RTT: PerCpuHashMap<HistKey, TcpRttBucket> =
    PerCpuHashMap::with_max_entries(TCP_RTT_ENTRIES, 0);

#[map(name = "TCP_ESTABLISHED")]
pub static ESTABLISHED_SOCKETS: HashMap<u64, u64> =
    HashMap::with_max_entries(TCP_ESTABLISHED_ENTRIES, BPF_F_NO_PREALLOC);

/// Filled by the agent before load; `valid == 0` means "not filled" (the programs do nothing).
#[unsafe(no_mangle)]
static TCP_OFFSETS: TcpOffsets = TcpOffsets {
    sk_cgroup: 0,
    sk_state: 0,
    sk_protocol: 0,
    sk_err: 0,
    skb_gso_segs: 0,
    tp_srtt: 0,
    socket_sk: 0,
    valid: 0,
};

/// `include/net/tcp_states.h`, `include/uapi/linux/in.h`, `errno.h`.
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_SYN_RECV: i32 = 3;
const TCP_CLOSE: i32 = 7;
const TCP_TIME_WAIT: u8 = 6;
const TCP_NEW_SYN_RECV: u8 = 12;
const TCP_ESTABLISHED_U8: u8 = 1;
const EEXIST: i32 = -17;
/// `BPF_NOEXIST`, `BPF_ANY`.
const NOEXIST: u64 = 1;
const ANY: u64 = 0;
const IPPROTO_TCP: u16 = 6;
const ETIMEDOUT: i32 = 110;
const ECONNREFUSED: i32 = 111;

#[inline(always)]
fn offsets() -> TcpOffsets {
    // SAFETY: a volatile read of a plain static the loader rewrites before the program runs.
    unsafe { core::ptr::read_volatile(&TCP_OFFSETS) }
}

/// `tp_btf/tcp_retransmit_skb(const struct sock *sk, const struct sk_buff *skb, ...)`: the
/// segments of `skb` are sent again (`tcp_skb_pcount`, what `TcpRetransSegs` adds).
#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: BtfTracePointContext) -> i32 {
    let off = offsets();
    if off.valid == 0 {
        return 0;
    }
    let skb: *const u8 = ctx.arg(1);
    // SAFETY: see task::read_at.
    let segs = unsafe { read_at::<u16>(skb, off.skb_gso_segs) }.unwrap_or(1);
    charge(ctx.arg(0), &off, TCP_RETRANS_SEGS, u64::from(segs.max(1)));
    0
}

/// `tp_btf/tcp_send_reset(const struct sock *sk, const struct sk_buff *skb, ...)`: a reset is
/// sent. `sk` is NULL for a segment no socket wanted (a closed port: no cgroup to charge), and
/// may be a time-wait or request socket, which has no cgroup: only full sockets count.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: BtfTracePointContext) -> i32 {
    let off = offsets();
    if off.valid == 0 {
        return 0;
    }
    let sk: *const u8 = ctx.arg(0);
    // SAFETY: see task::read_at; a null socket reads as an error.
    match unsafe { read_at::<u8>(sk, off.sk_state) } {
        Ok(TCP_TIME_WAIT | TCP_NEW_SYN_RECV) | Err(_) => {}
        Ok(_) => charge(sk, &off, TCP_RESETS_SENT, 1),
    }
    0
}

/// `tp_btf/tcp_receive_reset(struct sock *sk)`: a full socket received a valid reset.
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: BtfTracePointContext) -> i32 {
    let off = offsets();
    if off.valid != 0 {
        charge(ctx.arg(0), &off, TCP_RESETS_RECEIVED, 1);
    }
    0
}

/// `tp_btf/inet_sock_set_state(const struct sock *sk, int oldstate, int newstate)`: SYN_SENT to
/// ESTABLISHED is a connect that worked, SYN_SENT to CLOSE one that failed (why: `sk_err`),
/// SYN_RECV to ESTABLISHED an accepted connection; entering or leaving ESTABLISHED samples the
/// round-trip time.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    let off = offsets();
    if off.valid == 0 {
        return 0;
    }
    let sk: *const u8 = ctx.arg(0);
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    let slot = match (old, new) {
        (TCP_SYN_SENT, TCP_ESTABLISHED) => TCP_CONNECT_OK,
        (TCP_SYN_RECV, TCP_ESTABLISHED) => TCP_ACCEPTS,
        (TCP_SYN_SENT, TCP_CLOSE) => {
            // SAFETY: see task::read_at.
            match unsafe { read_at::<i32>(sk, off.sk_err) } {
                Ok(ECONNREFUSED) => TCP_CONNECT_REFUSED,
                Ok(ETIMEDOUT) => TCP_CONNECT_TIMEOUT,
                _ => TCP_CONNECT_OTHER,
            }
        }
        (TCP_ESTABLISHED, _) => NO_SLOT,
        _ => return 0,
    };
    // The tracepoint serves every inet protocol that keeps TCP's states (SCTP, DCCP, MPTCP's
    // own): TCP's alone count.
    // SAFETY: see task::read_at.
    if unsafe { read_at::<u16>(sk, off.sk_protocol) } != Ok(IPPROTO_TCP) {
        return 0;
    }
    // Leaving needs no cgroup (the remembered entry names the one the opening was counted for):
    // handled before the read, so a socket whose cgroup cannot be read is not left counted.
    if old == TCP_ESTABLISHED && new != TCP_ESTABLISHED {
        left_established(sk as u64);
    }
    let Ok(id) = cgroup_of(sk, &off) else {
        stat_add(STAT_TCP_UNREADABLE, 1);
        return 0;
    };
    if slot != NO_SLOT {
        add(id, slot, 1);
    }
    if new == TCP_ESTABLISHED {
        entered_established(sk as u64, id);
    }
    if slot == TCP_CONNECT_OK || slot == TCP_ACCEPTS || slot == NO_SLOT {
        sample_rtt(sk, &off, id);
    }
    0
}

/// A connection entered ESTABLISHED: counted for its cgroup, and remembered so its leaving is
/// counted for the same one. A tombstone at its address (a socket that closed there while the
/// seed walked) is overwritten.
#[inline(always)]
fn entered_established(key: u64, id: u64) {
    let stored = match ESTABLISHED_SOCKETS.insert(&key, &id, NOEXIST) {
        Ok(()) => true,
        // SAFETY: a lookup in a hash map; the value is copied at once.
        Err(EEXIST) => match unsafe { ESTABLISHED_SOCKETS.get(&key) }.copied() {
            Some(TCP_TOMBSTONE) => ESTABLISHED_SOCKETS.insert(&key, &id, ANY).is_ok(),
            _ => return,
        },
        Err(_) => false,
    };
    if stored {
        add(id, TCP_ESTABLISHED_OPENED, 1);
    } else {
        stat_add(STAT_TCP_ESTABLISHED_UNTRACKED, 1);
    }
}

/// A connection left ESTABLISHED: counted as closed for the cgroup its opening was counted for,
/// if it was. While the seed walks (key 0 present) an uncounted one leaves a tombstone, so the
/// walk, which may have read its state a moment before, does not count it.
#[inline(always)]
fn left_established(key: u64) {
    // SAFETY: a lookup in a hash map; the value is copied at once.
    match unsafe { ESTABLISHED_SOCKETS.get(&key) }.copied() {
        Some(id) => {
            if ESTABLISHED_SOCKETS.remove(&key).is_ok() && id != TCP_TOMBSTONE {
                add(id, TCP_ESTABLISHED_CLOSED, 1);
            }
        }
        None => {
            // SAFETY: as above.
            if unsafe { ESTABLISHED_SOCKETS.get(&0) }.is_some() {
                let _ = ESTABLISHED_SOCKETS.insert(&key, &TCP_TOMBSTONE, NOEXIST);
            }
        }
    }
}

/// `iter/task_file`, run once by the agent after the state-change program is attached: each open
/// file of each task; a TCP socket in ESTABLISHED not yet remembered is counted for its cgroup.
/// The context is `struct bpf_iter__task_file { meta; task; u32 fd (8-aligned); file; }`.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub fn tcp_established_seed(ctx: *mut core::ffi::c_void) -> i32 {
    let off = offsets();
    if off.valid == 0 {
        return 0;
    }
    // SAFETY: a lookup in a hash map; only its presence is used.
    if unsafe { ESTABLISHED_SOCKETS.get(&0) }.is_none() {
        let _ = ESTABLISHED_SOCKETS.insert(&0, &0, ANY);
    }
    // SAFETY: the verifier checks this load against the iterator's context type: the file
    // pointer (null at the walk's end).
    let file = unsafe { core::ptr::read_volatile((ctx as *const *mut u8).add(3)) };
    if file.is_null() {
        return 0;
    }
    // SAFETY: the helper takes a file and returns its socket, or null when it is no socket.
    let sock = unsafe { bpf_sock_from_file(file.cast()) } as *const u8;
    // SAFETY: see task::read_at; a null pointer reads as an error.
    let Ok(sk) = (unsafe { read_at::<*const u8>(sock, off.socket_sk) }) else {
        return 0;
    };
    // SAFETY: as above.
    let tcp = unsafe { read_at::<u16>(sk, off.sk_protocol) } == Ok(IPPROTO_TCP);
    // SAFETY: as above.
    if !tcp || unsafe { read_at::<u8>(sk, off.sk_state) } != Ok(TCP_ESTABLISHED_U8) {
        return 0;
    }
    let Ok(id) = cgroup_of(sk, &off) else {
        stat_add(STAT_TCP_UNREADABLE, 1);
        return 0;
    };
    match ESTABLISHED_SOCKETS.insert(&(sk as u64), &id, NOEXIST) {
        Ok(()) => add(id, TCP_ESTABLISHED_OPENED, 1),
        Err(EEXIST) => {}
        Err(_) => stat_add(STAT_TCP_ESTABLISHED_UNTRACKED, 1),
    }
    0
}

/// No counter: a change that only samples the round-trip time.
const NO_SLOT: u32 = u32::MAX;

/// Adds the socket's smoothed RTT to its cgroup's histogram; nothing while it has none (no
/// round trip measured yet).
#[inline(always)]
fn sample_rtt(sk: *const u8, off: &TcpOffsets, id: u64) {
    // SAFETY: the helper takes any socket pointer the program was given and returns its
    // `tcp_sock` or null (a request or time-wait socket).
    let tp = unsafe { bpf_skc_to_tcp_sock(sk as *mut _) } as *const u8;
    // SAFETY: see task::read_at; a null `tp` reads as an error.
    let Ok(srtt8) = (unsafe { read_at::<u32>(tp, off.tp_srtt) }) else {
        return;
    };
    let rtt_us = u64::from(srtt8 >> 3);
    if rtt_us == 0 {
        return;
    }
    let bits = 64 - rtt_us.leading_zeros();
    let key = HistKey {
        cgroup_id: id,
        bucket: bits.min(TCP_RTT_BUCKETS - 1),
        _pad: 0,
    };
    let init = TcpRttBucket { count: 1, rtt_us };
    let counted = upsert(&TCP_RTT, &key, &init, |v| {
        // SAFETY: `v` points into this CPU's map value (see atomic_add).
        unsafe {
            atomic_add(&raw mut (*v).count, 1);
            atomic_add(&raw mut (*v).rtt_us, rtt_us);
        }
    });
    if !counted {
        stat_add(STAT_TCP_MAP_FULL, 1);
    }
}

/// The socket's cgroup v2 id.
#[inline(always)]
fn cgroup_of(sk: *const u8, off: &TcpOffsets) -> Result<u64, i32> {
    let kernel = task::offsets();
    // SAFETY: see task::read_at; every pointer is checked before it is followed.
    unsafe {
        let cgroup: *const u8 = read_at(sk, off.sk_cgroup)?;
        let kn: *const u8 = read_at(cgroup, kernel.cgroup_kn)?;
        read_at(kn, kernel.kernfs_node_id)
    }
}

/// Adds `n` to the socket's cgroup's `slot`. Inlined: the verifier lets a program add an offset
/// to a socket pointer only when it knows the offset (read from the loader's constants), which it
/// does not in a called function.
#[inline(always)]
fn charge(sk: *const u8, off: &TcpOffsets, slot: u32, n: u64) {
    match cgroup_of(sk, off) {
        Ok(id) => add(id, slot, n),
        Err(_) => stat_add(STAT_TCP_UNREADABLE, 1),
    }
}

/// Adds `n` to cgroup `id`'s `slot`.
#[inline(always)]
fn add(id: u64, slot: u32, n: u64) {
    let i = slot as usize;
    if i >= TCP_SLOTS {
        return;
    }
    let mut init = TcpCounters::default();
    init.counts[i] = n;
    let counted = upsert(&TCP_COUNTERS, &id, &init, |v| {
        // SAFETY: `v` points into this CPU's map value (see atomic_add); `i` is in bounds.
        unsafe { atomic_add((&raw mut (*v).counts).cast::<u64>().add(i), n) }
    });
    if !counted {
        stat_add(STAT_TCP_MAP_FULL, 1);
    }
}
