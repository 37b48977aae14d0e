//! One collection pass: drain the kernel maps, walk the cgroup tree, read cgroupfs, and build the
//! snapshot. Blocking (syscalls and file reads): runs on a blocking thread, once per interval.
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Instant, SystemTime},
};

use crate::{
    cgroup::Tree,
    cgroupfs::CgroupfsReader,
    cpu_account::CpuAccountant,
    ebpf::Probes,
    machine::{MachineInfo, Roots},
    metric_kinds::{MetricKind, MetricKinds},
    snapshot::{AgentStats, Snapshot},
};

pub struct Collector {
    probes: Probes,
    reader: CgroupfsReader,
    accountant: CpuAccountant,
    machine: Arc<MachineInfo>,
    /// Hierarchical CPU ns of the last successful drain; held when a drain fails.
    cpu_totals: HashMap<u64, u64>,
    stats: AgentStats,
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
        open_files: usize,
    ) -> Self {
        let machine = Arc::new(crate::machine::read(&roots));
        let stats = AgentStats {
            programs_attached: probes.attached.clone(),
            cpu_map_capacity: u64::from(probes.cpu_map_entries),
            ..AgentStats::default()
        };
        Collector {
            probes,
            reader: CgroupfsReader::new(layout, roots.proc_root, roots.sys_root, kinds, open_files),
            accountant: CpuAccountant::default(),
            machine,
            cpu_totals: HashMap::new(),
            stats,
        }
    }

    pub fn collect(&mut self) -> Result<Snapshot, CollectError> {
        let started = Instant::now();
        // The moment the CPU figures describe: the drain, not the end of the pass.
        let taken_at = SystemTime::now();
        // Drain BEFORE walking: see CpuAccountant::update for why the order makes forgetting safe.
        let drain = self.probes.drain_cpu().map_err(|e| {
            self.stats.drain_errors += 1;
            tracing::warn!(error = %e, "failed to drain the CPU map; CPU usage is held this pass");
        });
        match self.probes.kernel_stats() {
            Ok(k) => self.stats.kernel = k,
            Err(e) => tracing::debug!(error = %e, "failed to read kernel self-counters"),
        }
        self.stats.drain_seconds = started.elapsed().as_secs_f64();

        let unified = &self.reader.layout().unified;
        let tree = Tree::walk(unified).map_err(|source| CollectError::Walk {
            path: unified.display().to_string(),
            source,
        })?;
        self.stats.walk_skipped += tree.skipped;
        self.stats.cgroups = tree.len() as u64;

        if let Ok(drain) = &drain {
            self.stats.cpu_map_entries = drain.committed.len() as u64;
            let update = self.accountant.update(&tree, drain);
            match self.probes.forget_cgroups(&update.forget) {
                Ok(n) => self.stats.map_entries_forgotten += n as u64,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to delete map entries of removed cgroups")
                }
            }
            self.cpu_totals = update.totals;
        }

        let seen_at = taken_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut containers = self.reader.read_all(&tree, seen_at);
        if self.reader.kinds().has(MetricKind::Cpu) {
            for c in &mut containers {
                c.cpu_usage_ns = self.cpu_totals.get(&c.cgroup_id).copied();
            }
        }
        self.stats.cgroupfs_errors = self.reader.errors();
        self.stats.cgroupfs_files = self.reader.file_counts();
        self.stats.cgroupfs_files_held = self.reader.files_held() as u64;
        self.stats.collection_seconds = started.elapsed().as_secs_f64();
        self.stats.taken_at = taken_at;
        Ok(Snapshot {
            containers,
            agent: self.stats.clone(),
            machine: Arc::clone(&self.machine),
        })
    }
}
