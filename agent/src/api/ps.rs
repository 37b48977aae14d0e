//! cAdvisor's `/api/v2.0/ps/<container>`: the processes of one container, in cAdvisor's
//! `ProcessInfo` form.
//!
//! cAdvisor runs `ps -e -o user,pid,ppid,stime,pcpu,pmem,rss,vsz,stat,time,comm,psr,cgroup` and
//! keeps the lines whose cgroup is exactly the container's (the root container: every process,
//! with its cgroup path). nodetel reads what `ps` would have read: the container's own
//! `cgroup.procs` (the root: every pid in procfs), then each process's `stat` and `status` and
//! its `fd` directory. The container is looked up in the snapshot first, so a request names
//! only a directory the walk found; the figures are computed as procps computes them.
//!
//! Bounded: at most [`MAX_PROCESSES`] processes an answer (each costs three small reads, about
//! 15 µs), more are refused with the count. A process that exits while it is read is left out.
use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde_json::{Value, json};

/// Processes one answer lists at most (the root container of a busy node has a few thousand).
pub const MAX_PROCESSES: usize = 65_536;
/// procfs reports times in USER_HZ, which Linux fixes at 100 for userspace on every arch.
const USER_HZ: u64 = 100;

/// Where the process list is read from.
pub struct Sources {
    /// The cgroup2 mount the container paths are relative to.
    pub unified: PathBuf,
    pub proc_root: PathBuf,
}

/// The fields of `/proc/<pid>/stat` that `ps` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub state: u8,
    pub ppid: u32,
    pub pgrp: i64,
    pub session: i64,
    pub tpgid: i64,
    pub utime: u64,
    pub stime: u64,
    pub nice: i64,
    pub threads: u64,
    /// Clock ticks after boot.
    pub start: u64,
    pub vsize: u64,
    /// Pages.
    pub rss: u64,
    pub processor: i64,
}

/// Parses one `stat` line. The command is in parentheses and may itself hold spaces and `)`,
/// so the fields start after the LAST `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let f: Vec<&str> = text.get(close + 1..)?.split_ascii_whitespace().collect();
    // f[0] is field 3 (state); field n is f[n - 3]. `processor` is field 39.
    let n = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    let s = |i: usize| f.get(i - 3).and_then(|v| v.parse::<i64>().ok());
    Some(Stat {
        comm,
        state: *f.first()?.as_bytes().first()?,
        ppid: u32::try_from(n(4)?).ok()?,
        pgrp: s(5)?,
        session: s(6)?,
        tpgid: s(8)?,
        utime: n(14)?,
        stime: n(15)?,
        nice: s(19)?,
        threads: n(20)?,
        start: n(22)?,
        vsize: n(23)?,
        rss: n(24)?,
        processor: s(39).unwrap_or(0),
    })
}

/// `ps`'s `stat` column: the state and procps' flags (`<` high and `N` low priority, `s`
/// session leader, `l` multi-threaded, `+` in the foreground process group).
pub fn status(pid: u32, st: &Stat) -> String {
    let mut s = String::from(char::from(st.state));
    if st.nice < 0 {
        s.push('<');
    } else if st.nice > 0 {
        s.push('N');
    }
    if i64::from(pid) == st.session {
        s.push('s');
    }
    if st.threads > 1 {
        s.push('l');
    }
    if st.tpgid == st.pgrp {
        s.push('+');
    }
    s
}

/// `ps`'s `time`: CPU time as `[DD-]HH:MM:SS`.
pub fn cpu_time(ticks: u64) -> String {
    let secs = ticks / USER_HZ;
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// `ps`'s `stime` (UTC): `HH:MM` for a process started within the day, `MonDD` within the
/// year, else the year.
pub fn start_time(started: u64, now: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d) = civil(started / 86_400);
    if now.saturating_sub(started) < 86_400 {
        format!("{:02}:{:02}", started / 3600 % 24, started / 60 % 60)
    } else if now.saturating_sub(started) < 365 * 86_400 {
        format!("{}{d:02}", MONTHS[(mo - 1) as usize % 12])
    } else {
        format!("{y}")
    }
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil(days: u64) -> (i64, u64, u64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe as i64 + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The real uid from a `status` file.
fn uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

fn read_small(path: &Path) -> Option<String> {
    let mut text = String::new();
    fs::File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// Open files of a process. Since Linux 6.2 `stat` of `/proc/<pid>/fd` gives the count as its
/// size, which needs only ptrace access (CAP_SYS_PTRACE, in the DaemonSet's set), while listing
/// the directory of another user's process also needs CAP_DAC_READ_SEARCH (not in it): measured
/// under the DaemonSet's capabilities, listing was refused and `stat` gave 5 for a `sleep` of
/// uid 65534 (`ls` as root: 5). Older kernels report size 0: the listing, where it is allowed.
fn fd_count(fd_dir: &Path) -> usize {
    match fs::metadata(fd_dir) {
        Ok(m) if m.len() > 0 => usize::try_from(m.len()).unwrap_or(usize::MAX),
        _ => fs::read_dir(fd_dir).map_or(0, |d| d.count()),
    }
}

/// Host facts `ps` needs, read once an answer.
struct Host {
    boot_secs: u64,
    now_secs: u64,
    mem_total: u64,
    page_size: u64,
}

impl Host {
    fn read(proc_root: &Path) -> Host {
        let boot_secs = read_small(&proc_root.join("stat"))
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0);
        let mem_total = read_small(&proc_root.join("meminfo"))
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kb| kb.saturating_mul(1024));
        Host {
            boot_secs,
            now_secs: crate::unix_time::secs(SystemTime::now()) as u64,
            mem_total,
            page_size: rustix::param::page_size() as u64,
        }
    }
}

/// The pids to list: the cgroup's own (`cgroup.procs`), or every process for the root.
fn pids(src: &Sources, path: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    if path == "/" {
        let dir = fs::read_dir(&src.proc_root).map_err(|e| format!("listing procfs: {e}"))?;
        for entry in dir.flatten() {
            if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                out.push(pid);
            }
            if out.len() > MAX_PROCESSES {
                break;
            }
        }
    } else {
        let file = src
            .unified
            .join(path.trim_start_matches('/'))
            .join("cgroup.procs");
        // At most one pid past the limit is read (pid_max is at most 2^22: 7 digits and '\n').
        let mut text = String::new();
        fs::File::open(&file)
            .and_then(|f| {
                f.take((MAX_PROCESSES as u64 + 1) * 8)
                    .read_to_string(&mut text)
            })
            .map_err(|e| format!("reading {file:?}: {e}"))?;
        for l in text.lines() {
            if let Ok(pid) = l.trim().parse() {
                out.push(pid);
            }
            if out.len() > MAX_PROCESSES {
                break;
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The container's processes as cAdvisor lists them (`Err`: a message for a 4xx/5xx).
pub fn list(src: &Sources, path: &str) -> Result<Vec<Value>, (bool, String)> {
    let pids = pids(src, path).map_err(|e| (false, e))?;
    if pids.len() > MAX_PROCESSES {
        return Err((
            true,
            format!(
                "{path} has more than {MAX_PROCESSES} processes; ask for a container deeper in \
                 the tree"
            ),
        ));
    }
    let host = Host::read(&src.proc_root);
    let mut out = Vec::with_capacity(pids.len());
    for pid in pids {
        let dir = src.proc_root.join(pid.to_string());
        let Some(st) = read_small(&dir.join("stat")).and_then(|t| parse_stat(&t)) else {
            continue; // exited, or a kernel we cannot read
        };
        let user = read_small(&dir.join("status"))
            .and_then(|t| uid(&t))
            .map_or_else(String::new, |u| u.to_string());
        let started = host.boot_secs.saturating_add(st.start / USER_HZ);
        let cpu_ticks = st.utime.saturating_add(st.stime);
        let elapsed = host.now_secs.saturating_sub(started);
        // procps: CPU time over the time since start, in percent (lifetime, not recent).
        let percent_cpu = if elapsed > 0 {
            (cpu_ticks as f64 / USER_HZ as f64) * 100.0 / elapsed as f64
        } else {
            0.0
        };
        let rss = st.rss.saturating_mul(host.page_size);
        let percent_mem = if host.mem_total > 0 {
            rss as f64 * 100.0 / host.mem_total as f64
        } else {
            0.0
        };
        let fd_count = fd_count(&dir.join("fd"));
        let cgroup_path = if path == "/" {
            read_small(&dir.join("cgroup"))
                .and_then(|t| {
                    crate::cgroup::host_pids::unified_path(t.as_bytes())
                        .map(|p| p.to_string_lossy().into_owned())
                })
                .unwrap_or_else(|| "/".into())
        } else {
            String::new()
        };
        out.push(json!({
            "user": user,
            "pid": pid,
            "parent_pid": st.ppid,
            "start_time": start_time(started, host.now_secs),
            // procps rounds to one decimal.
            "percent_cpu": (percent_cpu * 10.0).round() / 10.0,
            "percent_mem": (percent_mem * 10.0).round() / 10.0,
            "rss": rss,
            "virtual_size": st.vsize,
            "status": status(pid, &st),
            "running_time": cpu_time(cpu_ticks),
            "cgroup_path": cgroup_path,
            "cmd": st.comm,
            "fd_count": fd_count,
            "psr": st.processor,
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 125 0 0 20 0 \
                        3 0 1000 12345678 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 \
                        1 0 0 0 0 0";

    #[test]
    fn stat_fields_after_the_last_paren() {
        let st = parse_stat(LINE).expect("a valid stat line");
        assert_eq!(st.comm, "a (b) c");
        assert_eq!(st.state, b'S');
        assert_eq!(
            (st.ppid, st.pgrp, st.session, st.tpgid),
            (1, 4242, 4242, -1)
        );
        assert_eq!((st.utime, st.stime, st.nice, st.threads), (250, 125, 0, 3));
        assert_eq!(
            (st.start, st.vsize, st.rss, st.processor),
            (1000, 12345678, 300, 1)
        );
        assert_eq!(status(4242, &st), "Ssl");
        assert!(parse_stat("1 (x) S 1").is_none());
        assert!(parse_stat("").is_none());
        assert!(parse_stat("1 )x( S").is_none());
    }

    #[test]
    fn ps_formats() {
        assert_eq!(cpu_time(375), "00:00:03");
        assert_eq!(cpu_time(100 * (86_400 + 3661)), "1-01:01:01");
        // 2026-11-29T13:05:00Z
        let t = 1_795_957_500;
        assert_eq!(start_time(t, t + 60), "13:05");
        assert_eq!(start_time(t, t + 3 * 86_400), "Nov29");
        assert_eq!(start_time(t, t + 400 * 86_400), "2026");
        assert_eq!(civil(0), (1970, 1, 1));
    }

    #[test]
    fn own_process_is_listed_with_ps_figures() {
        let src = Sources {
            unified: PathBuf::from("/nonexistent"),
            proc_root: PathBuf::from("/proc"),
        };
        let all = list(&src, "/").expect("procfs listed");
        let me = std::process::id();
        let mine = all
            .iter()
            .find(|p| p["pid"] == me)
            .expect("own process listed");
        assert!(mine["rss"].as_u64().is_some_and(|v| v > 0));
        assert!(mine["fd_count"].as_u64().is_some_and(|v| v >= 3));
        assert!(mine["cgroup_path"].as_str().is_some_and(|p| !p.is_empty()));
        assert!(
            matches!(list(&src, "/no/such/cgroup"), Err((false, _))),
            "a vanished cgroup is an error, not an empty list"
        );
    }
}
