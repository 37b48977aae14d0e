//! The `blkio` kind: per-container block I/O latency, from the block layer's tracepoints
//! (agent-ebpf/src/blkio.rs). Each bio is timed from submission to completion and charged to the
//! cgroup the kernel charges it to, per disk and operation, in a log2 latency histogram built in
//! the kernel. cAdvisor's `container_fs_*_seconds_total` copy the device's figures into every
//! container; these are the container's own bios.
pub mod drain;
pub mod families;
mod hierarchy;
mod programs;

pub use programs::programs;

use std::collections::HashMap;

use nodetel_common::{
    BLKIO_DISCARD, BLKIO_FLUSH, BLKIO_HIST_ENTRIES, BLKIO_READ, BLKIO_WRITE,
    PROG_BLOCK_BIO_COMPLETE, PROG_BLOCK_BIO_QUEUE, PROG_BLOCK_RQ_COMPLETE, PROG_BLOCK_RQ_ISSUE,
    STAT_BLKIO_BEYOND_REQUEST, STAT_BLKIO_INFLIGHT_FULL, STAT_BLKIO_ISSUE_UNSEEN,
    STAT_BLKIO_MAP_FULL, STAT_BLKIO_UNREADABLE,
};

use super::{Pass, Source};

/// A bio in flight this long has lost its completion: its entry is deleted and counted. Far
/// above any real I/O (a SCSI command times out after 30 s and is retried a few times).
const IN_FLIGHT_MAX_AGE_NS: u64 = 600 * 1_000_000_000;
use crate::{
    cgroup::io::DeviceNames,
    ebpf::{Probes, monotonic_ns},
    snapshot::{AgentStats, BlkioHealth, BlkioLatency, ContainerSample},
};
use drain::{BlkioDrain, OpKey};
use hierarchy::Charges;

pub struct Blkio {
    charges: Charges,
    names: DeviceNames,
    /// The last successful drain, keyed by the charged (io controller's) cgroup id.
    last: BlkioDrain,
    drained: Option<BlkioDrain>,
    /// This pass's figures per v2 cgroup id.
    shown: HashMap<u64, Vec<BlkioLatency>>,
    health: BlkioHealth,
}

impl Blkio {
    /// `None` when the programs are not both attached (the kind is then absent, not zero).
    pub fn new(
        probes: &Probes,
        v1_blkio: Option<std::path::PathBuf>,
        sys_root: std::path::PathBuf,
    ) -> Option<Blkio> {
        let programs = [
            PROG_BLOCK_BIO_QUEUE,
            PROG_BLOCK_RQ_ISSUE,
            PROG_BLOCK_RQ_COMPLETE,
            PROG_BLOCK_BIO_COMPLETE,
        ];
        let attached = programs.iter().filter(|p| probes.is_attached(p)).count();
        if attached != programs.len() {
            if attached > 0 {
                tracing::warn!(
                    "not all four block I/O programs attached; block I/O latency is not measured"
                );
            }
            return None;
        }
        Some(Blkio {
            charges: Charges::new(v1_blkio),
            names: DeviceNames::new(sys_root),
            last: BlkioDrain::default(),
            drained: None,
            shown: HashMap::new(),
            health: BlkioHealth {
                map_capacity: u64::from(BLKIO_HIST_ENTRIES),
                ..BlkioHealth::default()
            },
        })
    }
}

fn op_name(op: u16) -> &'static str {
    match op {
        BLKIO_READ => "read",
        BLKIO_WRITE => "write",
        BLKIO_DISCARD => "discard",
        BLKIO_FLUSH => "flush",
        _ => "other",
    }
}

impl Source for Blkio {
    fn drain(&mut self, probes: &Probes, stats: &mut AgentStats) {
        self.drained = drain::drain(&probes.ebpf)
            .map_err(|e| {
                stats.drain_errors += 1;
                tracing::warn!(error = %e, "failed to drain the block I/O map; its figures are held this pass");
            })
            .ok();
    }

    fn account(&mut self, probes: &mut Probes, pass: &mut Pass<'_>) {
        if let Some(d) = self.drained.take() {
            self.charges
                .refresh(d.ops.keys().map(|(id, _, _)| id), pass.tree);
            // Drained before the walk: a charged cgroup that no longer exists is a removed one.
            let gone: Vec<OpKey> = d
                .ops
                .keys()
                .filter(|(id, _, _)| !self.charges.exists(*id, pass.tree))
                .copied()
                .collect();
            match drain::forget(&mut probes.ebpf, &gone, &d) {
                Ok(n) => self.health.entries_forgotten += n as u64,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to delete block I/O entries of removed cgroups")
                }
            }
            self.health.map_entries = d.entries;
            self.last = d;
        }
        match drain::prune_in_flight(&mut probes.ebpf, monotonic_ns(), IN_FLIGHT_MAX_AGE_NS) {
            Ok((left, pruned)) => {
                self.health.in_flight = left;
                self.health.lost_completions += pruned;
            }
            Err(e) => tracing::debug!(error = %e, "failed to read the bios in flight"),
        }
        for (field, slot) in [
            (&mut self.health.beyond_request, STAT_BLKIO_BEYOND_REQUEST),
            (&mut self.health.map_full, STAT_BLKIO_MAP_FULL),
            (&mut self.health.unreadable, STAT_BLKIO_UNREADABLE),
            (&mut self.health.in_flight_full, STAT_BLKIO_INFLIGHT_FULL),
            (&mut self.health.issue_unseen, STAT_BLKIO_ISSUE_UNSEEN),
        ] {
            if let Ok(v) = probes.stat(slot) {
                *field = v;
            }
        }
        self.shown = self.place(pass.tree);
        pass.stats.blkio = Some(self.health);
    }

    fn fill(&mut self, _: &mut Probes, containers: &mut [ContainerSample], _: &mut Pass<'_>) {
        for c in containers {
            c.blkio = Some(self.shown.remove(&c.cgroup_id).unwrap_or_default());
        }
    }
}

impl Blkio {
    /// The figures per v2 cgroup, disks and operations sorted. A folded cgroup's bios count for
    /// its exported ancestor; a charge with no v2 cgroup is counted, not shown.
    fn place(&mut self, tree: &crate::cgroup::Tree) -> HashMap<u64, Vec<BlkioLatency>> {
        let by_path: HashMap<&str, u64> = if self.charges.is_v1() {
            tree.cgroups
                .iter()
                .map(|c| (c.path.as_str(), c.id))
                .collect()
        } else {
            HashMap::new()
        };
        let mut out: HashMap<u64, Vec<BlkioLatency>> = HashMap::new();
        let mut unplaced = 0;
        for ((id, dev, op), t) in &self.last.ops {
            let Some(v2) = self.charges.resolve(*id, tree, &by_path) else {
                unplaced += 1;
                continue;
            };
            let (major, minor) = (dev >> 20, dev & 0xfffff);
            let rows = out.entry(tree.charged_to(v2)).or_default();
            let op = op_name(*op);
            match rows
                .iter_mut()
                .find(|r| r.major == major && r.minor == minor && r.op == op)
            {
                Some(r) => {
                    r.count = r.count.saturating_add(t.count);
                    r.bytes = r.bytes.saturating_add(t.bytes);
                    r.latency_ns = r.latency_ns.saturating_add(t.latency_ns);
                    r.queue_ns = r.queue_ns.saturating_add(t.queue_ns);
                    for (a, b) in r.buckets.iter_mut().zip(&t.buckets) {
                        *a = a.saturating_add(*b);
                    }
                }
                None => rows.push(BlkioLatency {
                    major,
                    minor,
                    device: self.names.name(major, minor).to_string(),
                    op,
                    count: t.count,
                    bytes: t.bytes,
                    latency_ns: t.latency_ns,
                    queue_ns: t.queue_ns,
                    buckets: t.buckets.clone(),
                }),
            }
        }
        for rows in out.values_mut() {
            rows.sort_by(|a, b| (a.major, a.minor, a.op).cmp(&(b.major, b.minor, b.op)));
        }
        self.health.unplaced = unplaced;
        out
    }
}

/// Per disk and operation, the cgroup's bios, bytes and full kernel histogram, for the JSON
/// extension (`null` when the kind is off).
pub fn json(c: &ContainerSample) -> serde_json::Value {
    let Some(rows) = c.blkio.as_ref() else {
        return serde_json::Value::Null;
    };
    rows.iter()
        .map(|r| {
            serde_json::json!({
                "device": r.device,
                "major": r.major,
                "minor": r.minor,
                "operation": r.op,
                "ios": r.count,
                "bytes": r.bytes,
                "latency_sum_seconds": r.latency_ns as f64 * 1e-9,
                "queue_seconds": r.queue_ns as f64 * 1e-9,
                "service_seconds": r.latency_ns.saturating_sub(r.queue_ns) as f64 * 1e-9,
                "latency_buckets": super::log2_buckets(&r.buckets),
            })
        })
        .collect()
}
