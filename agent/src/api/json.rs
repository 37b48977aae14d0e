//! cAdvisor's JSON shapes (info/v1 and info/v2), built from a snapshot and the history.
//!
//! Field names, nesting and units follow cAdvisor's Go structs: CPU in nanoseconds, memory in
//! bytes, PSI totals in microseconds, times in RFC 3339. Go's `omitempty` drops empty strings,
//! zero numbers, empty slices and maps and nil pointers, never a struct value: where cAdvisor's
//! field is a struct, it is written even when all zero, as cAdvisor does.
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::rfc3339;
use crate::{
    history::{Field, Record, Stored, unpack_averages},
    identity::path::Runtime,
    machine::{Cache, MachineInfo},
    snapshot::ContainerSample,
};

/// The TCP counters cAdvisor reports under `tcp_advanced` (the kernel's /proc/net/netstat and
/// snmp names). nodetel does not collect them (cAdvisor's `advtcp` kind, off by default there
/// too), so they are written as zero, as cAdvisor writes them when the kind is off.
#[rustfmt::skip]
const TCP_ADVANCED: &[&str] = &[
    "RtoAlgorithm", "RtoMin", "RtoMax", "MaxConn", "ActiveOpens", "PassiveOpens",
    "AttemptFails", "EstabResets", "CurrEstab", "InSegs", "OutSegs", "RetransSegs", "InErrs",
    "OutRsts", "InCsumErrors", "EmbryonicRsts", "SyncookiesSent", "SyncookiesRecv",
    "SyncookiesFailed", "PruneCalled", "RcvPruned", "OfoPruned", "OutOfWindowIcmps",
    "LockDroppedIcmps", "TW", "TWRecycled", "TWKilled", "TCPTimeWaitOverflow", "TCPTimeouts",
    "TCPSpuriousRTOs", "TCPLossProbes", "TCPLossProbeRecovery", "TCPRenoRecoveryFail",
    "TCPSackRecoveryFail", "TCPRenoFailures", "TCPSackFailures", "TCPLossFailures",
    "DelayedACKs", "DelayedACKLocked", "DelayedACKLost", "ListenOverflows", "ListenDrops",
    "TCPHPHits", "TCPPureAcks", "TCPHPAcks", "TCPRenoRecovery", "TCPSackRecovery",
    "TCPSACKReneging", "TCPFACKReorder", "TCPSACKReorder", "TCPRenoReorder", "TCPTSReorder",
    "TCPFullUndo", "TCPPartialUndo", "TCPDSACKUndo", "TCPLossUndo", "TCPFastRetrans",
    "TCPSlowStartRetrans", "TCPLostRetransmit", "TCPRetransFail", "TCPRcvCollapsed",
    "TCPDSACKOldSent", "TCPDSACKOfoSent", "TCPDSACKRecv", "TCPDSACKOfoRecv", "TCPAbortOnData",
    "TCPAbortOnClose", "TCPAbortOnMemory", "TCPAbortOnTimeout", "TCPAbortOnLinger",
    "TCPAbortFailed", "TCPMemoryPressures", "TCPMemoryPressuresChrono", "TCPSACKDiscard",
    "TCPDSACKIgnoredOld", "TCPDSACKIgnoredNoUndo", "TCPMD5NotFound", "TCPMD5Unexpected",
    "TCPMD5Failure", "TCPSackShifted", "TCPSackMerged", "TCPSackShiftFallback", "TCPBacklogDrop",
    "PFMemallocDrop", "TCPMinTTLDrop", "TCPDeferAcceptDrop", "IPReversePathFilter",
    "TCPReqQFullDoCookies", "TCPReqQFullDrop", "TCPFastOpenActive", "TCPFastOpenActiveFail",
    "TCPFastOpenPassive", "TCPFastOpenPassiveFail", "TCPFastOpenListenOverflow",
    "TCPFastOpenCookieReqd", "TCPSynRetrans", "TCPOrigDataSent", "PAWSActive", "PAWSEstab",
];

#[rustfmt::skip]
const TCP_STATES: &[&str] = &[
    "Established", "SynSent", "SynRecv", "FinWait1", "FinWait2", "TimeWait", "Close",
    "CloseWait", "LastAck", "Listen", "Closing",
];

const UDP_STATES: &[&str] = &["Listen", "Dropped", "RxQueued", "TxQueued"];

fn zeros(keys: &[&str]) -> Value {
    Value::Object(keys.iter().map(|k| (k.to_string(), json!(0))).collect())
}

/// Inserts `v` unless Go's `omitempty` would leave it out.
fn put_nonempty(m: &mut Map<String, Value>, key: &str, v: Value) {
    let empty = match &v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(b) => !b,
    };
    if !empty {
        m.insert(key.to_string(), v);
    }
}

/// Which controllers' figures a cgroup has: cAdvisor's `has_*` flags.
#[derive(Clone, Copy, Debug)]
pub struct Has {
    pub cpu: bool,
    pub memory: bool,
    pub network: bool,
    pub processes: bool,
    pub diskio: bool,
    pub filesystem: bool,
}

impl Has {
    pub fn of(c: &ContainerSample) -> Has {
        Has {
            cpu: c.cpu_usage_ns.is_some() || c.cpu.usage_ns.is_some(),
            memory: c.memory.usage.is_some(),
            network: c.network.is_some(),
            processes: c.processes.processes.is_some() || c.processes.threads.is_some(),
            diskio: c.io.is_some(),
            filesystem: c.filesystems.as_ref().is_some_and(|f| !f.is_empty()),
        }
    }
}

/// The container reference (`id`, `name`, `aliases`, `namespace`): runtime containers get
/// their runtime's namespace and their name and id as aliases, as cAdvisor's handlers do.
pub struct Reference {
    pub id: String,
    pub name: String,
    pub aliases: Vec<String>,
    pub namespace: String,
}

impl Reference {
    pub fn of(c: &ContainerSample, containerd_namespaces: &[String]) -> Reference {
        let info = crate::identity::path::parse(&c.path, containerd_namespaces);
        let Some((runtime, id)) = info.container else {
            return Reference {
                id: String::new(),
                name: c.path.clone(),
                aliases: Vec::new(),
                namespace: String::new(),
            };
        };
        let namespace = match runtime {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Crio => "crio",
            Runtime::Containerd | Runtime::Cri => "containerd",
        };
        let mut aliases = Vec::new();
        if !c.identity.name.is_empty() && c.identity.name != id {
            aliases.push(c.identity.name.clone());
        }
        aliases.push(id.to_string());
        Reference {
            id: id.to_string(),
            name: c.path.clone(),
            aliases,
            namespace: namespace.to_string(),
        }
    }

    /// Whether `key` (a `docker/<id or name>` request) names this container.
    pub fn answers_to(&self, key: &str) -> bool {
        !key.is_empty() && (self.id == key || self.aliases.iter().any(|a| a == key))
    }

    pub fn into_map(self) -> Map<String, Value> {
        let mut m = Map::new();
        put_nonempty(&mut m, "id", json!(self.id));
        m.insert("name".into(), json!(self.name));
        put_nonempty(&mut m, "aliases", json!(self.aliases));
        put_nonempty(&mut m, "namespace", json!(self.namespace));
        m
    }
}

fn spec_map(c: &ContainerSample, has: Has, v2: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "creation_time".into(),
        json!(
            c.start_time
                .map_or_else(|| rfc3339::ZERO.to_string(), rfc3339::format_unix)
        ),
    );
    if !c.identity.labels.is_empty() {
        m.insert("labels".into(), json!(*c.identity.labels));
    }
    m.insert("has_cpu".into(), json!(has.cpu));
    // v2's conversion copies only the CPU weight and mask, and memory limits only when the
    // cgroup has the controller (cAdvisor's ContainerSpecFromV1).
    let mut cpu = Map::new();
    let shares = if v2 && !has.cpu {
        0
    } else {
        c.cpu_spec.shares.unwrap_or(0)
    };
    cpu.insert("limit".into(), json!(shares));
    cpu.insert("max_limit".into(), json!(0));
    if let Some(mask) = c.cpu_spec.mask.as_deref() {
        put_nonempty(&mut cpu, "mask", json!(mask));
    }
    if !v2 {
        put_nonempty(&mut cpu, "quota", json!(c.cpu_spec.quota_us.unwrap_or(0)));
        put_nonempty(&mut cpu, "period", json!(c.cpu_spec.period_us.unwrap_or(0)));
    }
    m.insert("cpu".into(), Value::Object(cpu));
    m.insert("has_memory".into(), json!(has.memory));
    let mut mem = Map::new();
    let memory_spec = if v2 && !has.memory {
        Default::default()
    } else {
        c.memory_spec
    };
    put_nonempty(&mut mem, "limit", json!(memory_spec.limit.unwrap_or(0)));
    put_nonempty(
        &mut mem,
        "reservation",
        json!(memory_spec.reservation.unwrap_or(0)),
    );
    put_nonempty(
        &mut mem,
        "swap_limit",
        json!(memory_spec.swap_limit.unwrap_or(0)),
    );
    m.insert("memory".into(), Value::Object(mem));
    m.insert("has_hugetlb".into(), json!(false));
    m.insert("has_network".into(), json!(has.network));
    m.insert("has_processes".into(), json!(has.processes));
    let mut processes = Map::new();
    if let Some(max) = c.processes.threads_max.filter(|m| *m != u64::MAX && !v2) {
        put_nonempty(&mut processes, "limit", json!(max));
    }
    m.insert("processes".into(), Value::Object(processes));
    m.insert("has_filesystem".into(), json!(has.filesystem));
    m.insert("has_diskio".into(), json!(has.diskio));
    m.insert("has_custom_metrics".into(), json!(false));
    put_nonempty(&mut m, "image", json!(c.identity.image));
    m
}

/// v1 `ContainerSpec`.
pub fn spec_v1(c: &ContainerSample) -> Value {
    Value::Object(spec_map(c, Has::of(c), false))
}

/// v2 `ContainerSpec`: the v1 spec with the reference's aliases and namespace.
pub fn spec_v2(c: &ContainerSample, reference: Reference) -> Value {
    let mut m = spec_map(c, Has::of(c), true);
    put_nonempty(&mut m, "aliases", json!(reference.aliases));
    put_nonempty(&mut m, "namespace", json!(reference.namespace));
    Value::Object(m)
}

fn get(r: &Record, f: Field) -> u64 {
    r.get(f).unwrap_or(0)
}

const PSI_CPU: [Field; 4] = [
    Field::PsiCpuSome,
    Field::PsiCpuFull,
    Field::PsiCpuSomeAvg,
    Field::PsiCpuFullAvg,
];
const PSI_MEMORY: [Field; 4] = [
    Field::PsiMemorySome,
    Field::PsiMemoryFull,
    Field::PsiMemorySomeAvg,
    Field::PsiMemoryFullAvg,
];
const PSI_IO: [Field; 4] = [
    Field::PsiIoSome,
    Field::PsiIoFull,
    Field::PsiIoSomeAvg,
    Field::PsiIoFullAvg,
];

/// cAdvisor's `PSIStats`: `{full,some}{total,avg10,avg60,avg300}`, zero where the kernel has no
/// such line (no `full` in `cpu.pressure` before 5.13), as cAdvisor's zero struct.
fn psi(r: &Record, [some, full, some_avg, full_avg]: [Field; 4]) -> Value {
    let data = |total: Field, avg: Field| {
        let [avg10, avg60, avg300] = unpack_averages(get(r, avg)).percent();
        json!({"total": get(r, total), "avg10": avg10, "avg60": avg60, "avg300": avg300})
    };
    json!({"full": data(full, full_avg), "some": data(some, some_avg)})
}

fn cpu_stats(r: &Record) -> Value {
    json!({
        "usage": {
            "total": get(r, Field::CpuTotal),
            "user": get(r, Field::CpuUser),
            "system": get(r, Field::CpuSystem),
        },
        "cfs": {
            "periods": get(r, Field::CfsPeriods),
            "throttled_periods": get(r, Field::CfsThrottledPeriods),
            "throttled_time": get(r, Field::CfsThrottledNs),
            "bursts_periods": get(r, Field::CfsBursts),
            "burst_time": get(r, Field::CfsBurstNs),
        },
        "schedstat": {
            "run_time": get(r, Field::RunTimeNs),
            "runqueue_time": get(r, Field::RunqueueNs),
            "run_periods": get(r, Field::RunPeriods),
        },
        // Thousandths of a thread, as cAdvisor (0 there without its load reader).
        "load_average": get(r, Field::LoadMilli),
        "load_d_average": get(r, Field::LoadDMilli),
        "psi": psi(r, PSI_CPU),
    })
}

fn memory_stats(r: &Record) -> Value {
    let g = |f| get(r, f);
    json!({
        "usage": g(Field::MemUsage),
        "max_usage": g(Field::MemMaxUsage),
        "cache": g(Field::MemCache),
        "rss": g(Field::MemRss),
        "swap": g(Field::MemSwap),
        "mapped_file": g(Field::MemMappedFile),
        "working_set": g(Field::MemWorkingSet),
        "total_active_file": g(Field::MemActiveFile),
        "total_inactive_file": g(Field::MemInactiveFile),
        "file_dirty": g(Field::MemFileDirty),
        "file_writeback": g(Field::MemFileWriteback),
        "pgscan": g(Field::MemPgscan),
        "pgsteal": g(Field::MemPgsteal),
        "workingset_refault_file": g(Field::MemRefaultFile),
        "workingset_refault_anon": g(Field::MemRefaultAnon),
        "failcnt": g(Field::MemFailcnt),
        "kernel": g(Field::MemKernel),
        "container_data": {"pgfault": g(Field::PgFault), "pgmajfault": g(Field::PgMajFault)},
        "hierarchical_data": {
            "pgfault": g(Field::PgFaultHierarchy),
            "pgmajfault": g(Field::PgMajFaultHierarchy),
        },
        "psi": psi(r, PSI_MEMORY),
        "events": {"high": g(Field::MemEventsHigh), "max": g(Field::MemEventsMax)},
    })
}

fn interface(name: &str, row: &[u64; 8]) -> Map<String, Value> {
    let keys = [
        "rx_bytes",
        "rx_packets",
        "rx_errors",
        "rx_dropped",
        "tx_bytes",
        "tx_packets",
        "tx_errors",
        "tx_dropped",
    ];
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    for (k, v) in keys.iter().zip(row) {
        m.insert(k.to_string(), json!(v));
    }
    m
}

fn interfaces(s: &Stored) -> Vec<Value> {
    s.ifaces
        .iter()
        .map(|(n, row)| Value::Object(interface(n, row)))
        .collect()
}

fn protocol_stats(m: &mut Map<String, Value>) {
    m.insert("tcp".into(), zeros(TCP_STATES));
    m.insert("tcp6".into(), zeros(TCP_STATES));
    m.insert("udp".into(), zeros(UDP_STATES));
    m.insert("udp6".into(), zeros(UDP_STATES));
    m.insert("tcp_advanced".into(), zeros(TCP_ADVANCED));
}

/// v1 network: the first interface inlined, then all of them.
fn network_v1(s: &Stored) -> Value {
    let mut m = match s.ifaces.first() {
        Some((n, row)) => interface(n, row),
        None => interface("", &[0; 8]),
    };
    put_nonempty(&mut m, "interfaces", Value::Array(interfaces(s)));
    protocol_stats(&mut m);
    Value::Object(m)
}

/// v2 network: the interfaces only.
fn network_v2(s: &Stored) -> Value {
    let mut m = Map::new();
    put_nonempty(&mut m, "interfaces", Value::Array(interfaces(s)));
    protocol_stats(&mut m);
    Value::Object(m)
}

fn diskio(s: &Stored) -> Value {
    let per_disk = |read: usize, write: usize| -> Vec<Value> {
        s.devices
            .iter()
            .map(|(d, row)| {
                json!({
                    "device": d.name.as_ref(),
                    "major": d.major,
                    "minor": d.minor,
                    "stats": {"Read": row[read], "Write": row[write]},
                })
            })
            .collect()
    };
    let mut m = Map::new();
    put_nonempty(&mut m, "io_service_bytes", Value::Array(per_disk(0, 1)));
    put_nonempty(&mut m, "io_serviced", Value::Array(per_disk(2, 3)));
    m.insert("psi".into(), psi(&s.record, PSI_IO));
    Value::Object(m)
}

/// The diskstats counters by cAdvisor's names, in [`crate::history::FsRow`]'s order.
const DISK_FIELDS: [&str; 11] = [
    "reads_completed",
    "reads_merged",
    "sectors_read",
    "read_time",
    "writes_completed",
    "writes_merged",
    "sectors_written",
    "write_time",
    "io_in_progress",
    "io_time",
    "weighted_io_time",
];

/// v1 `FsStats` of each filesystem. `type` is what cAdvisor calls every block-device
/// filesystem (its other types are devicemapper and zfs pools).
fn filesystems(s: &Stored) -> Value {
    s.filesystems
        .iter()
        .map(|(key, row)| {
            let mut m = Map::new();
            m.insert("device".into(), json!(key.name.as_ref()));
            m.insert("type".into(), json!("vfs"));
            for (k, v) in ["capacity", "usage", "base_usage", "available"]
                .iter()
                .zip(row)
            {
                m.insert((*k).into(), json!(v));
            }
            m.insert("has_inodes".into(), json!(true));
            m.insert("inodes".into(), json!(row[4]));
            m.insert("inodes_free".into(), json!(row[5]));
            for (k, v) in DISK_FIELDS.iter().zip(&row[6..]) {
                m.insert((*k).into(), json!(v));
            }
            Value::Object(m)
        })
        .collect()
}

/// v2.1 `FilesystemStats` of a container (its first filesystem, as cAdvisor converts it).
fn filesystem_v2(s: &Stored) -> Option<Value> {
    let (_, row) = s.filesystems.first()?;
    Some(json!({"totalUsageBytes": row[1], "baseUsageBytes": row[2], "inodeUsage": row[4]}))
}

/// v2.1 `machinestats` filesystems (`MachineFsStats`; its diskstats sit under a field that Go's
/// JSON names `inline`).
fn machine_filesystems(s: &Stored) -> Value {
    s.filesystems
        .iter()
        .map(|(key, row)| {
            let disk: Map<String, Value> = DISK_FIELDS
                .iter()
                .zip(&row[6..])
                .map(|(k, v)| ((*k).to_string(), json!(v)))
                .collect();
            json!({
                "device": key.name.as_ref(),
                "type": "vfs",
                "capacity": row[0],
                "usage": row[1],
                "available": row[3],
                "inodes_free": row[5],
                "inline": disk,
            })
        })
        .collect()
}

fn processes(r: &Record) -> Value {
    let mut m = Map::new();
    m.insert("process_count".into(), json!(get(r, Field::Processes)));
    // The kernel keeps no per-cgroup fd or socket count (see cgroup::pids).
    m.insert("fd_count".into(), json!(0));
    m.insert("socket_count".into(), json!(0));
    put_nonempty(&mut m, "threads_current", json!(get(r, Field::Threads)));
    let max = get(r, Field::ThreadsMax);
    if max < u64::MAX - 1 {
        put_nonempty(&mut m, "threads_max", json!(max));
    }
    Value::Object(m)
}

/// v1 `task_stats`: the kernel's thread states where `cpuLoad` read them, zeros otherwise (as
/// cAdvisor without its load reader). `nr_io_wait` is 0: see `cgroup::tasks`.
fn task_stats(r: &Record) -> Value {
    json!({
        "nr_sleeping": get(r, Field::TasksSleeping),
        "nr_running": get(r, Field::TasksRunning),
        "nr_stopped": get(r, Field::TasksStopped),
        "nr_uninterruptible": get(r, Field::TasksUninterruptible),
        "nr_io_wait": 0,
    })
}

/// v2.0 `load_stats`: cAdvisor's conversion never fills it (nor sets `has_load`).
fn load_stats_v2() -> Value {
    json!({"nr_sleeping": 0, "nr_running": 0, "nr_stopped": 0, "nr_uninterruptible": 0, "nr_io_wait": 0})
}

/// v1 `ContainerStats`.
pub fn stats_v1(s: &Stored, has: Has) -> Value {
    let r = &s.record;
    let mut m = Map::new();
    m.insert("timestamp".into(), json!(rfc3339::format(r.time())));
    if has.cpu {
        m.insert("cpu".into(), cpu_stats(r));
    }
    if has.diskio {
        m.insert("diskio".into(), diskio(s));
    }
    if has.memory {
        m.insert("memory".into(), memory_stats(r));
    }
    if has.network {
        m.insert("network".into(), network_v1(s));
    }
    if has.filesystem {
        put_nonempty(&mut m, "filesystem", filesystems(s));
    }
    m.insert("task_stats".into(), task_stats(r));
    if has.processes {
        m.insert("processes".into(), processes(r));
    }
    m.insert("resctrl".into(), json!({}));
    m.insert("cpuset".into(), json!({"memory_migrate": 0}));
    put_nonempty(&mut m, "oom_events", json!(get(r, Field::OomKills)));
    m.insert("health".into(), json!({"status": ""}));
    Value::Object(m)
}

/// v2 `cpu_inst`: the CPU rate between two samples in ns per second, as cAdvisor's
/// `InstCpuStats`; `None` for the first sample or when a counter went backwards.
pub fn cpu_inst(last: Option<&Record>, cur: &Record) -> Option<Value> {
    let last = last?;
    let dt = cur.at_ns.checked_sub(last.at_ns).filter(|d| *d > 0)?;
    let rate = |f: Field| -> Option<u64> {
        let d = get(cur, f).checked_sub(get(last, f))?;
        Some((d as f64 / dt as f64 * 1e9) as u64)
    };
    Some(json!({"usage": {
        "total": rate(Field::CpuTotal)?,
        "user": rate(Field::CpuUser)?,
        "system": rate(Field::CpuSystem)?,
    }}))
}

/// v2.0 `stats` entries (cAdvisor's `DeprecatedContainerStats`).
pub fn stats_v2_0(samples: &[Stored], has: Has) -> Value {
    let mut last: Option<&Record> = None;
    let mut out = Vec::with_capacity(samples.len());
    for s in samples {
        let r = &s.record;
        // cAdvisor writes these structs all zero for a cgroup without the controller.
        let zero = Record::empty_at(r.at_ns);
        let or_zero = |has: bool| if has { r } else { &zero };
        let mut m = Map::new();
        m.insert("timestamp".into(), json!(rfc3339::format(r.time())));
        m.insert("has_cpu".into(), json!(has.cpu));
        m.insert("cpu".into(), cpu_stats(or_zero(has.cpu)));
        if has.cpu {
            if let Some(inst) = cpu_inst(last, r) {
                m.insert("cpu_inst".into(), inst);
            }
            last = Some(r);
        }
        m.insert("has_diskio".into(), json!(has.diskio));
        m.insert(
            "diskio".into(),
            if has.diskio {
                diskio(s)
            } else {
                json!({"psi": psi(&zero, PSI_IO)})
            },
        );
        m.insert("has_memory".into(), json!(has.memory));
        m.insert("memory".into(), memory_stats(or_zero(has.memory)));
        m.insert("has_hugetlb".into(), json!(false));
        m.insert("has_network".into(), json!(has.network));
        let mut net = Map::new();
        if has.network {
            put_nonempty(&mut net, "interfaces", Value::Array(interfaces(s)));
        }
        protocol_stats(&mut net);
        m.insert("network".into(), Value::Object(net));
        // cAdvisor's conversion never sets this flag, so its v2.0 answers always say false and
        // carry zero process counts; kept so clients see what they always saw. v2.1 has them.
        m.insert("has_processes".into(), json!(false));
        m.insert(
            "processes".into(),
            json!({"process_count": 0, "fd_count": 0, "socket_count": 0}),
        );
        m.insert("has_filesystem".into(), json!(has.filesystem));
        if has.filesystem {
            put_nonempty(&mut m, "filesystem", filesystems(s));
        }
        m.insert("has_load".into(), json!(false));
        m.insert("load_stats".into(), load_stats_v2());
        m.insert("has_custom_metrics".into(), json!(false));
        m.insert("resctrl".into(), json!({}));
        out.push(Value::Object(m));
    }
    Value::Array(out)
}

/// v2.1 `ContainerStats` entries (only what the spec says the cgroup has).
pub fn stats_v2_1(samples: &[Stored], has: Has) -> Value {
    stats_v2(samples, has, false)
}

/// v2.1 `machinestats`: the root cgroup's samples (CPU, memory and network only).
pub fn machine_stats(samples: &[Stored], has: Has) -> Value {
    stats_v2(samples, has, true)
}

fn stats_v2(samples: &[Stored], has: Has, machine: bool) -> Value {
    let mut last: Option<&Record> = None;
    let mut out = Vec::with_capacity(samples.len());
    for s in samples {
        let r = &s.record;
        let mut m = Map::new();
        m.insert("timestamp".into(), json!(rfc3339::format(r.time())));
        if has.cpu {
            m.insert("cpu".into(), cpu_stats(r));
            if let Some(inst) = cpu_inst(last, r) {
                m.insert("cpu_inst".into(), inst);
            }
            last = Some(r);
        }
        if has.memory {
            m.insert("memory".into(), memory_stats(r));
        }
        if has.network {
            m.insert("network".into(), network_v2(s));
        }
        if machine {
            put_nonempty(&mut m, "filesystem", machine_filesystems(s));
        } else if let Some(fs) = filesystem_v2(s) {
            m.insert("filesystem".into(), fs);
        }
        if !machine {
            if has.processes {
                m.insert("processes".into(), processes(r));
            }
            if has.diskio {
                m.insert("diskio".into(), diskio(s));
            }
            m.insert("resctrl".into(), json!({}));
        }
        out.push(Value::Object(m));
    }
    Value::Array(out)
}

/// v2 `summary`: latest usage and percentiles over the last minute (cAdvisor's DerivedStats;
/// CPU in millicores, memory as working set). The history holds minutes, not hours or days:
/// those are reported with `present: false`, as cAdvisor does before it has them.
pub fn summary(samples: &[Stored], now: SystemTime) -> Value {
    let mut rates = Vec::new();
    let mut mems = Vec::new();
    let now_ns = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let minute_ago = now_ns.saturating_sub(60_000_000_000);
    let mut last: Option<&Record> = None;
    let mut first_in_minute = None;
    for s in samples {
        let r = &s.record;
        if r.at_ns >= minute_ago {
            first_in_minute.get_or_insert(r.at_ns);
            if let Some(m) = r.get(Field::MemWorkingSet) {
                mems.push(m);
            }
            let rate = last.and_then(|l| {
                let d = r
                    .get(Field::CpuTotal)?
                    .checked_sub(l.get(Field::CpuTotal)?)?;
                let dt = r.at_ns.checked_sub(l.at_ns).filter(|d| *d > 0)?;
                // ns of CPU per ns of wall time, in thousandths of a core.
                Some((d as f64 / dt as f64 * 1000.0) as u64)
            });
            rates.extend(rate);
        }
        last = Some(r);
    }
    let latest = samples.last().map(|s| &s.record);
    let latest_cpu = rates.last().copied().unwrap_or(0);
    let latest_mem = latest
        .and_then(|r| r.get(Field::MemWorkingSet))
        .unwrap_or(0);
    let covered = first_in_minute.map_or(0, |f| now_ns.saturating_sub(f));
    let percent = ((covered as f64 / 60e9) * 100.0).round().min(100.0) as i64;
    let absent =
        json!({"percent_complete": 0, "cpu": percentiles(&[]), "memory": percentiles(&[])});
    json!({
        "timestamp": rfc3339::format(latest.map_or(now, Record::time)),
        "latest_usage": {"cpu": latest_cpu, "memory": latest_mem},
        "minute_usage": {
            "percent_complete": percent,
            "cpu": percentiles(&rates),
            "memory": percentiles(&mems),
        },
        "hour_usage": absent,
        "day_usage": absent,
    })
}

fn percentiles(values: &[u64]) -> Value {
    if values.is_empty() {
        return json!({"present": false, "mean": 0, "std": 0, "max": 0, "fifty": 0, "ninety": 0, "ninetyfive": 0, "count": 0});
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len() as f64;
    let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n;
    let var = v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n;
    let at = |p: f64| v[((p * n).ceil() as usize).clamp(1, v.len()) - 1];
    json!({
        "present": true,
        "mean": mean.round() as u64,
        "std": var.sqrt().round() as u64,
        "max": v[v.len() - 1],
        "fifty": at(0.5),
        "ninety": at(0.9),
        "ninetyfive": at(0.95),
        "count": v.len(),
    })
}

fn caches(list: &[Cache]) -> Value {
    Value::Array(
        list.iter()
            .map(|c| json!({"id": c.id, "size": c.size, "type": c.kind, "level": c.level}))
            .collect(),
    )
}

/// `MachineInfo`, the same for v1 and v2.
pub fn machine(m: &MachineInfo, now: SystemTime) -> Value {
    let d = &m.details;
    let hugepages = |h: &[crate::machine::HugePages]| -> Value {
        Value::Array(
            h.iter()
                .map(|p| json!({"page_size": p.page_size_kb, "num_pages": p.pages}))
                .collect(),
        )
    };
    let topology: Vec<Value> = d
        .nodes
        .iter()
        .map(|n| {
            json!({
                "node_id": n.id,
                "memory": n.memory,
                "hugepages": hugepages(&n.hugepages),
                "cores": n.cores.iter().map(|c| json!({
                    "core_id": c.id,
                    "thread_ids": c.threads,
                    "caches": caches(&c.caches),
                    "uncore_caches": [],
                    "socket_id": c.socket_id,
                })).collect::<Vec<_>>(),
                "caches": caches(&n.caches),
                "distances": n.distances,
            })
        })
        .collect();
    let disk_map: Map<String, Value> = d
        .disks
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                json!({"name": v.name, "major": v.major, "minor": v.minor, "size": v.size, "scheduler": v.scheduler}),
            )
        })
        .collect();
    json!({
        "timestamp": rfc3339::format(now),
        "vendor_id": d.vendor_id,
        "num_cores": m.cores.unwrap_or(0),
        "num_physical_cores": m.physical_cores.unwrap_or(0),
        "num_sockets": m.sockets.unwrap_or(0),
        "cpu_frequency_khz": d.cpu_frequency_khz,
        "memory_capacity": m.memory_bytes.unwrap_or(0),
        "swap_capacity": m.swap_bytes.unwrap_or(0),
        "memory_by_type": {},
        "nvm": {"memory_mode_capacity": 0, "app direct_mode_capacity": 0, "avg_power_budget": 0},
        "hugepages": hugepages(&d.hugepages),
        "machine_id": m.machine_id,
        "system_uuid": m.system_uuid,
        "boot_id": m.boot_id,
        "filesystems": d.filesystems.iter().map(|f| json!({
            "device": f.device, "capacity": f.capacity, "type": "vfs",
            "inodes": f.inodes, "has_inodes": true,
        })).collect::<Vec<_>>(),
        "disk_map": disk_map,
        "network_devices": d.network_devices.iter().map(|n| json!({
            "name": n.name, "mac_address": n.mac_address, "speed": n.speed, "mtu": n.mtu,
        })).collect::<Vec<_>>(),
        "topology": topology,
        "cloud_provider": "Unknown",
        "instance_type": "Unknown",
        "instance_id": "None",
    })
}

pub use crate::snapshot::Versions;

pub fn cadvisor_version() -> String {
    format!("nodetel-{}", env!("CARGO_PKG_VERSION"))
}

/// v2 `attributes`: machine facts and versions in one object.
pub fn attributes(m: &MachineInfo, v: &Versions) -> Value {
    let machine = machine(m, SystemTime::now());
    let pick = |k: &str| machine.get(k).cloned().unwrap_or(Value::Null);
    let out = json!({
        "kernel_version": v.kernel,
        "container_os_version": v.os,
        "docker_version": v.docker,
        "docker_api_version": v.docker_api,
        "cadvisor_version": cadvisor_version(),
        "num_cores": pick("num_cores"),
        "cpu_frequency_khz": pick("cpu_frequency_khz"),
        "memory_capacity": pick("memory_capacity"),
        "machine_id": pick("machine_id"),
        "system_uuid": pick("system_uuid"),
        "hugepages": pick("hugepages"),
        "filesystems": pick("filesystems"),
        "disk_map": pick("disk_map"),
        "network_devices": pick("network_devices"),
        "topology": pick("topology"),
        "cloud_provider": pick("cloud_provider"),
        "instance_type": pick("instance_type"),
    });
    out
}

pub fn event(e: &crate::events::Event) -> Value {
    let mut data = Map::new();
    if let Some(v) = &e.victim {
        data.insert(
            "oom".into(),
            json!({"pid": v.pid, "process_name": v.process_name}),
        );
    }
    json!({
        "container_name": e.container.as_ref(),
        "timestamp": rfc3339::format(e.time),
        "event_type": e.kind.name(),
        "event_data": data,
    })
}

/// What only nodetel measures, for its own UI and tools (`?nodetel=true` on a v1 container
/// request; left out otherwise, so cAdvisor's clients get cAdvisor's answer): each kind's
/// figures as the kernel programs bin them, cumulative (a reader takes differences between two
/// answers).
pub fn extensions(c: &ContainerSample) -> Value {
    crate::sources::json_extensions(c)
}
