//! One table of metric families, as cAdvisor keeps one: name, help, type, extra labels, getter.
//! Names, help texts, types and units are cAdvisor's (see shared/docs/cadvisor-compat.md); a
//! family appears for a cgroup only where its getter returns a value, which is how cAdvisor's
//! conditions ("only with a quota", "only with the controller") are expressed.
use crate::{
    machine::MachineInfo,
    snapshot::{AgentStats, ContainerSample},
    sources,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

pub struct ContainerFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// Labels beyond the base set, constant per family.
    pub extra: &'static [(&'static str, &'static str)],
    pub value: Value,
}

/// Labels beyond the base set for one series of a [`Value::Many`] family.
pub type Extra<'a> = &'a [(&'static str, &'a str)];

/// Where a [`Value::Many`] getter puts each of its series.
pub type Emit<'e> = &'e mut dyn FnMut(Extra<'_>, f64);

/// Where a [`Value::Histogram`] getter puts each of its histograms.
pub type EmitHistogram<'e> = &'e mut dyn FnMut(Extra<'_>, Histogram);

pub enum Value {
    /// At most one series per cgroup.
    One(fn(&ContainerSample) -> Option<f64>),
    /// Several series per cgroup (per device, per failure type): the getter calls `emit` for
    /// each with its own extra labels.
    Many(fn(&ContainerSample, Emit<'_>)),
    /// Histograms (family kind `Histogram`): `_bucket{le}`, `_sum` and `_count` series, one set
    /// per call of `emit`, each with its own extra labels (none for one per cgroup).
    Histogram(fn(&ContainerSample, EmitHistogram<'_>)),
}

/// One cgroup's histogram: cumulative counts by upper bound (the last bound +Inf).
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

/// A histogram of the kernel's log2 buckets: bucket b counts values of at most 2^b µs, the
/// last one the rest (+Inf). `buckets` are per bucket, not cumulative.
pub fn log2_us_histogram(buckets: &[u64], sum_ns: u64, count: u64) -> Option<Histogram> {
    let last = buckets.len().checked_sub(1)?;
    let mut seen = 0u64;
    let buckets = buckets
        .iter()
        .enumerate()
        .map(|(b, n)| {
            seen = seen.saturating_add(*n);
            let le = if b == last {
                f64::INFINITY
            } else {
                (1u64 << b) as f64 * 1e-6
            };
            (le, seen)
        })
        .collect();
    Some(Histogram {
        buckets,
        sum: sum_ns as f64 / NS_PER_S,
        count,
    })
}

/// The classic bounds of a kernel log2 histogram, in kernel buckets: every second one from 2^6
/// µs (64 µs, 256 µs, 1.02 ms, ... 4.19 s), 10 bounds and +Inf. The kernel keeps all 27; a
/// classic histogram per container (and disk, operation) with all of them would be 29 series.
const CLASSIC_BOUNDS: [usize; 10] = [6, 8, 10, 12, 14, 16, 18, 20, 22, 24];

/// A kernel log2 histogram (bucket b: values under 2^b µs, not cumulative) as a classic one at
/// [`CLASSIC_BOUNDS`]: the count at bound b is the sum of buckets 0..=b.
pub fn log2_us_classic(buckets: &[u64], sum_s: f64, count: u64) -> Histogram {
    let mut out = Vec::with_capacity(CLASSIC_BOUNDS.len() + 1);
    let mut seen = 0u64;
    let mut next = 0;
    for b in CLASSIC_BOUNDS {
        while next <= b && next < buckets.len() {
            seen = seen.saturating_add(buckets[next]);
            next += 1;
        }
        out.push(((1u64 << b) as f64 * 1e-6, seen));
    }
    out.push((f64::INFINITY, count));
    Histogram {
        buckets: out,
        sum: sum_s,
        count,
    }
}

pub const NS_PER_S: f64 = 1e9;

/// A byte or event count as a sample value.
fn num(v: Option<u64>) -> Option<f64> {
    v.map(|v| v as f64)
}

/// cAdvisor reports limits above 2^62 (unlimited: `max`, or v1's page-rounded i64::MAX) as 0.
fn limit(v: Option<u64>) -> Option<f64> {
    v.map(|v| if v > 1 << 62 { 0.0 } else { v as f64 })
}

fn has_quota(c: &ContainerSample) -> bool {
    c.cpu_spec.quota_us.is_some()
}

/// A sample value from a figure: a count, or one nodetel may not have (no series then).
pub trait Figure: Copy {
    fn sample(self) -> Option<f64>;
}

impl Figure for u64 {
    fn sample(self) -> Option<f64> {
        Some(self as f64)
    }
}

impl Figure for Option<u64> {
    fn sample(self) -> Option<f64> {
        self.map(|v| v as f64)
    }
}

/// A family of one figure of each row of a per-row sample field (each filesystem, I/O device,
/// interface), labelled by the row's key: `per_row!(name, help, Gauge, filesystems, "device",
/// device, inodes_free)`.
#[macro_export]
macro_rules! per_row {
    ($name:literal, $help:literal, $kind:ident, $rows:ident, $label:literal, $key:ident, $field:ident) => {
        $crate::metrics::families::ContainerFamily {
            name: $name,
            help: $help,
            kind: $crate::metrics::families::Kind::$kind,
            extra: &[],
            value: $crate::metrics::families::Value::Many(|c, emit| {
                for r in c.$rows.iter().flatten() {
                    if let Some(v) = $crate::metrics::families::Figure::sample(r.$field) {
                        emit(&[($label, &r.$key)], v);
                    }
                }
            }),
        }
    };
}

/// Every container family, in the order they are written.
pub fn container_families() -> impl Iterator<Item = &'static ContainerFamily> {
    sources::container_families(CGROUPFS, TASKS, LIFETIME)
}

/// Figures read from cgroupfs: CPU (the controller's), memory, filesystems, block I/O,
/// processes, pressure.
pub static CGROUPFS: &[ContainerFamily] = &[
    ContainerFamily {
        name: "container_cpu_user_seconds_total",
        help: "Cumulative user cpu time consumed in seconds.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| c.cpu.user_ns.map(|v| v as f64 / NS_PER_S)),
    },
    ContainerFamily {
        name: "container_cpu_system_seconds_total",
        help: "Cumulative system cpu time consumed in seconds.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| c.cpu.system_ns.map(|v| v as f64 / NS_PER_S)),
    },
    ContainerFamily {
        name: "container_cpu_cfs_periods_total",
        help: "Number of elapsed enforcement period intervals.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| {
            let t = c.cpu.throttling.filter(|_| has_quota(c))?;
            Some(t.periods as f64)
        }),
    },
    ContainerFamily {
        name: "container_cpu_cfs_throttled_periods_total",
        help: "Number of throttled period intervals.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| {
            let t = c.cpu.throttling.filter(|_| has_quota(c))?;
            Some(t.throttled_periods as f64)
        }),
    },
    ContainerFamily {
        name: "container_cpu_cfs_throttled_seconds_total",
        help: "Total time duration the container has been throttled.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| {
            let t = c.cpu.throttling.filter(|_| has_quota(c))?;
            Some(t.throttled_ns as f64 / NS_PER_S)
        }),
    },
    ContainerFamily {
        name: "container_cpu_cfs_burst_periods_total",
        help: "Number of periods when burst occurs.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| {
            let t = c.cpu.throttling.filter(|_| has_quota(c))?;
            Some(t.bursts as f64)
        }),
    },
    ContainerFamily {
        name: "container_cpu_cfs_burst_seconds_total",
        help: "Total time duration the container has been bursted.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| {
            let t = c.cpu.throttling.filter(|_| has_quota(c))?;
            Some(t.burst_ns as f64 / NS_PER_S)
        }),
    },
    ContainerFamily {
        name: "container_spec_cpu_period",
        help: "CPU period of the container.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| c.cpu_spec.period_us.map(|v| v as f64)),
    },
    ContainerFamily {
        name: "container_spec_cpu_quota",
        help: "CPU quota of the container.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| c.cpu_spec.quota_us.map(|v| v as f64)),
    },
    ContainerFamily {
        name: "container_spec_cpu_shares",
        help: "CPU share of the container.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| c.cpu_spec.shares.map(|v| v as f64)),
    },
    ContainerFamily {
        name: "container_memory_cache",
        help: "Number of bytes of page cache memory.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| num(c.memory.cache)),
    },
    ContainerFamily {
        name: "container_memory_rss",
        help: "Size of RSS in bytes.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| num(c.memory.rss)),
    },
    ContainerFamily {
        name: "container_memory_kernel_usage",
        help: "Size of kernel memory allocated in bytes.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| num(c.memory.kernel)),
    },
    ContainerFamily {
        name: "container_memory_mapped_file",
        help: "Size of memory mapped files in bytes.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| num(c.memory.mapped_file)),
    },
    ContainerFamily {
        name: "container_memory_swap",
        help: "Container swap usage in bytes.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| num(c.memory.swap)),
    },
    ContainerFamily {
        name: "container_memory_failcnt",
        help: "Number of memory usage hits limits",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| num(c.memory.failcnt)),
    },
    ContainerFamily {
        name: "container_memory_usage_bytes",
        help: "Current memory usage in bytes, including all memory regardless of when it was accessed",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| num(c.memory.usage)),
    },
    ContainerFamily {
        name: "container_memory_max_usage_bytes",
        help: "Maximum memory usage recorded in bytes",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| num(c.memory.max_usage)),
    },
    ContainerFamily {
        name: "container_memory_working_set_bytes",
        help: "Current working set in bytes.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| num(c.memory.working_set())),
    },
    ContainerFamily {
        name: "container_memory_total_active_file_bytes",
        help: "Current total active file in bytes.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| num(c.memory.active_file)),
    },
    ContainerFamily {
        name: "container_memory_total_inactive_file_bytes",
        help: "Current total inactive file in bytes.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| num(c.memory.inactive_file)),
    },
    ContainerFamily {
        name: "container_memory_failures_total",
        help: "Cumulative count of memory allocation failures.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::Many(|c, emit| {
            let m = &c.memory;
            for (kind, scope, v) in [
                ("pgfault", "container", m.pgfault),
                ("pgfault", "hierarchy", m.pgfault_hierarchy),
                ("pgmajfault", "container", m.pgmajfault),
                ("pgmajfault", "hierarchy", m.pgmajfault_hierarchy),
            ] {
                if let Some(v) = v {
                    emit(&[("failure_type", kind), ("scope", scope)], v as f64);
                }
            }
        }),
    },
    ContainerFamily {
        name: "container_memory_events_high_total",
        help: "Number of times the memory usage went over the high boundary (memory.events high).",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| num(c.memory.events_high)),
    },
    ContainerFamily {
        name: "container_memory_events_max_total",
        help: "Number of times the memory usage was about to go over the max boundary (memory.events max).",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| num(c.memory.events_max)),
    },
    ContainerFamily {
        name: "container_memory_file_dirty_bytes",
        help: "Size of file pages that are modified and not yet written back to disk.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| num(c.memory.file_dirty)),
    },
    ContainerFamily {
        name: "container_memory_file_writeback_bytes",
        help: "Size of file pages that are being written back to disk.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| num(c.memory.file_writeback)),
    },
    ContainerFamily {
        name: "container_memory_pgscan_total",
        help: "Number of pages scanned for reclaim.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| num(c.memory.pgscan)),
    },
    ContainerFamily {
        name: "container_memory_pgsteal_total",
        help: "Number of pages reclaimed.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| num(c.memory.pgsteal)),
    },
    ContainerFamily {
        name: "container_memory_workingset_refault_file_total",
        help: "Number of refaults of previously evicted file pages.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| num(c.memory.workingset_refault_file)),
    },
    ContainerFamily {
        name: "container_memory_workingset_refault_anon_total",
        help: "Number of refaults of previously evicted anonymous pages.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| num(c.memory.workingset_refault_anon)),
    },
    ContainerFamily {
        name: "container_spec_memory_limit_bytes",
        help: "Memory limit for the container.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| limit(c.memory_spec.limit)),
    },
    ContainerFamily {
        name: "container_spec_memory_swap_limit_bytes",
        help: "Memory swap limit for the container.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| limit(c.memory_spec.swap_limit)),
    },
    ContainerFamily {
        name: "container_spec_memory_reservation_limit_bytes",
        help: "Memory reservation limit for the container.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| limit(c.memory_spec.reservation)),
    },
    per_row!(
        "container_fs_inodes_free",
        "Number of available Inodes",
        Gauge,
        filesystems,
        "device",
        device,
        inodes_free
    ),
    per_row!(
        "container_fs_inodes_total",
        "Number of Inodes",
        Gauge,
        filesystems,
        "device",
        device,
        inodes
    ),
    per_row!(
        "container_fs_limit_bytes",
        "Number of bytes that can be consumed by the container on this filesystem.",
        Gauge,
        filesystems,
        "device",
        device,
        capacity
    ),
    per_row!(
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        Gauge,
        filesystems,
        "device",
        device,
        usage
    ),
    per_row!(
        "container_fs_reads_bytes_total",
        "Cumulative count of bytes read",
        Counter,
        io,
        "device",
        device,
        read_bytes
    ),
    per_row!(
        "container_fs_reads_total",
        "Cumulative count of reads completed",
        Counter,
        io,
        "device",
        device,
        reads
    ),
    per_row!(
        "container_fs_writes_bytes_total",
        "Cumulative count of bytes written",
        Counter,
        io,
        "device",
        device,
        write_bytes
    ),
    per_row!(
        "container_fs_writes_total",
        "Cumulative count of writes completed",
        Counter,
        io,
        "device",
        device,
        writes
    ),
    ContainerFamily {
        name: "container_blkio_device_usage_total",
        help: "Blkio Device bytes usage",
        kind: Kind::Counter,
        extra: &[],
        value: Value::Many(|c, emit| {
            for d in c.io.iter().flatten() {
                let (major, minor) = (d.major.to_string(), d.minor.to_string());
                for (op, v) in &d.bytes_by_op {
                    emit(
                        &[
                            ("device", &d.device),
                            ("major", &major),
                            ("minor", &minor),
                            ("operation", op),
                        ],
                        *v as f64,
                    );
                }
            }
        }),
    },
    ContainerFamily {
        name: "container_processes",
        help: "Number of processes running inside the container.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| num(c.processes.processes)),
    },
    ContainerFamily {
        name: "container_threads",
        help: "Number of threads running inside the container",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| num(c.processes.threads)),
    },
    ContainerFamily {
        name: "container_threads_max",
        help: "Maximum number of threads allowed inside the container, infinity if value is zero",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| limit(c.processes.threads_max)),
    },
    ContainerFamily {
        name: "container_pressure_cpu_stalled_seconds_total",
        help: "Total time duration no tasks in the container could make progress due to cpu congestion.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| {
            c.pressure
                .cpu
                .and_then(|p| p.full_us)
                .map(|us| us as f64 / 1e6)
        }),
    },
    ContainerFamily {
        name: "container_pressure_cpu_waiting_seconds_total",
        help: "Total time duration tasks in the container have waited due to cpu congestion.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| c.pressure.cpu.map(|p| p.some_us as f64 / 1e6)),
    },
    ContainerFamily {
        name: "container_pressure_memory_stalled_seconds_total",
        help: "Total time duration no tasks in the container could make progress due to memory congestion.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| {
            c.pressure
                .memory
                .and_then(|p| p.full_us)
                .map(|us| us as f64 / 1e6)
        }),
    },
    ContainerFamily {
        name: "container_pressure_memory_waiting_seconds_total",
        help: "Total time duration tasks in the container have waited due to memory congestion.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| c.pressure.memory.map(|p| p.some_us as f64 / 1e6)),
    },
    ContainerFamily {
        name: "container_pressure_io_stalled_seconds_total",
        help: "Total time duration no tasks in the container could make progress due to io congestion.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| {
            c.pressure
                .io
                .and_then(|p| p.full_us)
                .map(|us| us as f64 / 1e6)
        }),
    },
    ContainerFamily {
        name: "container_pressure_io_waiting_seconds_total",
        help: "Total time duration tasks in the container have waited due to io congestion.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| c.pressure.io.map(|p| p.some_us as f64 / 1e6)),
    },
];

/// Load averages and thread states (`cpuLoad`).
pub static TASKS: &[ContainerFamily] = &[
    ContainerFamily {
        name: "container_cpu_load_average_10s",
        help: "Value of container cpu load average over the last 10 seconds.",
        kind: Kind::Gauge,
        extra: &[],
        // Thousandths of a thread, as cAdvisor serves it (its "milliLoad").
        value: Value::One(|c| c.tasks.map(|t| t.load_milli as f64)),
    },
    ContainerFamily {
        name: "container_cpu_load_d_average_10s",
        help: "Value of container cpu load.d average over the last 10 seconds.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| c.tasks.map(|t| t.load_d_milli as f64)),
    },
    ContainerFamily {
        name: "container_tasks_state",
        help: "Number of tasks in given state",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::Many(|c, emit| {
            let Some(t) = c.tasks else { return };
            let s = t.states;
            for (state, n) in [
                ("sleeping", s.sleeping),
                ("running", s.running),
                ("stopped", s.stopped),
                ("uninterruptible", s.uninterruptible),
                // See cgroup::tasks: what taskstats counts here, /proc does not show.
                ("iowaiting", 0),
            ] {
                emit(&[("state", state)], n as f64);
            }
        }),
    },
];

/// When a cgroup was seen last, and when it started.
pub static LIFETIME: &[ContainerFamily] = &[
    ContainerFamily {
        name: "container_last_seen",
        help: "Last time a container was seen by the exporter",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| Some(c.seen_at)),
    },
    ContainerFamily {
        name: "container_start_time_seconds",
        help: "Start time of the container since unix epoch in seconds.",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| c.start_time),
    },
];

/// Node-level families (labels `boot_id`, `machine_id`, `system_uuid`, as cAdvisor's).
pub struct MachineFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub value: fn(&MachineInfo) -> Option<u64>,
}

pub static MACHINE_FAMILIES: &[MachineFamily] = &[
    MachineFamily {
        name: "machine_cpu_cores",
        help: "Number of CPU cores on the machine.",
        value: |m| m.cores,
    },
    MachineFamily {
        name: "machine_cpu_physical_cores",
        help: "Number of physical CPU cores on the machine.",
        value: |m| m.physical_cores,
    },
    MachineFamily {
        name: "machine_cpu_sockets",
        help: "Number of CPU sockets on the machine.",
        value: |m| m.sockets,
    },
    MachineFamily {
        name: "machine_memory_bytes",
        help: "Amount of memory installed on the machine.",
        value: |m| m.memory_bytes,
    },
    MachineFamily {
        name: "machine_swap_bytes",
        help: "Amount of swap memory available on the machine.",
        value: |m| m.swap_bytes,
    },
];

/// Series of an agent family: owned label pairs and the value.
pub type AgentSeries = Vec<(Vec<(&'static str, String)>, f64)>;

/// The agent's own families: one series each, labels given by the getter.
pub struct AgentFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub series: fn(&AgentStats) -> AgentSeries,
}

fn per_resolver(a: &AgentStats, value: fn(&crate::identity::ResolverStats) -> f64) -> AgentSeries {
    a.identity
        .iter()
        .map(|r| (vec![("resolver", r.resolver.to_string())], value(r)))
        .collect()
}

fn per_receiver(a: &AgentStats, value: fn(&crate::push::TargetStats) -> f64) -> AgentSeries {
    a.push
        .iter()
        .map(|t| (vec![("url", t.url.clone())], value(t)))
        .collect()
}

fn one(v: f64) -> AgentSeries {
    vec![(Vec::new(), v)]
}

/// The sizable maps' figures, in the order cpu_ns, net_traffic, sched.
fn maps(values: [u64; 3]) -> AgentSeries {
    ["cpu_ns", "net_traffic", "sched"]
        .into_iter()
        .zip(values)
        .map(|(m, v)| (vec![("map", m.to_string())], v as f64))
        .collect()
}

fn cpu_map(v: f64) -> AgentSeries {
    vec![(vec![("map", "cpu_ns".to_string())], v)]
}

/// Every agent family, in the order they are written: the kinds' own health after the agent's.
pub fn agent_families() -> impl Iterator<Item = &'static AgentFamily> {
    std::iter::once(AGENT)
        .chain(sources::AGENT_FAMILIES.iter().copied())
        .flatten()
}

static AGENT: &[AgentFamily] = &[
    // cAdvisor's name, help and labels: dashboards' version tables read it. cadvisorVersion is
    // nodetel's (as the API's `cadvisor_version`); no revision is built in.
    AgentFamily {
        name: "cadvisor_version_info",
        help: "A metric with a constant '1' value labeled by kernel version, OS version, docker version, cadvisor version & cadvisor revision.",
        kind: Kind::Gauge,
        series: |a| {
            vec![(
                vec![
                    ("cadvisorRevision", String::new()),
                    ("cadvisorVersion", crate::api::json::cadvisor_version()),
                    ("dockerVersion", a.versions.docker.clone()),
                    ("kernelVersion", a.versions.kernel.clone()),
                    ("osVersion", a.versions.os.clone()),
                ],
                1.0,
            )]
        },
    },
    AgentFamily {
        name: "nodetel_build_info",
        help: "Build of the running nodetel agent; always 1.",
        kind: Kind::Gauge,
        series: |_| {
            vec![(
                vec![("version", env!("CARGO_PKG_VERSION").to_string())],
                1.0,
            )]
        },
    },
    AgentFamily {
        name: "nodetel_ebpf_program_attached",
        help: "1 when an eBPF program is loaded and attached, 0 when this kernel refused it (its metrics are then absent; /healthz says why).",
        kind: Kind::Gauge,
        series: |a| {
            let up = a.programs_attached.iter().map(|p| (*p, 1.0));
            let down = a.programs_not_attached.iter().map(|n| (n.program, 0.0));
            up.chain(down)
                .map(|(p, v)| (vec![("program", p.to_string())], v))
                .collect()
        },
    },
    AgentFamily {
        name: "nodetel_ebpf_map_entries",
        help: "Entries in an eBPF map at the last drain.",
        kind: Kind::Gauge,
        series: |a| maps([a.cpu_map_entries, a.net_map_entries, a.sched_map_entries]),
    },
    AgentFamily {
        name: "nodetel_ebpf_map_capacity",
        help: "Maximum entries of an eBPF map (set with --cpu-map-entries, --net-map-entries and --sched-map-entries).",
        kind: Kind::Gauge,
        series: |a| maps([a.cpu_map_capacity, a.net_map_capacity, a.sched_map_capacity]),
    },
    AgentFamily {
        name: "nodetel_ebpf_map_full_drops_total",
        help: "Updates refused by the kernel because an eBPF map was full.",
        kind: Kind::Counter,
        series: |a| cpu_map(a.kernel.cpu_map_full as f64),
    },
    AgentFamily {
        name: "nodetel_ebpf_map_full_lost_cpu_seconds_total",
        help: "CPU time that could not be attributed to a cgroup because the map was full.",
        kind: Kind::Counter,
        series: |a| one(a.kernel.cpu_map_full_ns as f64 / NS_PER_S),
    },
    AgentFamily {
        name: "nodetel_ebpf_map_entries_forgotten_total",
        help: "Map entries deleted because their cgroup was removed, or (net_traffic) their device or network namespace.",
        kind: Kind::Counter,
        series: |a| {
            vec![
                (
                    vec![("map", "cpu_ns".to_string())],
                    a.map_entries_forgotten as f64,
                ),
                (
                    vec![("map", "oom_kills".to_string())],
                    a.oom_entries_forgotten as f64,
                ),
                (
                    vec![("map", "net_traffic".to_string())],
                    a.net_entries_forgotten as f64,
                ),
                (
                    vec![("map", "sched".to_string())],
                    a.sched_entries_forgotten as f64,
                ),
            ]
        },
    },
    AgentFamily {
        name: "nodetel_ebpf_task_cgroup_read_failures_total",
        help: "Context switches whose incoming task's cgroup could not be read in the kernel.",
        kind: Kind::Counter,
        series: |a| one(a.kernel.cgroup_read_failed as f64),
    },
    AgentFamily {
        name: "nodetel_ebpf_unmatched_switches_total",
        help: "Switch-outs of a task that the kernel switched in without firing sched_switch; its slice is charged from the scheduler's runtime counter instead.",
        kind: Kind::Counter,
        series: |a| one(a.kernel.state_mismatch as f64),
    },
    AgentFamily {
        name: "nodetel_ebpf_unmatched_switch_cpu_seconds_total",
        help: "CPU time charged at unmatched switch-outs from the task's own runtime counter (the part of such a slice that cannot be timed exactly).",
        kind: Kind::Counter,
        series: |a| one(a.kernel.state_mismatch_ns as f64 / 1e9),
    },
    AgentFamily {
        name: "nodetel_ebpf_stale_tick_switches_total",
        help: "Switch-outs at which the once-per-tick clock was more than 20 ms behind (jiffies lagging, as under emulation), so the precise clock was read to bound the runtime delta.",
        kind: Kind::Counter,
        series: |a| one(a.kernel.tick_stale as f64),
    },
    AgentFamily {
        name: "nodetel_ebpf_runtime_clamped_switches_total",
        help: "Switch-outs whose task runtime delta exceeded the time since its switch-in by the precise clock: the elapsed time was charged instead (a clock or BTF offset problem; 0 expected).",
        kind: Kind::Counter,
        series: |a| one(a.kernel.runtime_clamped as f64),
    },
    AgentFamily {
        name: "nodetel_ebpf_runtime_clamped_cpu_seconds_total",
        help: "CPU time not charged at clamped switch-outs (runtime delta minus elapsed time).",
        kind: Kind::Counter,
        series: |a| one(a.kernel.runtime_clamped_ns as f64 / 1e9),
    },
    AgentFamily {
        name: "nodetel_ebpf_context_switches_total",
        help: "Context switches seen by the sched_switch program.",
        kind: Kind::Counter,
        series: |a| one(a.kernel.switches as f64),
    },
    AgentFamily {
        name: "nodetel_ebpf_oom_kills_total",
        help: "OOM kills seen by the kernel programs (victim marked right after the OOM killer's SIGKILL).",
        kind: Kind::Counter,
        series: |a| one(a.kernel.oom_kills as f64),
    },
    AgentFamily {
        name: "nodetel_ebpf_oom_records_lost_total",
        help: "OOM kill records lost because the ring buffer was full (the per-container counts stay exact).",
        kind: Kind::Counter,
        series: |a| one(a.kernel.oom_events_lost as f64),
    },
    AgentFamily {
        name: "nodetel_ebpf_oom_uncounted_total",
        help: "OOM kills that could not be counted for a container (map full or victim's cgroup unreadable).",
        kind: Kind::Counter,
        series: |a| one(a.kernel.oom_uncounted as f64),
    },
    AgentFamily {
        name: "nodetel_ebpf_oom_marked_without_kill_total",
        help: "OOM victims marked without a SIGKILL from the OOM killer (exiting tasks given memory reserves; not kills).",
        kind: Kind::Counter,
        series: |a| one(a.kernel.oom_marked_only as f64),
    },
    AgentFamily {
        name: "nodetel_ebpf_program_run_seconds_total",
        help: "Time the kernel spent running each nodetel eBPF program (only with --bpf-stats).",
        kind: Kind::Counter,
        series: |a| {
            a.program_stats
                .iter()
                .map(|p| {
                    (
                        vec![("program", p.program.to_string())],
                        p.run_ns as f64 / NS_PER_S,
                    )
                })
                .collect()
        },
    },
    AgentFamily {
        name: "nodetel_ebpf_program_runs_total",
        help: "Runs of each nodetel eBPF program (only with --bpf-stats); run seconds / runs is the cost per event.",
        kind: Kind::Counter,
        series: |a| {
            a.program_stats
                .iter()
                .map(|p| (vec![("program", p.program.to_string())], p.runs as f64))
                .collect()
        },
    },
    AgentFamily {
        name: "nodetel_ebpf_sched_uncounted_total",
        help: "Switch-ins whose run period or wait could not be counted because a scheduler map was full.",
        kind: Kind::Counter,
        series: |a| one(a.kernel.sched_map_full as f64),
    },
    AgentFamily {
        name: "nodetel_network_namespaces",
        help: "Network namespaces whose device counters the last pass read (once each).",
        kind: Kind::Gauge,
        series: |a| one(a.network.namespaces as f64),
    },
    AgentFamily {
        name: "nodetel_network_device_index_lookups_total",
        help: "Device index lookups of a network namespace (when its devices change, or traffic uses an index not looked up).",
        kind: Kind::Counter,
        series: |a| one(a.network.index_lookups as f64),
    },
    AgentFamily {
        name: "nodetel_network_unindexed_devices",
        help: "Devices whose index no file of their namespace gave at the last pass: their traffic is shown as interface=\"ifindex:N\".",
        kind: Kind::Gauge,
        series: |a| one(a.network.unindexed_devices as f64),
    },
    AgentFamily {
        name: "nodetel_network_namespace_errors_total",
        help: "Network namespaces that could not be read or looked into (vanished, or no privilege).",
        kind: Kind::Counter,
        series: |a| one(a.network.errors as f64),
    },
    AgentFamily {
        name: "nodetel_fs_usage_layers",
        help: "Container writable layers found (filesystem usage).",
        kind: Kind::Gauge,
        series: |a| one(a.fs_usage.layers as f64),
    },
    AgentFamily {
        name: "nodetel_fs_usage_walks_total",
        help: "Writable layer walks.",
        kind: Kind::Counter,
        series: |a| one(a.fs_usage.walks as f64),
    },
    AgentFamily {
        name: "nodetel_fs_usage_walk_errors_total",
        help: "Layer walks that could not open the layer.",
        kind: Kind::Counter,
        series: |a| one(a.fs_usage.errors as f64),
    },
    AgentFamily {
        name: "nodetel_fs_usage_incomplete_walks_total",
        help: "Layer walks that counted a lower bound (entries refused, too deep or over budget).",
        kind: Kind::Counter,
        series: |a| one(a.fs_usage.incomplete as f64),
    },
    AgentFamily {
        name: "nodetel_fs_usage_walk_entries_total",
        help: "Entries examined by layer walks.",
        kind: Kind::Counter,
        series: |a| one(a.fs_usage.entries as f64),
    },
    AgentFamily {
        name: "nodetel_fs_usage_walk_seconds_total",
        help: "Time spent in layer walks.",
        kind: Kind::Counter,
        series: |a| one(a.fs_usage.seconds),
    },
    AgentFamily {
        name: "nodetel_fs_usage_oldest_figure_seconds",
        help: "Age of the oldest filesystem usage figure served.",
        kind: Kind::Gauge,
        series: |a| one(a.fs_usage.oldest_seconds),
    },
    AgentFamily {
        name: "nodetel_ebpf_traffic_uncounted_packets_total",
        help: "Packets not counted for a container because the traffic map was full.",
        kind: Kind::Counter,
        series: |a| one(a.kernel.net_map_full as f64),
    },
    AgentFamily {
        name: "nodetel_ebpf_traffic_uncounted_bytes_total",
        help: "Bytes of the packets not counted because the traffic map was full.",
        kind: Kind::Counter,
        series: |a| one(a.kernel.net_map_full_bytes as f64),
    },
    AgentFamily {
        name: "nodetel_last_collection_timestamp_seconds",
        help: "Unix time at which the served figures were drained from the kernel.",
        kind: Kind::Gauge,
        series: |a| {
            let t = a
                .taken_at
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            one(t.as_secs_f64())
        },
    },
    AgentFamily {
        name: "nodetel_drain_duration_seconds",
        help: "Time the last pass spent reading the eBPF maps.",
        kind: Kind::Gauge,
        series: |a| one(a.drain_seconds),
    },
    AgentFamily {
        name: "nodetel_collection_duration_seconds",
        help: "Time the last collection pass took (maps, cgroupfs, snapshot and rendering).",
        kind: Kind::Gauge,
        series: |a| one(a.collection_seconds),
    },
    AgentFamily {
        name: "nodetel_drain_errors_total",
        help: "Collection passes that could not read the eBPF maps.",
        kind: Kind::Counter,
        series: |a| one(a.drain_errors as f64),
    },
    AgentFamily {
        name: "nodetel_panics_total",
        help: "Panics caught in a collection pass, an HTTP request or a runtime resolver; the agent went on (the pass or request was lost). /healthz names the last cause.",
        kind: Kind::Counter,
        series: |a| {
            crate::panics::Place::ALL
                .iter()
                .map(|p| {
                    (
                        vec![("where", p.label().to_string())],
                        a.panics.counts[*p as usize] as f64,
                    )
                })
                .collect()
        },
    },
    AgentFamily {
        name: "nodetel_allocator_allocated_bytes",
        help: "Bytes in the agent's live heap allocations, as its allocator (jemalloc) counts them at the end of the last pass.",
        kind: Kind::Gauge,
        series: |a| a.allocator.map_or(vec![], |m| one(m.allocated as f64)),
    },
    AgentFamily {
        name: "nodetel_allocator_resident_bytes",
        help: "Bytes of memory pages the agent's allocator (jemalloc) holds: live allocations, freed memory not yet returned, its own metadata; an upper bound (pages mapped, perhaps never touched).",
        kind: Kind::Gauge,
        series: |a| a.allocator.map_or(vec![], |m| one(m.resident as f64)),
    },
    AgentFamily {
        name: "nodetel_http_open_connections",
        help: "HTTP connections open at the last pass.",
        kind: Kind::Gauge,
        series: |a| one(a.http.open as f64),
    },
    AgentFamily {
        name: "nodetel_http_connections_refused_total",
        help: "Connections closed at once because --http-max-connections were open.",
        kind: Kind::Counter,
        series: |a| one(a.http.refused as f64),
    },
    AgentFamily {
        name: "nodetel_http_queue_timeouts_total",
        help: "Scrapes (after 10 s) and API requests (after 120 s) answered 503 because they waited that long for their turn.",
        kind: Kind::Counter,
        series: |a| one(a.http.queue_timeouts as f64),
    },
    AgentFamily {
        name: "nodetel_http_tls_handshake_failures_total",
        help: "Connections to the TLS port (with --web-config-file) that ended before a request: failed or timed-out handshakes (unknown client CA, no client certificate), and plain HTTP sent to it.",
        kind: Kind::Counter,
        series: |a| {
            if a.http.web_config.is_none() {
                return vec![];
            }
            vec![
                (
                    vec![("reason", "handshake".to_string())],
                    a.http.tls_failures.saturating_sub(a.http.plain_on_tls) as f64,
                ),
                (
                    vec![("reason", "plain_http".to_string())],
                    a.http.plain_on_tls as f64,
                ),
            ]
        },
    },
    AgentFamily {
        name: "nodetel_http_auth_failures_total",
        help: "Requests refused by --web-config-file's basic_auth_users: no credentials (401), wrong user or password (401), or too many uncached password checks at once (429).",
        kind: Kind::Counter,
        series: |a| {
            if a.http.web_config.is_none() {
                return vec![];
            }
            vec![
                (
                    vec![("reason", "missing".to_string())],
                    a.http.auth_missing as f64,
                ),
                (
                    vec![("reason", "denied".to_string())],
                    a.http.auth_denied as f64,
                ),
                (
                    vec![("reason", "throttled".to_string())],
                    a.http.auth_throttled as f64,
                ),
            ]
        },
    },
    AgentFamily {
        name: "nodetel_http_rate_limited_total",
        help: "Requests answered 429 by --web-config-file's rate_limit.",
        kind: Kind::Counter,
        series: |a| match a.http.web_config {
            Some(_) => one(a.http.rate_limited as f64),
            None => vec![],
        },
    },
    AgentFamily {
        name: "nodetel_web_config_reloads_total",
        help: "Reloads of --web-config-file after it or a file it names changed, by result; a failed reload keeps the last good configuration.",
        kind: Kind::Counter,
        series: |a| match &a.http.web_config {
            Some(w) => vec![
                (vec![("result", "ok".to_string())], w.reloads as f64),
                (
                    vec![("result", "failed".to_string())],
                    w.reload_failures as f64,
                ),
            ],
            None => vec![],
        },
    },
    AgentFamily {
        name: "nodetel_web_config_last_reload_successful",
        help: "1 when the last load of --web-config-file succeeded, 0 when the running configuration is older than the files (see the log for why).",
        kind: Kind::Gauge,
        series: |a| match &a.http.web_config {
            Some(w) => one(if w.valid { 1.0 } else { 0.0 }),
            None => vec![],
        },
    },
    AgentFamily {
        name: "nodetel_cgroups",
        help: "cgroups found in the last walk of the cgroup v2 hierarchy.",
        kind: Kind::Gauge,
        series: |a| one(a.cgroups as f64),
    },
    AgentFamily {
        name: "nodetel_cgroupfs_read_errors_total",
        help: "cgroupfs files that existed but could not be read or parsed.",
        kind: Kind::Counter,
        series: |a| one(a.cgroupfs_errors as f64),
    },
    AgentFamily {
        name: "nodetel_cgroupfs_open_files",
        help: "cgroupfs files held open between passes and re-read in place.",
        kind: Kind::Gauge,
        series: |a| one(a.cgroupfs_files_held as f64),
    },
    AgentFamily {
        name: "nodetel_cgroupfs_file_opens_total",
        help: "cgroupfs files opened; once every file is held open, only new cgroups add to it.",
        kind: Kind::Counter,
        series: |a| one(a.cgroupfs_files.opens as f64),
    },
    AgentFamily {
        name: "nodetel_cgroupfs_uncached_reads_total",
        help: "cgroupfs reads that opened and closed their file because --cgroupfs-open-files was spent.",
        kind: Kind::Counter,
        series: |a| one(a.cgroupfs_files.uncached_reads as f64),
    },
    AgentFamily {
        name: "nodetel_cgroupfs_quiet_reuses_total",
        help: "Per-cgroup cgroupfs reads saved because the cgroup's tasks had not run since the last pass (see --quiet-cgroup-refresh).",
        kind: Kind::Counter,
        series: |a| one(a.cgroupfs_reused as f64),
    },
    AgentFamily {
        name: "nodetel_task_state_reads_deferred_total",
        help: "Cgroups whose thread states (container_tasks_state) kept the previous pass's figures because the pass had read its budget of 16384 thread states.",
        kind: Kind::Counter,
        series: |a| one(a.task_reads_deferred as f64),
    },
    AgentFamily {
        name: "nodetel_host_processes_unplaced_total",
        help: "Host processes not placed in a cgroup (exited during the scan, unreadable, or past 65536 a pass) where the agent reads each cgroup's processes from the host's procfs because it does not share the host's pid namespace.",
        kind: Kind::Counter,
        series: |a| one(a.host_processes_unplaced as f64),
    },
    AgentFamily {
        name: "nodetel_remote_write_samples_total",
        help: "Samples per remote write receiver by outcome: sent (accepted), retried (a failed attempt: network error, 5xx or 429; counted per attempt), dropped_queue_full (the oldest waiting when the queue or spool was full), dropped_rejected (refused with another 4xx), dropped_spool_error (a batch the spool could not write or read back).",
        kind: Kind::Counter,
        series: |a| {
            let mut out = Vec::new();
            for t in &a.push {
                for (result, v) in [
                    ("sent", t.samples_sent),
                    ("retried", t.samples_retried),
                    ("dropped_queue_full", t.samples_dropped_queue_full),
                    ("dropped_rejected", t.samples_dropped_rejected),
                    ("dropped_spool_error", t.samples_dropped_spool_error),
                ] {
                    out.push((
                        vec![("url", t.url.clone()), ("result", result.to_string())],
                        v as f64,
                    ));
                }
            }
            out
        },
    },
    AgentFamily {
        name: "nodetel_remote_write_queue_bytes",
        help: "Encoded data waiting in memory for a remote write receiver (bounded by --remote-write-queue-bytes; 0 with a spool).",
        kind: Kind::Gauge,
        series: |a| per_receiver(a, |t| if t.spooled { 0.0 } else { t.queue_bytes as f64 }),
    },
    AgentFamily {
        name: "nodetel_remote_write_queue_batches",
        help: "Passes waiting in memory for a remote write receiver (0 with a spool).",
        kind: Kind::Gauge,
        series: |a| {
            per_receiver(a, |t| {
                if t.spooled {
                    0.0
                } else {
                    t.queue_batches as f64
                }
            })
        },
    },
    AgentFamily {
        name: "nodetel_remote_write_spool_bytes",
        help: "Encoded data waiting on disk for a remote write receiver (--remote-write-spool-dir, bounded by --remote-write-spool-bytes; 0 without a spool).",
        kind: Kind::Gauge,
        series: |a| per_receiver(a, |t| if t.spooled { t.queue_bytes as f64 } else { 0.0 }),
    },
    AgentFamily {
        name: "nodetel_remote_write_spool_batches",
        help: "Passes waiting on disk for a remote write receiver (0 without a spool).",
        kind: Kind::Gauge,
        series: |a| {
            per_receiver(a, |t| {
                if t.spooled {
                    t.queue_batches as f64
                } else {
                    0.0
                }
            })
        },
    },
    AgentFamily {
        name: "nodetel_remote_write_oldest_unsent_timestamp_seconds",
        help: "Unix time of the oldest sample waiting for a remote write receiver (0 when none waits); time() minus it is how far push is behind.",
        kind: Kind::Gauge,
        series: |a| per_receiver(a, |t| t.oldest_unsent),
    },
    AgentFamily {
        name: "nodetel_remote_write_unreadable_lines_total",
        help: "Exposition lines the pusher could not read back into series (0 expected).",
        kind: Kind::Counter,
        series: |a| per_receiver(a, |t| t.lines_unreadable as f64),
    },
    AgentFamily {
        name: "nodetel_cgroup_walks_saved_total",
        help: "Passes that reused the last cgroup tree walk because the kernel reported no cgroup made, removed or renamed since.",
        kind: Kind::Counter,
        series: |a| one(a.walks_saved as f64),
    },
    AgentFamily {
        name: "nodetel_cgroup_walk_skipped_total",
        help: "cgroup directories that vanished or could not be read during a walk.",
        kind: Kind::Counter,
        series: |a| one(a.walk_skipped as f64),
    },
    AgentFamily {
        name: "nodetel_identity_resolver_up",
        help: "1 while a runtime resolver is connected and answering; 0 while its socket is absent or the runtime unreachable.",
        kind: Kind::Gauge,
        series: |a| per_resolver(a, |r| if r.up { 1.0 } else { 0.0 }),
    },
    AgentFamily {
        name: "nodetel_identity_errors_total",
        help: "Failed connections and requests of a runtime resolver whose socket exists (an absent socket is not counted).",
        kind: Kind::Counter,
        series: |a| per_resolver(a, |r| r.errors as f64),
    },
    AgentFamily {
        name: "nodetel_pod_info",
        help: "One series per pod the local kubelet runs, with its controlling owner (a Deployment for a Deployment's ReplicaSet); join on namespace and pod. Needs --kubelet-url.",
        kind: Kind::Gauge,
        series: |a| {
            a.pods
                .iter()
                .map(|p| {
                    let labels = vec![
                        ("namespace", p.namespace.clone()),
                        ("node", p.node.clone()),
                        ("owner_kind", p.owner_kind.clone()),
                        ("owner_name", p.owner_name.clone()),
                        ("pod", p.name.clone()),
                        ("uid", p.uid.clone()),
                    ];
                    (labels, 1.0)
                })
                .collect()
        },
    },
    AgentFamily {
        name: "nodetel_identity_containers",
        help: "Containers a runtime resolver knows (running or not); pods for the kubelet.",
        kind: Kind::Gauge,
        series: |a| per_resolver(a, |r| r.containers as f64),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_valid() {
        let mut names: Vec<&str> = container_families()
            .map(|f| f.name)
            .chain(agent_families().map(|f| f.name))
            .chain(MACHINE_FAMILIES.iter().map(|f| f.name))
            .collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate family name");
        for name in names {
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{name}"
            );
        }
    }
}
