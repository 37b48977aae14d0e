//! nodetel's kernel programs. The first kinds' entry points live here with their logic in modules;
//! a kind added since keeps its maps, entry points and logic in its own module (`blkio`).
#![no_std]
#![no_main]
// 64-bit atomics: the BPF target's core has no AtomicU64, but LLVM lowers the intrinsic to the
// BPF atomic add instruction.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod blkio;
mod cpu;
mod maps;
mod net;
mod oom;
mod sched;
mod task;
mod tcp;

use aya_ebpf::{
    macros::{btf_tracepoint, cgroup_skb, tracepoint},
    programs::{BtfTracePointContext, SkBuffContext, TracePointContext},
};
use nodetel_common::{NET_EGRESS, NET_INGRESS, STAT_CGROUP_CHANGES};

/// `tp_btf/sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next, ...)`.
/// Commits the on-CPU time of the task switched out to its cgroup and records which cgroup runs
/// next, so that userspace can add the time of a task that has not been switched out yet.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    let prev: *const u8 = ctx.arg(1);
    let next: *const u8 = ctx.arg(2);
    cpu::on_switch(prev, next);
    0
}

/// Does nothing: attached to `sched_switch` instead of the program above only to measure what
/// the tracepoint's dispatch costs by itself (`--bench-sched-switch-floor`).
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch_floor(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// `tp_btf/cgroup_attach_task(struct cgroup *dst, const char *path, struct task_struct *task,
/// bool threadgroup)`. A running task that moves itself into another cgroup (a shell writing `$$`
/// to cgroup.procs) would otherwise have its whole slice charged to the new cgroup at switch-out.
#[btf_tracepoint(function = "cgroup_attach_task")]
pub fn cgroup_attach_task(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(2);
    cpu::on_migrate(task);
    0
}

/// `tp_btf/cgroup_mkdir(struct cgroup *cgrp, const char *path)` and its rmdir and rename
/// siblings: the cgroup trees changed, so the next pass walks them again.
#[btf_tracepoint(function = "cgroup_mkdir")]
pub fn cgroup_mkdir(_ctx: BtfTracePointContext) -> i32 {
    maps::stat_add(STAT_CGROUP_CHANGES, 1);
    0
}

#[btf_tracepoint(function = "cgroup_rmdir")]
pub fn cgroup_rmdir(_ctx: BtfTracePointContext) -> i32 {
    maps::stat_add(STAT_CGROUP_CHANGES, 1);
    0
}

#[btf_tracepoint(function = "cgroup_rename")]
pub fn cgroup_rename(_ctx: BtfTracePointContext) -> i32 {
    maps::stat_add(STAT_CGROUP_CHANGES, 1);
    0
}

/// `tp_btf/signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task, int
/// group, int result)`: every signal generated; only SIGKILL is kept, for the OOM accounting.
#[btf_tracepoint(function = "signal_generate")]
pub fn signal_generate(ctx: BtfTracePointContext) -> i32 {
    let sig: i32 = ctx.arg(0);
    if sig == 9 {
        let task: *const u8 = ctx.arg(2);
        oom::on_sigkill(task);
    }
    0
}

/// `oom:mark_victim`: the OOM killer marked its victim (the record holds the victim's pid).
#[tracepoint(category = "oom", name = "mark_victim")]
pub fn mark_victim(ctx: TracePointContext) -> i32 {
    oom::on_mark_victim(&ctx);
    0
}

/// Packets delivered to a local socket. Always allows: nodetel observes, it never filters.
#[cgroup_skb(ingress)]
pub fn net_ingress(ctx: SkBuffContext) -> i32 {
    net::count(&ctx, NET_INGRESS);
    1
}

/// Packets a local socket sends. Always allows.
#[cgroup_skb(egress)]
pub fn net_egress(ctx: SkBuffContext) -> i32 {
    net::count(&ctx, NET_EGRESS);
    1
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; this only satisfies no_std.
    loop {}
}
