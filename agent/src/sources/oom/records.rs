//! Reading the OOM kill counts and records the kernel programs leave (see agent-ebpf/src/oom.rs).
use std::collections::HashMap;

use aya::{
    Ebpf,
    maps::{MapData, MapError, PerCpuHashMap, RingBuf},
};
use nodetel_common::{MAP_OOM_KILLS, OomKill};

use crate::ebpf::{each_entry, missing};

/// cgroup id -> OOM kills of a victim in that cgroup, summed over CPUs (cumulative).
pub fn drain_counts(ebpf: &Ebpf) -> Result<HashMap<u64, u64>, MapError> {
    let map = ebpf
        .map(MAP_OOM_KILLS)
        .ok_or_else(|| missing(MAP_OOM_KILLS))?;
    let kills: PerCpuHashMap<_, u64, u64> = PerCpuHashMap::try_from(map)?;
    let mut out = HashMap::new();
    each_entry(&kills, |id, per_cpu| {
        out.insert(id, per_cpu.iter().fold(0u64, |a, v| a.saturating_add(*v)));
    })?;
    Ok(out)
}

/// Every kill record written since the last call, oldest first.
pub fn take(ring: &mut RingBuf<MapData>) -> Vec<OomKill> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        match parse_record(&item) {
            Some(k) => out.push(k),
            None => tracing::debug!(len = item.len(), "short OOM record skipped"),
        }
    }
    out
}

pub(crate) fn parse_record(bytes: &[u8]) -> Option<OomKill> {
    if bytes.len() < std::mem::size_of::<OomKill>() {
        return None;
    }
    // SAFETY: the length is checked above, OomKill is plain integers (every bit pattern valid),
    // and read_unaligned makes no alignment assumption about the ring buffer's bytes.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<OomKill>()) })
}

/// A kill's process name: `task->comm` up to its NUL, lossy for non-UTF-8 bytes.
pub fn comm_str(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_names() {
        let k = OomKill {
            time_ns: 5,
            victim_cgroup: 7,
            victim_pid: 42,
            comm: *b"dd\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            ..OomKill::default()
        };
        // SAFETY: reading a plain-integer struct's bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&k as *const OomKill).cast::<u8>(),
                std::mem::size_of::<OomKill>(),
            )
        };
        assert_eq!(parse_record(bytes), Some(k));
        assert_eq!(parse_record(&bytes[..10]), None);
        assert_eq!(comm_str(&k.comm), "dd");
        assert_eq!(comm_str(&[b'x'; 16]), "x".repeat(16));
    }
}
