//! The CRI-O resolver, through the small HTTP API CRI-O serves on its own socket for monitoring
//! agents (`GET /info`, `GET /containers/<id>`; cAdvisor's CRI-O handler reads the same): name,
//! image and the labels the kubelet set, for sandboxes (infra containers) as for containers.
//!
//! That API has no listing and no events, so containers are looked up by the ids the collector
//! finds in `crio-<id>.scope` paths and cannot name, the moment it finds them; known ids are
//! checked again every resync, and a 404 drops them.
use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Request, StatusCode, header};
use serde::Deserialize;

use super::{
    http_get::{self, GetError},
    registry::{ContainerMeta, Registry, Source},
    session::{self, Reconnect},
};

/// One container's description is a few KiB (labels and annotations).
const MAX_BODY: usize = 1 << 20;
const REQUEST_TIMEOUT: Duration = session::PROBE_DEADLINE;

#[derive(Debug, thiserror::Error)]
pub enum CrioError {
    #[error("failed to connect to CRI-O: {0}")]
    Connect(#[from] std::io::Error),
    #[error("CRI-O {0}")]
    Http(#[from] GetError),
    #[error("CRI-O answered {0} for {1}")]
    Status(StatusCode, String),
    #[error("CRI-O's answer for {0} is not a container: {1}")]
    Parse(String, serde_json::Error),
    #[error("CRI-O request timed out")]
    Timeout,
}

pub struct CrioResolver {
    pub registry: Arc<Registry>,
    pub socket: PathBuf,
    pub resync: Duration,
}

/// What CRI-O says about a container (its `types.ContainerInfo`; the rest is not needed).
/// Go writes a nil map as `null`.
#[derive(Deserialize)]
struct ContainerInfo {
    name: String,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

impl CrioResolver {
    /// Runs until the task is aborted.
    pub async fn run(self) {
        let rc = Reconnect::new(Arc::clone(&self.registry), Source::Crio, &self.socket);
        session::run_sessions(&self, rc, &self.socket).await
    }
}

impl session::SocketResolver for CrioResolver {
    type Error = CrioError;

    /// Answers lookups while CRI-O does: returns only on failure.
    async fn session(&self, rc: &mut Reconnect) -> CrioError {
        if let Err(e) = self.info().await {
            return e;
        }
        rc.connected();
        let mut wanted = self.registry.wanted_changes();
        wanted.mark_changed();
        let mut resync = tokio::time::interval(self.resync);
        resync.tick().await;
        let mut probe = tokio::time::interval(session::PROBE_EVERY);
        probe.tick().await;
        loop {
            let ids = tokio::select! {
                _ = probe.tick() => {
                    if let Err(e) = self.info().await {
                        return e;
                    }
                    continue;
                }
                Ok(()) = wanted.changed() => self.registry.take_wanted(Source::Crio),
                _ = resync.tick() => {
                    // Asked even with nothing to check, so a CRI-O that went away is reported.
                    if let Err(e) = self.info().await {
                        return e;
                    }
                    self.registry.ids(Source::Crio)
                }
            };
            for id in ids {
                match self.lookup(&id).await {
                    Ok(()) => {}
                    // CRI-O answered, but not with this container (a 500 while a container is
                    // being created, an answer we cannot read): counted, and the id is asked
                    // again later; the connection is fine.
                    Err(e @ (CrioError::Status(..) | CrioError::Parse(..))) => {
                        self.registry.count_error(Source::Crio);
                        tracing::debug!(id, error = %e, "CRI-O lookup failed");
                    }
                    Err(e) => return e,
                }
            }
        }
    }
}

impl CrioResolver {
    /// CRI-O's daemon info: the liveness check.
    async fn info(&self) -> Result<(), CrioError> {
        match self.get("/info").await? {
            (StatusCode::OK, _) => Ok(()),
            (status, _) => Err(CrioError::Status(status, "/info".into())),
        }
    }

    /// Names `id` if CRI-O knows it, forgets it if CRI-O does not.
    async fn lookup(&self, id: &str) -> Result<(), CrioError> {
        // Ids come from cgroup paths; only the runtimes' hex ids go into a request path.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(());
        }
        let path = format!("/containers/{id}");
        match self.get(&path).await? {
            (StatusCode::OK, body) => {
                let meta = parse_container(&body).map_err(|e| CrioError::Parse(path, e))?;
                self.registry.upsert(Source::Crio, id, meta);
            }
            // CRI-O's answer for an id it does not have (a container of another runtime under
            // the kubelet's cgroupfs layout, or one already removed).
            (StatusCode::NOT_FOUND, _) => self.registry.remove(Source::Crio, id),
            (status, _) => return Err(CrioError::Status(status, path)),
        }
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<(StatusCode, Bytes), CrioError> {
        let request = Request::get(path)
            // CRI-O's server ignores the host; HTTP/1.1 wants one.
            .header(header::HOST, "crio")
            .body(Empty::<Bytes>::new())
            .map_err(|e| CrioError::Http(GetError::Body(e.to_string())))?;
        let exchange = async {
            let stream = tokio::net::UnixStream::connect(&self.socket).await?;
            Ok(http_get::get(stream, request, MAX_BODY).await?)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| CrioError::Timeout)?
    }
}

pub(crate) fn parse_container(body: &[u8]) -> Result<ContainerMeta, serde_json::Error> {
    let info: ContainerInfo = serde_json::from_slice(body)?;
    Ok(ContainerMeta {
        name: info.name,
        image: info.image.unwrap_or_default(),
        labels: Arc::new(info.labels.unwrap_or_default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{K8S_CONTAINER_NAME, K8S_POD_NAME, path::Runtime};

    /// No CRI-O can be had on this machine (Debian does not package it), so the resolver is
    /// tested against a server answering in the shape of CRI-O's `types.ContainerInfo`: what
    /// `curl --unix-socket /var/run/crio/crio.sock http://c/containers/<id>` prints on a node.
    const CONTAINER: &str = r#"{"name":"k8s_nginx_web-0_prod_0a1b2c3d-1111-2222-3333-444455556666_0","pid":4242,"image":"docker.io/library/nginx:1.27","image_ref":"docker.io/library/nginx@sha256:aa","created_time":1763629200000000000,"labels":{"io.kubernetes.container.name":"nginx","io.kubernetes.pod.name":"web-0","io.kubernetes.pod.namespace":"prod","io.kubernetes.pod.uid":"0a1b2c3d-1111-2222-3333-444455556666"},"annotations":{"io.kubernetes.container.restartCount":"0"},"crio_annotations":{},"log_path":"/var/log/pods/x/nginx/0.log","root":"/var/lib/containers/storage/overlay/aa/merged","sandbox":"99","ip_addresses":["10.85.0.7"]}"#;
    const KNOWN: &str = "1f7b20c02c4037e5c1b9ef2c299804311464a64c29112c1b7d1aa0702a63e8f4";
    /// An id CRI-O answers 500 for (its state not set yet, while the container is created).
    const BROKEN: &str = "3333333333333333333333333333333333333333333333333333333333333333";

    #[test]
    fn answers_parse_and_nil_maps_are_empty() {
        let meta = parse_container(CONTAINER.as_bytes()).expect("parses");
        assert_eq!(meta.image, "docker.io/library/nginx:1.27");
        assert_eq!(
            meta.labels.get(K8S_CONTAINER_NAME).map(String::as_str),
            Some("nginx")
        );
        let bare = parse_container(br#"{"name":"x","image":"","labels":null}"#).expect("parses");
        assert!(bare.labels.is_empty());
        assert!(parse_container(b"can't find the container").is_err());
    }

    /// A fake CRI-O on a unix socket: knows KNOWN until `forget` is set, answers 404 otherwise,
    /// and records the paths asked.
    async fn fake_crio(
        socket: PathBuf,
        forget: Arc<std::sync::atomic::AtomicBool>,
        asked: Arc<std::sync::Mutex<Vec<String>>>,
    ) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            asked.lock().expect("lock").push(path.clone());
            let gone = forget.load(std::sync::atomic::Ordering::SeqCst);
            let (status, body) = match path.as_str() {
                "/info" => ("200 OK", r#"{"storage_driver":"overlay","storage_root":"/var/lib/containers/storage","cgroup_driver":"systemd"}"#.to_string()),
                p if p == format!("/containers/{KNOWN}") && !gone => ("200 OK", CONTAINER.to_string()),
                p if p == format!("/containers/{BROKEN}") => ("500 Internal Server Error", "container state is nil\n".to_string()),
                p => ("404 Not Found", format!("can't find the container with id {}\n", p.trim_start_matches("/containers/"))),
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes()).await;
        }
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        let start = std::time::Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(5), "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wanted ids are looked up at once and named; unknown ones are not errors; a failed lookup
    /// is counted without dropping the connection; a container CRI-O no longer has is forgotten
    /// at the next resync; a CRI-O that goes away is counted and the resolver comes back by
    /// itself.
    #[tokio::test]
    async fn lookups_resyncs_and_outages() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("crio.sock");
        let registry = Arc::new(Registry::default());
        let resolver = CrioResolver {
            registry: Arc::clone(&registry),
            socket: socket.clone(),
            resync: Duration::from_millis(300),
        };
        let forget = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let server = tokio::spawn(fake_crio(
            socket.clone(),
            Arc::clone(&forget),
            Arc::clone(&asked),
        ));
        let task = tokio::spawn(resolver.run());
        let unknown = "2".repeat(64);
        registry.want(Runtime::Crio, KNOWN);
        registry.want(Runtime::Cri, &unknown);
        until("named", || registry.lookup(KNOWN).is_some()).await;
        let meta = registry.lookup(KNOWN).expect("known");
        assert_eq!(
            meta.name,
            "k8s_nginx_web-0_prod_0a1b2c3d-1111-2222-3333-444455556666_0"
        );
        assert_eq!(
            meta.labels.get(K8S_POD_NAME).map(String::as_str),
            Some("web-0")
        );
        until("404 asked", || {
            asked
                .lock()
                .expect("lock")
                .contains(&format!("/containers/{unknown}"))
        })
        .await;
        let stats = registry.stats(&[Source::Crio]);
        assert!(stats[0].up, "{stats:?}");
        assert_eq!(stats[0].errors, 0, "a 404 is not an error");

        // A 500 for one container is counted, and the resolver stays connected.
        registry.want(Runtime::Crio, BROKEN);
        until("500 counted", || {
            registry.stats(&[Source::Crio])[0].errors == 1
        })
        .await;
        assert!(registry.stats(&[Source::Crio])[0].up);
        assert!(registry.lookup(BROKEN).is_none());

        forget.store(true, Ordering::SeqCst);
        until("forgotten at resync", || registry.lookup(KNOWN).is_none()).await;

        // CRI-O restarts: the socket goes and comes back.
        let errors_before = registry.stats(&[Source::Crio])[0].errors;
        server.abort();
        let _ = server.await;
        std::fs::remove_file(&socket).expect("rm socket");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("dead socket");
        drop(listener); // a socket file nobody listens on: connections are refused
        until("down", || !registry.stats(&[Source::Crio])[0].up).await;
        assert!(registry.stats(&[Source::Crio])[0].errors > errors_before);
        std::fs::remove_file(&socket).expect("rm socket");
        forget.store(false, Ordering::SeqCst);
        let _server = tokio::spawn(fake_crio(socket.clone(), forget, Arc::clone(&asked)));
        until("back up", || registry.stats(&[Source::Crio])[0].up).await;
        task.abort();
    }

    /// A CRI-O that accepts connections and answers nothing (SIGSTOP, a deadlock) is reported
    /// down by the liveness probe, long before the next resync would notice.
    #[tokio::test]
    async fn a_silent_crio_is_reported_down_within_the_probe_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("crio.sock");
        let registry = Arc::new(Registry::default());
        let forget = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let server = tokio::spawn(fake_crio(socket.clone(), forget, asked));
        let resolver = CrioResolver {
            registry: Arc::clone(&registry),
            socket: socket.clone(),
            resync: Duration::from_secs(3600),
        };
        let task = tokio::spawn(resolver.run());
        until("up", || registry.stats(&[Source::Crio])[0].up).await;
        // Wedged: the socket is there and accepts, nothing is ever answered.
        server.abort();
        let _ = server.await;
        std::fs::remove_file(&socket).expect("rm socket");
        let silent = tokio::net::UnixListener::bind(&socket).expect("bind");
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let start = std::time::Instant::now();
        while registry.stats(&[Source::Crio])[0].up {
            let limit = session::PROBE_EVERY + session::PROBE_DEADLINE + Duration::from_secs(1);
            assert!(
                start.elapsed() < limit,
                "still up after {:?}",
                start.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        task.abort();
        hold.abort();
    }
}
