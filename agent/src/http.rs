//! The HTTP layer: thin on purpose. It serves the latest prepared snapshot (and the history and
//! events beside it); no request reaches the kernel or cgroupfs.
use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::watch};

use crate::{
    api::{self, ApiState, Body},
    prepared::Prepared,
};

pub type Latest = watch::Receiver<Option<Arc<Prepared>>>;

/// Accepts connections until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    latest: Latest,
    stale_after: Duration,
    api: Arc<ApiState>,
    shutdown: impl Future<Output = ()>,
) {
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
        let latest = latest.clone();
        let api = Arc::clone(&api);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let latest = latest.clone();
                let api = Arc::clone(&api);
                async move { Ok::<_, Infallible>(route(req, &latest, stale_after, &api).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                // A client that never finishes its headers must not hold a connection forever.
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

async fn route(
    req: Request<Incoming>,
    latest: &Latest,
    stale_after: Duration,
    api: &ApiState,
) -> Response<Body> {
    // cAdvisor's v1 container queries are GETs with a JSON body; POST is accepted for the same.
    if ![Method::GET, Method::HEAD, Method::POST].contains(req.method()) {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET, HEAD and POST\n");
    }
    let current = latest.borrow().clone();
    let path = req.uri().path().to_string();
    if path == "/api" || path.starts_with("/api/") {
        let query = req.uri().query().map(str::to_string);
        let body = match read_body(req).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        return api::handle(&path, query.as_deref(), &body, current.as_ref(), api);
    }
    if req.method() == Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST is for /api only\n");
    }
    match path.as_str() {
        "/metrics" => match current {
            Some(p) => api::full(
                StatusCode::OK,
                crate::metrics::CONTENT_TYPE,
                p.metrics.clone(),
            ),
            None => text(StatusCode::SERVICE_UNAVAILABLE, "no snapshot yet\n"),
        },
        "/" => {
            let mut resp = text(StatusCode::TEMPORARY_REDIRECT, "see /containers/\n");
            resp.headers_mut().insert(
                header::LOCATION,
                header::HeaderValue::from_static("/containers/"),
            );
            resp
        }
        "/containers" | "/containers/" => api::index_page(current.as_ref().map(|p| &*p.snapshot)),
        "/healthz" => match current {
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: no snapshot yet\n",
            ),
            Some(p) if p.built.elapsed() > stale_after => text(
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

/// `ok`, then one line per eBPF program the kernel refused: the agent still serves everything
/// else, so this stays 200 and a liveness probe does not restart it in a loop.
fn health_details(agent: &crate::snapshot::AgentStats) -> String {
    let mut body = String::from("ok\n");
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
