//! The HTTP layer: thin on purpose. It serves the latest prepared snapshot; no request reaches the
//! kernel or cgroupfs.
use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::watch};

use crate::prepared::Prepared;

pub type Latest = watch::Receiver<Option<Arc<Prepared>>>;

/// Accepts connections until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    latest: Latest,
    stale_after: Duration,
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
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let latest = latest.clone();
                async move { Ok::<_, Infallible>(route(&req, &latest, stale_after)) }
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

fn route(req: &Request<Incoming>, latest: &Latest, stale_after: Duration) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    let current = latest.borrow().clone();
    match req.uri().path() {
        "/metrics" => match current {
            Some(p) => Response::builder()
                .header(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)
                .body(Full::new(p.metrics.clone()))
                .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response\n")),
            None => text(StatusCode::SERVICE_UNAVAILABLE, "no snapshot yet\n"),
        },
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
            "not found; try /metrics or /healthz\n",
        ),
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

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    owned_text(status, body.to_string())
}

fn owned_text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
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
