//! Reading the kernel maps once per interval.
//!
//! Order matters for correctness: the committed per-cgroup totals are read first, then each CPU's
//! run state. A switch landing between the two reads can only make this drain miss part of one
//! slice (it is in neither read), never count time twice; the accountant's monotonic guard absorbs
//! that momentary shortfall, and the next drain has it.
use std::collections::HashMap;

use aya::maps::{MapError, PerCpuArray, PerCpuHashMap};
use nodetel_common::{
    MAP_CPU_NS, MAP_RUNNING, MAP_STATS, RunState, STAT_CGROUP_READ_FAILED, STAT_CPU_MAP_FULL,
    STAT_CPU_MAP_FULL_NS, STAT_STATE_MISMATCH, STAT_STATE_MISMATCH_NS, STAT_SWITCHES,
};
use rustix::time::{ClockId, clock_gettime};

use super::Probes;

/// One drain of the CPU maps.
#[derive(Clone, Debug, Default)]
pub struct CpuDrain {
    /// cgroup id -> ns committed at context switches, summed over CPUs.
    pub committed: HashMap<u64, u64>,
    /// cgroup id -> ns its tasks have been running since their last switch-in, summed over CPUs.
    pub in_flight: HashMap<u64, u64>,
}

/// The programs' own counters, summed over CPUs (cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub cpu_map_full: u64,
    pub cpu_map_full_ns: u64,
    pub cgroup_read_failed: u64,
    pub switches: u64,
    pub state_mismatch: u64,
    pub state_mismatch_ns: u64,
}

fn missing(name: &str) -> MapError {
    MapError::InvalidName {
        name: name.to_string(),
    }
}

fn monotonic_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

impl Probes {
    pub fn drain_cpu(&self) -> Result<CpuDrain, MapError> {
        let map = self
            .ebpf
            .map(MAP_CPU_NS)
            .ok_or_else(|| missing(MAP_CPU_NS))?;
        let cpu_ns: PerCpuHashMap<_, u64, u64> = PerCpuHashMap::try_from(map)?;
        let mut out = CpuDrain::default();
        for item in cpu_ns.iter() {
            // A key deleted between "next key" and "lookup" is a cgroup being retired: skip it.
            let (id, per_cpu) = match item {
                Ok(kv) => kv,
                Err(MapError::KeyNotFound) => continue,
                Err(e) => return Err(e),
            };
            let total = per_cpu.iter().fold(0u64, |a, v| a.saturating_add(*v));
            out.committed.insert(id, total);
        }

        let map = self
            .ebpf
            .map(MAP_RUNNING)
            .ok_or_else(|| missing(MAP_RUNNING))?;
        let running: PerCpuArray<_, RunState> = PerCpuArray::try_from(map)?;
        let states = running.get(&0, 0)?;
        let now = monotonic_ns();
        for s in states.iter() {
            if s.cgroup_id == 0 || s.pid == 0 || s.since_ns == 0 {
                continue;
            }
            // bpf_ktime_get_ns and CLOCK_MONOTONIC are one clock; a switch racing this read can
            // leave `since` a hair ahead of `now`, which must count as zero, not wrap.
            let ns = now.saturating_sub(s.since_ns);
            *out.in_flight.entry(s.cgroup_id).or_default() += ns;
        }
        Ok(out)
    }

    /// Deletes the entries of cgroups that no longer exist. Returns how many were deleted.
    pub fn forget_cgroups(&mut self, ids: &[u64]) -> Result<usize, MapError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let map = self
            .ebpf
            .map_mut(MAP_CPU_NS)
            .ok_or_else(|| missing(MAP_CPU_NS))?;
        let mut cpu_ns: PerCpuHashMap<_, u64, u64> = PerCpuHashMap::try_from(map)?;
        let mut removed = 0;
        for id in ids {
            match cpu_ns.remove(id) {
                Ok(()) => removed += 1,
                Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    pub fn kernel_stats(&self) -> Result<KernelStats, MapError> {
        let map = self.ebpf.map(MAP_STATS).ok_or_else(|| missing(MAP_STATS))?;
        let stats: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let slot = |i: u32| -> Result<u64, MapError> {
            Ok(stats
                .get(&i, 0)?
                .iter()
                .fold(0u64, |a, v| a.saturating_add(*v)))
        };
        Ok(KernelStats {
            cpu_map_full: slot(STAT_CPU_MAP_FULL)?,
            cpu_map_full_ns: slot(STAT_CPU_MAP_FULL_NS)?,
            cgroup_read_failed: slot(STAT_CGROUP_READ_FAILED)?,
            switches: slot(STAT_SWITCHES)?,
            state_mismatch: slot(STAT_STATE_MISMATCH)?,
            state_mismatch_ns: slot(STAT_STATE_MISMATCH_NS)?,
        })
    }
}
