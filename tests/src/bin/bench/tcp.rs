//! The `tcp_health` kind's cost under a many-connection load: wrk, one new connection per
//! request (`Connection: close`), against a small HTTP server on loopback, with nodetel's TCP
//! programs timed by the kernel (bpf_stats): their ns per connection, against the CPU time the
//! load itself used per connection (every CPU's busy time from /proc/stat over the run).
use std::{
    io::{Read, Write},
    net::TcpListener,
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{Args, kind_cost, report::Program};

/// Seconds of wrk.
const SECONDS: u64 = 10;
/// wrk's connections at once, and its threads.
pub const CONNECTIONS: u32 = 32;

pub struct TcpResult {
    pub seconds: u64,
    /// Connections (one per request) wrk completed with the agent.
    pub connections: u64,
    /// CPU time of every CPU (busy, not idle) over the run, ns.
    pub busy_ns: u64,
    /// The TCP programs' runs and run time over the run.
    pub programs: Vec<Program>,
}

impl TcpResult {
    pub fn ns_per_connection(&self) -> f64 {
        let ns: u64 = self.programs.iter().map(|p| p.run_ns).sum();
        ns as f64 / self.connections.max(1) as f64
    }

    pub fn busy_ns_per_connection(&self) -> f64 {
        self.busy_ns as f64 / self.connections.max(1) as f64
    }

    /// The programs' share of the CPU time the load used, in percent.
    pub fn percent_of_load(&self) -> f64 {
        self.ns_per_connection() / self.busy_ns_per_connection().max(1.0) * 100.0
    }

    /// Program runs per connection (state changes, mostly).
    pub fn events_per_connection(&self) -> f64 {
        let runs: u64 = self.programs.iter().map(|p| p.runs).sum();
        runs as f64 / self.connections.max(1) as f64
    }
}

/// Non-idle jiffies of every CPU (`/proc/stat`'s `cpu` line, less idle and iowait), in ns.
fn busy_ns() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok((total - idle) * 1_000_000_000 / hz)
}

/// A tiny HTTP server: every connection gets one short answer and is closed. Threads never
/// end; the bench process exits after the run.
fn serve() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    for _ in 0..2 {
        let l = listener.try_clone()?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut n = 0;
                while n < buf.len() {
                    match conn.read(&mut buf[n..]) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
    }
    Ok(port)
}

/// Requests wrk completed (`N requests in`).
fn wrk(port: u16, seconds: u64) -> anyhow::Result<u64> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{seconds}s"),
            "-H",
            "Connection: close",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .context("run wrk")?;
    if !out.status.success() {
        bail!("wrk: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let l = l.trim();
            let (n, rest) = l.split_once(' ')?;
            rest.starts_with("requests in").then(|| n.parse().ok())?
        })
        .with_context(|| format!("no request count in wrk's output: {text}"))
}

/// `None` (said why) when wrk is not installed: `cargo xtask test` installs it.
pub fn run(
    args: &Args,
    docker_socket: &str,
    cgroup: &crate::population::Cgroup,
) -> anyhow::Result<Option<TcpResult>> {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("bench: wrk is not installed; the tcp_health cost is not measured");
        return Ok(None);
    }
    let port = serve()?;
    let ((connections, busy), programs) = kind_cost::timed_programs(
        args,
        docker_socket,
        cgroup,
        // The defaults plus `tcp_health`.
        (
            "nodetel-tcp",
            &["--disable-metrics=process,sched,pressure,blkio"],
        ),
        |name| name.starts_with("tcp_") || name.starts_with("inet_sock"),
        || {
            let busy_before = busy_ns()?;
            let connections = wrk(port, SECONDS)?;
            Ok((connections, busy_ns()?.saturating_sub(busy_before)))
        },
    )?;
    Ok(Some(TcpResult {
        seconds: SECONDS,
        connections,
        busy_ns: busy,
        programs,
    }))
}
