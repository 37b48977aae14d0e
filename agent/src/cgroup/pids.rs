//! Processes and threads: the `pids` controller (threads and their limit) and `cgroup.procs`.
//!
//! `container_file_descriptors` and `container_sockets` are not provided: the kernel keeps no
//! per-cgroup fd count, and counting means listing `/proc/<pid>/fd` of every process every
//! interval, the walk that has cost kubelets whole cores on busy nodes.
use std::path::Path;

use super::read::{Files, ReadError};
pub use crate::snapshot::cgroup::ProcessStats;

/// `procs_dir`: the v2 directory (every v2 cgroup has `cgroup.procs`); `pids_dir`: where the
/// pids controller's files are (the same directory on v2, the v1 pids hierarchy on hybrid hosts).
pub fn read(
    files: &mut Files,
    procs_dir: &Path,
    pids_dir: Option<&Path>,
) -> Result<ProcessStats, ReadError> {
    let (processes, first_pid) = match files.read(&procs_dir.join("cgroup.procs"))? {
        Some(text) => (
            Some(text.lines().filter(|l| !l.trim().is_empty()).count() as u64),
            parse_first_pid(text),
        ),
        None => (None, None),
    };
    let (threads, threads_max) = match pids_dir {
        Some(dir) => (
            files.u64(dir, "pids.current")?,
            files.limit(dir, "pids.max")?,
        ),
        None => (None, None),
    };
    Ok(ProcessStats {
        processes,
        first_pid,
        threads,
        threads_max,
    })
}

/// The first process listed in `cgroup.procs`, for a reader that needs no count.
pub fn first_pid(files: &mut Files, procs_dir: &Path) -> Result<Option<u32>, ReadError> {
    Ok(files
        .read(&procs_dir.join("cgroup.procs"))?
        .and_then(parse_first_pid))
}

pub(crate) fn parse_first_pid(text: &str) -> Option<u32> {
    text.lines().find_map(|l| l.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::fixture;

    #[test]
    fn counts_procs_and_reads_the_pids_controller() {
        let dir = fixture("v2").join("kubepods.slice/kubepods-burstable.slice");
        let p = read(&mut Files::new(8), &dir, Some(&dir)).expect("read");
        assert_eq!(p.processes, Some(2));
        assert!(p.first_pid.is_some());
        assert_eq!(parse_first_pid("\n 42\n43\n"), Some(42));
        assert_eq!(parse_first_pid("garbage\n"), None);
        assert_eq!(p.threads, Some(7));
        assert_eq!(p.threads_max, Some(u64::MAX));
        let none = read(
            &mut Files::new(8),
            &fixture("v2").join("system.slice"),
            None,
        )
        .expect("read");
        assert_eq!(none, ProcessStats::default());
    }
}
