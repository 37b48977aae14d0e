//! One receiver: its URL, credentials, TLS, extra headers and proxy, and one POST to it.
use std::{path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Request, StatusCode, Uri,
    header::{self, HeaderName, HeaderValue},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpStream,
};

/// A receiver's error answer is read up to this much (for the log), the rest discarded.
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("bad URL `{0}` (http:// or https:// with a host)")]
    Url(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("proxy: {0}")]
    Proxy(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Request(String),
}

/// What a receiver answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// `Retry-After` in seconds, when given as a number.
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

/// How to reach one receiver.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    uri: Uri,
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Sent with every request: Authorization (basic), extra headers.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Read at each request, so a rotated token is picked up.
    bearer_token_file: Option<PathBuf>,
    proxy: Option<Proxy>,
    timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct Proxy {
    host: String,
    port: u16,
}

impl Proxy {
    /// `http://host:port` (the proxy itself is spoken to in clear; https targets are tunnelled
    /// through it with CONNECT, so the receiver's TLS is end to end).
    pub fn parse(url: &str) -> Result<Proxy, TargetError> {
        let uri: Uri = url.parse().map_err(|_| TargetError::Url(url.into()))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http"), Some(host)) => Ok(Proxy {
                host: host.trim_start_matches('[').trim_end_matches(']').into(),
                port: uri.port_u16().unwrap_or(80),
            }),
            _ => Err(TargetError::Url(url.into())),
        }
    }
}

#[derive(Default)]
pub struct TargetOptions {
    pub basic_auth: Option<(String, String)>,
    pub bearer_token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub headers: Vec<(String, String)>,
    pub proxy: Option<Proxy>,
    pub timeout: Duration,
}

impl Target {
    pub fn new(url: &str, opts: &TargetOptions) -> Result<Target, TargetError> {
        let uri: Uri = url.parse().map_err(|_| TargetError::Url(url.into()))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(TargetError::Url(url.into())),
        };
        let host = uri
            .host()
            .ok_or_else(|| TargetError::Url(url.into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let mut headers = Vec::new();
        for (name, value) in &opts.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| TargetError::Request(format!("header `{name}`: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| TargetError::Request(format!("header `{name}` value: {e}")))?;
            headers.push((name, value));
        }
        if let Some((user, password)) = &opts.basic_auth {
            use base64::Engine as _;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let value = HeaderValue::from_str(&format!("Basic {token}"))
                .map_err(|e| TargetError::Request(e.to_string()))?;
            headers.push((header::AUTHORIZATION, value));
        }
        let tls = if tls {
            Some(Arc::new(tls_config(opts)?))
        } else {
            // cAdvisor's default InfluxDB account (root/root) is no secret worth a warning.
            let default_account = opts
                .basic_auth
                .as_ref()
                .is_some_and(|(u, p)| u == "root" && p == "root");
            if (opts.basic_auth.is_some() && !default_account) || opts.bearer_token_file.is_some() {
                tracing::warn!(url, "push credentials sent over plain http");
            }
            None
        };
        Ok(Target {
            url: url.to_string(),
            uri,
            host,
            port,
            tls,
            headers,
            bearer_token_file: opts.bearer_token_file.clone(),
            proxy: opts.proxy.clone(),
            timeout: opts.timeout,
        })
    }

    /// POSTs `body` with `headers`, within the target's timeout.
    pub async fn post(
        &self,
        body: Bytes,
        headers: &[(HeaderName, &'static str)],
    ) -> Result<Answer, TargetError> {
        tokio::time::timeout(self.timeout, self.exchange(body, headers))
            .await
            .map_err(|_| TargetError::Timeout(self.timeout))?
    }

    async fn exchange(
        &self,
        body: Bytes,
        headers: &[(HeaderName, &'static str)],
    ) -> Result<Answer, TargetError> {
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        // Through a proxy, plain http is sent to it in absolute form; https is tunnelled.
        let target = match (&self.proxy, &self.tls) {
            (Some(_), None) => self.url.clone(),
            _ => path,
        };
        let authority = self
            .uri
            .authority()
            .map_or(self.host.as_str(), |a| a.as_str());
        let mut request = Request::post(target).header(header::HOST, authority);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        if let Some(file) = &self.bearer_token_file {
            let token = std::fs::read_to_string(file)?;
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.trim()));
        }
        let request = request
            .header(
                header::USER_AGENT,
                concat!("nodetel/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|e| TargetError::Request(e.to_string()))?;
        let tcp = match &self.proxy {
            Some(p) => TcpStream::connect((p.host.as_str(), p.port)).await?,
            None => TcpStream::connect((self.host.as_str(), self.port)).await?,
        };
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some(config) => {
                let mut tcp = tcp;
                if self.proxy.is_some() {
                    connect_tunnel(&mut tcp, &self.host, self.port).await?;
                }
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| TargetError::Tls(e.to_string()))?;
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await?;
                send(stream, request).await
            }
            None => send(tcp, request).await,
        }
    }
}

/// `CONNECT host:port` through an HTTP proxy; the stream is then the tunnel.
async fn connect_tunnel(tcp: &mut TcpStream, host: &str, port: u16) -> Result<(), TargetError> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    tcp.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await?;
    // The proxy's answer head, byte by byte so nothing of the tunnel is read past it.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err(TargetError::Proxy("answer head over 8 KiB".into()));
        }
        let b = tcp.read_u8().await?;
        head.push(b);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(TargetError::Proxy(format!(
            "CONNECT {authority}: {}",
            line.lines().next().unwrap_or("")
        )));
    }
    Ok(())
}

async fn send<IO>(io: IO, request: Request<Full<Bytes>>) -> Result<Answer, TargetError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // An error answer's body is only for the log: a longer one is cut, not refused.
    let (status, headers, body) = crate::identity::http_get::exchange(io, request, MAX_ANSWER)
        .await
        .or_else(|e| match e {
            crate::identity::http_get::GetError::Http(e) => Err(TargetError::Http(e)),
            crate::identity::http_get::GetError::Body(_) => Ok((
                StatusCode::INTERNAL_SERVER_ERROR,
                hyper::HeaderMap::new(),
                Bytes::new(),
            )),
        })?;
    let retry_after = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

fn tls_config(opts: &TargetOptions) -> Result<rustls::ClientConfig, TargetError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
    let ca = opts.ca_file.as_ref().ok_or_else(|| {
        TargetError::Tls("an https URL needs --remote-write-ca-file (the receiver's CA)".into())
    })?;
    let builder = crate::tls_client::trusting(ca).map_err(TargetError::Tls)?;
    match (&opts.cert_file, &opts.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| TargetError::Tls(format!("{}: {e}", cert.display())))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TargetError::Tls(format!("{}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| TargetError::Tls(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TargetError::Tls(e.to_string()))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(TargetError::Tls(
            "--remote-write-cert-file and --remote-write-key-file go together".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn opts() -> TargetOptions {
        TargetOptions {
            timeout: Duration::from_secs(2),
            ..TargetOptions::default()
        }
    }

    #[test]
    fn urls_and_options_are_checked_at_start() {
        assert!(Target::new("http://127.0.0.1:9090/api/v1/write", &opts()).is_ok());
        assert!(matches!(
            Target::new("ftp://x/", &opts()),
            Err(TargetError::Url(_))
        ));
        assert!(matches!(
            Target::new("https://x/api/v1/write", &opts()),
            Err(TargetError::Tls(_))
        ));
        let mut bad_header = opts();
        bad_header.headers = vec![("X-Scope-OrgID".into(), "a\nb".into())];
        assert!(Target::new("http://x/", &bad_header).is_err());
        assert!(Proxy::parse("http://proxy:3128").is_ok());
        assert!(Proxy::parse("socks5://proxy:1080").is_err());
    }

    /// A tiny receiver on a local socket: what the request carried, and its answer.
    #[tokio::test]
    async fn posts_the_body_with_headers_and_reads_retry_after() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&got).contains("body!") {
                let n = s.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nslow")
                .await
                .expect("write");
            String::from_utf8_lossy(&got).into_owned()
        });
        let mut o = opts();
        o.basic_auth = Some(("u".into(), "p".into()));
        o.headers = vec![("X-Scope-OrgID".into(), "tenant-1".into())];
        let t = Target::new(&format!("http://{addr}/api/v1/write"), &o).expect("target");
        let answer = t
            .post(
                Bytes::from_static(b"body!"),
                &[(header::CONTENT_TYPE, "application/x-protobuf")],
            )
            .await
            .expect("post");
        assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(answer.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(&answer.body[..], b"slow");
        let request = server.await.expect("server").to_ascii_lowercase();
        assert!(
            request.starts_with("post /api/v1/write http/1.1"),
            "{request}"
        );
        for needle in [
            "x-scope-orgid: tenant-1",
            "authorization: basic dtpw",
            "content-type: application/x-protobuf",
        ] {
            assert!(request.contains(needle), "{needle} not in {request}");
        }
    }
}
