//! What the runtimes said about their containers, shared between the resolvers (async tasks that
//! talk to sockets) and the collector (a blocking thread that names cgroups every pass).
//!
//! Each resolver owns its own table, so a Docker resync never drops what containerd said. When
//! two know the same id (Docker's containers are also in containerd's `moby` namespace), the
//! runtime the user talks to wins: Docker, then Podman, then containerd, then CRI-O; the
//! kubelet's pod statuses come last.
//!
//! The collector asks for ids it sees in cgroup paths but finds nowhere ("wanted"): resolvers
//! look them up at once instead of waiting for an event or a resync, which is what names a
//! container on the first pass after it starts even when an event was missed.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::{kubelet::PodInfo, path::Runtime};
pub use crate::snapshot::health::ResolverStats;

/// A wanted id that no resolver found is asked for again after this long.
const RETRY_WANTED_AFTER: Duration = Duration::from_secs(30);

/// The resolvers, in order of precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Docker = 0,
    Podman = 1,
    Containerd = 2,
    Crio = 3,
    /// Pods, their owners, and containers from the pods' statuses: the last resort for a
    /// container's name, polled (never asked for a wanted id).
    Kubelet = 4,
}

const N_SOURCES: usize = 5;

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Docker => "docker",
            Source::Podman => "podman",
            Source::Containerd => "containerd",
            Source::Crio => "crio",
            Source::Kubelet => "kubelet",
        }
    }

    /// Whether a cgroup of `runtime` may be this resolver's container.
    fn serves(self, runtime: Runtime) -> bool {
        matches!(
            (self, runtime),
            (Source::Docker, Runtime::Docker | Runtime::Cri)
                | (Source::Podman, Runtime::Podman)
                | (Source::Containerd, Runtime::Containerd | Runtime::Cri)
                | (Source::Crio, Runtime::Crio | Runtime::Cri)
        )
    }
}

/// One container as its runtime describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    /// The runtime's name: Docker's without the leading `/`; containerd's id (it has no names).
    pub name: String,
    /// The image reference the container was created from.
    pub image: String,
    pub labels: Arc<BTreeMap<String, String>>,
}

struct Want {
    runtime: Runtime,
    /// Resolvers that already looked (bit per [`Source`]).
    tried: u8,
    since: Instant,
}

#[derive(Default)]
struct State {
    tables: [HashMap<String, Arc<ContainerMeta>>; N_SOURCES],
    wanted: HashMap<String, Want>,
    up: [bool; N_SOURCES],
    errors: [u64; N_SOURCES],
    /// The kubelet's pods (empty without `--kubelet-url`).
    pods: Arc<Vec<PodInfo>>,
}

pub struct Registry {
    state: RwLock<State>,
    /// The Docker daemon's version and API version, for the JSON API's `attributes`.
    docker_version: RwLock<Option<(String, String)>>,
    /// The Docker daemon's data root (`DockerRootDir`), where its layers are.
    docker_root: RwLock<Option<std::path::PathBuf>>,
    /// Bumped on every change of a table: the collector's cache of names is valid while it holds.
    generation: AtomicU64,
    wanted_tx: watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            state: RwLock::default(),
            docker_version: RwLock::default(),
            docker_root: RwLock::default(),
            generation: AtomicU64::new(1),
            wanted_tx: watch::Sender::new(0),
        }
    }
}

impl Registry {
    // A poisoned lock only means a panic elsewhere mid-update; the tables are still whole maps,
    // and losing names is worse than serving them.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_docker_version(&self, version: String, api_version: String) {
        if let Ok(mut v) = self.docker_version.write() {
            *v = Some((version, api_version));
        }
    }

    pub fn set_docker_root(&self, root: std::path::PathBuf) {
        if let Ok(mut r) = self.docker_root.write() {
            *r = Some(root);
        }
    }

    pub fn docker_root(&self) -> Option<std::path::PathBuf> {
        self.docker_root.read().ok().and_then(|r| r.clone())
    }

    pub fn docker_version(&self) -> Option<(String, String)> {
        self.docker_version.read().ok().and_then(|v| v.clone())
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn lookup(&self, id: &str) -> Option<Arc<ContainerMeta>> {
        let state = self.read();
        state.tables.iter().find_map(|t| t.get(id).cloned())
    }

    /// Pod UID -> (pod name, namespace), from the Kubernetes labels of every known container
    /// (the sandbox carries them too, so a pod is known as soon as its sandbox is), then from
    /// the kubelet for pods no runtime has described.
    pub fn pod_index(&self) -> HashMap<String, (String, String)> {
        let state = self.read();
        let mut pods = HashMap::new();
        let from_kubelet = state
            .pods
            .iter()
            .map(|p| (p.uid.clone(), (p.name.clone(), p.namespace.clone())));
        for meta in state.tables.iter().flat_map(|t| t.values()) {
            let l = &meta.labels;
            if let (Some(uid), Some(name), Some(ns)) = (
                l.get(super::K8S_POD_UID),
                l.get(super::K8S_POD_NAME),
                l.get(super::K8S_POD_NAMESPACE),
            ) {
                pods.entry(uid.clone())
                    .or_insert_with(|| (name.clone(), ns.clone()));
            }
        }
        for (uid, pod) in from_kubelet {
            pods.entry(uid).or_insert(pod);
        }
        pods
    }

    /// The kubelet's latest pod list. Its container statuses become the kubelet's table, the
    /// last in precedence: they name containers of runtimes no resolver talks to (CRI-O,
    /// cri-dockerd) with what the kubelet knows, the same labels the runtime would carry.
    pub fn set_pods(&self, pods: Vec<PodInfo>) {
        let mut state = self.write();
        if *state.pods == pods {
            return;
        }
        let mut table = HashMap::new();
        for pod in &pods {
            for c in &pod.containers {
                let labels = BTreeMap::from(
                    [
                        (super::K8S_POD_NAME, &pod.name),
                        (super::K8S_POD_NAMESPACE, &pod.namespace),
                        (super::K8S_POD_UID, &pod.uid),
                        (super::K8S_CONTAINER_NAME, &c.name),
                    ]
                    .map(|(k, v)| (k.to_string(), v.clone())),
                );
                let meta = ContainerMeta {
                    name: c.runtime_name(pod),
                    image: c.image.clone(),
                    labels: Arc::new(labels),
                };
                table.insert(c.id.clone(), Arc::new(meta));
            }
        }
        for id in table.keys() {
            state.wanted.remove(id);
        }
        state.tables[Source::Kubelet as usize] = table;
        state.pods = Arc::new(pods);
        drop(state);
        self.changed();
    }

    pub fn pods(&self) -> Arc<Vec<PodInfo>> {
        Arc::clone(&self.read().pods)
    }

    /// A full listing from `source`: replaces everything it said before.
    pub fn replace(&self, source: Source, table: HashMap<String, Arc<ContainerMeta>>) {
        let mut state = self.write();
        if state.tables[source as usize] == table {
            return;
        }
        for id in table.keys() {
            state.wanted.remove(id);
        }
        state.tables[source as usize] = table;
        drop(state);
        self.changed();
    }

    pub fn upsert(&self, source: Source, id: &str, meta: ContainerMeta) {
        let mut state = self.write();
        state.wanted.remove(id);
        let table = &mut state.tables[source as usize];
        if table.get(id).is_some_and(|m| **m == meta) {
            return;
        }
        table.insert(id.to_string(), Arc::new(meta));
        drop(state);
        self.changed();
    }

    /// The ids `source` has described.
    pub fn ids(&self, source: Source) -> Vec<String> {
        self.read().tables[source as usize]
            .keys()
            .cloned()
            .collect()
    }

    pub fn remove(&self, source: Source, id: &str) {
        if self.write().tables[source as usize].remove(id).is_some() {
            self.changed();
        }
    }

    /// The collector saw a container cgroup no resolver has named.
    pub fn want(&self, runtime: Runtime, id: &str) {
        let mut state = self.write();
        let now = Instant::now();
        match state.wanted.get_mut(id) {
            Some(w) if now.duration_since(w.since) < RETRY_WANTED_AFTER => return,
            Some(w) => {
                w.tried = 0;
                w.since = now;
            }
            None => {
                state.wanted.insert(
                    id.to_string(),
                    Want {
                        runtime,
                        tried: 0,
                        since: now,
                    },
                );
            }
        }
        drop(state);
        self.wanted_tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The wanted ids `source` has not looked up yet; marks them looked up.
    pub fn take_wanted(&self, source: Source) -> Vec<String> {
        let bit = 1u8 << source as u8;
        let mut state = self.write();
        state
            .wanted
            .iter_mut()
            .filter(|(_, w)| w.tried & bit == 0 && source.serves(w.runtime))
            .map(|(id, w)| {
                w.tried |= bit;
                id.clone()
            })
            .collect()
    }

    pub fn has_wanted(&self) -> bool {
        !self.read().wanted.is_empty()
    }

    /// Forgets wanted ids whose cgroups are gone.
    pub fn retain_wanted(&self, live: &HashSet<&str>) {
        let mut state = self.write();
        if !state.wanted.is_empty() {
            state.wanted.retain(|id, _| live.contains(id.as_str()));
        }
    }

    /// Changes whenever an id is wanted.
    pub fn wanted_changes(&self) -> watch::Receiver<u64> {
        self.wanted_tx.subscribe()
    }

    pub fn set_up(&self, source: Source, up: bool) {
        self.write().up[source as usize] = up;
    }

    pub fn count_error(&self, source: Source) {
        self.write().errors[source as usize] += 1;
    }

    pub fn stats(&self, sources: &[Source]) -> Vec<ResolverStats> {
        let state = self.read();
        sources
            .iter()
            .map(|s| ResolverStats {
                resolver: s.as_str(),
                up: state.up[*s as usize],
                errors: state.errors[*s as usize],
                containers: match s {
                    Source::Kubelet => state.pods.len() as u64,
                    _ => state.tables[*s as usize].len() as u64,
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str) -> ContainerMeta {
        ContainerMeta {
            name: name.into(),
            ..ContainerMeta::default()
        }
    }

    #[test]
    fn docker_wins_over_containerd_for_the_same_id() {
        let r = Registry::default();
        r.upsert(Source::Containerd, "abc", meta("abc"));
        r.upsert(Source::Docker, "abc", meta("web"));
        assert_eq!(r.lookup("abc").map(|m| m.name.clone()), Some("web".into()));
        r.remove(Source::Docker, "abc");
        assert_eq!(r.lookup("abc").map(|m| m.name.clone()), Some("abc".into()));
    }

    #[test]
    fn a_resync_replaces_only_its_own_table() {
        let r = Registry::default();
        r.upsert(Source::Containerd, "c1", meta("c1"));
        r.upsert(Source::Docker, "d1", meta("d1"));
        let g = r.generation();
        r.replace(Source::Docker, HashMap::new());
        assert!(r.generation() > g);
        assert!(r.lookup("d1").is_none());
        assert!(r.lookup("c1").is_some());
        // An unchanged listing keeps the collector's cache valid.
        let g = r.generation();
        r.replace(Source::Docker, HashMap::new());
        assert_eq!(r.generation(), g);
    }

    #[test]
    fn wanted_ids_go_to_the_resolvers_that_serve_them_once() {
        let r = Registry::default();
        let mut rx = r.wanted_changes();
        r.want(Runtime::Docker, "d");
        r.want(Runtime::Cri, "k");
        r.want(Runtime::Podman, "p");
        assert!(rx.has_changed().unwrap_or(false));
        rx.mark_unchanged();
        let mut docker = r.take_wanted(Source::Docker);
        docker.sort();
        assert_eq!(docker, ["d", "k"]);
        assert_eq!(r.take_wanted(Source::Containerd), ["k"]);
        assert_eq!(r.take_wanted(Source::Podman), ["p"]);
        assert!(r.take_wanted(Source::Docker).is_empty(), "asked once");
        // Asking again within the retry window changes nothing.
        r.want(Runtime::Docker, "d");
        assert!(!rx.has_changed().unwrap_or(true));
        // A resolver that finds it takes it off the list; a vanished cgroup does too.
        r.upsert(Source::Podman, "p", meta("p"));
        r.retain_wanted(&HashSet::from(["k"]));
        let state = r.read();
        assert_eq!(state.wanted.keys().collect::<Vec<_>>(), ["k"]);
    }

    #[test]
    fn pods_are_known_from_any_container_label() {
        let r = Registry::default();
        let labels = BTreeMap::from([
            (super::super::K8S_POD_UID.to_string(), "u-1".to_string()),
            (super::super::K8S_POD_NAME.to_string(), "web-0".to_string()),
            (
                super::super::K8S_POD_NAMESPACE.to_string(),
                "prod".to_string(),
            ),
        ]);
        r.upsert(
            Source::Containerd,
            "sandbox",
            ContainerMeta {
                labels: Arc::new(labels),
                ..meta("sandbox")
            },
        );
        assert_eq!(
            r.pod_index().get("u-1"),
            Some(&("web-0".to_string(), "prod".to_string()))
        );
    }
}
