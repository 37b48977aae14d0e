//! Processes, threads and their limit, pressure, and the lifecycle gauges, against the kernel.
use std::{thread, time::Duration};

use anyhow::Context as _;
use nodetel_integration_tests::{Agent, TestCgroup, privileged, unix_now};

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

    // Pressure: the v2 directory has it on pure and hybrid hosts alike. Within the kernel's
    // readings taken before and after the served pass (ground_truth.rs checks every figure so).
    let psi = burner_cg.dir.join("cpu.pressure");
    let read = || -> anyhow::Result<f64> {
        psi_some_seconds(&std::fs::read_to_string(&psi)?).context("cpu.pressure")
    };
    let before = read()?;
    let later = agent.metrics_after(unix_now())?;
    let after = read()?;
    let got = later
        .value(
            "container_pressure_cpu_waiting_seconds_total",
            &burner_cg.rel,
        )
        .context("no cpu pressure series")?;
    eprintln!("cpu pressure: agent {got} s, kernel {before} .. {after} s");
    assert!(before > 0.0, "three burners on two CPUs stalled nobody?");
    assert!(
        (before - 1e-6..=after + 1e-6).contains(&got),
        "agent {got} s outside the kernel's {before} .. {after} s"
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
