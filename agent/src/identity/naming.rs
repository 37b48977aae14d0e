//! Names every cgroup of a pass. Runs on the collector's thread; the registry it reads is filled
//! by the resolvers in the background.
//!
//! Names are cached per cgroup id and dropped whenever the registry changes, so a steady node
//! costs one hash lookup per cgroup per pass. A cgroup id is an inode number the kernel does not
//! reuse while the agent runs, and the cache also checks the path, so a name can never stay
//! attached to a different cgroup.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    Identity, K8S_CONTAINER_NAME, K8S_POD_NAME, K8S_POD_NAMESPACE, Registry, path,
    registry::ContainerMeta,
};
use crate::snapshot::ContainerSample;

/// Unresolved names are retried this often even when nothing changes in the registry (a
/// resolver that was down may know them now).
const REFRESH_UNRESOLVED: Duration = Duration::from_secs(30);

pub struct Namer {
    registry: Arc<Registry>,
    containerd_namespaces: Vec<String>,
    cache: HashMap<u64, (String, Arc<Identity>)>,
    generation: u64,
    refreshed: Instant,
    pods: HashMap<String, (String, String)>,
}

impl Namer {
    pub fn new(registry: Arc<Registry>, containerd_namespaces: Vec<String>) -> Self {
        Namer {
            registry,
            containerd_namespaces,
            cache: HashMap::new(),
            generation: 0,
            refreshed: Instant::now(),
            pods: HashMap::new(),
        }
    }

    /// Whether the cgroup at `path` is a runtime's container (cAdvisor's `--docker_only`).
    pub fn is_container(&self, path: &str) -> bool {
        self.container_of(path).is_some()
    }

    /// The runtime and container id a cgroup path names, if it is a container's.
    pub fn container_of<'p>(&self, path: &'p str) -> Option<(path::Runtime, &'p str)> {
        path::parse(path, &self.containerd_namespaces).container
    }

    pub fn name(&mut self, containers: &mut [ContainerSample]) {
        let generation = self.registry.generation();
        if generation != self.generation || self.refreshed.elapsed() >= REFRESH_UNRESOLVED {
            self.cache.clear();
            self.pods = self.registry.pod_index();
            self.generation = generation;
            self.refreshed = Instant::now();
        }
        for c in containers.iter_mut() {
            if let Some((path, identity)) = self.cache.get(&c.cgroup_id)
                && *path == c.path
            {
                c.identity = Arc::clone(identity);
                continue;
            }
            let info = path::parse(&c.path, &self.containerd_namespaces);
            let identity = Arc::new(self.resolve(&info));
            self.cache
                .insert(c.cgroup_id, (c.path.clone(), Arc::clone(&identity)));
            c.identity = identity;
        }
        // Wanted ids of cgroups that are gone are not looked up any more.
        if self.registry.has_wanted() {
            let live_ids: HashSet<&str> = containers
                .iter()
                .filter_map(|c| path::parse(&c.path, &self.containerd_namespaces).container)
                .map(|(_, id)| id)
                .collect();
            self.registry.retain_wanted(&live_ids);
        }
        let live: HashSet<u64> = containers.iter().map(|c| c.cgroup_id).collect();
        self.cache.retain(|id, _| live.contains(id));
        crate::prune::shrink(&mut self.cache);
    }

    fn resolve(&self, info: &path::PathInfo<'_>) -> Identity {
        let pod_uid = info.pod_uid();
        let pod = pod_uid.as_ref().and_then(|uid| self.pods.get(uid));
        let Some((runtime, id)) = info.container else {
            // Pod cgroups get the pod and namespace (from the UID in their path) and nothing
            // else: an empty image is how recording rules tell them from containers.
            return match pod {
                Some((name, ns)) if info.is_pod() => Identity {
                    pod: name.clone(),
                    namespace: ns.clone(),
                    ..Identity::default()
                },
                _ => Identity::default(),
            };
        };
        match self.registry.lookup(id) {
            Some(meta) => from_meta(&meta, pod),
            None => {
                self.registry.want(runtime, id);
                // Until the runtime answers, a container in a known pod is at least in its pod.
                pod.map(|(name, ns)| Identity {
                    pod: name.clone(),
                    namespace: ns.clone(),
                    ..Identity::default()
                })
                .unwrap_or_default()
            }
        }
    }
}

fn from_meta(meta: &ContainerMeta, pod: Option<&(String, String)>) -> Identity {
    let label = |k: &str| meta.labels.get(k).cloned();
    Identity {
        name: meta.name.clone(),
        image: meta.image.clone(),
        container: label(K8S_CONTAINER_NAME).unwrap_or_default(),
        pod: label(K8S_POD_NAME)
            .or_else(|| pod.map(|p| p.0.clone()))
            .unwrap_or_default(),
        namespace: label(K8S_POD_NAMESPACE)
            .or_else(|| pod.map(|p| p.1.clone()))
            .unwrap_or_default(),
        labels: Arc::clone(&meta.labels),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::identity::{K8S_POD_UID, Source};

    const UID: &str = "0a1b2c3d-1111-2222-3333-444455556666";
    const ID: &str = "1f7b20c02c4037e5c1b9ef2c299804311464a64c29112c1b7d1aa0702a63e8f4";

    fn sample(cgroup_id: u64, path: &str) -> ContainerSample {
        ContainerSample {
            cgroup_id,
            path: path.into(),
            ..ContainerSample::default()
        }
    }

    fn k8s_meta() -> ContainerMeta {
        ContainerMeta {
            name: ID.into(),
            image: "docker.io/library/nginx:1.27".into(),
            labels: Arc::new(BTreeMap::from(
                [
                    (K8S_POD_UID, UID),
                    (K8S_POD_NAME, "web-0"),
                    (K8S_POD_NAMESPACE, "prod"),
                    (K8S_CONTAINER_NAME, "nginx"),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string())),
            )),
        }
    }

    #[test]
    fn containers_pods_and_slices() {
        let registry = Arc::new(Registry::default());
        let mut namer = Namer::new(Arc::clone(&registry), vec!["k8s.io".into()]);
        let pod_path = format!("/kubepods/burstable/pod{UID}");
        let mut cs = vec![
            sample(1, "/"),
            sample(2, "/kubepods/burstable"),
            sample(3, &pod_path),
            sample(4, &format!("{pod_path}/{ID}")),
        ];
        namer.name(&mut cs);
        assert!(cs.iter().all(|c| *c.identity == Identity::default()));
        // The collector asked for the container it could not name.
        assert_eq!(registry.take_wanted(Source::Containerd), [ID]);

        registry.upsert(Source::Containerd, ID, k8s_meta());
        namer.name(&mut cs);
        assert_eq!(*cs[0].identity, Identity::default());
        assert_eq!(*cs[1].identity, Identity::default());
        let pod = &cs[2].identity;
        assert_eq!(
            (pod.pod.as_str(), pod.namespace.as_str(), pod.image.as_str()),
            ("web-0", "prod", "")
        );
        let c = &cs[3].identity;
        assert_eq!(
            (c.name.as_str(), c.image.as_str(), c.container.as_str()),
            (ID, "docker.io/library/nginx:1.27", "nginx")
        );
        assert_eq!((c.pod.as_str(), c.namespace.as_str()), ("web-0", "prod"));
    }

    /// A namer whose registry knows one Docker container, `web`.
    fn docker_web() -> (Arc<Registry>, Namer) {
        let registry = Arc::new(Registry::default());
        let namer = Namer::new(Arc::clone(&registry), vec![]);
        registry.upsert(
            Source::Docker,
            ID,
            ContainerMeta {
                name: "web".into(),
                ..ContainerMeta::default()
            },
        );
        (registry, namer)
    }

    #[test]
    fn a_new_cgroup_under_a_cached_id_is_named_afresh() {
        let (_registry, mut namer) = docker_web();
        let mut cs = vec![sample(7, &format!("/docker/{ID}"))];
        namer.name(&mut cs);
        assert_eq!(cs[0].identity.name, "web");
        // Same id number, different path: never the old name.
        let mut cs = vec![sample(7, "/system.slice/cron.service")];
        namer.name(&mut cs);
        assert_eq!(*cs[0].identity, Identity::default());
    }

    /// A CRI-O node: no resolver of ours talks to CRI-O, so names come from the kubelet's pod
    /// statuses, for the container and (by its UID) for the pod cgroup; the sandbox, which the
    /// kubelet does not list, is at least in its pod.
    #[test]
    fn crio_containers_are_named_from_the_kubelet() {
        use crate::identity::kubelet::{PodContainer, PodInfo};
        let registry = Arc::new(Registry::default());
        let mut namer = Namer::new(Arc::clone(&registry), vec![]);
        let sandbox = "9".repeat(64);
        let slice = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
            UID.replace('-', "_")
        );
        let mut cs = vec![
            sample(1, &slice),
            sample(2, &format!("{slice}/crio-{ID}.scope")),
            sample(3, &format!("{slice}/crio-{sandbox}.scope")),
        ];
        namer.name(&mut cs);
        assert!(cs.iter().all(|c| *c.identity == Identity::default()));
        let pod = PodInfo {
            uid: UID.into(),
            name: "web-0".into(),
            namespace: "prod".into(),
            owner_kind: String::new(),
            owner_name: String::new(),
            node: "n".into(),
            containers: vec![PodContainer {
                id: ID.into(),
                runtime: "cri-o".into(),
                name: "nginx".into(),
                image: "docker.io/library/nginx:1.27".into(),
                restart_count: 0,
            }],
        };
        registry.set_pods(vec![pod]);
        namer.name(&mut cs);
        let p = &cs[0].identity;
        assert_eq!(
            (p.pod.as_str(), p.namespace.as_str(), p.image.as_str()),
            ("web-0", "prod", "")
        );
        let c = &cs[1].identity;
        assert_eq!(
            (c.name.as_str(), c.image.as_str(), c.container.as_str()),
            (
                format!("k8s_nginx_web-0_prod_{UID}_0").as_str(),
                "docker.io/library/nginx:1.27",
                "nginx"
            )
        );
        assert_eq!((c.pod.as_str(), c.namespace.as_str()), ("web-0", "prod"));
        let s = &cs[2].identity;
        assert_eq!(
            (s.name.as_str(), s.pod.as_str(), s.container.as_str()),
            ("", "web-0", "")
        );
        // A runtime that describes the container wins over the kubelet.
        registry.upsert(Source::Containerd, ID, k8s_meta());
        namer.name(&mut cs);
        assert_eq!(cs[1].identity.name, ID);
        // The pod gone from the kubelet's list: the container loses its name.
        registry.remove(Source::Containerd, ID);
        registry.set_pods(vec![]);
        namer.name(&mut cs);
        assert_eq!(*cs[1].identity, Identity::default());
    }

    #[test]
    fn removed_containers_lose_their_names() {
        let (registry, mut namer) = docker_web();
        let mut cs = vec![sample(7, &format!("/docker/{ID}"))];
        namer.name(&mut cs);
        registry.remove(Source::Docker, ID);
        namer.name(&mut cs);
        assert_eq!(cs[0].identity.name, "");
    }
}
