//! The labels every container series carries, per label mode.
//!
//! `kubelet` is exactly the kubelet's `/metrics/cadvisor` set, so kube-prometheus dashboards and
//! alerts work unchanged. `standalone` is standalone cAdvisor's: `id, name, image` plus one
//! `container_label_<key>` per runtime label, the union over all containers (blank where a
//! container lacks it), limited to an allow-list when one is given because every label key
//! becomes a label on every series. `auto` (the default) is the kubelet's on a Kubernetes node
//! and standalone cAdvisor's elsewhere (see [`LabelChoice`]).
use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use crate::snapshot::ContainerSample;
pub use crate::snapshot::LabelMode;

const LABEL_PREFIX: &str = "container_label_";

/// The labels Docker puts on Swarm tasks and Compose containers, which the per-service and
/// per-stack dashboards of that audience group by: kept by `auto` on a Docker host whatever
/// `--whitelisted-container-labels` says.
pub const SWARM_AND_COMPOSE: &[&str] = &[
    "com.docker.swarm.service.name",
    "com.docker.swarm.task.name",
    "com.docker.swarm.node.id",
    "com.docker.stack.namespace",
    "com.docker.compose.project",
    "com.docker.compose.service",
];

/// `--label-mode`: one set for good, or `auto`'s choice per host.
#[derive(Debug)]
pub enum LabelChoice {
    Fixed(Arc<LabelMode>),
    /// The kubelet's set once the host shows Kubernetes, standalone cAdvisor's until then.
    Auto {
        kubelet: Arc<LabelMode>,
        standalone: Arc<LabelMode>,
        on_kubernetes: bool,
    },
}

impl LabelChoice {
    /// `auto` with this standalone set; `kubernetes`: known to be a node already (the kubelet's
    /// URL was given).
    pub fn auto(standalone: LabelMode, kubernetes: bool) -> LabelChoice {
        LabelChoice::Auto {
            kubelet: Arc::new(LabelMode::Kubelet),
            standalone: Arc::new(standalone),
            on_kubernetes: kubernetes,
        }
    }

    /// The set for this pass. `kubernetes` says whether the host shows Kubernetes now (a
    /// `kubepods` cgroup, which the kubelet makes at start, or a container the kubelet
    /// labelled). The choice sticks once made: series never flip back and forth.
    pub fn for_pass(&mut self, kubernetes: impl FnOnce() -> bool) -> Arc<LabelMode> {
        match self {
            LabelChoice::Fixed(m) => Arc::clone(m),
            LabelChoice::Auto {
                kubelet,
                standalone,
                on_kubernetes,
            } => {
                if !*on_kubernetes && kubernetes() {
                    *on_kubernetes = true;
                    tracing::info!(
                        "label mode auto: a Kubernetes node, the kubelet's label set from now on"
                    );
                }
                Arc::clone(if *on_kubernetes { kubelet } else { standalone })
            }
        }
    }
}

/// The `container_label_*` names a standalone exposition carries (empty in kubelet mode).
pub(super) fn label_names(mode: &LabelMode, containers: &[&ContainerSample]) -> Vec<String> {
    let LabelMode::Standalone { whitelist } = mode else {
        return Vec::new();
    };
    let names: BTreeSet<String> = containers
        .iter()
        .flat_map(|c| c.identity.labels.keys())
        .filter(|k| allowed(whitelist, k))
        .map(|k| label_name(k))
        .collect();
    names.into_iter().collect()
}

/// One container's base labels, unsorted.
pub(super) fn base<'a>(
    mode: &LabelMode,
    names: &'a [String],
    c: &'a ContainerSample,
) -> Vec<(&'a str, &'a str)> {
    let id = &c.identity;
    match mode {
        LabelMode::Kubelet => vec![
            ("container", id.container.as_str()),
            ("id", c.path.as_str()),
            ("image", id.image.as_str()),
            ("name", id.name.as_str()),
            ("namespace", id.namespace.as_str()),
            ("pod", id.pod.as_str()),
        ],
        LabelMode::Standalone { whitelist } => {
            let mut labels = Vec::with_capacity(3 + names.len());
            labels.extend([
                ("id", c.path.as_str()),
                ("image", id.image.as_str()),
                ("name", id.name.as_str()),
            ]);
            // Two keys that sanitise alike (`a.b`, `a_b`): the first in key order wins.
            let mut values: HashMap<String, &str> = HashMap::new();
            for (k, v) in id.labels.iter().filter(|(k, _)| allowed(whitelist, k)) {
                values.entry(label_name(k)).or_insert(v.as_str());
            }
            labels.extend(
                names
                    .iter()
                    .map(|n| (n.as_str(), values.get(n).copied().unwrap_or(""))),
            );
            labels
        }
    }
}

fn allowed(whitelist: &Option<Vec<String>>, key: &str) -> bool {
    whitelist
        .as_ref()
        .is_none_or(|list| list.iter().any(|w| w == key))
}

/// `container_label_` + the key with every character outside `[a-zA-Z0-9_]` as `_`.
fn label_name(key: &str) -> String {
    let mut name = String::with_capacity(LABEL_PREFIX.len() + key.len());
    name.push_str(LABEL_PREFIX);
    name.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    name
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use super::*;
    use crate::identity::Identity;

    fn with_labels(path: &str, labels: &[(&str, &str)]) -> ContainerSample {
        ContainerSample {
            path: path.into(),
            identity: Arc::new(Identity {
                name: "web".into(),
                image: "nginx".into(),
                labels: Arc::new(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..Identity::default()
            }),
            ..ContainerSample::default()
        }
    }

    #[test]
    fn standalone_takes_the_union_and_sanitises() {
        let a = with_labels(
            "/docker/a",
            &[("io.kubernetes.pod.name", "p"), ("tier", "web")],
        );
        let b = with_labels("/docker/b", &[("app", "x")]);
        let mode = LabelMode::Standalone { whitelist: None };
        let names = label_names(&mode, &[&a, &b]);
        assert_eq!(
            names,
            [
                "container_label_app",
                "container_label_io_kubernetes_pod_name",
                "container_label_tier"
            ]
        );
        let got = base(&mode, &names, &b);
        assert!(got.contains(&("container_label_app", "x")));
        assert!(got.contains(&("container_label_tier", "")));
        assert!(
            !got.iter().any(|(k, _)| *k == "pod"),
            "standalone has no pod label"
        );
    }

    #[test]
    fn the_allow_list_limits_cardinality() {
        let a = with_labels("/docker/a", &[("app", "x"), ("build", "1234")]);
        let mode = LabelMode::Standalone {
            whitelist: Some(vec!["app".into()]),
        };
        let names = label_names(&mode, &[&a]);
        assert_eq!(names, ["container_label_app"]);
    }

    #[test]
    fn kubelet_mode_is_exactly_six_labels() {
        let a = with_labels("/docker/a", &[("app", "x")]);
        let mode = LabelMode::Kubelet;
        let names = label_names(&mode, &[&a]);
        let mut keys: Vec<_> = base(&mode, &names, &a).iter().map(|l| l.0).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["container", "id", "image", "name", "namespace", "pod"]
        );
    }
}
