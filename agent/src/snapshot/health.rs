//! The agent's own health figures, as each part of it counts them.

/// Cumulative counts of what the cgroupfs file cache (`cgroup::read::Files`) did, for the agent's self-metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FileCounts {
    /// `open(2)` calls: after the first pass only new cgroups (and recreated ones) need any.
    pub opens: u64,
    /// Reads of files that could not be kept open because the budget was spent.
    pub uncached_reads: u64,
}

/// The walker's cost and freshness, for the agent's own metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WalkStats {
    /// Layers found for live containers.
    pub layers: u64,
    pub walks: u64,
    /// Walks of a layer that could not be opened.
    pub errors: u64,
    /// Walks that could not count everything (refused, too deep, the budget spent).
    pub incomplete: u64,
    pub entries: u64,
    pub seconds: f64,
    /// Age of the oldest figure served.
    pub oldest_seconds: f64,
}

/// A program that could not be loaded or attached, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotAttached {
    pub program: &'static str,
    pub reason: String,
}
/// One program's cost as the kernel measured it (cumulative, since `--bpf-stats` took effect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    pub program: &'static str,
    pub run_ns: u64,
    pub runs: u64,
}

/// One receiver's counts, shared between its sender and the self-metrics.
#[derive(Clone, Debug, Default)]
pub struct TargetStats {
    pub url: String,
    pub samples_sent: u64,
    pub samples_retried: u64,
    /// The queue (or the spool) was full: its oldest batch went.
    pub samples_dropped_queue_full: u64,
    /// The spool could not write or read a batch back.
    pub samples_dropped_spool_error: u64,
    /// The receiver refused them (4xx other than 429).
    pub samples_dropped_rejected: u64,
    /// Series lines of the exposition that could not be read (0 expected).
    pub lines_unreadable: u64,
    pub queue_batches: u64,
    pub queue_bytes: u64,
    /// The queue is the spool on disk.
    pub spooled: bool,
    /// Unix seconds of the oldest sample not yet sent (0: nothing waiting).
    pub oldest_unsent: f64,
}

/// A resolver's health, for the agent's own metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolverStats {
    pub resolver: &'static str,
    /// Connected and answering.
    pub up: bool,
    /// Cumulative failed connections and requests on a socket that exists.
    pub errors: u64,
    pub containers: u64,
}

/// One pod as the kubelet reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// The controlling owner, with a ReplicaSet made from a Deployment reported as the
    /// Deployment (what users mean by "owner"); empty for bare pods.
    pub owner_kind: String,
    pub owner_name: String,
    pub node: String,
    /// The pod's containers the kubelet has started (init, app and ephemeral), for runtimes no
    /// resolver of ours talks to (CRI-O, cri-dockerd).
    pub containers: Vec<PodContainer>,
}
/// One container of a pod, from the kubelet's container statuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodContainer {
    /// The runtime's container id: the part of `containerID` after `<runtime>://`, which is the
    /// id in the container's cgroup path.
    pub id: String,
    /// `cri-o`, `containerd`, `docker`: the scheme of `containerID`.
    pub runtime: String,
    /// The container's name in the pod spec.
    pub name: String,
    /// The image as the runtime reports it.
    pub image: String,
    pub restart_count: u32,
}

/// A copy for the snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PanicCounts {
    pub counts: [u64; 3],
    pub last: Option<String>,
}

/// A copy for the snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HttpCounts {
    pub open: u64,
    pub refused: u64,
    pub queue_timeouts: u64,
    pub tls_failures: u64,
    pub plain_on_tls: u64,
    pub auth_missing: u64,
    pub auth_denied: u64,
    pub auth_throttled: u64,
    pub rate_limited: u64,
    /// None without --web-config-file.
    pub web_config: Option<WebConfigCounts>,
}
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WebConfigCounts {
    pub reloads: u64,
    pub reload_failures: u64,
    pub valid: bool,
}
