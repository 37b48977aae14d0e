//! Per-cgroup CPU time from context switches.
//!
//! At each switch the interval since the previous switch on this CPU belonged to the task being
//! switched out (the current task), so it is committed to the current task's cgroup. The CPU's
//! run state then records the incoming task's cgroup and the switch time: userspace adds
//! `now - since` for each CPU, so a task that has run for seconds without a switch is counted.
use aya_ebpf::helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_ns};
use nodetel_common::{
    RunState, STAT_CGROUP_READ_FAILED, STAT_CPU_MAP_FULL, STAT_CPU_MAP_FULL_NS, STAT_SWITCHES,
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
    let prev = unsafe { *state };
    stat_add(STAT_SWITCHES, 1);

    // The idle task (pid 0) is not accounted; a CPU with no switch seen yet has since_ns == 0.
    let prev_pid = bpf_get_current_pid_tgid() as u32;
    if prev.since_ns != 0 && prev_pid != 0 && now > prev.since_ns {
        // SAFETY: bpf_get_current_cgroup_id has no preconditions.
        let cgroup = unsafe { bpf_get_current_cgroup_id() };
        commit(cgroup, now - prev.since_ns);
    }

    let mut next_state = RunState {
        since_ns: now,
        cgroup_id: 0,
        pid: 0,
        _pad: 0,
    };
    if let Ok(pid) = task::pid(next, &off) {
        next_state.pid = pid;
        if pid != 0 {
            match task::cgroup_id(next, &off) {
                Ok(id) => next_state.cgroup_id = id,
                Err(_) => stat_add(STAT_CGROUP_READ_FAILED, 1),
            }
        }
    } else {
        stat_add(STAT_CGROUP_READ_FAILED, 1);
    }
    // SAFETY: as above, this CPU's own slot.
    unsafe { *state = next_state };
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
