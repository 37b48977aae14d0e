//! Facts about the node: CPUs, memory and identity, from the host's /proc and /sys (whose roots
//! are configurable, so a containerised agent reads the host's). Read once at start-up: these
//! change only with hot-plug and new mounts.
pub use crate::snapshot::machine::{
    Cache, Core, Disk, Filesystem, HugePages, MachineDetails, MachineInfo, NetDevice, Node,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

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
        details: details(roots, cpus.as_deref().unwrap_or_default(), &meminfo),
    }
}

fn details(roots: &Roots, cpus: &[u32], meminfo: &str) -> MachineDetails {
    let cpuinfo = std::fs::read_to_string(roots.proc_root.join("cpuinfo")).unwrap_or_default();
    let cpuinfo_field = |key: &str| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let cpu_dir = roots.sys_root.join("devices/system/cpu");
    let cpu_frequency_khz = read_u64(&cpu_dir.join("cpu0/cpufreq/cpuinfo_max_freq"))
        .or_else(|| {
            cpuinfo_field("cpu MHz")
                .and_then(|m| m.parse::<f64>().ok())
                .map(|mhz| (mhz * 1000.0) as u64)
        })
        .unwrap_or(0);
    MachineDetails {
        vendor_id: cpuinfo_field("vendor_id").unwrap_or_default(),
        cpu_frequency_khz,
        hugepages: hugepages(&roots.sys_root.join("kernel/mm/hugepages")),
        filesystems: filesystems(&roots.proc_root),
        disks: disks(&roots.sys_root.join("block")),
        network_devices: network_devices(&roots.sys_root.join("class/net")),
        nodes: nodes(&roots.sys_root, cpus, meminfo),
    }
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `hugepages-2048kB/nr_hugepages` in a sysfs hugepages directory (machine-wide or per node).
fn hugepages(dir: &Path) -> Vec<HugePages> {
    dir_names(dir)
        .iter()
        .filter_map(|n| {
            let kb = n
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(HugePages {
                page_size_kb: kb,
                pages: read_u64(&dir.join(n).join("nr_hugepages")).unwrap_or(0),
            })
        })
        .collect()
}

/// Block-device filesystems mounted on the host (PID 1's mount namespace), measured through
/// `/proc/1/root` so a containerised agent sees the host's mounts, not its own.
fn filesystems(proc_root: &Path) -> Vec<Filesystem> {
    let text = std::fs::read_to_string(proc_root.join("1/mountinfo")).unwrap_or_default();
    let mut seen = BTreeMap::new();
    for m in crate::fs_usage::mounts::parse(&text) {
        let (mount_point, source) = (m.mount_point.as_str(), m.source.as_str());
        if !source.starts_with("/dev/") || seen.contains_key(source) {
            continue;
        }
        // Through PID 1's root where this process may look (a containerised agent with the
        // host's /proc); else the mount point as this process sees it (the agent on the host).
        let via_pid1 = proc_root
            .join("1/root")
            .join(mount_point.trim_start_matches('/'));
        let Ok(st) = rustix::fs::statvfs(&via_pid1).or_else(|_| rustix::fs::statvfs(mount_point))
        else {
            continue;
        };
        seen.insert(
            source.to_string(),
            Filesystem {
                device: source.to_string(),
                capacity: st.f_blocks.saturating_mul(st.f_frsize),
                inodes: st.f_files,
            },
        );
    }
    seen.into_values().collect()
}

/// `/sys/block`: real disks (not loop or RAM devices), as cAdvisor's disk_map.
fn disks(dir: &Path) -> BTreeMap<String, Disk> {
    let mut out = BTreeMap::new();
    for name in dir_names(dir) {
        if name.starts_with("loop") || name.starts_with("ram") {
            continue;
        }
        let d = dir.join(&name);
        let Some(dev) = first_line(&d.join("dev")) else {
            continue;
        };
        let Some((Ok(major), Ok(minor))) = dev
            .split_once(':')
            .map(|(a, b)| (a.parse::<u64>(), b.parse::<u64>()))
        else {
            continue;
        };
        let scheduler = first_line(&d.join("queue/scheduler"))
            .and_then(|s| {
                let start = s.find('[')?;
                let end = s[start..].find(']')? + start;
                Some(s[start + 1..end].to_string())
            })
            .unwrap_or_else(|| "none".to_string());
        out.insert(
            dev.clone(),
            Disk {
                name,
                major,
                minor,
                size: read_u64(&d.join("size")).unwrap_or(0).saturating_mul(512),
                scheduler,
            },
        );
    }
    out
}

/// Interfaces of the host, without loopback and container plumbing (cAdvisor's list).
fn network_devices(dir: &Path) -> Vec<NetDevice> {
    dir_names(dir)
        .into_iter()
        .filter(|n| {
            !["lo", "veth", "docker", "nerdctl"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .map(|name| {
            let d = dir.join(&name);
            let int = |f: &str| {
                std::fs::read_to_string(d.join(f))
                    .ok()
                    .and_then(|t| t.trim().parse::<i64>().ok())
                    .unwrap_or(0)
            };
            NetDevice {
                mac_address: first_line(&d.join("address")).unwrap_or_default(),
                speed: int("speed"),
                mtu: int("mtu"),
                name,
            }
        })
        .collect()
}

/// NUMA nodes with their cores and caches; one node holding every CPU where the kernel has no
/// NUMA directory.
fn nodes(sys_root: &Path, cpus: &[u32], meminfo: &str) -> Vec<Node> {
    let node_dir = sys_root.join("devices/system/node");
    let cpu_dir = sys_root.join("devices/system/cpu");
    let mut nodes: Vec<(u32, Vec<u32>)> = dir_names(&node_dir)
        .iter()
        .filter_map(|n| {
            let id = n.strip_prefix("node")?.parse().ok()?;
            let list = std::fs::read_to_string(node_dir.join(n).join("cpulist")).ok()?;
            Some((id, parse_cpu_list(&list).unwrap_or_default()))
        })
        .collect();
    if nodes.is_empty() {
        nodes.push((0, cpus.to_vec()));
    }
    nodes.sort();
    let single = nodes.len() == 1;
    nodes
        .into_iter()
        .map(|(id, node_cpus)| {
            let dir = node_dir.join(format!("node{id}"));
            let memory = std::fs::read_to_string(dir.join("meminfo"))
                .ok()
                .and_then(|t| {
                    // `Node 0 MemTotal:       24684096 kB`
                    t.lines()
                        .find(|l| l.contains("MemTotal:"))
                        .and_then(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
                })
                .or_else(|| single.then(|| meminfo_kb(meminfo, "MemTotal")).flatten())
                .unwrap_or(0)
                .saturating_mul(1024);
            let distances = first_line(&dir.join("distance"))
                .map(|t| {
                    t.split_whitespace()
                        .filter_map(|d| d.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            let (cores, caches) = cores_of(&cpu_dir, &node_cpus);
            Node {
                id,
                memory,
                hugepages: hugepages(&dir.join("hugepages")),
                cores,
                caches,
                distances,
            }
        })
        .collect()
}

/// Groups a node's CPUs into cores (same package and core id) and sorts their caches: one
/// shared only by a core's own threads is the core's, a wider one the node's.
fn cores_of(cpu_dir: &Path, cpus: &[u32]) -> (Vec<Core>, Vec<Cache>) {
    let mut cores: BTreeMap<(u32, u32), Core> = BTreeMap::new();
    let mut node_caches = BTreeSet::new();
    let int = |p: PathBuf| read_u64(&p).and_then(|v| u32::try_from(v).ok());
    for &cpu in cpus {
        let dir = cpu_dir.join(format!("cpu{cpu}"));
        let socket = int(dir.join("topology/physical_package_id")).unwrap_or(0);
        let core_id = int(dir.join("topology/core_id")).unwrap_or(cpu);
        let siblings = std::fs::read_to_string(dir.join("topology/thread_siblings_list"))
            .ok()
            .and_then(|t| parse_cpu_list(&t))
            .unwrap_or_else(|| vec![cpu]);
        let core = cores.entry((socket, core_id)).or_insert_with(|| Core {
            id: core_id,
            socket_id: socket,
            ..Core::default()
        });
        core.threads.push(cpu);
        for index in dir_names(&dir.join("cache")) {
            let c = dir.join("cache").join(&index);
            let (Some(level), Some(kind), Some(size)) = (
                int(c.join("level")),
                first_line(&c.join("type")),
                first_line(&c.join("size")).and_then(|s| parse_size(&s)),
            ) else {
                continue;
            };
            let shared = std::fs::read_to_string(c.join("shared_cpu_list"))
                .ok()
                .and_then(|t| parse_cpu_list(&t))
                .unwrap_or_else(|| vec![cpu]);
            let cache = Cache {
                id: int(c.join("id")).unwrap_or(0),
                level,
                kind,
                size,
            };
            if shared.iter().all(|s| siblings.contains(s)) {
                if !core.caches.contains(&cache) {
                    core.caches.push(cache);
                }
            } else {
                node_caches.insert(cache);
            }
        }
    }
    let mut cores: Vec<Core> = cores.into_values().collect();
    for c in &mut cores {
        c.threads.sort_unstable();
    }
    (cores, node_caches.into_iter().collect())
}

/// `32K`, `32768K`, `2M` -> bytes.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1024),
        b'M' => (&s[..s.len() - 1], 1024 * 1024),
        b'G' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
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
        let d = &m.details;
        assert_eq!(
            d.nodes.len(),
            1,
            "no NUMA directory: one node with every CPU"
        );
        assert_eq!(d.nodes[0].memory, 24_684_096 * 1024);
        let threads: Vec<_> = d.nodes[0].cores.iter().map(|c| c.threads.clone()).collect();
        assert_eq!(threads.len(), 2);
    }

    #[test]
    fn this_hosts_machine_facts_are_complete() {
        // The real /proc and /sys: every host this runs on has CPUs with caches and a disk.
        let m = read(&Roots {
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
            machine_id_files: vec![],
        });
        let d = &m.details;
        let cores: usize = d.nodes.iter().map(|n| n.cores.len()).sum();
        assert_eq!(cores as u64, m.physical_cores.unwrap_or(0));
        let threads: usize = d
            .nodes
            .iter()
            .flat_map(|n| &n.cores)
            .map(|c| c.threads.len())
            .sum();
        assert_eq!(threads as u64, m.cores.unwrap_or(0));
        if Path::new("/sys/devices/system/cpu/cpu0/cache").exists() {
            let cores = d.nodes.iter().flat_map(|n| &n.cores);
            assert!(cores.clone().all(|c| !c.caches.is_empty()), "{d:?}");
        }
        assert!(d.cpu_frequency_khz > 0, "{d:?}");
        // The root filesystem of every machine this runs on is some block device's.
        assert!(
            !d.filesystems.is_empty(),
            "no block-device filesystem: {d:?}"
        );
        assert!(d.filesystems.iter().all(|f| f.capacity > 0), "{d:?}");
        assert!(!d.vendor_id.is_empty());
    }

    #[test]
    fn cache_sizes() {
        assert_eq!(parse_size("32K"), Some(32768));
        assert_eq!(parse_size("32768K"), Some(32 << 20));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("x"), None);
    }
}
