//! nodetel's kernel programs. Only the attributed entry points live here; the logic is in modules.
#![no_std]
#![no_main]

mod cpu;
mod maps;
mod task;

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

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

/// `tp_btf/cgroup_attach_task(struct cgroup *dst, const char *path, struct task_struct *task,
/// bool threadgroup)`. A running task that moves itself into another cgroup (a shell writing `$$`
/// to cgroup.procs) would otherwise have its whole slice charged to the new cgroup at switch-out.
#[btf_tracepoint(function = "cgroup_attach_task")]
pub fn cgroup_attach_task(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(2);
    cpu::on_migrate(task);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; this only satisfies no_std.
    loop {}
}
