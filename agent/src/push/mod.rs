//! Pushing what `/metrics` serves to Prometheus remote write receivers (`--remote-write-url`),
//! for nodes nobody can scrape.
//!
//! Every `--remote-write-interval` the latest prepared pass (the same text a scrape gets) is
//! parsed into series, stamped with its pass's time, encoded once, and queued for each receiver.
//! Each receiver has its own sender and a bounded queue, oldest first: a receiver that is down
//! or slow holds back only its own queue. Network errors, 5xx and 429 are retried with
//! exponential backoff and jitter (429's `Retry-After` honoured); another 4xx is the receiver
//! refusing the data, which is dropped and counted. When a queue is full its oldest batch is
//! dropped, and counted. With `--remote-write-spool-dir` the queue is on disk (see `spool`).
pub mod config;
pub mod influx;
pub mod queue;
pub mod remote_write;
pub mod series;
pub mod spool;
pub mod target;

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use hyper::{StatusCode, header};
use tokio::sync::{Notify, watch};

use crate::prepared::Prepared;
pub use crate::snapshot::health::TargetStats;
use queue::{Batch, Store};
use spool::Lost;
use target::Target;

/// Retry delays: 0.5 s doubling to 30 s, each with up to a quarter more at random.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct PushConfig {
    pub receivers: Vec<Receiver>,
    /// The InfluxDB receivers' schema and buffering (with `--storage-driver=influxdb`).
    pub influx: Option<influx::Buffering>,
    pub interval: Duration,
    /// Added to every series that lacks them (`job`, `instance`, the node's name...).
    pub external_labels: Vec<(String, String)>,
}

/// One receiver, with where its batches wait.
pub struct Receiver {
    pub target: Target,
    pub protocol: Protocol,
    pub store: Store,
    /// What opening a spool left by a previous run cost (batches past the bound).
    pub lost: Lost,
}

struct Shared {
    target: Target,
    protocol: Protocol,
    queue: Mutex<Store>,
    stats: Mutex<TargetStats>,
    wake: Notify,
}

/// The senders' counts, for the self-metrics of each pass.
#[derive(Clone, Default)]
pub struct PushStats(Arc<Vec<Arc<Shared>>>);

impl PushStats {
    pub fn snapshot(&self) -> Vec<TargetStats> {
        self.0
            .iter()
            .map(|s| {
                let mut t = s
                    .stats
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let q = s.queue.lock().unwrap_or_else(PoisonError::into_inner);
                t.queue_batches = q.len() as u64;
                t.queue_bytes = q.bytes();
                t.spooled = matches!(*q, Store::Disk(_));
                t.oldest_unsent = q.oldest_ms().map_or(0.0, |ms| ms as f64 / 1000.0);
                t
            })
            .collect()
    }
}

/// Starts one producer per protocol in use and one sender per receiver; they end when
/// `prepared` closes (an InfluxDB buffer is queued first, so a spool keeps it).
pub fn spawn(
    config: PushConfig,
    prepared: watch::Receiver<Option<Arc<Prepared>>>,
) -> (PushStats, Vec<tokio::task::JoinHandle<()>>) {
    let mut remote_write = Vec::new();
    let mut influx = Vec::new();
    let shared: Vec<Arc<Shared>> = config
        .receivers
        .into_iter()
        .map(|r| {
            let s = Arc::new(Shared {
                stats: Mutex::new(TargetStats {
                    url: r.target.url.clone(),
                    samples_dropped_queue_full: r.lost.full,
                    samples_dropped_spool_error: r.lost.io,
                    ..TargetStats::default()
                }),
                target: r.target,
                protocol: r.protocol,
                queue: Mutex::new(r.store),
                wake: Notify::new(),
            });
            match r.protocol {
                Protocol::RemoteWrite => remote_write.push(Arc::clone(&s)),
                Protocol::Influx => influx.push(Arc::clone(&s)),
            }
            s
        })
        .collect();
    let mut tasks: Vec<_> = shared
        .iter()
        .map(|s| tokio::spawn(send_loop(Arc::clone(s))))
        .collect();
    if !remote_write.is_empty() {
        let encoder = Encoder::RemoteWrite {
            external: config.external_labels,
        };
        tasks.push(tokio::spawn(produce(
            prepared.clone(),
            encoder,
            remote_write,
            config.interval,
        )));
    }
    if let (false, Some(schema)) = (influx.is_empty(), config.influx) {
        let encoder = Encoder::Influx(Box::new(influx::Buffer::new(schema)));
        tasks.push(tokio::spawn(produce(
            prepared,
            encoder,
            influx,
            config.interval,
        )));
    }
    (PushStats(Arc::new(shared)), tasks)
}

/// What a receiver speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    RemoteWrite,
    /// InfluxDB line protocol, cAdvisor's schema (`--storage-driver=influxdb`).
    Influx,
}

impl Protocol {
    fn headers(self) -> &'static [(header::HeaderName, &'static str)] {
        static REMOTE_WRITE: [(header::HeaderName, &str); 3] = [
            (header::CONTENT_TYPE, remote_write::CONTENT_TYPE),
            (header::CONTENT_ENCODING, remote_write::CONTENT_ENCODING),
            (
                header::HeaderName::from_static("x-prometheus-remote-write-version"),
                remote_write::VERSION,
            ),
        ];
        static INFLUX: [(header::HeaderName, &str); 2] = [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CONTENT_ENCODING, "gzip"),
        ];
        match self {
            Protocol::RemoteWrite => &REMOTE_WRITE,
            Protocol::Influx => &INFLUX,
        }
    }
}

/// How passes become request bodies for one protocol's receivers.
enum Encoder {
    /// One body per pushed pass.
    RemoteWrite { external: Vec<(String, String)> },
    /// Points gathered over `--storage-driver-buffer-duration`, then one body.
    Influx(Box<influx::Buffer>),
}

impl Encoder {
    /// Takes in the pass `p`; returns a batch when one is due.
    fn add(&mut self, p: &Prepared) -> (Option<Batch>, u64) {
        let taken = p.snapshot.agent.taken_at;
        // Rounded as a reader of the exposition's pass time would: the same millisecond.
        let at_ms = (crate::unix_time::secs(taken) * 1000.0).round() as i64;
        match self {
            Encoder::RemoteWrite { external } => {
                let text = String::from_utf8_lossy(&p.metrics);
                let (series, bad) = series::parse(&text);
                let body = remote_write::encode(&series, external, at_ms);
                let batch = Batch {
                    body: Bytes::from(body),
                    samples: series.len(),
                    at_ms,
                };
                (Some(batch), bad)
            }
            Encoder::Influx(buffer) => {
                buffer.add(&p.snapshot, at_ms);
                (buffer.due().then(|| buffer.take()).flatten(), 0)
            }
        }
    }

    /// What waits at the end.
    fn finish(&mut self) -> Option<Batch> {
        match self {
            Encoder::RemoteWrite { .. } => None,
            Encoder::Influx(buffer) => buffer.take(),
        }
    }
}

async fn produce(
    mut prepared: watch::Receiver<Option<Arc<Prepared>>>,
    mut encoder: Encoder,
    shared: Vec<Arc<Shared>>,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<SystemTime> = None;
    loop {
        ticker.tick().await;
        if prepared.has_changed().is_err() {
            if let Some(batch) = encoder.finish() {
                queue(&shared, batch, 0).await;
            }
            return;
        }
        let Some(p) = prepared.borrow_and_update().clone() else {
            continue;
        };
        let taken = p.snapshot.agent.taken_at;
        if last == Some(taken) {
            continue;
        }
        last = Some(taken);
        // Encoding a large pass takes milliseconds: off the async threads.
        let encoded = tokio::task::spawn_blocking(move || {
            let out = encoder.add(&p);
            (encoder, out)
        })
        .await;
        let Ok((back, (batch, bad))) = encoded else {
            // The encoder panicked (caught by the runtime): nothing more can be pushed.
            tracing::error!("push encoder failed: push stops");
            return;
        };
        encoder = back;
        if let Some(batch) = batch {
            queue(&shared, batch, bad).await;
        }
    }
}

/// Queues `batch` for each receiver of `shared`.
async fn queue(shared: &[Arc<Shared>], batch: Batch, unreadable: u64) {
    for s in shared {
        // A spool writes a file: off the async threads.
        let s2 = Arc::clone(s);
        let batch = batch.clone();
        let lost = tokio::task::spawn_blocking(move || {
            s2.queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(batch)
        })
        .await
        .unwrap_or_default();
        let mut st = s.stats.lock().unwrap_or_else(PoisonError::into_inner);
        st.samples_dropped_queue_full += lost.full;
        st.samples_dropped_spool_error += lost.io;
        st.lines_unreadable += unreadable;
        drop(st);
        s.wake.notify_one();
    }
}

async fn send_loop(s: Arc<Shared>) {
    let headers = s.protocol.headers();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let s2 = Arc::clone(&s);
        let (front, unreadable) = tokio::task::spawn_blocking(move || {
            s2.queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .front()
        })
        .await
        .unwrap_or_default();
        if unreadable > 0 {
            s.stats
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .samples_dropped_spool_error += unreadable;
        }
        let Some(batch) = front else {
            s.wake.notified().await;
            continue;
        };
        let outcome = s.target.post(batch.body.clone(), headers).await;
        let stat = |f: &dyn Fn(&mut TargetStats)| {
            f(&mut s.stats.lock().unwrap_or_else(PoisonError::into_inner));
        };
        let retry = match outcome {
            Ok(a) if a.status.is_success() => {
                s.queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop_if(batch.at_ms);
                stat(&|t| t.samples_sent += batch.samples as u64);
                backoff = FIRST_BACKOFF;
                None
            }
            Ok(a) if a.status == StatusCode::TOO_MANY_REQUESTS || a.status.is_server_error() => {
                tracing::debug!(url = %s.target.url, status = %a.status, "remote write retried");
                Some(a.retry_after.unwrap_or(backoff))
            }
            Ok(a) => {
                tracing::warn!(
                    url = %s.target.url,
                    status = %a.status,
                    answer = %String::from_utf8_lossy(&a.body),
                    "remote write refused a batch: dropped"
                );
                s.queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop_if(batch.at_ms);
                stat(&|t| t.samples_dropped_rejected += batch.samples as u64);
                None
            }
            Err(e) => {
                tracing::debug!(url = %s.target.url, error = %e, "remote write retried");
                Some(backoff)
            }
        };
        if let Some(delay) = retry {
            stat(&|t| t.samples_retried += batch.samples as u64);
            tokio::time::sleep(jitter(delay)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Up to a quarter more, so agents of many nodes that lost the same receiver do not come back
/// in step.
fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d + d.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A receiver answering each request with the next status of `script` (Retry-After: 0 on
    /// 429), then 204; returns the bodies it got, in order.
    async fn scripted_receiver(
        script: Vec<u16>,
    ) -> (String, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/api/v1/write",
            listener.local_addr().expect("addr")
        );
        let server = tokio::spawn(async move {
            let mut bodies = Vec::new();
            for i in 0.. {
                let Ok(Ok((mut s, _))) =
                    tokio::time::timeout(Duration::from_secs(3), listener.accept()).await
                else {
                    break;
                };
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // Head, then Content-Length bytes of body.
                let body = loop {
                    let n = s.read(&mut buf).await.expect("read");
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break got[end + 4..end + 4 + len].to_vec();
                        }
                    }
                    if n == 0 {
                        break Vec::new();
                    }
                };
                let status = script.get(i).copied().unwrap_or(204);
                if status == 204 {
                    bodies.push(body);
                }
                let answer =
                    format!("HTTP/1.1 {status} X\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n");
                s.write_all(answer.as_bytes()).await.expect("write");
            }
            bodies
        });
        (url, server)
    }

    #[tokio::test]
    async fn retries_5xx_and_429_in_order_and_drops_what_is_refused() {
        let (url, server) = scripted_receiver(vec![500, 429, 204, 400, 204]).await;
        let target = Target::new(
            &url,
            &target::TargetOptions {
                timeout: Duration::from_secs(2),
                ..target::TargetOptions::default()
            },
        )
        .expect("target");
        let shared = Arc::new(Shared {
            stats: Mutex::new(TargetStats::default()),
            target,
            protocol: Protocol::RemoteWrite,
            queue: Mutex::new(Store::Memory(queue::Queue::new(1 << 20))),
            wake: Notify::new(),
        });
        for (at_ms, body) in [(1, "first"), (2, "second"), (3, "third")] {
            shared.queue.lock().expect("queue").push(Batch {
                body: Bytes::from_static(body.as_bytes()),
                samples: 10,
                at_ms,
            });
        }
        let sender = tokio::spawn(send_loop(Arc::clone(&shared)));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !shared.queue.lock().expect("queue").is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "queue never drained"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sender.abort();
        let t = shared.stats.lock().expect("stats").clone();
        // first: 500, 429, then accepted; second: refused (400); third: accepted.
        assert_eq!(t.samples_retried, 20);
        assert_eq!(t.samples_sent, 20);
        assert_eq!(t.samples_dropped_rejected, 10);
        let bodies = server.await.expect("server");
        assert_eq!(bodies, [b"first".to_vec(), b"third".to_vec()]);
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(4));
            assert!((Duration::from_secs(4)..=Duration::from_secs(5)).contains(&j));
        }
    }
}
