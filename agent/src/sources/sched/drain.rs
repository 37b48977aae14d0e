//! Reading the scheduler maps (see agent-ebpf/src/sched.rs).
use std::collections::HashMap;

use aya::{
    Ebpf,
    maps::{MapError, PerCpuArray, PerCpuHashMap},
};
use nodetel_common::{HistKey, MAP_RUNNING, MAP_SCHED_HIST, RUNQ_BUCKETS, RunState, RunqBucket};

use crate::ebpf::{deleted, each_entry, missing};

/// A cgroup's own run-queue figures, summed over its buckets and CPUs (cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedCounters {
    pub runqueue_ns: u64,
    pub run_periods: u64,
}

/// One drain of the scheduler map, per cgroup (its own tasks), summed over CPUs (cumulative).
#[derive(Clone, Debug, Default)]
pub struct SchedDrain {
    pub counters: HashMap<u64, SchedCounters>,
    /// Run periods per wait bucket (not cumulative across buckets), `RUNQ_BUCKETS` long.
    pub buckets: HashMap<u64, Vec<u64>>,
    /// Entries of the histogram map at the drain.
    pub entries: u64,
}

impl SchedDrain {
    fn add(&mut self, cgroup: u64, slot: usize, count: u64, wait_ns: u64) {
        if let Some(b) = self
            .buckets
            .entry(cgroup)
            .or_insert_with(|| vec![0; RUNQ_BUCKETS as usize])
            .get_mut(slot)
        {
            *b = b.saturating_add(count);
        }
        let c = self.counters.entry(cgroup).or_default();
        c.run_periods = c.run_periods.saturating_add(count);
        c.runqueue_ns = c.runqueue_ns.saturating_add(wait_ns);
    }

    /// Keeps every figure of a cgroup from going below the previous drain's: a CPU that flushed
    /// its pending waits into a key already read shows them in neither read for one pass, and a
    /// histogram bucket going back would read as a counter reset.
    pub fn hold(&mut self, prev: &SchedDrain) {
        for (id, buckets) in &mut self.buckets {
            let Some(old) = prev.buckets.get(id) else {
                continue;
            };
            for (b, o) in buckets.iter_mut().zip(old) {
                *b = (*b).max(*o);
            }
            if let Some(c) = self.counters.get_mut(id) {
                c.run_periods = buckets.iter().fold(0u64, |a, n| a.saturating_add(*n));
                if let Some(o) = prev.counters.get(id) {
                    c.runqueue_ns = c.runqueue_ns.max(o.runqueue_ns);
                }
            }
        }
    }
}

pub fn drain(ebpf: &Ebpf) -> Result<SchedDrain, MapError> {
    let mut out = SchedDrain::default();
    let map = ebpf
        .map(MAP_SCHED_HIST)
        .ok_or_else(|| missing(MAP_SCHED_HIST))?;
    let hist: PerCpuHashMap<_, HistKey, RunqBucket> = PerCpuHashMap::try_from(map)?;
    let mut entries = 0;
    each_entry(&hist, |key, per_cpu| {
        entries += 1;
        let Some(slot) = usize::try_from(key.bucket)
            .ok()
            .filter(|b| *b < RUNQ_BUCKETS as usize)
        else {
            return;
        };
        let (n, ns) = per_cpu.iter().fold((0u64, 0u64), |(n, ns), v| {
            (n.saturating_add(v.count), ns.saturating_add(v.wait_ns))
        });
        out.add(key.cgroup_id, slot, n, ns);
    })?;
    out.entries = entries;
    // Read after the map: what a CPU flushes in between is in one of the two reads or, when
    // the map's key was read before the flush, in neither (see `hold`), never in both.
    let map = ebpf.map(MAP_RUNNING).ok_or_else(|| missing(MAP_RUNNING))?;
    let running: PerCpuArray<_, RunState> = PerCpuArray::try_from(map)?;
    for s in running.get(&0, 0)?.iter() {
        let p = &s.pending;
        if p.cgroup_id == 0 || p.bucket_mask == 0 {
            continue;
        }
        for (slot, b) in p.buckets.iter().enumerate() {
            if b.count != 0 {
                out.add(p.cgroup_id, slot, b.count, b.wait_ns);
            }
        }
    }
    Ok(out)
}

/// Deletes the scheduler entries of removed cgroups. Returns how many.
pub fn forget(ebpf: &mut Ebpf, gone: &[u64], drain: &SchedDrain) -> Result<usize, MapError> {
    if gone.is_empty() {
        return Ok(0);
    }
    let mut removed = 0;
    let map = ebpf
        .map_mut(MAP_SCHED_HIST)
        .ok_or_else(|| missing(MAP_SCHED_HIST))?;
    let mut hist: PerCpuHashMap<_, HistKey, RunqBucket> = PerCpuHashMap::try_from(map)?;
    for id in gone {
        let Some(buckets) = drain.buckets.get(id) else {
            continue;
        };
        for (b, n) in buckets.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let key = HistKey {
                cgroup_id: *id,
                bucket: b as u32,
                _pad: 0,
            };
            removed += usize::from(deleted(hist.remove(&key))?);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(entries: &[(u64, usize, u64, u64)]) -> SchedDrain {
        let mut d = SchedDrain::default();
        for &(id, slot, n, ns) in entries {
            d.add(id, slot, n, ns);
        }
        d
    }

    #[test]
    fn buckets_sum_into_the_cgroup_totals() {
        let d = drain(&[
            (7, 0, 3, 900),
            (7, 5, 2, 40_000),
            (7, 5, 1, 20_000),
            (8, 1, 1, 1_500),
        ]);
        let c = d.counters[&7];
        assert_eq!((c.run_periods, c.runqueue_ns), (6, 60_900));
        assert_eq!(d.buckets[&7][5], 3);
        assert_eq!(d.counters[&8].run_periods, 1);
        // A bucket past the histogram is dropped, not a panic.
        let d = drain(&[(9, RUNQ_BUCKETS as usize, 1, 1)]);
        assert_eq!(d.buckets[&9].iter().sum::<u64>(), 0);
    }

    #[test]
    fn a_flush_missed_by_both_reads_does_not_take_counts_back() {
        let prev = drain(&[(7, 2, 10, 5_000), (7, 3, 4, 9_000)]);
        // Bucket 3's pending waits were flushed into a key already read: seen in neither.
        let mut now = drain(&[(7, 2, 12, 6_000), (7, 3, 1, 2_000), (8, 1, 1, 100)]);
        now.hold(&prev);
        assert_eq!(now.buckets[&7][2], 12);
        assert_eq!(now.buckets[&7][3], 4);
        let c = now.counters[&7];
        assert_eq!(c.run_periods, 16, "count is the held buckets' sum");
        assert_eq!(c.runqueue_ns, 14_000);
        assert_eq!(now.counters[&8].run_periods, 1);
    }
}
