//! One receiver's batches on disk (`--remote-write-spool-dir`), oldest first, bounded in bytes.
//!
//! Every batch is written when it is made, not when memory runs out: an agent that is killed
//! (OOM, SIGKILL, a node reboot after the page cache was flushed) loses nothing already written,
//! where a spool filled only on overflow or at shutdown would lose the memory queue. The cost is
//! one file a pass per receiver (a 300-cgroup pass is about 90 kB encoded), read back once when
//! it is sent. After a restart the files left are sent first, oldest first, before the new
//! passes, which queue behind them.
//!
//! A batch is `<unix ms>-<samples>.batch`, written to a `.tmp` name and renamed, so a file with
//! the final name is always whole. Anything else in the directory is left alone; `.tmp` files
//! (a write cut short) are removed at start.
use std::{
    collections::VecDeque,
    io,
    path::{Path, PathBuf},
};

use bytes::Bytes;

use super::queue::Batch;

/// A spooled batch, as its file name says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    at_ms: i64,
    samples: usize,
    len: u64,
}

pub struct Spool {
    dir: PathBuf,
    entries: VecDeque<Entry>,
    bytes: u64,
    max_bytes: u64,
}

/// Samples a spool operation had to give up, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// The spool was full: the oldest batches went.
    pub full: u64,
    /// A batch could not be written or read back (disk full, a file removed by hand).
    pub io: u64,
}

impl Spool {
    /// Opens (creating it) the spool in `dir`, taking up the batches a previous run left; beyond
    /// `max_bytes` the oldest are removed and counted in the returned [`Lost`].
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Spool, Lost)> {
        std::fs::create_dir_all(dir)?;
        let mut entries = Vec::new();
        for item in std::fs::read_dir(dir)? {
            let item = item?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(item.path());
                continue;
            }
            let Some((at_ms, samples)) = parse_name(name) else {
                continue;
            };
            let meta = item.metadata()?;
            if meta.is_file() {
                entries.push(Entry {
                    at_ms,
                    samples,
                    len: meta.len(),
                });
            }
        }
        entries.sort_by_key(|e| e.at_ms);
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            bytes: entries.iter().map(|e| e.len).sum(),
            entries: entries.into(),
            max_bytes,
        };
        let lost = Lost {
            full: spool.shrink_to(max_bytes),
            io: 0,
        };
        Ok((spool, lost))
    }

    fn path(&self, e: &Entry) -> PathBuf {
        self.dir.join(format!("{}-{}.batch", e.at_ms, e.samples))
    }

    /// Removes the oldest batches until at most `limit` bytes are left; returns their samples.
    fn shrink_to(&mut self, limit: u64) -> u64 {
        let mut dropped = 0;
        while self.bytes > limit {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            let _ = std::fs::remove_file(self.path(&old));
            self.bytes -= old.len;
            dropped += old.samples as u64;
        }
        dropped
    }

    /// Writes `batch` behind the others, then makes room by removing the oldest (the newest is
    /// always kept, even alone past the bound): a batch that cannot be written costs no other.
    /// Only a full disk removes the oldest first, as the bound would, and tries once more. A
    /// batch stamped no later than the newest spooled one (a clock stepped back) is written as
    /// one millisecond after it, so the order holds.
    pub fn push(&mut self, batch: &Batch) -> Lost {
        let len = batch.body.len() as u64;
        let at_ms = match self.entries.back() {
            Some(last) if last.at_ms >= batch.at_ms => last.at_ms + 1,
            _ => batch.at_ms,
        };
        let entry = Entry {
            at_ms,
            samples: batch.samples,
            len,
        };
        let path = self.path(&entry);
        let tmp = path.with_extension("tmp");
        let write =
            || std::fs::write(&tmp, &batch.body).and_then(|()| std::fs::rename(&tmp, &path));
        let mut full = 0;
        let mut written = write();
        if written
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::StorageFull)
        {
            let _ = std::fs::remove_file(&tmp);
            full = self.shrink_to(self.max_bytes.saturating_sub(len));
            written = write();
        }
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(dir = %self.dir.display(), error = %e, "remote write spool: a batch could not be written: dropped");
            return Lost {
                full,
                io: batch.samples as u64,
            };
        }
        full += self.shrink_to(self.max_bytes.saturating_sub(len));
        self.bytes += len;
        self.entries.push_back(entry);
        Lost { full, io: 0 }
    }

    /// The oldest batch, read back (left in place until [`Self::pop_if`]); files that cannot be
    /// read are removed and their samples counted.
    pub fn front(&mut self) -> (Option<Batch>, u64) {
        let mut lost = 0;
        while let Some(e) = self.entries.front().copied() {
            match std::fs::read(self.path(&e)) {
                Ok(body) => {
                    return (
                        Some(Batch {
                            body: Bytes::from(body),
                            samples: e.samples,
                            at_ms: e.at_ms,
                        }),
                        lost,
                    );
                }
                Err(err) => {
                    tracing::warn!(dir = %self.dir.display(), error = %err, "remote write spool: a batch could not be read: dropped");
                    self.remove_front();
                    lost += e.samples as u64;
                }
            }
        }
        (None, lost)
    }

    fn remove_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            let _ = std::fs::remove_file(self.path(&e));
            self.bytes -= e.len;
        }
    }

    /// Removes the oldest batch if it is still the one stamped `at_ms`.
    pub fn pop_if(&mut self, at_ms: i64) {
        if self.entries.front().is_some_and(|e| e.at_ms == at_ms) {
            self.remove_front();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn oldest_ms(&self) -> Option<i64> {
        self.entries.front().map(|e| e.at_ms)
    }
}

fn parse_name(name: &str) -> Option<(i64, usize)> {
    let stem = name.strip_suffix(".batch")?;
    let (at, samples) = stem.split_once('-')?;
    let at_ms: i64 = at.parse().ok()?;
    (at_ms >= 0).then_some(())?;
    Some((at_ms, samples.parse().ok()?))
}

/// The directory of one receiver's spool: a hash of its URL, so two receivers never share one
/// and the same receiver finds its own after a restart.
pub fn target_dir(root: &Path, url: &str) -> PathBuf {
    // FNV-1a: stable across builds and releases, unlike the standard library's hasher.
    let hash = url.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    root.join(format!("{hash:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(at_ms: i64, len: usize) -> Batch {
        Batch {
            body: Bytes::from(vec![at_ms as u8; len]),
            samples: 10,
            at_ms,
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nodetel-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn oldest_first_bounded_and_taken_up_after_a_restart() {
        let d = dir("restart");
        let (mut s, lost) = Spool::open(&d, 250).expect("open");
        assert_eq!(lost, Lost::default());
        assert_eq!(s.push(&batch(1, 100)), Lost::default());
        assert_eq!(s.push(&batch(2, 100)), Lost::default());
        // A third would pass 250 bytes: the oldest goes.
        assert_eq!(s.push(&batch(3, 100)).full, 10);
        assert_eq!((s.len(), s.bytes(), s.oldest_ms()), (2, 200, Some(2)));
        let (front, lost) = s.front();
        let front = front.expect("front");
        assert_eq!((front.at_ms, front.body.len(), lost), (2, 100, 0));
        assert_eq!(front.body[0], 2);
        drop(s);

        // A write cut short and a stranger's file, then a restart with a smaller bound.
        std::fs::write(d.join("4-10.tmp"), b"half").expect("tmp");
        std::fs::write(d.join("notes.txt"), b"mine").expect("other");
        let (mut s, lost) = Spool::open(&d, 150).expect("reopen");
        assert_eq!(lost.full, 10);
        assert_eq!((s.len(), s.oldest_ms()), (1, Some(3)));
        assert!(!d.join("4-10.tmp").exists());
        assert!(d.join("notes.txt").exists());
        s.pop_if(2);
        assert_eq!(s.len(), 1, "pop_if of another batch leaves the front");
        s.pop_if(3);
        assert_eq!((s.len(), s.bytes(), s.oldest_ms()), (0, 0, None));
        assert_eq!(s.front().0.map(|b| b.at_ms), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_clock_stepped_back_keeps_the_order_and_lost_files_are_counted() {
        let d = dir("order");
        let (mut s, _) = Spool::open(&d, 1 << 20).expect("open");
        s.push(&batch(100, 10));
        s.push(&batch(50, 10));
        assert_eq!(
            s.entries.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
            [100, 101]
        );
        std::fs::remove_file(d.join("100-10.batch")).expect("remove");
        let (front, lost) = s.front();
        assert_eq!((front.map(|b| b.at_ms), lost), (Some(101), 10));
        assert_eq!(s.len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A batch that cannot be written is the only one lost: the spool full to its bound keeps
    /// every older batch (they were removed before the write once).
    #[test]
    fn a_failed_write_costs_no_older_batch() {
        let d = dir("failed");
        let (mut s, _) = Spool::open(&d, 250).expect("open");
        s.push(&batch(1, 100));
        s.push(&batch(2, 100));
        // A directory where the batch's temporary file goes: the write fails.
        std::fs::create_dir_all(d.join("3-10.tmp")).expect("blocker");
        assert_eq!(s.push(&batch(3, 100)), Lost { full: 0, io: 10 });
        assert_eq!((s.len(), s.bytes(), s.oldest_ms()), (2, 200, Some(1)));
        assert!(d.join("1-10.batch").exists() && d.join("2-10.batch").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn names_are_read_strictly() {
        assert_eq!(
            parse_name("1700000000000-353.batch"),
            Some((1_700_000_000_000, 353))
        );
        for bad in [
            "1-2.tmp",
            "-1-2.batch",
            "x-2.batch",
            "1-.batch",
            "1.batch",
            "1-2-3.batch",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn each_receiver_has_its_own_directory() {
        let root = Path::new("/spool");
        let a = target_dir(root, "http://a:9090/api/v1/write");
        assert_eq!(a, target_dir(root, "http://a:9090/api/v1/write"));
        assert_ne!(a, target_dir(root, "http://b:9090/api/v1/write"));
    }
}
