//! Reading the scheduler maps (see agent-ebpf/src/sched.rs).
use std::collections::HashMap;

use aya::maps::{MapError, PerCpuHashMap};
use nodetel_common::{HistKey, MAP_SCHED, MAP_SCHED_HIST, RUNQ_BUCKETS, SchedCounters};

use super::{
    Probes,
    drain::{each_entry, missing},
};

/// One drain of the scheduler maps, per cgroup (its own tasks), summed over CPUs (cumulative).
#[derive(Clone, Debug, Default)]
pub struct SchedDrain {
    pub counters: HashMap<u64, SchedCounters>,
    /// Run-queue waits per bucket (not cumulative across buckets), `RUNQ_BUCKETS` long.
    pub buckets: HashMap<u64, Vec<u64>>,
}

impl Probes {
    pub fn drain_sched(&self) -> Result<SchedDrain, MapError> {
        let mut out = SchedDrain::default();
        let map = self.ebpf.map(MAP_SCHED).ok_or_else(|| missing(MAP_SCHED))?;
        let counters: PerCpuHashMap<_, u64, SchedCounters> = PerCpuHashMap::try_from(map)?;
        each_entry(&counters, |id, per_cpu| {
            let sum = per_cpu
                .iter()
                .fold(SchedCounters::default(), |a, v| SchedCounters {
                    runqueue_ns: a.runqueue_ns.saturating_add(v.runqueue_ns),
                    run_periods: a.run_periods.saturating_add(v.run_periods),
                    waits: a.waits.saturating_add(v.waits),
                    _pad: 0,
                });
            out.counters.insert(id, sum);
        })?;
        let map = self
            .ebpf
            .map(MAP_SCHED_HIST)
            .ok_or_else(|| missing(MAP_SCHED_HIST))?;
        let hist: PerCpuHashMap<_, HistKey, u64> = PerCpuHashMap::try_from(map)?;
        each_entry(&hist, |key, per_cpu| {
            let Some(slot) = usize::try_from(key.bucket)
                .ok()
                .filter(|b| *b < RUNQ_BUCKETS as usize)
            else {
                return;
            };
            let n = per_cpu.iter().fold(0u64, |a, v| a.saturating_add(*v));
            out.buckets
                .entry(key.cgroup_id)
                .or_insert_with(|| vec![0; RUNQ_BUCKETS as usize])[slot] = n;
        })?;
        Ok(out)
    }

    /// Deletes the scheduler entries of removed cgroups. Returns how many.
    pub fn forget_sched(&mut self, gone: &[u64], drain: &SchedDrain) -> Result<usize, MapError> {
        if gone.is_empty() {
            return Ok(0);
        }
        let mut removed = 0;
        let map = self
            .ebpf
            .map_mut(MAP_SCHED)
            .ok_or_else(|| missing(MAP_SCHED))?;
        let mut counters: PerCpuHashMap<_, u64, SchedCounters> = PerCpuHashMap::try_from(map)?;
        for id in gone {
            match counters.remove(id) {
                Ok(()) => removed += 1,
                Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(e),
            }
        }
        let map = self
            .ebpf
            .map_mut(MAP_SCHED_HIST)
            .ok_or_else(|| missing(MAP_SCHED_HIST))?;
        let mut hist: PerCpuHashMap<_, HistKey, u64> = PerCpuHashMap::try_from(map)?;
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
                match hist.remove(&key) {
                    Ok(()) => removed += 1,
                    Err(MapError::KeyNotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }
}
