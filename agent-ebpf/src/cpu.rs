//! Per-cgroup CPU time from context switches.
//!
//! At each switch the task being switched out is the current task, so the time since it was
//! switched in is committed to the current task's cgroup. The CPU's run state then records the
//! incoming task's cgroup and the switch time, so userspace can add `now - since` for a task
//! that has run for seconds without a switch.
//!
//! A committed slice is the scheduler's own runtime delta, `se.sum_exec_runtime` at switch-out
//! minus its value at the traced switch-in: the same figure `cpu.stat` sums, so steal time on a
//! VM is left out as the kernel leaves it out. (`sum_exec_runtime - prev_sum_exec_runtime` would
//! not do: the scheduler resets the latter whenever it re-picks the same task, which fires no
//! `sched_switch`, and that lost 10-20 % under contention.) The in-flight part that userspace adds
//! is wall-clock, the only clock it has.
//!
//! Some kernels switch a task in without firing `sched_switch` (seen on a paravirtualised 6.18
//! guest, a few times per second); the switch-out then finds another task in the run state and
//! charges the leaving task's slice since its last pick instead (`STAT_STATE_MISMATCH`).
use aya_ebpf::helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_ns};
use nodetel_common::{
    FEATURE_SCHED, KernelOffsets, RunState, STAT_CGROUP_READ_FAILED, STAT_CPU_MAP_FULL,
    STAT_CPU_MAP_FULL_NS, STAT_STATE_MISMATCH, STAT_STATE_MISMATCH_NS, STAT_SWITCHES,
};

use crate::{
    maps::{CPU_NS, RUNNING, per_cpu_add, stat_add},
    sched, task,
};

#[inline(always)]
pub fn on_switch(prev: *const u8, next: *const u8) {
    let off = task::offsets();
    if off.valid == 0 {
        return;
    }
    let Some(state) = RUNNING.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: the per-CPU slot belongs to this CPU; preemption is off while the program runs.
    let st = unsafe { *state };
    stat_add(STAT_SWITCHES, 1);

    // The idle task (pid 0) is not accounted; a CPU with no switch seen yet has since_ns == 0,
    // and a state recorded for another task (none seen since attach) is not trusted.
    let prev_pid = bpf_get_current_pid_tgid() as u32;
    if st.since_ns != 0 && prev_pid != 0 {
        let wall = now.saturating_sub(st.since_ns);
        let ran = if st.pid == prev_pid {
            // The scheduler's own runtime since the switch-in: the figure cpu.stat sums, so it
            // leaves out what the kernel leaves out (steal and, where configured, IRQ time),
            // which wall-clock time does not.
            match task::exec_ns(prev, &off) {
                Ok(e) if st.exec_valid == 1 && e >= st.exec_at_in => (e - st.exec_at_in).min(wall),
                _ => wall,
            }
        } else {
            // Some kernels (seen: a paravirtualised 6.18 guest) switch a task in without firing
            // sched_switch, so the state names another task. The task leaving ran no longer than
            // its own slice by the scheduler's counter, nor than the time since the last traced
            // switch; the recorded task's share of that time (up to the hidden switch) is lost.
            stat_add(STAT_STATE_MISMATCH, 1);
            let slice = task::slice_ns(prev, &off).unwrap_or(0).min(wall);
            stat_add(STAT_STATE_MISMATCH_NS, slice);
            slice
        };
        // SAFETY: bpf_get_current_cgroup_id has no preconditions.
        let cgroup = unsafe { bpf_get_current_cgroup_id() };
        if ran > 0 {
            commit(cgroup, ran);
        }
    }

    let incoming = switched_in(next, now, &off);
    // SAFETY: as above, this CPU's own slot.
    unsafe { *state = incoming };
    if off.features & FEATURE_SCHED != 0 {
        sched::on_switch(prev, prev_pid, incoming.pid, incoming.cgroup_id, now, &off);
    }
}

#[inline(always)]
fn switched_in(next: *const u8, now: u64, off: &KernelOffsets) -> RunState {
    let mut st = RunState {
        since_ns: now,
        cgroup_id: 0,
        pid: 0,
        exec_valid: 0,
        exec_at_in: 0,
    };
    let Ok(pid) = task::pid(next, off) else {
        stat_add(STAT_CGROUP_READ_FAILED, 1);
        return st;
    };
    st.pid = pid;
    if pid == 0 {
        return st;
    }
    if let Ok(exec) = task::exec_ns(next, off) {
        st.exec_at_in = exec;
        st.exec_valid = 1;
    }
    match task::cgroup_id(next, off) {
        Ok(id) => st.cgroup_id = id,
        Err(_) => {
            // pid 0 marks the state untrusted: the next switch-out commits nothing for it.
            st.pid = 0;
            stat_add(STAT_CGROUP_READ_FAILED, 1);
        }
    }
    st
}

/// Splits the current task's slice when it is moved to another cgroup while it runs (a shell
/// writing `$$` to cgroup.procs): the time so far goes to the cgroup it ran in, the rest to the
/// new one. Moves of tasks that are not running here need nothing: their next switch-in reads
/// the new cgroup.
#[inline(always)]
pub fn on_migrate(task_ptr: *const u8) {
    let off = task::offsets();
    if off.valid == 0 {
        return;
    }
    let current = bpf_get_current_pid_tgid() as u32;
    if current == 0 || task::pid(task_ptr, &off) != Ok(current) {
        return;
    }
    let Some(state) = RUNNING.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's own slot, and migration is disabled while the program runs, so the
    // pointer stays valid. Unlike sched_switch, this tracepoint runs in process context and may
    // be preempted between the read and the write below; a sched_switch in between can then be
    // overwritten with a slightly stale `since` (rare: only at a cgroup move; see README).
    let st = unsafe { &mut *state };
    if st.pid != current || st.since_ns == 0 {
        return;
    }
    // SAFETY: helpers without preconditions.
    let (now, moved_to) = unsafe { (bpf_ktime_get_ns(), bpf_get_current_cgroup_id()) };
    if st.cgroup_id == moved_to {
        return; // a v1-only move: the v2 cgroup is unchanged
    }
    if st.cgroup_id != 0 && now > st.since_ns {
        commit(st.cgroup_id, now - st.since_ns);
    }
    st.since_ns = now;
    st.cgroup_id = moved_to;
    // A running task's sum_exec_runtime is only brought up to date at ticks and switches, so it
    // cannot split the slice here: the rest of it is timed by the wall clock.
    st.exec_valid = 0;
}

#[inline(always)]
fn commit(cgroup: u64, ns: u64) {
    if !per_cpu_add(&CPU_NS, cgroup, ns) {
        stat_add(STAT_CPU_MAP_FULL, 1);
        stat_add(STAT_CPU_MAP_FULL_NS, ns);
    }
}
