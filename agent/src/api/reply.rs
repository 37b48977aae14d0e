//! Where an API answer is written: a blocking thread serialises it straight into chunks that
//! the connection sends as they come, so an answer of any size holds at most [`CHUNK`] bytes
//! being written plus [`IN_FLIGHT`] chunks waiting for the client, and one container's entry
//! as a JSON value. (Building the whole answer as one `serde_json::Value` took the agent from
//! 29 to 292 MiB for one recursive stats request over 300 cgroups.)
//!
//! An answer that fits in one chunk goes out as one body with its length, as before.
use std::io::{self, Write};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{Response, StatusCode, body::Frame, header};
use tokio::sync::{mpsc, oneshot};

use super::Body;

/// Bytes gathered before a chunk is handed to the connection.
pub const CHUNK: usize = 64 * 1024;
/// Chunks queued for a slow client before the writer waits for it.
const IN_FLIGHT: usize = 2;

/// The answer's sink. Dropping it unsent answers 500.
pub struct Reply {
    head: Option<oneshot::Sender<Response<Body>>>,
    tx: Option<mpsc::Sender<Bytes>>,
    buf: Vec<u8>,
    content_type: &'static str,
}

impl Reply {
    /// The sink, and where the response head arrives once the answer has started (or is done).
    pub fn new() -> (Reply, oneshot::Receiver<Response<Body>>) {
        let (head, rx) = oneshot::channel();
        (
            Reply {
                head: Some(head),
                tx: None,
                buf: Vec::new(),
                content_type: "application/json",
            },
            rx,
        )
    }

    /// Answers with a finished response (an error, or a stream built elsewhere).
    pub fn respond(&mut self, resp: Response<Body>) {
        if let Some(head) = self.head.take() {
            let _ = head.send(resp);
        }
    }

    /// Sends the gathered bytes: the first time, with the head of a streamed response.
    fn send_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        if let Some(head) = self.head.take() {
            let (tx, rx) = mpsc::channel::<Bytes>(IN_FLIGHT);
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
            });
            let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(self.content_type),
            );
            head.send(resp)
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "request abandoned"))?;
            self.tx = Some(tx);
        }
        match &self.tx {
            // Blocks this (blocking-pool) thread while the client is IN_FLIGHT chunks behind.
            Some(tx) => tx
                .blocking_send(chunk)
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away")),
            None => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "answer already sent",
            )),
        }
    }

    /// Ends the answer: what is gathered goes out as one body if nothing was sent yet.
    pub fn finish(mut self) -> io::Result<()> {
        if let Some(head) = self.head.take() {
            let body = Bytes::from(std::mem::take(&mut self.buf));
            let mut resp = Response::new(Full::new(body).boxed());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(self.content_type),
            );
            *resp.status_mut() = StatusCode::OK;
            let _ = head.send(resp);
            return Ok(());
        }
        self.send_chunk()
    }

    /// True until the head has gone out: an error can still be answered as such.
    pub fn unsent(&self) -> bool {
        self.head.is_some()
    }
}

impl Write for Reply {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_chunk()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(resp: Response<Body>) -> Vec<u8> {
        resp.into_body()
            .collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .unwrap_or_default()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_answers_are_one_body_large_ones_stream_in_bounded_chunks() {
        let (mut reply, head) = Reply::new();
        let w = tokio::task::spawn_blocking(move || {
            reply.write_all(b"[1,2]")?;
            reply.finish()
        });
        let resp = head.await.expect("a head");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body_of(resp).await, b"[1,2]");
        w.await.expect("writer").expect("written");

        // 40 chunks' worth, read slowly: the writer never runs more than IN_FLIGHT ahead.
        let (mut reply, head) = Reply::new();
        let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = std::sync::Arc::clone(&written);
        let w = tokio::task::spawn_blocking(move || {
            for _ in 0..40 {
                reply.write_all(&[b'x'; CHUNK])?;
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            reply.finish()
        });
        let mut body = head.await.expect("a head").into_body();
        let mut total = 0;
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let data = frame.expect("infallible").into_data().unwrap_or_default();
            total += data.len();
            frames += 1;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let ahead = written.load(std::sync::atomic::Ordering::SeqCst) - frames.min(40);
            assert!(
                ahead <= IN_FLIGHT + 1,
                "writer {ahead} chunks ahead of the reader"
            );
        }
        assert_eq!(total, 40 * CHUNK);
        w.await.expect("writer").expect("written");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_leaves_stops_the_writer() {
        let (mut reply, head) = Reply::new();
        let w = tokio::task::spawn_blocking(move || {
            for _ in 0..1000 {
                reply.write_all(&[b'x'; CHUNK])?;
            }
            reply.finish()
        });
        drop(head.await.expect("a head"));
        let err = w.await.expect("writer").expect_err("the writer must stop");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
