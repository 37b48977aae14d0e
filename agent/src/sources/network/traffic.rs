//! Reading the per-cgroup traffic counters (see agent-ebpf/src/net.rs).
use std::collections::HashMap;

use aya::{
    Ebpf,
    maps::{MapError, PerCpuHashMap},
};
use nodetel_common::{MAP_NET_TRAFFIC, NET_EGRESS, NET_INGRESS, NetCounters, NetKey};

use super::reader::TrafficEntry;
use crate::ebpf::{deleted, each_entry, missing};

/// One cgroup's traffic through one device, both directions (cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceTraffic {
    /// The socket's network namespace (inode number; 0 when the kernel could not tell).
    pub netns: u32,
    /// Index of the device in that namespace.
    pub ifindex: u32,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// cgroup id -> its traffic per device, sorted by namespace and ifindex.
pub type Traffic = HashMap<u64, Vec<DeviceTraffic>>;

/// Sums the traffic map over CPUs; also how many entries it held.
pub fn drain(ebpf: &Ebpf) -> Result<(Traffic, u64), MapError> {
    let map = ebpf
        .map(MAP_NET_TRAFFIC)
        .ok_or_else(|| missing(MAP_NET_TRAFFIC))?;
    let traffic: PerCpuHashMap<_, NetKey, NetCounters> = PerCpuHashMap::try_from(map)?;
    let mut out = Traffic::new();
    let mut entries = 0;
    each_entry(&traffic, |key, per_cpu| {
        entries += 1;
        let sum = per_cpu
            .iter()
            .fold(NetCounters::default(), |a, v| NetCounters {
                bytes: a.bytes.saturating_add(v.bytes),
                packets: a.packets.saturating_add(v.packets),
            });
        add(&mut out, key, sum);
    })?;
    for devices in out.values_mut() {
        devices.sort_by_key(|d| (d.netns, d.ifindex));
    }
    Ok((out, entries))
}

/// Deletes the given traffic entries, both directions of each. Returns how many were
/// deleted.
pub fn forget(ebpf: &mut Ebpf, entries: &[TrafficEntry]) -> Result<usize, MapError> {
    if entries.is_empty() {
        return Ok(0);
    }
    let map = ebpf
        .map_mut(MAP_NET_TRAFFIC)
        .ok_or_else(|| missing(MAP_NET_TRAFFIC))?;
    let mut map: PerCpuHashMap<_, NetKey, NetCounters> = PerCpuHashMap::try_from(map)?;
    let mut removed = 0;
    for e in entries {
        for direction in [NET_INGRESS, NET_EGRESS] {
            let key = NetKey {
                cgroup_id: e.cgroup_id,
                netns: e.netns,
                ifindex: e.ifindex,
                direction,
                _pad: 0,
            };
            removed += usize::from(deleted(map.remove(&key))?);
        }
    }
    Ok(removed)
}

/// Every entry of the given cgroups (removed ones).
pub fn entries_of(traffic: &Traffic, cgroups: &[u64]) -> Vec<TrafficEntry> {
    cgroups
        .iter()
        .flat_map(|id| {
            traffic.get(id).into_iter().flatten().map(|d| TrafficEntry {
                cgroup_id: *id,
                netns: d.netns,
                ifindex: d.ifindex,
            })
        })
        .collect()
}

/// The same traffic with each cgroup's devices re-keyed to `into(cgroup)` (rows of one device
/// merged): folded cgroups shown as their exported ancestor.
pub fn fold(traffic: &Traffic, into: impl Fn(u64) -> u64) -> Traffic {
    let mut out = Traffic::new();
    for (id, devices) in traffic {
        let rows = out.entry(into(*id)).or_default();
        for d in devices {
            match rows
                .iter_mut()
                .find(|r| r.netns == d.netns && r.ifindex == d.ifindex)
            {
                Some(r) => {
                    r.rx_bytes = r.rx_bytes.saturating_add(d.rx_bytes);
                    r.rx_packets = r.rx_packets.saturating_add(d.rx_packets);
                    r.tx_bytes = r.tx_bytes.saturating_add(d.tx_bytes);
                    r.tx_packets = r.tx_packets.saturating_add(d.tx_packets);
                }
                None => rows.push(*d),
            }
        }
    }
    for devices in out.values_mut() {
        devices.sort_by_key(|d| (d.netns, d.ifindex));
    }
    out
}

fn add(out: &mut Traffic, key: NetKey, c: NetCounters) {
    let devices = out.entry(key.cgroup_id).or_default();
    let i = match devices
        .iter()
        .position(|d| d.ifindex == key.ifindex && d.netns == key.netns)
    {
        Some(i) => i,
        None => {
            devices.push(DeviceTraffic {
                netns: key.netns,
                ifindex: key.ifindex,
                ..DeviceTraffic::default()
            });
            devices.len() - 1
        }
    };
    let d = &mut devices[i];
    if key.direction == NET_EGRESS {
        d.tx_bytes = c.bytes;
        d.tx_packets = c.packets;
    } else {
        d.rx_bytes = c.bytes;
        d.rx_packets = c.packets;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_of_one_device_merge() {
        let mut t = Traffic::new();
        let key = |ifindex, direction| NetKey {
            cgroup_id: 7,
            netns: 4026531840,
            ifindex,
            direction,
            _pad: 0,
        };
        let c = |bytes, packets| NetCounters { bytes, packets };
        add(&mut t, key(2, NET_EGRESS), c(100, 2));
        add(&mut t, key(1, NET_INGRESS), c(50, 1));
        add(&mut t, key(2, NET_INGRESS), c(300, 3));
        let d = &t[&7];
        assert_eq!(d.len(), 2);
        let eth = d.iter().find(|d| d.ifindex == 2).expect("ifindex 2");
        assert_eq!(
            (eth.rx_bytes, eth.rx_packets, eth.tx_bytes, eth.tx_packets),
            (300, 3, 100, 2)
        );
    }
}
