//! A snapshot with everything a request needs already computed.
use std::{
    io::Write as _,
    sync::{Arc, OnceLock},
    time::Instant,
};

use bytes::Bytes;

use crate::{metrics, snapshot::Snapshot};

pub struct Prepared {
    pub snapshot: Arc<Snapshot>,
    /// The rendered exposition, shared by every scrape until the next pass.
    pub metrics: Bytes,
    /// The exposition gzipped, made by the first scrape that asks for it and shared by the
    /// others of this pass: a pass nobody scrapes compressed costs nothing.
    gzipped: OnceLock<Bytes>,
    pub built: Instant,
}

impl Prepared {
    /// `expected`: the last body's length, so the buffer is allocated once at its final size.
    pub fn new(snapshot: Snapshot, expected: usize) -> Self {
        let metrics = Bytes::from(metrics::render_sized(&snapshot, expected));
        Prepared {
            snapshot: Arc::new(snapshot),
            metrics,
            gzipped: OnceLock::new(),
            built: Instant::now(),
        }
    }

    /// The exposition gzipped (compressed on first use; call it off the async threads: a
    /// 13.6 MB body takes tens of milliseconds).
    pub fn gzipped(&self) -> Bytes {
        self.gzipped.get_or_init(|| gzip(&self.metrics)).clone()
    }
}

/// Level 1: exposition text compresses about 7x even at the fastest level (measured: 53.9 kB to
/// 7.9 kB), and the CPU is the agent's budget, not the network's.
pub(crate) fn gzip(body: &[u8]) -> Bytes {
    gzip_at(body, flate2::Compression::fast())
}

/// `level`: the UI's files are compressed once per process, so at the best level (their 92 kB
/// to 35 kB; 43 kB at the fastest).
pub(crate) fn gzip_at(body: &[u8], level: flate2::Compression) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 6), level);
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(body);
    Bytes::from(enc.finish().unwrap_or_default())
}

/// Whether an `Accept-Encoding` value admits gzip (RFC 9110: a coding listed with `q=0`, or
/// only `*;q=0`, is refused; `*` admits it).
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    let mut star = None;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return q > 0.0;
        }
        if coding == "*" {
            star = Some(q > 0.0);
        }
    }
    star.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_negotiated_as_rfc_9110_says() {
        for (value, want) in [
            // What Prometheus 2.42 sends.
            ("gzip", true),
            ("deflate, gzip;q=1.0, *;q=0.5", true),
            ("GZIP", true),
            ("x-gzip", true),
            ("gzip;q=0", false),
            ("gzip;q=0.0, *", false),
            ("*", true),
            ("*;q=0", false),
            ("identity", false),
            ("br, deflate", false),
            ("", false),
            (";;;,,q=", false),
        ] {
            assert_eq!(accepts_gzip(value), want, "{value:?}");
        }
    }

    #[test]
    fn the_gzipped_body_is_the_body() {
        use std::io::Read as _;
        let text = "# TYPE a counter\na_total 1\n".repeat(1000);
        let z = gzip(text.as_bytes());
        assert!(z.len() < text.len() / 10, "{} of {}", z.len(), text.len());
        let mut out = String::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_string(&mut out)
            .expect("gunzip");
        assert_eq!(out, text);
    }
}
