//! One HTTP/1.1 request on a connection the caller opened (TLS to the kubelet, a unix socket to
//! CRI-O, a push receiver): the clients that speak plain HTTP need nothing more than this, and a client
//! with a connection pool would hold sockets open between the rare requests.
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("request failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("answer unreadable: {0}")]
    Body(String),
}

/// Sends `request` on `io` and reads the whole answer, refusing a body over `max_body` bytes.
pub async fn get<IO>(
    io: IO,
    request: Request<Empty<Bytes>>,
    max_body: usize,
) -> Result<(StatusCode, Bytes), GetError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (status, _, body) = exchange(io, request, max_body).await?;
    Ok((status, body))
}

/// Any one request on `io` (the push's POSTs too): status, headers, and the body up to
/// `max_body` bytes.
pub async fn exchange<IO, B>(
    io: IO,
    request: Request<B>,
    max_body: usize,
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), GetError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let conn = tokio::spawn(conn);
    let result = async {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| GetError::Body(e.to_string()))?
            .to_bytes();
        Ok((status, headers, body))
    }
    .await;
    conn.abort();
    result
}
