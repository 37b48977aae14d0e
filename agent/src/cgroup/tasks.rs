//! Task states (cAdvisor's `cpuLoad` kind): how many of a cgroup's own threads are running,
//! sleeping, stopped or in uninterruptible sleep, and the 10-second load averages made of them.
//!
//! cAdvisor asks the kernel through taskstats' `CGROUPSTATS_CMD_GET`, which answers only for a
//! cgroup v1 directory (and only with `--enable_load_reader`; without it cAdvisor serves zeros).
//! The state the kernel shows for each thread in `/proc/<tid>/stat` is the same `__state` that
//! count reads, and works on v2 too: the threads come from `cgroup.threads` (the cgroup's own,
//! not its descendants', as taskstats counts them).
//!
//! Mapping, as the kernel reports states: `R` running (on a CPU or waiting for one), `S`
//! sleeping, `D` uninterruptible, `T` stopped (job control). Traced, zombie, dead and idle
//! kernel threads (`t`, `Z`, `X`, `I`) are in none, as in taskstats. `iowaiting` stays 0:
//! taskstats counts a thread sleeping in `io_schedule()` as uninterruptible (its first matching
//! case) and as io-waiting only a thread in another sleep state with `in_iowait` set, a flag
//! /proc does not show.
use std::{
    fs::File,
    io::{self, Read},
    path::Path,
};

use super::read::{Files, ReadError};
pub use crate::snapshot::cgroup::{TaskLoad, TaskStates};

/// Thread stat files read per pass at most, over all cgroups: about 4 µs each (open, render,
/// close: measured on this host), so a node with more threads than this in busy cgroups spends
/// at most ~65 ms a pass here, and the cgroups past the budget keep their previous states.
pub const THREAD_READS_PER_PASS: usize = 16_384;

impl TaskStates {
    fn count(&mut self, state: u8) {
        match state {
            b'R' => self.running += 1,
            b'S' => self.sleeping += 1,
            b'D' => self.uninterruptible += 1,
            b'T' => self.stopped += 1,
            _ => {}
        }
    }
}

/// The state letter of one `/proc/<tid>/stat` line: the field after the command, which is in
/// parentheses and may itself contain spaces and parentheses (hence the last `)`).
pub fn parse_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = stat.get(close + 1..)?;
    let mut fields = rest.split(|&b| b == b' ').filter(|f| !f.is_empty());
    match fields.next()? {
        [s] if s.is_ascii_alphabetic() => Some(*s),
        _ => None,
    }
}

/// The thread ids of `cgroup.threads`, at most `max` of them (`None`: more were listed).
pub fn parse_threads(text: &str, max: usize) -> Option<Vec<u32>> {
    let mut tids = Vec::new();
    for line in text.lines() {
        let Ok(tid) = line.trim().parse::<u32>() else {
            continue;
        };
        if tids.len() == max {
            return None;
        }
        tids.push(tid);
    }
    Some(tids)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    States(TaskStates),
    /// No `cgroup.threads`: the cgroup is gone.
    Gone,
    /// More threads than the pass's budget has left: the caller keeps the previous figures.
    OverBudget,
}

/// Reads the states of the threads of one cgroup (`v2_dir`), spending at most `*budget` stat
/// reads.
pub fn read(
    files: &mut Files,
    v2_dir: &Path,
    proc_root: &Path,
    budget: &mut usize,
) -> Result<Outcome, ReadError> {
    let Some(text) = files.read(&v2_dir.join("cgroup.threads"))? else {
        return Ok(Outcome::Gone);
    };
    let Some(tids) = parse_threads(text, *budget) else {
        return Ok(Outcome::OverBudget);
    };
    *budget -= tids.len();
    count(proc_root, &tids).map(Outcome::States)
}

/// As [`read`], for a cgroup whose processes came from the host's procfs (see
/// `cgroup::host_pids`): each process's threads are its `task/` directory.
pub fn read_processes(
    proc_root: &Path,
    pids: &[u32],
    budget: &mut usize,
) -> Result<Outcome, ReadError> {
    let mut tids = Vec::new();
    for pid in pids {
        let Ok(entries) = std::fs::read_dir(proc_root.join(pid.to_string()).join("task")) else {
            // Exited since the scan.
            continue;
        };
        for e in entries.flatten() {
            if let Some(tid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if tids.len() == *budget {
                    return Ok(Outcome::OverBudget);
                }
                tids.push(tid);
            }
        }
    }
    *budget -= tids.len();
    count(proc_root, &tids).map(Outcome::States)
}

/// The states of `tids` as `<proc_root>/<tid>/stat` shows them (a thread's directory is there
/// too, though /proc does not list it).
fn count(proc_root: &Path, tids: &[u32]) -> Result<TaskStates, ReadError> {
    let mut states = TaskStates::default();
    let mut buf = Vec::with_capacity(512);
    for tid in tids {
        let path = proc_root.join(tid.to_string()).join("stat");
        match read_stat(&path, &mut buf) {
            Ok(()) => {
                if let Some(s) = parse_state(&buf) {
                    states.count(s);
                }
            }
            // Exited since the list was read: it is in no state any more.
            Err(e)
                if matches!(e.kind(), io::ErrorKind::NotFound) || e.raw_os_error() == Some(3) => {}
            Err(source) => {
                return Err(ReadError::Io {
                    file: path.display().to_string(),
                    source,
                });
            }
        }
    }
    Ok(states)
}

fn read_stat(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    // The line is a few hundred bytes; 1 KiB bounds what a hostile mount could make us hold.
    File::open(path)?.take(1024).read_to_end(buf)?;
    Ok(())
}

/// cAdvisor's smoothing of a count into a "10-second" load average: each pass moves it by
/// `1 - e^(-interval/10s)` towards the new count, starting at the first count seen. Served as
/// thousandths ("milliLoad"), as cAdvisor serves it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadAverage {
    value: f64,
}

impl LoadAverage {
    pub fn new(first: u64) -> Self {
        LoadAverage {
            value: first as f64,
        }
    }

    pub fn update(&mut self, count: u64, decay: f64) {
        self.value = self.value * decay + count as f64 * (1.0 - decay);
    }

    pub fn milli(&self) -> u64 {
        // cAdvisor truncates to an int32 of thousandths.
        (self.value * 1000.0) as u64
    }
}

/// `e^(-interval/10s)`, cAdvisor's decay per housekeeping pass.
pub fn decay(interval: std::time::Duration) -> f64 {
    (-interval.as_secs_f64() / 10.0).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_after_the_last_parenthesis() {
        assert_eq!(parse_state(b"42 (bash) S 1 42 42 0"), Some(b'S'));
        // A command may hold spaces and parentheses: `) R (` must not be taken for the state.
        assert_eq!(parse_state(b"7 (a) R (b) D 1 7"), Some(b'D'));
        assert_eq!(parse_state(b"7 (x)"), None);
        assert_eq!(parse_state(b"7 (x) ?? 1"), None);
        assert_eq!(parse_state(b"no parenthesis"), None);
    }

    #[test]
    fn counts_each_state_as_taskstats() {
        let mut s = TaskStates::default();
        for c in *b"RRSSSDTtZXI" {
            s.count(c);
        }
        assert_eq!(
            s,
            TaskStates {
                running: 2,
                sleeping: 3,
                stopped: 1,
                uninterruptible: 1
            }
        );
    }

    #[test]
    fn thread_list_is_bounded() {
        assert_eq!(parse_threads("1\n2\n\nx\n3\n", 3), Some(vec![1, 2, 3]));
        assert_eq!(parse_threads("1\n2\n3\n", 2), None);
        assert_eq!(parse_threads("", 0), Some(vec![]));
    }

    #[test]
    fn reads_the_states_of_the_listed_threads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cg = dir.path().join("cg");
        let proc = dir.path().join("proc");
        std::fs::create_dir_all(&cg).expect("mkdir");
        std::fs::write(cg.join("cgroup.threads"), "10\n11\n12\n13\n").expect("write");
        for (tid, st) in [(10, "R"), (11, "S"), (12, "T")] {
            let d = proc.join(tid.to_string());
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("stat"), format!("{tid} (w) {st} 1 2 3\n")).expect("write");
        }
        // 13 exited between the list and its stat: counted in no state.
        let mut budget = 10;
        let got = read(&mut Files::new(0), &cg, &proc, &mut budget).expect("read");
        assert_eq!(
            got,
            Outcome::States(TaskStates {
                running: 1,
                sleeping: 1,
                stopped: 1,
                uninterruptible: 0
            })
        );
        assert_eq!(budget, 6);
        // Past the budget: no figure (the caller keeps the last one).
        let mut small = 3;
        assert_eq!(
            read(&mut Files::new(0), &cg, &proc, &mut small).expect("read"),
            Outcome::OverBudget
        );
        assert_eq!(small, 3);
        // The cgroup went away.
        let gone = read(
            &mut Files::new(0),
            &dir.path().join("no"),
            &proc,
            &mut budget,
        );
        assert_eq!(gone.expect("read"), Outcome::Gone);
    }

    #[test]
    fn load_average_follows_cadvisor() {
        // 1 s passes: the decay cAdvisor uses at a 1 s housekeeping interval.
        let d = decay(std::time::Duration::from_secs(1));
        assert!((d - 0.904_837).abs() < 1e-6);
        let mut l = LoadAverage::new(0);
        for _ in 0..10 {
            l.update(2, d);
        }
        // After 10 s of two running threads: 2 * (1 - e^-1) = 1.264.
        assert_eq!(l.milli(), 1264);
        assert_eq!(LoadAverage::new(3).milli(), 3000);
    }

    /// Property: no stat line or thread list, however garbled, panics a parser, and no list
    /// longer than its bound is returned.
    #[test]
    fn any_bytes_are_handled() {
        let mut rng = crate::testutil::Rng::new(7);
        let alphabet = b"0123456789 ()\nRSDTtZ-x";
        for case in 0..2000 {
            let b = rng.bytes_from(alphabet, 120);
            let _ = parse_state(&b);
            let max = rng.below(6) as usize;
            let text = String::from_utf8_lossy(&b);
            if let Some(t) = parse_threads(&text, max) {
                assert!(t.len() <= max, "case {case}: {text:?}");
            }
        }
    }
}
