//! One timed scrape, the way Prometheus' HTTP client sees it: a fresh connection, the whole
//! body, plain text (no compression, so both agents send the same kind of body); and, once per
//! run, the size of the gzipped body a Prometheus scrape gets.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use anyhow::Context as _;

pub struct Scrape {
    pub latency: Duration,
    pub body: String,
}

pub fn metrics(addr: &str) -> anyhow::Result<Scrape> {
    let start = Instant::now();
    let (head, body) = get_metrics(addr, "Accept: text/plain;version=0.0.4")?;
    let latency = start.elapsed();
    anyhow::ensure!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "/metrics answered {}",
        head.lines().next().unwrap_or("")
    );
    Ok(Scrape {
        latency,
        body: String::from_utf8(body).context("body is not UTF-8")?,
    })
}

/// `GET /metrics` on a fresh connection with one extra header line: (head, body).
fn get_metrics(addr: &str, header: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n{header}\r\n\r\n"
    )?;
    let mut raw = Vec::with_capacity(1 << 20);
    s.read_to_end(&mut raw)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no header end")?;
    let body = raw.split_off(end + 4);
    Ok((String::from_utf8_lossy(&raw[..end]).into_owned(), body))
}

/// The size of the body sent to a scraper that accepts gzip, as Prometheus does; `None` when
/// the agent answered it uncompressed.
pub fn gzipped_bytes(addr: &str) -> anyhow::Result<Option<usize>> {
    let (head, body) = get_metrics(addr, "Accept-Encoding: gzip")?;
    Ok(head
        .to_lowercase()
        .contains("content-encoding: gzip")
        .then_some(body.len()))
}

/// Samples in an exposition: every line that is not a comment.
pub fn series(body: &str) -> usize {
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// Series per Docker container (`id="/docker/<id>"`): the bench's containers, the same for both
/// agents, each with a writable layer, a network namespace and processes, as real ones have.
/// `None` when the body names none.
pub fn series_per_docker_container(body: &str) -> Option<f64> {
    let mut ids: Vec<&str> = Vec::new();
    let mut n = 0usize;
    for l in body.lines().filter(|l| !l.starts_with('#')) {
        let Some(start) = l.find("id=\"/docker/").map(|i| i + 4) else {
            continue;
        };
        let Some(len) = l[start..].find('"') else {
            continue;
        };
        n += 1;
        ids.push(&l[start..start + len]);
    }
    ids.sort_unstable();
    ids.dedup();
    (!ids.is_empty()).then(|| n as f64 / ids.len() as f64)
}

/// How many distinct bench cgroups (`id="/nodetel-bench/c<i>"`) have a memory usage sample: a
/// figure both agents write for every cgroup (cAdvisor leaves out the CPU usage of a cgroup that
/// has not run since it was made).
pub fn bench_cgroups_named(body: &str) -> usize {
    let mut ids: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("container_memory_usage_bytes{"))
        .filter_map(|l| {
            let start = l.find("id=\"/nodetel-bench/c")? + 4;
            let len = l[start..].find('"')?;
            Some(&l[start..start + len])
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}

/// The value of an unlabelled sample, e.g. `nodetel_collection_duration_seconds`.
pub fn scalar(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The value at quantile `q` (nearest rank) of `samples`.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = (q * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_samples_not_comments() {
        let body = "# HELP a x\n# TYPE a gauge\na 1\na{b=\"c\"} 2\n\nb 3\n";
        assert_eq!(series(body), 3);
    }

    #[test]
    fn series_per_docker_container_divides_by_distinct_ids() {
        let body = concat!(
            "# HELP a x\n",
            "a{id=\"/docker/aa\"} 1\n",
            "b{id=\"/docker/aa\",interface=\"eth0\"} 1\n",
            "a{id=\"/docker/bb\"} 1\n",
            "a{id=\"/\"} 1\n",
        );
        assert_eq!(series_per_docker_container(body), Some(1.5));
        assert_eq!(series_per_docker_container("a{id=\"/\"} 1\n"), None);
    }

    #[test]
    fn finds_bench_cgroups_once_each() {
        let body = concat!(
            "container_memory_usage_bytes{id=\"/nodetel-bench/c1\",image=\"\"} 1\n",
            "container_memory_usage_bytes{id=\"/nodetel-bench/c1\",image=\"\"} 1\n",
            "container_memory_usage_bytes{id=\"/nodetel-bench/c2\",name=\"\"} 1\n",
            "container_memory_usage_bytes{id=\"/nodetel-bench\"} 1\n",
            "container_memory_cache{id=\"/nodetel-bench/c3\"} 1\n",
        );
        assert_eq!(bench_cgroups_named(body), 2);
    }

    #[test]
    fn scalar_needs_the_whole_name() {
        let body = "x_total 4\nx 2.5\n";
        assert_eq!(scalar(body, "x"), Some(2.5));
        assert_eq!(scalar(body, "y"), None);
    }

    #[test]
    fn nearest_rank_quantiles() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&s, 0.5), 50.0);
        assert_eq!(quantile(&s, 0.99), 99.0);
        assert_eq!(quantile(&[3.0], 0.99), 3.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
