//! `cargo xtask bench`: nodetel and cAdvisor side by side on the same cgroups, in the same run.
//!
//! For each size N: N cgroups with a live process in every hierarchy (plus a few Docker
//! containers) are made once; each agent in turn runs at a 1 s interval in a cgroup of its own,
//! is scraped every second for a fixed window, and is charged what the kernel says it cost:
//! user+system CPU from /proc, its eBPF programs' run time (kernel.bpf_stats_enabled), RSS, and
//! its cgroup's memory (which includes the kernel memory it pins, such as open cgroupfs files).
//! Figures are reported, never asserted: the targets are printed beside them.
mod blkio;
mod floor;
mod kind_cost;
mod pipe;
mod population;
mod probe;
mod push_sink;
mod report;
mod scrape;
mod tcp;

use std::{
    fs,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Parser;
use population::{Cgroup, Containers, Population};
use report::{AgentResult, PipeResult, Report, SizeResult};

#[derive(Parser)]
#[command(name = "bench", about = "nodetel vs cAdvisor on the same cgroups")]
struct Args {
    /// The nodetel binary (a release build).
    #[arg(long)]
    nodetel: PathBuf,
    /// The cAdvisor binary; without it only nodetel is measured.
    #[arg(long)]
    cadvisor: Option<PathBuf>,
    /// Why there is no cAdvisor, for the report.
    #[arg(long)]
    no_peer_reason: Option<String>,
    /// Cgroup counts to measure, e.g. 300,1000,3000.
    #[arg(long, value_delimiter = ',', default_value = "300,1000,3000")]
    cgroups: Vec<usize>,
    /// Seconds each agent is scraped (once a second).
    #[arg(long, default_value_t = 30)]
    window: u64,
    /// Docker containers besides the plain cgroups.
    #[arg(long, default_value_t = 4)]
    containers: usize,
    /// `perf bench sched pipe` runs per configuration (0: skip).
    #[arg(long, default_value_t = 5)]
    pipe_runs: usize,
    /// Where the JSON report and the agents' logs go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    fs::create_dir_all(&args.out)?;
    raise_fd_limit();
    let hierarchies = population::hierarchies()?;
    let agent_cgroup = Cgroup::make(&hierarchies, "nodetel-bench-agent")?;
    eprintln!(
        "bench: starting a private dockerd with {} containers",
        args.containers
    );
    let containers = Containers::start(args.containers)?;
    let docker_socket = containers.dockerd.socket.display().to_string();
    let mut report = Report::new(args.window, args.no_peer_reason.clone());
    let mut pipe = None;
    let mut push = None;
    for (i, &n) in args.cgroups.iter().enumerate() {
        eprintln!("bench: making {n} cgroups");
        let population = Population::create(&hierarchies, n)?;
        let measure_pipe = i == 0 && args.pipe_runs > 0;
        let mut size = SizeResult::new(n);
        let nodetel = AgentCommand::nodetel(&args.nodetel, &docker_socket)?;
        let (result, child) = measure(&args, &nodetel, &agent_cgroup, n, args.window)?;
        drop(child);
        if i == 0 {
            push = Some(push_run(&args, &docker_socket, &agent_cgroup, n)?);
        }
        if measure_pipe {
            pipe = Some(pipe_rounds(&args, &docker_socket, &agent_cgroup, n)?);
        }
        if i == 0 {
            report.blkio = blkio::run(&args, &docker_socket, &agent_cgroup)?;
            report.tcp = tcp::run(&args, &docker_socket, &agent_cgroup)?;
        }
        size.floor = result.floor_per_cgroup.as_ref().map(|files| {
            eprintln!("bench: timing the read floor");
            floor::measure(files, n)
        });
        size.agents.push(result);
        if let Some(bin) = &args.cadvisor {
            let cadvisor = AgentCommand::cadvisor(bin, &docker_socket)?;
            let (result, child) = measure(&args, &cadvisor, &agent_cgroup, n, args.window)?;
            drop(child);
            size.agents.push(result);
        }
        report.sizes.push(size);
        drop(population);
    }
    report.pipe = pipe;
    report.push = push;
    drop(containers);
    let json = report.to_json();
    let path = args.out.join("report.json");
    fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    println!("{}", report.table());
    eprintln!("bench: JSON report in {}", path.display());
    Ok(())
}

const PIPE_LOOPS: u32 = 100_000;
/// Runs per configuration in each round (their median is the round's figure): the VM's noise
/// from run to run is as large as the effect measured.
const PIPE_RUNS_PER_ROUND: usize = 3;

/// The context-switch tax in interleaved rounds: each round runs the pipe benchmark without an
/// agent, with nodetel with every kind on, with nodetel's defaults (no `sched`), and with nodetel whose
/// sched_switch program is replaced by an empty one (each agent started afresh and kept off
/// CPU 0, the order rotated from round to round), so a drift of the machine during the bench
/// falls on all alike; medians over the rounds. The empty program is the floor: what any
/// program on that tracepoint costs, which separates the tracepoint's dispatch from nodetel's
/// own work. The first run of nodetel and of the empty program also times each under load.
fn pipe_rounds(
    args: &Args,
    docker_socket: &str,
    agent_cgroup: &Cgroup,
    n: usize,
) -> anyhow::Result<PipeResult> {
    // Every kind on: sched_switch also reads the run-queue figures (the `sched` kind).
    let mut nodetel =
        AgentCommand::nodetel(&args.nodetel, docker_socket)?.with(&["--disable-metrics="]);
    nodetel.name = "nodetel-pipe";
    // The defaults: `sched` off, as in cAdvisor; sched_switch accounts CPU time alone.
    let mut cpu_only = AgentCommand::nodetel(&args.nodetel, docker_socket)?;
    cpu_only.name = "nodetel-pipe-no-sched";
    let mut floor =
        AgentCommand::nodetel(&args.nodetel, docker_socket)?.with(&["--bench-sched-switch-floor"]);
    floor.name = "nodetel-pipe-floor";
    // No agent, then the three agents; `samples` in the same order.
    let configs = [None, Some(&nodetel), Some(&cpu_only), Some(&floor)];
    let mut samples: [Vec<(f64, f64)>; 4] = Default::default();
    let (mut switch_ns, mut floor_switch_ns) = (None, None);
    for round in 1..=args.pipe_runs {
        eprintln!(
            "bench: perf bench sched pipe, round {round}/{}: no agent, nodetel with sched, nodetel (default, no sched), nodetel --bench-sched-switch-floor",
            args.pipe_runs
        );
        // Each round starts with another configuration: whatever the position in a round does
        // (the machine still freeing the last agent's maps and programs, a drift within the
        // round) falls on every configuration alike.
        for k in 0..configs.len() {
            let i = (k + round - 1) % configs.len();
            let Some(agent) = configs[i] else {
                samples[i].push(pipe::usecs_per_op(PIPE_RUNS_PER_ROUND, PIPE_LOOPS)?);
                continue;
            };
            {
                let mut child = start(args, agent, agent_cgroup, n)?;
                wait_serving(agent, &mut child)?;
                pipe::keep_off_cpu0(child.id())?;
                samples[i].push(pipe::usecs_per_op(PIPE_RUNS_PER_ROUND, PIPE_LOOPS)?);
                // Once per program: nodetel's, and the empty one's (what timing costs alone).
                if agent.name == nodetel.name && switch_ns.is_none() {
                    switch_ns = pipe::switch_ns_under_load(child.id(), PIPE_LOOPS)?;
                }
                if agent.name == floor.name && floor_switch_ns.is_none() {
                    floor_switch_ns = pipe::switch_ns_under_load(child.id(), PIPE_LOOPS)?;
                }
            }
            // The agent is stopped; the kernel frees its programs and maps after an RCU grace
            // period, work that should not land in the next configuration's runs.
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    let [off, on, on_cpu_only, on_floor] = samples;
    Ok(PipeResult {
        off: pipe::medians(&off),
        on: pipe::medians(&on),
        on_cpu_only: pipe::medians(&on_cpu_only),
        floor: pipe::medians(&on_floor),
        switch_ns,
        floor_switch_ns,
    })
}

/// How to start one agent on a free loopback port.
struct AgentCommand {
    name: &'static str,
    version: String,
    argv: Vec<String>,
    addr: String,
}

impl AgentCommand {
    fn nodetel(bin: &std::path::Path, docker_socket: &str) -> anyhow::Result<AgentCommand> {
        let addr = free_addr()?;
        let version = version_of(bin, "--version");
        Ok(AgentCommand {
            name: "nodetel",
            version,
            argv: vec![
                bin.display().to_string(),
                "--listen".into(),
                addr.clone(),
                "--interval".into(),
                "1s".into(),
                "--docker-socket".into(),
                docker_socket.into(),
            ],
            addr,
        })
    }

    fn with(mut self, extra: &[&str]) -> Self {
        self.argv.extend(extra.iter().map(|s| s.to_string()));
        self
    }

    fn cadvisor(bin: &std::path::Path, docker_socket: &str) -> anyhow::Result<AgentCommand> {
        let addr = free_addr()?;
        let port = addr.rsplit(':').next().unwrap_or_default().to_string();
        Ok(AgentCommand {
            name: "cadvisor",
            version: version_of(bin, "-version"),
            argv: vec![
                bin.display().to_string(),
                "-listen_ip".into(),
                "127.0.0.1".into(),
                "-port".into(),
                port,
                "-housekeeping_interval".into(),
                "1s".into(),
                "-allow_dynamic_housekeeping=false".into(),
                "-docker_only=false".into(),
                "-docker".into(),
                format!("unix://{docker_socket}"),
            ],
            addr,
        })
    }
}

fn version_of(bin: &std::path::Path, flag: &str) -> String {
    Command::new(bin)
        .arg(flag)
        .output()
        .ok()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn free_addr() -> anyhow::Result<String> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    Ok(format!("127.0.0.1:{port}"))
}

/// Seconds the push run is measured at least: three pushes at the 10 s default.
const PUSH_WINDOW: u64 = 30;

/// nodetel pushing at the default 10 s to a live remote write receiver and, with
/// `--storage-driver=influxdb`, line protocol to the same sink, plus a remote write receiver
/// that is down, all with a spool: the CPU and memory beside the plain run, the bytes on the
/// wire per minute by protocol, and the spool's growth per minute of outage.
fn push_run(
    args: &Args,
    docker_socket: &str,
    cgroup: &Cgroup,
    n: usize,
) -> anyhow::Result<report::PushResult> {
    let sink = push_sink::Sink::start()?;
    // Nothing listens there: the receiver that is away.
    let dead = free_addr()?;
    let spool = args.out.join("push-spool");
    let _ = fs::remove_dir_all(&spool);
    let live_url = format!("http://{}/api/v1/write", sink.addr);
    let dead_url = format!("http://{dead}/api/v1/write");
    let spool_arg = spool.display().to_string();
    let mut agent = AgentCommand::nodetel(&args.nodetel, docker_socket)?.with(&[
        "--remote-write-url",
        &live_url,
        "--remote-write-url",
        &dead_url,
        "--remote-write-interval",
        "10s",
        "--remote-write-spool-dir",
        &spool_arg,
        "--storage-driver=influxdb",
        "--storage-driver-host",
        &sink.addr,
        "--storage-driver-buffer-duration=10s",
    ]);
    agent.name = "nodetel + push";
    let (result, child) = measure(args, &agent, cgroup, n, args.window.max(PUSH_WINDOW))?;
    let tally = sink.tally();
    // The receiver that is away keeps everything in its spool: the largest directory.
    let mut spool_bytes = 0;
    let mut spool_files = 0;
    for dir in fs::read_dir(&spool)?.flatten() {
        let (mut bytes, mut files) = (0, 0);
        for f in fs::read_dir(dir.path())?.flatten() {
            bytes += f.metadata().map_or(0, |m| m.len());
            files += 1;
        }
        if bytes > spool_bytes {
            (spool_bytes, spool_files) = (bytes, files);
        }
    }
    drop(child);
    Ok(report::PushResult {
        agent: result,
        remote_write: tally.get("/api/v1/write").copied().unwrap_or_default(),
        influx: tally.get("/write").copied().unwrap_or_default(),
        spool_bytes,
        spool_files,
    })
}

/// Runs one agent through warm-up and a window of `window` seconds; returns it still running.
fn measure(
    args: &Args,
    agent: &AgentCommand,
    cgroup: &Cgroup,
    n: usize,
    window: u64,
) -> anyhow::Result<(AgentResult, Running)> {
    eprintln!("bench: {} with {n} cgroups", agent.name);
    let mut child = start(args, agent, cgroup, n)?;
    let pid = child.id();
    let started = Instant::now();
    // Warm-up: until every bench cgroup is named in /metrics (cAdvisor discovers them slowly).
    let mut named = 0;
    let named_after = loop {
        if let Some(status) = child.try_wait()? {
            bail!("{} exited during warm-up: {status}", agent.name);
        }
        if let Ok(s) = scrape::metrics(&agent.addr) {
            named = scrape::bench_cgroups_named(&s.body);
            if named >= n {
                break started.elapsed();
            }
        }
        if started.elapsed() > WARMUP_LIMIT {
            bail!(
                "{} named {named} of the {n} bench cgroups within {WARMUP_LIMIT:?}",
                agent.name
            );
        }
        thread::sleep(Duration::from_millis(200));
    };
    thread::sleep(Duration::from_secs(3));

    let stats = probe::BpfStats::enable()?;
    let t0 = Instant::now();
    let cpu0 = probe::cpu_seconds(pid)?;
    let bpf0 = probe::bpf_programs(pid)?;
    let mut result = AgentResult::new(agent.name, &agent.version, named_after);
    for tick in 1..=window {
        // A scrape that fails or times out counts, at the time it took: an overloaded agent
        // (cAdvisor at 3000 cgroups) is a result, not a reason to stop.
        let asked = Instant::now();
        match scrape::metrics(&agent.addr) {
            Ok(s) => {
                result.latencies_ms.push(s.latency.as_secs_f64() * 1e3);
                result.body_bytes = s.body.len();
                result.series = scrape::series(&s.body);
                result.series_per_container = scrape::series_per_docker_container(&s.body);
                if let Some(d) = scrape::scalar(&s.body, "nodetel_collection_duration_seconds") {
                    result.pass_seconds.push(d);
                }
                let walker = [
                    "nodetel_fs_usage_layers",
                    "nodetel_fs_usage_walks_total",
                    "nodetel_fs_usage_walk_entries_total",
                    "nodetel_fs_usage_walk_seconds_total",
                ]
                .map(|n| scrape::scalar(&s.body, n));
                if let [Some(l), Some(w), Some(e), Some(t)] = walker {
                    result.fs_walker = Some([l, w, e, t]);
                }
            }
            Err(e) => {
                eprintln!("bench: {} scrape failed: {e:#}", agent.name);
                result
                    .latencies_ms
                    .push(asked.elapsed().as_secs_f64() * 1e3);
                result.failed_scrapes += 1;
            }
        }
        result.rss.push(probe::rss(pid)?.0);
        if let Some(m) = cgroup.memory_bytes() {
            result.cgroup_memory.push(m);
        }
        if let Some(wait) = (t0 + Duration::from_secs(tick)).checked_duration_since(Instant::now())
        {
            thread::sleep(wait);
        }
    }
    let cpu1 = probe::cpu_seconds(pid)?;
    let bpf1 = probe::bpf_programs(pid)?;
    result.window = t0.elapsed();
    drop(stats);
    result.cpu_seconds = cpu1 - cpu0;
    result.rss_peak = probe::rss(pid)?.1;
    // After the window, so the compression it costs is outside the CPU figures: what a
    // Prometheus scrape (which always asks for gzip) transfers.
    result.body_gzip_bytes = scrape::gzipped_bytes(&agent.addr).ok().flatten();
    for (name, end) in &bpf1 {
        let start = bpf0.get(name).copied().unwrap_or_default();
        result.programs.push(report::Program {
            name: name.clone(),
            runs: end.run_cnt.saturating_sub(start.run_cnt),
            run_ns: end.run_time_ns.saturating_sub(start.run_time_ns),
        });
    }
    if agent.name == "nodetel" {
        result.floor_per_cgroup = Some(floor::files_per_cgroup(pid)).filter(|f| !f.is_empty());
    }
    Ok((result, child))
}

const WARMUP_LIMIT: Duration = Duration::from_secs(180);

/// Starts an agent in `cgroup` (it moves itself there before exec), its output in a log.
fn start(args: &Args, agent: &AgentCommand, cgroup: &Cgroup, n: usize) -> anyhow::Result<Running> {
    let log = fs::File::create(args.out.join(format!("{}-{n}.log", agent.name)))?;
    let script = format!("{} && exec \"$@\"", cgroup.join_command());
    Command::new("sh")
        .args(["-c", &script, "sh"])
        .args(&agent.argv)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map(Running)
        .with_context(|| format!("start {}", agent.name))
}

/// Until the agent answers /metrics.
fn wait_serving(agent: &AgentCommand, child: &mut Running) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < WARMUP_LIMIT {
        if let Some(status) = child.try_wait()? {
            bail!("{} exited: {status}", agent.name);
        }
        if scrape::metrics(&agent.addr).is_ok() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "{} did not serve /metrics within {WARMUP_LIMIT:?}",
        agent.name
    )
}

/// An agent that is stopped however the bench leaves it (an error included).
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        nodetel_integration_tests::runtimes::stop(&mut self.0, Duration::from_secs(15));
    }
}

/// 3000 cgroups times a dozen files is more than the usual soft limit of 1024 descriptors.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one rlimit struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
