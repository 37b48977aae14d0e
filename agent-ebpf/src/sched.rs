//! Per-cgroup run-queue waits and run periods: the figures of `/proc/<pid>/schedstat`, summed by
//! cgroup, without walking /proc.
//!
//! The scheduler keeps them per task in `task->sched_info` (CONFIG_SCHED_INFO, which every
//! distribution kernel has): `run_delay`, the time spent runnable but not running (from wakeup,
//! or from being preempted, to running), and `pcount`, the times run. It adds a wait when the
//! task arrives on a CPU, right AFTER the `sched_switch` tracepoint, so the figures read at a
//! switch-in leave out the wait that just ended and those read at the matching switch-out
//! include it: the difference is that wait and one run period, added to one histogram bucket
//! of the cgroup the task ran in (the cgroup's totals are the sums over its buckets).
//!
//! Reading the kernel's own counters needs no stamp map and no wakeup program (a stamp per
//! wakeup, a lookup and a delete per switch cost about 1 µs per wakeup and switch here), and the
//! totals are the kernel's by construction. The price: a wait is charged when the slice after it
//! ends, not when it ends.
use nodetel_common::{
    HistKey, KernelOffsets, Pending, RUNQ_BUCKETS, RunqBucket, STAT_SCHED_MAP_FULL,
};

use crate::{
    maps::{SCHED_HIST, atomic_add, stat_add, upsert},
    task,
};

/// More run periods than this between a traced switch-in and switch-out is not one slice.
const MAX_PERIODS_PER_SLICE: u64 = 16;

/// The wait that preceded the slice of `task` now ending, and its bucket: the scheduler's
/// figures now minus those at switch-in. `None` when there is nothing to charge.
#[inline(always)]
pub fn slice_wait(
    task: *const u8,
    run_delay_at_in: u64,
    pcount_at_in: u64,
    off: &KernelOffsets,
) -> Option<(u32, RunqBucket)> {
    let (run_delay, pcount) = task::sched_info(task, off).ok()?;
    let periods = pcount.wrapping_sub(pcount_at_in);
    // One period per traced slice; more means the baseline is not this slice's (unreadable at
    // switch-in, left zero), and none means the task has not arrived yet.
    if periods == 0 || periods > MAX_PERIODS_PER_SLICE {
        return None;
    }
    let waited = run_delay.wrapping_sub(run_delay_at_in);
    let per_period = if periods > 1 {
        waited / periods
    } else {
        waited
    };
    Some((
        bucket(per_period),
        RunqBucket {
            count: periods,
            wait_ns: waited,
        },
    ))
}

/// Adds a wait to this CPU's pending buffer (see `Pending`).
#[inline(always)]
pub fn add_pending(p: &mut Pending, bucket: u32, wait: &RunqBucket) {
    if let Some(b) = p.buckets.get_mut(bucket as usize) {
        b.count += wait.count;
        b.wait_ns += wait.wait_ns;
        p.bucket_mask |= 1 << bucket;
    }
}

/// Adds the pending buffer's buckets to the shared map and clears them.
#[inline(always)]
pub fn flush(p: &mut Pending) {
    let mut b = 0;
    while b < RUNQ_BUCKETS {
        if p.bucket_mask >> b == 0 {
            break;
        }
        if p.bucket_mask & (1 << b) != 0
            && let Some(v) = p.buckets.get_mut(b as usize)
        {
            commit(p.cgroup_id, b, v);
            *v = RunqBucket::default();
        }
        b += 1;
    }
    p.bucket_mask = 0;
}

/// Adds `add` to `cgroup`'s `bucket` in the shared map.
#[inline(always)]
pub fn commit(cgroup: u64, bucket: u32, add: &RunqBucket) {
    let key = HistKey {
        cgroup_id: cgroup,
        bucket,
        _pad: 0,
    };
    let apply = |v: *mut RunqBucket| {
        // SAFETY: `v` is a live map value; the field pointers stay inside it.
        unsafe {
            atomic_add(core::ptr::addr_of_mut!((*v).count), add.count);
            atomic_add(core::ptr::addr_of_mut!((*v).wait_ns), add.wait_ns);
        }
    };
    if !upsert(&SCHED_HIST, &key, add, apply) {
        stat_add(STAT_SCHED_MAP_FULL, 1);
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
