//! Per-cgroup run-queue waits and run periods, the figures of `/proc/<pid>/schedstat` summed by
//! cgroup, without walking /proc.
//!
//! A task becomes runnable when it is woken (`sched_wakeup`, `sched_wakeup_new`) or preempted
//! while still runnable (seen at `sched_switch`); the time is stamped under its thread id. When
//! it is next switched in, the wait is `now - stamp`, charged to its cgroup with a log2 bucket.
//! Per switch: one stamp lookup and delete, one counter update, one bucket update.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use nodetel_common::{HistKey, KernelOffsets, RUNQ_BUCKETS, STAT_SCHED_MAP_FULL, SchedCounters};

use crate::{
    maps::{SCHED, WAKEUPS, atomic_add, per_cpu_add_hist, stat_add, upsert},
    task,
};

/// Stamps a task made runnable by a wakeup.
#[inline(always)]
pub fn on_wakeup(p: *const u8) {
    let off = task::offsets();
    if off.valid == 0 {
        return;
    }
    let Ok(pid) = task::pid(p, &off) else {
        return;
    };
    if pid == 0 {
        return;
    }
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let _ = WAKEUPS.insert(&pid, &now, 0);
}

/// At a context switch: stamps `prev` if it was preempted (still runnable), and charges the
/// wait and the run period of the task switched in.
#[inline(always)]
pub fn on_switch(
    prev: *const u8,
    prev_pid: u32,
    next_pid: u32,
    next_cgroup: u64,
    now: u64,
    off: &KernelOffsets,
) {
    if prev_pid != 0 && task::state(prev, off) == Ok(0) {
        let _ = WAKEUPS.insert(&prev_pid, &now, 0);
    }
    if next_pid == 0 || next_cgroup == 0 {
        return;
    }
    // SAFETY: the value is copied out at once; a concurrent update of the stamp is harmless.
    let waited = match unsafe { WAKEUPS.get(&next_pid) } {
        Some(stamp) => {
            let w = now.saturating_sub(*stamp);
            let _ = WAKEUPS.remove(&next_pid);
            Some(w)
        }
        None => None,
    };
    let add = SchedCounters {
        runqueue_ns: waited.unwrap_or(0),
        run_periods: 1,
        waits: u64::from(waited.is_some()),
        _pad: 0,
    };
    if !add_counters(next_cgroup, &add) {
        stat_add(STAT_SCHED_MAP_FULL, 1);
    }
    if let Some(w) = waited {
        let key = HistKey {
            cgroup_id: next_cgroup,
            bucket: bucket(w),
            _pad: 0,
        };
        if !per_cpu_add_hist(&key) {
            stat_add(STAT_SCHED_MAP_FULL, 1);
        }
    }
}

/// The smallest `b` with `wait <= 2^b µs`, capped at the +Inf bucket.
#[inline(always)]
fn bucket(wait_ns: u64) -> u32 {
    let us = wait_ns / 1000;
    // Bits needed for `us`: 0 for < 1 µs, b for [2^(b-1), 2^b) µs.
    let bits = 64 - us.leading_zeros();
    if bits >= RUNQ_BUCKETS - 1 {
        RUNQ_BUCKETS - 1
    } else {
        bits
    }
}

#[inline(always)]
fn add_counters(cgroup: u64, add: &SchedCounters) -> bool {
    let apply = |v: *mut SchedCounters| {
        // SAFETY: `v` is a live map value; the field pointers stay inside it.
        unsafe {
            atomic_add(core::ptr::addr_of_mut!((*v).runqueue_ns), add.runqueue_ns);
            atomic_add(core::ptr::addr_of_mut!((*v).run_periods), add.run_periods);
            atomic_add(core::ptr::addr_of_mut!((*v).waits), add.waits);
        }
    };
    upsert(&SCHED, &cgroup, add, apply)
}
