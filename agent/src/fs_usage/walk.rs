//! What `du` says of a directory, measured the way cAdvisor's `GetDirUsage` does: allocated
//! blocks (`st_blocks` × 512) and inodes, each hard-linked inode once, nothing on another device.
//!
//! The directory is a container's writable layer: its tree is the tenant's, so the walk never
//! follows a symbolic link (every step is an `openat` of one name with `O_NOFOLLOW`, relative to
//! its parent's descriptor: a directory swapped for a link mid-walk is refused, not followed),
//! holds at most [`MAX_DEPTH`] descriptors, and stops after a budget of entries. Whatever it
//! could not count is said in [`DirUsage::skipped`], and the sum is then a lower bound.
use std::{collections::HashSet, path::Path};

use rustix::{
    fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags, Stat},
    io::Errno,
};

/// Directories open at once, one per level: deeper subtrees are skipped (and said).
pub const MAX_DEPTH: usize = 128;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirUsage {
    /// Allocated bytes, as `du -s -B1 --one-file-system` counts them.
    pub bytes: u64,
    /// Inodes, the top directory's included (as `find | wc -l` counts them).
    pub inodes: u64,
    /// Entries that could not be counted (permission refused, too deep, the budget spent);
    /// zero when the figures are complete.
    pub skipped: u64,
    /// Entries examined, for the agent's own cost figures.
    pub entries: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("cannot open `{path}`: {source}")]
    Open { path: String, source: Errno },
}

/// Walks `dir`, examining at most `budget` entries.
pub fn dir_usage(dir: &Path, budget: u64) -> Result<DirUsage, WalkError> {
    let open_err = |source| WalkError::Open {
        path: dir.display().to_string(),
        source,
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let root = rustix::fs::openat(CWD, dir, flags, Mode::empty()).map_err(open_err)?;
    let top = rustix::fs::fstat(&root).map_err(open_err)?;
    let mut walk = Walk {
        device: top.st_dev,
        linked: HashSet::new(),
        usage: DirUsage::default(),
        budget,
    };
    walk.count(&top);
    let mut stack = vec![Dir::new(root).map_err(open_err)?];
    loop {
        let depth = stack.len();
        let Some(dir) = stack.last_mut() else { break };
        let Some(entry) = dir.read() else {
            stack.pop();
            continue;
        };
        let entry = match entry {
            Ok(e) => e,
            Err(_) => {
                // A directory that cannot be read further (removed under us, or an I/O error).
                walk.usage.skipped += 1;
                stack.pop();
                continue;
            }
        };
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        if walk.usage.entries >= walk.budget {
            // The rest is not looked at: one skip says the figure is a lower bound.
            walk.usage.skipped += 1;
            break;
        }
        walk.usage.entries += 1;
        let Ok(parent) = dir.fd() else {
            walk.usage.skipped += 1;
            continue;
        };
        let st = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Removed between the listing and the stat: nothing to count.
            Err(Errno::NOENT) => continue,
            Err(_) => {
                walk.usage.skipped += 1;
                continue;
            }
        };
        if st.st_dev != walk.device {
            // A mount point inside the layer: another filesystem's figures, not this one's.
            continue;
        }
        walk.count(&st);
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            continue;
        }
        if depth >= MAX_DEPTH {
            walk.usage.skipped += 1;
            continue;
        }
        let child = rustix::fs::openat(parent, name, flags, Mode::empty()).and_then(Dir::new);
        match child {
            Ok(d) => stack.push(d),
            Err(Errno::NOENT) => {}
            Err(_) => walk.usage.skipped += 1,
        }
    }
    Ok(walk.usage)
}

struct Walk {
    device: u64,
    /// Inodes with more than one link already counted (bounded by the entry budget).
    linked: HashSet<u64>,
    usage: DirUsage,
    budget: u64,
}

impl Walk {
    fn count(&mut self, st: &Stat) {
        if st.st_nlink > 1 && !self.linked.insert(st.st_ino) {
            return;
        }
        self.usage.bytes = self
            .usage
            .bytes
            .saturating_add((st.st_blocks as u64).saturating_mul(512));
        self.usage.inodes += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::symlink, process::Command};

    use super::*;

    /// `du -s -B1` and `find | wc -l` of the same tree: the tools operators check us with.
    fn du(dir: &Path) -> (u64, u64) {
        let out = Command::new("du")
            .args(["-s", "-B1", "--one-file-system"])
            .arg(dir)
            .output()
            .expect("du");
        let bytes = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect("du output");
        let out = Command::new("find").arg(dir).output().expect("find");
        (
            bytes,
            out.stdout.iter().filter(|b| **b == b'\n').count() as u64,
        )
    }

    #[test]
    fn matches_du_with_hard_links_symlinks_and_holes() {
        let t = tempfile::tempdir().expect("test fixture");
        let d = t.path();
        fs::create_dir_all(d.join("a/b/c")).expect("test fixture");
        fs::write(d.join("a/one"), vec![7u8; 10_000]).expect("test fixture");
        fs::write(d.join("a/b/c/two"), vec![1u8; 300_000]).expect("test fixture");
        // Hard links count once, symlinks as themselves (never their target).
        fs::hard_link(d.join("a/one"), d.join("a/b/one-again")).expect("test fixture");
        symlink("/usr", d.join("a/to-usr")).expect("test fixture");
        // A sparse file: its size is not its usage.
        let f = fs::File::create(d.join("sparse")).expect("test fixture");
        f.set_len(50 << 20).expect("test fixture");
        let got = dir_usage(d, u64::MAX).expect("test fixture");
        let (bytes, inodes) = du(d);
        assert_eq!(got.bytes, bytes, "{got:?}");
        // `find` lists the hard link twice; the walk counts its inode once.
        assert_eq!(got.inodes, inodes - 1, "{got:?}");
        assert_eq!(got.skipped, 0);
        assert!(
            got.bytes < 1 << 20,
            "a sparse file counted at its size: {got:?}"
        );
    }

    #[test]
    fn a_symlink_at_the_top_is_refused_and_the_budget_is_a_lower_bound() {
        let t = tempfile::tempdir().expect("test fixture");
        symlink("/usr", t.path().join("link")).expect("test fixture");
        assert!(dir_usage(&t.path().join("link"), u64::MAX).is_err());
        for i in 0..20 {
            fs::write(t.path().join(format!("f{i}")), b"x").expect("test fixture");
        }
        let all = dir_usage(t.path(), u64::MAX).expect("test fixture");
        let some = dir_usage(t.path(), 5).expect("test fixture");
        assert_eq!(some.entries, 5);
        assert_eq!(some.skipped, 1);
        assert!(
            some.bytes < all.bytes && some.inodes == 6,
            "{some:?} {all:?}"
        );
    }

    #[test]
    fn deeper_than_the_descriptor_bound_is_skipped_not_followed() {
        let t = tempfile::tempdir().expect("test fixture");
        let mut p = t.path().to_path_buf();
        for _ in 0..MAX_DEPTH + 3 {
            p.push("d");
        }
        fs::create_dir_all(&p).expect("test fixture");
        let got = dir_usage(t.path(), u64::MAX).expect("test fixture");
        assert_eq!(got.skipped, 1, "{got:?}");
        // The top and MAX_DEPTH levels below it.
        assert_eq!(got.inodes, MAX_DEPTH as u64 + 1, "{got:?}");
    }
}
