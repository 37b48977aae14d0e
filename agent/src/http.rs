//! The HTTP layer: thin on purpose. It serves the latest prepared snapshot (and the history and
//! events beside it); no request reaches the kernel or cgroupfs.
use std::{
    convert::Infallible,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::FutureExt as _;
use http_body_util::{BodyExt, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Frame, Incoming, SizeHint},
    header,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};

pub use crate::snapshot::health::{HttpCounts, WebConfigCounts};
use crate::{
    access::{Access, Decision},
    api::{self, ApiState, Body, Reply},
    panics::{Panics, Place},
    prepared::Prepared,
};

pub type Latest = watch::Receiver<Option<Arc<Prepared>>>;

/// A response whose client reads nothing for this long is dropped with its connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// API answers computed at once (on the blocking pool); the rest wait in line. Two: the node's
/// agent is budgeted a fraction of a core, and the collector must keep its pace.
const API_WORKERS: usize = 2;
/// How long a scrape waits for its turn before 503 (Prometheus' default scrape timeout).
const SCRAPE_WAIT: Duration = Duration::from_secs(10);
/// How long an API request waits for a worker before 503: a burst of heavy requests is served
/// in turn rather than refused (twenty 28 MB answers take about a minute on a debug build).
const API_WAIT: Duration = Duration::from_secs(120);
/// /metrics bodies being sent at once. Each pins the exposition it started with (13.6 MB at
/// 3000 cgroups): slow readers of successive generations would otherwise hold one each. With
/// [`SCRAPE_DEADLINE`], at most this many generations are pinned, each for at most a minute.
const SCRAPES_IN_FLIGHT: usize = 16;
/// A /metrics answer not sent within this is cut off (its connection closed): no scraper waits
/// longer (Prometheus' scrape timeout is at most its interval), and a trickling reader must not
/// hold a slot and a whole exposition for hours.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(60);
/// The slices a /metrics body is handed to the connection in (zero-copy views of it).
const SCRAPE_CHUNK: usize = 64 * 1024;

/// The HTTP layer's own counters (`nodetel_http_*`).
#[derive(Default)]
pub struct HttpStats {
    pub open: AtomicU64,
    pub refused: AtomicU64,
    pub queue_timeouts: AtomicU64,
    /// TLS handshakes that failed (unknown client CA, no client certificate, protocol errors,
    /// timeouts), and plain HTTP sent to the TLS port.
    pub tls_failures: AtomicU64,
    pub plain_on_tls: AtomicU64,
    pub auth_missing: AtomicU64,
    pub auth_denied: AtomicU64,
    pub auth_throttled: AtomicU64,
    pub rate_limited: AtomicU64,
    pub web_config_reloads: AtomicU64,
    pub web_config_reload_failures: AtomicU64,
    /// 1 when the last load of --web-config-file succeeded; 0 after a failed reload.
    pub web_config_valid: AtomicU64,
}

impl HttpStats {
    /// `with_web_config`: whether --web-config-file is in use (its series exist only then).
    pub fn counts(&self, with_web_config: bool) -> HttpCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HttpCounts {
            open: get(&self.open),
            refused: get(&self.refused),
            queue_timeouts: get(&self.queue_timeouts),
            tls_failures: get(&self.tls_failures),
            plain_on_tls: get(&self.plain_on_tls),
            auth_missing: get(&self.auth_missing),
            auth_denied: get(&self.auth_denied),
            auth_throttled: get(&self.auth_throttled),
            rate_limited: get(&self.rate_limited),
            web_config: with_web_config.then(|| WebConfigCounts {
                reloads: get(&self.web_config_reloads),
                reload_failures: get(&self.web_config_reload_failures),
                valid: get(&self.web_config_valid) == 1,
            }),
        }
    }
}

/// Everything a connection needs.
pub struct Server {
    pub latest: Latest,
    /// A snapshot older than this fails `/healthz`.
    pub stale_after: Duration,
    pub api: Arc<ApiState>,
    pub panics: Arc<Panics>,
    pub stats: Arc<HttpStats>,
    pub max_connections: usize,
    /// An idle keep-alive connection is closed after this; headers must arrive within it too
    /// (hyper's header timer covers both).
    pub idle_timeout: Duration,
    /// --web-config-file: TLS, users, headers, rate limit.
    pub access: Option<Arc<Access>>,
    /// The collection interval: how often the UI's pages ask for new figures.
    pub interval: Duration,
    /// --url-base-prefix: served as if absent (empty: none).
    pub url_prefix: String,
    api_workers: Arc<Semaphore>,
    scrapes: Arc<Semaphore>,
}

impl Server {
    pub fn new(
        latest: Latest,
        stale_after: Duration,
        api: Arc<ApiState>,
        panics: Arc<Panics>,
        stats: Arc<HttpStats>,
        max_connections: usize,
        idle_timeout: Duration,
    ) -> Self {
        Server {
            latest,
            stale_after,
            api,
            panics,
            stats,
            max_connections,
            idle_timeout,
            access: None,
            interval: stale_after / 5,
            url_prefix: String::new(),
            api_workers: Arc::new(Semaphore::new(API_WORKERS)),
            scrapes: Arc::new(Semaphore::new(SCRAPES_IN_FLIGHT)),
        }
    }

    /// The UI polls at the collection interval.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Paths under `prefix` (validated by the flag's parser) are served as without it.
    pub fn with_url_prefix(mut self, prefix: String) -> Self {
        self.url_prefix = prefix;
        self
    }

    /// The path as the agent's routes know it: without --url-base-prefix, where it has one.
    fn local_path<'a>(&self, path: &'a str) -> &'a str {
        if self.url_prefix.is_empty() {
            return path;
        }
        match path.strip_prefix(self.url_prefix.as_str()) {
            Some("") => "/",
            Some(rest) if rest.starts_with('/') => rest,
            _ => path,
        }
    }

    /// Serves under `--web-config-file`'s TLS, users, headers and rate limit.
    pub fn with_access(mut self, access: Option<Arc<Access>>) -> Self {
        self.access = access;
        self
    }
}

/// Accepts connections until `shutdown` resolves.
pub async fn serve(listener: TcpListener, server: Server, shutdown: impl Future<Output = ()>) {
    let server = Arc::new(server);
    let connections = Arc::new(Semaphore::new(server.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            // Closed at once: a flood of idle connections costs a counter, not memory or fds.
            let n = server.stats.refused.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(%peer, refused = n + 1, limit = server.max_connections, "connection refused: too many open (--http-max-connections)");
            }
            drop(stream);
            continue;
        };
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            server.stats.open.fetch_add(1, Ordering::Relaxed);
            match server.access.as_ref().filter(|a| a.tls_on()) {
                Some(access) => {
                    let access = Arc::clone(access);
                    if let Some(tls) = handshake(stream, &access, &server, peer).await {
                        serve_connection(tls, &server, peer).await;
                    }
                }
                None => serve_connection(stream, &server, peer).await,
            }
            server.stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// What a client that speaks plain HTTP to the TLS port is told (as Go's servers tell it).
const PLAIN_ON_TLS: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
    Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The TLS handshake, within the idle timeout. A failure is counted, logged at powers of two
/// (a scanner or a misconfigured client does not fill the log), and ends the connection.
async fn handshake(
    stream: tokio::net::TcpStream,
    access: &Access,
    server: &Server,
    peer: std::net::SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let config = access.current().tls.clone()?;
    let result = tokio::time::timeout(server.idle_timeout, async {
        // A TLS connection starts with a handshake record (0x16); anything else (a request
        // line) is plain HTTP, answered with a readable 400 instead of a TLS alert.
        let mut first = [0u8; 1];
        let n = stream.peek(&mut first).await?;
        if n == 1 && first[0] != 0x16 {
            return Ok(Err(stream));
        }
        tokio_rustls::TlsAcceptor::from(config)
            .accept(stream)
            .await
            .map(Ok)
    })
    .await;
    let error = match result {
        Ok(Ok(Ok(tls))) => return Some(tls),
        Ok(Ok(Err(mut plain))) => {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            server.stats.plain_on_tls.fetch_add(1, Ordering::Relaxed);
            // The request head is read first (up to 8 KiB, within a second): closing a socket
            // with unread data resets it, and the client saw a broken pipe instead of the
            // answer (1 run in 6 here).
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let mut head = Vec::with_capacity(1024);
                let mut buf = [0u8; 1024];
                while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match plain.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = plain.write_all(PLAIN_ON_TLS).await;
                let _ = plain.shutdown().await;
            })
            .await;
            "plain HTTP sent to the TLS port".to_string()
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no handshake within --http-idle-timeout".to_string(),
    };
    let n = server.stats.tls_failures.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(%peer, %error, failures = n, "TLS handshake failed");
    }
    None
}

async fn serve_connection<S>(io: S, server: &Arc<Server>, peer: std::net::SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_server = Arc::clone(server);
    let service = service_fn(move |req| {
        let server = Arc::clone(&svc_server);
        async move {
            // A panic in one request costs that request, never the agent.
            let resp = match AssertUnwindSafe(guarded(req, &server)).catch_unwind().await {
                Ok(resp) => resp,
                Err(payload) => {
                    server.panics.caught(Place::Request, &*payload);
                    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
                }
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(server.idle_timeout)
        .serve_connection(TokioIo::new(WriteDeadline::new(io)), service);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// The web config's checks (every path but `/healthz`, which kubelet probes reach without
/// credentials) and its response headers (on every answer), around [`route`].
async fn guarded(req: Request<Incoming>, server: &Server) -> Response<Body> {
    let Some(access) = &server.access else {
        return route(req, server).await;
    };
    let active = access.current();
    let mut resp = if server.local_path(req.uri().path()) == "/healthz" {
        route(req, server).await
    } else {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        match access.decide(&active, auth.as_deref()).await {
            Decision::Allowed => route(req, server).await,
            Decision::Unauthorized => {
                let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Basic realm=\"nodetel\""),
                );
                r
            }
            Decision::TooMany => {
                let mut r = text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n");
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                r
            }
        }
    };
    for (name, value) in &active.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

async fn route(req: Request<Incoming>, server: &Server) -> Response<Body> {
    // cAdvisor's v1 container queries are GETs with a JSON body; POST is accepted for the same.
    if ![Method::GET, Method::HEAD, Method::POST].contains(req.method()) {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET, HEAD and POST\n");
    }
    let current = server.latest.borrow().clone();
    let path = server.local_path(req.uri().path()).to_string();
    if path == "/api" || path.starts_with("/api/") {
        return api_answer(req, path, current, server).await;
    }
    if req.method() == Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST is for /api only\n");
    }
    match path.as_str() {
        "/metrics" => match current {
            Some(p) => {
                let Some(permit) = turn(&server.scrapes, SCRAPE_WAIT, server).await else {
                    return busy("scrapes");
                };
                let body = if wants_gzip(&req) {
                    // Compressed off the async threads, once per pass whoever asks first.
                    let prepared = Arc::clone(&p);
                    tokio::task::spawn_blocking(move || prepared.gzipped())
                        .await
                        .ok()
                } else {
                    None
                };
                let encoded = body.is_some();
                let mut resp = Response::new(ScrapeBody::boxed(
                    body.unwrap_or_else(|| p.metrics.clone()),
                    permit,
                ));
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
                );
                h.insert(
                    header::VARY,
                    header::HeaderValue::from_static("Accept-Encoding"),
                );
                if encoded {
                    h.insert(
                        header::CONTENT_ENCODING,
                        header::HeaderValue::from_static("gzip"),
                    );
                }
                resp
            }
            None => text(StatusCode::SERVICE_UNAVAILABLE, "no snapshot yet\n"),
        },
        // cAdvisor's redirect, relative so that it holds under a path prefix too.
        "/" => {
            let mut resp = text(StatusCode::TEMPORARY_REDIRECT, "see containers/\n");
            // Relative to what the client asked for: `/`, `/prefix/` (stripped by a proxy or
            // by --url-base-prefix) and `/prefix` alike reach `<prefix>/containers/`.
            let location = match req.uri().path().rsplit('/').next() {
                Some(last) if !last.is_empty() => {
                    header::HeaderValue::from_str(&format!("{last}/containers/"))
                        .unwrap_or_else(|_| header::HeaderValue::from_static("containers/"))
                }
                _ => header::HeaderValue::from_static("containers/"),
            };
            resp.headers_mut().insert(header::LOCATION, location);
            resp
        }
        p if crate::ui::is_page(p) => crate::ui::page(p, server.interval),
        p if p.starts_with("/static/") => crate::ui::asset(p, wants_gzip(&req))
            .unwrap_or_else(|| text(StatusCode::NOT_FOUND, "no such file\n")),
        "/healthz" => match current {
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: no snapshot yet\n",
            ),
            Some(p) if p.built.elapsed() > server.stale_after => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "unhealthy: the last snapshot is stale; collection has stalled\n",
            ),
            Some(p) => owned_text(StatusCode::OK, health_details(&p.snapshot.agent)),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /healthz or /api\n",
        ),
    }
}

/// The client takes a gzipped body (`Accept-Encoding`).
fn wants_gzip(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::prepared::accepts_gzip)
}

/// Waits up to `wait` for one of `slots`.
async fn turn(
    slots: &Arc<Semaphore>,
    wait: Duration,
    server: &Server,
) -> Option<OwnedSemaphorePermit> {
    match tokio::time::timeout(wait, Arc::clone(slots).acquire_owned()).await {
        Ok(Ok(p)) => Some(p),
        _ => {
            server.stats.queue_timeouts.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

fn busy(what: &'static str) -> Response<Body> {
    let mut resp = owned_text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("too many {what} in progress; retry\n"),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    resp
}

/// An API answer, computed and serialised on the blocking pool by one of [`API_WORKERS`] and
/// streamed as it is written (see [`Reply`]).
async fn api_answer(
    req: Request<Incoming>,
    path: String,
    current: Option<Arc<Prepared>>,
    server: &Server,
) -> Response<Body> {
    let query = req.uri().query().map(str::to_string);
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let Some(permit) = turn(&server.api_workers, API_WAIT, server).await else {
        return busy("API requests");
    };
    let (reply, head) = Reply::new();
    let api = Arc::clone(&server.api);
    let panics = Arc::clone(&server.panics);
    tokio::task::spawn_blocking(move || {
        // The worker slot is held until the whole answer is written (or the client left).
        let _permit = permit;
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            api::handle(
                &path,
                query.as_deref(),
                &body,
                current.as_ref(),
                &api,
                reply,
            )
        }));
        if let Err(payload) = r {
            panics.caught(Place::Request, &*payload);
        }
    });
    // A panic drops the reply unsent: the request still gets an answer.
    head.await
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"))
}

/// The request body, within [`api::BODY_LIMIT`] and [`api::BODY_TIMEOUT`].
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    let limited = Limited::new(req.into_body(), api::BODY_LIMIT);
    match tokio::time::timeout(api::BODY_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body over 64 KiB\n",
        )),
        Ok(Err(_)) => Err(text(StatusCode::BAD_REQUEST, "request body unreadable\n")),
        Err(_) => Err(text(
            StatusCode::REQUEST_TIMEOUT,
            "request body not sent within 10 s\n",
        )),
    }
}

/// A /metrics body: the exposition in [`SCRAPE_CHUNK`] slices, holding its scrape slot until
/// sent, and ended short after [`SCRAPE_DEADLINE`] (hyper then sees fewer bytes than the length
/// it announced and closes the connection: the client gets an error, not a truncated success).
struct ScrapeBody {
    data: Bytes,
    started: std::time::Instant,
    _permit: OwnedSemaphorePermit,
}

impl ScrapeBody {
    fn boxed(data: Bytes, permit: OwnedSemaphorePermit) -> Body {
        ScrapeBody {
            data,
            started: std::time::Instant::now(),
            _permit: permit,
        }
        .boxed()
    }
}

impl hyper::body::Body for ScrapeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() || self.started.elapsed() > SCRAPE_DEADLINE {
            return Poll::Ready(None);
        }
        let n = self.data.len().min(SCRAPE_CHUNK);
        let chunk = self.data.split_to(n);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.len() as u64)
    }
}

/// A socket whose writes fail once the peer has taken nothing for [`WRITE_TIMEOUT`]: a client
/// that stops reading cannot hold a response (and what it pins) forever.
struct WriteDeadline<S> {
    inner: S,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S) -> Self {
        WriteDeadline {
            inner,
            stalled: None,
        }
    }

    /// Called when the inner write is pending: starts or checks the clock.
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client read nothing for 30 s",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.check(cx).map(Err),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.check(cx).map(Err),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// `ok`, then one line per eBPF program the kernel refused: the agent still serves everything
/// else, so this stays 200 and a liveness probe does not restart it in a loop.
fn health_details(agent: &crate::snapshot::AgentStats) -> String {
    let mut body = String::from("ok\n");
    if let Some(last) = &agent.panics.last {
        let n: u64 = agent.panics.counts.iter().sum();
        body +=
            &format!("degraded: {n} panics caught (nodetel_panics_total), the last in {last}\n");
    }
    for n in &agent.programs_not_attached {
        body += &format!(
            "degraded: eBPF program {} not attached ({}); its metrics are absent\n",
            n.program, n.reason
        );
    }
    body
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    api::full(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn owned_text(status: StatusCode, body: String) -> Response<Body> {
    api::full(status, "text/plain; charset=utf-8", body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ebpf::NotAttached, snapshot::AgentStats};

    #[test]
    fn health_names_each_refused_program_and_stays_ok() {
        let mut agent = AgentStats::default();
        assert_eq!(health_details(&agent), "ok\n");
        agent.programs_not_attached = vec![NotAttached {
            program: "mark_victim",
            reason: "tracepoint oom:mark_victim has no readable format file".into(),
        }];
        let body = health_details(&agent);
        assert!(body.starts_with("ok\n"), "{body}");
        assert!(
            body.contains("degraded: eBPF program mark_victim not attached (tracepoint oom:mark_victim has no readable format file)"),
            "{body}"
        );
    }
}
