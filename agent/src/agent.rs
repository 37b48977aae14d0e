//! The daemon: load the programs, collect every interval, serve the latest snapshot, and stop
//! cleanly (programs detached when the collector is dropped; nothing is pinned).
use std::{
    future::Future,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures_util::FutureExt as _;

use anyhow::Context as _;
use tokio::{net::TcpListener, sync::watch, time::MissedTickBehavior};

use crate::{
    cgroup::Layout,
    collector::{Collector, Naming},
    config::Config,
    ebpf::{LoadOptions, Probes},
    metric_kinds::MetricKinds,
    panics::{Panics, Place},
    prepared::Prepared,
};

/// Descriptors kept free for sockets, eBPF maps and programs, and the runtime clients.
const FD_RESERVE: u64 = 256;

/// How many cgroupfs files may stay open: what was asked, within the open-files limit. The soft
/// limit is raised to the hard one first (what Go programs such as cAdvisor get from their
/// runtime), since 1024 would not cover a busy node.
/// How many passes of `interval` fit in `span` (0 when `span` is 0).
fn passes_within(span: Duration, interval: Duration) -> u64 {
    if span.is_zero() {
        return 0;
    }
    let passes = span.as_nanos() / interval.as_nanos().max(1);
    u64::try_from(passes).unwrap_or(u64::MAX).max(1)
}

fn open_files_budget(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::debug!(error = %e, "could not raise the open-files soft limit");
        }
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let room = usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    if room < wanted {
        tracing::warn!(
            wanted,
            allowed = room,
            "the open-files limit caps the cgroupfs files kept open; the rest are reopened each pass"
        );
    }
    wanted.min(room)
}

/// Starts a resolver per configured runtime socket; they run until aborted.
/// Runs a resolver; a panic in it is caught and counted, and its names go stale (the resolver
/// cannot be resumed) rather than the agent going down.
fn supervised(
    panics: &Arc<Panics>,
    resolver: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let panics = Arc::clone(panics);
    tokio::spawn(async move {
        if let Err(payload) = AssertUnwindSafe(resolver).catch_unwind().await {
            panics.caught(Place::Resolver, &*payload);
        }
    })
}

/// The kubelet client the flags ask for, if any.
fn kubelet_client(config: &Config) -> Option<crate::identity::kubelet::KubeletClient> {
    (!config.kubelet_url.trim().is_empty()).then(|| crate::identity::kubelet::KubeletClient {
        url: config.kubelet_url.trim().to_string(),
        token_file: config
            .kubelet_token_file
            .exists()
            .then(|| config.kubelet_token_file.clone()),
        ca_file: Some(config.kubelet_ca_file.clone()),
        node: config.node_name.clone(),
    })
}

fn start_resolvers(
    config: &Config,
    panics: &Arc<Panics>,
) -> (Naming, Vec<tokio::task::JoinHandle<()>>) {
    use crate::identity::{
        Namer, Registry, Source, containerd::ContainerdResolver, crio::CrioResolver,
        docker::DockerResolver,
    };
    let registry = Arc::new(Registry::default());
    let mut sources = Vec::new();
    let mut tasks = Vec::new();
    for (source, flag) in [
        (Source::Docker, &config.docker_socket),
        (Source::Podman, &config.podman_socket),
    ] {
        if let Some(socket) = Config::socket(flag) {
            let r = DockerResolver {
                registry: Arc::clone(&registry),
                source,
                socket,
                resync: config.runtime_resync,
            };
            sources.push(source);
            tasks.push(supervised(panics, r.run()));
        }
    }
    if let Some(socket) = Config::socket(&config.containerd_socket) {
        let r = ContainerdResolver {
            registry: Arc::clone(&registry),
            socket,
            namespaces: config.containerd_namespaces.clone(),
            resync: config.runtime_resync,
        };
        sources.push(Source::Containerd);
        tasks.push(supervised(panics, r.run()));
    }
    if let Some(socket) = Config::socket(&config.crio_socket) {
        let r = CrioResolver {
            registry: Arc::clone(&registry),
            socket,
            resync: config.runtime_resync,
        };
        sources.push(Source::Crio);
        tasks.push(supervised(panics, r.run()));
    }
    if let Some(client) = kubelet_client(config) {
        sources.push(Source::Kubelet);
        tasks.push(supervised(
            panics,
            client.run(Arc::clone(&registry), config.runtime_resync),
        ));
    }
    let naming = Naming {
        namer: Namer::new(Arc::clone(&registry), config.containerd_namespaces.clone()),
        registry,
        sources,
        labels: config.label_mode(),
        only_containers: config.only_containers(),
    };
    (naming, tasks)
}

/// Runs until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let kinds = MetricKinds::resolve(&config.enable_metrics, &config.disable_metrics)
        .map_err(|e| anyhow::anyhow!(e))?;
    if !kinds.ignored.is_empty() {
        tracing::warn!(kinds = ?kinds.ignored, "metric kinds named on the command line that nodetel does not provide");
    }
    tracing::info!(kinds = ?kinds.names(), "metric kinds enabled");
    if let Some(kubelet) = kubelet_client(&config) {
        kubelet
            .check()
            .map_err(|e| anyhow::anyhow!("--kubelet-url {}: {e}", kubelet.url))?;
    }
    // Before anything is loaded: a mistake in the file is a refusal to start that names it.
    let http_stats = Arc::new(crate::http::HttpStats::default());
    let access = match &config.web_config_file {
        Some(path) => {
            let a = crate::access::Access::load(path, Arc::clone(&http_stats))
                .map_err(|e| anyhow::anyhow!("--web-config-file: {e}"))?;
            if !a.tls_on() && a.users_configured() {
                tracing::warn!(
                    "basic auth without TLS: passwords cross the network in clear text; add tls_server_config"
                );
            }
            tracing::info!(file = %path.display(), tls = a.tls_on(), basic_auth = a.users_configured(), "web config loaded");
            Some(Arc::new(a))
        }
        None => None,
    };
    let with_web_config = access.is_some();
    let push = crate::push::config::from_args(
        &config.remote_write,
        &config.storage_driver,
        &config.node_name,
        &config.containerd_namespaces,
    )?;
    if let Some(p) = &push {
        let urls: Vec<&str> = p.receivers.iter().map(|r| r.target.url.as_str()).collect();
        tracing::info!(?urls, interval = ?p.interval, labels = ?p.external_labels, "remote write on");
    }
    let layout = Layout::detect(&config.cgroup_root)?;
    tracing::info!(mode = ?layout.mode, unified = %layout.unified.display(), "cgroup layout");
    let opts = LoadOptions {
        btf_path: config.btf_path.clone(),
        cpu_map_entries: config.cpu_map_entries,
        net_map_entries: config.net_map_entries,
        sched_map_entries: config.sched_map_entries,
        tracefs: crate::ebpf::TRACEFS
            .iter()
            .map(std::path::PathBuf::from)
            .collect(),
        mount_tracefs: config.mount_tracefs,
        sched: kinds.has(crate::metric_kinds::MetricKind::Sched),
        kinds: crate::sources::programs(&kinds, config.bench_sched_switch_floor),
        loopback: config.network_loopback,
        bpf_stats: config.bpf_stats,
        cgroup2_root: kinds
            .has(crate::metric_kinds::MetricKind::Network)
            .then(|| layout.unified.clone()),
    };
    let probes = tokio::task::spawn_blocking(move || Probes::load(&opts))
        .await
        .context("eBPF loader thread")??;
    let panics = Arc::new(Panics::default());
    let (naming, resolvers) = start_resolvers(&config, &panics);
    let registry = Arc::clone(&naming.registry);
    let history = Arc::new(std::sync::RwLock::new(crate::history::History::new(
        config.history_samples as usize,
        (!config.history_duration.is_zero()).then_some(config.history_duration),
    )));
    let events = Arc::new(crate::events::EventStore::new(
        config.event_storage_limit,
        config.event_storage_age,
    ));
    let mut api = crate::api::ApiState::new(
        Arc::clone(&history),
        Arc::clone(&events),
        Some(registry),
        config.containerd_namespaces.clone(),
        usize::try_from(config.api_max_samples).unwrap_or(usize::MAX),
    );
    api.ps = Some(crate::api::ps::Sources {
        unified: layout.unified.clone(),
        proc_root: config.proc_root.clone(),
    });
    let api = Arc::new(api);
    let fs_usage = kinds.has(crate::metric_kinds::MetricKind::Disk).then(|| {
        let registry = Arc::clone(&naming.registry);
        crate::fs_usage::FsUsage::start(
            config.proc_root.clone(),
            config.fs_usage_interval,
            Arc::new(move || registry.docker_root()),
        )
    });
    let collector = Collector::new(
        probes,
        layout,
        crate::machine::Roots {
            proc_root: config.proc_root.clone(),
            sys_root: config.sys_root.clone(),
            machine_id_files: config.machine_id_file.clone(),
        },
        kinds,
        crate::cgroupfs::Reading {
            open_files: open_files_budget(config.cgroupfs_open_files),
            reuse_quiet_passes: passes_within(config.quiet_cgroup_refresh, config.interval),
            pass_interval: config.interval,
        },
        naming,
        events,
    );
    let collector = Arc::new(Mutex::new(match fs_usage {
        Some(fs) => collector.with_fs_usage(fs),
        None => collector,
    }));

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("failed to listen on {}", config.listen))?;
    let scheme = if access.as_ref().is_some_and(|a| a.tls_on()) {
        "https"
    } else {
        "http"
    };
    tracing::info!(listen = %config.listen, scheme, interval = ?config.interval, "serving /metrics, /healthz and the cAdvisor API under /api");

    let (tx, rx) = watch::channel(None);
    // Push, when receivers are given: it reads the same prepared passes the scrapes get.
    let (push_stats, push_tasks) = match push {
        Some(p) => crate::push::spawn(p, tx.subscribe()),
        None => Default::default(),
    };
    let (stop_tx, mut stop_rx) = watch::channel(false);
    // A snapshot older than this means collection is stuck: /healthz then fails the liveness probe.
    let stale_after = (config.interval * 5).max(Duration::from_secs(10));
    let server = crate::http::Server::new(
        rx,
        stale_after,
        Arc::clone(&api),
        Arc::clone(&panics),
        Arc::clone(&http_stats),
        config.http_max_connections as usize,
        config.http_idle_timeout,
    )
    .with_interval(config.interval)
    .with_url_prefix(config.url_base_prefix.clone())
    .with_access(access);
    let server = tokio::spawn(crate::http::serve(listener, server, async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }));

    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        let c = Arc::clone(&collector);
        let h = Arc::clone(&history);
        let p = Arc::clone(&panics);
        let http = Arc::clone(&http_stats);
        let api_versions = Arc::clone(&api);
        let push_stats = push_stats.clone();
        let expected = tx.borrow().as_ref().map_or(0, |p| p.metrics.len());
        let pass = tokio::task::spawn_blocking(move || {
            // A pass that panicked cannot have poisoned these (the panic is caught inside the
            // guards); a poisoned lock is still taken rather than failing every later pass.
            let mut c = c.lock().unwrap_or_else(PoisonError::into_inner);
            let pass = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let mut snapshot = c.collect()?;
                snapshot.agent.panics = p.counts();
                snapshot.agent.http = http.counts(with_web_config);
                snapshot.agent.versions = api_versions.versions();
                snapshot.agent.push = push_stats.snapshot();
                snapshot.agent.allocator = crate::allocator::read();
                // Held only for the copy of this pass's numbers into the history.
                h.write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record(&snapshot);
                Ok::<_, anyhow::Error>(Prepared::new(snapshot, expected))
            }));
            pass.unwrap_or_else(|payload| {
                p.caught(Place::Collection, &*payload);
                Err(anyhow::anyhow!("the collection pass panicked"))
            })
        })
        .await
        .context("collector thread")?;
        match pass {
            Ok(prepared) => {
                tx.send_replace(Some(Arc::new(prepared)));
            }
            // The snapshot is kept; /healthz turns unhealthy if this persists.
            Err(e) => tracing::warn!(error = %e, "collection pass failed"),
        }
    }
    tracing::info!("shutting down: detaching eBPF programs");
    let _ = stop_tx.send(true);
    let _ = server.await;
    for r in resolvers.into_iter().chain(push_tasks) {
        r.abort();
    }
    // Dropping the last reference closes the program and link fds: the kernel detaches them.
    drop(collector);
    Ok(())
}
