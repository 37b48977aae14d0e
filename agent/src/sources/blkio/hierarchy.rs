//! Which cgroup a bio's charge names. The kernel charges a bio to a cgroup of the hierarchy that
//! holds the io controller: the v2 tree (ids are the ones every other kind uses), or, on a hybrid
//! host, the v1 `blkio` tree, whose ids mean nothing in the v2 tree. There a v1 cgroup is matched
//! to the v2 cgroup at the same path, as the cgroupfs readers match them (Docker, containerd and
//! systemd put a container at one path in every hierarchy); a v1 cgroup with no v2 twin is not
//! shown under any other cgroup's name, only counted.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use crate::cgroup::Tree;

/// Passes between walks of the v1 tree when no unknown id asks for one (removed cgroups are
/// forgotten by then).
const REWALK_EVERY: u32 = 60;

/// Most v1 cgroups remembered: a walk past this many is cut short (and says so).
const MAX_V1_CGROUPS: usize = 100_000;

pub enum Charges {
    /// The io controller is on the v2 tree.
    Unified,
    /// Hybrid: v1 blkio ids by path, as of the last walk.
    V1 {
        root: PathBuf,
        paths: HashMap<u64, String>,
        since_walk: u32,
        /// The v2 tree's size at the last walk: a change (cgroups made or removed, in every
        /// hierarchy alike) asks for a new one, so a removed cgroup's entries go at once.
        tree_len: usize,
    },
}

impl Charges {
    /// Where bios are charged on this host: the v1 blkio tree when the host has one (a hybrid
    /// host's v2 tree has no io controller: the kernel gives a controller to one hierarchy).
    pub fn new(v1_blkio: Option<PathBuf>) -> Charges {
        match v1_blkio {
            Some(root) => Charges::V1 {
                root,
                paths: HashMap::new(),
                since_walk: REWALK_EVERY,
                tree_len: 0,
            },
            None => Charges::Unified,
        }
    }

    /// Readies the id map for these charged ids: walks the v1 tree again when one is unknown,
    /// when the v2 tree changed size, or after [`REWALK_EVERY`] passes.
    pub fn refresh<'a>(&mut self, ids: impl Iterator<Item = &'a u64>, tree: &Tree) {
        let Charges::V1 {
            root,
            paths,
            since_walk,
            tree_len,
        } = self
        else {
            return;
        };
        *since_walk += 1;
        let mut ids = ids;
        if *since_walk < REWALK_EVERY
            && *tree_len == tree.len()
            && ids.all(|id| paths.contains_key(id))
        {
            return;
        }
        *paths = walk(root);
        *since_walk = 0;
        *tree_len = tree.len();
    }

    /// The v2 cgroup a charged id stands for: `None` when it names a removed cgroup, or (hybrid)
    /// a v1 cgroup with no v2 twin. `by_path` is the v2 tree's path index (hybrid only).
    pub fn resolve(&self, id: u64, tree: &Tree, by_path: &HashMap<&str, u64>) -> Option<u64> {
        match self {
            Charges::Unified => tree.contains(id).then_some(id),
            Charges::V1 { paths, .. } => paths
                .get(&id)
                .and_then(|p| by_path.get(p.as_str()).copied()),
        }
    }

    /// Whether the charged id's cgroup still exists (its entries are deleted once it does not).
    pub fn exists(&self, id: u64, tree: &Tree) -> bool {
        match self {
            Charges::Unified => tree.contains(id),
            Charges::V1 { paths, .. } => paths.contains_key(&id),
        }
    }

    pub fn is_v1(&self) -> bool {
        matches!(self, Charges::V1 { .. })
    }
}

/// Every directory under `root`: inode (the cgroup id) -> path relative to it (`/` for the root).
/// A directory that vanishes mid-walk is skipped; a non-UTF-8 name is left out (its bios are then
/// counted as unplaced, never shown under another name).
fn walk(root: &Path) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    let Ok(meta) = std::fs::metadata(root) else {
        return out;
    };
    out.insert(meta.ino(), "/".to_string());
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Some(name) = e.file_name().to_str().map(String::from) else {
                continue;
            };
            if out.len() >= MAX_V1_CGROUPS {
                tracing::warn!(max = MAX_V1_CGROUPS, "v1 blkio tree cut short");
                return out;
            }
            let path = format!("{rel}/{name}");
            use std::os::unix::fs::DirEntryExt as _;
            out.insert(e.ino(), path.clone());
            stack.push((e.path(), path));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_ids_resolve_by_path_and_only_to_a_twin() {
        let dir = std::env::temp_dir().join(format!("nodetel-blkio-v1-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("docker/abc")).expect("mkdir");
        std::fs::create_dir_all(dir.join("only-v1")).expect("mkdir");
        let ino = |p: &str| std::fs::metadata(dir.join(p)).expect("stat").ino();
        let mut charges = Charges::new(Some(dir.clone()));
        let (abc, lone) = (ino("docker/abc"), ino("only-v1"));
        charges.refresh([abc].iter(), &Tree::default());
        let tree = Tree::from_cgroups(vec![
            crate::cgroup::Cgroup {
                id: 1,
                path: "/".into(),
                parent: None,
            },
            crate::cgroup::Cgroup {
                id: 42,
                path: "/docker/abc".into(),
                parent: Some(1),
            },
        ]);
        let by_path: HashMap<&str, u64> = tree
            .cgroups
            .iter()
            .map(|c| (c.path.as_str(), c.id))
            .collect();
        assert_eq!(charges.resolve(abc, &tree, &by_path), Some(42));
        assert_eq!(charges.resolve(lone, &tree, &by_path), None, "no v2 twin");
        assert!(charges.exists(lone, &tree));
        std::fs::remove_dir(dir.join("only-v1")).expect("rmdir");
        // An unknown id asks for a new walk; the removed one is gone after it.
        charges.refresh([abc, 999_999_999].iter(), &tree);
        assert!(!charges.exists(lone, &tree));
        assert!(charges.exists(abc, &tree));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
