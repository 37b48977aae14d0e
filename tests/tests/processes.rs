//! Processes, threads and their limit, pressure, and the lifecycle gauges, against the kernel.
use std::{
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use nodetel_integration_tests::{Agent, TestCgroup, privileged};

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `total=` of the `some` line of a PSI file, in seconds.
fn psi_some_seconds(text: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with("some "))?
        .split_ascii_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse::<f64>()
        .ok()
        .map(|us| us / 1e6)
}

#[test]
fn processes_threads_pressure_and_lifecycle() -> anyhow::Result<()> {
    if !privileged("processes_threads_pressure_and_lifecycle") {
        return Ok(());
    }
    let agent = Agent::start(Duration::from_millis(500), &[])?;
    let created = unix_now();
    let mut cg = TestCgroup::create("procs")?;
    let pids_dir = cg.controller_dir("pids")?;
    std::fs::write(pids_dir.join("pids.max"), "50")?;
    // A shell and two sleeps: three processes, three tasks. Two burners contend for the CPUs so
    // that the cgroup accrues some CPU pressure.
    let _kids = cg.spawn("sleep 600 & sleep 600 & wait")?;
    let mut burner_cg = cg.child("burn")?;
    let _ = burner_cg.controller_dir("pids")?;
    let b1 = burner_cg.burn()?;
    let b2 = burner_cg.burn()?;
    let b3 = burner_cg.burn()?;
    thread::sleep(Duration::from_millis(1500));

    let e = agent.next_metrics()?;
    let procs = std::fs::read_to_string(cg.dir.join("cgroup.procs"))?
        .lines()
        .count() as f64;
    assert_eq!(procs, 3.0, "the test set-up itself");
    assert_eq!(e.value("container_processes", &cg.rel), Some(procs));
    let threads: f64 = std::fs::read_to_string(pids_dir.join("pids.current"))?
        .trim()
        .parse()?;
    assert_eq!(threads, 6.0, "3 here + 3 burners below");
    assert_eq!(e.value("container_threads", &cg.rel), Some(threads));
    assert_eq!(e.value("container_threads_max", &cg.rel), Some(50.0));

    // Pressure: the v2 directory has it on pure and hybrid hosts alike.
    let psi = cg.dir.join("cpu.pressure");
    let got = e
        .value(
            "container_pressure_cpu_waiting_seconds_total",
            &burner_cg.rel,
        )
        .context("no cpu pressure series")?;
    let kernel = psi_some_seconds(&std::fs::read_to_string(&psi)?).context("cpu.pressure")?;
    let kernel_burn = psi_some_seconds(&std::fs::read_to_string(
        burner_cg.dir.join("cpu.pressure"),
    )?)
    .context("burner cpu.pressure")?;
    eprintln!("cpu pressure: agent {got} s, kernel now {kernel_burn} s (parent {kernel})");
    assert!(got > 0.0, "three burners on two CPUs stalled nobody?");
    assert!(
        got <= kernel_burn,
        "agent {got} ahead of the kernel's {kernel_burn}"
    );

    // Lifecycle: created during this test, seen in this pass.
    let start = e
        .value("container_start_time_seconds", &cg.rel)
        .context("no start time")?;
    assert!(
        (created - 2.0..=unix_now()).contains(&start),
        "start time {start}, created at {created}"
    );
    let seen = e
        .value("container_last_seen", &cg.rel)
        .context("no last_seen")?;
    assert!(
        (seen - e.snapshot_time()).abs() < 1e-3,
        "last_seen {seen} vs snapshot {}",
        e.snapshot_time()
    );
    drop((b1, b2, b3));
    Ok(())
}
