//! The figures of one bench run: a table for people, JSON for tools and for the README.
use std::{collections::BTreeSet, fmt::Write as _, fs, time::Duration};

use serde_json::{Value, json};

use crate::{floor::Floor, scrape::quantile};

pub struct Program {
    pub name: String,
    pub runs: u64,
    pub run_ns: u64,
}

impl Program {
    pub fn ns_per_run(&self) -> f64 {
        if self.runs > 0 {
            self.run_ns as f64 / self.runs as f64
        } else {
            0.0
        }
    }
}

/// `name ns-per-run` of each program, for a table cell.
fn per_program(programs: &[Program]) -> String {
    programs
        .iter()
        .map(|p| format!("{} {:.0}", p.name, p.ns_per_run()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub struct AgentResult {
    pub name: &'static str,
    pub version: String,
    /// From start until /metrics named every bench cgroup.
    pub named_after: Duration,
    pub window: Duration,
    pub cpu_seconds: f64,
    pub programs: Vec<Program>,
    pub rss: Vec<u64>,
    pub rss_peak: u64,
    pub cgroup_memory: Vec<u64>,
    pub latencies_ms: Vec<f64>,
    pub body_bytes: usize,
    /// The body's size when gzip is asked for; `None`: sent uncompressed.
    pub body_gzip_bytes: Option<usize>,
    pub series: usize,
    /// Series per Docker container: the same containers for both agents.
    pub series_per_container: Option<f64>,
    /// Scrapes that failed or timed out (their time is in `latencies_ms`).
    pub failed_scrapes: usize,
    /// The agent's own figure for one collection pass (nodetel only).
    pub pass_seconds: Vec<f64>,
    /// nodetel's filesystem usage walker since start: layers, walks, entries, seconds.
    pub fs_walker: Option<[f64; 4]>,
    pub floor_per_cgroup: Option<BTreeSet<(String, String)>>,
}

impl AgentResult {
    pub fn new(name: &'static str, version: &str, named_after: Duration) -> Self {
        AgentResult {
            name,
            version: version.to_string(),
            named_after,
            window: Duration::ZERO,
            cpu_seconds: 0.0,
            programs: Vec::new(),
            rss: Vec::new(),
            rss_peak: 0,
            cgroup_memory: Vec::new(),
            latencies_ms: Vec::new(),
            body_bytes: 0,
            body_gzip_bytes: None,
            series: 0,
            series_per_container: None,
            failed_scrapes: 0,
            pass_seconds: Vec::new(),
            fs_walker: None,
            floor_per_cgroup: None,
        }
    }

    fn secs(&self) -> f64 {
        self.window.as_secs_f64().max(1e-9)
    }

    pub fn cpu_pct(&self) -> f64 {
        100.0 * self.cpu_seconds / self.secs()
    }

    pub fn ebpf_pct(&self) -> f64 {
        let ns: u64 = self.programs.iter().map(|p| p.run_ns).sum();
        100.0 * ns as f64 / 1e9 / self.secs()
    }

    pub fn total_pct(&self) -> f64 {
        self.cpu_pct() + self.ebpf_pct()
    }

    /// CPU (user+system+eBPF) per cgroup per 1 s pass, in microseconds.
    pub fn us_per_cgroup_pass(&self, cgroups: usize) -> f64 {
        self.total_pct() / 100.0 * 1e6 / cgroups.max(1) as f64
    }

    fn median_u64(v: &[u64]) -> u64 {
        let mut s = v.to_vec();
        s.sort_unstable();
        s.get(s.len() / 2).copied().unwrap_or(0)
    }

    pub fn rss_steady(&self) -> u64 {
        Self::median_u64(&self.rss)
    }

    pub fn cgroup_memory_steady(&self) -> u64 {
        Self::median_u64(&self.cgroup_memory)
    }

    fn to_json(&self, cgroups: usize) -> Value {
        let programs: Vec<Value> = self
            .programs
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "events_per_second": p.runs as f64 / self.secs(),
                    "ns_per_event": (p.runs > 0).then(|| p.run_ns as f64 / p.runs as f64),
                    "cpu_percent": 100.0 * p.run_ns as f64 / 1e9 / self.secs(),
                })
            })
            .collect();
        json!({
            "agent": self.name,
            "version": self.version,
            "all_cgroups_named_after_seconds": self.named_after.as_secs_f64(),
            "window_seconds": self.secs(),
            "cpu_percent_user_system": self.cpu_pct(),
            "cpu_percent_ebpf": self.ebpf_pct(),
            "cpu_percent_total": self.total_pct(),
            "cpu_us_per_cgroup_per_pass": self.us_per_cgroup_pass(cgroups),
            "rss_bytes_steady": self.rss_steady(),
            "rss_bytes_peak": self.rss_peak,
            "cgroup_memory_bytes_steady": self.cgroup_memory_steady(),
            "scrape_ms_p50": quantile(&self.latencies_ms, 0.5),
            "scrape_ms_p99": quantile(&self.latencies_ms, 0.99),
            "scrapes": self.latencies_ms.len(),
            "failed_scrapes": self.failed_scrapes,
            "body_bytes": self.body_bytes,
            "body_gzip_bytes": self.body_gzip_bytes,
            "series": self.series,
            "series_per_docker_container": self.series_per_container,
            "collection_pass_ms_median": (!self.pass_seconds.is_empty())
                .then(|| quantile(&self.pass_seconds, 0.5) * 1e3),
            "ebpf_programs": programs,
            "fs_walker_layers_walks_entries_seconds": self.fs_walker,
        })
    }
}

pub struct SizeResult {
    pub cgroups: usize,
    pub agents: Vec<AgentResult>,
    pub floor: Option<Floor>,
}

impl SizeResult {
    pub fn new(cgroups: usize) -> Self {
        SizeResult {
            cgroups,
            agents: Vec::new(),
            floor: None,
        }
    }

    fn agent(&self, name: &str) -> Option<&AgentResult> {
        self.agents.iter().find(|a| a.name == name)
    }
}

/// µs per `perf bench sched pipe` round trip: (as is, pinned to one CPU).
pub struct PipeResult {
    pub off: (f64, f64),
    pub on: (f64, f64),
    /// At the defaults (`sched` off): CPU accounting alone, no run-queue latency figures.
    pub on_cpu_only: (f64, f64),
    /// With `--bench-sched-switch-floor`: an empty program on sched_switch, the rest of the
    /// agent as usual. What any program on that tracepoint costs here.
    pub floor: (f64, f64),
    /// ns per `sched_switch` run during a pinned run, timed by the kernel.
    pub switch_ns: Option<f64>,
    /// The same for the empty program: the timing's own cost and the dispatch inside BPF.
    pub floor_switch_ns: Option<f64>,
}

impl PipeResult {
    /// (as is, pinned) in percent.
    pub fn slowdown_pct(&self) -> (f64, f64) {
        self.slowdown(self.on)
    }

    pub fn slowdown_cpu_only_pct(&self) -> (f64, f64) {
        self.slowdown(self.on_cpu_only)
    }

    pub fn slowdown_floor_pct(&self) -> (f64, f64) {
        self.slowdown(self.floor)
    }

    /// nodetel's program work as the kernel times it (its program minus the empty one, per
    /// switch), as a share of a pinned round trip without the agent, which is two switches: an
    /// estimate with far less noise than the throughput difference, but blind to what the work
    /// costs the scheduler around it (caches).
    pub fn program_work_pct(&self) -> Option<f64> {
        let (ns, floor) = (self.switch_ns?, self.floor_switch_ns?);
        (self.off.1 > 0.0).then(|| 100.0 * 2.0 * (ns - floor).max(0.0) / (self.off.1 * 1000.0))
    }

    fn slowdown(&self, on: (f64, f64)) -> (f64, f64) {
        (
            100.0 * (on.0 / self.off.0 - 1.0),
            100.0 * (on.1 / self.off.1 - 1.0),
        )
    }
}

/// nodetel pushing (see `push_run`): remote write to a live and a dead receiver and line
/// protocol to the live one, every 10 s, with a spool.
pub struct PushResult {
    pub agent: AgentResult,
    pub remote_write: crate::push_sink::Tally,
    pub influx: crate::push_sink::Tally,
    /// The dead receiver's spool at the end: everything pushed since start.
    pub spool_bytes: u64,
    pub spool_files: u64,
}

/// Passes pushed per minute at the 10 s interval.
const PASSES_PER_MINUTE: f64 = 6.0;

impl PushResult {
    /// Bytes a minute at 10 s: bytes per pass carried, times six (the window holds only a few
    /// requests, and a line protocol request gathers several passes).
    fn per_minute(bytes: u64, passes: u64) -> f64 {
        bytes as f64 / passes.max(1) as f64 * PASSES_PER_MINUTE
    }

    fn remote_write_per_minute(&self) -> f64 {
        Self::per_minute(self.remote_write.bytes, self.remote_write.passes)
    }

    fn influx_per_minute(&self) -> f64 {
        Self::per_minute(self.influx.bytes, self.influx.passes)
    }

    /// One file per pass.
    fn spool_per_minute(&self) -> f64 {
        Self::per_minute(self.spool_bytes, self.spool_files)
    }
}

pub struct Report {
    window: u64,
    no_peer_reason: Option<String>,
    pub sizes: Vec<SizeResult>,
    pub pipe: Option<PipeResult>,
    pub push: Option<PushResult>,
    pub blkio: Option<crate::blkio::BlkioResult>,
    pub tcp: Option<crate::tcp::TcpResult>,
}

const MIB: f64 = 1024.0 * 1024.0;

impl Report {
    pub fn new(window: u64, no_peer_reason: Option<String>) -> Self {
        Report {
            window,
            no_peer_reason,
            sizes: Vec::new(),
            pipe: None,
            push: None,
            blkio: None,
            tcp: None,
        }
    }

    pub fn to_json(&self) -> Value {
        let sizes: Vec<Value> = self
            .sizes
            .iter()
            .map(|s| {
                json!({
                    "cgroups": s.cgroups,
                    "agents": s.agents.iter().map(|a| a.to_json(s.cgroups)).collect::<Vec<_>>(),
                    "read_floor": s.floor.as_ref().map(|f| json!({
                        "files": f.files,
                        "pread_pass_ms": f.pread.as_secs_f64() * 1e3,
                        "open_read_close_pass_ms": f.open_read.as_secs_f64() * 1e3,
                    })),
                })
            })
            .collect();
        json!({
            "machine": machine(),
            "window_seconds": self.window,
            "interval_seconds": 1,
            "peer": self.no_peer_reason.as_ref().map_or_else(
                || json!({"available": true}),
                |r| json!({"available": false, "reason": r}),
            ),
            "sizes": sizes,
            "push": self.push.as_ref().map(|p| {
                let plain = self.sizes.first().and_then(|s| s.agent("nodetel"));
                json!({
                    "cgroups": self.sizes.first().map(|s| s.cgroups),
                    "interval_seconds": 10,
                    "cpu_percent_total": p.agent.total_pct(),
                    "cpu_percent_without_push": plain.map(|a| a.total_pct()),
                    "rss_bytes_peak": p.agent.rss_peak,
                    "rss_bytes_peak_without_push": plain.map(|a| a.rss_peak),
                    "remote_write_requests": p.remote_write.requests,
                    "remote_write_bytes_per_minute": p.remote_write_per_minute(),
                    "line_protocol_requests": p.influx.requests,
                    "line_protocol_passes": p.influx.passes,
                    "line_protocol_bytes_per_minute": p.influx_per_minute(),
                    "spool_files": p.spool_files,
                    "spool_bytes_per_minute_of_outage": p.spool_per_minute(),
                })
            }),
            "blkio": self.blkio.as_ref().map(|b| json!({
                "fio_seconds": b.seconds,
                "read_4k_direct_latency_us_without_agent": b.latency_us_without,
                "read_4k_direct_latency_us_with_blkio": b.latency_us_with,
                "reads_with_blkio": b.reads_with,
                "programs": b.programs.iter().map(|p| json!({
                    "name": p.name,
                    "runs": p.runs,
                    "ns_per_run": p.ns_per_run(),
                })).collect::<Vec<_>>(),
                "ns_per_bio": b.ns_per_bio(),
                "percent_of_a_read": b.percent_of_read(),
                "on_by_default_budget_percent": 1.0,
            })),
            "tcp_health": self.tcp.as_ref().map(|t| json!({
                "wrk_seconds": t.seconds,
                "connections": t.connections,
                "programs": t.programs.iter().map(|p| json!({
                    "name": p.name,
                    "runs": p.runs,
                    "ns_per_run": p.ns_per_run(),
                })).collect::<Vec<_>>(),
                "events_per_connection": t.events_per_connection(),
                "ns_per_connection": t.ns_per_connection(),
                "cpu_ns_per_connection": t.busy_ns_per_connection(),
                "percent_of_the_loads_cpu": t.percent_of_load(),
                "on_by_default_budget_percent": 1.0,
            })),
            "sched_pipe": self.pipe.as_ref().map(|p| json!({
                "usecs_per_op_without_agent": p.off.0,
                "usecs_per_op_with_nodetel": p.on.0,
                "slowdown_percent": p.slowdown_pct().0,
                "pinned_usecs_per_op_without_agent": p.off.1,
                "pinned_usecs_per_op_with_nodetel": p.on.1,
                "pinned_slowdown_percent": p.slowdown_pct().1,
                "usecs_per_op_with_nodetel_without_sched": p.on_cpu_only.0,
                "slowdown_percent_without_sched": p.slowdown_cpu_only_pct().0,
                "pinned_usecs_per_op_with_nodetel_without_sched": p.on_cpu_only.1,
                "pinned_slowdown_percent_without_sched": p.slowdown_cpu_only_pct().1,
                "usecs_per_op_with_empty_sched_switch": p.floor.0,
                "slowdown_percent_with_empty_sched_switch": p.slowdown_floor_pct().0,
                "pinned_usecs_per_op_with_empty_sched_switch": p.floor.1,
                "pinned_slowdown_percent_with_empty_sched_switch": p.slowdown_floor_pct().1,
                "pinned_sched_switch_ns_per_run": p.switch_ns,
                "pinned_empty_sched_switch_ns_per_run": p.floor_switch_ns,
                "pinned_program_work_percent_of_op": p.program_work_pct(),
            })),
        })
    }

    pub fn table(&self) -> String {
        let mut t = String::new();
        let m = machine();
        let _ = writeln!(
            t,
            "\nnodetel bench: {} CPUs ({}), {:.0} GiB, Linux {}, cgroups {}; 1 s interval, {} s window, one scrape a second\n",
            m["cpus"],
            m["cpu_model"].as_str().unwrap_or("?"),
            m["memory_gib"].as_f64().unwrap_or(0.0),
            m["kernel"].as_str().unwrap_or("?"),
            m["cgroup_layout"].as_str().unwrap_or("?"),
            self.window
        );
        if let Some(r) = &self.no_peer_reason {
            let _ = writeln!(t, "cAdvisor NOT measured: {r}\n");
        }
        let _ = writeln!(
            t,
            "| cgroups | agent | CPU % of a core (user+sys / eBPF / total) | µs CPU per cgroup per pass | RSS MiB steady / peak | cgroup memory MiB | /metrics p50 / p99 ms (failed) | body KB (gzip) | series (per Docker container) | all named after s |"
        );
        let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|---|");
        for s in &self.sizes {
            for a in &s.agents {
                let _ = writeln!(
                    t,
                    "| {} | {} | {:.2} / {:.2} / **{:.2}** | {:.1} | {:.1} / {:.1} | {:.1} | {:.1} / {:.1}{} | {:.0} ({}) | {} ({}) | {:.1} |",
                    s.cgroups,
                    a.name,
                    a.cpu_pct(),
                    a.ebpf_pct(),
                    a.total_pct(),
                    a.us_per_cgroup_pass(s.cgroups),
                    a.rss_steady() as f64 / MIB,
                    a.rss_peak as f64 / MIB,
                    a.cgroup_memory_steady() as f64 / MIB,
                    quantile(&a.latencies_ms, 0.5),
                    quantile(&a.latencies_ms, 0.99),
                    if a.failed_scrapes > 0 {
                        format!(" ({} of {} failed)", a.failed_scrapes, a.latencies_ms.len())
                    } else {
                        String::new()
                    },
                    a.body_bytes as f64 / 1000.0,
                    a.body_gzip_bytes
                        .map_or("plain".to_string(), |b| format!("{:.0}", b as f64 / 1000.0)),
                    a.series,
                    a.series_per_container
                        .map_or("-".to_string(), |n| format!("{n:.1}")),
                    a.named_after.as_secs_f64(),
                );
            }
        }
        let _ = writeln!(
            t,
            "\n| cgroups | read floor: files | pread pass ms | open+read+close pass ms | nodetel pass ms (own figure) | nodetel CPU ms per pass | × pread floor |"
        );
        let _ = writeln!(t, "|---|---|---|---|---|---|---|");
        for s in &self.sizes {
            let (Some(f), Some(n)) = (&s.floor, s.agent("nodetel")) else {
                continue;
            };
            let cpu_ms = n.total_pct() / 100.0 * 1e3;
            let floor_ms = f.pread.as_secs_f64() * 1e3;
            let _ = writeln!(
                t,
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                s.cgroups,
                f.files,
                floor_ms,
                f.open_read.as_secs_f64() * 1e3,
                quantile(&n.pass_seconds, 0.5) * 1e3,
                cpu_ms,
                cpu_ms / floor_ms.max(1e-9),
            );
        }
        let _ = writeln!(
            t,
            "\n| cgroups | eBPF program | events/s | ns/event | CPU % |"
        );
        let _ = writeln!(t, "|---|---|---|---|---|");
        for s in &self.sizes {
            let Some(n) = s.agent("nodetel") else {
                continue;
            };
            for p in &n.programs {
                let secs = n.secs();
                let _ = writeln!(
                    t,
                    "| {} | {} | {:.0} | {} | {:.3} |",
                    s.cgroups,
                    p.name,
                    p.runs as f64 / secs,
                    if p.runs > 0 {
                        format!("{:.0}", p.run_ns as f64 / p.runs as f64)
                    } else {
                        "-".into()
                    },
                    100.0 * p.run_ns as f64 / 1e9 / secs,
                );
            }
        }
        let _ = writeln!(
            t,
            "\n| cgroups | filesystem walker (since start): layers | walks | entries | ms per walk | µs per entry (its CPU is in the agent's total above) |\n|---|---|---|---|---|---|"
        );
        for s in &self.sizes {
            let Some(n) = s.agent("nodetel") else {
                continue;
            };
            if let Some([layers, walks, entries, secs]) = n.fs_walker {
                let _ = writeln!(
                    t,
                    "| {} | {layers:.0} | {walks:.0} | {entries:.0} | {:.2} | {:.2} |",
                    s.cgroups,
                    1e3 * secs / walks.max(1.0),
                    1e6 * secs / entries.max(1.0),
                );
            }
        }
        if let Some(p) = &self.pipe {
            let _ = writeln!(
                t,
                "\n| perf bench sched pipe | µs/op | slowdown | pinned to one CPU: µs/op | slowdown |\n|---|---|---|---|---|"
            );
            let (s, sp) = p.slowdown_pct();
            let (c, cp) = p.slowdown_cpu_only_pct();
            let (f, fp) = p.slowdown_floor_pct();
            let _ = writeln!(t, "| no agent | {:.2} | | {:.2} | |", p.off.0, p.off.1);
            let _ = writeln!(
                t,
                "| nodetel with sched (`--disable-metrics=`) | {:.2} | {s:+.1} % | {:.2} | {sp:+.1} % |",
                p.on.0, p.on.1
            );
            let _ = writeln!(
                t,
                "| nodetel (default: no sched) | {:.2} | {c:+.1} % | {:.2} | {cp:+.1} % |",
                p.on_cpu_only.0, p.on_cpu_only.1
            );
            let _ = writeln!(
                t,
                "| nodetel with an empty sched_switch program (the tracepoint's floor) | {:.2} | {f:+.1} % | {:.2} | {fp:+.1} % |",
                p.floor.0, p.floor.1
            );
            if let Some(ns) = p.switch_ns {
                let _ = writeln!(
                    t,
                    "\nsched_switch during a pinned run, timed by the kernel: {ns:.0} ns per switch"
                );
            }
            if let (Some(ns), Some(floor), Some(pct)) =
                (p.switch_ns, p.floor_switch_ns, p.program_work_pct())
            {
                let _ = writeln!(
                    t,
                    "the empty program, timed alike: {floor:.0} ns per switch; nodetel's own work: \
                     {:.0} ns per switch, two switches per pinned round trip = {pct:.1} % of one",
                    ns - floor
                );
            }
        }
        if let Some(p) = &self.push {
            let first = self.sizes.first();
            let plain = first.and_then(|s| s.agent("nodetel"));
            let _ = writeln!(
                t,
                "\n| cgroups | push every 10 s (remote write to a live and a dead receiver, line protocol, spool) | CPU % of a core (without push) | RSS MiB peak (without) | remote write KB/min on the wire (requests) | line protocol KB/min (requests) | spool MB per minute of outage |"
            );
            let _ = writeln!(t, "|---|---|---|---|---|---|---|");
            let _ = writeln!(
                t,
                "| {} | {:.0} s measured | **{:.2}** ({}) | {:.1} ({}) | {:.0} ({}) | {:.0} ({}) | {:.2} ({} files) |",
                first.map_or(0, |s| s.cgroups),
                p.agent.window.as_secs_f64(),
                p.agent.total_pct(),
                plain.map_or("-".to_string(), |a| format!("{:.2}", a.total_pct())),
                p.agent.rss_peak as f64 / MIB,
                plain.map_or("-".to_string(), |a| format!(
                    "{:.1}",
                    a.rss_peak as f64 / MIB
                )),
                p.remote_write_per_minute() / 1000.0,
                p.remote_write.requests,
                p.influx_per_minute() / 1000.0,
                p.influx.requests,
                p.spool_per_minute() / 1e6,
                p.spool_files,
            );
        }
        if let Some(c) = &self.tcp {
            let _ = writeln!(
                t,
                "\n| tcp_health under wrk, a connection per request ({} s, {CONNS} at once) | connections | program runs per connection | ns per connection (per run, per program) | CPU µs the load used per connection | % of it (budget 1 %) |",
                c.seconds,
                CONNS = crate::tcp::CONNECTIONS,
            );
            let _ = writeln!(t, "|---|---|---|---|---|---|");
            let _ = writeln!(
                t,
                "| | {} | {:.1} | **{:.0}** ({}) | {:.1} | **{:.2}** |",
                c.connections,
                c.events_per_connection(),
                c.ns_per_connection(),
                per_program(&c.programs),
                c.busy_ns_per_connection() / 1e3,
                c.percent_of_load(),
            );
        }
        if let Some(b) = &self.blkio {
            let _ = writeln!(
                t,
                "\n| blkio under fio 4 KiB random direct reads ({} s) | read latency µs without agent | with blkio | ns per bio (per program) | % of a read (budget 1 %) |",
                b.seconds
            );
            let _ = writeln!(t, "|---|---|---|---|---|");
            let _ = writeln!(
                t,
                "| {} reads | {:.1} | {:.1} | **{:.0}** ({}) | **{:.2}** |",
                b.reads_with,
                b.latency_us_without,
                b.latency_us_with,
                b.ns_per_bio(),
                per_program(&b.programs),
                b.percent_of_read(),
            );
        }
        t.push_str(&self.targets());
        t
    }

    /// The budget, each line saying whether this run met it.
    fn targets(&self) -> String {
        let mut t = String::from("\nTargets (reported, not asserted):\n");
        let mut line = |ok: Option<bool>, what: String| {
            let mark = match ok {
                Some(true) => "met ",
                Some(false) => "MISSED",
                None => "n/a ",
            };
            let _ = writeln!(t, "  [{mark}] {what}");
        };
        let at = |n: usize| self.sizes.iter().find(|s| s.cgroups == n);
        if let Some(s) = at(300)
            && let Some(n) = s.agent("nodetel")
        {
            line(
                Some(n.total_pct() <= 1.5),
                format!(
                    "300 cgroups: total CPU {:.2} % <= 1.5 % of a core",
                    n.total_pct()
                ),
            );
            let ratio = s
                .agent("cadvisor")
                .map(|c| c.total_pct() / n.total_pct().max(1e-9));
            line(
                ratio.map(|r| r >= 20.0),
                format!(
                    "300 cgroups: >= 20x below cAdvisor ({})",
                    ratio.map_or("no peer".into(), |r| format!("{r:.0}x"))
                ),
            );
            let floor = s.floor.as_ref().map(|f| f.pread.as_secs_f64() * 1e3);
            let cpu_ms = n.total_pct() / 100.0 * 1e3;
            line(
                floor.map(|f| cpu_ms <= 1.5 * f),
                format!(
                    "300 cgroups: CPU per pass {cpu_ms:.2} ms within 1.5x of the read floor ({})",
                    floor.map_or("not measured".into(), |f| format!("{f:.2} ms"))
                ),
            );
            line(
                Some(n.rss_peak as f64 / MIB <= 40.0),
                format!(
                    "300 cgroups: peak RSS {:.1} MiB <= 40 MiB",
                    n.rss_peak as f64 / MIB
                ),
            );
            let p99 = quantile(&n.latencies_ms, 0.99);
            line(
                Some(p99 <= 20.0),
                format!("300 cgroups: /metrics p99 {p99:.1} ms <= 20 ms"),
            );
        }
        if let (Some(small), Some(big)) = (at(300), at(3000))
            && let (Some(a), Some(b)) = (small.agent("nodetel"), big.agent("nodetel"))
        {
            let growth = b.total_pct() / a.total_pct().max(1e-9);
            line(
                Some(growth <= 10.0 * 1.1),
                format!("300 -> 3000 cgroups: CPU grew {growth:.1}x (linear: 10x)"),
            );
            line(
                Some(b.rss_peak as f64 / MIB <= 120.0),
                format!(
                    "3000 cgroups: peak RSS {:.1} MiB <= 120 MiB",
                    b.rss_peak as f64 / MIB
                ),
            );
        }
        // Judged where switches are many (the pinned pipe run): on a quiet machine a few hundred
        // switches a second each meet cold caches, and that figure is shown beside it.
        let quiet = self
            .sizes
            .first()
            .and_then(|s| s.agent("nodetel"))
            .and_then(|n| n.programs.iter().find(|p| p.name.contains("switch")))
            .filter(|p| p.runs > 0)
            .map(|p| p.run_ns as f64 / p.runs as f64);
        if let Some(ns) = self.pipe.as_ref().and_then(|p| p.switch_ns) {
            let quiet = quiet.map_or_else(String::new, |q| {
                format!("; {q:.0} ns per switch on the quiet machine")
            });
            line(
                Some(ns <= 500.0),
                format!(
                    "sched_switch: {ns:.0} ns per switch under switch-heavy load (a few hundred){quiet}"
                ),
            );
        }
        if let Some(p) = &self.pipe {
            // Judged pinned: the worst case, and the one that repeats (as is, each message
            // crosses CPUs and the figure swings with the hypervisor's wakeup latency).
            let (as_is, pinned) = p.slowdown_pct();
            let floor = p.slowdown_floor_pct().1;
            let timed = p
                .program_work_pct()
                .map_or_else(String::new, |w| format!("; timed by the kernel: {w:.1} %"));
            line(
                Some(pinned < 5.0),
                format!(
                    "perf bench sched pipe pinned to one CPU: {pinned:+.1} % < 5 % (as is: {as_is:+.1} %; \
                     an empty sched_switch program alone: {floor:+.1} %; nodetel's program work: \
                     {:+.1} points{timed})",
                    pinned - floor
                ),
            );
        }
        t
    }
}

/// What the figures were measured on.
fn machine() -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim())
        })
        .unwrap_or("unknown");
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_kib: f64 = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let layout = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else {
        "v1 hybrid"
    };
    json!({
        "cpu_model": model,
        "cpus": cpus,
        "memory_gib": mem_kib / 1024.0 / 1024.0,
        "kernel": kernel.trim(),
        "cgroup_layout": layout,
    })
}
