//! The `blkio` kind's families: per container, disk and operation, the bios completed, their
//! bytes, and their latency as a histogram.
use crate::{
    metrics::families::{
        AgentFamily, AgentSeries, ContainerFamily, Extra, Histogram, Kind, NS_PER_S, Value,
        log2_us_classic,
    },
    snapshot::{BlkioHealth, BlkioLatency},
};

/// The exported histogram: the kernel's buckets at the classic bounds.
pub fn histogram(r: &BlkioLatency) -> Histogram {
    log2_us_classic(&r.buckets, r.latency_ns as f64 / NS_PER_S, r.count)
}

/// Calls `f` with each disk and operation of the cgroup and its labels.
fn each(c: &crate::snapshot::ContainerSample, mut f: impl FnMut(&BlkioLatency, Extra<'_>)) {
    for r in c.blkio.iter().flatten() {
        let (major, minor) = (r.major.to_string(), r.minor.to_string());
        let labels = [
            ("device", r.device.as_str()),
            ("major", major.as_str()),
            ("minor", minor.as_str()),
            ("operation", r.op),
        ];
        f(r, &labels);
    }
}

pub static FAMILIES: &[ContainerFamily] = &[
    ContainerFamily {
        name: "nodetel_container_blkio_ios_total",
        help: "Block I/Os (bios) of the cgroup's own tasks completed, per disk and operation, as io.stat counts them.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::Many(|c, emit| each(c, |r, labels| emit(labels, r.count as f64))),
    },
    ContainerFamily {
        name: "nodetel_container_blkio_bytes_total",
        help: "Bytes of the cgroup's own completed block I/Os, per disk and operation.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::Many(|c, emit| each(c, |r, labels| emit(labels, r.bytes as f64))),
    },
    ContainerFamily {
        name: "nodetel_container_blkio_queue_seconds_total",
        help: "Time the cgroup's own block I/Os waited before their request was issued to the driver (for a tag, in the I/O scheduler), summed, per disk and operation. 0 on a bio-based device (device-mapper, md).",
        kind: Kind::Counter,
        extra: &[],
        value: Value::Many(|c, emit| {
            each(c, |r, labels| emit(labels, r.queue_ns as f64 / NS_PER_S))
        }),
    },
    ContainerFamily {
        name: "nodetel_container_blkio_service_seconds_total",
        help: "Time the cgroup's own block I/Os spent with the driver (request issue to completion; the whole latency on a bio-based device), summed, per disk and operation.",
        kind: Kind::Counter,
        extra: &[],
        value: Value::Many(|c, emit| {
            each(c, |r, labels| {
                emit(
                    labels,
                    r.latency_ns.saturating_sub(r.queue_ns) as f64 / NS_PER_S,
                )
            })
        }),
    },
    ContainerFamily {
        name: "nodetel_container_blkio_latency_seconds",
        help: "Latency of the cgroup's own block I/Os, from submission to the block layer to completion, per disk and operation, in buckets built in the kernel.",
        kind: Kind::Histogram,
        extra: &[],
        value: Value::Histogram(|c, emit| each(c, |r, labels| emit(labels, histogram(r)))),
    },
];

fn health(a: &crate::snapshot::AgentStats, f: fn(&BlkioHealth) -> u64) -> AgentSeries {
    a.blkio.iter().map(|h| (Vec::new(), f(h) as f64)).collect()
}

/// The kind's own health, absent when it is off.
pub static AGENT: &[AgentFamily] = &[
    AgentFamily {
        name: "nodetel_blkio_map_entries",
        help: "Entries in the block I/O histogram map at the last drain.",
        kind: Kind::Gauge,
        series: |a| health(a, |h| h.map_entries),
    },
    AgentFamily {
        name: "nodetel_blkio_map_capacity",
        help: "Maximum entries of the block I/O histogram map.",
        kind: Kind::Gauge,
        series: |a| health(a, |h| h.map_capacity),
    },
    AgentFamily {
        name: "nodetel_blkio_in_flight",
        help: "Block I/Os in flight (submitted, not completed) at the last pass.",
        kind: Kind::Gauge,
        series: |a| health(a, |h| h.in_flight),
    },
    AgentFamily {
        name: "nodetel_blkio_lost_completions_total",
        help: "Block I/Os whose completion never came (in flight over 10 minutes): their entries were deleted.",
        kind: Kind::Counter,
        series: |a| health(a, |h| h.lost_completions),
    },
    AgentFamily {
        name: "nodetel_blkio_issue_unseen_total",
        help: "Block I/Os of a request-based device completed with no issue time (past the first 64 bios of their request, or never issued): their whole latency is counted as service time.",
        kind: Kind::Counter,
        series: |a| health(a, |h| h.issue_unseen),
    },
    AgentFamily {
        name: "nodetel_blkio_untimed_total",
        help: "Block I/Os not timed: the in-flight map was full.",
        kind: Kind::Counter,
        series: |a| health(a, |h| h.in_flight_full),
    },
    AgentFamily {
        name: "nodetel_blkio_long_requests_total",
        help: "Requests completed with more bios than the kernel program follows (64): the rest were not counted.",
        kind: Kind::Counter,
        series: |a| health(a, |h| h.beyond_request),
    },
    AgentFamily {
        name: "nodetel_blkio_uncounted_total",
        help: "Completed block I/Os not counted: the histogram map was full.",
        kind: Kind::Counter,
        series: |a| health(a, |h| h.map_full),
    },
    AgentFamily {
        name: "nodetel_blkio_unreadable_total",
        help: "Completed block I/Os whose cgroup or disk could not be read: not counted.",
        kind: Kind::Counter,
        series: |a| health(a, |h| h.unreadable),
    },
    AgentFamily {
        name: "nodetel_blkio_unplaced_entries",
        help: "Histogram entries charged to a cgroup with no cgroup v2 twin (hybrid hosts): counted here, shown under no container.",
        kind: Kind::Gauge,
        series: |a| health(a, |h| h.unplaced),
    },
    AgentFamily {
        name: "nodetel_blkio_entries_forgotten_total",
        help: "Histogram entries deleted because their cgroup was removed.",
        kind: Kind::Counter,
        series: |a| health(a, |h| h.entries_forgotten),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_buckets_fold_into_the_exported_bounds() {
        let mut buckets = vec![0u64; 27];
        buckets[3] = 5; // < 8 µs
        buckets[15] = 90; // 16.4 - 32.8 ms: a 20 ms delay
        buckets[26] = 1; // beyond 33.5 s
        let r = BlkioLatency {
            count: 96,
            latency_ns: 2_000_000_000,
            buckets,
            ..BlkioLatency::default()
        };
        let h = histogram(&r);
        let at = |le: f64| {
            h.buckets
                .iter()
                .find(|(b, _)| (*b - le).abs() < 1e-12)
                .map(|b| b.1)
        };
        assert_eq!(at(64e-6), Some(5));
        assert_eq!(at(16384e-6), Some(5), "20 ms is above 16.4 ms");
        assert_eq!(at(65536e-6), Some(95));
        assert_eq!(h.buckets.last(), Some(&(f64::INFINITY, 96)));
        assert!(h.buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative");
        assert_eq!((h.count, h.sum), (96, 2.0));
    }
}
