//! One collection pass: drain the kernel maps, walk the cgroup tree, read cgroupfs, and build the
//! snapshot. Blocking (syscalls and file reads): runs on a blocking thread, once per interval.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use nodetel_common::{MAP_CPU_NS, MAP_OOM_KILLS, OomKill, PROG_SCHED_SWITCH};

use crate::{
    cgroup::Tree,
    cgroupfs::CgroupfsReader,
    cpu_account::CpuAccountant,
    ebpf::{CpuDrain, KernelStats, Probes, SchedDrain, Traffic, comm_str},
    events::{Event, EventKind, EventStore, Victim},
    machine::{MachineInfo, Roots},
    metric_kinds::{MetricKind, MetricKinds},
    net::NetworkReader,
    snapshot::{AgentStats, ContainerSample, OomEvent, RunqueueLatency, Schedstat, Snapshot},
};

/// OOM kill records kept for the event API; the oldest go first.
const OOM_LOG_CAPACITY: usize = 1024;

pub struct Collector {
    probes: Probes,
    reader: CgroupfsReader,
    accountant: CpuAccountant,
    machine: Arc<MachineInfo>,
    /// Hierarchical CPU ns of the last successful drain; held when a drain fails.
    cpu_totals: HashMap<u64, u64>,
    /// Hierarchical run-queue ns and run periods, kept like CPU time (monotonic, removed
    /// cgroups' figures held by their ancestors).
    runqueue: CpuAccountant,
    run_periods: CpuAccountant,
    sched_totals: HashMap<u64, Schedstat>,
    sched_own: SchedDrain,
    /// Traffic per cgroup and device as of the last successful drain (cumulative).
    traffic: Traffic,
    network: NetworkReader,
    /// OOM kills per victim cgroup as of the last drain (cumulative).
    oom_totals: HashMap<u64, u64>,
    /// Cgroups with a recent OOM kill, and how many more passes they are read whatever their CPU
    /// time says (see `OOM_SETTLE_PASSES`).
    oom_unsettled: HashMap<u64, u32>,
    oom_log: VecDeque<OomEvent>,
    oom_shared: Arc<Vec<OomEvent>>,
    /// The previous walk: a victim's cgroup is often removed right after the kill (its container
    /// exits), so its path is looked up here when the new walk no longer has it.
    last_tree: Tree,
    stats: AgentStats,
    naming: Naming,
    events: Arc<EventStore>,
    walks: WalkGate,
    /// The `disk` kind: per-container filesystem usage (`None` when the kind is off).
    fs: Option<crate::fs_usage::FsUsage>,
}

/// Passes a cgroup is read every pass after an OOM kill in it, whatever its CPU time says.
const OOM_SETTLE_PASSES: u32 = 5;

/// Whether the cgroup tree must be walked this pass: only when the kernel's count of cgroup
/// mkdir/rmdir/rename moved (or is unknown). The tracepoint fires a moment before a new
/// directory is visible to readdir, so a change is walked twice: once when seen, and once a
/// pass later when the count has stood still; only then is the walk trusted to be complete.
#[derive(Default)]
struct WalkGate {
    /// The count as of the previous pass.
    seen: Option<u64>,
    /// The count was already steady when the last walk was made.
    complete: bool,
    /// Whether the walk being made now is of a steady count.
    steady_now: bool,
    /// Passes since the last walk: a walk is made at least every [`WALK_AT_LEAST_EVERY`].
    since_walk: u64,
}

const WALK_AT_LEAST_EVERY: u64 = 60;

impl WalkGate {
    /// `changes`: the count read this pass, before any walk (`None`: not watched).
    fn unchanged(&mut self, changes: Option<u64>) -> bool {
        let steady = changes.is_some() && changes == self.seen;
        self.seen = changes;
        if steady && self.complete && self.since_walk + 1 < WALK_AT_LEAST_EVERY {
            self.since_walk += 1;
            return true;
        }
        self.complete = false;
        self.steady_now = steady;
        false
    }

    fn walked(&mut self) {
        self.complete = self.steady_now;
        self.since_walk = 0;
    }
}

/// How cgroups get their names and which label set their series carry.
pub struct Naming {
    pub namer: crate::identity::Namer,
    pub registry: Arc<crate::identity::Registry>,
    /// The resolvers running, for their health series.
    pub sources: Vec<crate::identity::Source>,
    pub labels: crate::metrics::LabelChoice,
    /// `--docker-only`: only runtime containers, the root and these raw cgroup prefixes.
    pub only_containers: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The cgroup v2 root could not be walked at all.
    #[error("failed to walk the cgroup hierarchy at `{path}`: {source}")]
    Walk {
        path: String,
        source: std::io::Error,
    },
}

impl Collector {
    pub fn new(
        probes: Probes,
        layout: crate::cgroup::Layout,
        roots: Roots,
        kinds: MetricKinds,
        reading: crate::cgroupfs::Reading,
        naming: Naming,
        events: Arc<EventStore>,
    ) -> Self {
        let machine = Arc::new(crate::machine::read(&roots));
        let stats = AgentStats {
            programs_attached: probes.attached.clone(),
            programs_not_attached: probes.not_attached.clone(),
            cpu_map_capacity: u64::from(probes.cpu_map_entries),
            net_map_capacity: u64::from(probes.net_map_entries),
            sched_map_capacity: u64::from(probes.sched_map_entries),
            ..AgentStats::default()
        };
        let network = NetworkReader::new(roots.proc_root.clone(), probes.loopback);
        Collector {
            probes,
            traffic: Traffic::new(),
            runqueue: CpuAccountant::default(),
            run_periods: CpuAccountant::default(),
            sched_totals: HashMap::new(),
            sched_own: SchedDrain::default(),
            network,
            reader: CgroupfsReader::new(
                layout,
                roots.proc_root,
                roots.sys_root,
                kinds,
                reading.open_files,
            )
            .reuse_quiet_for(reading.reuse_quiet_passes)
            .pass_interval(reading.pass_interval),
            accountant: CpuAccountant::default(),
            machine,
            cpu_totals: HashMap::new(),
            oom_totals: HashMap::new(),
            oom_unsettled: HashMap::new(),
            oom_log: VecDeque::new(),
            oom_shared: Arc::new(Vec::new()),
            last_tree: Tree::default(),
            stats,
            naming,
            events,
            walks: WalkGate::default(),
            fs: None,
        }
    }

    /// Measures filesystem usage (the `disk` kind) with this walker.
    pub fn with_fs_usage(mut self, fs: crate::fs_usage::FsUsage) -> Self {
        self.fs = Some(fs);
        self
    }

    pub fn collect(&mut self) -> Result<Snapshot, CollectError> {
        let started = Instant::now();
        // Devices first, the traffic map after the other drains: packets a device has passed
        // on are in its sockets' counters by then (see NetworkReader::read_devices_early).
        let net_on = self.reader.kinds().has(MetricKind::Network);
        if net_on {
            self.network.read_devices_early();
        }
        // The moment the CPU figures describe: the drain, not the end of the pass.
        let taken_at = SystemTime::now();
        // Drain BEFORE walking: see CpuAccountant::update for why the order makes forgetting safe.
        let drain = self.probes.drain_cpu().map_err(|e| {
            self.stats.drain_errors += 1;
            tracing::warn!(error = %e, "failed to drain the CPU map; CPU usage is held this pass");
        });
        let oom = self
            .probes
            .counts_oom_kills()
            .then(|| self.probes.drain_oom_kills())
            .transpose()
            .map_err(|e| tracing::warn!(error = %e, "failed to drain the OOM kill map"));
        let oom_records = self.probes.take_oom_events();
        let sched_on = self.reader.kinds().has(MetricKind::Sched);
        let sched = (sched_on && self.probes.measures_runqueue())
            .then(|| self.probes.drain_sched())
            .transpose()
            .map_err(|e| {
                self.stats.drain_errors += 1;
                tracing::warn!(error = %e, "failed to drain the scheduler maps; run-queue figures are held this pass");
            });
        let traffic = (net_on && self.probes.counts_traffic())
            .then(|| self.probes.drain_traffic())
            .transpose()
            .map_err(|e| {
                self.stats.drain_errors += 1;
                tracing::warn!(error = %e, "failed to drain the traffic map; network bytes are held this pass");
            });
        let changes = match self.probes.kernel_stats() {
            Ok(k) => {
                // A failed drain holds the last count.
                let switches = drain
                    .as_ref()
                    .map_or(self.stats.kernel.switches, |d| d.switches);
                self.stats.kernel = KernelStats { switches, ..k };
                self.probes
                    .watches_cgroup_changes()
                    .then_some(self.stats.kernel.cgroup_changes)
            }
            Err(e) => {
                tracing::debug!(error = %e, "failed to read kernel self-counters");
                None
            }
        };
        self.stats.program_stats = self.probes.program_stats();
        self.stats.drain_seconds = started.elapsed().as_secs_f64();

        let tree = if self.walks.unchanged(changes) {
            self.stats.walks_saved += 1;
            // A copy: the lifecycle events compare this pass's tree with `last_tree`.
            self.last_tree.clone()
        } else {
            let unified = &self.reader.layout().unified;
            let tree = Tree::walk(unified).map_err(|source| CollectError::Walk {
                path: unified.display().to_string(),
                source,
            })?;
            self.walks.walked();
            self.stats.walk_skipped += tree.skipped;
            tree
        };
        self.stats.cgroups = tree.len() as u64;

        // Cgroups whose tasks did not run since the last pass: their cgroupfs files can wait.
        // Only when this pass's CPU figures are real: without them every cgroup is read.
        let mut quiet = HashSet::new();
        if let Ok(drain) = &drain {
            self.stats.cpu_map_entries = drain.committed.len() as u64;
            let update = self.accountant.update(&tree, drain);
            if self.probes.is_attached(PROG_SCHED_SWITCH) {
                quiet.extend(
                    tree.cgroups
                        .iter()
                        .filter(|c| update.totals.get(&c.id) == self.cpu_totals.get(&c.id))
                        .map(|c| c.id),
                );
            }
            match self.probes.forget_cgroups(MAP_CPU_NS, &update.forget) {
                Ok(n) => self.stats.map_entries_forgotten += n as u64,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to delete map entries of removed cgroups")
                }
            }
            self.cpu_totals = update.totals;
        }
        if let Ok(Some(kills)) = oom {
            // Drained before the walk: a key the walk did not find is a removed cgroup's.
            let gone: Vec<u64> = kills
                .keys()
                .filter(|id| !tree.contains(**id))
                .copied()
                .collect();
            match self.probes.forget_cgroups(MAP_OOM_KILLS, &gone) {
                Ok(n) => self.stats.oom_entries_forgotten += n as u64,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to delete OOM entries of removed cgroups")
                }
            }
            for (id, n) in &kills {
                if self.oom_totals.get(id) != Some(n) {
                    self.oom_unsettled.insert(*id, OOM_SETTLE_PASSES);
                }
            }
            self.oom_totals = kills;
        }
        self.settle_after_oom(&tree, &mut quiet);
        if !oom_records.is_empty() {
            self.log_oom_kills(&oom_records, &tree);
        }
        if let Ok(Some(sched)) = sched {
            self.stats.sched_map_entries = sched.entries;
            self.account_sched(&tree, sched);
        }
        if let Ok(Some((traffic, entries))) = traffic {
            self.stats.net_map_entries = entries;
            // Drained before the walk, as above. A removed cgroup's bytes are gone with it (its
            // series stop), so deleting them loses nothing that is still served.
            let gone: Vec<u64> = traffic
                .keys()
                .filter(|id| !tree.contains(**id))
                .copied()
                .collect();
            let gone = crate::ebpf::entries_of(&traffic, &gone);
            match self.probes.forget_traffic(&gone) {
                Ok(n) => self.stats.net_entries_forgotten += n as u64,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to delete traffic entries of removed cgroups")
                }
            }
            self.traffic = traffic;
        }

        let seen_at = taken_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut containers = self.reader.read_all(&tree, seen_at, &quiet);
        self.record_lifecycle(&tree, &containers, taken_at);
        if self.reader.kinds().has(MetricKind::Cpu) && self.probes.is_attached(PROG_SCHED_SWITCH) {
            for c in &mut containers {
                c.cpu_usage_ns = self.cpu_totals.get(&c.cgroup_id).copied();
            }
        }
        // Every cgroup has a count once both OOM programs run: zero means none seen.
        if self.reader.kinds().has(MetricKind::OomEvent) && self.probes.counts_oom_kills() {
            // Kills of a folded cgroup's tasks count for its exported ancestor.
            let mut kills: HashMap<u64, u64> = HashMap::new();
            for (id, n) in &self.oom_totals {
                *kills.entry(tree.charged_to(*id)).or_default() += n;
            }
            for c in &mut containers {
                c.oom_kills = Some(kills.get(&c.cgroup_id).copied().unwrap_or(0));
            }
        }
        if sched_on && self.probes.measures_runqueue() {
            for c in &mut containers {
                c.schedstat = self.sched_totals.get(&c.cgroup_id).copied();
                c.runqueue_latency = self.sched_own.buckets.get(&c.cgroup_id).map(|b| {
                    let own = self.sched_own.counters.get(&c.cgroup_id);
                    RunqueueLatency {
                        buckets: b.clone(),
                        sum_ns: own.map_or(0, |o| o.runqueue_ns),
                        count: own.map_or(0, |o| o.run_periods),
                    }
                });
            }
        }
        if net_on {
            // Folded cgroups' own traffic is shown as their exported ancestor's.
            let folded;
            let all = if tree.has_folded() {
                folded = crate::ebpf::fold_traffic(&self.traffic, |id| tree.charged_to(id));
                &folded
            } else {
                &self.traffic
            };
            let traffic = self.probes.counts_traffic().then_some(all);
            self.network.fill(&mut containers, traffic);
            if traffic.is_some() {
                // Entries of removed devices (already left out of this pass's figures).
                let dead = self.network.dead_traffic(&self.traffic, Instant::now());
                match self.probes.forget_traffic(&dead) {
                    Ok(n) => self.stats.net_entries_forgotten += n as u64,
                    Err(e) => {
                        tracing::warn!(error = %e, "failed to delete traffic entries of removed devices")
                    }
                }
            }
            self.stats.network = self.network.stats();
        }
        self.naming.namer.name(&mut containers);
        // Before `--docker-only` leaves the pod cgroups out: the kubelet's own cgroup says it.
        let labels = self.naming.labels.for_pass(|| {
            containers.iter().any(|c| {
                c.path == "/kubepods" || c.path == "/kubepods.slice" || !c.identity.pod.is_empty()
            })
        });
        if let Some(prefixes) = &self.naming.only_containers {
            let namer = &self.naming.namer;
            containers.retain(|c| {
                c.path == "/"
                    || namer.is_container(&c.path)
                    || prefixes.iter().any(|p| under(&c.path, p))
            });
        }
        if let Some(fs) = &mut self.fs {
            fs.fill(&mut containers, &self.naming.namer);
            self.stats.fs_usage = fs.stats();
        }
        self.stats.identity = self.naming.registry.stats(&self.naming.sources);
        self.stats.pods = self.naming.registry.pods();
        self.last_tree = tree;
        self.stats.cgroupfs_errors = self.reader.errors();
        self.stats.cgroupfs_files = self.reader.file_counts();
        self.stats.cgroupfs_files_held = self.reader.files_held() as u64;
        self.stats.cgroupfs_reused = self.reader.reused();
        self.stats.task_reads_deferred = self.reader.task_reads_deferred();
        self.stats.host_processes_unplaced = self.reader.host_processes_unplaced();
        self.stats.collection_seconds = started.elapsed().as_secs_f64();
        self.stats.taken_at = taken_at;
        Ok(Snapshot {
            containers,
            agent: self.stats.clone(),
            machine: Arc::clone(&self.machine),
            oom_events: Arc::clone(&self.oom_shared),
            labels,
        })
    }

    /// Takes cgroups with a recent OOM kill, and their ancestors, out of the quiet set: the
    /// victim's memory is freed by its exit and by the OOM reaper, whose CPU time is not the
    /// cgroup's, so an idle cgroup's memory can fall well after its last CPU tick.
    fn settle_after_oom(&mut self, tree: &Tree, quiet: &mut HashSet<u64>) {
        for id in self.oom_unsettled.keys() {
            let mut at = Some(*id);
            while let Some(c) = at {
                quiet.remove(&c);
                at = tree.get(c).and_then(|g| g.parent);
            }
        }
        self.oom_unsettled.retain(|id, left| {
            *left -= 1;
            *left > 0 && tree.contains(*id)
        });
    }

    /// Sums the scheduler counters up the tree as CPU time is summed, and forgets the entries
    /// of removed cgroups (drained before the walk, as the CPU map).
    fn account_sched(&mut self, tree: &Tree, mut sched: SchedDrain) {
        sched.hold(&self.sched_own);
        let as_drain = |f: fn(&crate::ebpf::SchedCounters) -> u64| CpuDrain {
            committed: sched.counters.iter().map(|(id, c)| (*id, f(c))).collect(),
            ..CpuDrain::default()
        };
        let rq = self.runqueue.update(tree, &as_drain(|c| c.runqueue_ns));
        let periods = self.run_periods.update(tree, &as_drain(|c| c.run_periods));
        self.sched_totals = rq
            .totals
            .iter()
            .map(|(id, ns)| {
                let run_periods = periods.totals.get(id).copied().unwrap_or(0);
                (
                    *id,
                    Schedstat {
                        runqueue_ns: *ns,
                        run_periods,
                    },
                )
            })
            .collect();
        let mut gone: Vec<u64> = sched
            .buckets
            .keys()
            .filter(|id| !tree.contains(**id))
            .copied()
            .collect();
        gone.sort_unstable();
        match self.probes.forget_sched(&gone, &sched) {
            Ok(n) => self.stats.sched_entries_forgotten += n as u64,
            Err(e) => {
                tracing::warn!(error = %e, "failed to delete scheduler entries of removed cgroups")
            }
        }
        self.sched_own = sched;
    }

    /// Creation events for cgroups new since the last walk (all of them on the first, as
    /// cAdvisor reports what it finds at start), dated by the cgroup's birth; deletion events
    /// for those gone.
    fn record_lifecycle(&self, tree: &Tree, containers: &[ContainerSample], now: SystemTime) {
        let mut out = Vec::new();
        for c in containers {
            if !self.last_tree.contains(c.cgroup_id) {
                let born = c.start_time.and_then(crate::unix_time::from_secs);
                out.push(Event {
                    container: Arc::from(c.path.as_str()),
                    time: born.unwrap_or(now),
                    kind: EventKind::Creation,
                    victim: None,
                });
            }
        }
        for cg in &self.last_tree.cgroups {
            if !tree.contains(cg.id) && self.last_tree.exported(cg.id) {
                out.push(Event {
                    container: Arc::from(cg.path.as_str()),
                    time: now,
                    kind: EventKind::Deletion,
                    victim: None,
                });
            }
        }
        if !out.is_empty() {
            self.events.add(out);
        }
    }

    /// Names each kill's cgroups, logs it once, and keeps it for the event API.
    fn log_oom_kills(&mut self, records: &[OomKill], tree: &Tree) {
        let path_of = |id: u64| {
            tree.get(id)
                .or_else(|| self.last_tree.get(id))
                .map(|c| c.path.clone())
        };
        // Kernel times are CLOCK_MONOTONIC; the wall clock is what events are stamped with.
        let mono_now = crate::ebpf::monotonic_ns();
        let wall_now = SystemTime::now();
        for k in records {
            let event = OomEvent {
                time: wall_now - Duration::from_nanos(mono_now.saturating_sub(k.time_ns)),
                pid: k.victim_tgid,
                tid: k.victim_pid,
                process_name: comm_str(&k.comm),
                cgroup_id: k.victim_cgroup,
                cgroup: path_of(k.victim_cgroup),
                trigger_pid: k.trigger_pid,
                trigger_cgroup: path_of(k.trigger_cgroup),
            };
            tracing::info!(
                pid = event.pid,
                process = %event.process_name,
                container = event.cgroup.as_deref().unwrap_or("(removed before it was seen)"),
                cgroup_id = event.cgroup_id,
                triggered_by_pid = event.trigger_pid,
                triggered_in = event.trigger_cgroup.as_deref().unwrap_or("(unknown)"),
                "OOM kill"
            );
            // cAdvisor's pair: `oom` where the limit was hit (the allocating task's cgroup),
            // `oomKill` where the victim was. A cgroup removed before any walk saw it is
            // reported at the root, as cAdvisor does, rather than under a guessed name.
            let victim_at: Arc<str> = Arc::from(event.cgroup.as_deref().unwrap_or("/"));
            let oom_at = event
                .trigger_cgroup
                .as_deref()
                .map_or_else(|| Arc::clone(&victim_at), Arc::from);
            self.events.add([
                Event {
                    container: oom_at,
                    time: event.time,
                    kind: EventKind::Oom,
                    victim: None,
                },
                Event {
                    container: victim_at,
                    time: event.time,
                    kind: EventKind::OomKill,
                    victim: Some(Victim {
                        pid: event.pid,
                        process_name: event.process_name.clone(),
                    }),
                },
            ]);
            if self.oom_log.len() == OOM_LOG_CAPACITY {
                self.oom_log.pop_front();
            }
            self.oom_log.push_back(event);
        }
        self.oom_shared = Arc::new(self.oom_log.iter().cloned().collect());
    }
}

/// `path` is `prefix` or below it, by whole segments (`/a` covers `/a/b`, not `/ab`).
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/') || prefix.is_empty())
}

#[cfg(test)]
mod tests {
    use super::{WalkGate, under};

    #[test]
    fn raw_cgroup_prefixes_match_whole_segments() {
        assert!(under("/system.slice/kubelet.service", "/system.slice"));
        assert!(under("/system.slice", "/system.slice/"));
        assert!(!under("/system.slices", "/system.slice"));
        assert!(under("/anything", "/"));
    }

    /// Runs passes with the given counts; true where the pass walked.
    fn walks(counts: &[Option<u64>]) -> Vec<bool> {
        let mut gate = WalkGate::default();
        counts
            .iter()
            .map(|c| {
                let walk = !gate.unchanged(*c);
                if walk {
                    gate.walked();
                }
                walk
            })
            .collect()
    }

    #[test]
    fn a_change_is_walked_when_seen_and_once_more_when_steady() {
        let c = |n| Some(n);
        assert_eq!(
            walks(&[
                c(5),
                c(5),
                c(5),
                c(5),
                c(6),
                c(6),
                c(6),
                c(8),
                c(9),
                c(9),
                c(9)
            ]),
            [
                true, true, false, false, true, true, false, true, true, true, false
            ]
        );
    }

    #[test]
    fn without_the_count_every_pass_walks() {
        assert!(walks(&[None, None, None, None]).iter().all(|w| *w));
    }

    #[test]
    fn a_steady_tree_is_still_walked_now_and_then() {
        let w = walks(&vec![Some(1); 200]);
        let walked: Vec<usize> = (0..w.len()).filter(|i| w[*i]).collect();
        assert!(walked.len() >= 200 / super::WALK_AT_LEAST_EVERY as usize);
        assert!(
            walked
                .windows(2)
                .all(|p| p[1] - p[0] <= super::WALK_AT_LEAST_EVERY as usize)
        );
    }
}
