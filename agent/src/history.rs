//! Recent samples per cgroup for the JSON API (`containers/<name>`, `v2.0/stats`, `summary`).
//!
//! Compact on purpose: a sample is a fixed array of numbers (no maps, no strings, no JSON), and
//! interfaces and block devices, whose number varies per cgroup, are columns beside it keyed
//! once by name. [`History::bytes_per_cgroup`] is the figure the README documents.
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::{
    cgroup::{io::DeviceIo, psi::Averages},
    snapshot::{ContainerSample, Snapshot},
};

/// "Not measured here", distinct from zero. No counter or gauge stored here reaches it.
const ABSENT: u64 = u64::MAX;

/// The scalar figures of one sample, by position in [`Record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    CpuTotal,
    CpuUser,
    CpuSystem,
    CfsPeriods,
    CfsThrottledPeriods,
    CfsThrottledNs,
    CfsBursts,
    CfsBurstNs,
    RunTimeNs,
    RunqueueNs,
    RunPeriods,
    MemUsage,
    MemMaxUsage,
    MemCache,
    MemRss,
    MemSwap,
    MemMappedFile,
    MemWorkingSet,
    MemFailcnt,
    MemKernel,
    MemActiveFile,
    MemInactiveFile,
    MemFileDirty,
    MemFileWriteback,
    MemPgscan,
    MemPgsteal,
    MemRefaultFile,
    MemRefaultAnon,
    PgFault,
    PgMajFault,
    PgFaultHierarchy,
    PgMajFaultHierarchy,
    MemEventsHigh,
    MemEventsMax,
    Processes,
    Threads,
    ThreadsMax,
    OomKills,
    PsiCpuSome,
    PsiCpuFull,
    PsiMemorySome,
    PsiMemoryFull,
    PsiIoSome,
    PsiIoFull,
    /// The averages of the field four before, packed by [`pack_averages`].
    PsiCpuSomeAvg,
    PsiCpuFullAvg,
    PsiMemorySomeAvg,
    PsiMemoryFullAvg,
    PsiIoSomeAvg,
    PsiIoFullAvg,
    TasksRunning,
    TasksSleeping,
    TasksStopped,
    TasksUninterruptible,
    LoadMilli,
    LoadDMilli,
}

const FIELDS: usize = Field::LoadDMilli as usize + 1;

/// A pressure line's three averages (each at most 10000) in one number: 8 bytes a sample where
/// three fields would take 24.
fn pack_averages(a: Averages) -> u64 {
    let [a10, a60, a300] = a.0.map(u64::from);
    a10 | (a60 << 16) | (a300 << 32)
}

pub fn unpack_averages(v: u64) -> Averages {
    Averages([0, 16, 32].map(|shift| ((v >> shift) & 0xffff) as u16))
}

/// One sample's scalars: unix nanoseconds and [`FIELDS`] numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub at_ns: u64,
    values: [u64; FIELDS],
}

impl Record {
    pub fn get(&self, f: Field) -> Option<u64> {
        let v = self.values[f as usize];
        (v != ABSENT).then_some(v)
    }

    /// A sample with nothing measured (what cAdvisor's zero structs hold).
    pub fn empty_at(at_ns: u64) -> Record {
        Record {
            at_ns,
            values: [ABSENT; FIELDS],
        }
    }

    pub fn time(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.at_ns)
    }

    fn from_sample(c: &ContainerSample, at_ns: u64) -> Record {
        use Field::*;
        let mut values = [ABSENT; FIELDS];
        let mut set = |f: Field, v: Option<u64>| {
            if let Some(v) = v {
                // A real u64::MAX (an unlimited pids.max) must not read back as "absent".
                values[f as usize] = v.min(ABSENT - 1);
            }
        };
        // The kernel's cumulative total since the cgroup's birth, which user and system add up
        // to; the eBPF total (counted since the agent attached) where cgroupfs has none.
        set(CpuTotal, c.cpu.usage_ns.or(c.cpu_usage_ns));
        set(CpuUser, c.cpu.user_ns);
        set(CpuSystem, c.cpu.system_ns);
        if let Some(t) = &c.cpu.throttling {
            set(CfsPeriods, Some(t.periods));
            set(CfsThrottledPeriods, Some(t.throttled_periods));
            set(CfsThrottledNs, Some(t.throttled_ns));
            set(CfsBursts, Some(t.bursts));
            set(CfsBurstNs, Some(t.burst_ns));
        }
        if let Some(s) = &c.schedstat {
            // On-CPU time as the scheduler programs measure it, beside their run-queue time.
            set(RunTimeNs, c.cpu_usage_ns);
            set(RunqueueNs, Some(s.runqueue_ns));
            set(RunPeriods, Some(s.run_periods));
        }
        let m = &c.memory;
        set(MemUsage, m.usage);
        set(MemMaxUsage, m.max_usage);
        set(MemCache, m.cache);
        set(MemRss, m.rss);
        set(MemSwap, m.swap);
        set(MemMappedFile, m.mapped_file);
        set(MemWorkingSet, m.working_set());
        set(MemFailcnt, m.failcnt);
        set(MemKernel, m.kernel);
        set(MemActiveFile, m.active_file);
        set(MemInactiveFile, m.inactive_file);
        set(MemFileDirty, m.file_dirty);
        set(MemFileWriteback, m.file_writeback);
        set(MemPgscan, m.pgscan);
        set(MemPgsteal, m.pgsteal);
        set(MemRefaultFile, m.workingset_refault_file);
        set(MemRefaultAnon, m.workingset_refault_anon);
        set(PgFault, m.pgfault);
        set(PgMajFault, m.pgmajfault);
        set(PgFaultHierarchy, m.pgfault_hierarchy);
        set(PgMajFaultHierarchy, m.pgmajfault_hierarchy);
        set(MemEventsHigh, m.events_high);
        set(MemEventsMax, m.events_max);
        set(Processes, c.processes.processes);
        set(Threads, c.processes.threads);
        set(ThreadsMax, c.processes.threads_max);
        set(OomKills, c.oom_kills);
        if let Some(t) = &c.tasks {
            set(TasksRunning, Some(t.states.running));
            set(TasksSleeping, Some(t.states.sleeping));
            set(TasksStopped, Some(t.states.stopped));
            set(TasksUninterruptible, Some(t.states.uninterruptible));
            set(LoadMilli, Some(t.load_milli));
            set(LoadDMilli, Some(t.load_d_milli));
        }
        let p = &c.pressure;
        for (pressure, [some, full, some_avg, full_avg]) in [
            (
                p.cpu,
                [PsiCpuSome, PsiCpuFull, PsiCpuSomeAvg, PsiCpuFullAvg],
            ),
            (
                p.memory,
                [
                    PsiMemorySome,
                    PsiMemoryFull,
                    PsiMemorySomeAvg,
                    PsiMemoryFullAvg,
                ],
            ),
            (p.io, [PsiIoSome, PsiIoFull, PsiIoSomeAvg, PsiIoFullAvg]),
        ] {
            if let Some(pr) = pressure {
                set(some, Some(pr.some_us));
                set(full, pr.full_us);
                set(some_avg, Some(pack_averages(pr.some_avg)));
                set(full_avg, pr.full_avg.map(pack_averages));
            }
        }
        Record { at_ns, values }
    }
}

/// rx_bytes, rx_packets, rx_errors, rx_dropped, tx_bytes, tx_packets, tx_errors, tx_dropped.
pub type IfaceRow = [u64; 8];
/// read bytes, write bytes, reads, writes.
pub type DeviceRow = [u64; 4];
/// capacity, usage, base usage, available, inodes, inodes free, then the device's eleven
/// diskstats counters (see [`crate::fs_usage::FsStats`]).
pub type FsRow = [u64; 17];

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceKey {
    pub major: u32,
    pub minor: u32,
    pub name: Arc<str>,
}

fn iface_row(i: &crate::snapshot::InterfaceStats) -> IfaceRow {
    let v = |x: Option<u64>| x.unwrap_or(0).min(ABSENT - 1);
    [
        v(i.rx_bytes),
        v(i.rx_packets),
        v(i.rx_errors),
        v(i.rx_dropped),
        v(i.tx_bytes),
        v(i.tx_packets),
        v(i.tx_errors),
        v(i.tx_dropped),
    ]
}

fn device_row(d: &DeviceIo) -> DeviceRow {
    [
        d.read_bytes.min(ABSENT - 1),
        d.write_bytes,
        d.reads,
        d.writes,
    ]
}

fn fs_row(f: &crate::fs_usage::FsStats) -> FsRow {
    let mut row = [0u64; 17];
    row[..6].copy_from_slice(&[
        f.capacity.min(ABSENT - 1),
        f.usage,
        f.base_usage,
        f.available,
        f.inodes,
        f.inodes_free,
    ]);
    row[6..].copy_from_slice(&f.disk);
    row
}

/// A column of per-sample rows beside the records, one per interface or device; a row is
/// absent (first value [`ABSENT`]) for samples taken while the cgroup did not have it.
#[derive(Debug)]
struct Column<K, const N: usize> {
    key: K,
    rows: VecDeque<[u64; N]>,
}

#[derive(Debug, Default)]
struct CgroupHistory {
    records: VecDeque<Record>,
    ifaces: Vec<Column<Arc<str>, 8>>,
    devices: Vec<Column<DeviceKey, 4>>,
    filesystems: Vec<Column<DeviceKey, 17>>,
}

/// One sample as a query returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub record: Record,
    /// The cgroup's interfaces in this sample, in first-seen order (the first one is what the
    /// JSON inlines as cAdvisor does).
    pub ifaces: Vec<(Arc<str>, IfaceRow)>,
    pub devices: Vec<(DeviceKey, DeviceRow)>,
    pub filesystems: Vec<(DeviceKey, FsRow)>,
}

impl Stored {
    /// One sample as the history would give it back (the JSON API's figures), without keeping
    /// it: for what is pushed in cAdvisor's schemas.
    pub fn of(c: &ContainerSample, at_ns: u64) -> Stored {
        let key = |major, minor, name: &str| DeviceKey {
            major,
            minor,
            name: Arc::from(name),
        };
        Stored {
            record: Record::from_sample(c, at_ns),
            ifaces: c
                .network
                .iter()
                .flatten()
                .map(|i| (Arc::from(i.name.as_str()), iface_row(i)))
                .collect(),
            devices: c
                .io
                .iter()
                .flatten()
                .map(|d| (key(d.major, d.minor, &d.device), device_row(d)))
                .collect(),
            filesystems: c
                .filesystems
                .iter()
                .flatten()
                .map(|f| (key(f.major, f.minor, &f.device), fs_row(f)))
                .collect(),
        }
    }
}

/// Which samples a request wants, newest last.
#[derive(Clone, Copy, Debug, Default)]
pub struct Range {
    pub start: Option<SystemTime>,
    pub end: Option<SystemTime>,
    /// At most this many of the newest samples in range; `None` = all.
    pub count: Option<usize>,
}

/// Appends one row to every column: `values` for the keys present in this sample (a column is
/// made for a new one, backfilled as absent), absent for the rest. `same` finds an existing
/// column without building a key, so a sample of known interfaces allocates nothing.
fn push_column<T, K, const N: usize>(
    cols: &mut Vec<Column<K, N>>,
    len_before: usize,
    values: impl Iterator<Item = (T, [u64; N])>,
    same: impl Fn(&K, &T) -> bool,
    make: impl Fn(T) -> K,
) {
    let mut absent = [0; N];
    absent[0] = ABSENT;
    for col in cols.iter_mut() {
        col.rows.push_back(absent);
    }
    for (key, row) in values {
        match cols.iter_mut().find(|c| same(&c.key, &key)) {
            Some(col) => {
                if let Some(last) = col.rows.back_mut() {
                    *last = row;
                }
            }
            None => {
                let mut rows = VecDeque::with_capacity(len_before + 1);
                rows.extend(std::iter::repeat_n(absent, len_before));
                rows.push_back(row);
                cols.push(Column {
                    key: make(key),
                    rows,
                });
            }
        }
    }
}

impl CgroupHistory {
    fn push(&mut self, c: &ContainerSample, at_ns: u64, capacity: usize, oldest_ns: u64) {
        let len_before = self.records.len();
        if self.records.capacity() == 0 {
            // Exactly what the history may hold: growth by doubling would waste up to half.
            self.records.reserve_exact(capacity);
        }
        self.records.push_back(Record::from_sample(c, at_ns));
        let ifaces = c
            .network
            .iter()
            .flatten()
            .map(|i| (i.name.as_str(), iface_row(i)));
        push_column(
            &mut self.ifaces,
            len_before,
            ifaces,
            |k: &Arc<str>, name: &&str| k.as_ref() == *name,
            Arc::from,
        );
        let devices = c.io.iter().flatten().map(|d| (d, device_row(d)));
        push_column(
            &mut self.devices,
            len_before,
            devices,
            |k: &DeviceKey, d: &&DeviceIo| {
                k.major == d.major && k.minor == d.minor && *k.name == *d.device
            },
            |d| DeviceKey {
                major: d.major,
                minor: d.minor,
                name: Arc::from(d.device.as_str()),
            },
        );
        let filesystems = c.filesystems.iter().flatten().map(|f| (f, fs_row(f)));
        push_column(
            &mut self.filesystems,
            len_before,
            filesystems,
            |k: &DeviceKey, f: &&crate::fs_usage::FsStats| {
                k.major == f.major && k.minor == f.minor && k.name == f.device
            },
            |f| DeviceKey {
                major: f.major,
                minor: f.minor,
                name: Arc::clone(&f.device),
            },
        );
        let mut popped = false;
        while self.records.len() > capacity
            || self.records.front().is_some_and(|r| r.at_ns < oldest_ns)
        {
            self.pop_front();
            popped = true;
        }
        // A column whose interface or device left the cgroup for the whole window goes; only a
        // pop can empty one.
        if popped {
            self.ifaces
                .retain(|c| c.rows.iter().any(|r| r[0] != ABSENT));
            self.devices
                .retain(|c| c.rows.iter().any(|r| r[0] != ABSENT));
            self.filesystems
                .retain(|c| c.rows.iter().any(|r| r[0] != ABSENT));
        }
    }

    fn pop_front(&mut self) {
        self.records.pop_front();
        for c in &mut self.ifaces {
            c.rows.pop_front();
        }
        for c in &mut self.devices {
            c.rows.pop_front();
        }
        for c in &mut self.filesystems {
            c.rows.pop_front();
        }
    }

    fn query(&self, range: Range) -> Vec<Stored> {
        let ns = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        };
        let (lo, hi) = (range.start.map_or(0, ns), range.end.map_or(u64::MAX, ns));
        let idx: Vec<usize> = (0..self.records.len())
            .filter(|&i| (lo..=hi).contains(&self.records[i].at_ns))
            .collect();
        let skip = range.count.map_or(0, |n| idx.len().saturating_sub(n));
        idx[skip..]
            .iter()
            .map(|&i| Stored {
                record: self.records[i],
                ifaces: self
                    .ifaces
                    .iter()
                    .filter(|c| c.rows[i][0] != ABSENT)
                    .map(|c| (Arc::clone(&c.key), c.rows[i]))
                    .collect(),
                devices: self
                    .devices
                    .iter()
                    .filter(|c| c.rows[i][0] != ABSENT)
                    .map(|c| (c.key.clone(), c.rows[i]))
                    .collect(),
                filesystems: self
                    .filesystems
                    .iter()
                    .filter(|c| c.rows[i][0] != ABSENT)
                    .map(|c| (c.key.clone(), c.rows[i]))
                    .collect(),
            })
            .collect()
    }
}

/// Every live cgroup's recent samples, keyed by cgroup id (a removed cgroup's go with it, and a
/// new cgroup at the same path starts empty: its numbers are never mixed with the old one's).
#[derive(Debug)]
pub struct History {
    capacity: usize,
    max_age: Option<Duration>,
    by_id: HashMap<u64, CgroupHistory>,
}

impl History {
    /// `capacity` samples per cgroup at most (0 keeps none), none older than `max_age`.
    pub fn new(capacity: usize, max_age: Option<Duration>) -> Self {
        History {
            capacity,
            max_age,
            by_id: HashMap::new(),
        }
    }

    pub fn record(&mut self, snapshot: &Snapshot) {
        let at = snapshot.agent.taken_at;
        let at_ns = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let oldest_ns = self.max_age.map_or(0, |age| {
            at_ns.saturating_sub(u64::try_from(age.as_nanos()).unwrap_or(u64::MAX))
        });
        if self.capacity == 0 {
            self.by_id.clear();
            return;
        }
        let live: std::collections::HashSet<u64> =
            snapshot.containers.iter().map(|c| c.cgroup_id).collect();
        self.by_id.retain(|id, _| live.contains(id));
        crate::prune::shrink(&mut self.by_id);
        for c in &snapshot.containers {
            self.by_id
                .entry(c.cgroup_id)
                .or_default()
                .push(c, at_ns, self.capacity, oldest_ns);
        }
    }

    /// Samples kept per cgroup at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn query(&self, cgroup_id: u64, range: Range) -> Vec<Stored> {
        self.by_id
            .get(&cgroup_id)
            .map(|h| h.query(range))
            .unwrap_or_default()
    }

    /// Heap bytes one cgroup's full history takes: the README's figure.
    pub fn bytes_per_cgroup(
        samples: usize,
        ifaces: usize,
        devices: usize,
        filesystems: usize,
    ) -> usize {
        samples
            * (std::mem::size_of::<Record>()
                + ifaces * std::mem::size_of::<IfaceRow>()
                + devices * std::mem::size_of::<DeviceRow>()
                + filesystems * std::mem::size_of::<FsRow>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cgroup::{io::DeviceIo, memory::MemoryStats},
        snapshot::{AgentStats, InterfaceStats},
    };

    fn snap(at_s: u64, cgroups: &[(u64, u64, &[&str])]) -> Snapshot {
        let containers = cgroups
            .iter()
            .map(|(id, usage, ifaces)| ContainerSample {
                cgroup_id: *id,
                path: format!("/c{id}"),
                memory: MemoryStats {
                    usage: Some(*usage),
                    inactive_file: Some(1),
                    ..Default::default()
                },
                network: Some(
                    ifaces
                        .iter()
                        .map(|n| InterfaceStats {
                            name: n.to_string(),
                            rx_bytes: Some(*usage * 10),
                            ..Default::default()
                        })
                        .collect(),
                ),
                io: Some(vec![DeviceIo {
                    major: 8,
                    minor: 0,
                    device: "/dev/sda".into(),
                    read_bytes: *usage,
                    ..Default::default()
                }]),
                ..Default::default()
            })
            .collect();
        Snapshot {
            containers,
            agent: AgentStats {
                taken_at: SystemTime::UNIX_EPOCH + Duration::from_secs(at_s),
                ..AgentStats::default()
            },
            machine: Default::default(),
            labels: Default::default(),
        }
    }

    /// What is pushed in cAdvisor's schemas is what the history (and so the JSON API) holds for
    /// the same pass.
    #[test]
    fn a_sample_not_kept_equals_the_kept_one() {
        let s = snap(1000, &[(1, 42, &["eth0", "eth1"]), (2, 7, &[])]);
        let mut h = History::new(4, None);
        h.record(&s);
        for c in &s.containers {
            let kept = h.query(c.cgroup_id, Range::default());
            assert_eq!(kept, [Stored::of(c, 1000 * 1_000_000_000)]);
        }
    }

    /// Property: whatever interfaces come and go from sample to sample, every query gives each
    /// sample exactly the interfaces (and figures) it was recorded with: the columns stay
    /// aligned with the records through appends, age-outs and dropped columns.
    #[test]
    fn columns_stay_aligned_with_their_samples() {
        const NAMES: [&str; 5] = ["eth0", "eth1", "lo", "veth9", "wg0"];
        for seed in 0..100 {
            let mut rng = crate::testutil::Rng::new(seed);
            let capacity = 1 + rng.below(8) as usize;
            let mut h = History::new(capacity, None);
            // The model: per cgroup, the last `capacity` samples' (usage, interfaces).
            let mut model: HashMap<u64, Vec<(u64, Vec<&str>)>> = HashMap::new();
            for at in 0..60 {
                let mut cgroups: Vec<(u64, u64, Vec<&str>)> = Vec::new();
                for id in 1..=3 {
                    // A cgroup is sometimes absent for a pass (removed: its history goes).
                    if rng.chance(10) {
                        model.remove(&id);
                        continue;
                    }
                    let usage = rng.below(1_000_000);
                    let ifaces: Vec<&str> =
                        NAMES.iter().copied().filter(|_| rng.chance(2)).collect();
                    cgroups.push((id, usage, ifaces));
                }
                let listed: Vec<(u64, u64, &[&str])> = cgroups
                    .iter()
                    .map(|(id, u, i)| (*id, *u, i.as_slice()))
                    .collect();
                h.record(&snap(1000 + at, &listed));
                for (id, usage, ifaces) in cgroups {
                    let m = model.entry(id).or_default();
                    m.push((usage, ifaces));
                    if m.len() > capacity {
                        m.remove(0);
                    }
                }
                for (id, want) in &model {
                    let got = h.query(*id, Range::default());
                    assert_eq!(got.len(), want.len(), "seed {seed} pass {at} cgroup {id}");
                    for (g, (usage, ifaces)) in got.iter().zip(want) {
                        assert_eq!(g.record.get(Field::MemUsage), Some(*usage), "seed {seed}");
                        let mut names: Vec<&str> = g.ifaces.iter().map(|(n, _)| &**n).collect();
                        names.sort_unstable();
                        assert_eq!(&names, ifaces, "seed {seed} pass {at} cgroup {id}");
                        for (_, row) in &g.ifaces {
                            assert_eq!(row[0], usage * 10, "seed {seed}: a row of another sample");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn keeps_the_newest_samples_up_to_capacity() {
        let mut h = History::new(3, None);
        for t in 1..=5 {
            h.record(&snap(t, &[(7, t * 100, &["eth0"])]));
        }
        let got = h.query(7, Range::default());
        let usage: Vec<_> = got.iter().map(|s| s.record.get(Field::MemUsage)).collect();
        assert_eq!(usage, [Some(300), Some(400), Some(500)]);
        assert_eq!(got[2].record.get(Field::MemWorkingSet), Some(499));
        assert_eq!(got[2].record.get(Field::CpuTotal), None, "never measured");
        assert_eq!(got[2].ifaces[0].0.as_ref(), "eth0");
        assert_eq!(got[2].ifaces[0].1[0], 5000);
        assert_eq!(got[2].devices[0].1[0], 500);
        // count and time range select among them, newest last.
        let last = h.query(
            7,
            Range {
                count: Some(1),
                ..Default::default()
            },
        );
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].record.get(Field::MemUsage), Some(500));
        let window = h.query(
            7,
            Range {
                start: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(3)),
                end: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(4)),
                count: None,
            },
        );
        assert_eq!(window.len(), 2);
    }

    #[test]
    fn max_age_drops_old_samples_and_removed_cgroups_go() {
        let mut h = History::new(100, Some(Duration::from_secs(2)));
        for t in 1..=5 {
            h.record(&snap(t, &[(1, t, &[]), (2, t, &[])]));
        }
        assert_eq!(h.query(1, Range::default()).len(), 3, "5, 4 and 3 s");
        h.record(&snap(6, &[(1, 6, &[])]));
        assert!(h.query(2, Range::default()).is_empty(), "cgroup 2 removed");
        // A new cgroup id starts empty even at an old path.
        h.record(&snap(7, &[(3, 7, &[])]));
        assert_eq!(h.query(3, Range::default()).len(), 1);
    }

    #[test]
    fn interfaces_that_come_and_go_keep_their_rows_aligned() {
        let mut h = History::new(4, None);
        h.record(&snap(1, &[(1, 1, &["eth0"])]));
        h.record(&snap(2, &[(1, 2, &["eth0", "eth1"])]));
        h.record(&snap(3, &[(1, 3, &["eth1"])]));
        let got = h.query(1, Range::default());
        let names = |s: &Stored| s.ifaces.iter().map(|i| i.0.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&got[0]), ["eth0"]);
        assert_eq!(names(&got[1]), ["eth0", "eth1"]);
        assert_eq!(names(&got[2]), ["eth1"]);
        assert_eq!(got[2].ifaces[0].1[0], 30);
        // eth0 ages out of the window entirely: its column goes.
        for t in 4..=7 {
            h.record(&snap(t, &[(1, t, &["eth1"])]));
        }
        assert_eq!(h.by_id[&1].ifaces.len(), 1);
    }

    #[test]
    fn the_documented_cost() {
        // README: 60 samples of a cgroup with one interface and one block device.
        assert_eq!(
            History::bytes_per_cgroup(60, 1, 1, 1),
            60 * (456 + 64 + 32 + 136)
        );
    }
}
