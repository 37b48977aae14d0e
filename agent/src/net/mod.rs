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

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    time::{Duration, Instant},
};

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
    /// Device-index lookups (when a namespace's devices changed, or traffic named an index
    /// the last lookup did not have).
    pub index_lookups: u64,
    /// Devices of the last pass whose index no file of their namespace gave: their traffic is
    /// shown as `ifindex:N`, and that namespace's traffic entries are never judged dead.
    pub unindexed_devices: u64,
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

impl Names {
    /// Every device of the list has its index: an index not among them is no device's.
    fn complete(&self) -> bool {
        self.by_index.len() == self.devices.len()
    }
}

/// How long traffic entries may name a namespace in which no cgroup has a process before they
/// are deleted. A namespace is only read through a process in it, so this is how a dead one
/// looks; five minutes let a namespace outlive its processes a while (sockets closing, a
/// sandbox restarting) without its series being cut.
const UNSEEN_NAMESPACE_GRACE: Duration = Duration::from_secs(300);

/// One traffic entry of the kernel map: cgroup, namespace, device index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrafficEntry {
    pub cgroup_id: u64,
    pub netns: u32,
    pub ifindex: u32,
}

pub struct NetworkReader {
    proc_root: PathBuf,
    /// cgroup id -> its namespace when last seen with a process: its sockets may outlive them.
    last_ns: HashMap<u64, u64>,
    /// cgroup id -> the process its namespace was read through last pass, with the answer.
    last_pid_ns: HashMap<u64, (u32, u64)>,
    /// A process's namespace was refused us (no CAP_SYS_PTRACE, a process of another user):
    /// said once in the log, counted every time.
    denied_logged: bool,
    names: HashMap<u64, Names>,
    /// Namespaces of the last pass whose device list was read and fully indexed: an index
    /// absent from them is a removed device.
    indexed: HashSet<u64>,
    /// Namespaces with a live process in some cgroup at the last pass.
    live: HashSet<u64>,
    /// Namespaces named by traffic entries but with no process seen in them: since when, and
    /// their packet count then. Bounded by the traffic map (pruned to the namespaces it names
    /// every pass).
    unseen_since: HashMap<u32, (Instant, u64)>,
    stats: NetStats,
}

impl NetworkReader {
    pub fn new(proc_root: PathBuf) -> Self {
        NetworkReader {
            proc_root,
            last_ns: HashMap::new(),
            last_pid_ns: HashMap::new(),
            denied_logged: false,
            names: HashMap::new(),
            indexed: HashSet::new(),
            live: HashSet::new(),
            unseen_since: HashMap::new(),
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
            match netns::id(&self.proc_root, pid) {
                Ok(ns) => {
                    ns_of.insert(c.cgroup_id, ns);
                    reader_pid.entry(ns).or_insert(pid);
                    answered.insert(c.cgroup_id, (pid, ns));
                }
                // pid 1 is the host's init, whose namespace `netns::host` finds its own way (it
                // is refused here even with CAP_SYS_PTRACE on this machine's kernel).
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && pid != 1 => {
                    // Measured: without CAP_SYS_PTRACE, a workload running as another user
                    // has its traffic on `ifindex:N` instead of its device's name.
                    self.stats.errors += 1;
                    if !self.denied_logged {
                        self.denied_logged = true;
                        tracing::warn!(pid, error = %e, "cannot read a process's network namespace (CAP_SYS_PTRACE is needed for other users' processes): its cgroup's device names and counters are missing");
                    }
                }
                Err(_) => {}
            }
        }
        for c in containers.iter() {
            if let Some(ns) = self.last_ns.get(&c.cgroup_id) {
                ns_of.entry(c.cgroup_id).or_insert(*ns);
            }
        }
        self.last_ns = ns_of.clone();
        self.last_pid_ns = answered;

        // Device indexes the traffic uses, per namespace: one the last lookup did not have is a
        // device added (or re-created under the same name) since.
        let mut used: HashMap<u64, HashSet<u32>> = HashMap::new();
        for d in traffic.into_iter().flat_map(|t| t.values()).flatten() {
            used.entry(u64::from(d.netns))
                .or_default()
                .insert(d.ifindex);
        }
        let mut devices: HashMap<u64, Vec<DeviceCounters>> = HashMap::new();
        self.indexed.clear();
        self.stats.unindexed_devices = 0;
        for (&ns, &pid) in &reader_pid {
            match self.read_devices(pid) {
                Some(d) => {
                    devices.insert(ns, d);
                }
                None => continue,
            }
            self.refresh_names(ns, pid, &devices[&ns], used.get(&ns));
            if let Some(n) = self.names.get(&ns)
                && n.devices.len() == devices[&ns].len()
                && n.devices
                    .iter()
                    .zip(&devices[&ns])
                    .all(|(a, b)| *a == b.name)
            {
                if n.complete() {
                    self.indexed.insert(ns);
                } else {
                    self.stats.unindexed_devices += (n.devices.len() - n.by_index.len()) as u64;
                }
            }
        }
        self.live = reader_pid.keys().copied().collect();
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
                // Entries of a removed device are deleted after this pass: shown neither now
                // (as a one-pass `ifindex:N` series) nor later.
                let live: Option<Vec<DeviceTraffic>> = traffic.map(|t| {
                    t.get(&c.cgroup_id)
                        .into_iter()
                        .flatten()
                        .filter(|d| !self.removed_device(d))
                        .copied()
                        .collect()
                });
                interfaces(live.as_deref(), name_of, owned_devices)
            };
        }
    }

    /// The entry's namespace was fully indexed this pass and has no device with its index.
    /// Index 0 (a packet without a device) and namespace 0 (not told) are never judged.
    fn removed_device(&self, d: &DeviceTraffic) -> bool {
        let ns = u64::from(d.netns);
        d.netns != 0
            && d.ifindex != 0
            && self.indexed.contains(&ns)
            && self
                .names
                .get(&ns)
                .is_some_and(|n| !n.by_index.contains_key(&d.ifindex))
    }

    /// Traffic entries whose device is gone: its namespace was fully indexed this pass and has
    /// no device with that index any more, or no cgroup has had a process in its namespace for
    /// [`UNSEEN_NAMESPACE_GRACE`] while its entries stood still. Without this a long-lived
    /// cgroup that reaches every new pod through the pod's own host-side veth (the kubelet's
    /// probes, node-local DNS) would keep two entries per pod it ever talked to until the map
    /// is full. Call after [`Self::fill`] with the traffic as drained (cgroup ids the map's
    /// own).
    pub fn dead_traffic(&mut self, traffic: &Traffic, now: Instant) -> Vec<TrafficEntry> {
        // Packets counted so far in each namespace nobody is seen in: while that grows, some
        // process is there after all (one of a cgroup's later pids; only the first is looked
        // at), so the wait starts again.
        let mut unseen: HashMap<u32, u64> = HashMap::new();
        for d in traffic.values().flatten() {
            let ns = u64::from(d.netns);
            if d.netns != 0 && !self.indexed.contains(&ns) && !self.live.contains(&ns) {
                let p = unseen.entry(d.netns).or_default();
                *p = p.wrapping_add(d.rx_packets).wrapping_add(d.tx_packets);
            }
        }
        self.unseen_since.retain(|ns, _| unseen.contains_key(ns));
        let mut expired: HashSet<u32> = HashSet::new();
        for (ns, packets) in unseen {
            let e = self.unseen_since.entry(ns).or_insert((now, packets));
            if e.1 != packets {
                *e = (now, packets);
            }
            if now.duration_since(e.0) >= UNSEEN_NAMESPACE_GRACE {
                expired.insert(ns);
            }
        }
        crate::prune::shrink(&mut self.unseen_since);

        let mut dead = Vec::new();
        for (&cgroup_id, devices) in traffic {
            for d in devices {
                let ns = u64::from(d.netns);
                // netns 0 (the kernel could not tell) is in neither set: such entries go with
                // their cgroup.
                let gone = if self.indexed.contains(&ns) {
                    self.removed_device(d)
                } else {
                    expired.contains(&d.netns)
                };
                if gone {
                    dead.push(TrafficEntry {
                        cgroup_id,
                        netns: d.netns,
                        ifindex: d.ifindex,
                    });
                }
            }
        }
        dead
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
    /// removed or renamed), or when traffic used an index the last complete lookup did not
    /// have (a device removed and re-created under its old name between two passes): indexes
    /// are stable otherwise. An incomplete lookup is only repeated when the list changes, or
    /// the unindexable device would cost a lookup every pass.
    fn refresh_names(
        &mut self,
        ns: u64,
        pid: u32,
        devices: &[DeviceCounters],
        used: Option<&HashSet<u32>>,
    ) {
        let current: Vec<String> = devices.iter().map(|d| d.name.clone()).collect();
        if let Some(n) = self.names.get(&ns)
            && n.devices == current
            && !(n.complete()
                && used.is_some_and(|u| u.iter().any(|i| *i != 0 && !n.by_index.contains_key(i))))
        {
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

    fn traffic(entries: &[(u64, u32, u32, u64)]) -> Traffic {
        let mut t = Traffic::new();
        for &(cgroup, netns, ifindex, packets) in entries {
            t.entry(cgroup).or_default().push(DeviceTraffic {
                netns,
                ifindex,
                rx_packets: packets,
                ..DeviceTraffic::default()
            });
        }
        t
    }

    #[test]
    fn entries_of_removed_devices_and_abandoned_namespaces_are_dead() {
        let mut r = NetworkReader::new(PathBuf::from("/nonexistent"));
        r.names.insert(
            7,
            Names {
                devices: vec!["lo".into(), "eth0".into()],
                by_index: HashMap::from([(1, "lo".into()), (5, "eth0".into())]),
            },
        );
        r.indexed.insert(7);
        r.live.insert(7);
        // Namespace 3 is live but its lookup was incomplete: nothing in it is judged.
        r.live.insert(3);
        let t0 = Instant::now();
        let t = traffic(&[
            (100, 7, 1, 10),
            (100, 7, 5, 10),
            (100, 7, 9, 10), // a veth removed since
            (101, 7, 9, 10),
            (100, 3, 42, 10),
            (100, 8, 2, 10), // namespace 8: no process seen in it
            (102, 0, 4, 10), // namespace unknown
            (103, 7, 0, 10), // no device
        ]);
        let mut dead = r.dead_traffic(&t, t0);
        dead.sort_by_key(|e| (e.cgroup_id, e.netns, e.ifindex));
        let entry = |cgroup_id, netns, ifindex| TrafficEntry {
            cgroup_id,
            netns,
            ifindex,
        };
        assert_eq!(dead, vec![entry(100, 7, 9), entry(101, 7, 9)]);

        // Namespace 8 is dead once it has stood still for the whole grace ...
        let later = t0 + UNSEEN_NAMESPACE_GRACE;
        let dead = r.dead_traffic(&t, later - Duration::from_secs(1));
        assert!(!dead.contains(&entry(100, 8, 2)), "{dead:?}");
        // ... and moving traffic starts the wait again.
        let moving = traffic(&[(100, 8, 2, 11)]);
        assert_eq!(r.dead_traffic(&moving, later), vec![]);
        assert_eq!(
            r.dead_traffic(&moving, later + UNSEEN_NAMESPACE_GRACE),
            vec![entry(100, 8, 2)]
        );
        // Namespaces the map no longer names are forgotten.
        assert_eq!(r.dead_traffic(&Traffic::new(), later), vec![]);
        assert!(r.unseen_since.is_empty());
    }

    /// A procfs with one process (pid 7) in its own namespace, devices `lo` and `eth0`.
    fn fake_proc(eth0_index: u32) -> (tempfile::TempDir, u32) {
        let root = tempfile::tempdir().expect("tempdir");
        let p = root.path().join("7");
        std::fs::create_dir_all(p.join("ns")).expect("ns");
        std::fs::create_dir_all(p.join("net/dev_snmp6")).expect("net");
        std::fs::write(p.join("ns/net"), "").expect("ns/net");
        set_eth0(&root, eth0_index);
        let dev = "h1\nh2\n    lo: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n  eth0: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
        std::fs::write(p.join("net/dev"), dev).expect("dev");
        std::fs::write(p.join("net/dev_snmp6/lo"), "ifIndex\t1\n").expect("lo");
        let ns =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p.join("ns/net")).expect("ino"));
        (root, u32::try_from(ns).expect("small inode"))
    }

    fn set_eth0(root: &tempfile::TempDir, index: u32) {
        let path = root.path().join("7/net/dev_snmp6/eth0");
        std::fs::write(path, format!("ifIndex\t{index}\n")).expect("eth0");
    }

    #[test]
    fn a_device_recreated_under_its_name_between_passes_is_looked_up_again() {
        let (root, ns) = fake_proc(5);
        let mut r = NetworkReader::new(root.path().to_path_buf());
        let mut c = sample(100, "/pod/app", 1.0);
        c.processes.first_pid = Some(7);
        let entry = |ifindex, packets| DeviceTraffic {
            netns: ns,
            ifindex,
            tx_packets: packets,
            ..DeviceTraffic::default()
        };
        let t = Traffic::from([(100, vec![entry(5, 3)])]);
        let mut cs = vec![c.clone()];
        r.fill(&mut cs, Some(&t));
        let names = |cs: &[ContainerSample]| -> Vec<String> {
            cs[0]
                .network
                .iter()
                .flatten()
                .map(|i| i.name.clone())
                .collect()
        };
        assert_eq!(names(&cs), ["eth0"]);
        assert_eq!(r.dead_traffic(&t, Instant::now()), vec![]);
        let lookups = r.stats().index_lookups;

        // eth0 deleted and made again (a pod's veth): same names, a new index, and the old
        // index's entry still in the map.
        set_eth0(&root, 9);
        let t = Traffic::from([(100, vec![entry(5, 3), entry(9, 2)])]);
        let mut cs = vec![c.clone()];
        r.fill(&mut cs, Some(&t));
        assert_eq!(r.stats().index_lookups, lookups + 1, "looked up again");
        assert_eq!(names(&cs), ["eth0"], "the new index is eth0; no ifindex:9");
        assert_eq!(
            r.dead_traffic(&t, Instant::now()),
            vec![TrafficEntry {
                cgroup_id: 100,
                netns: ns,
                ifindex: 5
            }]
        );

        // Known indexes only: no lookup.
        let t = Traffic::from([(100, vec![entry(9, 2)])]);
        r.fill(&mut [c], Some(&t));
        assert_eq!(r.stats().index_lookups, lookups + 1);
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
