//! `--enable-metrics` / `--disable-metrics`: cAdvisor's metric kind names, resolved before any
//! file is read, so a disabled kind costs nothing.
use std::collections::BTreeSet;

/// The kinds nodetel provides, by cAdvisor's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetricKind {
    Cpu,
    Memory,
    DiskIo,
    Process,
    Pressure,
    OomEvent,
    Network,
    Sched,
    Disk,
    CpuLoad,
    /// nodetel's own: per-container block I/O latency from the block layer's tracepoints.
    Blkio,
    /// nodetel's own: per-container TCP health (retransmits, resets, connects, accepts).
    TcpHealth,
}

impl MetricKind {
    pub const ALL: [MetricKind; 12] = [
        MetricKind::Cpu,
        MetricKind::Memory,
        MetricKind::DiskIo,
        MetricKind::Process,
        MetricKind::Pressure,
        MetricKind::OomEvent,
        MetricKind::Network,
        MetricKind::Sched,
        MetricKind::Disk,
        MetricKind::CpuLoad,
        MetricKind::Blkio,
        MetricKind::TcpHealth,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Cpu => "cpu",
            MetricKind::Memory => "memory",
            MetricKind::DiskIo => "diskIO",
            MetricKind::Process => "process",
            MetricKind::Pressure => "pressure",
            MetricKind::OomEvent => "oom_event",
            MetricKind::Network => "network",
            MetricKind::Sched => "sched",
            MetricKind::Disk => "disk",
            MetricKind::CpuLoad => "cpuLoad",
            MetricKind::Blkio => "blkio",
            MetricKind::TcpHealth => "tcp_health",
        }
    }
}

/// `--disable-metrics` when not given: cAdvisor 0.38.7's default for the kinds nodetel shares with
/// it (`process` and `sched` off; it had no `pressure`), so a node costs Prometheus no more
/// series than cAdvisor did, and nodetel's kinds over their cost budget (`blkio`: about 1 µs per
/// bio, 2 % of a 4 KiB direct read here; README, Block I/O latency; `tcp_health`: 3.1 µs per
/// connection, 3.9 % of the CPU a connection-per-request load uses; README, TCP health). Kept here, with the kinds, so a new kind that starts off is added in this
/// file alone.
pub const DEFAULT_DISABLED: &str = "process,sched,pressure,blkio,tcp_health";

/// cAdvisor kinds nodetel accepts but does not (yet) provide: naming one is not an error, so a
/// cAdvisor command line carries over, but it is said once at start-up.
const NOT_PROVIDED: &[&str] = &[
    "accelerator",
    "advtcp",
    "app",
    "cpu_topology",
    "cpuset",
    "hugetlb",
    "memory_numa",
    "percpu",
    "perf_event",
    "referenced_memory",
    "resctrl",
    "tcp",
    "udp",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricKinds {
    enabled: BTreeSet<MetricKind>,
    /// Named kinds this version does not provide.
    pub ignored: Vec<String>,
}

impl Default for MetricKinds {
    fn default() -> Self {
        MetricKinds {
            enabled: MetricKind::ALL.into_iter().collect(),
            ignored: Vec::new(),
        }
    }
}

impl MetricKinds {
    /// As cAdvisor: `enable`, when given, is the whole set and `disable` is then ignored;
    /// otherwise everything provided except `disable`.
    pub fn resolve(enable: &[String], disable: &[String]) -> Result<Self, String> {
        let mut ignored = Vec::new();
        let mut parse = |names: &[String]| -> Result<BTreeSet<MetricKind>, String> {
            let mut out = BTreeSet::new();
            for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
                if let Some(k) = MetricKind::ALL.into_iter().find(|k| k.name() == n) {
                    out.insert(k);
                } else if NOT_PROVIDED.contains(&n) {
                    ignored.push(n.to_string());
                } else {
                    let known: Vec<&str> = MetricKind::ALL
                        .iter()
                        .map(|k| k.name())
                        .chain(NOT_PROVIDED.iter().copied())
                        .collect();
                    return Err(format!(
                        "unknown metric kind `{n}` (known: {})",
                        known.join(", ")
                    ));
                }
            }
            Ok(out)
        };
        let enabled = if enable.iter().any(|n| !n.trim().is_empty()) {
            parse(enable)?
        } else {
            let off = parse(disable)?;
            MetricKind::ALL
                .into_iter()
                .filter(|k| !off.contains(k))
                .collect()
        };
        Ok(MetricKinds { enabled, ignored })
    }

    pub fn has(&self, k: MetricKind) -> bool {
        self.enabled.contains(&k)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.enabled.iter().map(|k| k.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn enable_wins_and_disable_subtracts() {
        let all = MetricKinds::resolve(&[], &[]).expect("default");
        assert_eq!(all.names().len(), MetricKind::ALL.len());
        let some = MetricKinds::resolve(&s(&["cpu", "memory"]), &s(&["cpu"])).expect("enable");
        assert!(some.has(MetricKind::Cpu) && some.has(MetricKind::Memory));
        assert!(!some.has(MetricKind::DiskIo));
        let less = MetricKinds::resolve(&[], &s(&["diskIO", "pressure", "tcp"])).expect("disable");
        assert!(!less.has(MetricKind::DiskIo) && !less.has(MetricKind::Pressure));
        assert!(less.has(MetricKind::Process));
        assert_eq!(less.ignored, vec!["tcp".to_string()]);
        let err = MetricKinds::resolve(&s(&["cpus"]), &[]).expect_err("unknown");
        assert!(err.contains("unknown metric kind `cpus`"), "{err}");
    }
}
