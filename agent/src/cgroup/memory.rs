//! The memory controller: usage and its breakdown, events, and limits (spec).
//!
//! cAdvisor's semantics, per version: on v2 `memory.stat` is hierarchical and uses the new key
//! names (`anon`, `file`, `file_mapped`); on v1 the hierarchical figures are the `total_*` keys
//! (every modern kernel forces `use_hierarchy`). The working set is usage minus inactive file
//! pages, floored at 0: the number kubelet evicts on and `kubectl top` shows.
use std::path::Path;

use super::read::{Files, ReadError};
pub use crate::snapshot::cgroup::{MemorySpec, MemoryStats};

impl MemoryStats {
    /// usage - inactive_file, floored at 0 (cAdvisor: the inactive file pages can be reclaimed
    /// without pressure, so they are not "in use").
    pub fn working_set(&self) -> Option<u64> {
        let usage = self.usage?;
        Some(usage.saturating_sub(self.inactive_file.unwrap_or(0)))
    }
}

/// Reads a cgroup v2 directory. The root has no `memory.current`: its usage is the machine's,
/// from `/proc/meminfo`, which the caller passes as `root_usage` (as runc does for cAdvisor).
pub fn read_v2(
    files: &mut Files,
    dir: &Path,
    root_usage: Option<MachineUsage>,
) -> Result<MemoryStats, ReadError> {
    let mut m = MemoryStats {
        usage: files.u64(dir, "memory.current")?,
        max_usage: files.u64(dir, "memory.peak")?,
        swap: files.u64(dir, "memory.swap.current")?,
        ..MemoryStats::default()
    };
    if m.usage.is_none()
        && let Some(machine) = root_usage
    {
        m.usage = Some(machine.used);
        m.swap = Some(machine.swap_used);
    }
    files.flat_keyed(dir, "memory.stat", |k, v| match k {
        "file" => m.cache = Some(v),
        "anon" => m.rss = Some(v),
        "file_mapped" => m.mapped_file = Some(v),
        "kernel" => m.kernel = Some(v),
        "active_file" => m.active_file = Some(v),
        "inactive_file" => m.inactive_file = Some(v),
        // v2 memory.stat is already hierarchical: both scopes are the same figure.
        "pgfault" => {
            m.pgfault = Some(v);
            m.pgfault_hierarchy = Some(v);
        }
        "pgmajfault" => {
            m.pgmajfault = Some(v);
            m.pgmajfault_hierarchy = Some(v);
        }
        "file_dirty" => m.file_dirty = Some(v),
        "file_writeback" => m.file_writeback = Some(v),
        "pgscan" => m.pgscan = Some(v),
        "pgsteal" => m.pgsteal = Some(v),
        "workingset_refault_file" => m.workingset_refault_file = Some(v),
        "workingset_refault_anon" => m.workingset_refault_anon = Some(v),
        _ => {}
    })?;
    files.flat_keyed(dir, "memory.events", |k, v| match k {
        "high" => m.events_high = Some(v),
        // v2 has no failcnt file; "max" counts the same thing: usage hitting the limit.
        "max" => {
            m.events_max = Some(v);
            m.failcnt = Some(v);
        }
        _ => {}
    })?;
    Ok(m)
}

/// Reads v2 limits; absent in the root and where the memory controller is off.
pub fn read_v2_spec(files: &mut Files, dir: &Path) -> Result<MemorySpec, ReadError> {
    Ok(MemorySpec {
        limit: files.limit(dir, "memory.max")?,
        swap_limit: files.limit(dir, "memory.swap.max")?,
        reservation: files.limit(dir, "memory.min")?,
    })
}

/// Reads a v1 memory controller directory.
pub fn read_v1(files: &mut Files, dir: &Path) -> Result<MemoryStats, ReadError> {
    let mut m = MemoryStats {
        usage: files.u64(dir, "memory.usage_in_bytes")?,
        max_usage: files.u64(dir, "memory.max_usage_in_bytes")?,
        failcnt: files.u64(dir, "memory.failcnt")?,
        kernel: files.u64(dir, "memory.kmem.usage_in_bytes")?,
        ..MemoryStats::default()
    };
    files.flat_keyed(dir, "memory.stat", |k, v| match k {
        "total_cache" => m.cache = Some(v),
        "total_rss" => m.rss = Some(v),
        "total_swap" => m.swap = Some(v),
        "total_mapped_file" => m.mapped_file = Some(v),
        "total_active_file" => m.active_file = Some(v),
        "total_inactive_file" => m.inactive_file = Some(v),
        "pgfault" => m.pgfault = Some(v),
        "pgmajfault" => m.pgmajfault = Some(v),
        "total_pgfault" => m.pgfault_hierarchy = Some(v),
        "total_pgmajfault" => m.pgmajfault_hierarchy = Some(v),
        _ => {}
    })?;
    Ok(m)
}

pub fn read_v1_spec(files: &mut Files, dir: &Path) -> Result<MemorySpec, ReadError> {
    Ok(MemorySpec {
        limit: files.u64(dir, "memory.limit_in_bytes")?,
        swap_limit: files.u64(dir, "memory.memsw.limit_in_bytes")?,
        reservation: files.u64(dir, "memory.soft_limit_in_bytes")?,
    })
}

/// The machine's memory in use, for the v2 root cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineUsage {
    pub used: u64,
    pub swap_used: u64,
}

/// `MemTotal - MemFree` and `SwapTotal - SwapFree` from `/proc/meminfo` text (kB lines).
pub fn parse_meminfo_usage(text: &str) -> Option<MachineUsage> {
    let kb = |key: &str| crate::machine::meminfo_kb(text, key).map(|v| v.saturating_mul(1024));
    Some(MachineUsage {
        used: kb("MemTotal")?.saturating_sub(kb("MemFree")?),
        swap_used: kb("SwapTotal")
            .unwrap_or(0)
            .saturating_sub(kb("SwapFree").unwrap_or(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::fixture;

    #[test]
    fn v2_container_from_fixture() {
        let dir = fixture("v2").join("kubepods.slice/kubepods-burstable.slice");
        let m = read_v2(&mut Files::new(8), &dir, None).expect("read");
        assert_eq!(m.usage, Some(157_286_400));
        assert_eq!(m.max_usage, Some(209_715_200));
        assert_eq!(m.rss, Some(104_857_600));
        assert_eq!(m.cache, Some(41_943_040));
        assert_eq!(m.inactive_file, Some(31_457_280));
        assert_eq!(m.working_set(), Some(157_286_400 - 31_457_280));
        assert_eq!(m.kernel, Some(5_242_880));
        assert_eq!(m.swap, Some(0));
        assert_eq!(
            (m.events_high, m.events_max, m.failcnt),
            (Some(2), Some(1), Some(1))
        );
        assert_eq!(m.pgfault, m.pgfault_hierarchy);
        assert_eq!(m.workingset_refault_file, Some(17));
        let spec = read_v2_spec(&mut Files::new(8), &dir).expect("spec");
        assert_eq!(spec.limit, Some(268_435_456));
        assert_eq!(spec.swap_limit, Some(u64::MAX));
        assert_eq!(spec.reservation, Some(0));
    }

    #[test]
    fn v2_root_takes_usage_from_meminfo() {
        let machine = parse_meminfo_usage(
            "MemTotal:        1000 kB\nMemFree:          400 kB\nSwapTotal:  0 kB\nSwapFree: 0 kB\n",
        )
        .expect("meminfo");
        assert_eq!(machine.used, 600 * 1024);
        let m = read_v2(&mut Files::new(8), &fixture("v2"), Some(machine)).expect("root");
        assert_eq!(m.usage, Some(600 * 1024));
        assert!(m.working_set().is_some());
        // And a cgroup without the controller has no memory figures at all.
        let none = read_v2(
            &mut Files::new(8),
            &fixture("v2").join("system.slice"),
            None,
        )
        .expect("read");
        assert_eq!(none, MemoryStats::default());
        assert_eq!(none.working_set(), None);
    }

    #[test]
    fn v1_uses_hierarchical_keys() {
        let dir = fixture("hybrid").join("memory/docker/abc");
        let m = read_v1(&mut Files::new(8), &dir).expect("read");
        assert_eq!(m.usage, Some(73_400_320));
        assert_eq!(m.rss, Some(52_428_800)); // total_rss, not rss
        assert_eq!(m.cache, Some(20_971_520));
        assert_eq!(m.working_set(), Some(73_400_320 - 10_485_760));
        assert_eq!(m.failcnt, Some(3));
        assert_eq!(m.kernel, Some(1_048_576));
        assert_eq!(m.pgfault, Some(100));
        assert_eq!(m.pgfault_hierarchy, Some(150));
        assert_eq!(m.events_max, None, "v1 has no memory.events");
        let spec = read_v1_spec(&mut Files::new(8), &dir).expect("spec");
        assert_eq!(spec.limit, Some(134_217_728));
        assert_eq!(spec.swap_limit, Some(9_223_372_036_854_771_712));
    }

    #[test]
    fn working_set_floors_at_zero() {
        let m = MemoryStats {
            usage: Some(10),
            inactive_file: Some(20),
            ..MemoryStats::default()
        };
        assert_eq!(m.working_set(), Some(0));
    }

    #[test]
    fn garbled_memory_files_are_errors_not_zeroes() {
        let dir = fixture("garbled");
        assert!(read_v2(&mut Files::new(8), &dir, None).is_err());
        assert!(parse_meminfo_usage("MemTotal: lots\n").is_none());
    }
}
