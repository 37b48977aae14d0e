//! The `network` kind: per-container interface figures, from each namespace's device counters
//! and the bytes each cgroup's sockets passed (the cgroup_skb programs, agent-ebpf/src/net.rs);
//! who gets which figures is in `reader`.
pub mod families;
pub mod netdev;
pub mod netns;
pub mod reader;
mod share;
pub mod traffic;

use std::{path::PathBuf, time::Instant};

use nodetel_common::{PROG_NET_EGRESS, PROG_NET_INGRESS};

use super::{Pass, Source};
use crate::{
    ebpf::{Attach, KindPrograms, Probes},
    snapshot::{AgentStats, ContainerSample},
};
use reader::NetworkReader;
use traffic::Traffic;

/// Both directions, on the cgroup v2 root.
pub fn programs() -> KindPrograms {
    use aya::programs::CgroupSkbAttachType::{Egress, Ingress};
    KindPrograms {
        programs: vec![
            (PROG_NET_INGRESS, Attach::CgroupSkb(Ingress)),
            (PROG_NET_EGRESS, Attach::CgroupSkb(Egress)),
        ],
        global: None,
    }
}

pub struct Network {
    reader: NetworkReader,
    /// Both traffic programs are attached, so a missing key means no traffic.
    counting: bool,
    /// Traffic per cgroup and device as of the last successful drain (cumulative).
    traffic: Traffic,
    /// This pass's drain and the map's entry count; `None` when it failed or is not counted.
    drained: Option<(Traffic, u64)>,
}

impl Network {
    pub fn new(probes: &Probes, proc_root: PathBuf) -> Network {
        Network {
            reader: NetworkReader::new(proc_root, probes.loopback),
            counting: probes.is_attached(PROG_NET_INGRESS) && probes.is_attached(PROG_NET_EGRESS),
            traffic: Traffic::new(),
            drained: None,
        }
    }
}

impl Source for Network {
    /// Devices first, the traffic map after the other kinds' drains: packets a device has passed
    /// on are in its sockets' counters by then (see `NetworkReader::read_devices_early`).
    fn prepare(&mut self) {
        self.reader.read_devices_early();
    }

    fn drain(&mut self, probes: &Probes, stats: &mut AgentStats) {
        if !self.counting {
            return;
        }
        self.drained = traffic::drain(&probes.ebpf)
            .map_err(|e| {
                stats.drain_errors += 1;
                tracing::warn!(error = %e, "failed to drain the traffic map; network bytes are held this pass");
            })
            .ok();
    }

    fn account(&mut self, probes: &mut Probes, pass: &mut Pass<'_>) {
        let Some((traffic, entries)) = self.drained.take() else {
            return;
        };
        pass.stats.net_map_entries = entries;
        // Drained before the walk. A removed cgroup's bytes are gone with it (its series stop),
        // so deleting them loses nothing that is still served.
        let gone: Vec<u64> = traffic
            .keys()
            .filter(|id| !pass.tree.contains(**id))
            .copied()
            .collect();
        let gone = traffic::entries_of(&traffic, &gone);
        match traffic::forget(&mut probes.ebpf, &gone) {
            Ok(n) => pass.stats.net_entries_forgotten += n as u64,
            Err(e) => {
                tracing::warn!(error = %e, "failed to delete traffic entries of removed cgroups")
            }
        }
        self.traffic = traffic;
    }

    fn fill(
        &mut self,
        probes: &mut Probes,
        containers: &mut [ContainerSample],
        pass: &mut Pass<'_>,
    ) {
        // Folded cgroups' own traffic is shown as their exported ancestor's.
        let folded;
        let all = if pass.tree.has_folded() {
            folded = traffic::fold(&self.traffic, |id| pass.tree.charged_to(id));
            &folded
        } else {
            &self.traffic
        };
        self.reader.fill(containers, self.counting.then_some(all));
        if self.counting {
            // Entries of removed devices (already left out of this pass's figures).
            let dead = self.reader.dead_traffic(&self.traffic, Instant::now());
            match traffic::forget(&mut probes.ebpf, &dead) {
                Ok(n) => pass.stats.net_entries_forgotten += n as u64,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to delete traffic entries of removed devices")
                }
            }
        }
        pass.stats.network = self.reader.stats();
    }
}
