//! Reading cgroupfs files: every controller reader goes through [`Files`], so "the cgroup went
//! away" and "the file is garbage" are told apart the same way everywhere, and a file read every
//! pass is opened once and re-read with `pread`.
use std::{
    collections::HashMap,
    fs::File,
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use super::parse::{self, ParseError};
pub use crate::snapshot::health::FileCounts;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file exists but its content does not parse.
    #[error("`{file}`: {source}")]
    Parse { file: String, source: ParseError },
    /// A file exists but cannot be read for another reason than the cgroup going away.
    #[error("`{file}`: {source}")]
    Io { file: String, source: io::Error },
}

/// The cgroupfs files of the cgroups being watched, kept open between passes.
///
/// Re-reading an open kernfs file at offset 0 makes the kernel render it afresh, and skips the
/// path walk and permission checks of `open`: measured on this host, 2.3 µs instead of 9.2 µs
/// for a one-number file. The price is kernel memory charged to the agent's cgroup: each open
/// file keeps a seq_file page (about 5 KiB of slab per file, measured), hence a budget (`--cgroupfs-open-files`).
/// Files beyond it are opened, read and closed each time, and counted.
pub struct Files {
    open: HashMap<PathBuf, Open>,
    /// One buffer for every read: text is parsed in place, never kept.
    buf: Vec<u8>,
    budget: usize,
    pass: u64,
    /// Passes a file stays open unread (1: closed at the end of the first pass that skips it).
    keep: u64,
    counts: FileCounts,
}

struct Open {
    file: File,
    /// The last pass that read it: files no pass read are closed at the end of the next.
    pass: u64,
}

impl Files {
    /// At most `budget` files kept open (0: open, read and close every time).
    pub fn new(budget: usize) -> Self {
        Files {
            open: HashMap::new(),
            buf: Vec::with_capacity(16 * 1024),
            budget,
            pass: 0,
            keep: 1,
            counts: FileCounts::default(),
        }
    }

    pub fn counts(&self) -> FileCounts {
        self.counts
    }

    /// Files currently held open.
    pub fn held(&self) -> usize {
        self.open.len()
    }

    /// Keeps unread files open for `passes` passes: a quiet cgroup's files are read again only
    /// when its refresh is due, and reopening them then would cost a path walk each.
    /// Closes every file held in one of `dirs` (cgroups just removed): an open cgroupfs file
    /// keeps its removed cgroup's kernel structures alive (a dying cgroup) until it is closed.
    pub fn forget_dirs(&mut self, dirs: &std::collections::HashSet<PathBuf>) {
        self.open
            .retain(|path, _| !path.parent().is_some_and(|d| dirs.contains(d)));
    }

    pub fn keep_unread_for(&mut self, passes: u64) {
        self.keep = passes.max(1);
    }

    /// Closes the files no pass read within the last `keep` passes (their cgroup is gone, or
    /// their metric kind is off), so a removed cgroup is not pinned for longer than that.
    pub fn end_pass(&mut self) {
        let (pass, keep) = (self.pass, self.keep);
        self.open.retain(|_, o| pass - o.pass < keep);
        crate::prune::shrink(&mut self.open);
        self.pass += 1;
    }

    /// Reads a file, mapping "the cgroup or the file is gone" to `None`: a container that exits
    /// between the walk and the read is normal, and a file a kernel or controller lacks means
    /// the metric is absent, not zero.
    pub fn read(&mut self, path: &Path) -> Result<Option<&str>, ReadError> {
        let io_err = |source| ReadError::Io {
            file: path.display().to_string(),
            source,
        };
        if !self.fill(path).map_err(io_err)? {
            return Ok(None);
        }
        match std::str::from_utf8(&self.buf) {
            Ok(text) => Ok(Some(text)),
            Err(e) => Err(io_err(io::Error::new(io::ErrorKind::InvalidData, e))),
        }
    }

    /// Reads `path` into `buf`; false when it is gone.
    fn fill(&mut self, path: &Path) -> io::Result<bool> {
        if let Some(o) = self.open.get_mut(path) {
            o.pass = self.pass;
            match read_whole(&o.file, &mut self.buf) {
                Ok(()) => return Ok(true),
                // The cgroup was removed, perhaps recreated under the same name: the file must
                // be opened again to reach the new one, if any.
                Err(e) if gone(&e) => {
                    self.open.remove(path);
                }
                Err(e) => {
                    self.open.remove(path);
                    return Err(e);
                }
            }
        }
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if gone(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        self.counts.opens += 1;
        match read_whole(&file, &mut self.buf) {
            Ok(()) => {}
            Err(e) if gone(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
        if self.open.len() < self.budget {
            let pass = self.pass;
            self.open.insert(path.to_path_buf(), Open { file, pass });
        } else {
            self.counts.uncached_reads += 1;
        }
        Ok(true)
    }

    /// Reads `dir/name` if present and parses it with `parse`; a parse failure names the file.
    pub fn parsed<T>(
        &mut self,
        dir: &Path,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> Result<Option<T>, ReadError> {
        let path = dir.join(name);
        match self.read(&path)? {
            Some(text) => parse(text).map(Some).map_err(|e| parse_err(&path, e)),
            None => Ok(None),
        }
    }

    /// A file holding one unsigned integer (`memory.current`, `pids.current`), if present.
    pub fn u64(&mut self, dir: &Path, name: &str) -> Result<Option<u64>, ReadError> {
        self.parsed(dir, name, parse::single_u64)
    }

    /// A file holding one signed integer (v1 `cpu.cfs_quota_us` is -1 when unlimited).
    pub fn i64(&mut self, dir: &Path, name: &str) -> Result<Option<i64>, ReadError> {
        self.parsed(dir, name, parse::single_i64)
    }

    /// A limit file: a number, or `max` for unlimited (v2), returned as `u64::MAX`.
    pub fn limit(&mut self, dir: &Path, name: &str) -> Result<Option<u64>, ReadError> {
        self.parsed(dir, name, |text| match text.trim() {
            "max" => Ok(u64::MAX),
            _ => parse::single_u64(text),
        })
    }

    /// A flat-keyed file (`memory.stat`, `memory.events`), with `f` picking the keys it knows;
    /// false when the file is absent.
    pub fn flat_keyed(
        &mut self,
        dir: &Path,
        name: &str,
        f: impl FnMut(&str, u64),
    ) -> Result<bool, ReadError> {
        Ok(self
            .parsed(dir, name, |text| parse::flat_keyed(text, f))?
            .is_some())
    }
}

/// The whole file from offset 0. kernfs renders a seq_file in chunks of about a page and a
/// short read does not mean the end, so this reads until the kernel returns 0.
fn read_whole(file: &File, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let mut len = 0;
    loop {
        if buf.len() - len < 4096 {
            buf.resize(len + 4096.max(len), 0);
        }
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.clear();
                return Err(e);
            }
        }
    }
    buf.truncate(len);
    Ok(())
}

fn gone(e: &io::Error) -> bool {
    // ENODEV: the cgroup was removed while the file was open. ENOTSUP/EOPNOTSUPP: a file that
    // exists but whose controller is off here (e.g. memory.swap.current without swap accounting).
    e.kind() == io::ErrorKind::NotFound || matches!(e.raw_os_error(), Some(19 | 95))
}

pub fn parse_err(path: &Path, source: ParseError) -> ReadError {
    ReadError::Parse {
        file: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_files_are_reread_not_reopened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("memory.current");
        std::fs::write(&path, "5\n").expect("write");
        let mut files = Files::new(8);
        assert_eq!(
            files.u64(dir.path(), "memory.current").expect("read"),
            Some(5)
        );
        // Rewritten in place: the open file sees the new content at offset 0.
        std::fs::write(&path, "123456\n").expect("write");
        files.end_pass();
        assert_eq!(
            files.u64(dir.path(), "memory.current").expect("read"),
            Some(123456)
        );
        assert_eq!(files.counts().opens, 1);
        assert_eq!(files.held(), 1);
    }

    #[test]
    fn unread_files_are_closed_after_a_pass_and_gone_ones_are_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), "1\n").expect("write");
        let mut files = Files::new(8);
        assert_eq!(files.u64(dir.path(), "a").expect("read"), Some(1));
        assert_eq!(files.u64(dir.path(), "missing").expect("read"), None);
        files.end_pass();
        assert_eq!(files.held(), 1);
        files.end_pass();
        assert_eq!(files.held(), 0, "a file no pass read is closed");
    }

    #[test]
    fn over_budget_files_are_read_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["a", "b", "c"] {
            std::fs::write(dir.path().join(name), "7\n").expect("write");
        }
        let mut files = Files::new(1);
        for name in ["a", "b", "c"] {
            assert_eq!(files.u64(dir.path(), name).expect("read"), Some(7));
        }
        assert_eq!(files.held(), 1);
        assert_eq!(files.counts().uncached_reads, 2);
    }

    #[test]
    fn large_files_are_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text: String = (0..5000).map(|i| format!("key{i} {i}\n")).collect();
        std::fs::write(dir.path().join("memory.stat"), &text).expect("write");
        let mut files = Files::new(8);
        let mut n = 0;
        files
            .flat_keyed(dir.path(), "memory.stat", |_, _| n += 1)
            .expect("read");
        assert_eq!(n, 5000);
    }

    #[test]
    fn garbled_bytes_are_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("x"), [0xff, 0xfe, b'\n']).expect("write");
        let mut files = Files::new(8);
        assert!(files.u64(dir.path(), "x").is_err());
        std::fs::write(dir.path().join("y"), "twelve\n").expect("write");
        assert!(matches!(
            files.u64(dir.path(), "y"),
            Err(ReadError::Parse { .. })
        ));
    }
}
