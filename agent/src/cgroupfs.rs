//! Everything one pass reads from cgroupfs for the cgroups of a walk, on any layout: one reader
//! per controller (`cgroup::*`), chosen per host (v2 directory or v1 hierarchy at the same path)
//! and per enabled metric kind. No eBPF here, so fixture trees exercise the whole path.
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use crate::{
    cgroup::{
        Layout, Tree,
        cpu::{self, CpuSpec, CpuStats},
        host_pids::HostPids,
        io::{self, DeviceIo, DeviceNames},
        layout::Mode,
        memory::{self, MachineUsage, MemorySpec, MemoryStats},
        pids::{self, ProcessStats},
        psi::{self, PressureStats},
        read::{Files, ReadError},
        tasks::{self, LoadAverage, TaskLoad, TaskStates},
    },
    metric_kinds::{MetricKind, MetricKinds},
    snapshot::ContainerSample,
};

/// Warn about this many unreadable files, then only count them: a broken cgroupfs must not flood
/// the log every second.
const WARN_BUDGET: u64 = 20;

/// How much the reader may hold and reuse between passes.
pub struct Reading {
    /// cgroupfs files kept open between passes (see [`Files`]).
    pub open_files: usize,
    /// Passes a quiet cgroup's sample may be reused (0: never; see [`QuietReuse`]).
    pub reuse_quiet_passes: u64,
    /// Time between passes: how much each pass moves the load averages.
    pub pass_interval: std::time::Duration,
}

pub struct CgroupfsReader {
    layout: Layout,
    /// The host's procfs (`/proc`, or where the host's is mounted in a container).
    proc_root: PathBuf,
    devices: DeviceNames,
    kinds: MetricKinds,
    /// Unix seconds each live cgroup was created, fixed at first sight.
    start_times: HashMap<u64, f64>,
    /// Each live exported cgroup's path on disk: where to close held files when it goes.
    paths: HashMap<u64, PathBuf>,
    files: Files,
    skipped: Skipped,
    quiet: QuietReuse,
    load: LoadAverages,
    /// `cgroup.procs` and `cgroup.threads` list pids as the reader's pid namespace numbers them.
    /// Where that is not the namespace of `proc_root` (a Swarm task cannot share the host's),
    /// each cgroup's processes come from the host's procfs instead.
    host_pids: Option<HostPids>,
}

/// Each live cgroup's smoothed thread counts, and what one pass may spend reading states.
struct LoadAverages {
    by_cgroup: HashMap<u64, Smoothed>,
    /// `e^(-interval/10s)`.
    decay: f64,
    /// Cumulative: cgroups whose states were not read in a pass because the pass's budget of
    /// thread reads was spent (they kept their previous figures).
    deferred: u64,
}

struct Smoothed {
    states: TaskStates,
    running: LoadAverage,
    uninterruptible: LoadAverage,
}

impl LoadAverages {
    /// Moves each sampled cgroup's averages by one pass and writes them into its sample.
    fn update(&mut self, containers: &mut [ContainerSample]) {
        for c in containers {
            let Some(t) = &mut c.tasks else { continue };
            let s = self
                .by_cgroup
                .entry(c.cgroup_id)
                .or_insert_with(|| Smoothed {
                    states: t.states,
                    running: LoadAverage::new(t.states.running),
                    uninterruptible: LoadAverage::new(t.states.uninterruptible),
                });
            s.states = t.states;
            s.running.update(t.states.running, self.decay);
            s.uninterruptible
                .update(t.states.uninterruptible, self.decay);
            t.load_milli = s.running.milli();
            t.load_d_milli = s.uninterruptible.milli();
        }
    }
}

/// Whether pids listed in cgroupfs mean the processes under `proc_root`: the agent's own pid
/// is the one that procfs gives `self`. A tree without `self` (a fixture) is taken as visible.
fn pids_visible(proc_root: &Path) -> bool {
    match std::fs::read_link(proc_root.join("self")) {
        Ok(target) => {
            target.to_str().and_then(|t| t.parse::<u32>().ok()) == Some(std::process::id())
        }
        Err(_) => true,
    }
}

/// The samples of cgroups that did nothing: a cgroup whose tasks did not run since the last pass
/// (its eBPF CPU time is unchanged) cannot have charged memory, started I/O or forked, so its
/// files are not re-read every pass. Each is still re-read every `every` passes: what can change
/// without its tasks running (page cache reclaimed by kswapd, writeback I/O charged to it,
/// pressure stalls of blocked tasks, a limit set from outside) is at most that stale.
#[derive(Default)]
struct QuietReuse {
    /// 0: read every cgroup every pass.
    every: u64,
    pass: u64,
    last: HashMap<u64, Reusable>,
    /// Cumulative: cgroup reads saved.
    reused: u64,
}

struct Reusable {
    sample: ContainerSample,
    /// The pass that must read it again however quiet it is.
    due: u64,
}

/// Cumulative: files that existed but could not be read or parsed. Apart from the reader so a
/// read can borrow the open files while its result is checked.
#[derive(Default)]
struct Skipped(u64);

impl Skipped {
    /// A value outside what the kernel can mean, replaced or dropped by the caller.
    fn out_of_range(&mut self, at: &Path, what: &str) {
        self.0 += 1;
        if self.0 <= WARN_BUDGET {
            tracing::warn!(path = %at.display(), what, "out-of-range cgroupfs value clamped");
        }
    }

    fn ok<T>(&mut self, r: Result<T, ReadError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0 += 1;
                if self.0 <= WARN_BUDGET {
                    tracing::warn!(error = %e, "unreadable cgroupfs file skipped");
                } else {
                    tracing::debug!(error = %e, "unreadable cgroupfs file skipped");
                }
                None
            }
        }
    }
}

impl CgroupfsReader {
    /// `open_files`: how many cgroupfs files may be kept open between passes (see [`Files`]).
    pub fn new(
        layout: Layout,
        proc_root: PathBuf,
        sys_root: PathBuf,
        kinds: MetricKinds,
        open_files: usize,
    ) -> Self {
        let proc_root_for_check = proc_root.clone();
        CgroupfsReader {
            layout,
            proc_root,
            devices: DeviceNames::new(sys_root),
            kinds,
            start_times: HashMap::new(),
            paths: HashMap::new(),
            files: Files::new(open_files),
            skipped: Skipped::default(),
            quiet: QuietReuse::default(),
            load: LoadAverages {
                by_cgroup: HashMap::new(),
                decay: tasks::decay(std::time::Duration::from_secs(1)),
                deferred: 0,
            },
            host_pids: (!pids_visible(&proc_root_for_check))
                .then(|| HostPids::new(proc_root_for_check)),
        }
    }

    /// The time between passes, which sets how far each pass moves the load averages.
    pub fn pass_interval(mut self, interval: std::time::Duration) -> Self {
        self.load.decay = tasks::decay(interval);
        self
    }

    /// Reuses the sample of a quiet cgroup for up to `passes` passes (0: never).
    pub fn reuse_quiet_for(mut self, passes: u64) -> Self {
        self.quiet.every = passes;
        // Held until the next refresh reads them again (within the open-files budget).
        self.files.keep_unread_for(passes + 1);
        self
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn kinds(&self) -> &MetricKinds {
        &self.kinds
    }

    /// The reader's own counters, into the agent's health figures.
    pub fn report(&self, stats: &mut crate::snapshot::AgentStats) {
        stats.cgroupfs_errors = self.skipped.0;
        stats.cgroupfs_files = self.files.counts();
        stats.cgroupfs_files_held = self.files.held() as u64;
        stats.cgroupfs_reused = self.quiet.reused;
        stats.task_reads_deferred = self.load.deferred;
        stats.host_processes_unplaced = self.host_pids.as_ref().map_or(0, |h| h.skipped);
    }

    /// One sample per cgroup of `tree`, without the kernel-backed kinds' figures (each kind adds
    /// its own, see `sources`).
    /// `quiet`: cgroups whose tasks have not run since the last pass (see [`QuietReuse`]).
    pub fn read_all(
        &mut self,
        tree: &Tree,
        seen_at: f64,
        quiet: &HashSet<u64>,
    ) -> Vec<ContainerSample> {
        let pass = self.quiet.pass;
        self.quiet.pass += 1;
        // The v2 root has no memory.current: its usage is the machine's (read once per pass).
        let machine = match self.layout.mode {
            Mode::Unified if self.kinds.has(MetricKind::Memory) => {
                let path = self.proc_root.join("meminfo");
                let text = self.skipped.ok(self.files.read(&path)).flatten();
                text.and_then(memory::parse_meminfo_usage)
            }
            _ => None,
        };
        // A disabled kind reads no file at all.
        let on = |k| self.kinds.has(k);
        let (cpu_on, mem_on, io_on, proc_on, psi_on, net_on) = (
            on(MetricKind::Cpu),
            on(MetricKind::Memory),
            on(MetricKind::DiskIo),
            on(MetricKind::Process),
            on(MetricKind::Pressure),
            on(MetricKind::Network),
        );
        let load_on = on(MetricKind::CpuLoad);
        let mut thread_reads = tasks::THREAD_READS_PER_PASS;
        // Out of `self` for the pass: the loop reads through it while borrowing the rest.
        let mut host = self.host_pids.take();
        if let Some(h) = &mut host
            && (proc_on || load_on || net_on)
        {
            let (files, unified) = (&mut self.files, &self.layout.unified);
            h.scan(tree, |rel| {
                let dir = crate::cgroup::tree::resolve_path_under(unified, rel)?;
                Some(files.read(&dir.join("cgroup.procs")).ok()??.to_string())
            });
        }
        let mut containers = Vec::with_capacity(tree.len());
        for cg in &tree.cgroups {
            // Folded (deeper than the walk exports): its figures are its ancestor's.
            if !tree.exported(cg.id) {
                continue;
            }
            self.paths
                .entry(cg.id)
                .or_insert_with(|| tree.fs_rel(cg).to_path_buf());
            // On disk, where a name that is not UTF-8 differs from its exported `path`.
            let rel = tree.fs_rel(cg);
            if quiet.contains(&cg.id)
                && let Some(r) = self.quiet.last.get_mut(&cg.id)
                && pass < r.due
                // A cgroup id is never reused, but a rename (v2 allows moving a directory)
                // must not serve the old path.
                && r.sample.path == cg.path
            {
                // The kernel's running pressure averages move with no task running: they decay
                // for minutes after a stall. Those of a cgroup that stalled lately are re-read
                // (one small file per resource), so `avg10/60/300` are never stale.
                if psi_on
                    && r.sample.pressure.averaging()
                    && let Some(dir) =
                        crate::cgroup::tree::resolve_path_under(&self.layout.unified, rel)
                    && let Some(p) = self.skipped.ok(psi::read(&mut self.files, &dir))
                {
                    r.sample.pressure = p;
                }
                let mut sample = r.sample.clone();
                sample.seen_at = seen_at;
                sample.quiet = true;
                containers.push(sample);
                self.quiet.reused += 1;
                continue;
            }
            let v2_dir = crate::cgroup::tree::resolve_path_under(&self.layout.unified, rel);
            let (cpu, cpu_spec) = if cpu_on {
                self.read_cpu(rel, v2_dir.as_deref())
            } else {
                Default::default()
            };
            let (memory, memory_spec) = if mem_on {
                let root_usage = machine.filter(|_| cg.path == "/");
                self.read_memory(rel, v2_dir.as_deref(), root_usage)
            } else {
                Default::default()
            };
            let mut processes = if proc_on {
                self.read_processes(rel, v2_dir.as_deref())
            } else if net_on {
                // Network figures need a process to find the cgroup's namespace through.
                let first_pid = v2_dir
                    .as_deref()
                    .and_then(|d| self.skipped.ok(pids::first_pid(&mut self.files, d)))
                    .flatten();
                ProcessStats {
                    first_pid,
                    ..ProcessStats::default()
                }
            } else {
                ProcessStats::default()
            };
            if let Some(h) = &host {
                // cgroup.procs named none of the host's processes: the procfs scan's instead.
                let pids = h.processes(rel);
                processes.processes = proc_on.then_some(pids.len() as u64);
                processes.first_pid = pids.first().copied();
            }
            let outcome = match (&host, &v2_dir) {
                _ if !load_on => None,
                (Some(h), _) => Some(tasks::read_processes(
                    h.proc_root(),
                    h.processes(rel),
                    &mut thread_reads,
                )),
                (None, Some(dir)) => Some(tasks::read(
                    &mut self.files,
                    dir,
                    &self.proc_root,
                    &mut thread_reads,
                )),
                (None, None) => None,
            };
            let task_states = match outcome.and_then(|o| self.skipped.ok(o)) {
                Some(tasks::Outcome::States(s)) => Some(s),
                Some(tasks::Outcome::OverBudget) => {
                    self.load.deferred += 1;
                    self.load.by_cgroup.get(&cg.id).map(|s| s.states)
                }
                Some(tasks::Outcome::Gone) | None => None,
            };
            let io = if io_on {
                self.read_io(rel, v2_dir.as_deref())
            } else {
                None
            };
            // PSI exists only in the v2 tree, on hybrid hosts too.
            let pressure = match &v2_dir {
                Some(dir) if psi_on => self
                    .skipped
                    .ok(psi::read(&mut self.files, dir))
                    .unwrap_or_default(),
                _ => PressureStats::default(),
            };
            let start_time = match self.start_times.get(&cg.id) {
                Some(t) => Some(*t),
                None => {
                    let t = v2_dir
                        .as_deref()
                        .and_then(|d| dir_mtime(d, &mut self.skipped));
                    if let Some(t) = t {
                        self.start_times.insert(cg.id, t);
                    }
                    t
                }
            };
            containers.push(ContainerSample {
                cgroup_id: cg.id,
                path: cg.path.clone(),
                identity: Default::default(),
                cpu,
                cpu_spec,
                memory,
                memory_spec,
                processes,
                tasks: task_states.map(|states| TaskLoad {
                    states,
                    ..TaskLoad::default()
                }),
                io,
                pressure,
                start_time,
                seen_at,
                quiet: false,
                // The kernel-backed kinds' and the filesystem walker's figures are theirs to
                // fill (see `sources`): absent until they do.
                ..ContainerSample::default()
            });
            if self.quiet.every > 0
                && let Some(sample) = containers.last()
            {
                // At first sight the deadline is staggered by id, so cgroups made together are
                // not all re-read in the same pass ever after.
                let due = if self.quiet.last.contains_key(&cg.id) {
                    pass + self.quiet.every
                } else {
                    pass + 1 + cg.id % self.quiet.every
                };
                self.quiet.last.insert(
                    cg.id,
                    Reusable {
                        sample: sample.clone(),
                        due,
                    },
                );
            }
        }
        self.host_pids = host;
        self.load.update(&mut containers);
        self.quiet.last.retain(|id, _| tree.contains(*id));
        self.start_times.retain(|id, _| tree.contains(*id));
        self.load.by_cgroup.retain(|id, _| tree.contains(*id));
        crate::prune::shrink(&mut self.quiet.last);
        crate::prune::shrink(&mut self.start_times);
        crate::prune::shrink(&mut self.load.by_cgroup);
        self.forget_removed(tree);
        self.files.end_pass();
        containers
    }

    /// Closes at once the files held for cgroups gone since the last pass, in every hierarchy.
    fn forget_removed(&mut self, tree: &Tree) {
        let l = &self.layout;
        let roots: Vec<&Path> = std::iter::once(l.unified.as_path())
            .chain(
                [
                    &l.v1_cpu,
                    &l.v1_cpuacct,
                    &l.v1_memory,
                    &l.v1_blkio,
                    &l.v1_pids,
                ]
                .into_iter()
                .filter_map(|m| m.as_deref()),
            )
            .collect();
        let mut gone = HashSet::new();
        for (id, rel) in &self.paths {
            if !tree.contains(*id) {
                gone.extend(
                    roots
                        .iter()
                        .filter_map(|r| crate::cgroup::tree::resolve_path_under(r, rel)),
                );
            }
        }
        self.paths.retain(|id, _| tree.contains(*id));
        crate::prune::shrink(&mut self.paths);
        if !gone.is_empty() {
            self.files.forget_dirs(&gone);
        }
    }

    /// Reads the CPU controller files of one cgroup from wherever this host keeps them.
    fn read_cpu(&mut self, rel: &Path, v2_dir: Option<&Path>) -> (CpuStats, CpuSpec) {
        let mut stats = CpuStats::default();
        let mut spec = CpuSpec::default();
        if let Some(dir) = v2_dir {
            stats = self
                .skipped
                .ok(cpu::read_v2_stat(&mut self.files, dir))
                .unwrap_or_default();
            if self.layout.mode == Mode::Unified {
                spec = self
                    .skipped
                    .ok(cpu::read_v2_spec(&mut self.files, dir))
                    .unwrap_or_default();
            }
        }
        if self.layout.mode == Mode::Hybrid {
            let v1_cpu = self.v1_dir(self.layout.v1_cpu.as_deref(), rel);
            if let Some(dir) = v1_cpu
                && let Some((v1_spec, throttling)) =
                    self.skipped.ok(cpu::read_v1_cpu(&mut self.files, &dir))
            {
                spec = v1_spec;
                stats.throttling = throttling;
            }
            // Only where the v2 cpu.stat had no user/system (kernels before 5.x on hybrid hosts).
            if stats.user_ns.is_none()
                && let Some(dir) = self.v1_dir(self.layout.v1_cpuacct.as_deref(), rel)
                && let Some(Some((user, system))) =
                    self.skipped.ok(cpu::read_v1_cpuacct(&mut self.files, &dir))
            {
                stats.user_ns = Some(user);
                stats.system_ns = Some(system);
            }
        }
        spec.mask = match self.layout.mode {
            Mode::Unified => v2_dir.and_then(|dir| {
                let mask = cpu::read_mask(&mut self.files, dir, "cpuset.cpus.effective");
                self.skipped.ok(mask).flatten()
            }),
            Mode::Hybrid => self
                .v1_dir(self.layout.v1_cpuset.as_deref(), rel)
                .and_then(|dir| {
                    let mask = cpu::read_mask(&mut self.files, &dir, "cpuset.cpus");
                    self.skipped.ok(mask).flatten()
                }),
        };
        (stats, spec)
    }

    /// Reads the memory controller of one cgroup: the v2 directory on pure v2 hosts, the v1
    /// memory hierarchy at the same path on hybrid ones.
    fn read_memory(
        &mut self,
        rel: &Path,
        v2_dir: Option<&Path>,
        root_usage: Option<MachineUsage>,
    ) -> (MemoryStats, MemorySpec) {
        match self.layout.mode {
            Mode::Unified => {
                let Some(dir) = v2_dir else {
                    return Default::default();
                };
                let stats = self
                    .skipped
                    .ok(memory::read_v2(&mut self.files, dir, root_usage))
                    .unwrap_or_default();
                let spec = self
                    .skipped
                    .ok(memory::read_v2_spec(&mut self.files, dir))
                    .unwrap_or_default();
                (stats, spec)
            }
            Mode::Hybrid => {
                let Some(dir) = self.v1_dir(self.layout.v1_memory.as_deref(), rel) else {
                    return Default::default();
                };
                let stats = self
                    .skipped
                    .ok(memory::read_v1(&mut self.files, &dir))
                    .unwrap_or_default();
                let spec = self
                    .skipped
                    .ok(memory::read_v1_spec(&mut self.files, &dir))
                    .unwrap_or_default();
                (stats, spec)
            }
        }
    }

    /// Processes from the v2 `cgroup.procs`; threads from the pids controller, in the v2
    /// directory on pure v2 hosts and in the v1 pids hierarchy on hybrid ones.
    fn read_processes(&mut self, rel: &Path, v2_dir: Option<&Path>) -> ProcessStats {
        let Some(v2_dir) = v2_dir else {
            return ProcessStats::default();
        };
        let pids_dir = match self.layout.mode {
            Mode::Unified => Some(v2_dir.to_path_buf()),
            Mode::Hybrid => self.v1_dir(self.layout.v1_pids.as_deref(), rel),
        };
        self.skipped
            .ok(pids::read(&mut self.files, v2_dir, pids_dir.as_deref()))
            .unwrap_or_default()
    }

    /// Block I/O: v2 `io.stat`, or the v1 blkio hierarchy; device names from sysfs.
    fn read_io(&mut self, rel: &Path, v2_dir: Option<&Path>) -> Option<Vec<DeviceIo>> {
        let read = match self.layout.mode {
            Mode::Unified => io::read_v2(&mut self.files, v2_dir?),
            Mode::Hybrid => {
                let dir = self.v1_dir(self.layout.v1_blkio.as_deref(), rel)?;
                io::read_v1(&mut self.files, &dir)
            }
        };
        let mut devices = self.skipped.ok(read).flatten()?;
        for d in &mut devices {
            d.device = self.devices.name(d.major, d.minor).to_string();
        }
        Some(devices)
    }

    /// The v1 directory at the same relative path, if that controller is mounted and has it.
    fn v1_dir(&self, mount: Option<&Path>, rel: &Path) -> Option<PathBuf> {
        // No is_dir(): it was a statx per controller per cgroup per pass, and a missing
        // directory already reads as absent files.
        mount.and_then(|root| crate::cgroup::tree::resolve_path_under(root, rel))
    }
}

/// A cgroup directory's modification time in Unix seconds: what cAdvisor takes as the creation
/// time. Children created later move it, which is why it is read once, at first sight.
///
/// Whoever owns a delegated cgroup can set it to anything with `touch -d`. A time after now
/// (first sight) cannot be a birth: it is clamped to now and counted as out of range; one at or
/// before the epoch gives no start time.
fn dir_mtime(dir: &Path, skipped: &mut Skipped) -> Option<f64> {
    let modified = std::fs::metadata(dir).ok()?.modified().ok()?;
    let secs = crate::unix_time::secs(modified);
    if secs <= 0.0 {
        return None;
    }
    let now = crate::unix_time::secs(std::time::SystemTime::now());
    if secs > now {
        skipped.out_of_range(dir, "directory mtime after the time it was first seen");
        return Some(now);
    }
    Some(secs)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    /// The reader's counters as the agent reports them.
    fn counters(reader: &CgroupfsReader) -> crate::snapshot::AgentStats {
        let mut stats = crate::snapshot::AgentStats::default();
        reader.report(&mut stats);
        stats
    }

    use super::*;
    use crate::{
        machine::{self, Roots},
        metrics::render,
        snapshot::{AgentStats, Snapshot},
        testutil::{assert_golden, fixture, testdata},
    };

    /// Reads a whole fixture tree the way a pass does and renders it: every reader, the
    /// per-layout choice of directory, and the families, end to end without eBPF.
    fn render_fixture(name: &str, kinds: MetricKinds) -> String {
        let layout = Layout::detect(&fixture(name)).expect("layout");
        let tree = Tree::walk(&layout.unified).expect("walk");
        let mut reader = CgroupfsReader::new(layout, testdata("proc"), testdata("sys"), kinds, 64);
        let mut containers = reader.read_all(&tree, 1_795_358_029.0, &HashSet::new());
        for c in &mut containers {
            // Directory times depend on the checkout: present, but not part of the golden.
            assert!(c.start_time.is_some(), "{}", c.path);
            c.start_time = None;
        }
        let machine = machine::read(&Roots {
            proc_root: testdata("proc"),
            sys_root: testdata("sys"),
            machine_id_files: vec![testdata("etc/machine-id")],
        });
        render(&Snapshot {
            containers,
            agent: AgentStats::default(),
            machine: Arc::new(machine),
            labels: Default::default(),
        })
        .lines()
        .filter(|l| !l.contains("nodetel_"))
        .map(|l| format!("{l}\n"))
        .collect()
    }

    #[test]
    fn v2_fixture_golden() {
        assert_golden("v2.prom", &render_fixture("v2", MetricKinds::default()));
    }

    #[test]
    fn hybrid_fixture_golden() {
        assert_golden(
            "hybrid.prom",
            &render_fixture("hybrid", MetricKinds::default()),
        );
    }

    #[test]
    fn disabled_kinds_read_nothing() {
        let kinds = MetricKinds::resolve(&["cpu".to_string()], &[]).expect("kinds");
        let text = render_fixture("v2", kinds);
        assert!(text.contains("container_cpu_user_seconds_total{"));
        assert!(!text.contains("container_memory_"), "{text}");
        assert!(!text.contains("container_threads"), "{text}");
        assert!(!text.contains("container_pressure_"), "{text}");
    }

    #[test]
    fn a_second_pass_rereads_open_files_and_opens_none() {
        for name in ["v2", "hybrid"] {
            let (tree, mut reader) = reader_at(&fixture(name));
            let first = reader.read_all(&tree, 1.0, &HashSet::new());
            let opened = counters(&reader).cgroupfs_files.opens;
            assert!(opened > 0 && counters(&reader).cgroupfs_files_held == opened);
            let second = reader.read_all(&tree, 1.0, &HashSet::new());
            assert_eq!(counters(&reader).cgroupfs_files.opens, opened, "{name}");
            assert_eq!(format!("{first:?}"), format!("{second:?}"), "{name}");
        }
    }

    /// The tree at `root` and a reader of it with every kind on and room for every file.
    fn reader_at(root: &Path) -> (Tree, CgroupfsReader) {
        let layout = Layout::detect(root).expect("layout");
        let tree = Tree::walk(&layout.unified).expect("walk");
        let reader = CgroupfsReader::new(
            layout,
            testdata("proc"),
            testdata("sys"),
            MetricKinds::default(),
            4096,
        );
        (tree, reader)
    }

    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(from).expect("read_dir").flatten() {
            let target = to.join(e.file_name());
            if e.path().is_dir() {
                copy_tree(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), &target).expect("copy");
            }
        }
    }

    #[test]
    fn quiet_cgroups_are_reread_only_when_due() {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_tree(&fixture("v2"), dir.path());
        let every = 3;
        let (tree, reader) = reader_at(dir.path());
        let mut reader = reader.reuse_quiet_for(every);
        let rel = "kubepods.slice/kubepods-burstable.slice";
        let usage = |c: &[ContainerSample]| {
            c.iter()
                .find(|c| c.path == format!("/{rel}"))
                .and_then(|c| c.memory.usage)
        };
        let all: HashSet<u64> = tree.cgroups.iter().map(|c| c.id).collect();
        let none = HashSet::new();
        let first = reader.read_all(&tree, 1.0, &all);
        let before = usage(&first).expect("usage");
        std::fs::write(dir.path().join(rel).join("memory.current"), "4242\n").expect("write");

        // Not quiet: read at once.
        let active = reader.read_all(&tree, 2.0, &none);
        assert_eq!(usage(&active), Some(4242));
        std::fs::write(dir.path().join(rel).join("memory.current"), "5151\n").expect("write");
        // Quiet: the last sample, with this pass's time, until `every` passes have gone by.
        let mut seen = Vec::new();
        for t in 0..every {
            let c = reader.read_all(&tree, 3.0 + t as f64, &all);
            assert!(c.iter().all(|c| c.seen_at == 3.0 + t as f64));
            assert_eq!(c.len(), first.len());
            seen.push(usage(&c));
        }
        assert_eq!(
            seen.last(),
            Some(&Some(5151)),
            "{seen:?} (before: {before})"
        );
        assert!(
            seen[..seen.len() - 1].iter().all(|u| *u == Some(4242)),
            "{seen:?}"
        );
        assert!(counters(&reader).cgroupfs_reused > 0);
    }

    #[test]
    fn a_quiet_cgroup_that_stalled_lately_has_its_pressure_reread() {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_tree(&fixture("v2"), dir.path());
        let (tree, reader) = reader_at(dir.path());
        let mut reader = reader.reuse_quiet_for(100);
        let rel = "kubepods.slice/kubepods-burstable.slice";
        let file = dir.path().join(rel).join("memory.pressure");
        let avg10 = |c: &[ContainerSample]| {
            c.iter()
                .find(|c| c.path == format!("/{rel}"))
                .and_then(|c| c.pressure.memory)
                .map(|p| (p.some_avg.0[0], p.some_us))
        };
        let all: HashSet<u64> = tree.cgroups.iter().map(|c| c.id).collect();
        let write = |text: &str| std::fs::write(&file, text).expect("write");
        // All averages zero at the first read: a quiet cgroup keeps that sample.
        let first = reader.read_all(&tree, 1.0, &all);
        assert_eq!(avg10(&first), Some((0, 300)));
        write(
            "some avg10=5.00 avg60=1.00 avg300=0.20 total=900\nfull avg10=0 avg60=0 avg300=0 total=200\n",
        );
        assert_eq!(avg10(&reader.read_all(&tree, 2.0, &all)), Some((0, 300)));
        // Read again (not quiet): averages above zero, so every quiet pass re-reads them as the
        // kernel decays them, and the rest of the sample is still reused.
        reader.read_all(&tree, 3.0, &HashSet::new());
        write(
            "some avg10=2.50 avg60=0.90 avg300=0.20 total=900\nfull avg10=0 avg60=0 avg300=0 total=200\n",
        );
        std::fs::write(dir.path().join(rel).join("memory.current"), "777\n").expect("write");
        let c = reader.read_all(&tree, 4.0, &all);
        assert_eq!(avg10(&c), Some((250, 900)));
        let usage = c
            .iter()
            .find(|c| c.path == format!("/{rel}"))
            .and_then(|c| c.memory.usage);
        assert_ne!(usage, Some(777), "only pressure is re-read");
        write(
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=900\nfull avg10=0 avg60=0 avg300=0 total=200\n",
        );
        assert_eq!(avg10(&reader.read_all(&tree, 5.0, &all)), Some((0, 900)));
        // Back to zero: reused as before.
        write(
            "some avg10=9.00 avg60=0.00 avg300=0.00 total=999\nfull avg10=0 avg60=0 avg300=0 total=200\n",
        );
        assert_eq!(avg10(&reader.read_all(&tree, 6.0, &all)), Some((0, 900)));
    }

    #[test]
    fn quiet_reuse_is_off_by_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_tree(&fixture("v2"), dir.path());
        let (tree, mut reader) = reader_at(dir.path());
        let all: HashSet<u64> = tree.cgroups.iter().map(|c| c.id).collect();
        reader.read_all(&tree, 1.0, &all);
        reader.read_all(&tree, 2.0, &all);
        assert_eq!(counters(&reader).cgroupfs_reused, 0);
    }

    #[test]
    fn garbled_files_are_counted_and_skipped() {
        let layout = Layout::detect(&fixture("v2")).expect("layout");
        let mut reader = CgroupfsReader::new(
            layout,
            testdata("proc"),
            testdata("sys"),
            MetricKinds::default(),
            64,
        );
        let got = reader.skipped.ok(memory::read_v2(
            &mut reader.files,
            &fixture("garbled"),
            None,
        ));
        assert_eq!(
            got, None,
            "a garbled memory.stat yields no figures, not zeroes"
        );
        assert_eq!(counters(&reader).cgroupfs_errors, 1);
    }
}
