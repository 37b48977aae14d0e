//! Reading the block I/O maps (see agent-ebpf/src/blkio.rs).
use std::collections::HashMap;

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapError, PerCpuHashMap},
};
use nodetel_common::{
    BLKIO_BUCKETS, BlkioBucket, BlkioInFlight, BlkioKey, MAP_BLKIO_HIST, MAP_BLKIO_INFLIGHT,
};

use crate::ebpf::{deleted, each_entry, missing};

/// One cgroup's bios on one disk for one operation, summed over CPUs (cumulative).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpTotals {
    pub count: u64,
    pub bytes: u64,
    pub latency_ns: u64,
    /// The part of `latency_ns` before the request was issued.
    pub queue_ns: u64,
    /// Per bucket, `BLKIO_BUCKETS` long.
    pub buckets: Vec<u64>,
}

impl Default for OpTotals {
    fn default() -> Self {
        OpTotals {
            count: 0,
            bytes: 0,
            latency_ns: 0,
            queue_ns: 0,
            buckets: vec![0; BLKIO_BUCKETS as usize],
        }
    }
}

/// (cgroup id in the io controller's hierarchy, disk as `major << 20 | minor`, operation).
pub type OpKey = (u64, u32, u16);

/// One drain of the histogram map.
#[derive(Clone, Debug, Default)]
pub struct BlkioDrain {
    pub ops: HashMap<OpKey, OpTotals>,
    /// Entries of the map at the drain, and the buckets each key used (to delete them).
    pub entries: u64,
    pub used: HashMap<OpKey, Vec<u16>>,
}

impl BlkioDrain {
    fn add(&mut self, key: BlkioKey, v: BlkioBucket) {
        let slot = usize::from(key.bucket);
        if slot >= BLKIO_BUCKETS as usize {
            return;
        }
        let k = (key.cgroup_id, key.dev, key.op);
        let t = self.ops.entry(k).or_default();
        t.count = t.count.saturating_add(v.count);
        t.bytes = t.bytes.saturating_add(v.bytes);
        t.latency_ns = t.latency_ns.saturating_add(v.latency_ns);
        t.queue_ns = t.queue_ns.saturating_add(v.queue_ns);
        t.buckets[slot] = t.buckets[slot].saturating_add(v.count);
        self.used.entry(k).or_default().push(key.bucket);
    }
}

pub fn drain(ebpf: &Ebpf) -> Result<BlkioDrain, MapError> {
    let map = ebpf
        .map(MAP_BLKIO_HIST)
        .ok_or_else(|| missing(MAP_BLKIO_HIST))?;
    let hist: PerCpuHashMap<_, BlkioKey, BlkioBucket> = PerCpuHashMap::try_from(map)?;
    let mut out = BlkioDrain::default();
    each_entry(&hist, |key, per_cpu| {
        out.entries += 1;
        let sum = per_cpu
            .iter()
            .fold(BlkioBucket::default(), |a, v| BlkioBucket {
                count: a.count.saturating_add(v.count),
                bytes: a.bytes.saturating_add(v.bytes),
                latency_ns: a.latency_ns.saturating_add(v.latency_ns),
                queue_ns: a.queue_ns.saturating_add(v.queue_ns),
            });
        out.add(key, sum);
    })?;
    Ok(out)
}

/// Deletes every histogram entry of the given keys. Returns how many.
pub fn forget(ebpf: &mut Ebpf, keys: &[OpKey], drain: &BlkioDrain) -> Result<usize, MapError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let map = ebpf
        .map_mut(MAP_BLKIO_HIST)
        .ok_or_else(|| missing(MAP_BLKIO_HIST))?;
    let mut hist: PerCpuHashMap<_, BlkioKey, BlkioBucket> = PerCpuHashMap::try_from(map)?;
    let mut removed = 0;
    for k in keys {
        for bucket in drain.used.get(k).into_iter().flatten() {
            let key = BlkioKey {
                cgroup_id: k.0,
                dev: k.1,
                op: k.2,
                bucket: *bucket,
            };
            removed += usize::from(deleted(hist.remove(&key))?);
        }
    }
    Ok(removed)
}

/// Deletes in-flight entries submitted more than `max_age_ns` before `now_ns` (CLOCK_MONOTONIC):
/// bios whose completion was never seen (a device removed mid-flight, a completion path that is
/// not traced). Returns (entries left, entries deleted).
pub fn prune_in_flight(
    ebpf: &mut Ebpf,
    now_ns: u64,
    max_age_ns: u64,
) -> Result<(u64, u64), MapError> {
    let map = ebpf
        .map_mut(MAP_BLKIO_INFLIGHT)
        .ok_or_else(|| missing(MAP_BLKIO_INFLIGHT))?;
    let mut in_flight: BpfHashMap<_, u64, BlkioInFlight> = BpfHashMap::try_from(map)?;
    let mut stale = Vec::new();
    let mut left = 0u64;
    for item in in_flight.iter() {
        match item {
            Ok((bio, e)) if now_ns.saturating_sub(e.submitted_ns) > max_age_ns => stale.push(bio),
            Ok(_) => left += 1,
            // Completed (deleted) between "next key" and "lookup".
            Err(MapError::KeyNotFound) => continue,
            Err(e) => return Err(e),
        }
    }
    let mut pruned = 0;
    for bio in stale {
        pruned += u64::from(deleted(in_flight.remove(&bio))?);
    }
    Ok((left, pruned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_sum_into_the_operation_totals() {
        let mut d = BlkioDrain::default();
        let key = |op, bucket| BlkioKey {
            cgroup_id: 7,
            dev: 254 << 20,
            op,
            bucket,
        };
        let v = |count, bytes, latency_ns, queue_ns| BlkioBucket {
            count,
            bytes,
            latency_ns,
            queue_ns,
        };
        d.add(key(0, 5), v(3, 12_288, 60_000, 6_000));
        d.add(key(0, 15), v(1, 4096, 20_000_000, 1_000));
        d.add(key(1, 5), v(2, 8192, 40_000, 0));
        // A bucket past the histogram is dropped, not a panic.
        d.add(key(0, BLKIO_BUCKETS as u16), v(9, 9, 9, 9));
        let read = &d.ops[&(7, 254 << 20, 0)];
        assert_eq!(
            (read.count, read.bytes, read.latency_ns, read.queue_ns),
            (4, 16_384, 20_060_000, 7_000)
        );
        assert_eq!((read.buckets[5], read.buckets[15]), (3, 1));
        assert_eq!(d.ops[&(7, 254 << 20, 1)].count, 2);
        assert_eq!(d.used[&(7, 254 << 20, 0)], vec![5, 15]);
    }
}
