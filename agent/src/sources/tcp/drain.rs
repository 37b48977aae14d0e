//! Reading the TCP maps (see agent-ebpf/src/tcp.rs): event counters and round-trip histograms
//! per socket cgroup, summed over CPUs.
use std::collections::HashMap;

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapError, PerCpuHashMap},
};
use nodetel_common::{
    HistKey, MAP_TCP_COUNTERS, MAP_TCP_ESTABLISHED, MAP_TCP_RTT, TCP_RTT_BUCKETS, TCP_TOMBSTONE,
    TcpCounters, TcpRttBucket,
};

use crate::ebpf::{deleted, each_entry, missing};

/// One cgroup's round trips (cumulative).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rtt {
    /// Per bucket, `TCP_RTT_BUCKETS` long.
    pub buckets: Vec<u64>,
    pub sum_us: u64,
    pub count: u64,
    /// The buckets the map holds for the cgroup (to delete them).
    pub used: Vec<u32>,
}

impl Default for Rtt {
    fn default() -> Self {
        Rtt {
            buckets: vec![0; TCP_RTT_BUCKETS as usize],
            sum_us: 0,
            count: 0,
            used: Vec::new(),
        }
    }
}

/// One drain of both maps, by socket cgroup id.
#[derive(Clone, Debug, Default)]
pub struct TcpDrain {
    pub counters: HashMap<u64, TcpCounters>,
    pub rtt: HashMap<u64, Rtt>,
    /// Entries of both maps at the drain.
    pub entries: u64,
}

impl TcpDrain {
    fn add_rtt(&mut self, key: HistKey, v: TcpRttBucket) {
        let slot = key.bucket as usize;
        if slot >= TCP_RTT_BUCKETS as usize {
            return;
        }
        let r = self.rtt.entry(key.cgroup_id).or_default();
        r.buckets[slot] = r.buckets[slot].saturating_add(v.count);
        r.sum_us = r.sum_us.saturating_add(v.rtt_us);
        r.count = r.count.saturating_add(v.count);
        r.used.push(key.bucket);
    }
}

pub fn drain(ebpf: &Ebpf) -> Result<TcpDrain, MapError> {
    let mut out = TcpDrain::default();
    let map = ebpf
        .map(MAP_TCP_COUNTERS)
        .ok_or_else(|| missing(MAP_TCP_COUNTERS))?;
    let counters: PerCpuHashMap<_, u64, TcpCounters> = PerCpuHashMap::try_from(map)?;
    each_entry(&counters, |id, per_cpu| {
        out.entries += 1;
        out.counters.insert(id, sum_counters(per_cpu));
    })?;
    let map = ebpf.map(MAP_TCP_RTT).ok_or_else(|| missing(MAP_TCP_RTT))?;
    let rtt: PerCpuHashMap<_, HistKey, TcpRttBucket> = PerCpuHashMap::try_from(map)?;
    each_entry(&rtt, |key, per_cpu| {
        let v = per_cpu
            .iter()
            .fold(TcpRttBucket::default(), |a, v| TcpRttBucket {
                count: a.count.saturating_add(v.count),
                rtt_us: a.rtt_us.saturating_add(v.rtt_us),
            });
        out.entries += 1;
        out.add_rtt(key, v);
    })?;
    Ok(out)
}

pub fn sum_counters(per_cpu: &[TcpCounters]) -> TcpCounters {
    per_cpu.iter().fold(TcpCounters::default(), |mut a, v| {
        for (a, v) in a.counts.iter_mut().zip(v.counts) {
            *a = a.saturating_add(v);
        }
        a
    })
}

/// Ends the seed of the established count (agent-ebpf/src/tcp.rs): the walking mark (key 0) is
/// removed, then the tombstones connections left while it walked. Returns how many tombstones.
pub fn end_seed(ebpf: &mut Ebpf) -> Result<u64, MapError> {
    let map = ebpf
        .map_mut(MAP_TCP_ESTABLISHED)
        .ok_or_else(|| missing(MAP_TCP_ESTABLISHED))?;
    let mut sockets: BpfHashMap<_, u64, u64> = BpfHashMap::try_from(map)?;
    deleted(sockets.remove(&0))?;
    let tombs: Vec<u64> = sockets
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, cgroup)| *cgroup == TCP_TOMBSTONE)
        .map(|(sk, _)| sk)
        .collect();
    let mut removed = 0;
    for sk in tombs {
        removed += u64::from(deleted(sockets.remove(&sk))?);
    }
    Ok(removed)
}

/// Deletes both maps' entries of the given cgroups. Returns how many.
pub fn forget(ebpf: &mut Ebpf, ids: &[u64], drain: &TcpDrain) -> Result<u64, MapError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let mut removed = 0;
    let map = ebpf
        .map_mut(MAP_TCP_COUNTERS)
        .ok_or_else(|| missing(MAP_TCP_COUNTERS))?;
    let mut counters: PerCpuHashMap<_, u64, TcpCounters> = PerCpuHashMap::try_from(map)?;
    for id in ids {
        removed += u64::from(deleted(counters.remove(id))?);
    }
    let map = ebpf
        .map_mut(MAP_TCP_RTT)
        .ok_or_else(|| missing(MAP_TCP_RTT))?;
    let mut rtt: PerCpuHashMap<_, HistKey, TcpRttBucket> = PerCpuHashMap::try_from(map)?;
    for id in ids {
        for bucket in drain.rtt.get(id).map(|r| r.used.as_slice()).unwrap_or(&[]) {
            let key = HistKey {
                cgroup_id: *id,
                bucket: *bucket,
                _pad: 0,
            };
            removed += u64::from(deleted(rtt.remove(&key))?);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_buckets_sum_per_cgroup() {
        let mut d = TcpDrain::default();
        let key = |cgroup_id, bucket| HistKey {
            cgroup_id,
            bucket,
            _pad: 0,
        };
        let v = |count, rtt_us| TcpRttBucket { count, rtt_us };
        d.add_rtt(key(7, 17), v(3, 300_000));
        d.add_rtt(key(7, 5), v(1, 20));
        d.add_rtt(key(8, 17), v(2, 200_000));
        // A bucket past the histogram is dropped, not a panic.
        d.add_rtt(key(7, TCP_RTT_BUCKETS), v(9, 9));
        let r = &d.rtt[&7];
        assert_eq!((r.count, r.sum_us), (4, 300_020));
        assert_eq!((r.buckets[17], r.buckets[5]), (3, 1));
        assert_eq!(r.used, vec![17, 5]);
        assert_eq!(d.rtt[&8].count, 2);
    }
}
