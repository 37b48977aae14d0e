//! The kind's kernel programs (agent-ebpf/src/tcp.rs) and the struct offsets they follow from a
//! `struct sock` and a `struct sk_buff`, read from the running kernel's BTF.
use nodetel_common::{
    GLOBAL_TCP_OFFSETS, PROG_INET_SOCK_SET_STATE, PROG_TCP_RECEIVE_RESET, PROG_TCP_RETRANSMIT_SKB,
    PROG_TCP_SEND_RESET, TcpOffsets,
};

use crate::{
    btf::{Btf, BtfError},
    ebpf::{Attach, KindPrograms},
};

pub const PROGRAMS: [&str; 4] = [
    PROG_TCP_RETRANSMIT_SKB,
    PROG_TCP_SEND_RESET,
    PROG_TCP_RECEIVE_RESET,
    PROG_INET_SOCK_SET_STATE,
];

pub fn programs() -> KindPrograms {
    KindPrograms {
        programs: PROGRAMS
            .iter()
            // Each program is named after its tracepoint.
            .map(|p| (*p, Attach::Btf(p)))
            .collect(),
        global: Some((GLOBAL_TCP_OFFSETS, |btf| {
            Ok(offsets(btf)?.to_ne_bytes().to_vec())
        })),
    }
}

/// An error on a kernel whose sockets carry no cgroup pointer (`CONFIG_SOCK_CGROUP_DATA` off,
/// or before 5.15, when `sock_cgroup_data` packed it into a word with the classid).
fn offsets(btf: &Btf) -> Result<TcpOffsets, BtfError> {
    Ok(TcpOffsets {
        sk_cgroup: btf.member_offset("sock", "sk_cgrp_data")?
            + btf.member_offset("sock_cgroup_data", "cgroup")?,
        sk_state: btf.member_offset("sock", "__sk_common")?
            + btf.member_offset("sock_common", "skc_state")?,
        sk_protocol: btf.member_offset("sock", "sk_protocol")?,
        sk_err: btf.member_offset("sock", "sk_err")?,
        skb_gso_segs: btf.member_offset("sk_buff", "cb")?
            + btf.member_offset("tcp_skb_cb", "tcp_gso_segs")?,
        tp_srtt: btf.member_offset("tcp_sock", "srtt_us")?,
        valid: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF has every field (this host and the VM's 6.1 both do).
    #[test]
    fn this_kernels_btf_has_the_fields() {
        let Ok(btf) = Btf::from_file(std::path::Path::new("/sys/kernel/btf/vmlinux")) else {
            eprintln!("no /sys/kernel/btf/vmlinux: skipped");
            return;
        };
        let o = offsets(&btf).expect("offsets");
        assert_eq!(o.valid, 1);
        assert!(o.sk_cgroup > o.sk_state && o.skb_gso_segs > 0 && o.tp_srtt > o.sk_cgroup);
    }
}
