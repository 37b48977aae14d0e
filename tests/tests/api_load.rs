//! The HTTP layer under load, for real: API requests that once grew the agent past its
//! DaemonSet memory limit, twenty at once, and a flood of idle connections. The agent must stay
//! bounded and keep answering `/healthz`.
//!
//! Host only: a thousand cgroups with full history under emulation would take the VM suite's
//! whole budget; what it tests does not depend on the kernel.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nodetel_integration_tests::{Agent, TestCgroup, privileged};

/// The DaemonSet's memory limit (deploy/kubernetes/base).
const DAEMONSET_LIMIT_KIB: u64 = 256 * 1024;

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// One heavy request at a time and twenty at once, over many cgroups with full history: the
/// agent's peak RSS stays under the DaemonSet limit and `/healthz` answers within 1 s
/// throughout. `NODETEL_LOAD_CGROUPS` sets the size (default 1000; the README's figure is 3000).
#[test]
fn heavy_api_requests_stay_within_the_memory_limit() -> anyhow::Result<()> {
    if !privileged("heavy_api_requests_stay_within_the_memory_limit") {
        return Ok(());
    }
    let n: usize = std::env::var("NODETEL_LOAD_CGROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let parent = TestCgroup::create("load")?;
    let mut kids = Vec::with_capacity(n);
    for i in 0..n {
        kids.push(parent.child(&format!("c{i}"))?);
    }
    // Beside the loaded subtree, so the whole node is over the limit that the subtree fits.
    let extra = TestCgroup::create("load-extra")?;
    let _extra_kids = [extra.child("a")?, extra.child("b")?];
    let samples: usize = 60;
    let interval = Duration::from_millis(250);
    let agent = Agent::start(
        interval,
        &[
            "--history-samples",
            &samples.to_string(),
            "--history-duration",
            "0",
            // Every cgroup's full history fits; the whole node's (n + the host's) does not.
            "--api-max-samples",
            &((n + 1) * samples).to_string(),
        ],
    )?;
    // Full history: `samples` passes after every cgroup is seen.
    agent.scrape_until(Duration::from_secs(30), |e| {
        e.scalar("nodetel_cgroups").unwrap_or(0.0) >= n as f64
    })?;
    thread::sleep(interval * (samples as u32 + 4));
    let pid = agent.pid();
    let base = status_kib(pid, "VmRSS:")?;

    // /healthz polled all along; its slowest answer is the figure.
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let (addr, stop) = (agent.addr.clone(), Arc::clone(&stop));
        thread::spawn(move || -> anyhow::Result<(Duration, usize)> {
            let mut worst = Duration::ZERO;
            let mut probes = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (code, _) = nodetel_integration_tests::http_get(&addr, "/healthz")?;
                worst = worst.max(t.elapsed());
                probes += 1;
                anyhow::ensure!(code == 200, "/healthz answered {code} under load");
                thread::sleep(Duration::from_millis(100));
            }
            Ok((worst, probes))
        })
    };
    let p = &parent.rel;
    // Every heavy shape the API has, recursive over every cgroup. Two ask for the full history
    // (each answer is 180-230 MB: built as one JSON value it would take gigabytes); the rest
    // ask for a few samples, so the run stays about a minute on a debug build. The
    // limit-breaking one must be refused with a 422 naming the limit.
    let heavy: Vec<String> = vec![
        format!("/api/v2.0/stats{p}?recursive=true&count=-1"),
        format!("/api/v1.3/subcontainers{p}"),
        format!("/api/v2.1/stats{p}?recursive=true&count=3"),
        format!("/api/v2.0/summary{p}?recursive=true"),
        "/api/v2.0/spec/?recursive=true".to_string(),
        format!("/api/v2.0/stats{p}?recursive=true&count=2"),
        "/api/v1.3/docker/".to_string(),
        format!("/api/v2.0/stats{p}?recursive=true&count=1"),
        "/api/v2.1/machinestats?count=-1".to_string(),
        "/api/v2.0/events?all_events=true&max_events=-1".to_string(),
    ];
    let mut paths: Vec<String> = (0..19)
        .map(|i| heavy[2 + i % (heavy.len() - 2)].clone())
        .collect();
    paths[0] = heavy[0].clone();
    paths[1] = heavy[1].clone();
    // The whole node at full history: over --api-max-samples ((n + 1) x 60, below).
    paths.push("/api/v2.1/stats/?recursive=true&count=-1&type=name".to_string());
    let started = Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let (addr, path) = (agent.addr.clone(), paths[i].clone());
            thread::spawn(move || get_counted(&addr, &path).map(|r| (path, r)))
        })
        .collect();
    let mut answers = Vec::new();
    for c in clients {
        answers.push(c.join().map_err(|_| anyhow::anyhow!("client panicked"))??);
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (worst, probes) = probe
        .join()
        .map_err(|_| anyhow::anyhow!("probe panicked"))??;
    let peak = status_kib(pid, "VmHWM:")?;
    let after = status_kib(pid, "VmRSS:")?;
    let mut bytes = 0;
    for (path, (code, len, head)) in &answers {
        eprintln!("{code} {len:>11} B  {path}");
        match code {
            200 => assert!(
                head.starts_with('{') || head.starts_with('['),
                "{path}: {head}"
            ),
            422 => assert!(head.contains("--api-max-samples"), "{path}: {head}"),
            // Waited its turn behind the heavy ones and was told to come back.
            503 => assert!(head.contains("too many API requests"), "{path}: {head}"),
            _ => bail!("{path} answered {code}: {head}"),
        }
        bytes += len;
    }
    eprintln!(
        "{n} cgroups x {samples} samples: 20 requests, {:.1} MB in {took:.1?}; RSS {} MiB before, \
         peak {} MiB, {} MiB after; /healthz slowest {worst:?} of {probes}",
        bytes as f64 / 1e6,
        base / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(
        answers
            .iter()
            .any(|(_, (c, len, _))| *c == 200 && *len > 100_000_000),
        "no full-history answer was served: the test would prove nothing"
    );
    assert!(
        answers.iter().any(|(_, (c, _, _))| *c == 422),
        "the request over --api-max-samples was not refused"
    );
    assert!(
        peak < DAEMONSET_LIMIT_KIB,
        "peak RSS {peak} KiB over the DaemonSet limit"
    );
    assert!(
        worst < Duration::from_secs(1),
        "/healthz took {worst:?} under load"
    );
    Ok(())
}

/// GET over HTTP/1.0: status, body length, and the body's first 300 bytes (the body itself is
/// counted, not kept).
fn get_counted(addr: &str, path: &str) -> anyhow::Result<(u16, usize, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let mut total = 0;
    loop {
        let k = s.read(&mut buf)?;
        if k == 0 {
            break;
        }
        if head.len() < 4096 {
            head.extend_from_slice(&buf[..k.min(4096)]);
        }
        total += k;
    }
    let text = String::from_utf8_lossy(&head);
    let (h, body) = text.split_once("\r\n\r\n").context("no header end")?;
    let code = h
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status code")?;
    let header_len = h.len() + 4;
    Ok((code, total - header_len, body.chars().take(300).collect()))
}

#[test]
fn idle_and_surplus_connections_are_closed() -> anyhow::Result<()> {
    if !privileged("idle_and_surplus_connections_are_closed") {
        return Ok(());
    }
    let agent = Agent::start(
        Duration::from_millis(300),
        &["--http-max-connections", "8", "--http-idle-timeout", "2s"],
    )?;
    // Eight idle connections fill the agent; a ninth is closed at once.
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(&agent.addr))
        .collect::<Result<_, _>>()?;
    thread::sleep(Duration::from_millis(200));
    let mut ninth = TcpStream::connect(&agent.addr)?;
    ninth.set_read_timeout(Some(Duration::from_secs(5)))?;
    let _ = write!(ninth, "GET /healthz HTTP/1.0\r\n\r\n");
    let mut got = Vec::new();
    let _ = ninth.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "a connection over the limit was served: {}",
        String::from_utf8_lossy(&got)
    );
    // The idle ones are closed by the agent after --http-idle-timeout, and service resumes.
    let t = Instant::now();
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut b = [0u8; 1];
        let k = c.read(&mut b).unwrap_or(usize::MAX);
        assert_eq!(k, 0, "idle connection not closed by the agent");
    }
    eprintln!("idle connections closed after {:?}", t.elapsed());
    let (code, _) = agent.get("/healthz")?;
    assert_eq!(code, 200);
    let e = agent.next_metrics()?;
    assert!(
        e.scalar("nodetel_http_connections_refused_total")
            .unwrap_or(0.0)
            >= 1.0,
        "the refused connection is not counted"
    );
    Ok(())
}
