//! The kind's kernel programs (agent-ebpf/src/tcp.rs) and the struct offsets they follow from a
//! `struct sock` and a `struct sk_buff`, read from the running kernel's BTF.
use nodetel_common::{
    GLOBAL_TCP_OFFSETS, PROG_INET_SOCK_SET_STATE, PROG_TCP_ESTABLISHED_SEED,
    PROG_TCP_RECEIVE_RESET, PROG_TCP_RETRANSMIT_SKB, PROG_TCP_SEND_RESET, TcpOffsets,
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

/// The kind's programs; the seed of the established count last, once the state changes are
/// counted, and only where the agent sees every task (see `sees_every_task`).
pub fn programs() -> KindPrograms {
    let mut programs: Vec<_> = PROGRAMS
        .iter()
        // Each program is named after its tracepoint.
        .map(|p| (*p, Attach::Btf(p)))
        .collect();
    if sees_every_task() {
        programs.push((PROG_TCP_ESTABLISHED_SEED, Attach::IterOnce("task_file")));
    } else {
        tracing::warn!(
            "the agent is not in the host's pid namespace: the connections established before \
             it started cannot all be found, so nodetel_container_tcp_established is not served"
        );
    }
    KindPrograms {
        programs,
        global: Some((GLOBAL_TCP_OFFSETS, |btf| {
            Ok(offsets(btf)?.to_ne_bytes().to_vec())
        })),
    }
}

/// The initial pid namespace's inode number (`PROC_PID_INIT_INO`, include/linux/proc_ns.h).
const PROC_PID_INIT_INO: &str = "pid:[4026531836]";

/// A task-file iterator walks the tasks of the pid namespace of whoever walks it: the whole
/// node's only from the host's (a DaemonSet with hostPID, a Docker container with --pid=host;
/// not a Swarm task).
fn sees_every_task() -> bool {
    std::fs::read_link("/proc/self/ns/pid").is_ok_and(|ns| ns.as_os_str() == PROC_PID_INIT_INO)
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
        socket_sk: btf.member_offset("socket", "sk")?,
        valid: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF has every field (this host and the VM's 6.1 both do).
    #[test]
    fn this_kernels_btf_has_the_fields() {
        let Some(btf) = Btf::running_kernel() else {
            return;
        };
        let o = offsets(&btf).expect("offsets");
        assert_eq!(o.valid, 1);
        assert!(o.sk_cgroup > o.sk_state && o.skb_gso_segs > 0 && o.tp_srtt > o.sk_cgroup);
        assert!(
            o.socket_sk > 0,
            "struct socket has its sk past the state and type"
        );
    }
}
