//! The `cpu` kind's family: cAdvisor's usage counter, from the scheduler's own figure.
use crate::metrics::families::{ContainerFamily, Kind, NS_PER_S, Value};

pub static FAMILIES: &[ContainerFamily] = &[ContainerFamily {
    name: "container_cpu_usage_seconds_total",
    help: "Cumulative cpu time consumed in seconds.",
    kind: Kind::Counter,
    // Per-CPU series are a v1-only cAdvisor feature; eBPF counts per cgroup, like v2.
    extra: &[("cpu", "total")],
    value: Value::One(|c| c.cpu_usage_ns.map(|v| v as f64 / NS_PER_S)),
}];
