//! The `cpu` kind: on-CPU ns per cgroup from the context-switch program (agent-ebpf/src/cpu.rs),
//! summed up the tree. Its figures also decide which cgroups are quiet: a cgroup whose total did
//! not move had no task running, so nothing in its cgroupfs files that needs one can have changed.
pub mod account;
pub mod drain;
pub mod families;

use std::collections::HashMap;

use nodetel_common::{MAP_CPU_NS, PROG_CGROUP_ATTACH, PROG_SCHED_SWITCH, PROG_SCHED_SWITCH_FLOOR};

use super::{Pass, Source};
use crate::{
    ebpf::{Attach, KindPrograms, Probes},
    snapshot::{AgentStats, ContainerSample},
};
use account::CpuAccountant;
use drain::CpuDrain;

/// Migration first: attached after `sched_switch`, a move in between would be missed.
/// `floor`: the empty `sched_switch_floor` in place of `sched_switch` (benchmarking only).
pub fn programs(floor: bool) -> KindPrograms {
    let switch = if floor {
        PROG_SCHED_SWITCH_FLOOR
    } else {
        PROG_SCHED_SWITCH
    };
    KindPrograms {
        programs: vec![
            (PROG_CGROUP_ATTACH, Attach::Btf("cgroup_attach_task")),
            (switch, Attach::Btf("sched_switch")),
        ],
        global: None,
    }
}

pub struct Cpu {
    /// The switch program is attached: without it there are no figures (and no quiet cgroups).
    counting: bool,
    /// The `cpu` kind is on: the figures are put on the samples.
    shown: bool,
    accountant: CpuAccountant,
    /// This pass's drain; `None` when it failed (the totals are then held).
    drained: Option<CpuDrain>,
    /// Hierarchical CPU ns of the last successful drain.
    totals: HashMap<u64, u64>,
}

impl Cpu {
    pub fn new(probes: &Probes, shown: bool) -> Cpu {
        Cpu {
            counting: probes.is_attached(PROG_SCHED_SWITCH),
            shown,
            accountant: CpuAccountant::default(),
            drained: None,
            totals: HashMap::new(),
        }
    }
}

impl Source for Cpu {
    fn drain(&mut self, probes: &Probes, stats: &mut AgentStats) {
        self.drained = match drain::drain(&probes.ebpf) {
            Ok(d) => {
                stats.kernel.switches = d.switches;
                Some(d)
            }
            Err(e) => {
                stats.drain_errors += 1;
                tracing::warn!(error = %e, "failed to drain the CPU map; CPU usage is held this pass");
                None
            }
        };
    }

    fn account(&mut self, probes: &mut Probes, pass: &mut Pass<'_>) {
        let Some(drain) = self.drained.take() else {
            return;
        };
        pass.stats.cpu_map_entries = drain.committed.len() as u64;
        let update = self.accountant.update(pass.tree, &drain);
        if self.counting {
            let unchanged = |id: &u64| update.totals.get(id) == self.totals.get(id);
            pass.quiet
                .extend(pass.tree.cgroups.iter().map(|c| c.id).filter(unchanged));
        }
        match probes.forget_cgroups(MAP_CPU_NS, &update.forget) {
            Ok(n) => pass.stats.map_entries_forgotten += n as u64,
            Err(e) => tracing::warn!(error = %e, "failed to delete map entries of removed cgroups"),
        }
        self.totals = update.totals;
    }

    fn fill(&mut self, _: &mut Probes, containers: &mut [ContainerSample], _: &mut Pass<'_>) {
        if self.shown && self.counting {
            for c in containers {
                c.cpu_usage_ns = self.totals.get(&c.cgroup_id).copied();
            }
        }
    }
}
