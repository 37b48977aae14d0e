//! Per-container network figures from the namespaces' devices and the traffic map, with cAdvisor's semantics: a namespace's device counters.
//!
//! Who gets what:
//! - A namespace's owner, the oldest cgroup in it (the pod sandbox, or a container alone in its
//!   namespace): the namespace's device counters, less what the other cgroups' sockets counted
//!   there (see `share`), and the devices' errors and drops. A container alone in its namespace
//!   shows exactly its devices' counters, as cAdvisor; a pod's sum is its devices' counters.
//! - Every other cgroup but the root: the traffic of the sockets its own tasks created (eBPF,
//!   bytes at the IP layer), per device. A pod cgroup has none of its own, so a sum by pod
//!   counts each byte once, and a hostNetwork container gets its own traffic, not the host's
//!   (the host namespace has no owner).
//! - The root cgroup `/` is the machine, as in cAdvisor: the host namespace's device counters.
//! - Devices cAdvisor leaves out (`lo`, `veth*`, `docker*`, `nerdctl*`) are left out;
//!   `--network-loopback` keeps the sockets' traffic over `lo`.
//!
//! Each namespace's `net/dev` is read once per pass, whatever the number of containers in it.
use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    time::{Duration, Instant},
};

use super::{
    netdev::{self, DeviceCounters},
    netns, share,
    traffic::{DeviceTraffic, Traffic},
};
use crate::snapshot::{ContainerSample, InterfaceStats, NetStats};

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
    /// The owners' share of their namespaces' device counters.
    shares: share::Shares,
    /// The process each namespace was read through last pass, and the devices read through it
    /// before this pass's drain (see [`Self::read_devices_early`]).
    readers: HashMap<u64, u32>,
    early: HashMap<u64, (u32, Vec<DeviceCounters>)>,
    /// `--network-loopback`: traffic on `lo` is shown.
    loopback: bool,
}

impl NetworkReader {
    pub fn new(proc_root: PathBuf, loopback: bool) -> Self {
        NetworkReader {
            proc_root,
            shares: share::Shares::default(),
            readers: HashMap::new(),
            early: HashMap::new(),
            loopback,
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

    /// Reads the device counters of last pass's namespaces, through last pass's processes,
    /// before the traffic map is drained: what a device counted after its sockets were read
    /// (all the traffic of the walk, tens of milliseconds) would otherwise be the owner's too,
    /// and kept (see `share`). Read first, only the packets queued between device and socket at
    /// that instant are.
    pub fn read_devices_early(&mut self) {
        let readers: Vec<(u64, u32)> = self.readers.iter().map(|(n, p)| (*n, *p)).collect();
        self.early.clear();
        for (ns, pid) in readers {
            // A process gone since last pass is no error: `fill` reads through this pass's.
            if let Some(d) = self.read_devices(pid, false) {
                self.early.insert(ns, (pid, d));
            }
        }
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
        // A namespace is read through the same process as last pass while it is there: its
        // devices were then read early, before the drain (see `read_devices_early`).
        for (pid, ns) in answered.values() {
            if self.readers.get(ns) == Some(pid) {
                reader_pid.insert(*ns, *pid);
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
        let mut early = std::mem::take(&mut self.early);
        for (&ns, &pid) in &reader_pid {
            // Read before the traffic was drained, through the same process: the owner's share
            // (devices less the others' sockets) then never counts a packet twice.
            let read = match early.remove(&ns) {
                Some((p, d)) if p == pid => Some(d),
                _ => self.read_devices(pid, true),
            };
            match read {
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
        self.readers = reader_pid.clone();
        let in_use: std::collections::HashSet<u64> = ns_of.values().copied().collect();
        self.names
            .retain(|ns, _| devices.contains_key(ns) || in_use.contains(ns));
        crate::prune::shrink(&mut self.names);
        self.stats.namespaces = reader_pid.len() as u64;

        let owners = owners(containers, &ns_of, host);
        // Every cgroup's socket figures, named in the namespace the kernel told. Those on a
        // device of a namespace another cgroup owns are that owner's "others".
        let mut named: HashMap<u64, Vec<(u64, String, DeviceTraffic)>> = HashMap::new();
        let mut current: HashMap<share::ShareKey, share::Counts> = HashMap::new();
        for c in containers.iter().filter(|c| c.path != "/") {
            let ns = ns_of.get(&c.cgroup_id).copied();
            let entries = traffic
                .and_then(|t| t.get(&c.cgroup_id))
                .into_iter()
                .flatten();
            // Entries of a removed device are deleted after this pass: shown neither now (as a
            // one-pass `ifindex:N` series) nor later.
            for d in entries.filter(|d| !self.removed_device(d)) {
                let in_ns = if d.netns != 0 {
                    u64::from(d.netns)
                } else {
                    ns.unwrap_or(0)
                };
                let name = self
                    .names
                    .get(&in_ns)
                    .and_then(|n| n.by_index.get(&d.ifindex))
                    .cloned();
                if let Some(name) = &name
                    && !self.shown(name)
                {
                    continue;
                }
                if let Some(name) = &name
                    && owners.get(&in_ns).is_some_and(|o| *o != c.cgroup_id)
                    && devices.contains_key(&in_ns)
                {
                    let e = current
                        .entry((c.cgroup_id, in_ns, name.clone()))
                        .or_default();
                    for (x, y) in e.iter_mut().zip(counts(d)) {
                        *x = x.saturating_add(y);
                    }
                }
                // Device names cannot contain ':', so this never collides with a real one.
                let name = name.unwrap_or_else(|| format!("ifindex:{}", d.ifindex));
                named
                    .entry(c.cgroup_id)
                    .or_default()
                    .push((in_ns, name, *d));
            }
        }
        self.shares.update(current);
        let others = self.shares.others();
        let owner_ids: HashSet<u64> = owners.values().copied().collect();
        self.shares.prune(&self.live, &owner_ids);

        for c in containers.iter_mut() {
            if c.path == "/" {
                c.network = host.and_then(|h| devices.get(&h)).map(|d| machine(d));
                continue;
            }
            let ns = ns_of.get(&c.cgroup_id).copied();
            let owned = ns.filter(|ns| owners.get(ns) == Some(&c.cgroup_id));
            let mine = named.remove(&c.cgroup_id).unwrap_or_default();
            let mut list = match owned.and_then(|ns| Some((ns, devices.get(&ns)?))) {
                Some((ns, devs)) => {
                    let mut list = Vec::new();
                    for d in devs.iter().filter(|d| !netdev::ignored(&d.name)) {
                        let got = self.shares.owner(
                            c.cgroup_id,
                            ns,
                            d,
                            others.get(&(ns, d.name.clone())),
                        );
                        list.push(InterfaceStats {
                            name: d.name.clone(),
                            rx_bytes: Some(got[0]),
                            rx_packets: Some(got[1]),
                            tx_bytes: Some(got[2]),
                            tx_packets: Some(got[3]),
                            rx_errors: Some(d.rx_errors),
                            rx_dropped: Some(d.rx_dropped),
                            tx_errors: Some(d.tx_errors),
                            tx_dropped: Some(d.tx_dropped),
                        });
                    }
                    // Its sockets' traffic elsewhere (a device of another namespace, or one not
                    // named) is its own, on top.
                    let elsewhere = mine.iter().filter(|(in_ns, name, _)| {
                        *in_ns != ns || !devs.iter().any(|d| d.name == *name)
                    });
                    add_sockets(&mut list, elsewhere.map(|(_, n, d)| (n.as_str(), d)));
                    list
                }
                None if traffic.is_some() => {
                    let mut list = Vec::new();
                    add_sockets(&mut list, mine.iter().map(|(_, n, d)| (n.as_str(), d)));
                    list
                }
                None => {
                    c.network = None;
                    continue;
                }
            };
            list.sort_by(|a, b| a.name.cmp(&b.name));
            c.network = Some(list);
        }
    }

    /// Whether traffic on a device of this name is shown: not on the devices cAdvisor leaves
    /// out, except `lo` when asked for (the kernel programs then count it too).
    fn shown(&self, name: &str) -> bool {
        !netdev::ignored(name) || (self.loopback && name == "lo")
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

    /// The devices of `pid`'s namespace; a failure is counted in the errors when `count`.
    fn read_devices(&mut self, pid: u32, count: bool) -> Option<Vec<DeviceCounters>> {
        let path = self.proc_root.join(pid.to_string()).join("net/dev");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (d, bad) = netdev::parse(&text);
                if bad > 0 {
                    tracing::debug!(lines = bad, "unparsable lines of net/dev skipped");
                }
                Some(d)
            }
            Err(e) => {
                if count {
                    self.stats.errors += 1;
                }
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

fn counts(d: &DeviceTraffic) -> share::Counts {
    [d.rx_bytes, d.rx_packets, d.tx_bytes, d.tx_packets]
}

/// Adds sockets' traffic to a cgroup's interfaces, one per device name: a name used in two
/// namespaces (`lo` of a cgroup that used both) is one series, summed.
fn add_sockets<'a>(
    list: &mut Vec<InterfaceStats>,
    traffic: impl Iterator<Item = (&'a str, &'a DeviceTraffic)>,
) {
    for (name, t) in traffic {
        let i = match list.iter().position(|i| i.name == name) {
            Some(i) => i,
            None => {
                list.push(InterfaceStats {
                    name: name.to_string(),
                    ..InterfaceStats::default()
                });
                list.len() - 1
            }
        };
        let i = &mut list[i];
        let add = |a: &mut Option<u64>, b: u64| *a = Some(a.unwrap_or(0).saturating_add(b));
        add(&mut i.rx_bytes, t.rx_bytes);
        add(&mut i.rx_packets, t.rx_packets);
        add(&mut i.tx_bytes, t.tx_bytes);
        add(&mut i.tx_packets, t.tx_packets);
    }
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
    fn a_name_used_in_two_namespaces_is_one_series() {
        let t = DeviceTraffic {
            netns: 9,
            ifindex: 3,
            rx_bytes: 500,
            rx_packets: 5,
            tx_bytes: 700,
            tx_packets: 7,
        };
        let other = DeviceTraffic { netns: 10, ..t };
        let mut list = Vec::new();
        add_sockets(&mut list, [("eth0", &t), ("eth0", &other)].into_iter());
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].rx_bytes, list[0].tx_packets),
            (Some(1000), Some(14))
        );
        assert_eq!((list[0].rx_errors, list[0].tx_dropped), (None, None));
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
        let mut r = NetworkReader::new(PathBuf::from("/nonexistent"), false);
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
        let mut r = NetworkReader::new(root.path().to_path_buf(), false);
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

    /// A pod: the sandbox (oldest) owns the namespace and gets the device counters less what the
    /// app's sockets counted; loopback is shown only when asked for.
    #[test]
    fn the_owner_gets_the_devices_counters_less_the_others_sockets() {
        for loopback in [false, true] {
            let (root, ns) = fake_proc(5);
            // eth0: 10000 B / 100 pkts received, 4000 B / 40 sent; 2 receive errors.
            let dev = "h1\nh2\n    lo: 900 9 0 0 0 0 0 0 900 9 0 0 0 0 0 0\n  eth0: 10000 100 2 0 0 0 0 0 4000 40 0 0 0 0 0 0\n";
            std::fs::write(root.path().join("7/net/dev"), dev).expect("dev");
            let mut r = NetworkReader::new(root.path().to_path_buf(), loopback);
            let mut sandbox = sample(100, "/pod/sandbox", 1.0);
            let mut app = sample(101, "/pod/app", 2.0);
            sandbox.processes.first_pid = Some(7);
            app.processes.first_pid = Some(7);
            let entry = |ifindex, rx_bytes, rx_packets| DeviceTraffic {
                netns: ns,
                ifindex,
                rx_bytes,
                rx_packets,
                ..DeviceTraffic::default()
            };
            let t = Traffic::from([(101, vec![entry(5, 6000, 50), entry(1, 900, 9)])]);
            let mut cs = vec![sandbox, app];
            r.fill(&mut cs, Some(&t));
            let get = |c: &ContainerSample, name: &str| {
                c.network.iter().flatten().find(|i| i.name == name).cloned()
            };
            let owner = get(&cs[0], "eth0").expect("sandbox eth0");
            assert_eq!(
                (owner.rx_bytes, owner.rx_packets, owner.tx_bytes),
                (Some(4000), Some(50), Some(4000))
            );
            assert_eq!(owner.rx_errors, Some(2));
            let mine = get(&cs[1], "eth0").expect("app eth0");
            assert_eq!((mine.rx_bytes, mine.rx_errors), (Some(6000), None));
            assert_eq!(get(&cs[0], "lo"), None, "lo is never a device series");
            assert_eq!(
                get(&cs[1], "lo").is_some(),
                loopback,
                "lo with the flag only"
            );
        }
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
