//! Facts about the node: CPUs, memory and identity, from the host's /proc and /sys (whose roots
//! are configurable, so a containerised agent reads the host's). Read at start-up: these change
//! only with hot-plug, which cAdvisor also only notices on its slow refresh.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineInfo {
    /// Online logical CPUs.
    pub cores: Option<u64>,
    pub physical_cores: Option<u64>,
    pub sockets: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
    /// Label values; empty when the host does not provide them.
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
}

pub struct Roots {
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    pub machine_id_files: Vec<PathBuf>,
}

pub fn read(roots: &Roots) -> MachineInfo {
    let cpus = std::fs::read_to_string(roots.sys_root.join("devices/system/cpu/online"))
        .ok()
        .and_then(|t| parse_cpu_list(&t));
    let topo = cpus
        .as_ref()
        .map(|c| topology(&roots.sys_root.join("devices/system/cpu"), c));
    let meminfo = std::fs::read_to_string(roots.proc_root.join("meminfo")).unwrap_or_default();
    MachineInfo {
        cores: cpus.as_ref().map(|c| c.len() as u64),
        physical_cores: topo.and_then(|t| t.0),
        sockets: topo.and_then(|t| t.1),
        memory_bytes: meminfo_kb(&meminfo, "MemTotal").map(|v| v.saturating_mul(1024)),
        swap_bytes: meminfo_kb(&meminfo, "SwapTotal").map(|v| v.saturating_mul(1024)),
        machine_id: roots
            .machine_id_files
            .iter()
            .find_map(|p| first_line(p))
            .unwrap_or_default(),
        system_uuid: first_line(&roots.sys_root.join("class/dmi/id/product_uuid"))
            .unwrap_or_default(),
        boot_id: first_line(&roots.proc_root.join("sys/kernel/random/boot_id")).unwrap_or_default(),
    }
}

fn first_line(p: &Path) -> Option<String> {
    let text = std::fs::read_to_string(p).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// `0-3,8,10-11` -> the CPU numbers.
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 65_536 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// (physical cores, sockets) from each online CPU's topology directory.
fn topology(cpu_dir: &Path, cpus: &[u32]) -> (Option<u64>, Option<u64>) {
    let mut cores = BTreeSet::new();
    let mut sockets = BTreeSet::new();
    for cpu in cpus {
        let t = cpu_dir.join(format!("cpu{cpu}/topology"));
        let read = |f: &str| {
            std::fs::read_to_string(t.join(f))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
        };
        let (Some(pkg), Some(core)) = (read("physical_package_id"), read("core_id")) else {
            return (None, None);
        };
        cores.insert((pkg, core));
        sockets.insert(pkg);
    }
    (Some(cores.len() as u64), Some(sockets.len() as u64))
}

/// A `/proc/meminfo` line's value in kB.
pub fn meminfo_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::testdata;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0,2-3,7"), Some(vec![0, 2, 3, 7]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a-b"), None);
    }

    #[test]
    fn fixture_machine() {
        let m = read(&Roots {
            proc_root: testdata("proc"),
            sys_root: testdata("sys"),
            machine_id_files: vec![testdata("nope"), testdata("etc/machine-id")],
        });
        assert_eq!(m.cores, Some(4));
        assert_eq!(m.physical_cores, Some(2), "two threads per core");
        assert_eq!(m.sockets, Some(1));
        assert_eq!(m.memory_bytes, Some(24_684_096 * 1024));
        assert_eq!(m.swap_bytes, Some(0));
        assert_eq!(m.machine_id, "3d1219c7c4c5404aaa1f6d2a48adfda4");
        assert_eq!(m.system_uuid, "");
        assert_eq!(m.boot_id, "163af18a-b764-4094-8815-81fbbedb3fac");
    }
}
