//! What the kernel says a process costs: CPU ticks and memory from /proc, and the run time of
//! the eBPF programs it holds from `bpftool` (with `kernel.bpf_stats_enabled` on).
use std::{collections::BTreeMap, fs, process::Command};

use anyhow::Context as _;

/// user + system time of a whole process (all threads, living and exited), in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = f.get(11).context("no utime")?.parse::<u64>()?
        + f.get(12).context("no stime")?.parse::<u64>()?;
    Ok(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant of the C library; no memory is passed.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// (VmRSS, VmHWM) in bytes.
pub fn rss(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
        let n: u64 = line
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("bad {key}"))?;
        Ok(n * 1024)
    };
    Ok((kib("VmRSS:")?, kib("VmHWM:")?))
}

/// Kernel run time and run count of one program.
#[derive(Clone, Copy, Default, Debug)]
pub struct ProgStats {
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// The eBPF programs `pid` holds, by name, as the kernel counts them: each program descriptor's
/// `/proc/<pid>/fdinfo` has its id and run figures (bpftool's `pids` column needs a bpftool
/// built with BPF iterators, which Debian's is not); bpftool only supplies the names.
pub fn bpf_programs(pid: u32) -> anyhow::Result<BTreeMap<String, ProgStats>> {
    let mut by_id: BTreeMap<u64, ProgStats> = BTreeMap::new();
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).context("list the agent's descriptors")?;
    for fd in fds.flatten() {
        let is_prog =
            fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:bpf-prog");
        if !is_prog {
            continue;
        }
        let info = fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok())
        };
        if let Some(id) = field("prog_id:") {
            by_id.insert(
                id,
                ProgStats {
                    run_time_ns: field("run_time_ns:").unwrap_or(0),
                    run_cnt: field("run_cnt:").unwrap_or(0),
                },
            );
        }
    }
    let names = program_names();
    let mut by_name = BTreeMap::new();
    for (id, stats) in by_id {
        let name = names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("prog{id}"));
        let e: &mut ProgStats = by_name.entry(name).or_default();
        e.run_time_ns += stats.run_time_ns;
        e.run_cnt += stats.run_cnt;
    }
    Ok(by_name)
}

/// Program names by id, from `bpftool -j prog show` (empty without bpftool).
fn program_names() -> BTreeMap<u64, String> {
    let Ok(out) = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
    else {
        return BTreeMap::new();
    };
    let progs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    progs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_u64()?, p["name"].as_str()?.to_string())))
        .collect()
}

/// Turns `kernel.bpf_stats_enabled` on for as long as it lives (the kernel only times programs
/// while it is on), and restores the old value.
pub struct BpfStats {
    old: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub fn enable() -> anyhow::Result<BpfStats> {
        let old = fs::read_to_string(BPF_STATS).context("read bpf_stats_enabled")?;
        fs::write(BPF_STATS, "1").context("enable bpf_stats")?;
        Ok(BpfStats {
            old: old.trim().to_string(),
        })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(BPF_STATS, &self.old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_grows_with_work() {
        let me = std::process::id();
        let before = cpu_seconds(me).expect("own stat");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 300 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu_seconds(me).expect("own stat");
        assert!(after - before >= 0.2, "{before} -> {after}");
    }

    #[test]
    fn own_rss_is_read() {
        let (rss, hwm) = rss(std::process::id()).expect("own status");
        assert!(rss > 0 && hwm >= rss);
    }
}
