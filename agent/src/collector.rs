//! One collection pass: drain the kernel maps, walk the cgroup tree, read cgroupfs, and build the
//! snapshot. Blocking (syscalls and file reads): runs on a blocking thread, once per interval.
use std::{
    collections::HashMap,
    time::{Instant, SystemTime},
};

use crate::{
    cgroup::{
        Layout, Tree,
        cpu::{self, CpuSpec, CpuStats, ReadError},
        io::{self, DeviceIo, DeviceNames},
        layout::Mode,
        memory::{self, MachineUsage, MemorySpec, MemoryStats},
        pids::{self, ProcessStats},
        psi::{self, PressureStats},
    },
    cpu_account::CpuAccountant,
    ebpf::Probes,
    metric_kinds::{MetricKind, MetricKinds},
    snapshot::{AgentStats, ContainerSample, Identity, Snapshot},
};

/// Warn about this many unreadable files, then only count them: a broken cgroupfs must not flood
/// the log every second.
const WARN_BUDGET: u64 = 20;

pub struct Collector {
    probes: Probes,
    layout: Layout,
    /// The host's procfs (`/proc`, or where the host's is mounted in a container).
    proc_root: std::path::PathBuf,
    accountant: CpuAccountant,
    devices: DeviceNames,
    machine: std::sync::Arc<crate::machine::MachineInfo>,
    kinds: MetricKinds,
    /// Unix seconds each live cgroup was created, fixed at first sight.
    start_times: HashMap<u64, f64>,
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
        layout: Layout,
        roots: crate::machine::Roots,
        kinds: MetricKinds,
    ) -> Self {
        let machine = std::sync::Arc::new(crate::machine::read(&roots));
        let crate::machine::Roots {
            proc_root,
            sys_root,
            ..
        } = roots;
        let stats = AgentStats {
            programs_attached: probes.attached.clone(),
            cpu_map_capacity: u64::from(probes.cpu_map_entries),
            ..AgentStats::default()
        };
        Collector {
            probes,
            layout,
            proc_root,
            start_times: HashMap::new(),
            devices: DeviceNames::new(sys_root),
            machine,
            kinds,
            accountant: CpuAccountant::default(),
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

        let tree = Tree::walk(&self.layout.unified).map_err(|source| CollectError::Walk {
            path: self.layout.unified.display().to_string(),
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

        // The v2 root has no memory.current: its usage is the machine's (read once per pass).
        let machine = match self.layout.mode {
            Mode::Unified if self.kinds.has(MetricKind::Memory) => {
                std::fs::read_to_string(self.proc_root.join("meminfo"))
                    .ok()
                    .and_then(|t| memory::parse_meminfo_usage(&t))
            }
            _ => None,
        };
        let seen_at = taken_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut containers = Vec::with_capacity(tree.len());
        for cg in &tree.cgroups {
            // A disabled kind reads no file at all.
            let on = |k| self.kinds.has(k);
            let (cpu_on, mem_on, io_on, proc_on, psi_on) = (
                on(MetricKind::Cpu),
                on(MetricKind::Memory),
                on(MetricKind::DiskIo),
                on(MetricKind::Process),
                on(MetricKind::Pressure),
            );
            let v2_dir = crate::cgroup::tree::resolve_under(&self.layout.unified, &cg.path);
            let (cpu, cpu_spec) = if cpu_on {
                self.read_cpu(&cg.path)
            } else {
                Default::default()
            };
            let (memory, memory_spec) = if mem_on {
                let root_usage = machine.filter(|_| cg.path == "/");
                self.read_memory(&cg.path, root_usage)
            } else {
                Default::default()
            };
            let processes = if proc_on {
                self.read_processes(&cg.path, v2_dir.as_deref())
            } else {
                ProcessStats::default()
            };
            let io = if io_on {
                self.read_io(&cg.path, v2_dir.as_deref())
            } else {
                None
            };
            // PSI exists only in the v2 tree, on hybrid hosts too.
            let pressure = match &v2_dir {
                Some(dir) if psi_on => self.ok_or_count(psi::read(dir)).unwrap_or_default(),
                _ => PressureStats::default(),
            };
            let start_time = match self.start_times.get(&cg.id) {
                Some(t) => Some(*t),
                None => {
                    let t = v2_dir.as_deref().and_then(dir_mtime);
                    if let Some(t) = t {
                        self.start_times.insert(cg.id, t);
                    }
                    t
                }
            };
            containers.push(ContainerSample {
                cgroup_id: cg.id,
                path: cg.path.clone(),
                identity: Identity::default(),
                cpu_usage_ns: self.cpu_totals.get(&cg.id).copied().filter(|_| cpu_on),
                cpu,
                cpu_spec,
                memory,
                memory_spec,
                processes,
                io,
                pressure,
                start_time,
                seen_at,
            });
        }
        self.start_times.retain(|id, _| tree.contains(*id));
        self.stats.collection_seconds = started.elapsed().as_secs_f64();
        self.stats.taken_at = taken_at;
        Ok(Snapshot {
            containers,
            agent: self.stats.clone(),
            machine: std::sync::Arc::clone(&self.machine),
        })
    }

    /// Reads the CPU controller files of one cgroup from wherever this host keeps them.
    fn read_cpu(&mut self, rel: &str) -> (CpuStats, CpuSpec) {
        let v2_dir = crate::cgroup::tree::resolve_under(&self.layout.unified, rel);
        let mut stats = CpuStats::default();
        let mut spec = CpuSpec::default();
        if let Some(dir) = &v2_dir {
            stats = self.ok_or_count(cpu::read_v2_stat(dir)).unwrap_or_default();
            if self.layout.mode == Mode::Unified {
                spec = self.ok_or_count(cpu::read_v2_spec(dir)).unwrap_or_default();
            }
        }
        if self.layout.mode == Mode::Hybrid {
            let v1_cpu = self.v1_dir(self.layout.v1_cpu.as_deref(), rel);
            if let Some(dir) = v1_cpu
                && let Some((v1_spec, throttling)) = self.ok_or_count(cpu::read_v1_cpu(&dir))
            {
                spec = v1_spec;
                stats.throttling = throttling;
            }
            let v1_acct = self.v1_dir(self.layout.v1_cpuacct.as_deref(), rel);
            if stats.user_ns.is_none()
                && let Some(dir) = v1_acct
                && let Some(Some((user, system))) = self.ok_or_count(cpu::read_v1_cpuacct(&dir))
            {
                stats.user_ns = Some(user);
                stats.system_ns = Some(system);
            }
        }
        (stats, spec)
    }

    /// Reads the memory controller of one cgroup: the v2 directory on pure v2 hosts, the v1
    /// memory hierarchy at the same path on hybrid ones.
    fn read_memory(
        &mut self,
        rel: &str,
        root_usage: Option<MachineUsage>,
    ) -> (MemoryStats, MemorySpec) {
        match self.layout.mode {
            Mode::Unified => {
                let Some(dir) = crate::cgroup::tree::resolve_under(&self.layout.unified, rel)
                else {
                    return Default::default();
                };
                let stats = self
                    .ok_or_count(memory::read_v2(&dir, root_usage))
                    .unwrap_or_default();
                let spec = self
                    .ok_or_count(memory::read_v2_spec(&dir))
                    .unwrap_or_default();
                (stats, spec)
            }
            Mode::Hybrid => {
                let Some(dir) = self.v1_dir(self.layout.v1_memory.as_deref(), rel) else {
                    return Default::default();
                };
                let stats = self.ok_or_count(memory::read_v1(&dir)).unwrap_or_default();
                let spec = self
                    .ok_or_count(memory::read_v1_spec(&dir))
                    .unwrap_or_default();
                (stats, spec)
            }
        }
    }

    /// Processes from the v2 `cgroup.procs`; threads from the pids controller, in the v2
    /// directory on pure v2 hosts and in the v1 pids hierarchy on hybrid ones.
    fn read_processes(&mut self, rel: &str, v2_dir: Option<&std::path::Path>) -> ProcessStats {
        let Some(v2_dir) = v2_dir else {
            return ProcessStats::default();
        };
        let pids_dir = match self.layout.mode {
            Mode::Unified => Some(v2_dir.to_path_buf()),
            Mode::Hybrid => self.v1_dir(self.layout.v1_pids.as_deref(), rel),
        };
        self.ok_or_count(pids::read(v2_dir, pids_dir.as_deref()))
            .unwrap_or_default()
    }

    /// Block I/O: v2 `io.stat`, or the v1 blkio hierarchy; device names from sysfs.
    fn read_io(&mut self, rel: &str, v2_dir: Option<&std::path::Path>) -> Option<Vec<DeviceIo>> {
        let read = match self.layout.mode {
            Mode::Unified => io::read_v2(v2_dir?),
            Mode::Hybrid => io::read_v1(&self.v1_dir(self.layout.v1_blkio.as_deref(), rel)?),
        };
        let mut devices = self.ok_or_count(read).flatten()?;
        for d in &mut devices {
            d.device = self.devices.name(d.major, d.minor).to_string();
        }
        Some(devices)
    }

    /// The v1 directory at the same relative path, if that controller is mounted and has it.
    fn v1_dir(&self, mount: Option<&std::path::Path>, rel: &str) -> Option<std::path::PathBuf> {
        mount
            .and_then(|root| crate::cgroup::tree::resolve_under(root, rel))
            .filter(|d| d.is_dir())
    }

    fn ok_or_count<T>(&mut self, r: Result<T, ReadError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.stats.cgroupfs_errors += 1;
                if self.stats.cgroupfs_errors <= WARN_BUDGET {
                    tracing::warn!(error = %e, "unreadable cgroupfs file skipped");
                } else {
                    tracing::debug!(error = %e, "unreadable cgroupfs file skipped");
                }
                None
            }
        }
    }
}

/// A cgroup directory's modification time in Unix seconds: what cAdvisor takes as the creation
/// time. Children created later move it, which is why it is read once, at first sight.
fn dir_mtime(dir: &std::path::Path) -> Option<f64> {
    let modified = std::fs::metadata(dir).ok()?.modified().ok()?;
    modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}
