//! Map access every kind shares: iterating per-CPU hashes, deleting keys of removed cgroups, and
//! the programs' own counters (the `STATS` array).
use aya::maps::{MapError, PerCpuArray, PerCpuHashMap};
use nodetel_common::{
    MAP_STATS, STAT_CGROUP_CHANGES, STAT_CGROUP_READ_FAILED, STAT_CPU_MAP_FULL,
    STAT_CPU_MAP_FULL_NS, STAT_NET_MAP_FULL, STAT_NET_MAP_FULL_BYTES, STAT_OOM_EVENTS_LOST,
    STAT_OOM_KILLS, STAT_OOM_MARKED_ONLY, STAT_OOM_UNCOUNTED, STAT_RUNTIME_CLAMPED,
    STAT_RUNTIME_CLAMPED_NS, STAT_SCHED_MAP_FULL, STAT_STATE_MISMATCH, STAT_STATE_MISMATCH_NS,
    STAT_TICK_STALE,
};
use rustix::time::{ClockId, clock_gettime};

use super::Probes;
use crate::snapshot::{AgentStats, KernelStats};

/// The outcome of deleting one map key: whether it was there. aya 0.14 reports a missing key
/// on delete as a failed `bpf_map_delete_elem` (ENOENT), not as `KeyNotFound`; counted as an
/// error, the first key already gone stopped every deletion after it (measured: 14,770 stale
/// scheduler entries after two churns of 10,000 cgroups).
pub fn deleted(r: Result<(), MapError>) -> Result<bool, MapError> {
    match r {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

pub fn missing(name: &str) -> MapError {
    MapError::InvalidName {
        name: name.to_string(),
    }
}

/// Calls `f` with each entry of a per-CPU hash and its per-CPU values. A key deleted between
/// "next key" and "lookup" belongs to a cgroup being forgotten and is skipped.
pub fn each_entry<T, K, V>(
    map: &PerCpuHashMap<T, K, V>,
    mut f: impl FnMut(K, &[V]),
) -> Result<(), MapError>
where
    T: std::borrow::Borrow<aya::maps::MapData>,
    K: aya::Pod,
    V: aya::Pod,
{
    for item in map.iter() {
        match item {
            Ok((key, per_cpu)) => f(key, &per_cpu),
            Err(MapError::KeyNotFound) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn monotonic_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

impl Probes {
    /// Deletes the entries of cgroups that no longer exist from a per-cgroup map (`CPU_NS`,
    /// `OOM_KILLS`). Returns how many were deleted.
    pub fn forget_cgroups(&mut self, map: &str, ids: &[u64]) -> Result<usize, MapError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let map = self.ebpf.map_mut(map).ok_or_else(|| missing(map))?;
        let mut per_cgroup: PerCpuHashMap<_, u64, u64> = PerCpuHashMap::try_from(map)?;
        let mut removed = 0;
        for id in ids {
            removed += usize::from(deleted(per_cgroup.remove(id))?);
        }
        Ok(removed)
    }

    /// What the agent's health figures say about the programs before the first pass.
    pub fn initial_stats(&self) -> AgentStats {
        AgentStats {
            programs_attached: self.attached.clone(),
            programs_not_attached: self.not_attached.clone(),
            cpu_map_capacity: u64::from(self.cpu_map_entries),
            net_map_capacity: u64::from(self.net_map_entries),
            sched_map_capacity: u64::from(self.sched_map_entries),
            ..AgentStats::default()
        }
    }

    /// Refreshes the programs' own counters in `stats`, and returns the kernel's count of cgroup
    /// changes (`None`: not watched, or unreadable). The switch count is left as the CPU kind's
    /// drain set it (held when that failed).
    pub fn report(&self, stats: &mut AgentStats) -> Option<u64> {
        stats.program_stats = self.program_stats();
        match self.kernel_stats() {
            Ok(k) => {
                let switches = stats.kernel.switches;
                stats.kernel = KernelStats { switches, ..k };
                self.watches_cgroup_changes()
                    .then_some(stats.kernel.cgroup_changes)
            }
            Err(e) => {
                tracing::debug!(error = %e, "failed to read kernel self-counters");
                None
            }
        }
    }

    /// One self-counter of the programs (`STAT_*`), summed over CPUs. A kind reads its own
    /// slots with it.
    pub fn stat(&self, slot: u32) -> Result<u64, MapError> {
        let map = self.ebpf.map(MAP_STATS).ok_or_else(|| missing(MAP_STATS))?;
        let stats: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        Ok(stats
            .get(&slot, 0)?
            .iter()
            .fold(0u64, |a, v| a.saturating_add(*v)))
    }

    fn kernel_stats(&self) -> Result<KernelStats, MapError> {
        let slot = |i: u32| self.stat(i);
        Ok(KernelStats {
            cpu_map_full: slot(STAT_CPU_MAP_FULL)?,
            cpu_map_full_ns: slot(STAT_CPU_MAP_FULL_NS)?,
            cgroup_read_failed: slot(STAT_CGROUP_READ_FAILED)?,
            switches: 0,
            state_mismatch: slot(STAT_STATE_MISMATCH)?,
            state_mismatch_ns: slot(STAT_STATE_MISMATCH_NS)?,
            runtime_clamped: slot(STAT_RUNTIME_CLAMPED)?,
            runtime_clamped_ns: slot(STAT_RUNTIME_CLAMPED_NS)?,
            tick_stale: slot(STAT_TICK_STALE)?,
            oom_kills: slot(STAT_OOM_KILLS)?,
            oom_events_lost: slot(STAT_OOM_EVENTS_LOST)?,
            oom_marked_only: slot(STAT_OOM_MARKED_ONLY)?,
            oom_uncounted: slot(STAT_OOM_UNCOUNTED)?,
            net_map_full: slot(STAT_NET_MAP_FULL)?,
            net_map_full_bytes: slot(STAT_NET_MAP_FULL_BYTES)?,
            sched_map_full: slot(STAT_SCHED_MAP_FULL)?,
            cgroup_changes: slot(STAT_CGROUP_CHANGES)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key already gone is "not there", whatever way aya says so; other errors stay errors.
    #[test]
    fn a_missing_key_does_not_stop_the_deletions() {
        let sys = |e: std::io::Error| {
            MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_delete_elem",
                io_error: e,
            })
        };
        assert!(matches!(deleted(Ok(())), Ok(true)));
        assert!(matches!(deleted(Err(MapError::KeyNotFound)), Ok(false)));
        let enoent = std::io::Error::from_raw_os_error(2);
        assert!(matches!(deleted(Err(sys(enoent))), Ok(false)));
        let eperm = std::io::Error::from_raw_os_error(1);
        assert!(deleted(Err(sys(eperm))).is_err());
    }
}
