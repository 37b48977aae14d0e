//! Per-cgroup CPU time from context switches.
//!
//! At each switch the task being switched out is the current task, so the time since it was
//! switched in is committed to the current task's cgroup. The CPU's run state then records the
//! incoming task's cgroup and the switch time, so userspace can add `now - since` for a task
//! that has run for seconds without a switch.
//!
//! Slices are wall-clock (`bpf_ktime_get_ns`). On a VM they include time the hypervisor stole
//! from the vCPU, which the kernel's `cpu.stat` leaves out (measured +0.1 to +1.5 % here). The
//! scheduler's own `se.sum_exec_runtime` would match `cpu.stat`, but read at `sched_switch` on
//! 6.18 it lagged for preempted tasks and lost 10-20 % under contention; see the README.
use aya_ebpf::helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_ns};
use nodetel_common::{
    KernelOffsets, RunState, STAT_CGROUP_READ_FAILED, STAT_CPU_MAP_FULL, STAT_CPU_MAP_FULL_NS,
    STAT_STATE_MISMATCH, STAT_SWITCHES,
};

use crate::{
    maps::{CPU_NS, RUNNING, stat_add},
    task,
};

#[inline(always)]
pub fn on_switch(next: *const u8) {
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
    if st.since_ns != 0 && prev_pid != 0 && st.pid != prev_pid {
        stat_add(STAT_STATE_MISMATCH, 1);
    }
    if st.since_ns != 0 && prev_pid != 0 && st.pid == prev_pid {
        let ran = now.saturating_sub(st.since_ns);
        // SAFETY: bpf_get_current_cgroup_id has no preconditions.
        let cgroup = unsafe { bpf_get_current_cgroup_id() };
        if ran > 0 {
            commit(cgroup, ran);
        }
    }

    // SAFETY: as above, this CPU's own slot.
    unsafe { *state = switched_in(next, now, &off) };
}

#[inline(always)]
fn switched_in(next: *const u8, now: u64, off: &KernelOffsets) -> RunState {
    let mut st = RunState {
        since_ns: now,
        cgroup_id: 0,
        pid: 0,
        _pad: 0,
    };
    let Ok(pid) = task::pid(next, off) else {
        stat_add(STAT_CGROUP_READ_FAILED, 1);
        return st;
    };
    st.pid = pid;
    if pid == 0 {
        return st;
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
}

#[inline(always)]
fn commit(cgroup: u64, ns: u64) {
    if let Some(v) = CPU_NS.get_ptr_mut(&cgroup) {
        // SAFETY: a per-CPU hash value is this CPU's own copy; no concurrent writer.
        unsafe { *v += ns };
        return;
    }
    // BPF_NOEXIST: a concurrent insert of the same key on another CPU creates the entry for every
    // CPU; then our insert fails with EEXIST and we retry the lookup once.
    if CPU_NS.insert(&cgroup, &ns, 1).is_ok() {
        return;
    }
    if let Some(v) = CPU_NS.get_ptr_mut(&cgroup) {
        // SAFETY: as above.
        unsafe { *v += ns };
        return;
    }
    stat_add(STAT_CPU_MAP_FULL, 1);
    stat_add(STAT_CPU_MAP_FULL_NS, ns);
}
