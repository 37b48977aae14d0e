//! The kernel-backed kinds. Each folder holds one kind whole: its map access and drain, its
//! per-cgroup state and the pruning of removed cgroups' entries, and how it fills a sample. The
//! collector knows none of that: it asks every enabled kind the same things, in the same order,
//! each pass (see [`Source`]).
pub mod blkio;
pub mod cpu;
pub mod network;
pub mod oom;
pub mod sched;
pub mod tcp;

use std::collections::HashSet;

use crate::{
    cgroup::Tree,
    ebpf::{Attach, KindPrograms, Probes},
    events::EventStore,
    metric_kinds::{MetricKind, MetricKinds},
    metrics::families::{AgentFamily, ContainerFamily},
    snapshot::{AgentStats, ContainerSample},
};

/// What one pass knows once the cgroup tree is walked.
pub struct Pass<'a> {
    pub tree: &'a Tree,
    /// The previous walk: a cgroup removed since (an OOM victim's, often) is looked up there.
    pub last_tree: &'a Tree,
    /// Cgroups whose cgroupfs figures may be reused this pass: their tasks did not run (see
    /// `--quiet-cgroup-refresh`). Empty unless the CPU kind has this pass's figures.
    pub quiet: HashSet<u64>,
    pub stats: &'a mut AgentStats,
    pub events: &'a EventStore,
}

/// What the collector may ask of a kernel-backed kind. A kind that fails a step says so in the
/// log and its counters, and holds its last figures; the other kinds are not affected.
pub trait Source: Send {
    /// Before any map is read (the network kind reads device counters here, see
    /// `network::reader`).
    fn prepare(&mut self) {}
    /// Reads the kind's maps. Every kind drains BEFORE the tree is walked: a key the walk then
    /// does not find belongs to a removed cgroup, so deleting it cannot lose a live cgroup's
    /// figures (see `cpu::account`).
    fn drain(&mut self, probes: &Probes, stats: &mut AgentStats);
    /// With this pass's walk: sums or holds the figures, deletes removed cgroups' entries, and
    /// adds cgroups to (or takes them out of) the quiet set.
    fn account(&mut self, probes: &mut Probes, pass: &mut Pass<'_>);
    /// Puts the kind's figures on the samples read from cgroupfs.
    fn fill(
        &mut self,
        probes: &mut Probes,
        containers: &mut [ContainerSample],
        pass: &mut Pass<'_>,
    );
}

/// Every container family, in the order they are written: cAdvisor's order (which the golden
/// files keep), the kinds' own families among the cgroupfs ones (`cgroupfs`, `tasks`,
/// `lifetime`, from `metrics::families`) where cAdvisor puts them, and families of kinds
/// cAdvisor does not have after all of cAdvisor's.
pub fn container_families(
    cgroupfs: &'static [ContainerFamily],
    tasks: &'static [ContainerFamily],
    lifetime: &'static [ContainerFamily],
) -> impl Iterator<Item = &'static ContainerFamily> {
    [
        cpu::families::FAMILIES,
        cgroupfs,
        network::families::FAMILIES,
        sched::families::SCHEDSTAT,
        tasks,
        sched::families::LATENCY,
        oom::families::FAMILIES,
        lifetime,
        // Beyond cAdvisor's.
        blkio::families::FAMILIES,
        tcp::families::FAMILIES,
    ]
    .into_iter()
    .flatten()
}

/// The kinds' own health families, written after the agent's.
pub static AGENT_FAMILIES: &[&[AgentFamily]] = &[blkio::families::AGENT, tcp::families::AGENT];

/// What only nodetel measures, per cgroup, for the JSON API's `?nodetel=true` extension: each
/// kind's object under its key.
pub fn json_extensions(c: &ContainerSample) -> serde_json::Value {
    serde_json::json!({
        "runqueue_latency": sched::json(c),
        "blkio": blkio::json(c),
        "tcp": tcp::json(c),
    })
}

/// The kernel programs of the kinds `kinds` enables, in attach order, with the cgroup tree's own
/// (they count mkdir, rmdir and rename, so the collector walks only when the tree changed).
pub fn programs(kinds: &MetricKinds, sched_switch_floor: bool) -> Vec<KindPrograms> {
    use nodetel_common::{PROG_CGROUP_MKDIR, PROG_CGROUP_RENAME, PROG_CGROUP_RMDIR};
    let tree = KindPrograms {
        programs: vec![
            (PROG_CGROUP_MKDIR, Attach::Btf("cgroup_mkdir")),
            (PROG_CGROUP_RMDIR, Attach::Btf("cgroup_rmdir")),
            (PROG_CGROUP_RENAME, Attach::Btf("cgroup_rename")),
        ],
        global: None,
    };
    // CPU and OOM always: CPU time decides which cgroups are quiet, OOM kills which are not.
    let mut out = vec![tree, cpu::programs(sched_switch_floor), oom::programs()];
    if kinds.has(MetricKind::Blkio) {
        out.push(blkio::programs());
    }
    if kinds.has(MetricKind::Network) {
        out.push(network::programs());
    }
    if kinds.has(MetricKind::TcpHealth) {
        out.push(tcp::programs());
    }
    out
}

/// A kernel log2 histogram: bucket b counts values under 2^b µs (cumulative over time, not over
/// buckets); the last one the rest (`le_seconds: null`, +Inf).
pub fn log2_buckets(buckets: &[u64]) -> Vec<serde_json::Value> {
    let last = buckets.len().saturating_sub(1);
    buckets
        .iter()
        .enumerate()
        .map(|(b, n)| {
            let le = (b < last).then(|| (1u64 << b.min(63)) as f64 * 1e-6);
            serde_json::json!({"le_seconds": le, "count": n})
        })
        .collect()
}

/// The kinds to run, in the order they are asked: CPU first (it makes the quiet set the OOM kind
/// then trims).
pub fn enabled(
    probes: &mut Probes,
    kinds: &MetricKinds,
    roots: &crate::machine::Roots,
    layout: &crate::cgroup::Layout,
) -> Vec<Box<dyn Source>> {
    let proc_root = roots.proc_root.clone();
    let mut out: Vec<Box<dyn Source>> = vec![
        Box::new(cpu::Cpu::new(probes, kinds.has(MetricKind::Cpu))),
        Box::new(oom::Oom::new(probes, kinds.has(MetricKind::OomEvent))),
    ];
    if kinds.has(MetricKind::Sched) && probes.measures_runqueue() {
        out.push(Box::new(sched::Sched::default()));
    }
    if kinds.has(MetricKind::Network) {
        out.push(Box::new(network::Network::new(probes, proc_root)));
    }
    if kinds.has(MetricKind::Blkio) {
        let v1 = layout.v1_blkio.clone();
        if let Some(b) = blkio::Blkio::new(probes, v1, roots.sys_root.clone()) {
            out.push(Box::new(b));
        }
    }
    if kinds.has(MetricKind::TcpHealth)
        && let Some(t) = tcp::Tcp::new(probes)
    {
        out.push(Box::new(t));
    }
    out
}
