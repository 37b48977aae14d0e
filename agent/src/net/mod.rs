//! Per-container network figures: bytes and packets from the kernel's traffic programs, named by
//! the devices of the container's network namespace; errors and drops from that namespace's
//! device counters.
//!
//! Who gets what:
//! - Every cgroup but the root: the traffic of the sockets its own tasks created (eBPF), per
//!   device. A pod cgroup has none of its own, so a sum by pod counts each byte once, and a
//!   hostNetwork container gets its own traffic, not the host's.
//! - Device errors and drops belong to a namespace, not to a socket: each namespace's go to one
//!   cgroup, its owner, the oldest cgroup in it (the pod sandbox, or the container whose network
//!   the others joined). The host namespace has no owner: no container is charged the host's.
//! - The root cgroup `/` is the machine, as in cAdvisor: the host namespace's device counters.
//!
//! Each namespace's `net/dev` is read once per pass, whatever the number of containers in it.
pub mod netdev;
pub mod netns;

use std::{collections::HashMap, path::PathBuf};

use crate::{
    ebpf::{DeviceTraffic, Traffic},
    snapshot::ContainerSample,
};
use netdev::DeviceCounters;

/// One interface of one cgroup. A `None` is a figure nodetel does not have for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    pub name: String,
    pub rx_bytes: Option<u64>,
    pub rx_packets: Option<u64>,
    pub rx_errors: Option<u64>,
    pub rx_dropped: Option<u64>,
    pub tx_bytes: Option<u64>,
    pub tx_packets: Option<u64>,
    pub tx_errors: Option<u64>,
    pub tx_dropped: Option<u64>,
}

/// The reader's own health figures (cumulative, except `namespaces`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Network namespaces in use at the last pass.
    pub namespaces: u64,
    /// Device-index lookups run inside a namespace (only when its devices changed).
    pub index_lookups: u64,
    /// Namespace reads or lookups that failed (the namespace vanished, or no privilege).
    pub errors: u64,
    /// Lines of `net/dev` that could not be parsed.
    pub skipped_lines: u64,
}

/// Device names of one namespace and their indexes, as of the last lookup.
struct Names {
    devices: Vec<String>,
    by_index: HashMap<u32, String>,
}

pub struct NetworkReader {
    proc_root: PathBuf,
    /// cgroup id -> its namespace when last seen with a process: its sockets may outlive them.
    last_ns: HashMap<u64, u64>,
    /// cgroup id -> the process its namespace was read through last pass, with the answer.
    last_pid_ns: HashMap<u64, (u32, u64)>,
    names: HashMap<u64, Names>,
    stats: NetStats,
}

impl NetworkReader {
    pub fn new(proc_root: PathBuf) -> Self {
        NetworkReader {
            proc_root,
            last_ns: HashMap::new(),
            last_pid_ns: HashMap::new(),
            names: HashMap::new(),
            stats: NetStats::default(),
        }
    }

    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Sets `network` on every sample. `traffic` is `None` when the traffic programs are not
    /// attached: only device-level figures are then given.
    pub fn fill(&mut self, containers: &mut [ContainerSample], traffic: Option<&Traffic>) {
        let host = netns::host(&self.proc_root);

        // Each cgroup's namespace, and one live process per namespace to read it through.
        let mut ns_of: HashMap<u64, u64> = HashMap::new();
        let mut reader_pid: HashMap<u64, u32> = HashMap::new();
        if let Some((ns, pid)) = host {
            reader_pid.insert(ns, pid);
        }
        let host = host.map(|(ns, _)| ns);
        let mut answered: HashMap<u64, (u32, u64)> = HashMap::new();
        for c in containers.iter() {
            let Some(pid) = c.processes.first_pid else {
                continue;
            };
            // A quiet cgroup's process has not run, so it cannot have changed namespace: the
            // last answer for the same pid stands (a /proc path walk saved per cgroup).
            if c.quiet
                && let Some(&(last_pid, ns)) = self.last_pid_ns.get(&c.cgroup_id)
                && last_pid == pid
            {
                ns_of.insert(c.cgroup_id, ns);
                reader_pid.entry(ns).or_insert(pid);
                answered.insert(c.cgroup_id, (pid, ns));
                continue;
            }
            // The process may have exited since cgroup.procs was read: then it has no answer.
            if let Ok(ns) = netns::id(&self.proc_root, pid) {
                ns_of.insert(c.cgroup_id, ns);
                reader_pid.entry(ns).or_insert(pid);
                answered.insert(c.cgroup_id, (pid, ns));
            }
        }
        for c in containers.iter() {
            if let Some(ns) = self.last_ns.get(&c.cgroup_id) {
                ns_of.entry(c.cgroup_id).or_insert(*ns);
            }
        }
        self.last_ns = ns_of.clone();
        self.last_pid_ns = answered;

        let mut devices: HashMap<u64, Vec<DeviceCounters>> = HashMap::new();
        for (&ns, &pid) in &reader_pid {
            match self.read_devices(pid) {
                Some(d) => {
                    devices.insert(ns, d);
                }
                None => continue,
            }
            self.refresh_names(ns, pid, &devices[&ns]);
        }
        let in_use: std::collections::HashSet<u64> = ns_of.values().copied().collect();
        self.names
            .retain(|ns, _| devices.contains_key(ns) || in_use.contains(ns));
        crate::prune::shrink(&mut self.names);
        self.stats.namespaces = reader_pid.len() as u64;

        let owners = owners(containers, &ns_of, host);
        for c in containers.iter_mut() {
            c.network = if c.path == "/" {
                host.and_then(|h| devices.get(&h)).map(|d| machine(d))
            } else {
                let ns = ns_of.get(&c.cgroup_id).copied();
                let owned = ns
                    .and_then(|ns| owners.get(&ns))
                    .is_some_and(|o| *o == c.cgroup_id);
                let owned_devices = if owned {
                    ns.and_then(|ns| devices.get(&ns))
                } else {
                    None
                };
                // A device is named in its socket's namespace, which the kernel told; where it
                // could not, the cgroup's own namespace is the best account of it.
                let name_of = |t: &DeviceTraffic| {
                    let in_ns = if t.netns != 0 {
                        Some(u64::from(t.netns))
                    } else {
                        ns
                    };
                    in_ns
                        .and_then(|n| self.names.get(&n))
                        .and_then(|n| n.by_index.get(&t.ifindex))
                        .cloned()
                };
                interfaces(
                    traffic.map(|t| t.get(&c.cgroup_id).map_or(&[][..], |v| v.as_slice())),
                    name_of,
                    owned_devices,
                )
            };
        }
    }

    fn read_devices(&mut self, pid: u32) -> Option<Vec<DeviceCounters>> {
        let path = self.proc_root.join(pid.to_string()).join("net/dev");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (d, bad) = netdev::parse(&text);
                self.stats.skipped_lines += bad;
                Some(d)
            }
            Err(e) => {
                self.stats.errors += 1;
                tracing::debug!(path = %path.display(), error = %e, "network namespace unreadable");
                None
            }
        }
    }

    /// Looks the indexes up again when the namespace's device list changed (a device added,
    /// removed or renamed): indexes are stable otherwise.
    fn refresh_names(&mut self, ns: u64, pid: u32, devices: &[DeviceCounters]) {
        let current: Vec<String> = devices.iter().map(|d| d.name.clone()).collect();
        if self.names.get(&ns).is_some_and(|n| n.devices == current) {
            return;
        }
        self.stats.index_lookups += 1;
        match netns::device_indexes(&self.proc_root, pid, &current) {
            Ok(by_index) => {
                self.names.insert(
                    ns,
                    Names {
                        devices: current,
                        by_index,
                    },
                );
            }
            Err(e) => {
                self.stats.errors += 1;
                tracing::debug!(pid, error = %e, "device index lookup in a network namespace failed");
            }
        }
    }
}

/// The namespace's owner: its oldest cgroup (ties: the lowest id). The host namespace has none.
fn owners(
    containers: &[ContainerSample],
    ns_of: &HashMap<u64, u64>,
    host: Option<u64>,
) -> HashMap<u64, u64> {
    let mut best: HashMap<u64, (f64, u64)> = HashMap::new();
    for c in containers {
        if c.path == "/" {
            continue;
        }
        let Some(&ns) = ns_of.get(&c.cgroup_id) else {
            continue;
        };
        if Some(ns) == host {
            continue;
        }
        let key = (c.start_time.unwrap_or(f64::MAX), c.cgroup_id);
        let e = best.entry(ns).or_insert(key);
        if key.0 < e.0 || (key.0 == e.0 && key.1 < e.1) {
            *e = key;
        }
    }
    best.into_iter().map(|(ns, (_, id))| (ns, id)).collect()
}

/// The machine's interfaces (the root cgroup), as cAdvisor shows them.
fn machine(devices: &[DeviceCounters]) -> Vec<InterfaceStats> {
    devices
        .iter()
        .filter(|d| !netdev::ignored(&d.name))
        .map(|d| InterfaceStats {
            name: d.name.clone(),
            rx_bytes: Some(d.rx_bytes),
            rx_packets: Some(d.rx_packets),
            rx_errors: Some(d.rx_errors),
            rx_dropped: Some(d.rx_dropped),
            tx_bytes: Some(d.tx_bytes),
            tx_packets: Some(d.tx_packets),
            tx_errors: Some(d.tx_errors),
            tx_dropped: Some(d.tx_dropped),
        })
        .collect()
}

/// One cgroup's interfaces: its own traffic on every device it used, plus, for a namespace's
/// owner, the namespace's device errors and drops. `None` when nodetel knows nothing for it.
fn interfaces(
    traffic: Option<&[DeviceTraffic]>,
    name_of: impl Fn(&DeviceTraffic) -> Option<String>,
    owned_devices: Option<&Vec<DeviceCounters>>,
) -> Option<Vec<InterfaceStats>> {
    if traffic.is_none() && owned_devices.is_none() {
        return None;
    }
    let mut out: Vec<InterfaceStats> = Vec::new();
    for t in traffic.into_iter().flatten() {
        // Device names cannot contain ':', so this never collides with a real one.
        let name = name_of(t).unwrap_or_else(|| format!("ifindex:{}", t.ifindex));
        // One name in two namespaces (a cgroup that used `lo` in both): one series, summed.
        if let Some(i) = out.iter_mut().find(|i| i.name == name) {
            let add = |a: &mut Option<u64>, b: u64| *a = Some(a.unwrap_or(0).saturating_add(b));
            add(&mut i.rx_bytes, t.rx_bytes);
            add(&mut i.rx_packets, t.rx_packets);
            add(&mut i.tx_bytes, t.tx_bytes);
            add(&mut i.tx_packets, t.tx_packets);
            continue;
        }
        out.push(InterfaceStats {
            name,
            rx_bytes: Some(t.rx_bytes),
            rx_packets: Some(t.rx_packets),
            tx_bytes: Some(t.tx_bytes),
            tx_packets: Some(t.tx_packets),
            ..InterfaceStats::default()
        });
    }
    for d in owned_devices.into_iter().flatten() {
        if netdev::ignored(&d.name) {
            continue;
        }
        let i = match out.iter().position(|i| i.name == d.name) {
            Some(i) => i,
            None => {
                // The sockets counted nothing on it: zero when the programs run.
                let zero = traffic.map(|_| 0);
                out.push(InterfaceStats {
                    name: d.name.clone(),
                    rx_bytes: zero,
                    rx_packets: zero,
                    tx_bytes: zero,
                    tx_packets: zero,
                    ..InterfaceStats::default()
                });
                out.len() - 1
            }
        };
        let i = &mut out[i];
        i.rx_errors = Some(d.rx_errors);
        i.rx_dropped = Some(d.rx_dropped);
        i.tx_errors = Some(d.tx_errors);
        i.tx_dropped = Some(d.tx_dropped);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: u64, path: &str, start: f64) -> ContainerSample {
        ContainerSample {
            cgroup_id: id,
            path: path.into(),
            start_time: Some(start),
            ..ContainerSample::default()
        }
    }

    fn dev(name: &str, errs: u64) -> DeviceCounters {
        DeviceCounters {
            name: name.into(),
            rx_bytes: 1_000_000,
            rx_errors: errs,
            rx_dropped: errs + 1,
            ..DeviceCounters::default()
        }
    }

    #[test]
    fn the_oldest_cgroup_of_a_namespace_owns_it_and_the_host_has_no_owner() {
        let cs = vec![
            sample(1, "/", 0.0),
            sample(10, "/pod/app", 200.0),
            sample(11, "/pod/sandbox", 100.0),
            sample(12, "/pod/sidecar", 100.0),
            sample(20, "/hostnet", 50.0),
        ];
        let ns_of: HashMap<u64, u64> = [(10, 7), (11, 7), (12, 7), (20, 1), (1, 1)].into();
        let o = owners(&cs, &ns_of, Some(1));
        assert_eq!(o, HashMap::from([(7, 11)]));
    }

    #[test]
    fn traffic_is_named_in_the_namespace_and_errors_go_to_the_owner_only() {
        let traffic = [DeviceTraffic {
            netns: 9,
            ifindex: 3,
            rx_bytes: 500,
            rx_packets: 5,
            tx_bytes: 700,
            tx_packets: 7,
        }];
        let names = HashMap::from([(1, "lo".to_string()), (3, "eth0".to_string())]);
        let named = |t: &DeviceTraffic| names.get(&t.ifindex).cloned();
        let devices = vec![dev("lo", 0), dev("eth0", 4), dev("eth1", 0)];

        let owner = interfaces(Some(&traffic), named, Some(&devices)).expect("owner");
        assert_eq!(
            owner.len(),
            2,
            "lo is left out of device-level series: {owner:?}"
        );
        assert_eq!(owner[0].name, "eth0");
        assert_eq!(
            owner[0].rx_bytes,
            Some(500),
            "bytes are the sockets', not the device's"
        );
        assert_eq!(
            (owner[0].rx_errors, owner[0].rx_dropped),
            (Some(4), Some(5))
        );
        assert_eq!(
            (owner[1].name.as_str(), owner[1].tx_bytes),
            ("eth1", Some(0))
        );

        let member = interfaces(Some(&traffic), named, None).expect("member");
        assert_eq!(member.len(), 1);
        assert_eq!((member[0].rx_errors, member[0].tx_dropped), (None, None));

        let unnamed = interfaces(Some(&traffic), |_| None, None).expect("unnamed");
        assert_eq!(unnamed[0].name, "ifindex:3");

        // lo of two namespaces is one series.
        let two = [
            traffic[0],
            DeviceTraffic {
                netns: 10,
                ..traffic[0]
            },
        ];
        let merged = interfaces(Some(&two), |_| Some("lo".into()), None).expect("merged");
        assert_eq!(merged.len(), 1);
        assert_eq!(
            (merged[0].rx_bytes, merged[0].tx_packets),
            (Some(1000), Some(14))
        );

        assert_eq!(interfaces(None, named, None), None);
        let no_programs = interfaces(None, |_| None, Some(&devices)).expect("device-level only");
        assert_eq!(no_programs[0].rx_bytes, None);
        assert_eq!(no_programs[0].rx_errors, Some(4));
    }

    #[test]
    fn the_machine_shows_device_counters_without_loopback_and_container_links() {
        let m = machine(&[
            dev("lo", 0),
            dev("eth0", 2),
            dev("veth12", 0),
            dev("cni0", 0),
        ]);
        let names: Vec<&str> = m.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "cni0"]);
        assert_eq!(m[0].rx_bytes, Some(1_000_000));
    }
}
