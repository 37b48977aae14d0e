//! Where the cgroup hierarchies are mounted.
//!
//! cgroup v2 is required: the kernel programs key everything by the v2 cgroup id. On a hybrid host
//! (v1 controllers plus a v2 tree at `unified/`), controllers that only exist in v1 (cpu quotas,
//! throttling) are read from the v1 directory at the same relative path, which is where Docker,
//! containerd and systemd put a container in every hierarchy.
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// No cgroup2 tree under the configured root.
    #[error(
        "no cgroup v2 hierarchy under `{0}` (looked for cgroup.controllers there and in unified/); \
         nodetel needs cgroup v2, pure or hybrid"
    )]
    NoCgroup2(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Only cgroup2, mounted at the root: the production norm.
    Unified,
    /// v1 controllers beside a cgroup2 tree at `<root>/unified`.
    Hybrid,
}

#[derive(Clone, Debug)]
pub struct Layout {
    pub mode: Mode,
    /// The cgroup2 mount: cgroup ids and `id` labels are relative to it.
    pub unified: PathBuf,
    /// v1 `cpu` controller mount, on hybrid hosts.
    pub v1_cpu: Option<PathBuf>,
    /// v1 `cpuacct` controller mount, on hybrid hosts.
    pub v1_cpuacct: Option<PathBuf>,
    /// v1 `memory`, `blkio` and `pids` controller mounts, on hybrid hosts.
    pub v1_memory: Option<PathBuf>,
    pub v1_blkio: Option<PathBuf>,
    pub v1_pids: Option<PathBuf>,
    /// v1 `cpuset` controller mount, on hybrid hosts.
    pub v1_cpuset: Option<PathBuf>,
}

impl Layout {
    /// Detects the layout under `root` (normally `/sys/fs/cgroup`; a fixture tree in tests, or the
    /// host's cgroupfs mounted elsewhere in a container).
    pub fn detect(root: &Path) -> Result<Self, LayoutError> {
        if root.join("cgroup.controllers").is_file() {
            return Ok(Layout {
                mode: Mode::Unified,
                unified: root.to_path_buf(),
                v1_cpu: None,
                v1_cpuacct: None,
                v1_memory: None,
                v1_blkio: None,
                v1_pids: None,
                v1_cpuset: None,
            });
        }
        let unified = root.join("unified");
        if !unified.join("cgroup.controllers").is_file() {
            return Err(LayoutError::NoCgroup2(root.display().to_string()));
        }
        Ok(Layout {
            mode: Mode::Hybrid,
            unified,
            v1_cpu: v1_controller(root, "cpu", "cpu.shares"),
            v1_cpuacct: v1_controller(root, "cpuacct", "cpuacct.stat"),
            v1_memory: v1_controller(root, "memory", "memory.usage_in_bytes"),
            v1_blkio: v1_controller(root, "blkio", "blkio.throttle.io_service_bytes"),
            // The pids root has no pids.* files; the directory name is the marker.
            v1_pids: v1_controller(root, "pids", "cgroup.procs"),
            v1_cpuset: v1_controller(root, "cpuset", "cpuset.cpus"),
        })
    }
}

/// Finds the v1 mount holding `controller`, whether mounted alone (`cpu`) or co-mounted
/// (`cpu,cpuacct`), by the presence of one of its files at the mount's top.
fn v1_controller(root: &Path, controller: &str, marker: &str) -> Option<PathBuf> {
    let direct = root.join(controller);
    if direct.join(marker).is_file() {
        return Some(direct);
    }
    let entries = std::fs::read_dir(root).ok()?;
    entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.split(',').any(|c| c == controller))
            && p.join(marker).is_file()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::fixture;

    #[test]
    fn pure_v2() {
        let l = Layout::detect(&fixture("v2")).expect("v2 layout");
        assert_eq!(l.mode, Mode::Unified);
        assert_eq!(l.unified, fixture("v2"));
        assert!(l.v1_cpu.is_none());
    }

    #[test]
    fn hybrid_with_separate_controllers() {
        let root = fixture("hybrid");
        let l = Layout::detect(&root).expect("hybrid layout");
        assert_eq!(l.mode, Mode::Hybrid);
        assert_eq!(l.unified, root.join("unified"));
        assert_eq!(l.v1_cpu, Some(root.join("cpu")));
        assert_eq!(l.v1_cpuacct, Some(root.join("cpuacct")));
        assert_eq!(l.v1_memory, Some(root.join("memory")));
        assert_eq!(l.v1_blkio, Some(root.join("blkio")));
        assert_eq!(l.v1_pids, None, "no pids hierarchy in this fixture");
    }

    #[test]
    fn hybrid_with_comounted_controllers() {
        let root = fixture("hybrid-comounted");
        let l = Layout::detect(&root).expect("hybrid layout");
        assert_eq!(l.v1_cpu, Some(root.join("cpu,cpuacct")));
        assert_eq!(l.v1_cpuacct, Some(root.join("cpu,cpuacct")));
    }

    #[test]
    fn v1_only_is_refused_with_a_reason() {
        let err = Layout::detect(&fixture("v1-only")).expect_err("no cgroup2");
        assert!(err.to_string().contains("needs cgroup v2"), "{err}");
    }
}
