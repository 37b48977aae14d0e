//! Reading the kernel maps once per interval.
//!
//! A cgroup's CPU time is what the map holds, plus what a CPU's run state holds pending for it
//! (see `nodetel_common::Pending`), plus the slice in flight. The map and the run states cannot be
//! read atomically together, and a switch during the read moves time from "in flight" to
//! "pending", and from "pending" to the map. Read in the naive order, a flush can be in neither
//! read: a long-running task switched out during the drain lost its whole slice for one pass
//! (seen: 42 ms under QEMU). So each CPU's state is read before and after the map; where it
//! changed, the cgroup that was pending before is re-read from the map after the switch. A CPU
//! that switches again during that fix-up adds no fix-up and no in-flight time: the drain may then
//! fall short by a slice (the accountant's monotonic guard holds the counter and the next drain
//! has it), but never counts time twice.
use std::collections::{HashMap, HashSet};

use aya::maps::{MapError, PerCpuArray, PerCpuHashMap};
use nodetel_common::{
    MAP_CPU_NS, MAP_RUNNING, MAP_STATS, RunState, STAT_CGROUP_CHANGES, STAT_CGROUP_READ_FAILED,
    STAT_CPU_MAP_FULL, STAT_CPU_MAP_FULL_NS, STAT_NET_MAP_FULL, STAT_NET_MAP_FULL_BYTES,
    STAT_OOM_EVENTS_LOST, STAT_OOM_KILLS, STAT_OOM_MARKED_ONLY, STAT_OOM_UNCOUNTED,
    STAT_RUNTIME_CLAMPED, STAT_RUNTIME_CLAMPED_NS, STAT_SCHED_MAP_FULL, STAT_STATE_MISMATCH,
    STAT_STATE_MISMATCH_NS, STAT_TICK_STALE,
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
    /// Context switches seen by the program, all CPUs (cumulative; kept in the run state, which
    /// the drain reads anyway).
    pub switches: u64,
}

/// The programs' own counters, summed over CPUs (cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub cpu_map_full: u64,
    pub cpu_map_full_ns: u64,
    pub cgroup_read_failed: u64,
    /// Filled from the CPU drain ([`CpuDrain::switches`]), not by `kernel_stats`.
    pub switches: u64,
    pub state_mismatch: u64,
    pub state_mismatch_ns: u64,
    /// Switch-outs whose runtime delta was not trusted, and the ns it exceeded the elapsed time.
    pub runtime_clamped: u64,
    pub runtime_clamped_ns: u64,
    /// Switch-outs whose tick-dated clock was stale (the precise clock read instead).
    pub tick_stale: u64,
    pub oom_kills: u64,
    pub oom_events_lost: u64,
    pub oom_marked_only: u64,
    pub oom_uncounted: u64,
    pub net_map_full: u64,
    pub net_map_full_bytes: u64,
    pub sched_map_full: u64,
    pub cgroup_changes: u64,
}

/// The outcome of deleting one map key: whether it was there. aya 0.14 reports a missing key
/// on delete as a failed `bpf_map_delete_elem` (ENOENT), not as `KeyNotFound`; counted as an
/// error, the first key already gone stopped every deletion after it (measured: 14,770 stale
/// scheduler entries after two churns of 10,000 cgroups).
pub(super) fn deleted(r: Result<(), MapError>) -> Result<bool, MapError> {
    match r {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

pub(super) fn missing(name: &str) -> MapError {
    MapError::InvalidName {
        name: name.to_string(),
    }
}

/// Calls `f` with each entry of a per-CPU hash and its per-CPU values. A key deleted between
/// "next key" and "lookup" belongs to a cgroup being forgotten and is skipped.
pub(super) fn each_entry<T, K, V>(
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
    pub fn drain_cpu(&self) -> Result<CpuDrain, MapError> {
        let map = self
            .ebpf
            .map(MAP_RUNNING)
            .ok_or_else(|| missing(MAP_RUNNING))?;
        let running: PerCpuArray<_, RunState> = PerCpuArray::try_from(map)?;
        let map = self
            .ebpf
            .map(MAP_CPU_NS)
            .ok_or_else(|| missing(MAP_CPU_NS))?;
        let cpu_ns: PerCpuHashMap<_, u64, u64> = PerCpuHashMap::try_from(map)?;

        let before = running.get(&0, 0)?;
        let watched: HashSet<u64> = before.iter().map(|s| s.pending.cgroup_id).collect();
        let mut watched_per_cpu: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut out = CpuDrain::default();
        each_entry(&cpu_ns, |id, per_cpu| {
            let total = per_cpu.iter().fold(0u64, |a, v| a.saturating_add(*v));
            out.committed.insert(id, total);
            if watched.contains(&id) {
                watched_per_cpu.insert(id, per_cpu.to_vec());
            }
        })?;
        let after = running.get(&0, 0)?;
        let now = monotonic_ns();
        // What each CPU has not written to the map yet is part of its cgroup's total.
        for s in after.iter() {
            if s.pending.cgroup_id != 0 && s.pending.cpu_ns != 0 {
                *out.committed.entry(s.pending.cgroup_id).or_default() += s.pending.cpu_ns;
            }
        }
        // Fix-ups below re-read the map: a CPU that switched after `after` was read may have
        // flushed `after`'s pending time into what they read, and it is counted above, so such a
        // CPU gets no fix-up and no in-flight time.
        let mut fresh_reads = Vec::new();
        for (cpu, (s1, s2)) in before.iter().zip(after.iter()).enumerate() {
            let flushed = s1.pending.cgroup_id;
            if s1 == s2 || flushed == 0 {
                continue;
            }
            // This CPU switched during the read and may have flushed s1's pending time into the
            // map after its key was read.
            let fresh = match cpu_ns.get(&flushed, 0) {
                Ok(v) => v.get(cpu).copied().unwrap_or(0),
                Err(MapError::KeyNotFound) => 0,
                Err(e) => return Err(e),
            };
            let seen = watched_per_cpu
                .get(&flushed)
                .and_then(|v| v.get(cpu).copied())
                .unwrap_or(0);
            fresh_reads.push((cpu, flushed, fresh.saturating_sub(seen)));
        }
        let last = running.get(&0, 0)?;
        out.switches = last.iter().fold(0u64, |a, s| a.saturating_add(s.switches));
        let trusted: Vec<bool> = after
            .iter()
            .zip(last.iter())
            .map(|(s2, s3)| s2 == s3)
            .collect();
        for (cpu, id, more) in fresh_reads {
            if more > 0 && trusted.get(cpu).copied().unwrap_or(false) {
                *out.committed.entry(id).or_default() += more;
            }
        }
        for (s, ok) in after.iter().zip(trusted) {
            if !ok || s.cgroup_id == 0 || s.pid == 0 || s.since_ns == 0 {
                continue;
            }
            // bpf_ktime_get_ns and CLOCK_MONOTONIC are one clock; a switch racing this read can
            // leave `since` a hair ahead of `now`, which must count as zero, not wrap. `since` is
            // up to a tick early (see agent-ebpf/src/cpu.rs): the in-flight part is then up to a
            // tick too long, until the next commit replaces it with the scheduler's figure.
            let ns = now.saturating_sub(s.since_ns);
            *out.in_flight.entry(s.cgroup_id).or_default() += ns;
        }
        Ok(out)
    }

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
