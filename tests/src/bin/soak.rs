//! `cargo xtask soak`: the agent under churn and under a scrape flood, with figures.
//!
//! Churn: N cgroups (each run a process once, so every kernel map gets an entry) and M Docker
//! containers are made and removed while the agent is scraped every second; series, map
//! entries, held cgroupfs files, descriptors and RSS must come back to their baseline.
//! Soak: K cgroups, P scrapers reading /metrics back to back, R slow readers trickling it, and
//! two API clients, for S seconds; RSS must stay flat, descriptors must not grow, and every
//! scrape of the P must be answered. Only those properties are asserted, never a time.
#[path = "bench/probe.rs"]
#[allow(dead_code)]
mod probe;
#[path = "bench/scrape.rs"]
#[allow(dead_code)]
mod scrape;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Parser;
use nodetel_integration_tests::{Agent, runtimes::Dockerd, unified_root};

#[derive(Parser)]
struct Args {
    /// cgroups made and removed in the churn phase.
    #[arg(long, default_value_t = 10_000)]
    churn_cgroups: usize,
    /// Docker containers run and removed in the churn phase.
    #[arg(long, default_value_t = 200)]
    churn_containers: usize,
    /// Churns run one after the other (a leak keeps part of every one).
    #[arg(long, default_value_t = 2)]
    churn_cycles: usize,
    /// cgroups present through the soak phase.
    #[arg(long, default_value_t = 1000)]
    soak_cgroups: usize,
    /// Length of the soak phase.
    #[arg(long, default_value_t = 600)]
    soak_seconds: u64,
    /// Clients scraping /metrics back to back.
    #[arg(long, default_value_t = 50)]
    scrapers: usize,
    /// Clients reading /metrics at 64 KiB/s.
    #[arg(long, default_value_t = 4)]
    slow_readers: usize,
    /// The agent's --history-samples: the soak's RSS is compared once the history is full.
    #[arg(long, default_value_t = 60)]
    history_samples: u64,
}

/// What is compared with the baseline.
#[derive(Clone, Debug)]
struct Figures {
    series: f64,
    cpu_entries: f64,
    net_entries: f64,
    sched_entries: f64,
    open_files: f64,
    fds: f64,
    rss_mib: f64,
    /// Bytes in the agent's live allocations, as its allocator counts them.
    allocated_mib: f64,
    /// The agent's high-water RSS so far (VmHWM).
    hwm_mib: f64,
    /// The cgroups exported (`id` of container_last_seen).
    ids: std::collections::BTreeSet<String>,
}

fn figures(agent: &Agent) -> anyhow::Result<Figures> {
    let body = agent.next_metrics()?.0;
    let map = |m: &str| {
        body.lines()
            .find(|l| l.starts_with(&format!("nodetel_ebpf_map_entries{{map=\"{m}\"}}")))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0.0)
    };
    let fds = std::fs::read_dir(format!("/proc/{}/fd", agent.pid()))?.count() as f64;
    let (rss, hwm) = probe::rss(agent.pid())?;
    let ids = body
        .lines()
        .filter(|l| l.starts_with("container_last_seen{"))
        .filter_map(|l| {
            l.split("id=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_string)
        })
        .collect();
    Ok(Figures {
        series: scrape::series(&body) as f64,
        cpu_entries: map("cpu_ns"),
        net_entries: map("net_traffic"),
        sched_entries: map("sched"),
        open_files: scrape::scalar(&body, "nodetel_cgroupfs_open_files").unwrap_or(0.0),
        fds,
        rss_mib: rss as f64 / (1 << 20) as f64,
        allocated_mib: scrape::scalar(&body, "nodetel_allocator_allocated_bytes")
            .context("no nodetel_allocator_allocated_bytes")?
            / (1 << 20) as f64,
        hwm_mib: hwm as f64 / (1 << 20) as f64,
        ids,
    })
}

/// Whether a figure came back: (baseline, peak, after) -> back.
type BackCheck = fn(f64, f64, f64) -> bool;

/// Leak check, on the allocator's own count of live bytes: what the churn added is given back
/// but for 2 % of it, or the agent is within 0.5 MiB of its baseline. Exact where RSS is not:
/// over 1000-cgroup churns, allocated went 0.77 -> 19.5 -> 0.94, 0.91, 0.75, 0.77 MiB, while RSS
/// went 14.3 -> 14.8, 15.8, 16.0, 16.0. A leak of 500 bytes a cgroup fails the first churn; of
/// 250, the second.
fn allocated_back(base: f64, peak: f64, after: f64) -> bool {
    after - base <= ((peak - base) * 0.02).max(0.5)
}

/// Memory given back to the kernel: RSS keeps no more than 10 % of what the churn added, or is
/// within 4 MiB of its baseline. Not a leak check (`allocated_back` is): jemalloc keeps some
/// freed pages and its bookkeeping of every size it served, which drifted 0.4 to 2.4 MiB above
/// a 14 MiB baseline over the churns measured, with no live byte left (glibc's malloc kept 327
/// MiB of a 10,000-cgroup churn, 29 -> 356, which this fails). Lower is back too.
fn rss_back(base: f64, peak: f64, after: f64) -> bool {
    after - base <= ((peak - base) * 0.10).max(4.0)
}

/// Within 5 % of the baseline, or within a small absolute slack for small counts (a map entry
/// of the agent's own helper threads, a descriptor of a scrape in flight).
fn back_to(name: &str, base: f64, after: f64, slack: f64) -> bool {
    let ok = (after - base).abs() <= (base * 0.05).max(slack);
    println!(
        "  {name:<22} baseline {base:>10.1}  after {after:>10.1}  {}",
        if ok { "ok" } else { "NOT BACK" }
    );
    ok
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = unified_root().context("no cgroup v2 hierarchy")?;
    remove_stale(&root);
    let dockerd = Dockerd::start("soak")?;
    dockerd.ensure_image()?;
    let samples = args.history_samples.to_string();
    let agent = Agent::start_with_runtime(
        Duration::from_secs(1),
        "--docker-socket",
        &dockerd.socket,
        // Few events kept: the events API's store is bounded by this flag (10,000 by default,
        // all of them a churn's creations and deletions); what the churn may leave otherwise
        // is what is measured.
        &[
            "--history-samples",
            &samples,
            "--event-storage-limit",
            "100",
        ],
    )?;
    let ok_churn = churn(&args, &agent, &dockerd, &root)?;
    let ok_soak = args.soak_seconds == 0 || soak(&args, &agent, &root)?;
    if !(ok_churn && ok_soak) {
        bail!("soak: a figure did not hold (see above)");
    }
    println!("soak: every property held");
    Ok(())
}

/// cgroup directories this run made, removed (children first) however the run ends.
struct Made(Vec<PathBuf>);

impl Drop for Made {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Removes what an earlier run that was killed left behind (its pid no longer exists).
fn remove_stale(root: &std::path::Path) {
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .rsplit('-')
            .next()
            .filter(|_| name.starts_with("nodetel-soak-"))
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        for kid in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(kid.path());
        }
        let _ = std::fs::remove_dir(e.path());
    }
}

fn churn(
    args: &Args,
    agent: &Agent,
    dockerd: &Dockerd,
    root: &std::path::Path,
) -> anyhow::Result<bool> {
    // dockerd makes its parent cgroup with its first container and keeps it: made before the
    // baseline, so it is not counted as churn left behind.
    let image = nodetel_integration_tests::runtimes::IMAGE;
    let first = dockerd.docker(&["run", "-d", image, "true"])?;
    dockerd.docker(&["rm", "-f", &first])?;
    thread::sleep(Duration::from_secs(12));
    // Past start-up's transient: the kernel's BTF (about 5 MB) is parsed once and freed, and the
    // allocator returns it within its 10 s decay (measured: a baseline of 24.6 MiB right after
    // start, 12.9 MiB later). A baseline taken inside it would let a leak pass.
    thread::sleep(Duration::from_secs(15));
    let base = figures(agent)?;
    println!(
        "churn: baseline {} series, RSS {:.1} MiB ({:.2} allocated), {} fds, {} held files",
        base.series, base.rss_mib, base.allocated_mib, base.fds, base.open_files
    );
    // At least twice: a second identical churn must come back as the first did (a leak would
    // keep part of every cycle).
    let mut ok = true;
    let mut rss = vec![format!("{:.1}", base.rss_mib)];
    let mut hwm = 0.0;
    for n in 1..=args.churn_cycles.max(2) {
        let (ok_n, after) = cycle(n, args, agent, dockerd, root, &base)?;
        ok &= ok_n;
        rss.push(format!("{:.1}", after.rss_mib));
        hwm = after.hwm_mib;
    }
    println!(
        "churn: RSS MiB at baseline and after each churn: {}; high water {hwm:.1} MiB",
        rss.join(", ")
    );
    Ok(ok)
}

/// One churn: make, scrape, remove, settle, compare with the baseline (the caller prints each
/// cycle's RSS next to the others).
fn cycle(
    n: usize,
    args: &Args,
    agent: &Agent,
    dockerd: &Dockerd,
    root: &std::path::Path,
    base: &Figures,
) -> anyhow::Result<(bool, Figures)> {
    // Scraped every second throughout, as Prometheus would.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let scraper = {
        let (addr, stop, failures) = (agent.addr.clone(), Arc::clone(&stop), Arc::clone(&failures));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if scrape::metrics(&addr).is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let parent = root.join(format!("nodetel-soak-{}", std::process::id()));
    std::fs::create_dir(&parent)?;
    let mut made = Made(vec![parent.clone()]);
    let started = Instant::now();
    for i in 0..args.churn_cgroups {
        let dir = parent.join(format!("c{i}"));
        std::fs::create_dir(&dir)?;
        made.0.push(dir.clone());
        // One short process: a CPU (and scheduler) entry in the kernel maps.
        let ok = Command::new("sh")
            .env("CG", &dir)
            .args(["-c", r#"echo $$ > "$CG/cgroup.procs" && exit 0"#])
            .status()?
            .success();
        if !ok {
            bail!("could not run a process in {}", dir.display());
        }
    }
    let image = nodetel_integration_tests::runtimes::IMAGE;
    let mut ids = Vec::new();
    for i in 0..args.churn_containers {
        let name = format!("nt-soak-{i}");
        ids.push(dockerd.docker(&["run", "-d", "--name", &name, image, "sleep", "3600"])?);
    }
    println!(
        "churn {n}: {} cgroups and {} containers made in {:.1?}",
        args.churn_cgroups,
        args.churn_containers,
        started.elapsed()
    );
    let peak = figures(agent)?;
    println!(
        "churn {n}: with them {} series, RSS {:.1} MiB ({:.2} allocated), {} fds, {} held files, \
         map entries cpu {} net {} sched {}",
        peak.series,
        peak.rss_mib,
        peak.allocated_mib,
        peak.fds,
        peak.open_files,
        peak.cpu_entries,
        peak.net_entries,
        peak.sched_entries
    );
    for id in &ids {
        dockerd.docker(&["rm", "-f", id])?;
    }
    drop(made);
    println!("churn {n}: all removed after {:.1?}", started.elapsed());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let e = agent.next_metrics()?;
        if !e.0.contains("nodetel-soak-") && !e.0.contains("nt-soak-") {
            break;
        }
    }
    // Past --quiet-cgroup-refresh (10 s), so everything the agent re-reads has been re-read.
    thread::sleep(Duration::from_secs(12));
    let mut after = figures(agent)?;
    // The allocator hands freed memory back gradually (jemalloc purges dirty pages over about
    // 10 s of allocation activity): RSS is read until it is back, for at most two minutes.
    let settle = Instant::now();
    while !rss_back(base.rss_mib, peak.rss_mib, after.rss_mib)
        && settle.elapsed() < Duration::from_secs(120)
    {
        thread::sleep(Duration::from_secs(5));
        after.rss_mib = probe::rss(agent.pid())?.0 as f64 / (1 << 20) as f64;
        println!(
            "  RSS {:.1} MiB {:.0?} after the figures",
            after.rss_mib,
            settle.elapsed()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = scraper.join();
    let failed = failures.load(Ordering::Relaxed);
    println!("churn {n}: scrapes failed during churn: {failed}");
    let mut ok = failed == 0;
    ok &= back_to("series", base.series, after.series, 10.0);
    for id in after.ids.symmetric_difference(&base.ids) {
        let what = if base.ids.contains(id) { "gone" } else { "new" };
        println!("    cgroup {id} {what}");
    }
    let maps = [
        ("cpu map entries", base.cpu_entries, after.cpu_entries, 20.0),
        (
            "traffic map entries",
            base.net_entries,
            after.net_entries,
            20.0,
        ),
        (
            "sched map entries",
            base.sched_entries,
            after.sched_entries,
            40.0,
        ),
        (
            "cgroupfs open files",
            base.open_files,
            after.open_files,
            20.0,
        ),
        ("descriptors", base.fds, after.fds, 8.0),
    ];
    for (name, b, a, slack) in maps {
        ok &= back_to(name, b, a, slack);
    }
    let memory: [(&str, BackCheck, f64, f64, f64); 2] = [
        (
            "RSS MiB",
            rss_back,
            base.rss_mib,
            peak.rss_mib,
            after.rss_mib,
        ),
        (
            "allocated MiB",
            allocated_back,
            base.allocated_mib,
            peak.allocated_mib,
            after.allocated_mib,
        ),
    ];
    for (name, back, b, p, a) in memory {
        let back_ok = back(b, p, a);
        println!(
            "  {name:<22} baseline {b:>10.2}  after {a:>10.2}  {} (peak {p:.2})",
            if back_ok { "ok" } else { "NOT BACK" }
        );
        ok &= back_ok;
    }
    Ok((ok, after))
}

fn soak(args: &Args, agent: &Agent, root: &std::path::Path) -> anyhow::Result<bool> {
    let parent = root.join(format!("nodetel-soak-flood-{}", std::process::id()));
    std::fs::create_dir(&parent)?;
    let dirs: Vec<PathBuf> = (0..args.soak_cgroups)
        .map(|i| parent.join(format!("c{i}")))
        .collect();
    let mut made = Made(vec![parent.clone()]);
    for d in &dirs {
        std::fs::create_dir(d)?;
        made.0.push(d.clone());
    }
    // Until every new cgroup's history is full: its growth is not a leak.
    thread::sleep(Duration::from_secs(args.history_samples + 5));
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed, cut) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut clients = Vec::new();
    for _ in 0..args.scrapers {
        let (addr, stop, answered, failed) = (
            agent.addr.clone(),
            Arc::clone(&stop),
            Arc::clone(&answered),
            Arc::clone(&failed),
        );
        clients.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match scrape::metrics(&addr) {
                    Ok(_) => answered.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("soak: scrape failed: {e:#}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for _ in 0..args.slow_readers {
        let (addr, stop, cut) = (agent.addr.clone(), Arc::clone(&stop), Arc::clone(&cut));
        clients.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if !trickle(&addr, &stop) {
                    cut.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for path in [
        "/api/v2.0/stats/?recursive=true&count=1",
        "/api/v1.3/subcontainers/",
    ] {
        let (addr, stop) = (agent.addr.clone(), Arc::clone(&stop));
        clients.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = nodetel_integration_tests::http_get(&addr, path);
            }
        }));
    }
    // Every 2 s (a median of the CI run's 40 s is then of three or four readings, not one), printed
    // every 10 s.
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(args.soak_seconds) {
        thread::sleep(Duration::from_secs(2));
        let rss = probe::rss(agent.pid())?.0 as f64 / (1 << 20) as f64;
        let allocated = scrape::scalar(&agent.metrics()?, "nodetel_allocator_allocated_bytes")
            .context("no nodetel_allocator_allocated_bytes")?
            / (1 << 20) as f64;
        let fds = std::fs::read_dir(format!("/proc/{}/fd", agent.pid()))?.count();
        let (code, _) = nodetel_integration_tests::http_get(&agent.addr, "/healthz")?;
        if samples.len() % 5 == 4 {
            println!(
                "soak: {:>4.0} s  RSS {rss:>6.1} MiB ({allocated:.2} allocated)  fds {fds:>4}  \
                 /healthz {code}  scrapes {} ok {} failed",
                started.elapsed().as_secs_f64(),
                answered.load(Ordering::Relaxed),
                failed.load(Ordering::Relaxed)
            );
        }
        samples.push(Sample {
            rss,
            allocated,
            fds,
        });
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    drop(made);
    let n = samples.len().max(1);
    let fifth = (n / 5).max(1);
    let median = |s: &[Sample], f: fn(&Sample) -> f64| {
        let mut v: Vec<f64> = s.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    // The first fifth is warm-up (connections, buffers); the second is the reference.
    let (second, last) = (
        &samples[fifth.min(n - 1)..(2 * fifth).min(n)],
        &samples[n - fifth.min(n)..],
    );
    let (early, late) = (median(second, |s| s.rss), median(last, |s| s.rss));
    let (early_alloc, late_alloc) = (
        median(second, |s| s.allocated),
        median(last, |s| s.allocated),
    );
    let fd_first = samples.first().map_or(0, |s| s.fds);
    let fd_max = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    let fd_last = samples.last().map_or(0, |s| s.fds);
    let (ok_n, failed_n) = (
        answered.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!(
        "soak: {} cgroups, {} scrapers, {} slow readers, {} s: {ok_n} scrapes answered, {failed_n} failed, \
         {} slow reads cut at the deadline; median RSS {early:.1} MiB ({early_alloc:.2} allocated) \
         in the second fifth, {late:.1} ({late_alloc:.2}) in the last; descriptors {fd_first} .. \
         {fd_max}, {fd_last} at the end",
        args.soak_cgroups,
        args.scrapers,
        args.slow_readers,
        args.soak_seconds,
        cut.load(Ordering::Relaxed)
    );
    // Growth is what a leak makes; less memory late than early is not one.
    let flat = late - early <= early * 0.10;
    let allocated_flat = late_alloc - early_alloc <= (early_alloc * 0.10).max(1.0);
    let no_fd_growth = fd_last <= fd_first + args.scrapers + args.slow_readers + 8;
    println!(
        "  RSS grew less than 10 %: {flat}\n  allocated grew less than 10 % or 1 MiB: \
         {allocated_flat}\n  no descriptor growth: {no_fd_growth}\n  every scrape answered: {}",
        failed_n == 0 && ok_n > 0
    );
    Ok(flat && allocated_flat && no_fd_growth && failed_n == 0 && ok_n > 0)
}

/// One reading of the soak phase.
struct Sample {
    rss: f64,
    allocated: f64,
    fds: usize,
}

/// Reads /metrics at 64 KiB/s; false when the agent cut it off (its deadline).
fn trickle(addr: &str, stop: &AtomicBool) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(90)));
    if write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16 * 1024];
    let mut head = Vec::new();
    let mut total = 0usize;
    let mut want: Option<usize> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                total += k;
                if want.is_none() {
                    head.extend_from_slice(&buf[..k]);
                    let text = String::from_utf8_lossy(&head).to_string();
                    if let Some((h, _)) = text.split_once("\r\n\r\n") {
                        want = h
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(str::to_string)
                            })
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .map(|n| n + h.len() + 4);
                    }
                }
                thread::sleep(Duration::from_millis(250));
            }
            Err(_) => return false,
        }
    }
    want.is_some_and(|w| total >= w)
}
