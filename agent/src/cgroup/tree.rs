//! The cgroup v2 tree: id (the directory's inode, which is what `bpf_get_current_cgroup_id()`
//! returns) <-> path relative to the hierarchy root, with each cgroup's parent.
use std::{
    collections::{HashMap, HashSet},
    ffi::OsString,
    io,
    os::unix::{
        ffi::OsStrExt as _,
        fs::{DirEntryExt as _, MetadataExt as _},
    },
    path::{Component, Path, PathBuf},
};

/// One cgroup directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    pub id: u64,
    /// Relative to the hierarchy root, `/` for the root itself (cAdvisor's `id` label).
    pub path: String,
    /// Parent's id; `None` for the root.
    pub parent: Option<u64>,
}

/// All cgroups seen in one walk, in walk order (parents before children).
///
/// Nothing under the root is left out, so no tenant can hide work from its pod's totals by
/// what it calls or how deep it nests its cgroups (every id the kernel counts for is in the
/// tree, so its time rolls up and its map entries are kept):
/// - a name that is not UTF-8 is exported with each invalid byte written `\xHH` (made unique
///   among its siblings with `~<inode>` if a real name already reads so), and read through its
///   real path;
/// - a cgroup deeper than [`MAX_DEPTH`] is walked but folded: not exported itself, its figures
///   charged to its deepest exported ancestor.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    pub cgroups: Vec<Cgroup>,
    by_id: HashMap<u64, usize>,
    /// Directories that vanished or could not be read during the walk (a container exiting while
    /// we walk is normal: counted, not an error).
    pub skipped: u64,
    /// The real relative path of cgroups whose `path` was escaped (their name or an ancestor's
    /// is not UTF-8).
    raw: HashMap<u64, PathBuf>,
    /// Folded cgroups (deeper than [`MAX_DEPTH`]) -> their deepest exported ancestor.
    folded: HashMap<u64, u64>,
}

/// Deeper than any real layout (kubepods nest 5-6 levels): cgroups below are folded into their
/// ancestor at this depth rather than exported one by one.
pub const MAX_DEPTH: u32 = 64;

/// One directory being walked.
struct Pending {
    dir: PathBuf,
    rel: String,
    /// Set once an escaped name is on the way down.
    raw: Option<PathBuf>,
    id: u64,
    depth: u32,
}

impl Tree {
    /// Walks the hierarchy under `root`. Only the root failing to read is an error.
    pub fn walk(root: &Path) -> io::Result<Tree> {
        let meta = std::fs::metadata(root)?;
        let mut tree = Tree::default();
        tree.push(Cgroup {
            id: meta.ino(),
            path: "/".into(),
            parent: None,
        });
        let mut stack = vec![Pending {
            dir: root.to_path_buf(),
            rel: String::new(),
            raw: None,
            id: meta.ino(),
            depth: 0,
        }];
        while let Some(at) = stack.pop() {
            let entries = match std::fs::read_dir(&at.dir) {
                Ok(e) => e,
                Err(_) => {
                    tree.skipped += 1;
                    continue;
                }
            };
            // Names first, so an escaped name can be made unique among all its siblings.
            let mut dirs: Vec<(OsString, u64)> = Vec::new();
            for entry in entries {
                let Ok(entry) = entry else {
                    tree.skipped += 1;
                    continue;
                };
                // cgroupfs holds only directories (cgroups) and files (interface files).
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    // The directory's inode number (the cgroup id) straight from getdents: a
                    // statx per cgroup per pass saved.
                    dirs.push((entry.file_name(), entry.ino()));
                }
            }
            let taken: HashSet<&str> = dirs.iter().filter_map(|(n, _)| n.to_str()).collect();
            let mut escaped_names: HashSet<String> = HashSet::new();
            let depth = at.depth + 1;
            // Folded below MAX_DEPTH: into the parent's own target if it is folded too.
            let folded_into = if depth > MAX_DEPTH {
                Some(tree.folded.get(&at.id).copied().unwrap_or(at.id))
            } else {
                None
            };
            let mut next = Vec::with_capacity(dirs.len());
            for (name, ino) in &dirs {
                let (label, escaped) = match name.to_str() {
                    Some(n) => (n.to_string(), false),
                    None => {
                        let mut e = escape(name.as_bytes());
                        while taken.contains(e.as_str()) || escaped_names.contains(&e) {
                            e = format!("{e}~{ino}");
                        }
                        escaped_names.insert(e.clone());
                        (e, true)
                    }
                };
                let rel = format!("{}/{label}", at.rel);
                let raw = match (&at.raw, escaped) {
                    (Some(r), _) => Some(r.join(name)),
                    (None, true) => Some(Path::new(&at.rel).join(name)),
                    (None, false) => None,
                };
                tree.push(Cgroup {
                    id: *ino,
                    path: rel.clone(),
                    parent: Some(at.id),
                });
                if let Some(r) = &raw {
                    tree.raw.insert(*ino, r.clone());
                }
                if let Some(into) = folded_into {
                    tree.folded.insert(*ino, into);
                }
                next.push(Pending {
                    dir: at.dir.join(name),
                    rel,
                    raw,
                    id: *ino,
                    depth,
                });
            }
            stack.extend(next);
        }
        Ok(tree)
    }

    /// The cgroup's path relative to the hierarchy root as it is on disk (differs from `path`
    /// only for escaped names).
    pub fn fs_rel<'a>(&'a self, cg: &'a Cgroup) -> &'a Path {
        self.raw
            .get(&cg.id)
            .map_or_else(|| Path::new(cg.path.as_str()), PathBuf::as_path)
    }

    /// Whether the cgroup is exported on its own (it is not folded into an ancestor).
    pub fn exported(&self, id: u64) -> bool {
        !self.folded.contains_key(&id)
    }

    /// The exported cgroup whose figures include this one's: itself, or for a folded cgroup
    /// its deepest exported ancestor.
    pub fn charged_to(&self, id: u64) -> u64 {
        self.folded.get(&id).copied().unwrap_or(id)
    }

    /// Whether any cgroup is folded (the common case is none: nothing to re-key).
    pub fn has_folded(&self) -> bool {
        !self.folded.is_empty()
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
    resolve_path_under(root, Path::new(rel))
}

/// [`resolve_under`] for a path as it is on disk (a name need not be UTF-8).
pub fn resolve_path_under(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for part in rel.components() {
        match part {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) if !p.as_bytes().contains(&0) => out.push(p),
            Component::Normal(_) | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// A non-UTF-8 name as a label value: valid runs as they are, each invalid byte as `\xHH`.
fn escape(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    for chunk in name.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
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
        let parent = tree.get(c1.parent.expect("has parent")).expect("parent");
        assert_eq!(parent.path, "/kubepods/burstable/pod1");
        let root_cg = tree.get(tree.cgroups[0].id).expect("root");
        assert_eq!((root_cg.path.as_str(), root_cg.parent), ("/", None));
    }

    /// Nothing can be hidden from the walk: a non-UTF-8 name is escaped (and unique beside a
    /// real sibling that reads the same), read through its real path, and cgroups deeper than
    /// MAX_DEPTH are walked and folded into their ancestor at that depth.
    #[test]
    fn odd_names_are_escaped_and_deep_cgroups_folded() {
        use std::os::unix::ffi::OsStrExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let odd = std::ffi::OsStr::from_bytes(b"pod\xff");
        std::fs::create_dir_all(root.join("kubepods").join(odd).join("c")).expect("mkdir");
        std::fs::create_dir_all(root.join("kubepods/pod\\xff")).expect("mkdir");
        let mut deep = root.join("deep");
        for _ in 0..MAX_DEPTH + 3 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).expect("mkdir");
        let tree = Tree::walk(root).expect("walk");
        let ino = |p: &Path| std::fs::metadata(p).expect("stat").ino();
        let odd_id = ino(&root.join("kubepods").join(odd));
        let cg = tree.get(odd_id).expect("walked");
        assert!(cg.path.starts_with("/kubepods/pod\\xff~"), "{}", cg.path);
        assert_eq!(
            resolve_path_under(root, tree.fs_rel(cg)),
            Some(root.join("kubepods").join(odd))
        );
        let child = tree
            .get(ino(&root.join("kubepods").join(odd).join("c")))
            .expect("child walked");
        assert_eq!(child.path, format!("{}/c", cg.path));
        assert!(resolve_path_under(root, tree.fs_rel(child)).is_some_and(|p| p.is_dir()));
        let real = tree
            .get(ino(&root.join("kubepods/pod\\xff")))
            .expect("real");
        assert_eq!(real.path, "/kubepods/pod\\xff");
        // Depth: the cgroup at MAX_DEPTH is exported; the ones below are charged to it.
        let mut at = root.join("deep");
        let mut ids = Vec::new();
        for _ in 0..MAX_DEPTH + 3 {
            at.push("d");
            ids.push(ino(&at));
        }
        let deepest_exported = ids[MAX_DEPTH as usize - 2];
        let segments = |id| tree.get(id).map(|c| c.path.matches('/').count() as u32);
        assert_eq!(segments(deepest_exported), Some(MAX_DEPTH));
        assert!(tree.exported(deepest_exported));
        for id in &ids[MAX_DEPTH as usize - 1..] {
            assert!(tree.contains(*id), "a folded cgroup is still in the tree");
            assert!(!tree.exported(*id));
            assert_eq!(tree.charged_to(*id), deepest_exported);
        }
        assert!(resolve_path_under(root, Path::new("/a/../b")).is_none());
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
