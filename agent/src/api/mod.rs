//! cAdvisor's REST API (`/api/v1.0`..`v1.3`, `v2.0`, `v2.1`), answered from the prepared
//! snapshot, the stats history and the event store: no request opens a cgroupfs file, so a
//! container name can never lead a read outside the cgroup tree. Names are still normalised
//! and `..` refused, so that a hostile path gets a clear 404 rather than a lookup.
pub mod json;
pub mod ps;
pub mod reply;
pub mod request;
pub mod rfc3339;

use std::{
    collections::HashMap,
    convert::Infallible,
    io::Write as _,
    sync::{Arc, RwLock},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{Response, StatusCode, body::Frame, header};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::{
    events::EventStore,
    history::{History, Range},
    prepared::Prepared,
    snapshot::{ContainerSample, Snapshot},
};
use json::{Has, Reference};
pub use reply::Reply;
use request::{ApiError, EventsRequest, V2Options};

pub type Body = BoxBody<Bytes, Infallible>;

/// Concurrent `stream=true` event clients; more get 503 (each holds a connection).
const MAX_STREAMS: usize = 64;

/// Request types per version: each version adds to the one before (v2.1 adds `machinestats`).
const V1_TYPES: &[&str] = &["containers", "machine", "subcontainers", "docker", "events"];
const V2_TYPES: &[&str] = &[
    "version",
    "attributes",
    "events",
    "machine",
    "summary",
    "stats",
    "spec",
    "ps",
    "machinestats",
];

/// What the API serves besides the snapshot.
pub struct ApiState {
    pub history: Arc<RwLock<History>>,
    pub events: Arc<EventStore>,
    pub versions: json::Versions,
    /// The Docker resolver's view of the daemon's version (empty without Docker).
    pub registry: Option<Arc<crate::identity::Registry>>,
    pub containerd_namespaces: Vec<String>,
    /// Samples x containers one request may ask for (`--api-max-samples`).
    pub max_samples: usize,
    /// Where `/api/v2.0/ps` reads processes (`None`: answered with an error, as in the fuzzer).
    pub ps: Option<ps::Sources>,
    streams: Arc<Semaphore>,
}

impl ApiState {
    pub fn new(
        history: Arc<RwLock<History>>,
        events: Arc<EventStore>,
        registry: Option<Arc<crate::identity::Registry>>,
        containerd_namespaces: Vec<String>,
        max_samples: usize,
    ) -> Self {
        ApiState {
            history,
            events,
            versions: json::Versions {
                kernel: rustix::system::uname()
                    .release()
                    .to_string_lossy()
                    .into_owned(),
                os: os_release(),
                ..Default::default()
            },
            registry,
            containerd_namespaces,
            max_samples,
            ps: None,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }

    /// The versions now: Docker's as its resolver last saw it.
    pub fn versions(&self) -> json::Versions {
        let mut v = self.versions.clone();
        if let Some((docker, api)) = self.registry.as_ref().and_then(|r| r.docker_version()) {
            v.docker = docker;
            v.docker_api = api;
        }
        v
    }
}

/// `PRETTY_NAME` of the OS the agent runs in (cAdvisor's `container_os_version`).
fn os_release() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_default()
}

pub fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

fn error(e: ApiError) -> Response<Body> {
    full(
        e.status,
        "text/plain; charset=utf-8",
        format!("{}\n", e.message),
    )
}

fn write_json(reply: &mut Reply, v: &Value) -> Result<(), ApiError> {
    serde_json::to_writer(reply, v).map_err(gone)
}

/// A write failed: the client left (the only way a write to a [`Reply`] fails).
fn gone(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("writing the answer: {e}"))
}

/// One entry per container, written as it is built: `{"path": entry, ...}` in path order (the
/// order of the sorted map cAdvisor's clients received before), or `[entry, ...]`.
fn write_each<'a>(
    reply: &mut Reply,
    map: bool,
    containers: impl IntoIterator<Item = &'a ContainerSample>,
    mut entry: impl FnMut(&'a ContainerSample) -> Value,
) -> Result<(), ApiError> {
    let mut list: Vec<&ContainerSample> = containers.into_iter().collect();
    if map {
        list.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        list.dedup_by(|a, b| a.path == b.path);
    }
    let (open, close) = if map { (b"{", b"}") } else { (b"[", b"]") };
    reply.write_all(open).map_err(gone)?;
    for (i, c) in list.into_iter().enumerate() {
        if i > 0 {
            reply.write_all(b",").map_err(gone)?;
        }
        if map {
            serde_json::to_writer(&mut *reply, &c.path).map_err(gone)?;
            reply.write_all(b":").map_err(gone)?;
        }
        serde_json::to_writer(&mut *reply, &entry(c)).map_err(gone)?;
    }
    reply.write_all(close).map_err(gone)
}

/// Refuses a request whose answer would hold more than `--api-max-samples` samples, before any
/// is read: the work (and, for a client that reads slowly, the time a worker is held) grows
/// with samples x containers.
fn check_work(
    state: &ApiState,
    containers: usize,
    range: Range,
    kind: &str,
) -> Result<(), ApiError> {
    let capacity = state.history.read().map_or(0, |h| h.capacity());
    let per = range.count.map_or(capacity, |n| n.min(capacity)).max(1);
    let asked = containers.saturating_mul(per);
    if asked > state.max_samples {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: format!(
                "this {kind} request covers {containers} containers x {per} samples = {asked} \
                 samples, over the limit of {} (--api-max-samples); ask for fewer samples \
                 (count=N, or num_stats in a v1 body) or fewer containers (a deeper container \
                 name, without recursive=true)",
                state.max_samples
            ),
        });
    }
    Ok(())
}

/// Handles `/api/...`, writing the answer to `reply` (on a blocking thread: large answers are
/// serialised as they are sent). `body` is the request body, already read within its limit.
pub fn handle(
    path: &str,
    query: Option<&str>,
    body: &[u8],
    prepared: Option<&Arc<Prepared>>,
    state: &ApiState,
    mut reply: Reply,
) {
    match route(path, query, body, prepared, state, &mut reply) {
        Ok(()) => {
            if let Err(e) = reply.finish() {
                tracing::debug!(error = %e, "API client left before the answer's end");
            }
        }
        Err(e) if reply.unsent() => reply.respond(error(e)),
        // Only a write fails after the head went out: the client has gone.
        Err(e) => tracing::debug!(error = %e.message, "API answer cut short"),
    }
}

fn route(
    path: &str,
    query: Option<&str>,
    body: &[u8],
    prepared: Option<&Arc<Prepared>>,
    state: &ApiState,
    reply: &mut Reply,
) -> Result<(), ApiError> {
    let rest = path.strip_prefix("/api").unwrap_or(path);
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(ApiError::bad_request(
            "Supported API versions: v1.0,v1.1,v1.2,v1.3,v2.0,v2.1",
        ));
    }
    let (version, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let (kind, args) = rest.split_once('/').unwrap_or((rest, ""));
    let supported: &[&str] = match version {
        "v1.0" => &V1_TYPES[..2],
        "v1.1" => &V1_TYPES[..3],
        "v1.2" => &V1_TYPES[..4],
        "v1.3" => V1_TYPES,
        "v2.0" => &V2_TYPES[..V2_TYPES.len() - 1],
        "v2.1" => V2_TYPES,
        _ => {
            return Err(ApiError::not_found(format!(
                "unsupported API version {version:?}"
            )));
        }
    };
    if kind.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Supported request types: {:?}",
            supported.join(",")
        )));
    }
    if !supported.contains(&kind) {
        return Err(ApiError::not_found(format!(
            "unknown request type {kind:?} for {version}; supported: {}",
            supported.join(",")
        )));
    }
    let name = request::container_name(args)?;
    let params = request::Params::parse(query);
    if kind == "events" {
        let req = EventsRequest::parse(&params, name)?;
        return events(req, state, reply);
    }
    if version.starts_with("v2") && kind == "version" {
        return write_json(reply, &json!(json::cadvisor_version()));
    }
    let prepared = prepared.ok_or_else(ApiError::not_ready)?;
    let snap = &prepared.snapshot;
    if kind == "attributes" {
        return write_json(reply, &json::attributes(&snap.machine, &state.versions()));
    }
    if kind == "machine" {
        return write_json(reply, &json::machine(&snap.machine, snap.agent.taken_at));
    }
    let view = View::new(snap, state);
    if version.starts_with("v1") {
        let range = request::v1_range(body)?;
        return match kind {
            "containers" => {
                let c = view.get(&name)?;
                check_work(state, 1, range, kind)?;
                let mut info = view.info_v1(c, range);
                if params.bool("nodetel")? == Some(true) {
                    info["nodetel"] = json::extensions(c);
                }
                write_json(reply, &info)
            }
            "subcontainers" => {
                let c = view.get(&name)?;
                let list = view.subtree(c);
                check_work(state, list.len(), range, kind)?;
                write_each(reply, false, list, |c| view.info_v1(c, range))
            }
            _ => {
                // docker: all Docker containers, or the one with this id or name.
                let picked = view.docker_named(&name)?;
                check_work(state, picked.len(), range, kind)?;
                write_each(reply, true, picked, |c| view.info_v1(c, range))
            }
        };
    }
    let opts = V2Options::parse(&params)?;
    let range = Range {
        count: opts.count,
        ..Range::default()
    };
    if kind == "machinestats" {
        let root = view.get("/")?;
        check_work(state, 1, range, kind)?;
        let samples = view.samples(root, range);
        return write_json(reply, &json::machine_stats(&samples, Has::of(root)));
    }
    if kind == "ps" {
        // One container, whatever `recursive` says (as cAdvisor).
        let c = *view
            .select(
                &name,
                &V2Options {
                    recursive: false,
                    ..opts
                },
            )?
            .first()
            .ok_or_else(|| ApiError::not_found(format!("unknown container {name:?}")))?;
        let src = state
            .ps
            .as_ref()
            .ok_or_else(|| ApiError::internal("process listing is not available here"))?;
        return match ps::list(src, &c.path) {
            Ok(list) => write_json(reply, &Value::Array(list)),
            Err((true, m)) => Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: m,
            }),
            Err((false, m)) => Err(ApiError::internal(format!("process listing failed: {m}"))),
        };
    }
    let mut selected = view.select(&name, &opts)?;
    selected.retain(|c| !(version == "v2.1" && kind == "stats" && c.path == "/"));
    match kind {
        "spec" => {}
        // A summary reads every kept sample, whatever the count.
        "summary" => check_work(state, selected.len(), Range::default(), kind)?,
        _ => check_work(state, selected.len(), range, kind)?,
    }
    write_each(reply, true, selected, |c| match kind {
        "spec" => json::spec_v2(c, view.reference(c)),
        "summary" => json::summary(&view.samples(c, Range::default()), snap.agent.taken_at),
        "stats" if version == "v2.0" => json::stats_v2_0(&view.samples(c, range), Has::of(c)),
        _ => json!({
            "spec": json::spec_v2(c, view.reference(c)),
            "stats": json::stats_v2_1(&view.samples(c, range), Has::of(c)),
        }),
    })
}

/// One request's look at the snapshot: containers by name and their children.
struct View<'a> {
    snap: &'a Snapshot,
    state: &'a ApiState,
    by_name: HashMap<&'a str, &'a ContainerSample>,
    children: HashMap<&'a str, Vec<&'a ContainerSample>>,
}

impl<'a> View<'a> {
    fn new(snap: &'a Snapshot, state: &'a ApiState) -> Self {
        let mut by_name = HashMap::with_capacity(snap.containers.len());
        let mut children: HashMap<&str, Vec<&ContainerSample>> = HashMap::new();
        for c in &snap.containers {
            by_name.insert(c.path.as_str(), c);
            if c.path != "/" {
                let parent = match c.path.rfind('/') {
                    Some(0) | None => "/",
                    Some(i) => &c.path[..i],
                };
                children.entry(parent).or_default().push(c);
            }
        }
        View {
            snap,
            state,
            by_name,
            children,
        }
    }

    fn get(&self, name: &str) -> Result<&'a ContainerSample, ApiError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| ApiError::not_found(format!("unknown container {name:?}")))
    }

    /// The container and all its descendants, parents first.
    fn subtree(&self, c: &'a ContainerSample) -> Vec<&'a ContainerSample> {
        let mut out = vec![c];
        let mut i = 0;
        while i < out.len() {
            if let Some(kids) = self.children.get(out[i].path.as_str()) {
                out.extend(kids.iter().copied());
            }
            i += 1;
        }
        out
    }

    fn reference(&self, c: &ContainerSample) -> Reference {
        Reference::of(c, &self.state.containerd_namespaces)
    }

    fn docker(&self) -> impl Iterator<Item = (&'a ContainerSample, Reference)> + '_ {
        self.snap
            .containers
            .iter()
            .map(|c| (c, self.reference(c)))
            .filter(|(_, r)| r.namespace == "docker")
    }

    fn samples(&self, c: &ContainerSample, range: Range) -> Vec<crate::history::Stored> {
        match self.state.history.read() {
            Ok(h) => h.query(c.cgroup_id, range),
            Err(_) => Vec::new(),
        }
    }

    fn info_v1(&self, c: &ContainerSample, range: Range) -> Value {
        let mut m = self.reference(c).into_map();
        let subs: Vec<Value> = self
            .children
            .get(c.path.as_str())
            .map(|kids| kids.iter().map(|k| json!({"name": k.path})).collect())
            .unwrap_or_default();
        if !subs.is_empty() {
            m.insert("subcontainers".into(), Value::Array(subs));
        }
        m.insert("spec".into(), json::spec_v1(c));
        let has = Has::of(c);
        let stats: Vec<Value> = self
            .samples(c, range)
            .iter()
            .map(|s| json::stats_v1(s, has))
            .collect();
        if !stats.is_empty() {
            m.insert("stats".into(), Value::Array(stats));
        }
        Value::Object(m)
    }

    /// Docker containers whose id or name is `name` (`/` = every Docker container).
    fn docker_named(&self, name: &str) -> Result<Vec<&'a ContainerSample>, ApiError> {
        let key = name.trim_start_matches('/');
        let picked: Vec<_> = self
            .docker()
            .filter(|(_, r)| key.is_empty() || r.answers_to(key))
            .map(|(c, _)| c)
            .collect();
        if !key.is_empty() && picked.is_empty() {
            return Err(ApiError::not_found(format!(
                "no Docker container with id or name {key:?}"
            )));
        }
        Ok(picked)
    }

    /// v2's container selection: by cgroup name (optionally with descendants) or by Docker id
    /// or name (`type=docker`; `/` then means every Docker container).
    fn select(&self, name: &str, opts: &V2Options) -> Result<Vec<&'a ContainerSample>, ApiError> {
        if opts.docker {
            return self.docker_named(name);
        }
        let c = self.get(name)?;
        Ok(if opts.recursive {
            self.subtree(c)
        } else {
            vec![c]
        })
    }
}

/// Past events as a JSON list, or (`stream=true`) new ones as they happen, one JSON object per
/// line, as cAdvisor streams them.
fn events(req: EventsRequest, state: &ApiState, reply: &mut Reply) -> Result<(), ApiError> {
    if !req.stream {
        // At most --event-storage-limit events: written one by one all the same.
        let list = state.events.query(&req.query);
        reply.write_all(b"[").map_err(gone)?;
        for (i, e) in list.iter().enumerate() {
            if i > 0 {
                reply.write_all(b",").map_err(gone)?;
            }
            serde_json::to_writer(&mut *reply, &json::event(e)).map_err(gone)?;
        }
        return reply.write_all(b"]").map_err(gone);
    }
    let Ok(permit) = Arc::clone(&state.streams).try_acquire_owned() else {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("too many event streams open (limit {MAX_STREAMS})"),
        });
    };
    let rx = state.events.subscribe();
    let q = req.query;
    let stream = futures_util::stream::unfold((rx, q, permit), |(mut rx, q, permit)| async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match rx.recv().await {
                Ok(e) if q.wants(&e) => {
                    let mut line = serde_json::to_vec(&json::event(&e)).unwrap_or_default();
                    line.push(b'\n');
                    return Some((
                        Ok::<_, Infallible>(Frame::data(Bytes::from(line))),
                        (rx, q, permit),
                    ));
                }
                Ok(_) => continue,
                // The client stopped reading and fell a whole backlog behind: end its stream
                // rather than buffer for it.
                Err(RecvError::Lagged(n)) => {
                    tracing::info!(missed = n, "event stream client too slow; stream ended");
                    return None;
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    reply.respond(resp);
    Ok(())
}

/// The minimal page at `/containers/`: the endpoints, for a human with a browser.
/// How long a client may take to send its request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body read (the v1 body is a few dozen bytes).
pub const BODY_LIMIT: usize = 64 * 1024;
