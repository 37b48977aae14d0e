//! OOM kills, counted for the cgroup of the VICTIM.
//!
//! The task running when the OOM killer fires is the one that was allocating, often not the one
//! killed (the killer picks the biggest task under the memcg whose limit was hit, perhaps in a
//! sibling container), so neither the current task's cgroup nor `mark_victim`'s context names the
//! victim's. The kernel's `__oom_kill_process` sends SIGKILL to the victim and then marks it, from
//! the same task: `signal_generate` hands us the target `task_struct`, whose cgroup, pid and name
//! are read there and parked under the sending thread's id; `mark_victim` (classic tracepoint,
//! victim pid only) confirms it when the pids match, and only then counts.
//!
//! A victim marked without that SIGKILL is an already-exiting task being given memory reserves;
//! the kernel's own `oom_kill` counters leave it out, and so does this.
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    programs::TracePointContext,
};
use nodetel_common::{
    OomKill, STAT_OOM_EVENTS_LOST, STAT_OOM_KILLS, STAT_OOM_MARKED_ONLY, STAT_OOM_UNCOUNTED,
};

use crate::{
    maps::{OOM_EVENTS, OOM_KILLS, SIGKILLS, per_cpu_add, stat_add},
    task,
};

/// A SIGKILL is being generated for `target`: remember it under the sending thread.
#[inline(always)]
pub fn on_sigkill(target: *const u8) {
    let off = task::offsets();
    if off.valid == 0 || off.tp_mark_victim_pid == 0 {
        return;
    }
    let Ok(victim_pid) = task::pid(target, &off) else {
        return;
    };
    let sender = bpf_get_current_pid_tgid() as u32;
    // SAFETY: helpers without preconditions.
    let (time_ns, trigger_cgroup) = unsafe { (bpf_ktime_get_ns(), bpf_get_current_cgroup_id()) };
    let kill = OomKill {
        time_ns,
        victim_cgroup: task::cgroup_id(target, &off).unwrap_or(0),
        trigger_cgroup,
        victim_pid,
        victim_tgid: task::tgid(target, &off).unwrap_or(0),
        trigger_pid: sender,
        _pad: 0,
        comm: task::comm(target, &off),
    };
    let _ = SIGKILLS.insert(&sender, &kill, 0);
}

/// `oom:mark_victim`: counts the kill if this thread just sent the victim its SIGKILL.
#[inline(always)]
pub fn on_mark_victim(ctx: &TracePointContext) {
    let off = task::offsets();
    if off.valid == 0 || off.tp_mark_victim_pid == 0 {
        return;
    }
    // SAFETY: the offset comes from this tracepoint's own format file; read_at is a checked
    // kernel read.
    let Ok(pid) = (unsafe { ctx.read_at::<i32>(off.tp_mark_victim_pid as usize) }) else {
        return;
    };
    let sender = bpf_get_current_pid_tgid() as u32;
    let Some(parked) = SIGKILLS.get_ptr(&sender) else {
        stat_add(STAT_OOM_MARKED_ONLY, 1);
        return;
    };
    // SAFETY: a value pointer from a map lookup, copied out before the entry is deleted.
    let kill = unsafe { *parked };
    if kill.victim_pid != pid as u32 {
        stat_add(STAT_OOM_MARKED_ONLY, 1);
        return;
    }
    let _ = SIGKILLS.remove(&sender);
    stat_add(STAT_OOM_KILLS, 1);
    if kill.victim_cgroup == 0 || !per_cpu_add(&OOM_KILLS, kill.victim_cgroup, 1) {
        stat_add(STAT_OOM_UNCOUNTED, 1);
    }
    if OOM_EVENTS.output::<OomKill>(&kill, 0).is_err() {
        stat_add(STAT_OOM_EVENTS_LOST, 1);
    }
}
