//! Processes, threads and their limit, pressure, and the lifecycle gauges, against the kernel.
use std::{thread, time::Duration};

use anyhow::Context as _;
use nodetel_integration_tests::{Agent, TestCgroup, privileged, thread_states, unix_now};

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

/// Waits until the workload shows the states it is made of (its processes take a moment to
/// start and stop, longer in the emulated VM).
fn settle(dir: &std::path::Path, design: [u64; 4]) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = thread_states(dir)?;
        if now == design {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the workload shows (R, S, T, D) {now:?}, made as {design:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn served_states(e: &nodetel_integration_tests::Exposition, id: &str) -> [Option<f64>; 5] {
    [
        "running",
        "sleeping",
        "stopped",
        "uninterruptible",
        "iowaiting",
    ]
    .map(|s| e.value_where("container_tasks_state", id, "state", s))
}

fn stop(child: &std::process::Child) -> anyhow::Result<()> {
    // SAFETY: kill(2) with a pid this test spawned and still holds (not reaped).
    if unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) } != 0 {
        anyhow::bail!("SIGSTOP: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// cAdvisor's `cpuLoad` kind with real figures: a workload of known states (two busy loops,
/// three sleepers, a stopped process, a parent held in `D` by its vfork child, which sleeps),
/// then one busy loop stopped. The served `container_tasks_state` equals the kernel's states read
/// before and after the pass (and the design), in the exposition and the JSON; the load averages
/// start at the first count (2000 and 1000 thousandths: the agent starts after the workload) and
/// then follow cAdvisor's smoothing, `1000 + 1000 e^(-k interval/10 s)` after k passes.
#[test]
fn thread_states_and_load_averages_of_a_known_workload() -> anyhow::Result<()> {
    if !privileged("thread_states_and_load_averages_of_a_known_workload") {
        return Ok(());
    }
    let nettool =
        std::env::var("NODETEL_NETTOOL").unwrap_or_else(|_| env!("CARGO_BIN_EXE_nettool").into());
    let cg = TestCgroup::create("tasks")?;
    let _sleepers = cg.spawn("sleep 600 & sleep 600 & wait")?;
    let busy = [cg.burn()?, cg.burn()?];
    let stopped = cg.spawn("exec sleep 600")?;
    stop(&stopped)?;
    let _vfork = cg.spawn(&format!("exec {nettool} vfork-wait 600"))?;
    settle(&cg.dir, [2, 4, 1, 1])?;

    let interval = Duration::from_millis(500);
    let agent = Agent::start(interval, &[])?;
    let before = thread_states(&cg.dir)?;
    let e = agent.metrics_after(unix_now())?;
    let after = thread_states(&cg.dir)?;
    assert_eq!(before, after, "states moved during the pass");
    let want = before.map(|n| Some(n as f64));
    let got = served_states(&e, &cg.rel);
    eprintln!("states (R, S, T, D, iowait): kernel {before:?}, served {got:?}");
    assert_eq!(got[..4], want[..], "container_tasks_state vs the kernel");
    assert_eq!(got[4], Some(0.0), "iowaiting (see cgroup::tasks)");
    assert_eq!(
        e.value("container_cpu_load_average_10s", &cg.rel),
        Some(2000.0)
    );
    assert_eq!(
        e.value("container_cpu_load_d_average_10s", &cg.rel),
        Some(1000.0)
    );
    let (status, body) = agent.get(&format!("/api/v1.3/containers{}", cg.rel))?;
    assert_eq!(status, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body)?;
    let last = info["stats"]
        .as_array()
        .and_then(|s| s.last())
        .context("no stats")?;
    let t = &last["task_stats"];
    assert_eq!(
        [
            &t["nr_running"],
            &t["nr_sleeping"],
            &t["nr_stopped"],
            &t["nr_uninterruptible"],
            &t["nr_io_wait"]
        ]
        .map(|v| v.as_u64()),
        [
            Some(before[0]),
            Some(before[1]),
            Some(before[2]),
            Some(before[3]),
            Some(0)
        ],
        "JSON task_stats: {t}"
    );
    assert_eq!(last["cpu"]["load_average"].as_u64(), Some(2000));
    assert_eq!(last["cpu"]["load_d_average"].as_u64(), Some(1000));

    // One busy loop stopped: one running, two stopped. The running average decays towards
    // 1000 by e^(-0.05) a pass; it must be one of the values k passes give.
    stop(&busy[0])?;
    settle(&cg.dir, [1, 4, 2, 1])?;
    thread::sleep(Duration::from_secs(3));
    let e = agent.metrics_after(unix_now())?;
    let now = thread_states(&cg.dir)?;
    assert_eq!(now, [1, 4, 2, 1], "the workload after SIGSTOP");
    assert_eq!(
        served_states(&e, &cg.rel)[..4],
        now.map(|n| Some(n as f64))[..]
    );
    let load = e
        .value("container_cpu_load_average_10s", &cg.rel)
        .context("no load average")?;
    let decay = (-interval.as_secs_f64() / 10.0).exp();
    let k = (1..=40).find(|k| {
        let expect = (1000.0 + 1000.0 * decay.powi(*k)).trunc();
        (load - expect).abs() <= 1.0
    });
    eprintln!("load average {load} after the stop: {k:?} passes of cAdvisor's smoothing");
    let k = k.with_context(|| format!("{load} is no value of 1000 + 1000 e^(-k/20)"))?;
    // 3 s at 0.5 s: about 6 passes (the pass timer and the scrape add or take one or two).
    assert!((4..=10).contains(&k), "{k} passes in about 3 s");
    assert_eq!(
        e.value("container_cpu_load_d_average_10s", &cg.rel),
        Some(1000.0)
    );
    // SIGCONT so the children end when their handles drop.
    for c in [&stopped, &busy[0]] {
        // SAFETY: as in stop().
        unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
    }
    Ok(())
}
