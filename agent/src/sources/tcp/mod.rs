//! The `tcp_health` kind: per-container TCP retransmits, resets, connects by result and accepts,
//! from TCP's tracepoints (agent-ebpf/src/tcp.rs), charged to the socket's cgroup, so a pod on
//! the host network has its own figures too. cAdvisor has none of these per container.
mod drain;
pub mod families;
mod programs;

pub use programs::programs;

use std::collections::HashMap;

use nodetel_common::{
    PROG_TCP_ESTABLISHED_SEED, STAT_TCP_ESTABLISHED_UNTRACKED, STAT_TCP_MAP_FULL,
    STAT_TCP_UNREADABLE, TCP_ACCEPTS, TCP_CONNECT_OK, TCP_CONNECT_OTHER, TCP_CONNECT_REFUSED,
    TCP_CONNECT_TIMEOUT, TCP_COUNTERS_ENTRIES, TCP_ESTABLISHED_CLOSED, TCP_ESTABLISHED_OPENED,
    TCP_RESETS_RECEIVED, TCP_RESETS_SENT, TCP_RETRANS_SEGS, TCP_RTT_BUCKETS, TCP_RTT_ENTRIES,
    TcpCounters,
};

use super::{Pass, Source};
use crate::{
    ebpf::Probes,
    snapshot::{AgentStats, ContainerSample, TcpHealth, TcpKindHealth},
};
use drain::{Rtt, TcpDrain};

pub struct Tcp {
    /// The last successful drain, by socket cgroup id.
    last: TcpDrain,
    drained: Option<TcpDrain>,
    /// This pass's figures per exported cgroup.
    shown: HashMap<u64, TcpHealth>,
    health: TcpKindHealth,
    /// The seed walked: the established count is served.
    established: bool,
}

impl Tcp {
    /// `None` when the programs are not all attached (the kind is then absent, not zero).
    pub fn new(probes: &mut Probes) -> Option<Tcp> {
        // Whatever became of the walk, its mark must not outlive it: while it is set, each close
        // of a connection the kernel does not remember leaves a tombstone in the hash.
        let ended = drain::end_seed(&mut probes.ebpf);
        let attached = programs::PROGRAMS
            .iter()
            .filter(|p| probes.is_attached(p))
            .count();
        if attached != programs::PROGRAMS.len() {
            if attached > 0 {
                tracing::warn!("not all four TCP programs attached; TCP health is not measured");
            }
            return None;
        }
        let established = probes.is_attached(PROG_TCP_ESTABLISHED_SEED)
            && match ended {
                Ok(tombstones) => {
                    tracing::debug!(tombstones, "established TCP connections seeded");
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %e, "failed to end the seed of established TCP connections; their count is not served");
                    false
                }
            };
        Some(Tcp {
            established,
            last: TcpDrain::default(),
            drained: None,
            shown: HashMap::new(),
            health: TcpKindHealth {
                map_capacity: u64::from(TCP_COUNTERS_ENTRIES + TCP_RTT_ENTRIES),
                ..TcpKindHealth::default()
            },
        })
    }
}

/// The kernel's slots, named; added into `h` (a folded cgroup's into its exported ancestor's).
/// The established count is opened less closed, both of which only grow (so a cgroup's sum over
/// CPUs, and over folded cgroups, is exact); `established` says whether it is served.
fn add(h: &mut TcpHealth, c: &TcpCounters, established: bool) {
    let at = |slot: u32| c.counts.get(slot as usize).copied().unwrap_or(0);
    for (field, slot) in [
        (&mut h.retransmits, TCP_RETRANS_SEGS),
        (&mut h.resets_sent, TCP_RESETS_SENT),
        (&mut h.resets_received, TCP_RESETS_RECEIVED),
        (&mut h.connects_ok, TCP_CONNECT_OK),
        (&mut h.connects_refused, TCP_CONNECT_REFUSED),
        (&mut h.connects_timeout, TCP_CONNECT_TIMEOUT),
        (&mut h.connects_other, TCP_CONNECT_OTHER),
        (&mut h.accepts, TCP_ACCEPTS),
    ] {
        *field = field.saturating_add(at(slot));
    }
    if established {
        let now = at(TCP_ESTABLISHED_OPENED).saturating_sub(at(TCP_ESTABLISHED_CLOSED));
        h.established = Some(h.established.unwrap_or(0).saturating_add(now));
    }
}

/// `r`'s round trips added into `h`.
fn add_rtt(h: &mut TcpHealth, r: &Rtt) {
    if h.rtt_buckets.is_empty() {
        h.rtt_buckets = vec![0; TCP_RTT_BUCKETS as usize];
    }
    for (a, b) in h.rtt_buckets.iter_mut().zip(&r.buckets) {
        *a = a.saturating_add(*b);
    }
    h.rtt_sum_us = h.rtt_sum_us.saturating_add(r.sum_us);
    h.rtt_count = h.rtt_count.saturating_add(r.count);
}

impl Source for Tcp {
    fn drain(&mut self, probes: &Probes, stats: &mut AgentStats) {
        self.drained = drain::drain(&probes.ebpf)
            .map_err(|e| {
                stats.drain_errors += 1;
                tracing::warn!(error = %e, "failed to drain the TCP map; its figures are held this pass");
            })
            .ok();
    }

    fn account(&mut self, probes: &mut Probes, pass: &mut Pass<'_>) {
        if let Some(d) = self.drained.take() {
            // Drained before the walk: a cgroup the walk did not find is a removed one.
            let gone: Vec<u64> = d
                .counters
                .keys()
                .chain(d.rtt.keys())
                .filter(|id| !pass.tree.contains(**id))
                .copied()
                .collect::<std::collections::BTreeSet<u64>>()
                .into_iter()
                .collect();
            match drain::forget(&mut probes.ebpf, &gone, &d) {
                Ok(n) => self.health.entries_forgotten += n,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to delete TCP entries of removed cgroups")
                }
            }
            self.health.map_entries = d.entries;
            self.last = d;
        }
        for (field, slot) in [
            (&mut self.health.map_full, STAT_TCP_MAP_FULL),
            (&mut self.health.unreadable, STAT_TCP_UNREADABLE),
            (
                &mut self.health.established_untracked,
                STAT_TCP_ESTABLISHED_UNTRACKED,
            ),
        ] {
            if let Ok(v) = probes.stat(slot) {
                *field = v;
            }
        }
        let mut shown: HashMap<u64, TcpHealth> = HashMap::new();
        // A cgroup not in the walk was removed (its entry was just deleted): shown under none.
        let live = |id: &&u64| pass.tree.contains(**id);
        for (id, c) in self.last.counters.iter().filter(|(id, _)| live(id)) {
            add(
                shown.entry(pass.tree.charged_to(*id)).or_default(),
                c,
                self.established,
            );
        }
        for (id, r) in self.last.rtt.iter().filter(|(id, _)| live(id)) {
            add_rtt(shown.entry(pass.tree.charged_to(*id)).or_default(), r);
        }
        self.shown = shown;
        pass.stats.tcp = Some(self.health);
    }

    fn fill(&mut self, _: &mut Probes, containers: &mut [ContainerSample], _: &mut Pass<'_>) {
        for c in containers {
            let mut t = self.shown.remove(&c.cgroup_id).unwrap_or_default();
            if self.established && t.established.is_none() {
                t.established = Some(0);
            }
            c.tcp = Some(t);
        }
    }
}

/// The cgroup's TCP figures for the JSON extension (`null` when the kind is off).
pub fn json(c: &ContainerSample) -> serde_json::Value {
    let Some(t) = c.tcp.as_ref() else {
        return serde_json::Value::Null;
    };
    serde_json::json!({
        "retransmits": t.retransmits,
        "resets_sent": t.resets_sent,
        "resets_received": t.resets_received,
        "connects": {
            "ok": t.connects_ok,
            "refused": t.connects_refused,
            "timeout": t.connects_timeout,
            "other": t.connects_other,
        },
        "accepts": t.accepts,
        "established": t.established,
        "rtt_sum_seconds": t.rtt_sum_us as f64 * 1e-6,
        "rtt_count": t.rtt_count,
        "rtt_buckets": super::log2_buckets(&t.rtt_buckets),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_values_sum_into_named_figures() {
        let mut a = TcpCounters::default();
        a.counts[TCP_RETRANS_SEGS as usize] = 3;
        a.counts[TCP_CONNECT_REFUSED as usize] = 1;
        let mut b = TcpCounters::default();
        b.counts[TCP_RETRANS_SEGS as usize] = u64::MAX;
        b.counts[TCP_ACCEPTS as usize] = 2;
        let total = drain::sum_counters(&[a, b]);
        let mut h = TcpHealth::default();
        add(&mut h, &total, false);
        add(&mut h, &a, false);
        assert_eq!(h.retransmits, u64::MAX, "saturates, never wraps");
        assert_eq!((h.connects_refused, h.accepts), (2, 2));
        assert_eq!(h.connects_ok + h.resets_sent + h.connects_timeout, 0);
        assert_eq!(h.established, None, "not served without the seed");
    }

    #[test]
    fn established_is_opened_less_closed_over_cpus_and_folded_cgroups() {
        let counters = |opened, closed| {
            let mut c = TcpCounters::default();
            c.counts[TCP_ESTABLISHED_OPENED as usize] = opened;
            c.counts[TCP_ESTABLISHED_CLOSED as usize] = closed;
            c
        };
        // Opened on one CPU, closed on another: only the sum means anything.
        let total = drain::sum_counters(&[counters(5, 0), counters(0, 3)]);
        let mut h = TcpHealth::default();
        add(&mut h, &total, true);
        assert_eq!(h.established, Some(2));
        // A folded child cgroup's connections add to its ancestor's.
        add(&mut h, &counters(4, 4), true);
        add(&mut h, &counters(1, 0), true);
        assert_eq!(h.established, Some(3));
        // More closes than opens cannot be (each close was an open), and never shows negative.
        let mut odd = TcpHealth::default();
        add(&mut odd, &counters(1, 2), true);
        assert_eq!(odd.established, Some(0));
    }
}
