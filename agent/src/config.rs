//! Command-line configuration. Every host path comes from here, never from a global, so the same
//! code runs against fixture trees in tests and against a host mounted elsewhere in a container.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

/// nodetel: per-cgroup node telemetry from eBPF, served as cAdvisor-compatible Prometheus metrics.
#[derive(Clone, Debug, Parser)]
#[command(name = "nodetel", version, about)]
pub struct Config {
    /// Address to serve /metrics and /healthz on (cAdvisor's port by default).
    #[arg(long, env = "NODETEL_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Collection interval: how often maps are drained and cgroupfs read (e.g. 1s, 500ms, 10s).
    #[arg(long, env = "NODETEL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Where cgroupfs is mounted. A pure cgroup v2 mount is used as is; on hybrid hosts the v2
    /// tree is `<root>/unified` and v1 controllers are read beside it.
    #[arg(long, env = "NODETEL_CGROUP_ROOT", default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,

    /// The host's procfs: machine memory (the v2 root cgroup's usage) and, later, machine facts.
    /// Mount the host's /proc here when running in a container without hostPID.
    #[arg(long, env = "NODETEL_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,

    /// The host's sysfs: block device names for the I/O series, and machine facts.
    #[arg(long, env = "NODETEL_SYS_ROOT", default_value = "/sys")]
    pub sys_root: PathBuf,

    /// Where the node's machine id is (the first that exists is used; mount the host's file
    /// when running in a container): the `machine_id` label of the machine_* metrics.
    #[arg(
        long,
        env = "NODETEL_MACHINE_ID_FILE",
        value_delimiter = ',',
        default_value = "/etc/machine-id,/var/lib/dbus/machine-id"
    )]
    pub machine_id_file: Vec<PathBuf>,

    /// Only these metric kinds (cAdvisor's names: cpu, memory, diskIO, process, pressure, oom_event, network, sched; and nodetel's blkio, tcp_health);
    /// when given, --disable-metrics is ignored, as in cAdvisor.
    #[arg(
        long,
        alias = "enable_metrics",
        env = "NODETEL_ENABLE_METRICS",
        value_delimiter = ','
    )]
    pub enable_metrics: Vec<String>,

    /// Metric kinds to leave out; their cgroupfs files are then never read. The default is
    /// cAdvisor 0.38.7's for the kinds nodetel shares with it (`process`, `sched` off; it had no
    /// `pressure`), and nodetel's kinds over their cost budget (`blkio`, about 1 µs per bio;
    /// `tcp_health`, 1.1 µs per connection: README). An empty value (`--disable-metrics=`) turns every kind on.
    #[arg(
        long,
        alias = "disable_metrics",
        env = "NODETEL_DISABLE_METRICS",
        value_delimiter = ',',
        default_value = crate::metric_kinds::DEFAULT_DISABLED
    )]
    pub disable_metrics: Vec<String>,

    /// cgroupfs files kept open between passes and re-read with pread instead of reopened (about
    /// four times cheaper per file). Each costs about 5 KiB of kernel memory charged to the agent's
    /// cgroup; 0 reopens every file every pass. Also bounded by the open-files limit.
    #[arg(long, env = "NODETEL_CGROUPFS_OPEN_FILES", default_value_t = 4096)]
    pub cgroupfs_open_files: usize,

    /// A cgroup whose tasks have not run since the last pass (its eBPF CPU time is unchanged)
    /// keeps its last cgroupfs figures for up to this long instead of being re-read every pass;
    /// CPU, network, scheduler and OOM figures stay exact every pass. What can change without
    /// the cgroup's tasks running (page cache reclaimed, writeback I/O, stalls of blocked tasks,
    /// a limit set from outside) is at most this stale. 0 = read every cgroup every pass.
    #[arg(long, env = "NODETEL_QUIET_CGROUP_REFRESH", default_value = "10s", value_parser = parse_duration_or_zero)]
    pub quiet_cgroup_refresh: Duration,

    /// How often each container's writable layer is walked for its filesystem usage (the
    /// `disk` kind), as cAdvisor's every minute. The walker also rests nine times as long as
    /// each walk took, so it stays under a tenth of one core: with many or large layers the
    /// figures get older instead (`nodetel_fs_usage_oldest_figure_seconds`).
    #[arg(long, env = "NODETEL_FS_USAGE_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub fs_usage_interval: Duration,

    /// Samples kept per cgroup for the JSON API (`containers/<name>`, v2 `stats`, `summary`),
    /// one per collection interval. About 0.4 KiB per sample and cgroup (see the README).
    #[arg(long, env = "NODETEL_HISTORY_SAMPLES", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub history_samples: u32,

    /// Samples older than this are dropped even when fewer than --history-samples are kept
    /// (cAdvisor's --storage_duration); 0 = no age limit.
    #[arg(long, env = "NODETEL_HISTORY_DURATION", default_value = "2m", value_parser = parse_duration_or_zero)]
    pub history_duration: Duration,

    /// Samples x containers one JSON API request may ask for (a v2 `stats/?recursive=true` over
    /// 1000 cgroups at the default 60 samples is 60000). Larger requests get 422 naming this flag
    /// and how to narrow them; answers are streamed, so this bounds work, not memory.
    #[arg(long, env = "NODETEL_API_MAX_SAMPLES", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub api_max_samples: u64,

    /// Open HTTP connections at most; more are closed at once and counted
    /// (`nodetel_http_connections_refused_total`).
    #[arg(long, env = "NODETEL_HTTP_MAX_CONNECTIONS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub http_max_connections: u32,

    /// A keep-alive connection with no new request for this long is closed; a request's headers
    /// must also arrive within it. Prometheus reuses its connection every scrape interval.
    #[arg(long, env = "NODETEL_HTTP_IDLE_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub http_idle_timeout: Duration,

    /// The Prometheus exporter toolkit's web configuration (TLS, client certificates, basic
    /// auth with bcrypt hashes, response headers, rate limit): the file node_exporter takes as
    /// --web.config.file, which is accepted as an alias. Applies to every path but /healthz;
    /// the files are re-read when they change. Empty: plain HTTP, no authentication.
    #[arg(
        long,
        visible_alias = "web.config.file",
        env = "NODETEL_WEB_CONFIG_FILE"
    )]
    pub web_config_file: Option<PathBuf>,

    /// The path prefix a reverse proxy serves the agent under (cAdvisor's --url_base_prefix,
    /// e.g. /nodetel). The pages need none (their URLs are relative, so a proxy that strips the
    /// prefix just works); set it when the proxy forwards the prefix unstripped: paths under it
    /// are then served as without it.
    #[arg(long, alias = "url_base_prefix", env = "NODETEL_URL_BASE_PREFIX", default_value = "", value_parser = parse_url_prefix)]
    pub url_base_prefix: String,

    /// Container events (OOM, OOM kill, creation, deletion) kept for the events API.
    #[arg(long, env = "NODETEL_EVENT_STORAGE_LIMIT", default_value_t = 10_000)]
    pub event_storage_limit: usize,

    /// Events older than this are dropped (cAdvisor's --event_storage_age_limit default).
    #[arg(long, env = "NODETEL_EVENT_STORAGE_AGE", default_value = "24h", value_parser = parse_duration)]
    pub event_storage_age: Duration,

    /// The running kernel's BTF, for struct offsets and BTF tracepoints.
    #[arg(long, env = "NODETEL_BTF", default_value = "/sys/kernel/btf/vmlinux")]
    pub btf_path: PathBuf,

    /// Capacity of the per-cgroup CPU map. Each entry costs 8 bytes per possible CPU plus
    /// overhead; a full map is counted in nodetel_ebpf_map_full_drops_total.
    #[arg(long, env = "NODETEL_CPU_MAP_ENTRIES", default_value_t = nodetel_common::DEFAULT_CPU_NS_ENTRIES,
          value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub cpu_map_entries: u32,

    /// Capacity of the traffic map: one entry per cgroup, device and direction used. An entry
    /// costs about 16 bytes per possible CPU plus 100 (8192 on 64 CPUs: about 9 MiB of kernel
    /// memory); a full map is counted in nodetel_ebpf_traffic_uncounted_packets_total.
    #[arg(long, env = "NODETEL_NET_MAP_ENTRIES", default_value_t = nodetel_common::NET_TRAFFIC_ENTRIES,
          value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub net_map_entries: u32,

    /// Count traffic over `lo` in `container_network_*`. Off by default, as cAdvisor leaves
    /// `lo` out (with `veth*`, `docker*`, `nerdctl*`): a pod talking to its own sidecar over
    /// 127.0.0.1 is not network bandwidth, and the kubernetes-mixin's and Lens's queries sum
    /// every interface.
    #[arg(long, env = "NODETEL_NETWORK_LOOPBACK")]
    pub network_loopback: bool,

    /// Capacity of the run-queue histogram map: one entry per cgroup and wait bucket used (a
    /// busy cgroup 10-20, an idle one 1-3). About 16 bytes per possible CPU plus 100 each; a
    /// full map is counted in nodetel_ebpf_sched_uncounted_total.
    #[arg(long, env = "NODETEL_SCHED_MAP_ENTRIES", default_value_t = nodetel_common::SCHED_HIST_ENTRIES,
          value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub sched_map_entries: u32,

    /// Mount tracefs at /sys/kernel/tracing when no tracefs is mounted (the OOM tracepoint's
    /// record layout is read there). Off: the agent mounts nothing on the host by itself.
    #[arg(long, env = "NODETEL_MOUNT_TRACEFS")]
    pub mount_tracefs: bool,

    /// Have the kernel time every run of nodetel's eBPF programs (BPF_ENABLE_STATS, for as
    /// long as the agent runs) and export nodetel_ebpf_program_run_seconds_total and
    /// nodetel_ebpf_program_runs_total. Costs two clock reads per program run.
    #[arg(long, env = "NODETEL_BPF_STATS")]
    pub bpf_stats: bool,

    /// Benchmarking only: attach an empty program to sched_switch instead of nodetel's, to
    /// measure what the tracepoint's dispatch costs by itself (the agent then has no eBPF CPU
    /// or run-queue figures). `cargo xtask bench` uses it.
    #[arg(long, hide_short_help = true)]
    pub bench_sched_switch_floor: bool,

    /// Label set of container series: `kubelet` = exactly the kubelet's `id, name, image,
    /// container, pod, namespace` (kube-prometheus dashboards work unchanged); `standalone` =
    /// standalone cAdvisor's `id, name, image` plus `container_label_<key>` per runtime label;
    /// `auto` = the kubelet's on a Kubernetes node (a `kubepods` cgroup, a container the kubelet
    /// labelled, or --kubelet-url), standalone with the Swarm and Compose labels always kept
    /// elsewhere.
    #[arg(long, env = "NODETEL_LABEL_MODE", value_enum, default_value_t = LabelModeArg::Auto)]
    pub label_mode: LabelModeArg,

    /// In standalone label mode, only these runtime label keys become `container_label_*`
    /// labels (every key of every container otherwise: each one is a label on every series).
    #[arg(
        long,
        alias = "whitelisted_container_labels",
        env = "NODETEL_WHITELISTED_CONTAINER_LABELS",
        value_delimiter = ','
    )]
    pub whitelisted_container_labels: Vec<String>,

    /// cAdvisor's flag: `false` keeps no runtime label but the whitelisted ones as
    /// `container_label_*` (standalone label mode).
    #[arg(
        long,
        alias = "store_container_labels",
        env = "NODETEL_STORE_CONTAINER_LABELS",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_value = "true",
        default_missing_value = "true"
    )]
    pub store_container_labels: bool,

    /// cAdvisor's flag: report only containers a runtime named (Docker, containerd, CRI-O,
    /// Podman) and the root cgroup, plus cgroups under `--raw-cgroup-prefix-whitelist`; pod and
    /// system cgroups then have no series and no API entry.
    #[arg(
        long,
        alias = "docker_only",
        env = "NODETEL_DOCKER_ONLY",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true"
    )]
    pub docker_only: bool,

    /// With `--docker-only`: cgroup path prefixes (`/system.slice/kubelet.service`) that are
    /// reported all the same.
    #[arg(
        long,
        aliases = ["raw_cgroup_prefix_whitelist", "raw-cgroup-prefix-allowlist"],
        env = "NODETEL_RAW_CGROUP_PREFIX_WHITELIST",
        value_delimiter = ','
    )]
    pub raw_cgroup_prefix_whitelist: Vec<String>,

    /// Docker Engine API socket (`unix://` prefix optional; empty = no Docker resolver). An absent
    /// socket is watched for, not an error.
    #[arg(
        long,
        env = "NODETEL_DOCKER_SOCKET",
        default_value = "/var/run/docker.sock"
    )]
    pub docker_socket: String,

    /// Podman's Docker-compatible API socket (empty = no Podman resolver).
    #[arg(
        long,
        env = "NODETEL_PODMAN_SOCKET",
        default_value = "/run/podman/podman.sock"
    )]
    pub podman_socket: String,

    /// containerd's gRPC socket (empty = no containerd resolver).
    #[arg(
        long,
        env = "NODETEL_CONTAINERD_SOCKET",
        default_value = "/run/containerd/containerd.sock"
    )]
    pub containerd_socket: String,

    /// CRI-O's socket (empty = no CRI-O resolver). nodetel reads CRI-O's own monitoring API
    /// there (`/containers/<id>`), as cAdvisor does.
    #[arg(
        long,
        env = "NODETEL_CRIO_SOCKET",
        default_value = "/var/run/crio/crio.sock"
    )]
    pub crio_socket: String,

    /// containerd namespaces whose containers are named; `/<namespace>/<id>` cgroups of these
    /// are taken for containers. Kubernetes uses `k8s.io`, Docker `moby`, `ctr` `default`.
    #[arg(
        long,
        env = "NODETEL_CONTAINERD_NAMESPACES",
        value_delimiter = ',',
        default_value = "k8s.io,moby,default"
    )]
    pub containerd_namespaces: Vec<String>,

    /// Full relisting of every runtime's containers, besides the event streams (catches anything
    /// an event did not say).
    #[arg(long, env = "NODETEL_RUNTIME_RESYNC", default_value = "60s", value_parser = parse_duration)]
    pub runtime_resync: Duration,

    /// The local kubelet (e.g. `https://127.0.0.1:10250`, or `https://$(NODE_IP):10250`): its
    /// `/pods` names pod cgroups no runtime described and gives `nodetel_pod_info` (owners).
    /// Empty = off. Needs RBAC `nodes/pods` get (`nodes/proxy` before Kubernetes 1.33). The
    /// token is only sent over https verified with --kubelet-ca-file: an `http://` URL is
    /// refused at start unless the token file is empty.
    #[arg(long, env = "NODETEL_KUBELET_URL", default_value = "")]
    pub kubelet_url: String,

    /// Bearer token for the kubelet, re-read on every request (projected tokens rotate).
    #[arg(
        long,
        env = "NODETEL_KUBELET_TOKEN_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub kubelet_token_file: PathBuf,

    /// CA bundle that signed the kubelet's serving certificate (https URLs).
    #[arg(
        long,
        env = "NODETEL_KUBELET_CA_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    )]
    pub kubelet_ca_file: PathBuf,

    /// This node's name (the DaemonSet passes spec.nodeName), for the `node` label of
    /// nodetel_pod_info.
    #[arg(long, env = "NODE_NAME", default_value = "")]
    pub node_name: String,

    /// Log filter (tracing's EnvFilter syntax: `info`, `nodetel=debug`, ...); RUST_LOG wins.
    #[arg(long, env = "NODETEL_LOG", default_value = "info")]
    pub log_level: String,

    #[command(flatten)]
    pub remote_write: RemoteWriteArgs,

    #[command(flatten)]
    pub storage_driver: StorageDriverArgs,
}

/// cAdvisor's storage driver flags, for InfluxDB (README "Push"): dashes or cAdvisor's
/// underscores. Sent with the remote write machinery: the same queue, spool, retries, proxy and
/// self-metrics.
#[derive(clap::Args, Debug, Clone)]
pub struct StorageDriverArgs {
    /// `influxdb` (the one cAdvisor driver nodetel has; remote write covers Prometheus-style
    /// receivers); empty: off.
    #[arg(
        id = "storage_driver",
        long = "storage-driver",
        alias = "storage_driver",
        env = "NODETEL_STORAGE_DRIVER",
        value_delimiter = ','
    )]
    pub drivers: Vec<String>,

    /// The database's `host:port`.
    #[arg(
        id = "storage_driver_host",
        long = "storage-driver-host",
        alias = "storage_driver_host",
        env = "NODETEL_STORAGE_DRIVER_HOST",
        default_value = "localhost:8086"
    )]
    pub host: String,

    /// Database name.
    #[arg(
        id = "storage_driver_db",
        long = "storage-driver-db",
        alias = "storage_driver_db",
        env = "NODETEL_STORAGE_DRIVER_DB",
        default_value = "cadvisor"
    )]
    pub db: String,

    /// Database user (basic auth).
    #[arg(
        id = "storage_driver_user",
        long = "storage-driver-user",
        alias = "storage_driver_user",
        env = "NODETEL_STORAGE_DRIVER_USER",
        default_value = "root"
    )]
    pub user: String,

    /// Database password (cAdvisor's flag; prefer --storage-driver-password-file, which a
    /// process listing does not show).
    #[arg(
        id = "storage_driver_password",
        long = "storage-driver-password",
        alias = "storage_driver_password",
        env = "NODETEL_STORAGE_DRIVER_PASSWORD",
        default_value = "root",
        hide_default_value = true
    )]
    pub password: String,

    /// File holding the database password (read at start; wins over --storage-driver-password).
    #[arg(
        id = "storage_driver_password_file",
        long = "storage-driver-password-file",
        env = "NODETEL_STORAGE_DRIVER_PASSWORD_FILE"
    )]
    pub password_file: Option<PathBuf>,

    /// HTTPS to the database (needs --storage-driver-ca-file).
    #[arg(
        id = "storage_driver_secure",
        long = "storage-driver-secure",
        alias = "storage_driver_secure",
        env = "NODETEL_STORAGE_DRIVER_SECURE",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true"
    )]
    pub secure: bool,

    /// CA certificate(s) that sign the database's certificate.
    #[arg(
        id = "storage_driver_ca_file",
        long = "storage-driver-ca-file",
        env = "NODETEL_STORAGE_DRIVER_CA_FILE"
    )]
    pub ca_file: Option<PathBuf>,

    /// Points are collected for this long and written in one request (cAdvisor's meaning);
    /// a request is also sent when 4 MiB of points wait.
    #[arg(id = "storage_driver_buffer_duration", long = "storage-driver-buffer-duration", alias = "storage_driver_buffer_duration", env = "NODETEL_STORAGE_DRIVER_BUFFER_DURATION", default_value = "60s", value_parser = parse_duration)]
    pub buffer_duration: Duration,

    /// Retention policy to write into; empty: the database's default.
    #[arg(
        id = "storage_driver_influxdb_retention_policy",
        long = "storage-driver-influxdb-retention-policy",
        aliases = ["storage_driver_influxdb_retention_policy", "storage-driver-retention-policy"],
        env = "NODETEL_STORAGE_DRIVER_RETENTION_POLICY",
        default_value = ""
    )]
    pub retention_policy: String,

    /// Accepted for cAdvisor command lines; its InfluxDB driver does not use it either.
    #[arg(
        id = "storage_driver_table",
        long = "storage-driver-table",
        alias = "storage_driver_table",
        default_value = "stats",
        hide = true
    )]
    pub table: String,
}

/// Prometheus remote write (README "Push"): off unless a URL is given.
#[derive(clap::Args, Debug, Clone)]
pub struct RemoteWriteArgs {
    /// Receivers' remote write endpoints (`http(s)://host:port/api/v1/write`), repeatable or
    /// comma-separated; each gets every series `/metrics` serves.
    #[arg(
        id = "remote_write_url",
        long = "remote-write-url",
        env = "NODETEL_REMOTE_WRITE_URL",
        value_delimiter = ','
    )]
    pub urls: Vec<String>,

    /// How often the latest pass is pushed.
    #[arg(id = "remote_write_interval", long = "remote-write-interval", env = "NODETEL_REMOTE_WRITE_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Labels added to every pushed series that lacks them (`name=value`, repeatable or
    /// comma-separated), as a scrape adds `job` and `instance`: by default `job=nodetel` and
    /// `instance=<NODE_NAME, else the host name>`. Series from many nodes stay apart by them.
    #[arg(
        id = "remote_write_label",
        long = "remote-write-label",
        env = "NODETEL_REMOTE_WRITE_LABELS",
        value_delimiter = ','
    )]
    pub labels: Vec<String>,

    /// Basic auth user (with --remote-write-password-file).
    #[arg(
        id = "remote_write_username",
        long = "remote-write-username",
        env = "NODETEL_REMOTE_WRITE_USERNAME"
    )]
    pub username: Option<String>,

    /// File holding the basic auth password (read at start).
    #[arg(
        id = "remote_write_password_file",
        long = "remote-write-password-file",
        env = "NODETEL_REMOTE_WRITE_PASSWORD_FILE"
    )]
    pub password_file: Option<PathBuf>,

    /// File holding a bearer token, re-read at every request (rotated tokens are picked up).
    #[arg(
        id = "remote_write_bearer_token_file",
        long = "remote-write-bearer-token-file",
        env = "NODETEL_REMOTE_WRITE_BEARER_TOKEN_FILE"
    )]
    pub bearer_token_file: Option<PathBuf>,

    /// CA certificate(s) that sign the receiver's certificate (needed for https).
    #[arg(
        id = "remote_write_ca_file",
        long = "remote-write-ca-file",
        env = "NODETEL_REMOTE_WRITE_CA_FILE"
    )]
    pub ca_file: Option<PathBuf>,

    /// Client certificate and key, for receivers that ask for one.
    #[arg(
        id = "remote_write_cert_file",
        long = "remote-write-cert-file",
        env = "NODETEL_REMOTE_WRITE_CERT_FILE"
    )]
    pub cert_file: Option<PathBuf>,
    #[arg(
        id = "remote_write_key_file",
        long = "remote-write-key-file",
        env = "NODETEL_REMOTE_WRITE_KEY_FILE"
    )]
    pub key_file: Option<PathBuf>,

    /// Extra request headers (`Name: value`, repeatable), e.g. `X-Scope-OrgID: tenant-1` for a
    /// multi-tenant receiver.
    #[arg(
        id = "remote_write_header",
        long = "remote-write-header",
        env = "NODETEL_REMOTE_WRITE_HEADERS",
        value_delimiter = '\n'
    )]
    pub headers: Vec<String>,

    /// HTTP proxy (`http://host:port`); https receivers are reached through it with CONNECT.
    /// Unset: `HTTPS_PROXY`/`HTTP_PROXY` (by the receiver's scheme) unless `NO_PROXY` names the
    /// receiver's host.
    #[arg(id = "remote_write_proxy", long = "remote-write-proxy")]
    pub proxy: Option<String>,

    /// Per receiver, how much encoded data may wait in memory while it is away (oldest dropped
    /// and counted beyond it).
    #[arg(id = "remote_write_queue_bytes", long = "remote-write-queue-bytes", env = "NODETEL_REMOTE_WRITE_QUEUE_BYTES", default_value_t = 32 << 20)]
    pub queue_bytes: usize,

    /// Directory for an on-disk queue per receiver (README "Push"): every pass is written there
    /// until its receiver has it, so an outage, an agent restart or a killed agent loses
    /// nothing the spool can hold; sent first, oldest first, after a restart. Unset: the
    /// queue is in memory (--remote-write-queue-bytes).
    #[arg(
        id = "remote_write_spool_dir",
        long = "remote-write-spool-dir",
        env = "NODETEL_REMOTE_WRITE_SPOOL_DIR"
    )]
    pub spool_dir: Option<PathBuf>,

    /// Per receiver, the spool's bound on disk (oldest dropped and counted beyond it).
    #[arg(id = "remote_write_spool_bytes", long = "remote-write-spool-bytes", env = "NODETEL_REMOTE_WRITE_SPOOL_BYTES", default_value_t = 256 << 20)]
    pub spool_bytes: u64,

    /// One request's deadline.
    #[arg(id = "remote_write_timeout", long = "remote-write-timeout", env = "NODETEL_REMOTE_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LabelModeArg {
    Auto,
    Kubelet,
    Standalone,
}

/// `/a/b` (a trailing `/` dropped), or empty; no `..`, no query, nothing but a path.
fn parse_url_prefix(s: &str) -> Result<String, String> {
    let p = s.trim_end_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    if !p.starts_with('/')
        || p.split('/').any(|seg| seg == ".." || seg == ".")
        || !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
    {
        return Err(format!(
            "{s:?} is not a path prefix such as /nodetel (letters, digits, - _ . ~ and /)"
        ));
    }
    Ok(p.to_string())
}

impl Config {
    pub fn label_mode(&self) -> crate::metrics::LabelChoice {
        use crate::metrics::{LabelChoice, LabelMode};
        let listed: Vec<String> = self
            .whitelisted_container_labels
            .iter()
            .filter(|l| !l.is_empty())
            .cloned()
            .collect();
        // Every key unless a list is given or cAdvisor's `--store_container_labels=false`.
        let whitelist = (!listed.is_empty() || !self.store_container_labels).then_some(listed);
        match self.label_mode {
            LabelModeArg::Kubelet => LabelChoice::Fixed(std::sync::Arc::new(LabelMode::Kubelet)),
            LabelModeArg::Standalone => {
                LabelChoice::Fixed(std::sync::Arc::new(LabelMode::Standalone { whitelist }))
            }
            LabelModeArg::Auto => {
                let whitelist = whitelist.map(|mut w| {
                    for key in crate::metrics::SWARM_AND_COMPOSE {
                        if !w.iter().any(|k| k == key) {
                            w.push((*key).to_string());
                        }
                    }
                    w
                });
                LabelChoice::auto(
                    LabelMode::Standalone { whitelist },
                    !self.kubelet_url.is_empty(),
                )
            }
        }
    }

    /// `--docker-only`: the raw cgroup prefixes still reported; `None` reports every cgroup.
    pub fn only_containers(&self) -> Option<Vec<String>> {
        self.docker_only.then(|| {
            self.raw_cgroup_prefix_whitelist
                .iter()
                .filter(|p| !p.is_empty())
                .cloned()
                .collect()
        })
    }

    /// A socket flag as a path; `None` when the resolver is turned off.
    pub fn socket(flag: &str) -> Option<PathBuf> {
        let path = flag.trim().trim_start_matches("unix://");
        (!path.is_empty()).then(|| PathBuf::from(path))
    }
}

/// Parses `500ms`, `1s`, `2m`, `1h` (whole numbers).
/// A duration as [`parse_duration`], or `0` (off).
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    if s.trim().trim_end_matches(['s', 'm', 'h']) == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{s}` has no unit (use ms, s, m or h)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{s}` (use ms, s, m or h)"
            ));
        }
    };
    if d < Duration::from_millis(100) {
        return Err(format!("`{s}` is below the 100ms minimum"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_prefixes() {
        assert_eq!(parse_url_prefix(""), Ok(String::new()));
        assert_eq!(parse_url_prefix("/"), Ok(String::new()));
        assert_eq!(parse_url_prefix("/nodetel/"), Ok("/nodetel".into()));
        assert_eq!(parse_url_prefix("/a/b-c_d.e~f"), Ok("/a/b-c_d.e~f".into()));
        for bad in ["nodetel", "/a/../b", "/a?x=1", "/a b", "/a/./b", "/ä"] {
            assert!(parse_url_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("5ms").is_err());
    }

    #[test]
    fn defaults_match_cadvisor() {
        let c = Config::try_parse_from(["nodetel"]).expect("defaults parse");
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.interval, Duration::from_secs(1));
        assert!(Config::try_parse_from(["nodetel", "--cpu-map-entries", "1"]).is_err());
    }

    #[test]
    fn cadvisors_cardinality_flags_are_taken_as_cadvisor_spells_them() {
        let c = Config::try_parse_from([
            "nodetel",
            "--docker_only",
            "--raw_cgroup_prefix_whitelist=/system.slice/kubelet.service,/x",
            "--store_container_labels=false",
            "--label-mode=standalone",
        ])
        .expect("cAdvisor's spellings");
        assert_eq!(
            c.only_containers(),
            Some(vec!["/system.slice/kubelet.service".into(), "/x".into()])
        );
        assert_eq!(
            *c.label_mode().for_pass(|| true),
            crate::metrics::LabelMode::Standalone {
                whitelist: Some(vec![])
            }
        );
        let d = Config::try_parse_from(["nodetel", "--docker-only=false"]).expect("dashes");
        assert_eq!(d.only_containers(), None);
        let e = Config::try_parse_from(["nodetel", "--label-mode=standalone"]).expect("default");
        assert_eq!(
            *e.label_mode().for_pass(|| true),
            crate::metrics::LabelMode::Standalone { whitelist: None }
        );
    }

    /// `auto`: standalone cAdvisor's set (Swarm and Compose labels kept through any allow-list)
    /// until the host shows Kubernetes, then the kubelet's for good.
    #[test]
    fn auto_label_mode_follows_the_host_and_sticks() {
        use crate::metrics::LabelMode;
        let mut docker = Config::try_parse_from(["nodetel", "--whitelisted-container-labels=app"])
            .expect("parse")
            .label_mode();
        let LabelMode::Standalone {
            whitelist: Some(list),
        } = &*docker.for_pass(|| false)
        else {
            panic!("not standalone with a list");
        };
        assert!(list.iter().any(|k| k == "app"));
        assert!(list.iter().any(|k| k == "com.docker.swarm.service.name"));
        assert!(list.iter().any(|k| k == "com.docker.compose.service"));
        assert_eq!(*docker.for_pass(|| true), LabelMode::Kubelet);
        // Once a node, always: a pass without pods does not flip the series back.
        assert_eq!(*docker.for_pass(|| false), LabelMode::Kubelet);
        let mut all = Config::try_parse_from(["nodetel"])
            .expect("parse")
            .label_mode();
        assert_eq!(
            *all.for_pass(|| false),
            LabelMode::Standalone { whitelist: None }
        );
        let mut node = Config::try_parse_from(["nodetel", "--kubelet-url=https://127.0.0.1:10250"])
            .expect("parse")
            .label_mode();
        assert_eq!(*node.for_pass(|| false), LabelMode::Kubelet);
        let mut fixed = Config::try_parse_from(["nodetel", "--label-mode=kubelet"])
            .expect("parse")
            .label_mode();
        assert_eq!(*fixed.for_pass(|| false), LabelMode::Kubelet);
    }

    #[test]
    fn metric_kinds_default_to_cadvisors_and_an_empty_value_turns_all_on() {
        use crate::metric_kinds::{MetricKind, MetricKinds};
        let kinds = |args: &[&str]| {
            let c = Config::try_parse_from(args).expect("parse");
            MetricKinds::resolve(&c.enable_metrics, &c.disable_metrics).expect("kinds")
        };
        let default = kinds(&["nodetel"]);
        assert_eq!(
            default.names(),
            [
                "cpu",
                "memory",
                "diskIO",
                "oom_event",
                "network",
                "disk",
                "cpuLoad"
            ]
        );
        let all = kinds(&["nodetel", "--disable-metrics="]);
        assert_eq!(all.names().len(), MetricKind::ALL.len());
        // A cAdvisor command line's own list replaces the default, as in cAdvisor.
        let theirs = kinds(&["nodetel", "--disable_metrics=percpu,process"]);
        assert!(theirs.has(MetricKind::Sched) && !theirs.has(MetricKind::Process));
    }
}
