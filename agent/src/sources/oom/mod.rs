//! The `oom_event` kind: OOM kills per victim cgroup, counted in the kernel when the victim is
//! both marked and sent SIGKILL (agent-ebpf/src/oom.rs), and each kill's record (victim, process,
//! the task that hit the limit) turned into cAdvisor's `oom` and `oomKill` events.
pub mod families;
pub mod records;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use aya::maps::{MapData, RingBuf};
use nodetel_common::{MAP_OOM_KILLS, OomKill, PROG_MARK_VICTIM, PROG_SIGNAL_GENERATE};

use super::{Pass, Source};
use crate::{
    ebpf::{Attach, KindPrograms, Probes, monotonic_ns},
    events::{Event, EventKind, Victim},
    snapshot::{AgentStats, ContainerSample},
};
use records::comm_str;

/// Passes a cgroup is read every pass after an OOM kill in it, whatever its CPU time says.
const SETTLE_PASSES: u32 = 5;

/// The SIGKILL recorder before `mark_victim`, which needs what it records. (The loader reads
/// `mark_victim`'s record layout from tracefs, and attaches neither without it.)
pub fn programs() -> KindPrograms {
    KindPrograms {
        programs: vec![
            (PROG_SIGNAL_GENERATE, Attach::Btf("signal_generate")),
            (PROG_MARK_VICTIM, Attach::Classic("oom", "mark_victim")),
        ],
        global: None,
    }
}

pub struct Oom {
    /// Both programs are attached, so a cgroup without a count had no kill.
    counting: bool,
    /// The `oom_event` kind is on: the counts are put on the samples.
    shown: bool,
    /// The kill records, written by the kernel as kills happen.
    ring: Option<RingBuf<MapData>>,
    /// This pass's counts and records.
    drained: Option<HashMap<u64, u64>>,
    records: Vec<OomKill>,
    /// Kills per victim cgroup as of the last drain (cumulative).
    totals: HashMap<u64, u64>,
    /// Cgroups with a recent kill, and how many more passes they are read whatever their CPU
    /// time says (see [`SETTLE_PASSES`]).
    unsettled: HashMap<u64, u32>,
}

impl Oom {
    pub fn new(probes: &mut Probes, shown: bool) -> Oom {
        let counting =
            probes.is_attached(PROG_SIGNAL_GENERATE) && probes.is_attached(PROG_MARK_VICTIM);
        Oom {
            counting,
            shown,
            ring: probes.oom_events.take(),
            drained: None,
            records: Vec::new(),
            totals: HashMap::new(),
            unsettled: HashMap::new(),
        }
    }

    /// Takes cgroups with a recent kill, and their ancestors, out of the quiet set: the victim's
    /// memory is freed by its exit and by the OOM reaper, whose CPU time is not the cgroup's, so
    /// an idle cgroup's memory can fall well after its last CPU tick.
    fn settle(&mut self, pass: &mut Pass<'_>) {
        for id in self.unsettled.keys() {
            let mut at = Some(*id);
            while let Some(c) = at {
                pass.quiet.remove(&c);
                at = pass.tree.get(c).and_then(|g| g.parent);
            }
        }
        self.unsettled.retain(|id, left| {
            *left -= 1;
            *left > 0 && pass.tree.contains(*id)
        });
    }
}

impl Source for Oom {
    fn drain(&mut self, probes: &Probes, _: &mut AgentStats) {
        self.drained = if self.counting {
            records::drain_counts(&probes.ebpf)
                .map_err(|e| tracing::warn!(error = %e, "failed to drain the OOM kill map"))
                .ok()
        } else {
            None
        };
        if let Some(ring) = &mut self.ring {
            self.records = records::take(ring);
        }
    }

    fn account(&mut self, probes: &mut Probes, pass: &mut Pass<'_>) {
        if let Some(kills) = self.drained.take() {
            // Drained before the walk: a key the walk did not find is a removed cgroup's.
            let gone: Vec<u64> = kills
                .keys()
                .filter(|id| !pass.tree.contains(**id))
                .copied()
                .collect();
            match probes.forget_cgroups(MAP_OOM_KILLS, &gone) {
                Ok(n) => pass.stats.oom_entries_forgotten += n as u64,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to delete OOM entries of removed cgroups")
                }
            }
            for (id, n) in &kills {
                if self.totals.get(id) != Some(n) {
                    self.unsettled.insert(*id, SETTLE_PASSES);
                }
            }
            self.totals = kills;
        }
        self.settle(pass);
        let records = std::mem::take(&mut self.records);
        for k in &records {
            record_kill(k, pass);
        }
    }

    /// Every cgroup has a count once both programs run: zero means none seen. Kills of a folded
    /// cgroup's tasks count for its exported ancestor.
    fn fill(&mut self, _: &mut Probes, containers: &mut [ContainerSample], pass: &mut Pass<'_>) {
        if !(self.shown && self.counting) {
            return;
        }
        let mut kills: HashMap<u64, u64> = HashMap::new();
        for (id, n) in &self.totals {
            *kills.entry(pass.tree.charged_to(*id)).or_default() += n;
        }
        for c in containers {
            c.oom_kills = Some(kills.get(&c.cgroup_id).copied().unwrap_or(0));
        }
    }
}

/// Names a kill's cgroups, logs it once, and adds cAdvisor's pair of events: `oom` where the
/// limit was hit (the allocating task's cgroup), `oomKill` where the victim was. A cgroup removed
/// before any walk saw it is reported at the root, as cAdvisor does, rather than under a guessed
/// name.
fn record_kill(k: &OomKill, pass: &Pass<'_>) {
    let path_of = |id: u64| {
        pass.tree
            .get(id)
            .or_else(|| pass.last_tree.get(id))
            .map(|c| c.path.as_str())
    };
    // Kernel times are CLOCK_MONOTONIC; events are stamped with the wall clock.
    let time = SystemTime::now() - Duration::from_nanos(monotonic_ns().saturating_sub(k.time_ns));
    let process_name = comm_str(&k.comm);
    let victim = path_of(k.victim_cgroup);
    let trigger = path_of(k.trigger_cgroup);
    tracing::info!(
        pid = k.victim_tgid,
        process = %process_name,
        container = victim.unwrap_or("(removed before it was seen)"),
        cgroup_id = k.victim_cgroup,
        triggered_by_pid = k.trigger_pid,
        triggered_in = trigger.unwrap_or("(unknown)"),
        "OOM kill"
    );
    let victim_at: Arc<str> = Arc::from(victim.unwrap_or("/"));
    let oom_at = trigger.map_or_else(|| Arc::clone(&victim_at), Arc::from);
    pass.events.add([
        Event {
            container: oom_at,
            time,
            kind: EventKind::Oom,
            victim: None,
        },
        Event {
            container: victim_at,
            time,
            kind: EventKind::OomKill,
            victim: Some(Victim {
                pid: k.victim_tgid,
                process_name,
            }),
        },
    ]);
}
