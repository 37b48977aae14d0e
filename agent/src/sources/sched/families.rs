//! The `sched` kind's families: cAdvisor's schedstat counters, and the run-queue histogram no
//! peer has.
use crate::metrics::families::{ContainerFamily, Kind, NS_PER_S, Value, log2_us_histogram};

pub static SCHEDSTAT: &[ContainerFamily] = &[
    ContainerFamily {
        name: "container_cpu_schedstat_run_seconds_total",
        help: "Time duration the processes of the container have run on the CPU.",
        kind: Kind::Counter,
        extra: &[],
        // The same figure as container_cpu_usage_seconds_total: both are the scheduler's.
        value: Value::One(|c| {
            c.schedstat?;
            c.cpu_usage_ns.map(|ns| ns as f64 / NS_PER_S)
        }),
    },
    ContainerFamily {
        name: "container_cpu_schedstat_runqueue_seconds_total",
        help: "Time duration processes of the container have been waiting on a runqueue.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| c.schedstat.map(|s| s.runqueue_ns as f64 / NS_PER_S)),
    },
    ContainerFamily {
        name: "container_cpu_schedstat_run_periods_total",
        help: "Number of times processes of the cgroup have run on the cpu",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| c.schedstat.map(|s| s.run_periods as f64)),
    },
];

pub static LATENCY: &[ContainerFamily] = &[ContainerFamily {
    name: "nodetel_container_runqueue_latency_seconds",
    help: "Run-queue waits of the cgroup's own tasks (not its descendants'), from wakeup or preemption to running, in log2 buckets built in the kernel.",
    kind: Kind::Histogram,
    extra: &[],
    value: Value::Histogram(|c, emit| {
        let Some(h) = c.runqueue_latency.as_ref() else {
            return;
        };
        if let Some(h) = log2_us_histogram(&h.buckets, h.sum_ns, h.count) {
            emit(&[], h);
        }
    }),
}];
