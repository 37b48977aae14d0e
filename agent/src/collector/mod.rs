//! One collection pass: every kernel-backed kind drains its maps, the cgroup tree is walked (when
//! it changed), the kinds account with it, cgroupfs is read, and the kinds fill the samples.
//! Blocking (syscalls and file reads): runs on a blocking thread, once per interval.
mod lifecycle;
mod naming;
mod walk_gate;

use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

pub use naming::Naming;
pub use walk_gate::CollectError;

use crate::{
    cgroup::Tree,
    cgroupfs::CgroupfsReader,
    ebpf::Probes,
    events::EventStore,
    machine::{MachineInfo, Roots},
    metric_kinds::MetricKinds,
    snapshot::{AgentStats, Snapshot},
    sources::{Pass, Source},
};
use walk_gate::WalkGate;

pub struct Collector {
    probes: Probes,
    sources: Vec<Box<dyn Source>>,
    reader: CgroupfsReader,
    machine: Arc<MachineInfo>,
    /// The previous walk (lifecycle events, and the paths of cgroups removed since).
    last_tree: Tree,
    stats: AgentStats,
    naming: Naming,
    events: Arc<EventStore>,
    walks: WalkGate,
    /// The `disk` kind: per-container filesystem usage (`None` when the kind is off).
    fs: Option<crate::fs_usage::FsUsage>,
}

impl Collector {
    pub fn new(
        mut probes: Probes,
        layout: crate::cgroup::Layout,
        roots: Roots,
        kinds: MetricKinds,
        reading: crate::cgroupfs::Reading,
        naming: Naming,
        events: Arc<EventStore>,
    ) -> Self {
        let stats = probes.initial_stats();
        let sources = crate::sources::enabled(&mut probes, &kinds, &roots, &layout);
        let reader = CgroupfsReader::new(
            layout,
            roots.proc_root.clone(),
            roots.sys_root.clone(),
            kinds,
            reading.open_files,
        )
        .reuse_quiet_for(reading.reuse_quiet_passes)
        .pass_interval(reading.pass_interval);
        Collector {
            machine: Arc::new(crate::machine::read(&roots)),
            probes,
            sources,
            reader,
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
        for s in &mut self.sources {
            s.prepare();
        }
        // The moment the figures describe: the drain, not the end of the pass.
        let taken_at = SystemTime::now();
        for s in &mut self.sources {
            s.drain(&self.probes, &mut self.stats);
        }
        let changes = self.probes.report(&mut self.stats);
        self.stats.drain_seconds = started.elapsed().as_secs_f64();
        let root = &self.reader.layout().unified;
        let tree = self
            .walks
            .tree(root, &self.last_tree, changes, &mut self.stats)?;
        let mut pass = Pass {
            tree: &tree,
            last_tree: &self.last_tree,
            quiet: Default::default(),
            stats: &mut self.stats,
            events: &self.events,
        };
        for s in &mut self.sources {
            s.account(&mut self.probes, &mut pass);
        }
        let seen_at = crate::unix_time::secs(taken_at);
        let mut containers = self.reader.read_all(&tree, seen_at, &pass.quiet);
        lifecycle::record(&self.events, &self.last_tree, &tree, &containers, taken_at);
        for s in &mut self.sources {
            s.fill(&mut self.probes, &mut containers, &mut pass);
        }
        let labels = self.naming.apply(&mut containers);
        if let Some(fs) = &mut self.fs {
            fs.fill(&mut containers, &self.naming.namer);
            self.stats.fs_usage = fs.stats();
        }
        self.last_tree = tree;
        self.naming.report(&mut self.stats);
        self.reader.report(&mut self.stats);
        self.stats.collection_seconds = started.elapsed().as_secs_f64();
        self.stats.taken_at = taken_at;
        Ok(Snapshot {
            containers,
            agent: self.stats.clone(),
            machine: Arc::clone(&self.machine),
            labels,
        })
    }
}
