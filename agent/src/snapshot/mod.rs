//! The snapshot: everything one collection pass learned, immutable once built. The HTTP layer
//! serves it (and its pre-rendered exposition) without touching the kernel or cgroupfs. This is
//! the model: it imports no reader (the readers fill its types; `cgroup`, `health`, `identity`
//! and `machine` below hold the ones they share with it).
use std::time::SystemTime;

pub mod cgroup;
pub mod health;
pub mod identity;
pub mod machine;

use cgroup::{CpuSpec, CpuStats, DeviceIo, MemorySpec, MemoryStats, PressureStats, ProcessStats};
pub use identity::Identity;
use machine::MachineInfo;

/// One cgroup's figures.
#[derive(Clone, Debug, Default)]
pub struct ContainerSample {
    pub cgroup_id: u64,
    /// Path relative to the hierarchy root: the `id` label.
    pub path: String,
    /// Shared with the namer's cache: the same names serve every pass until something changes.
    pub identity: std::sync::Arc<Identity>,
    /// Hierarchical on-CPU ns from eBPF (committed + in flight).
    pub cpu_usage_ns: Option<u64>,
    pub cpu: CpuStats,
    pub cpu_spec: CpuSpec,
    pub memory: MemoryStats,
    pub memory_spec: MemorySpec,
    pub processes: ProcessStats,
    /// Thread states and load averages (`cpuLoad`); `None` when the kind is off or the agent
    /// cannot see the host's pids.
    pub tasks: Option<cgroup::TaskLoad>,
    /// Per-device block I/O; `None` where this host keeps none for the cgroup.
    pub io: Option<Vec<DeviceIo>>,
    pub pressure: PressureStats,
    /// Unix seconds: the cgroup directory's age when first seen (cAdvisor's creation time).
    pub start_time: Option<f64>,
    /// Unix seconds of the pass that saw it (`container_last_seen`).
    pub seen_at: f64,
    /// Its tasks have not run since the last pass, and its cgroupfs figures are that pass's
    /// (see `--quiet-cgroup-refresh`): nothing that needs a running task can have changed.
    pub quiet: bool,
    /// OOM kills whose victim was in this cgroup itself (not its descendants), as cAdvisor counts
    /// them; `None` when the OOM programs are not attached or the kind is disabled.
    pub oom_kills: Option<u64>,
    /// Interfaces with this cgroup's traffic (see `net` for who gets which figures); `None` when
    /// the network kind is off.
    pub network: Option<Vec<InterfaceStats>>,
    /// Run-queue time and run periods, hierarchical like `cpu_usage_ns`; `None` when the
    /// scheduler programs are not attached or the `sched` kind is off.
    pub schedstat: Option<Schedstat>,
    /// Run-queue waits of this cgroup's own tasks; `None` when it has had none (a pod cgroup).
    pub runqueue_latency: Option<RunqueueLatency>,
    /// Block I/O latency per disk and operation, of the bios charged to this cgroup itself (not
    /// its descendants); `None` when the `blkio` kind is off or its programs are not attached.
    pub blkio: Option<Vec<BlkioLatency>>,
    /// TCP health of the sockets charged to this cgroup (and to cgroups folded into it); `None`
    /// when the `tcp_health` kind is off or its programs are not attached.
    pub tcp: Option<TcpHealth>,
    /// Filesystems: a container's writable layer, the root's host filesystems; `None` when the
    /// `disk` kind is off or nothing was found (yet: a layer's first walk takes a moment).
    pub filesystems: Option<Vec<cgroup::FsStats>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Schedstat {
    pub runqueue_ns: u64,
    pub run_periods: u64,
}

/// A log2 histogram of run-queue waits, as the kernel program bins them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunqueueLatency {
    /// Waits per bucket: bucket b holds waits of at most 2^b µs, the last one the rest.
    pub buckets: Vec<u64>,
    pub sum_ns: u64,
    pub count: u64,
}

/// One cgroup's completed bios on one disk for one operation (cumulative).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlkioLatency {
    pub major: u32,
    pub minor: u32,
    /// `/dev/<name>`, as the other per-device figures name it.
    pub device: String,
    /// `read`, `write`, `discard` or `flush`.
    pub op: &'static str,
    pub count: u64,
    pub bytes: u64,
    /// Submission to completion, summed.
    pub latency_ns: u64,
    /// The part of `latency_ns` before the bio's request was issued to the driver (queue
    /// time); the rest is service time. 0 on a bio-based device (device-mapper, md).
    pub queue_ns: u64,
    /// Bios per log2 latency bucket (bucket b: under 2^b µs), not cumulative.
    pub buckets: Vec<u64>,
}

/// One cgroup's TCP events (cumulative).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpHealth {
    /// Segments retransmitted, as the kernel's `TcpRetransSegs` counts them.
    pub retransmits: u64,
    pub resets_sent: u64,
    pub resets_received: u64,
    /// Connects by result: established, refused (a reset answered the SYN), timed out (the
    /// SYN retries ran out), other (unreachable, closed before an answer, ...).
    pub connects_ok: u64,
    pub connects_refused: u64,
    pub connects_timeout: u64,
    pub connects_other: u64,
    /// Connections accepted by the cgroup's listeners (SYN_RECV to ESTABLISHED).
    pub accepts: u64,
    /// The cgroup's connections in ESTABLISHED now; `None` where the agent could not find the
    /// ones established before it started (not in the host's pid namespace).
    pub established: Option<u64>,
    /// Smoothed round-trip times sampled as connections were established and as they left
    /// ESTABLISHED: per log2 bucket (bucket b: under 2^b µs, not cumulative), their sum and
    /// count. Empty buckets when there was none.
    pub rtt_buckets: Vec<u64>,
    pub rtt_sum_us: u64,
    pub rtt_count: u64,
}

/// The `tcp_health` kind's own figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpKindHealth {
    /// Map entries at the last drain, and its capacity.
    pub map_entries: u64,
    pub map_capacity: u64,
    /// Cumulative, from the kernel: events not counted because the map was full, and events
    /// whose socket's cgroup could not be read.
    pub map_full: u64,
    pub unreadable: u64,
    /// Cumulative: entries deleted because their cgroup was removed.
    pub entries_forgotten: u64,
    /// Cumulative, from the kernel: established connections not counted because the socket map
    /// was full.
    pub established_untracked: u64,
}

/// The `blkio` kind's own figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkioHealth {
    /// Histogram map entries at the last drain, and its capacity.
    pub map_entries: u64,
    pub map_capacity: u64,
    /// Bios in flight at the last pass.
    pub in_flight: u64,
    /// Cumulative: in-flight entries deleted because their completion never came.
    pub lost_completions: u64,
    /// Cumulative, from the kernel: bios of a request-based device completed with no issue time
    /// (their whole latency counted as service).
    pub issue_unseen: u64,
    /// Cumulative, from the kernel: requests with more bios than the program follows (the rest
    /// not counted), bios not counted because the histogram map was full, bios whose cgroup or
    /// disk could not be read, and bios not timed because the in-flight map was full.
    pub beyond_request: u64,
    pub map_full: u64,
    pub unreadable: u64,
    pub in_flight_full: u64,
    /// Histogram entries whose cgroup has no v2 cgroup to be shown under (hybrid hosts), at the
    /// last pass.
    pub unplaced: u64,
    /// Cumulative: entries deleted because their cgroup was removed.
    pub entries_forgotten: u64,
}

/// The agent's own health figures.
#[derive(Clone, Debug)]
pub struct AgentStats {
    /// When the last pass drained the maps.
    pub taken_at: SystemTime,
    pub programs_attached: Vec<&'static str>,
    pub programs_not_attached: Vec<health::NotAttached>,
    pub cpu_map_entries: u64,
    /// Traffic and run-queue histogram map fill at the last drain, and their capacities.
    pub net_map_entries: u64,
    pub net_map_capacity: u64,
    pub sched_map_entries: u64,
    pub sched_map_capacity: u64,
    pub cpu_map_capacity: u64,
    pub kernel: KernelStats,
    pub drain_seconds: f64,
    pub collection_seconds: f64,
    pub cgroups: u64,
    /// Cumulative: cgroupfs files that existed but could not be read or parsed.
    pub cgroupfs_errors: u64,
    /// Cumulative: opens and uncached reads of cgroupfs files.
    pub cgroupfs_files: health::FileCounts,
    /// cgroupfs files held open between passes.
    pub cgroupfs_files_held: u64,
    /// Cumulative: cgroup reads saved because the cgroup was quiet.
    pub cgroupfs_reused: u64,
    /// Cumulative: cgroups whose thread states waited a pass for lack of budget.
    pub task_reads_deferred: u64,
    /// Cumulative: host processes not placed in a cgroup by the procfs scan (see
    /// `cgroup::host_pids`; 0 where the agent shares the host's pid namespace).
    pub host_processes_unplaced: u64,
    /// Each remote write receiver's counts (empty when push is off).
    pub push: Vec<health::TargetStats>,
    /// Cumulative: cgroup directories that vanished during a walk.
    pub walk_skipped: u64,
    /// Cumulative: passes that reused the last walk because no cgroup was made or removed.
    pub walks_saved: u64,
    /// Cumulative: map entries deleted because their cgroup was removed.
    pub map_entries_forgotten: u64,
    /// Cumulative: OOM-count entries deleted because their cgroup was removed.
    pub oom_entries_forgotten: u64,
    /// Cumulative: collection passes that failed to read the kernel maps.
    pub drain_errors: u64,
    /// Cumulative: traffic entries deleted because their cgroup was removed.
    pub net_entries_forgotten: u64,
    /// Per-program run time (`--bpf-stats`), empty when off.
    pub program_stats: Vec<health::ProgramStats>,
    /// Cumulative: scheduler entries deleted because their cgroup was removed.
    pub sched_entries_forgotten: u64,
    pub network: NetStats,
    /// The `blkio` kind's own figures (`None` when it is off or not attached).
    pub blkio: Option<BlkioHealth>,
    /// The `tcp_health` kind's own figures (`None` when it is off or not attached).
    pub tcp: Option<TcpKindHealth>,
    /// The filesystem usage walker's cost and freshness (zero when the `disk` kind is off).
    pub fs_usage: health::WalkStats,
    /// Per runtime resolver, in precedence order (empty when none is configured).
    pub identity: Vec<health::ResolverStats>,
    /// The kubelet's pods (`nodetel_pod_info`); empty without `--kubelet-url`.
    pub pods: std::sync::Arc<Vec<health::PodInfo>>,
    /// Panics caught so far, by place, and the latest cause.
    pub panics: health::PanicCounts,
    /// The HTTP layer's connection counters.
    pub http: health::HttpCounts,
    /// Kernel, OS and Docker versions (`cadvisor_version_info`, the API's `version`).
    pub versions: Versions,
    /// The allocator's live and resident bytes at the end of the pass.
    pub allocator: Option<crate::allocator::AllocatorStats>,
}

/// What `cadvisor_version_info` and the API's `version`/`attributes` report about the software.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Versions {
    pub kernel: String,
    pub os: String,
    pub docker: String,
    pub docker_api: String,
}

impl Default for AgentStats {
    fn default() -> Self {
        AgentStats {
            taken_at: SystemTime::UNIX_EPOCH,
            programs_attached: Vec::new(),
            programs_not_attached: Vec::new(),
            cpu_map_entries: 0,
            net_map_entries: 0,
            net_map_capacity: 0,
            sched_map_entries: 0,
            sched_map_capacity: 0,
            cpu_map_capacity: 0,
            kernel: KernelStats::default(),
            drain_seconds: 0.0,
            collection_seconds: 0.0,
            cgroups: 0,
            cgroupfs_errors: 0,
            cgroupfs_files: Default::default(),
            cgroupfs_files_held: 0,
            cgroupfs_reused: 0,
            task_reads_deferred: 0,
            host_processes_unplaced: 0,
            push: Vec::new(),
            walk_skipped: 0,
            walks_saved: 0,
            map_entries_forgotten: 0,
            oom_entries_forgotten: 0,
            drain_errors: 0,
            net_entries_forgotten: 0,
            sched_entries_forgotten: 0,
            program_stats: Vec::new(),
            network: Default::default(),
            fs_usage: Default::default(),
            blkio: None,
            tcp: None,
            identity: Vec::new(),
            pods: Default::default(),
            panics: Default::default(),
            http: Default::default(),
            versions: Versions::default(),
            allocator: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub containers: Vec<ContainerSample>,
    pub agent: AgentStats,
    pub machine: std::sync::Arc<MachineInfo>,
    /// Which label set container series carry.
    pub labels: std::sync::Arc<LabelMode>,
}

/// Which labels container series carry (see `metrics::labels`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LabelMode {
    #[default]
    Kubelet,
    Standalone {
        /// Runtime label keys to export; `None` exports all (cAdvisor's default).
        whitelist: Option<Vec<String>>,
    },
}

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

/// The network reader's own health figures (cumulative, except `namespaces`).
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
}

/// The programs' own counters, summed over CPUs (cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub cpu_map_full: u64,
    pub cpu_map_full_ns: u64,
    pub cgroup_read_failed: u64,
    /// Context switches seen by the CPU program: from the CPU drain, not the STATS array.
    pub switches: u64,
    pub state_mismatch: u64,
    pub state_mismatch_ns: u64,
    /// Switch-outs whose runtime delta was not trusted, and the ns it exceeded the elapsed time.
    pub runtime_clamped: u64,
    pub runtime_clamped_ns: u64,
    /// Switch-outs whose tick-dated clock was stale (the precise clock read instead).
    pub tick_stale: u64,
    pub oom_kills: u64,
    pub oom_events_lost: u64,
    pub oom_marked_only: u64,
    pub oom_uncounted: u64,
    pub net_map_full: u64,
    pub net_map_full_bytes: u64,
    pub sched_map_full: u64,
    pub cgroup_changes: u64,
}
