//! The local kubelet's `/pods` (what the kubelet itself runs, no API server round trip): pod
//! names for pod cgroups no runtime has described, and each pod's owning workload, exported as
//! one `nodetel_pod_info` series per pod rather than as more labels on every series.
//!
//! Polled, not watched: the kubelet has no watch on `/pods`, and names come from the runtimes'
//! labels the moment a container starts; this only fills gaps and adds owners.
use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Request, StatusCode, Uri, header};
use serde::Deserialize;

use super::{
    registry::{Registry, Source},
    session::Reconnect,
};
pub use crate::snapshot::health::{PodContainer, PodInfo};

/// A `/pods` answer larger than this is refused (a node's pod list is a few MiB at most).
const MAX_BODY: usize = 64 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl PodContainer {
    /// The name the runtime itself gives the container, which is what cAdvisor shows as `name`:
    /// CRI-O and cri-dockerd name CRI containers `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`;
    /// containerd has no names, so cAdvisor uses the id.
    pub fn runtime_name(&self, pod: &PodInfo) -> String {
        match self.runtime.as_str() {
            "cri-o" | "docker" => format!(
                "k8s_{}_{}_{}_{}_{}",
                self.name, pod.name, pod.namespace, pod.uid, self.restart_count
            ),
            _ => self.id.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("invalid kubelet URL `{0}` (want http(s)://host:port)")]
    Url(String),
    #[error("failed to connect to the kubelet: {0}")]
    Connect(#[from] std::io::Error),
    #[error("TLS setup for the kubelet failed: {0}")]
    Tls(String),
    #[error("kubelet {0}")]
    Http(#[from] super::http_get::GetError),
    #[error("kubelet answered {0} for /pods")]
    Status(StatusCode),
    #[error("kubelet answer unreadable: {0}")]
    Body(String),
    #[error("kubelet /pods is not a pod list: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("kubelet request timed out")]
    Timeout,
    #[error(
        "refusing to send the kubelet bearer token over plain http: use https://<node>:10250 \
         (verified with --kubelet-ca-file), or set --kubelet-token-file '' for the read-only port"
    )]
    Insecure,
}

pub struct KubeletClient {
    pub url: String,
    /// Bearer token, re-read on every request (projected tokens rotate).
    pub token_file: Option<PathBuf>,
    /// CA bundle for the kubelet's serving certificate (https only).
    pub ca_file: Option<PathBuf>,
    /// This node's name, for pods whose spec lacks it.
    pub node: String,
}

impl KubeletClient {
    pub async fn pods(&self) -> Result<Vec<PodInfo>, KubeletError> {
        let body = tokio::time::timeout(REQUEST_TIMEOUT, self.get("/pods"))
            .await
            .map_err(|_| KubeletError::Timeout)??;
        parse_pods(&body, &self.node)
    }

    /// What start-up checks before the first request: the URL, and that the token (which
    /// carries the agent's kubelet rights) can only ever travel over https verified against the
    /// CA file. `http://` (the read-only port) is accepted only without a token file.
    pub fn check(&self) -> Result<(), KubeletError> {
        let base: Uri = self
            .url
            .parse()
            .map_err(|_| KubeletError::Url(self.url.clone()))?;
        match (base.scheme_str(), base.host()) {
            (Some("https"), Some(_)) => self.tls_config().map(|_| ()),
            (Some("http"), Some(_)) if self.token_file.is_some() => Err(KubeletError::Insecure),
            (Some("http"), Some(_)) => Ok(()),
            _ => Err(KubeletError::Url(self.url.clone())),
        }
    }

    async fn get(&self, path: &str) -> Result<Bytes, KubeletError> {
        let base: Uri = self
            .url
            .parse()
            .map_err(|_| KubeletError::Url(self.url.clone()))?;
        let (Some(scheme), Some(host)) = (base.scheme_str(), base.host()) else {
            return Err(KubeletError::Url(self.url.clone()));
        };
        let tls = match scheme {
            "https" => true,
            "http" => false,
            _ => return Err(KubeletError::Url(self.url.clone())),
        };
        let port = base.port_u16().unwrap_or(if tls { 10250 } else { 10255 });
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let mut request = Request::get(path).header(
            header::HOST,
            base.authority().map_or(host.as_str(), |a| a.as_str()),
        );
        if let Some(file) = &self.token_file {
            // Never in clear text, whatever start-up let through.
            if !tls {
                return Err(KubeletError::Insecure);
            }
            let token = std::fs::read_to_string(file)?;
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.trim()));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| KubeletError::Body(e.to_string()))?;
        let tls_config = if tls { Some(self.tls_config()?) } else { None };
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        if let Some(config) = tls_config {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| KubeletError::Tls(e.to_string()))?;
            let stream = connector.connect(name, tcp).await?;
            send(stream, request).await
        } else {
            send(tcp, request).await
        }
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, KubeletError> {
        let ca = self
            .ca_file
            .as_ref()
            .ok_or_else(|| KubeletError::Tls("no CA file for an https kubelet URL".into()))?;
        Ok(crate::tls_client::trusting(ca)
            .map_err(KubeletError::Tls)?
            .with_no_client_auth())
    }

    /// Polls until aborted.
    pub async fn run(self, registry: Arc<Registry>, every: Duration) {
        let url = std::path::Path::new(&self.url);
        let mut rc = Reconnect::new(Arc::clone(&registry), Source::Kubelet, url);
        loop {
            match self.pods().await {
                Ok(pods) => {
                    registry.set_pods(pods);
                    rc.connected();
                    tokio::time::sleep(every).await;
                }
                Err(e) => {
                    let delay = rc.failed(&e, every);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

async fn send<IO>(io: IO, request: Request<Empty<Bytes>>) -> Result<Bytes, KubeletError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match super::http_get::get(io, request, MAX_BODY).await? {
        (StatusCode::OK, body) => Ok(body),
        (status, _) => Err(KubeletError::Status(status)),
    }
}

#[derive(Deserialize)]
struct PodList {
    kind: String,
    items: Vec<Pod>,
}

#[derive(Deserialize)]
struct Pod {
    metadata: Metadata,
    #[serde(default)]
    spec: Spec,
    #[serde(default)]
    status: Status,
}

#[derive(Default, Deserialize)]
struct Status {
    #[serde(default, rename = "initContainerStatuses")]
    init: Vec<ContainerStatus>,
    #[serde(default, rename = "containerStatuses")]
    containers: Vec<ContainerStatus>,
    #[serde(default, rename = "ephemeralContainerStatuses")]
    ephemeral: Vec<ContainerStatus>,
}

#[derive(Deserialize)]
struct ContainerStatus {
    name: String,
    #[serde(default)]
    image: String,
    /// `<runtime>://<id>`; absent while the container has never been created.
    #[serde(default, rename = "containerID")]
    container_id: String,
    #[serde(default, rename = "restartCount")]
    restart_count: u32,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    namespace: String,
    uid: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default, rename = "ownerReferences")]
    owner_references: Vec<OwnerReference>,
}

#[derive(Deserialize)]
struct OwnerReference {
    kind: String,
    name: String,
    #[serde(default)]
    controller: bool,
}

#[derive(Default, Deserialize)]
struct Spec {
    #[serde(default, rename = "nodeName")]
    node_name: String,
}

/// Parses a `/pods` answer. Strict where it matters: a pod without a name, namespace or uid
/// fails the whole answer rather than naming a cgroup wrongly.
pub fn parse_pods(body: &[u8], node: &str) -> Result<Vec<PodInfo>, KubeletError> {
    let list: PodList = serde_json::from_slice(body)?;
    if list.kind != "PodList" {
        return Err(KubeletError::Body(format!(
            "kind `{}`, want PodList",
            list.kind
        )));
    }
    Ok(list
        .items
        .into_iter()
        .map(|p| {
            let (owner_kind, owner_name) = owner(&p.metadata);
            let containers = [p.status.init, p.status.containers, p.status.ephemeral]
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    let (runtime, id) = c.container_id.split_once("://")?;
                    // The id is matched against cgroup paths; anything but the runtimes' hex
                    // ids is not one (and must not become part of a name).
                    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| {
                        PodContainer {
                            id: id.to_string(),
                            runtime: runtime.to_string(),
                            name: c.name,
                            image: c.image,
                            restart_count: c.restart_count,
                        }
                    })
                })
                .collect();
            PodInfo {
                containers,
                uid: p.metadata.uid,
                name: p.metadata.name,
                namespace: p.metadata.namespace,
                owner_kind,
                owner_name,
                node: if p.spec.node_name.is_empty() {
                    node.to_string()
                } else {
                    p.spec.node_name
                },
            }
        })
        .collect())
}

fn owner(meta: &Metadata) -> (String, String) {
    let Some(o) = meta
        .owner_references
        .iter()
        .find(|o| o.controller)
        .or(meta.owner_references.first())
    else {
        return (String::new(), String::new());
    };
    // A Deployment's ReplicaSet is `<deployment>-<pod-template-hash>`.
    if o.kind == "ReplicaSet"
        && let Some(hash) = meta.labels.get("pod-template-hash")
        && let Some(deployment) = o.name.strip_suffix(&format!("-{hash}"))
    {
        return ("Deployment".into(), deployment.into());
    }
    (o.kind.clone(), o.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No kubelet can run on this machine, so the client is tested against a `/pods` answer
    /// written in the shape kubelet 1.3x serves (testdata/kubelet/pods.json: a Deployment's
    /// pod, a StatefulSet's, a DaemonSet's, a Job's, a static mirror pod and a bare pod, with
    /// CRI-O container statuses), served over plain HTTP and over TLS.
    const PODS: &str = include_str!("../../testdata/kubelet/pods.json");

    fn by_name<'a>(pods: &'a [PodInfo], name: &str) -> &'a PodInfo {
        pods.iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("pod {name} missing"))
    }

    #[test]
    fn pods_and_their_owners() {
        let pods = parse_pods(PODS.as_bytes(), "fallback-node").expect("fixture parses");
        assert_eq!(pods.len(), 6);
        let web = by_name(&pods, "web-7c9f8d6b5-x2x9k");
        assert_eq!(
            (web.owner_kind.as_str(), web.owner_name.as_str()),
            ("Deployment", "web")
        );
        assert_eq!(web.uid, "5d3a1c2e-8f4b-4d6a-9c1e-2b7f3a9d0e11");
        assert_eq!(web.namespace, "shop");
        assert_eq!(web.node, "node-1");
        let db = by_name(&pods, "db-0");
        assert_eq!(
            (db.owner_kind.as_str(), db.owner_name.as_str()),
            ("StatefulSet", "db")
        );
        let agent = by_name(&pods, "nodetel-4kq8z");
        assert_eq!(agent.owner_kind, "DaemonSet");
        let job = by_name(&pods, "migrate-28474560-bk2mz");
        assert_eq!(
            (job.owner_kind.as_str(), job.owner_name.as_str()),
            ("Job", "migrate-28474560")
        );
        let mirror = by_name(&pods, "kube-apiserver-node-1");
        assert_eq!(mirror.owner_kind, "Node");
        let bare = by_name(&pods, "debug");
        assert_eq!(
            (bare.owner_kind.as_str(), bare.owner_name.as_str()),
            ("", "")
        );
        assert_eq!(bare.node, "fallback-node", "no nodeName: the agent's node");
    }

    #[test]
    fn containers_from_the_statuses() {
        let pods = parse_pods(PODS.as_bytes(), "n").expect("fixture parses");
        let web = by_name(&pods, "web-7c9f8d6b5-x2x9k");
        // The init container that ran and the running app container; the sidecar still being
        // created has no id yet.
        let names: Vec<_> = web.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["schema", "main"]);
        let main = &web.containers[1];
        assert_eq!(
            main.id,
            "84e0e502d968b4599ebdbe83e9777f720973638828c621ccf8167299a842f20d"
        );
        assert_eq!(
            (
                main.runtime.as_str(),
                main.image.as_str(),
                main.restart_count
            ),
            ("cri-o", "registry.example/app:1", 2)
        );
        assert_eq!(
            main.runtime_name(web),
            "k8s_main_web-7c9f8d6b5-x2x9k_shop_5d3a1c2e-8f4b-4d6a-9c1e-2b7f3a9d0e11_2"
        );
        let debug = by_name(&pods, "debug");
        let names: Vec<_> = debug.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["main", "debugger-x7"], "ephemeral containers too");
        // containerd has no names: cAdvisor shows the id.
        let c = PodContainer {
            runtime: "containerd".into(),
            ..main.clone()
        };
        assert_eq!(c.runtime_name(web), c.id);
    }

    #[test]
    fn ids_that_are_not_runtime_ids_are_dropped() {
        let body = r#"{"kind":"PodList","items":[{"metadata":{"name":"p","namespace":"n","uid":"u"},
            "status":{"containerStatuses":[
                {"name":"a","containerID":"cri-o://../../etc"},
                {"name":"b","containerID":"abc"},
                {"name":"c","containerID":"docker://"},
                {"name":"d","containerID":"docker://0123abcd","image":"i"}]}}]}"#;
        let pods = parse_pods(body.as_bytes(), "n").expect("parses");
        let ids: Vec<_> = pods[0].containers.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["0123abcd"]);
    }

    #[test]
    fn malformed_answers_are_errors() {
        for bad in [
            "",
            "{}",
            r#"{"kind":"Status","items":[]}"#,
            r#"{"kind":"PodList","items":[{"metadata":{"name":"x","namespace":"y"}}]}"#,
            r#"{"kind":"PodList","items":"nope"}"#,
        ] {
            assert!(parse_pods(bad.as_bytes(), "n").is_err(), "{bad:?}");
        }
    }

    /// The client against a local plain-HTTP server (the read-only port): path and answer, no
    /// token; with a token file it refuses at the check and never connects.
    #[tokio::test]
    async fn plain_http_reads_the_list_and_never_carries_the_token() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.expect("read");
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: application/json\r\n\r\n{}",
                PODS.len(),
                PODS
            );
            s.write_all(reply.as_bytes()).await.expect("write");
            head
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").expect("token");
        let with_token = KubeletClient {
            url: format!("http://{addr}"),
            token_file: Some(token),
            ca_file: None,
            node: "n".into(),
        };
        assert!(matches!(with_token.check(), Err(KubeletError::Insecure)));
        let err = with_token.pods().await.expect_err("token over http");
        assert!(matches!(err, KubeletError::Insecure), "{err}");
        let client = KubeletClient {
            token_file: None,
            ..with_token
        };
        client.check().expect("http without a token");
        let pods = client.pods().await.expect("pods");
        assert_eq!(pods.len(), 6);
        let head = server.await.expect("server");
        assert!(head.starts_with("GET /pods HTTP/1.1\r\n"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("authorization"),
            "{head}"
        );
    }

    /// A CA and a serving certificate it signed for `san` (PEM CA, DER cert, DER key).
    fn kubelet_certs(san: &str) -> (String, Vec<u8>, Vec<u8>) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("ca");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec![san.to_string()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("cert");
        (ca.pem(), cert.der().to_vec(), key.serialize_der())
    }

    /// Serves one `/pods` answer over TLS with the given certificate; returns the address and
    /// the request head it received (None when the handshake failed).
    async fn tls_kubelet(
        cert: Vec<u8>,
        key: Vec<u8>,
    ) -> (
        std::net::SocketAddr,
        tokio::task::JoinHandle<Option<String>>,
    ) {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert)],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut s = acceptor.accept(tcp).await.ok()?;
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.ok()?;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{}",
                PODS.len(),
                PODS
            );
            s.write_all(reply.as_bytes()).await.ok()?;
            Some(String::from_utf8_lossy(&buf[..n]).to_string())
        });
        (addr, server)
    }

    /// The kubelet's https port as the agent meets it: a serving certificate from the cluster's
    /// CA, verified against `--kubelet-ca-file`; a certificate from another CA, or for another
    /// host, is refused and the token never leaves.
    #[tokio::test]
    async fn https_is_verified_against_the_ca_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret").expect("token");
        let client = |addr: std::net::SocketAddr, ca: &str| {
            let ca_file = dir.path().join(format!("ca-{}.pem", addr.port()));
            std::fs::write(&ca_file, ca).expect("ca file");
            KubeletClient {
                url: format!("https://{addr}"),
                token_file: Some(token.clone()),
                ca_file: Some(ca_file),
                node: "n".into(),
            }
        };

        let (ca, cert, key) = kubelet_certs("127.0.0.1");
        let (addr, server) = tls_kubelet(cert, key).await;
        let pods = client(addr, &ca).pods().await.expect("pods over TLS");
        assert_eq!(pods.len(), 6);
        let head = server.await.expect("server").expect("handshake");
        assert!(head.contains("authorization: Bearer s3cret\r\n"), "{head}");

        let (other_ca, _, _) = kubelet_certs("127.0.0.1");
        let (_, cert, key) = kubelet_certs("127.0.0.1");
        let (addr, server) = tls_kubelet(cert, key).await;
        let err = client(addr, &other_ca).pods().await.expect_err("other CA");
        assert!(err.to_string().contains("certificate"), "{err}");
        assert!(server.await.expect("server").is_none(), "no request sent");

        let (ca, cert, key) = kubelet_certs("kubelet.example");
        let (addr, server) = tls_kubelet(cert, key).await;
        let err = client(addr, &ca).pods().await.expect_err("wrong host");
        assert!(err.to_string().contains("certificate"), "{err}");
        assert!(server.await.expect("server").is_none(), "no request sent");
    }

    #[tokio::test]
    async fn https_without_a_ca_is_refused_before_connecting() {
        let client = KubeletClient {
            url: "https://127.0.0.1:1".into(),
            token_file: None,
            ca_file: None,
            node: "n".into(),
        };
        let err = client.pods().await.expect_err("no CA");
        assert!(matches!(err, KubeletError::Tls(_)), "{err}");
        assert!(matches!(client.check(), Err(KubeletError::Tls(_))));
        for bad in ["ftp://127.0.0.1", "127.0.0.1:10250", "https://"] {
            let c = KubeletClient {
                url: bad.into(),
                token_file: None,
                ca_file: None,
                node: "n".into(),
            };
            assert!(matches!(c.check(), Err(KubeletError::Url(_))), "{bad}");
        }
    }

    /// A kubelet that accepts and never answers costs one deadline, then an error (the
    /// resolver reports down and retries with backoff), never a hung resolver.
    #[tokio::test]
    async fn a_silent_kubelet_is_an_error_within_the_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let client = KubeletClient {
            url: format!("http://{addr}"),
            token_file: None,
            ca_file: None,
            node: "n".into(),
        };
        let start = std::time::Instant::now();
        let err = client.pods().await.expect_err("no answer");
        assert!(matches!(err, KubeletError::Timeout), "{err}");
        assert!(start.elapsed() < REQUEST_TIMEOUT + Duration::from_secs(2));
        hold.abort();
    }
}
