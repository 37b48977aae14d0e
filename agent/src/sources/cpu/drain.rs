//! Reading the CPU maps once per interval.
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

use aya::{
    Ebpf,
    maps::{MapError, PerCpuArray, PerCpuHashMap},
};
use nodetel_common::{MAP_CPU_NS, MAP_RUNNING, RunState};

use crate::ebpf::{each_entry, missing, monotonic_ns};

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

pub fn drain(ebpf: &Ebpf) -> Result<CpuDrain, MapError> {
    let map = ebpf.map(MAP_RUNNING).ok_or_else(|| missing(MAP_RUNNING))?;
    let running: PerCpuArray<_, RunState> = PerCpuArray::try_from(map)?;
    let map = ebpf.map(MAP_CPU_NS).ok_or_else(|| missing(MAP_CPU_NS))?;
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
