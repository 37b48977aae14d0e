//! Each cgroup's processes from the host's procfs, for an agent that does not share the host's
//! pid namespace (a Swarm task: services cannot join it).
//!
//! `cgroup.procs` and `cgroup.threads` list only the pids the reader's pid namespace has, so
//! there they name nothing outside the agent's own container. The host's procfs mounted at
//! `proc_root` still lists every host process, and each one's `cgroup` file says where it is:
//! one listing and one small read per process a pass gives every cgroup's processes, which the
//! process counts, the thread states and the network namespaces are then read through.
//!
//! The `cgroup` file shows paths relative to the READER's cgroup namespace: a container with a
//! private one (Docker's default on cgroup v2) sees `/` for its own cgroup and `/../<sibling>`
//! for others. Those are resolved from where the agent's own cgroup is in the hierarchy it walks.
use std::{
    collections::HashMap,
    ffi::OsString,
    fs,
    io::Read,
    os::unix::ffi::{OsStrExt, OsStringExt},
    path::{Component, Path, PathBuf},
};

use super::Tree;

/// Processes looked at per pass at most: a listing of /proc and one read each (about 5 µs,
/// measured here), so at most ~0.3 s a pass on a node with this many processes. Those past it
/// are not seen that pass, and counted.
pub const MAX_PROCESSES: usize = 65_536;

pub struct HostPids {
    proc_root: PathBuf,
    /// Where the agent's cgroup namespace is rooted, as the walked hierarchy names it (`/` when
    /// it shares the host's); found at the first pass.
    ns_root: Option<PathBuf>,
    /// This pass: each cgroup (relative path on disk) and its processes, in pid order.
    by_cgroup: HashMap<PathBuf, Vec<u32>>,
    /// Cumulative: processes not placed (vanished, unreadable, over the budget).
    pub skipped: u64,
}

impl HostPids {
    pub fn new(proc_root: PathBuf) -> Self {
        HostPids {
            proc_root,
            ns_root: None,
            by_cgroup: HashMap::new(),
            skipped: 0,
        }
    }

    /// Lists the host's processes and where each is. `procs_of`: a cgroup's own `cgroup.procs`
    /// as the agent reads it, used once to find the agent's own cgroup.
    pub fn scan(&mut self, tree: &Tree, procs_of: impl FnMut(&Path) -> Option<String>) {
        if self.ns_root.is_none() {
            self.ns_root = self.find_ns_root(tree, procs_of);
        }
        self.by_cgroup.clear();
        let Some(ns_root) = &self.ns_root else {
            return;
        };
        let Ok(entries) = fs::read_dir(&self.proc_root) else {
            self.skipped += 1;
            return;
        };
        let mut seen = 0usize;
        let mut buf = Vec::with_capacity(512);
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            seen += 1;
            if seen > MAX_PROCESSES {
                self.skipped += 1;
                continue;
            }
            let shown = read_small(
                &self.proc_root.join(pid.to_string()).join("cgroup"),
                &mut buf,
            )
            .ok()
            .and_then(|()| unified_path(&buf));
            match shown.and_then(|p| resolve(ns_root, &p)) {
                Some(path) => self.by_cgroup.entry(path).or_default().push(pid),
                // Exited meanwhile, or a path outside the walked hierarchy.
                None => self.skipped += 1,
            }
        }
        for pids in self.by_cgroup.values_mut() {
            pids.sort_unstable();
        }
    }

    /// The processes in the cgroup at `rel` itself (not its descendants), as `cgroup.procs`.
    pub fn processes(&self, rel: &Path) -> &[u32] {
        let key = Path::new("/").join(rel);
        self.by_cgroup.get(&key).map_or(&[], Vec::as_slice)
    }

    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    /// `/` when the agent's own `cgroup` file names a path other than `/` (its namespace is the
    /// host's, which names every cgroup in full); otherwise the cgroup of the walked tree whose
    /// `cgroup.procs` lists the agent's own pid (as its namespace numbers it).
    fn find_ns_root(
        &mut self,
        tree: &Tree,
        mut procs_of: impl FnMut(&Path) -> Option<String>,
    ) -> Option<PathBuf> {
        let mut buf = Vec::new();
        let own = read_small(Path::new("/proc/self/cgroup"), &mut buf)
            .ok()
            .and_then(|()| unified_path(&buf))?;
        if own != Path::new("/") {
            return Some(PathBuf::from("/"));
        }
        let me = std::process::id();
        tree.cgroups.iter().find_map(|cg| {
            let rel = tree.fs_rel(cg);
            let text = procs_of(rel)?;
            text.lines()
                .any(|l| l.trim().parse::<u32>() == Ok(me))
                .then(|| Path::new("/").join(rel))
        })
    }
}

fn read_small(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    // A process in many v1 hierarchies has one line each; 4 KiB bounds a hostile mount.
    fs::File::open(path)?.take(4096).read_to_end(buf)?;
    Ok(())
}

/// The cgroup v2 path of a `/proc/<pid>/cgroup`: the `0::` line (present on hybrid hosts too).
pub fn unified_path(text: &[u8]) -> Option<PathBuf> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let path = line.strip_prefix(b"0::")?;
        path.starts_with(b"/")
            .then(|| PathBuf::from(OsString::from_vec(path.to_vec())))
    })
}

/// `shown` (relative to the namespace root, perhaps through `..`) as a path of the walked
/// hierarchy; `None` when it climbs above the hierarchy's root.
pub fn resolve(ns_root: &Path, shown: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in ns_root.components().chain(shown.components()) {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(p) => parts.push(p.as_bytes()),
            Component::Prefix(_) => return None,
        }
    }
    let mut out = PathBuf::from("/");
    for p in parts {
        out.push(std::ffi::OsStr::from_bytes(p));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unified_line_of_a_cgroup_file() {
        let hybrid = b"12:pids:/docker/abc\n1:name=systemd:/docker/abc\n0::/docker/abc\n";
        assert_eq!(unified_path(hybrid), Some(PathBuf::from("/docker/abc")));
        assert_eq!(unified_path(b"0::/\n"), Some(PathBuf::from("/")));
        assert_eq!(unified_path(b"0::relative\n"), None);
        assert_eq!(unified_path(b"garbage"), None);
        assert_eq!(unified_path(b""), None);
    }

    #[test]
    fn paths_through_a_private_namespace() {
        let root = Path::new("/system.slice/docker-me.scope");
        assert_eq!(
            resolve(root, Path::new("/../docker-other.scope")),
            Some(PathBuf::from("/system.slice/docker-other.scope"))
        );
        assert_eq!(resolve(root, Path::new("/")), Some(root.to_path_buf()));
        assert_eq!(
            resolve(root, Path::new("/../../init.scope")),
            Some(PathBuf::from("/init.scope"))
        );
        assert_eq!(resolve(root, Path::new("/../../..")), None);
        assert_eq!(
            resolve(Path::new("/"), Path::new("/docker/abc")),
            Some(PathBuf::from("/docker/abc"))
        );
    }

    #[test]
    fn places_each_host_process_in_its_cgroup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proc = dir.path();
        for (pid, text) in [
            (1, "0::/init.scope\n"),
            (20, "0::/docker/a\n"),
            (10, "5:cpu:/x\n0::/docker/a\n"),
            (30, "0::/../../../escape\n"),
            (40, "no unified line\n"),
        ] {
            let d = proc.join(pid.to_string());
            fs::create_dir_all(&d).expect("mkdir");
            fs::write(d.join("cgroup"), text).expect("write");
        }
        fs::create_dir_all(proc.join("self-not-a-pid")).expect("mkdir");
        let mut h = HostPids::new(proc.to_path_buf());
        h.ns_root = Some(PathBuf::from("/"));
        h.scan(&Tree::default(), |_| None);
        assert_eq!(h.processes(Path::new("/docker/a")), [10, 20]);
        assert_eq!(h.processes(Path::new("docker/a")), [10, 20]);
        assert_eq!(h.processes(Path::new("/init.scope")), [1]);
        assert_eq!(h.processes(Path::new("/docker/none")), [] as [u32; 0]);
        assert_eq!(
            h.skipped, 2,
            "the escaping path and the file without a unified line"
        );
    }

    /// Property: no cgroup file or shown path, however garbled, panics or climbs above `/`.
    #[test]
    fn any_bytes_are_handled() {
        let mut rng = crate::testutil::Rng::new(11);
        let alphabet = b"0:/.\nab";
        for _ in 0..2000 {
            let b = rng.bytes_from(alphabet, 40);
            if let Some(p) = unified_path(&b)
                && let Some(r) = resolve(Path::new("/a/b"), &p)
            {
                assert!(r.starts_with("/"));
                assert!(!r.components().any(|c| c == Component::ParentDir), "{r:?}");
            }
        }
    }
}
