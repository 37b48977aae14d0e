//! How cgroups get their names and which label set their series carry.
use std::sync::Arc;

use crate::snapshot::{AgentStats, ContainerSample, LabelMode};

pub struct Naming {
    pub namer: crate::identity::Namer,
    pub registry: Arc<crate::identity::Registry>,
    /// The resolvers running, for their health series.
    pub sources: Vec<crate::identity::Source>,
    pub labels: crate::metrics::LabelChoice,
    /// `--docker-only`: only runtime containers, the root and these raw cgroup prefixes.
    pub only_containers: Option<Vec<String>>,
}

impl Naming {
    /// Names the samples and picks this pass's label set; with `--docker-only`, leaves out what
    /// is neither a runtime container, the root, nor under one of its raw prefixes.
    pub fn apply(&mut self, containers: &mut Vec<ContainerSample>) -> Arc<LabelMode> {
        self.namer.name(containers);
        // Before `--docker-only` leaves the pod cgroups out: the kubelet's own cgroup says it.
        let labels = self.labels.for_pass(|| {
            containers.iter().any(|c| {
                c.path == "/kubepods" || c.path == "/kubepods.slice" || !c.identity.pod.is_empty()
            })
        });
        if let Some(prefixes) = &self.only_containers {
            containers.retain(|c| {
                c.path == "/"
                    || self.namer.is_container(&c.path)
                    || prefixes.iter().any(|p| under(&c.path, p))
            });
        }
        labels
    }

    /// The resolvers' health and the kubelet's pods, into the agent's figures.
    pub fn report(&self, stats: &mut AgentStats) {
        stats.identity = self.registry.stats(&self.sources);
        stats.pods = self.registry.pods();
    }
}

/// `path` is `prefix` or below it, by whole segments (`/a` covers `/a/b`, not `/ab`).
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/') || prefix.is_empty())
}

#[cfg(test)]
mod tests {
    use super::under;

    #[test]
    fn raw_cgroup_prefixes_match_whole_segments() {
        assert!(under("/system.slice/kubelet.service", "/system.slice"));
        assert!(under("/system.slice", "/system.slice/"));
        assert!(!under("/system.slices", "/system.slice"));
        assert!(under("/anything", "/"));
    }
}
