//! The `sched` kind: run-queue waits and run periods per cgroup, and a log2 histogram of the
//! waits, from the context-switch program's scheduler figures (agent-ebpf/src/sched.rs). Totals
//! are summed up the tree as CPU time is; the histogram is each cgroup's own tasks'.
pub mod drain;
pub mod families;

use std::collections::HashMap;

use super::{Pass, Source, cpu::account::CpuAccountant, cpu::drain::CpuDrain};
use crate::{
    ebpf::Probes,
    snapshot::{AgentStats, ContainerSample, RunqueueLatency, Schedstat},
};
use drain::{SchedCounters, SchedDrain};

#[derive(Default)]
pub struct Sched {
    /// Hierarchical run-queue ns and run periods, kept like CPU time (monotonic, removed
    /// cgroups' figures held by their ancestors).
    runqueue: CpuAccountant,
    run_periods: CpuAccountant,
    totals: HashMap<u64, Schedstat>,
    /// The last successful drain: each cgroup's own figures and histogram.
    own: SchedDrain,
    /// This pass's drain; `None` when it failed (the figures are then held).
    drained: Option<SchedDrain>,
}

impl Source for Sched {
    fn drain(&mut self, probes: &Probes, stats: &mut AgentStats) {
        self.drained = drain::drain(&probes.ebpf)
            .map_err(|e| {
                stats.drain_errors += 1;
                tracing::warn!(error = %e, "failed to drain the scheduler maps; run-queue figures are held this pass");
            })
            .ok();
    }

    /// Sums the counters up the tree, and forgets the entries of removed cgroups.
    fn account(&mut self, probes: &mut Probes, pass: &mut Pass<'_>) {
        let Some(mut sched) = self.drained.take() else {
            return;
        };
        pass.stats.sched_map_entries = sched.entries;
        sched.hold(&self.own);
        let as_drain = |f: fn(&SchedCounters) -> u64| CpuDrain {
            committed: sched.counters.iter().map(|(id, c)| (*id, f(c))).collect(),
            ..CpuDrain::default()
        };
        let rq = self
            .runqueue
            .update(pass.tree, &as_drain(|c| c.runqueue_ns));
        let periods = self
            .run_periods
            .update(pass.tree, &as_drain(|c| c.run_periods));
        self.totals = rq
            .totals
            .iter()
            .map(|(id, ns)| {
                let run_periods = periods.totals.get(id).copied().unwrap_or(0);
                let s = Schedstat {
                    runqueue_ns: *ns,
                    run_periods,
                };
                (*id, s)
            })
            .collect();
        let mut gone: Vec<u64> = sched
            .buckets
            .keys()
            .filter(|id| !pass.tree.contains(**id))
            .copied()
            .collect();
        gone.sort_unstable();
        match drain::forget(&mut probes.ebpf, &gone, &sched) {
            Ok(n) => pass.stats.sched_entries_forgotten += n as u64,
            Err(e) => {
                tracing::warn!(error = %e, "failed to delete scheduler entries of removed cgroups")
            }
        }
        self.own = sched;
    }

    fn fill(&mut self, _: &mut Probes, containers: &mut [ContainerSample], _: &mut Pass<'_>) {
        for c in containers {
            c.schedstat = self.totals.get(&c.cgroup_id).copied();
            c.runqueue_latency = self.own.buckets.get(&c.cgroup_id).map(|b| {
                let own = self.own.counters.get(&c.cgroup_id);
                RunqueueLatency {
                    buckets: b.clone(),
                    sum_ns: own.map_or(0, |o| o.runqueue_ns),
                    count: own.map_or(0, |o| o.run_periods),
                }
            });
        }
    }
}

/// The run-queue histogram for the JSON extension (`null` when the cgroup has none).
pub fn json(c: &ContainerSample) -> serde_json::Value {
    let Some(h) = c.runqueue_latency.as_ref() else {
        return serde_json::Value::Null;
    };
    serde_json::json!({
        "buckets": super::log2_buckets(&h.buckets),
        "sum_seconds": h.sum_ns as f64 * 1e-9,
        "count": h.count,
    })
}
