//! The read floor: the least time it takes to read, once, the cgroupfs files an agent needs for
//! the bench cgroups. Which files those are is not guessed: they are the ones the running agent
//! holds open under `/nodetel-bench/c<i>/`, generalised over every bench cgroup.
use std::{
    collections::BTreeSet,
    fs::{self, File},
    os::unix::fs::FileExt as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::population::PARENT;

/// Per-cgroup files as `(hierarchy root, file name)`.
pub fn files_per_cgroup(pid: u32) -> BTreeSet<(String, String)> {
    let mut set = BTreeSet::new();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return set;
    };
    let marker = format!("/{PARENT}/c");
    for fd in fds.flatten() {
        let Ok(target) = fs::read_link(fd.path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        let Some(at) = t.find(&marker) else {
            continue;
        };
        let (root, rest) = (&t[..at], &t[at + marker.len()..]);
        // rest = "<i>/<file>": only files directly in a bench cgroup.
        if let Some((i, file)) = rest.split_once('/')
            && i.bytes().all(|b| b.is_ascii_digit())
            && !file.contains('/')
        {
            set.insert((root.to_string(), file.to_string()));
        }
    }
    set
}

pub struct Floor {
    pub files: usize,
    /// One pass of `pread` on files already open (what an agent that keeps them open pays).
    pub pread: Duration,
    /// One pass of open + read + close.
    pub open_read: Duration,
}

/// Times reading `per_cgroup` for `n` bench cgroups: the median of five passes.
pub fn measure(per_cgroup: &BTreeSet<(String, String)>, n: usize) -> Floor {
    let paths: Vec<PathBuf> = (0..n)
        .flat_map(|i| {
            per_cgroup
                .iter()
                .map(move |(root, file)| PathBuf::from(format!("{root}/{PARENT}/c{i}/{file}")))
        })
        .collect();
    let mut buf = vec![0u8; 64 * 1024];
    let mut preads = Vec::new();
    let mut opens = Vec::new();
    // Open files in chunks under the descriptor limit; only the reads are timed.
    let chunk = fd_budget();
    for _ in 0..5 {
        let mut pass = Duration::ZERO;
        for part in paths.chunks(chunk) {
            let files: Vec<File> = part.iter().filter_map(|p| File::open(p).ok()).collect();
            let start = Instant::now();
            for f in &files {
                let _ = f.read_at(&mut buf, 0);
            }
            pass += start.elapsed();
        }
        preads.push(pass);
        let start = Instant::now();
        for p in &paths {
            if let Ok(f) = File::open(p) {
                let _ = f.read_at(&mut buf, 0);
            }
        }
        opens.push(start.elapsed());
    }
    preads.sort();
    opens.sort();
    Floor {
        files: paths.len(),
        pread: preads[preads.len() / 2],
        open_read: opens[opens.len() / 2],
    }
}

/// Descriptors this process may still open, keeping a margin for everything else.
fn fd_budget() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    let soft = if ok { lim.rlim_cur as usize } else { 1024 };
    soft.saturating_sub(256).max(64)
}
