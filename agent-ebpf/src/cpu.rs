//! Per-cgroup CPU time from context switches.
//!
//! At each switch the task being switched out is the current task, so the time since it was
//! switched in is charged to the cgroup it ran in. The CPU's run state then records the incoming
//! task's cgroup and the switch time, so userspace can add `now - since` for a task that has run
//! for seconds without a switch.
//!
//! A charged slice is the scheduler's own runtime delta, `se.sum_exec_runtime` at switch-out
//! minus its value at the traced switch-in: the same figure `cpu.stat` sums, so steal time on a
//! VM is left out as the kernel leaves it out. (`sum_exec_runtime - prev_sum_exec_runtime` would
//! not do: the scheduler resets the latter whenever it re-picks the same task, which fires no
//! `sched_switch`, and that lost 10-20 % under contention.) The in-flight part that userspace adds
//! is wall-clock, the only clock it has.
//!
//! Slices go first to the CPU's pending buffer (`Pending`), which reaches the shared per-cgroup
//! hashes when a slice of another cgroup comes along.
//!
//! The clock is read once per tick per CPU, not per switch: a switch is dated with the time of
//! the first switch of its tick on its CPU (`bpf_jiffies64` tells when the tick moved on). A
//! clock read cost 60 ns of the ~200 a switch took on this VM, and no charged figure depends on
//! it: times only bound the runtime deltas and date the switch-in for the in-flight part, which
//! is then up to a tick early.
//!
//! Some kernels switch a task in without firing `sched_switch` (seen on a paravirtualised 6.18
//! guest, a few times per second); the switch-out then finds another task in the run state and
//! charges the leaving task's slice since its last pick instead (`STAT_STATE_MISMATCH`).
use aya_ebpf::helpers::{bpf_get_current_cgroup_id, bpf_jiffies64, bpf_ktime_get_ns};
use nodetel_common::{
    FEATURE_SCHED, KernelOffsets, Pending, STAT_CGROUP_READ_FAILED, STAT_CPU_MAP_FULL,
    STAT_CPU_MAP_FULL_NS, STAT_RUNTIME_CLAMPED, STAT_RUNTIME_CLAMPED_NS, STAT_STATE_MISMATCH,
    STAT_STATE_MISMATCH_NS, STAT_TICK_STALE,
};

use crate::{
    maps::{CPU_NS, RUNNING, per_cpu_add, stat_add},
    sched, task,
};

/// How far switch times may be early: a runtime delta up to this much beyond the clock's slice
/// is the dating's lag, not a bad reading (a tick is 1-10 ms).
const CLOCK_SLACK_NS: u64 = 20_000_000;

#[inline(always)]
pub fn on_switch(prev: *const u8, next: *const u8) {
    let off = task::offsets();
    if off.valid == 0 {
        return;
    }
    let Some(state) = RUNNING.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU slot belongs to this CPU, and sched_switch runs with interrupts off,
    // so nothing else runs on this CPU until the program returns (`on_migrate` writes only the
    // switch-in fields, from process context, never in the middle of this).
    let st = unsafe { &mut *state };
    st.switches += 1;
    // SAFETY: helpers without preconditions.
    let tick = unsafe { bpf_jiffies64() };
    if tick != st.tick || st.tick_ns == 0 {
        st.tick = tick;
        // SAFETY: as above.
        st.tick_ns = unsafe { bpf_ktime_get_ns() };
    }
    let now = st.tick_ns;

    // The idle task (pid 0) is not accounted; a CPU with no switch seen yet has since_ns == 0,
    // and a state recorded for another task (none seen since attach) is not trusted.
    let prev_pid = task::pid(prev, &off).unwrap_or(0);
    if st.since_ns != 0 && prev_pid != 0 {
        let wall = now.saturating_sub(st.since_ns);
        if st.pid == prev_pid {
            // The scheduler's own runtime since the switch-in: the figure cpu.stat sums, so it
            // leaves out what the kernel leaves out (steal and, where configured, IRQ time),
            // which wall-clock time does not.
            let ran = match task::exec_ns(prev, &off) {
                Ok(e) if st.exec_valid == 1 => {
                    let d = e.saturating_sub(st.exec_at_in);
                    if d <= wall + CLOCK_SLACK_NS {
                        d
                    } else {
                        // The tick-dated `now` can be stale when jiffies lag (seen under QEMU
                        // TCG: a pod lost 15 % of its CPU to this bound). Only then is the
                        // precise clock read; `since` is at most a tick early, so this elapsed
                        // time is never short.
                        // SAFETY: helper without preconditions.
                        let real = unsafe { bpf_ktime_get_ns() }.saturating_sub(st.since_ns);
                        if d <= real + CLOCK_SLACK_NS {
                            stat_add(STAT_TICK_STALE, 1);
                            d
                        } else {
                            stat_add(STAT_RUNTIME_CLAMPED, 1);
                            stat_add(STAT_RUNTIME_CLAMPED_NS, d - real);
                            real
                        }
                    }
                }
                _ => wall,
            };
            // The cgroup read at switch-in, kept current by `on_migrate`.
            let cgroup = st.cgroup_id;
            if st.pending.cgroup_id != cgroup {
                flush(&mut st.pending);
                st.pending.cgroup_id = cgroup;
            }
            st.pending.cpu_ns += ran;
            if off.features & FEATURE_SCHED != 0
                && let Some((bucket, wait)) =
                    sched::slice_wait(prev, st.run_delay_at_in, st.pcount_at_in, &off)
            {
                sched::add_pending(&mut st.pending, bucket, &wait);
            }
        } else {
            // Some kernels (seen: a paravirtualised 6.18 guest) switch a task in without firing
            // sched_switch, so the state names another task. The task leaving ran no longer than
            // its own slice by the scheduler's counter, nor than the time since the last traced
            // switch; the recorded task's share of that time (up to the hidden switch) is lost.
            stat_add(STAT_STATE_MISMATCH, 1);
            let slice = task::slice_ns(prev, &off)
                .unwrap_or(0)
                .min(wall + CLOCK_SLACK_NS);
            stat_add(STAT_STATE_MISMATCH_NS, slice);
            // SAFETY: bpf_get_current_cgroup_id has no preconditions.
            let cgroup = unsafe { bpf_get_current_cgroup_id() };
            if slice > 0 {
                commit(cgroup, slice);
            }
        }
    }
    switch_in(st, next, now, &off);
}

/// Records the task switched in. pid 0 (idle, or unreadable) makes the next switch-out charge
/// nothing.
#[inline(always)]
fn switch_in(st: &mut nodetel_common::RunState, next: *const u8, now: u64, off: &KernelOffsets) {
    st.since_ns = now;
    st.cgroup_id = 0;
    st.exec_valid = 0;
    let pid = match task::pid(next, off) {
        Ok(p) => p,
        Err(_) => {
            stat_add(STAT_CGROUP_READ_FAILED, 1);
            0
        }
    };
    st.pid = pid;
    if pid == 0 {
        return;
    }
    if let Ok(exec) = task::exec_ns(next, off) {
        st.exec_at_in = exec;
        st.exec_valid = 1;
    }
    if off.features & FEATURE_SCHED != 0 {
        let (run_delay, pcount) = task::sched_info(next, off).unwrap_or((0, 0));
        st.run_delay_at_in = run_delay;
        st.pcount_at_in = pcount;
    }
    match task::cgroup_id(next, off) {
        Ok(id) if id != 0 => st.cgroup_id = id,
        _ => {
            st.pid = 0;
            stat_add(STAT_CGROUP_READ_FAILED, 1);
        }
    }
}

/// Adds a pending buffer to the shared maps and empties it.
#[inline(always)]
fn flush(p: &mut Pending) {
    if p.cgroup_id != 0 {
        if p.cpu_ns != 0 {
            commit(p.cgroup_id, p.cpu_ns);
        }
        if p.bucket_mask != 0 {
            sched::flush(p);
        }
    }
    p.cpu_ns = 0;
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
    let Ok(pid) = task::pid(task_ptr, &off) else {
        return;
    };
    let Some(state) = RUNNING.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's own slot, and migration is disabled while the program runs, so the
    // pointer stays valid. Unlike sched_switch, this tracepoint runs in process context and may
    // be preempted between the read and the writes below; a sched_switch in between can then be
    // overwritten with a slightly stale `since` (rare: only at a cgroup move; see README). The
    // pending buffer is left to sched_switch: what is split here goes to the maps directly.
    let st = unsafe { &mut *state };
    if pid == 0 || st.pid != pid || st.since_ns == 0 {
        return;
    }
    // SAFETY: helpers without preconditions.
    let (now, moved_to) = unsafe { (bpf_ktime_get_ns(), bpf_get_current_cgroup_id()) };
    if st.cgroup_id == moved_to {
        return; // a v1-only move: the v2 cgroup is unchanged
    }
    // The part before the move is the task's runtime counter since its switch-in: the kernel
    // brings it up to date at the move when the cpu controller moves the task, and otherwise
    // charges the runtime since the last update to the new cgroup too, so the counter splits
    // the slice where cpu.stat does. The baseline moves by the same amount, so the switch-out
    // charges the new cgroup the rest and the two parts add up to the task's runtime. The clock
    // split used before could exceed the runtime when `since` was tick-dated long ago (jiffies
    // not yet caught up after idle, seen under QEMU TCG): the baseline then passed the counter
    // and the rest of the slice was lost (a pod 0.47 s of 3.18 s short). The clock is only the
    // fallback when the counter is unreadable.
    let part = match task::exec_ns(task_ptr, &off) {
        Ok(e) if st.exec_valid == 1 => e.saturating_sub(st.exec_at_in),
        _ => now.saturating_sub(st.since_ns),
    };
    if st.cgroup_id != 0 && part > 0 {
        commit(st.cgroup_id, part);
        st.exec_at_in = st.exec_at_in.wrapping_add(part);
    }
    if off.features & FEATURE_SCHED != 0
        && st.cgroup_id != 0
        && let Some((bucket, wait)) =
            sched::slice_wait(task_ptr, st.run_delay_at_in, st.pcount_at_in, &off)
    {
        // The wait before this slice belongs to the cgroup the task was in when it ended.
        sched::commit(st.cgroup_id, bucket, &wait);
        st.run_delay_at_in = st.run_delay_at_in.wrapping_add(wait.wait_ns);
        st.pcount_at_in = st.pcount_at_in.wrapping_add(wait.count);
    }
    st.since_ns = now;
    st.cgroup_id = moved_to;
}

#[inline(always)]
fn commit(cgroup: u64, ns: u64) {
    if !per_cpu_add(&CPU_NS, cgroup, ns) {
        stat_add(STAT_CPU_MAP_FULL, 1);
        stat_add(STAT_CPU_MAP_FULL_NS, ns);
    }
}
