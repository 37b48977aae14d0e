//! One cgroup's figures as the cgroupfs readers (`cgroup/`, `fs_usage/`) find them.
use std::sync::Arc;

/// Cumulative CPU accounting of one cgroup, from cgroupfs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// `usage_usec` (v2) in ns. The exported usage is eBPF's; this is the kernel's own figure.
    pub usage_ns: Option<u64>,
    pub user_ns: Option<u64>,
    pub system_ns: Option<u64>,
    pub throttling: Option<Throttling>,
}
/// CPU limits (cAdvisor's `spec.cpu`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuSpec {
    /// CFS shares; on v2 converted from `cpu.weight` as runc and cAdvisor do.
    pub shares: Option<u64>,
    pub period_us: Option<u64>,
    /// `None` when unlimited (`max` / -1).
    pub quota_us: Option<u64>,
    /// The CPUs its tasks may run on, as the kernel lists them (`0-3,6`): v2
    /// `cpuset.cpus.effective`, v1 `cpuset.cpus` (cAdvisor's `spec.cpu.mask`).
    pub mask: Option<std::sync::Arc<str>>,
}

/// One device's cumulative I/O for a cgroup and its descendants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceIo {
    pub major: u32,
    pub minor: u32,
    /// `/dev/<name>` from sysfs, filled by the caller.
    pub device: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
    /// Bytes per operation as cAdvisor names them (`Read`, `Write`, and on v1 also `Sync`,
    /// `Async`, `Discard`, `Total`): `container_blkio_device_usage_total`.
    pub bytes_by_op: Vec<(&'static str, u64)>,
}

/// One cgroup's memory figures, in bytes or events. `None` where this kernel or hierarchy does
/// not provide the figure: the family is then absent, never a made-up zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub usage: Option<u64>,
    pub max_usage: Option<u64>,
    pub failcnt: Option<u64>,
    pub cache: Option<u64>,
    pub rss: Option<u64>,
    pub swap: Option<u64>,
    pub mapped_file: Option<u64>,
    pub kernel: Option<u64>,
    pub active_file: Option<u64>,
    pub inactive_file: Option<u64>,
    /// Page faults of this cgroup alone (`container` scope) and of its subtree (`hierarchy`).
    pub pgfault: Option<u64>,
    pub pgmajfault: Option<u64>,
    pub pgfault_hierarchy: Option<u64>,
    pub pgmajfault_hierarchy: Option<u64>,
    /// v2 `memory.events`.
    pub events_high: Option<u64>,
    pub events_max: Option<u64>,
    /// v2-only `memory.stat` figures.
    pub file_dirty: Option<u64>,
    pub file_writeback: Option<u64>,
    pub pgscan: Option<u64>,
    pub pgsteal: Option<u64>,
    pub workingset_refault_file: Option<u64>,
    pub workingset_refault_anon: Option<u64>,
}
/// Memory limits (cAdvisor's `spec.memory`); `u64::MAX` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemorySpec {
    pub limit: Option<u64>,
    pub swap_limit: Option<u64>,
    pub reservation: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessStats {
    /// Processes in this cgroup itself (lines of `cgroup.procs`), as cAdvisor counts them.
    pub processes: Option<u64>,
    /// One of those processes (the first listed): its namespaces are the cgroup's.
    pub first_pid: Option<u32>,
    /// Tasks (threads) in the subtree: `pids.current`.
    pub threads: Option<u64>,
    /// `pids.max`; `u64::MAX` when unlimited.
    pub threads_max: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pressure {
    pub some_us: u64,
    /// Absent for `cpu.pressure` on kernels before 5.13.
    pub full_us: Option<u64>,
    pub some_avg: Averages,
    pub full_avg: Option<Averages>,
}
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PressureStats {
    pub cpu: Option<Pressure>,
    pub memory: Option<Pressure>,
    pub io: Option<Pressure>,
}

/// One cgroup's task states and the load averages made of them, as served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskLoad {
    pub states: TaskStates,
    /// Running threads, smoothed (thousandths: cAdvisor's `load_average`).
    pub load_milli: u64,
    /// Uninterruptible threads, smoothed (thousandths: `load_d_average`).
    pub load_d_milli: u64,
}
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskStates {
    pub running: u64,
    pub sleeping: u64,
    pub stopped: u64,
    pub uninterruptible: u64,
}

/// One filesystem as a container sees it: cAdvisor's `FsStats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsStats {
    /// The device as the mount table names it (`/dev/vda1`).
    pub device: Arc<str>,
    pub major: u32,
    pub minor: u32,
    /// The filesystem's size (cAdvisor's `capacity`, `container_fs_limit_bytes`).
    pub capacity: u64,
    /// A container: its writable layer and its runtime's files for it (logs, config); the root:
    /// the filesystem's used bytes.
    pub usage: u64,
    /// A container: its writable layer alone.
    pub base_usage: u64,
    /// Bytes an unprivileged writer may still allocate on the filesystem.
    pub available: u64,
    /// A container: inodes its writable layer holds (cAdvisor's meaning); the root: the
    /// filesystem's inode count.
    pub inodes: u64,
    pub inodes_free: u64,
    /// The device's `/proc/diskstats` line: reads, reads merged, sectors read, read ms, writes,
    /// writes merged, sectors written, write ms, I/Os in flight, I/O ms, weighted I/O ms.
    pub disk: [u64; 11],
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
    /// Periods in which the cgroup ran past its quota on saved-up burst (`cpu.max.burst`, v1
    /// `cpu.cfs_burst_us`) and the time it did, from 5.14: 0 before, when no burst can happen.
    pub bursts: u64,
    pub burst_ns: u64,
}

/// `avg10`, `avg60`, `avg300` in hundredths of a percent: the kernel prints `%lu.%02lu`, so
/// these are its figures exactly, at most 10000.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Averages(pub [u16; 3]);
