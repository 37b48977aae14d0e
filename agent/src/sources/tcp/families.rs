//! The `tcp_health` kind's families: per container, the TCP events of its own sockets.
use crate::{
    metrics::families::{AgentFamily, AgentSeries, ContainerFamily, Kind, Value, log2_us_classic},
    snapshot::{TcpHealth, TcpKindHealth},
};

fn one(c: &crate::snapshot::ContainerSample, f: fn(&TcpHealth) -> u64) -> Option<f64> {
    c.tcp.as_ref().map(|t| f(t) as f64)
}

pub static FAMILIES: &[ContainerFamily] = &[
    ContainerFamily {
        name: "nodetel_container_tcp_retransmits_total",
        help: "TCP segments the cgroup's sockets retransmitted, as the kernel's TcpRetransSegs counts them.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| one(c, |t| t.retransmits)),
    },
    ContainerFamily {
        name: "nodetel_container_tcp_resets_sent_total",
        help: "TCP resets the cgroup's sockets sent.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| one(c, |t| t.resets_sent)),
    },
    ContainerFamily {
        name: "nodetel_container_tcp_resets_received_total",
        help: "TCP resets the cgroup's sockets received.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| one(c, |t| t.resets_received)),
    },
    ContainerFamily {
        name: "nodetel_container_tcp_connects_total",
        help: "TCP connects of the cgroup's sockets by result: ok (established), refused (a reset answered), timeout (the SYN retries ran out), other (unreachable, closed before an answer).",
        kind: Kind::Counter,
        extra: &[],
        value: Value::Many(|c, emit| {
            if let Some(t) = c.tcp.as_ref() {
                for (result, n) in [
                    ("ok", t.connects_ok),
                    ("refused", t.connects_refused),
                    ("timeout", t.connects_timeout),
                    ("other", t.connects_other),
                ] {
                    emit(&[("result", result)], n as f64);
                }
            }
        }),
    },
    ContainerFamily {
        name: "nodetel_container_tcp_accepts_total",
        help: "TCP connections the cgroup's listening sockets accepted (handshakes completed).",
        kind: Kind::Counter,
        extra: &[],
        value: Value::One(|c| one(c, |t| t.accepts)),
    },
    ContainerFamily {
        name: "nodetel_container_tcp_established",
        help: "TCP connections of the cgroup's sockets in ESTABLISHED now (those open before the agent started found by a walk of every open file).",
        kind: Kind::Gauge,
        extra: &[],
        value: Value::One(|c| c.tcp.as_ref()?.established.map(|n| n as f64)),
    },
    ContainerFamily {
        name: "nodetel_container_tcp_rtt_seconds",
        help: "Smoothed round-trip time of the cgroup's TCP connections, sampled as each is established and as it leaves ESTABLISHED, in buckets built in the kernel.",
        kind: Kind::Histogram,
        extra: &[],
        value: Value::Histogram(|c, emit| {
            // Absent until a connection had a round trip: no zero histogram per container.
            if let Some(t) = c.tcp.as_ref().filter(|t| t.rtt_count > 0) {
                emit(
                    &[],
                    log2_us_classic(&t.rtt_buckets, t.rtt_sum_us as f64 * 1e-6, t.rtt_count),
                );
            }
        }),
    },
];

fn health(a: &crate::snapshot::AgentStats, f: fn(&TcpKindHealth) -> u64) -> AgentSeries {
    a.tcp.iter().map(|h| (Vec::new(), f(h) as f64)).collect()
}

/// The kind's own health, absent when it is off.
pub static AGENT: &[AgentFamily] = &[
    AgentFamily {
        name: "nodetel_tcp_map_entries",
        help: "Entries in the TCP counters map at the last drain.",
        kind: Kind::Gauge,
        series: |a| health(a, |h| h.map_entries),
    },
    AgentFamily {
        name: "nodetel_tcp_map_capacity",
        help: "Maximum entries of the TCP counters map.",
        kind: Kind::Gauge,
        series: |a| health(a, |h| h.map_capacity),
    },
    AgentFamily {
        name: "nodetel_tcp_uncounted_total",
        help: "TCP events not counted: the counters map was full.",
        kind: Kind::Counter,
        series: |a| health(a, |h| h.map_full),
    },
    AgentFamily {
        name: "nodetel_tcp_unreadable_total",
        help: "TCP events whose socket's cgroup could not be read: not counted.",
        kind: Kind::Counter,
        series: |a| health(a, |h| h.unreadable),
    },
    AgentFamily {
        name: "nodetel_tcp_established_untracked_total",
        help: "TCP connections established but not counted in nodetel_container_tcp_established: the socket map was full.",
        kind: Kind::Counter,
        series: |a| health(a, |h| h.established_untracked),
    },
    AgentFamily {
        name: "nodetel_tcp_entries_forgotten_total",
        help: "TCP counter entries deleted because their cgroup was removed.",
        kind: Kind::Counter,
        series: |a| health(a, |h| h.entries_forgotten),
    },
];
