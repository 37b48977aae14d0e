//! Run-queue waits against the kernel's own per-task accounting (`/proc/<pid>/schedstat`).
use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use nodetel_integration_tests::{Agent, TestCgroup, privileged, rel_err, signal};

/// `/proc/<pid>/schedstat`: (ns on CPU, ns waiting on a run queue, times run).
fn schedstat(pid: u32) -> anyhow::Result<(u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
    let mut f = text.split_whitespace().map(str::parse::<u64>);
    let mut next = || -> anyhow::Result<u64> { Ok(f.next().context("short schedstat")??) };
    Ok((next()?, next()?, next()?))
}

#[test]
fn two_tasks_on_one_cpu_wait_half_the_time() -> anyhow::Result<()> {
    if !privileged("two_tasks_on_one_cpu_wait_half_the_time") {
        return Ok(());
    }
    let agent = Agent::start(Duration::from_millis(250), &[])?;
    let cg = TestCgroup::create("runq")?;
    // Two busy loops that may only run on CPU 0: each waits while the other runs.
    let burn = "exec taskset -c 0 sh -c \"while :; do :; done\"";
    let a = cg.spawn(burn)?;
    let b = cg.spawn(burn)?;
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs(3));
    // Stopped tasks leave the run queue: every figure is then final and can be compared exactly.
    for p in [a.id(), b.id()] {
        signal(p, "STOP")?;
    }
    let wall = t0.elapsed().as_secs_f64();
    thread::sleep(Duration::from_millis(300));
    let (sa, sb) = (schedstat(a.id())?, schedstat(b.id())?);
    let kernel_wait = (sa.1 + sb.1) as f64 / 1e9;
    let kernel_periods = sa.2 + sb.2;

    let last = std::cell::Cell::new(None);
    let e = agent.scrape_until(Duration::from_secs(5), |e| {
        let v = e.value("container_cpu_schedstat_runqueue_seconds_total", &cg.rel);
        v.is_some() && last.replace(v) == v
    })?;
    let got = e
        .value("container_cpu_schedstat_runqueue_seconds_total", &cg.rel)
        .context("no runqueue series")?;
    let periods = e
        .value("container_cpu_schedstat_run_periods_total", &cg.rel)
        .context("no run periods series")?;
    let count = e
        .value("nodetel_container_runqueue_latency_seconds_count", &cg.rel)
        .context("no histogram")?;
    let sum = e
        .value("nodetel_container_runqueue_latency_seconds_sum", &cg.rel)
        .context("no histogram sum")?;
    eprintln!(
        "wall {wall:.3} s; run-queue wait: kernel {kernel_wait:.3} s, nodetel {got:.3} s \
         ({:.2} % apart); run periods: kernel {kernel_periods}, nodetel {periods}; histogram \
         count {count}, sum {sum:.3} s",
        rel_err(got, kernel_wait) * 100.0
    );
    // Two tasks sharing one CPU: each waits about half of the time.
    let per_task = got / 2.0 / wall;
    assert!(
        (0.4..=0.6).contains(&per_task),
        "each task waited {:.0} % of the wall time",
        per_task * 100.0
    );
    assert!(
        rel_err(got, kernel_wait) < 0.05,
        "nodetel {got} s vs the kernel's {kernel_wait} s"
    );
    assert!(
        rel_err(periods, kernel_periods as f64) < 0.05,
        "run periods: nodetel {periods} vs the kernel's {kernel_periods}"
    );
    // The histogram's sum is the same waits, of the cgroup's own tasks.
    assert!(rel_err(sum, got) < 1e-6, "histogram sum {sum} vs {got}");
    let inf = e.0.lines().find(|l| {
        l.starts_with("nodetel_container_runqueue_latency_seconds_bucket{")
            && l.contains(&format!("id=\"{}\"", cg.rel))
            && l.contains("le=\"+Inf\"")
    });
    assert!(
        inf.is_some_and(|l| l.ends_with(&format!(" {count}"))),
        "+Inf bucket {inf:?} vs count {count}"
    );
    Ok(())
}

#[test]
fn bpf_stats_time_every_program() -> anyhow::Result<()> {
    if !privileged("bpf_stats_time_every_program") {
        return Ok(());
    }
    let agent = Agent::start(Duration::from_millis(250), &["--bpf-stats"])?;
    let cg = TestCgroup::create("bpfstats")?;
    let burn = "exec taskset -c 0 sh -c \"while :; do :; done\"";
    let _a = cg.spawn(burn)?;
    let _b = cg.spawn(burn)?;
    thread::sleep(Duration::from_secs(2));
    // Every scrape is loopback traffic of this process: the traffic programs run too.
    let e = agent.next_metrics()?;
    let stat = |family: &str, program: &str| {
        e.0.lines()
            .find(|l| l.starts_with(family) && l.contains(&format!("program=\"{program}\"")))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
    let programs: Vec<&str> =
        e.0.lines()
            .filter(|l| l.starts_with("nodetel_ebpf_program_attached{") && l.ends_with(" 1"))
            .filter_map(|l| l.split('"').nth(1))
            .collect();
    eprintln!(
        "{:<20} {:>12} {:>12} {:>10}",
        "program", "runs", "seconds", "ns/run"
    );
    for p in &programs {
        let (runs, secs) = (
            stat("nodetel_ebpf_program_runs_total", p).unwrap_or(0.0),
            stat("nodetel_ebpf_program_run_seconds_total", p).unwrap_or(0.0),
        );
        eprintln!(
            "{p:<20} {runs:>12} {secs:>12.6} {:>10.0}",
            if runs > 0.0 { secs * 1e9 / runs } else { 0.0 }
        );
    }
    for p in ["sched_switch", "net_ingress", "net_egress"] {
        let runs = stat("nodetel_ebpf_program_runs_total", p);
        let secs = stat("nodetel_ebpf_program_run_seconds_total", p);
        assert!(
            runs.is_some_and(|r| r > 0.0) && secs.is_some_and(|s| s > 0.0),
            "{p}: runs {runs:?}, seconds {secs:?}"
        );
    }
    Ok(())
}
