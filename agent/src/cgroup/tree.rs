//! The cgroup v2 tree: id (the directory's inode, which is what `bpf_get_current_cgroup_id()`
//! returns) <-> path relative to the hierarchy root, with each cgroup's parent.
use std::{
    collections::HashMap,
    io,
    os::unix::fs::{DirEntryExt as _, MetadataExt as _},
    path::{Path, PathBuf},
};

/// One cgroup directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    pub id: u64,
    /// Relative to the hierarchy root, `/` for the root itself (cAdvisor's `id` label).
    pub path: String,
    /// Parent's id; `None` for the root.
    pub parent: Option<u64>,
    pub depth: u32,
}

/// All cgroups seen in one walk, in walk order (parents before children).
#[derive(Clone, Debug, Default)]
pub struct Tree {
    pub cgroups: Vec<Cgroup>,
    by_id: HashMap<u64, usize>,
    /// Directories that vanished or could not be read during the walk (a container exiting while
    /// we walk is normal: counted, not an error).
    pub skipped: u64,
}

/// Deeper than any real layout (kubepods nest 5-6 levels); stops a runaway walk.
const MAX_DEPTH: u32 = 64;

impl Tree {
    /// Walks the hierarchy under `root`. Only the root failing to read is an error.
    pub fn walk(root: &Path) -> io::Result<Tree> {
        let meta = std::fs::metadata(root)?;
        let mut tree = Tree::default();
        tree.push(Cgroup {
            id: meta.ino(),
            path: "/".into(),
            parent: None,
            depth: 0,
        });
        let mut stack: Vec<(PathBuf, String, u64, u32)> =
            vec![(root.to_path_buf(), String::new(), meta.ino(), 0)];
        while let Some((dir, rel, id, depth)) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(_) => {
                    tree.skipped += 1;
                    continue;
                }
            };
            for entry in entries {
                let Ok(entry) = entry else {
                    tree.skipped += 1;
                    continue;
                };
                // cgroupfs holds only directories (cgroups) and files (interface files).
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if !is_dir || depth + 1 > MAX_DEPTH {
                    continue;
                }
                // The directory's inode number (the cgroup id) straight from getdents: a statx
                // per cgroup per pass saved.
                let ino = entry.ino();
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    // Non-UTF-8 names cannot become label values; skip rather than mangle.
                    tree.skipped += 1;
                    continue;
                };
                let child_rel = format!("{rel}/{name}");
                tree.push(Cgroup {
                    id: ino,
                    path: child_rel.clone(),
                    parent: Some(id),
                    depth: depth + 1,
                });
                stack.push((entry.path(), child_rel, ino, depth + 1));
            }
        }
        Ok(tree)
    }

    /// Builds a tree from cgroups listed parents-first (tests and fixtures).
    pub fn from_cgroups(cgroups: Vec<Cgroup>) -> Tree {
        let mut tree = Tree::default();
        for c in cgroups {
            tree.push(c);
        }
        tree
    }

    fn push(&mut self, c: Cgroup) {
        self.by_id.insert(c.id, self.cgroups.len());
        self.cgroups.push(c);
    }

    pub fn get(&self, id: u64) -> Option<&Cgroup> {
        self.by_id.get(&id).map(|&i| &self.cgroups[i])
    }

    pub fn contains(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.cgroups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cgroups.is_empty()
    }
}

/// Turns an `id` label (a path relative to the hierarchy root) back into a directory under `root`,
/// refusing anything that would leave it. HTTP handlers take cgroup names from URLs: this is the
/// one gate between a request and the filesystem.
pub fn resolve_under(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p if p.contains('\0') => return None,
            p => out.push(p),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_ids_paths_and_parents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for p in ["docker/abc", "kubepods/burstable/pod1/c1", "system.slice"] {
            std::fs::create_dir_all(root.join(p)).expect("mkdir");
        }
        std::fs::write(root.join("cpu.stat"), "usage_usec 1\n").expect("file");
        let tree = Tree::walk(root).expect("walk");
        let mut paths: Vec<_> = tree.cgroups.iter().map(|c| c.path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "/",
                "/docker",
                "/docker/abc",
                "/kubepods",
                "/kubepods/burstable",
                "/kubepods/burstable/pod1",
                "/kubepods/burstable/pod1/c1",
                "/system.slice"
            ]
        );
        let c1_ino = std::fs::metadata(root.join("kubepods/burstable/pod1/c1"))
            .expect("stat")
            .ino();
        let c1 = tree.get(c1_ino).expect("c1 by inode");
        assert_eq!(c1.path, "/kubepods/burstable/pod1/c1");
        assert_eq!(c1.depth, 4);
        let parent = tree.get(c1.parent.expect("has parent")).expect("parent");
        assert_eq!(parent.path, "/kubepods/burstable/pod1");
        let root_cg = tree.get(tree.cgroups[0].id).expect("root");
        assert_eq!((root_cg.path.as_str(), root_cg.parent), ("/", None));
    }

    #[test]
    fn missing_root_is_an_error() {
        assert!(Tree::walk(Path::new("/nonexistent/cgroup")).is_err());
    }

    #[test]
    fn resolve_under_never_escapes() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            resolve_under(root, "/docker/abc"),
            Some(PathBuf::from("/sys/fs/cgroup/docker/abc"))
        );
        assert_eq!(resolve_under(root, "/"), Some(root.to_path_buf()));
        assert_eq!(resolve_under(root, "/docker/../../etc"), None);
        assert_eq!(resolve_under(root, ".."), None);
        assert_eq!(resolve_under(root, "/a\0b"), None);
        assert_eq!(
            resolve_under(root, "//docker//./x"),
            Some(root.join("docker/x"))
        );
    }
}
