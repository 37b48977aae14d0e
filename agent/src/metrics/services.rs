//! Per-service series of Docker hosts: the tasks of each Swarm service and the containers of
//! each Compose service running on this node, counted from the labels Docker puts on every task
//! and container. Joinable with the container series, which carry the same values as
//! `container_label_com_docker_*` in the standalone label set, and a per-service count with no
//! `count(count(...) by ...)` over a family that happens to have one series per container.
//!
//! Bounded by the containers of the pass: one series per distinct service among them.
use std::collections::BTreeMap;

use crate::snapshot::ContainerSample;

const SWARM_SERVICE: &str = "com.docker.swarm.service.name";
const SWARM_NODE: &str = "com.docker.swarm.node.id";
const STACK: &str = "com.docker.stack.namespace";
const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// One family's series: label pairs (sorted by name) and the count.
pub type Series = Vec<(Vec<(&'static str, String)>, f64)>;

pub struct ServiceFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub series: fn(&[&ContainerSample]) -> Series,
}

pub static SERVICE_FAMILIES: &[ServiceFamily] = &[
    ServiceFamily {
        name: "nodetel_swarm_service_tasks",
        help: "Tasks of a Swarm service on this node: its containers that have a cgroup (started or starting).",
        series: swarm_tasks,
    },
    ServiceFamily {
        name: "nodetel_compose_service_containers",
        help: "Containers of a Compose service on this node that have a cgroup (started or starting).",
        series: compose_containers,
    },
];

fn label<'a>(c: &'a ContainerSample, key: &str) -> Option<&'a str> {
    c.identity.labels.get(key).map(String::as_str)
}

fn count<K: Ord>(keys: impl Iterator<Item = K>) -> BTreeMap<K, u64> {
    let mut out = BTreeMap::new();
    for k in keys {
        *out.entry(k).or_insert(0) += 1;
    }
    out
}

fn swarm_tasks(containers: &[&ContainerSample]) -> Series {
    let keys = containers.iter().filter_map(|c| {
        let service = label(c, SWARM_SERVICE)?;
        Some((
            label(c, SWARM_NODE).unwrap_or(""),
            service,
            label(c, STACK).unwrap_or(""),
        ))
    });
    count(keys)
        .into_iter()
        .map(|((node, service, stack), n)| {
            let labels = vec![
                ("node_id", node.to_string()),
                ("service", service.to_string()),
                ("stack", stack.to_string()),
            ];
            (labels, n as f64)
        })
        .collect()
}

fn compose_containers(containers: &[&ContainerSample]) -> Series {
    let keys = containers
        .iter()
        .filter_map(|c| Some((label(c, COMPOSE_PROJECT)?, label(c, COMPOSE_SERVICE)?)));
    count(keys)
        .into_iter()
        .map(|((project, service), n)| {
            let labels = vec![
                ("project", project.to_string()),
                ("service", service.to_string()),
            ];
            (labels, n as f64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use super::*;

    fn container(labels: &[(&str, &str)]) -> ContainerSample {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ContainerSample {
            identity: Arc::new(crate::identity::Identity {
                labels: Arc::new(labels),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn tasks_are_counted_per_service_and_node_and_unlabelled_containers_ignored() {
        let task = |service: &str, stack: &str| {
            container(&[
                (SWARM_SERVICE, service),
                (STACK, stack),
                (SWARM_NODE, "n1"),
                ("com.docker.swarm.task.name", "x"),
            ])
        };
        let all = [
            task("shop_web", "shop"),
            task("shop_web", "shop"),
            task("shop_db", "shop"),
            // A service created with `docker service create`: no stack.
            container(&[(SWARM_SERVICE, "lone"), (SWARM_NODE, "n1")]),
            container(&[("other", "1")]),
            container(&[(COMPOSE_PROJECT, "blog"), (COMPOSE_SERVICE, "app")]),
            container(&[(COMPOSE_PROJECT, "blog"), (COMPOSE_SERVICE, "app")]),
            // Half a compose label set names no service.
            container(&[(COMPOSE_PROJECT, "blog")]),
        ];
        let refs: Vec<&ContainerSample> = all.iter().collect();
        let swarm = swarm_tasks(&refs);
        let find = |s: &Series, service: &str| {
            s.iter()
                .find(|(l, _)| l.iter().any(|(k, v)| *k == "service" && v == service))
                .map(|(l, n)| (l.clone(), *n))
        };
        assert_eq!(swarm.len(), 3);
        let (labels, n) = find(&swarm, "shop_web").expect("shop_web");
        assert_eq!(n, 2.0);
        assert_eq!(
            labels,
            vec![
                ("node_id", "n1".to_string()),
                ("service", "shop_web".to_string()),
                ("stack", "shop".to_string())
            ]
        );
        assert_eq!(find(&swarm, "lone").map(|x| x.1), Some(1.0));
        let compose = compose_containers(&refs);
        assert_eq!(compose.len(), 1);
        assert_eq!(find(&compose, "app").map(|x| x.1), Some(2.0));
        assert!(swarm_tasks(&[]).is_empty());
    }
}
