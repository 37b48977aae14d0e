//! What a hostile tenant or client can do to the agent, done for real: a cgroup directory's
//! mtime set to 2^63 s, a malformed time offset, names that are not UTF-8 and nesting deeper
//! than the walk exports. The agent must stay up and hide nothing. (Request floods and heavy
//! answers: `api_load.rs`.)
use std::{
    process::Command,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use nodetel_integration_tests::{Agent, TestCgroup, privileged};

/// Sets `dir`'s atime and mtime to `secs` after the epoch, as `touch -d @secs` does (through
/// utimensat directly: busybox's touch in the VM may not parse every date).
fn touch(dir: &std::path::Path, secs: i64) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    let t = libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: `path` is a NUL-terminated string and `times` two valid timespecs, both alive
    // for the call; utimensat reads them and keeps no pointer.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) };
    if rc != 0 {
        bail!(
            "utimensat {} to {secs}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

#[test]
fn a_tenant_setting_a_cgroup_mtime_cannot_crash_the_agent() -> anyhow::Result<()> {
    if !privileged("a_tenant_setting_a_cgroup_mtime_cannot_crash_the_agent") {
        return Ok(());
    }
    let interval = Duration::from_millis(300);
    let agent = Agent::start(interval, &[])?;
    // What anyone who owns a delegated subtree can do (rootless Podman, systemd user units).
    let far = TestCgroup::create("mtime-max")?;
    touch(&far.dir, i64::MAX)?;
    let future = TestCgroup::create("mtime-2100")?;
    // 2100-01-01T00:00:00Z
    touch(&future.dir, 4_102_444_800)?;
    let e = agent.scrape_until(Duration::from_secs(5), |e| {
        e.mentions_id(&far.rel) && e.mentions_id(&future.rel)
    })?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    for cg in [&far, &future] {
        let start = e
            .value("container_start_time_seconds", &cg.rel)
            .with_context(|| format!("no start time for {}", cg.rel))?;
        eprintln!("{}: start time {start}, now {now}", cg.rel);
        assert!(
            start <= now + 1.0 && start > now - 120.0,
            "a future mtime must read as first sight, got {start}"
        );
    }
    // The API formats creation times and events from the same figures.
    let (code, body) = agent.get(&format!("/api/v1.3/containers{}", far.rel))?;
    assert_eq!(code, 200, "{body}");
    let (code, _) = agent.get("/api/v2.0/events?all_events=true&max_events=-1")?;
    assert_eq!(code, 200);
    let (code, health) = agent.get("/healthz")?;
    assert_eq!(
        (code, health.as_str()),
        (200, "ok\n"),
        "no panic may be caught"
    );
    // A restart finds the hostile cgroups at its first pass (the crash loop the issue saw).
    drop(agent);
    let agent = Agent::start(interval, &[])?;
    let e = agent.next_metrics()?;
    assert!(e.mentions_id(&far.rel));
    assert!(e.0.contains("nodetel_panics_total{where=\"collection\"} 0"));
    Ok(())
}

#[test]
fn a_malformed_time_offset_is_a_400_not_a_panic() -> anyhow::Result<()> {
    if !privileged("a_malformed_time_offset_is_a_400_not_a_panic") {
        return Ok(());
    }
    let agent = Agent::start(Duration::from_millis(300), &[])?;
    for t in [
        "2026-11-22T14:30:10%C3%A90:00",
        "2026-11-22T14:30:10%C3%A9%C3%A9:00",
        "2026-11-22T14:30:10+%C3%A9:00",
    ] {
        let (code, body) = agent.get(&format!("/api/v1.3/events?start_time={t}"))?;
        assert_eq!(code, 400, "{t}: {body}");
    }
    let e = agent.next_metrics()?;
    assert!(
        e.0.contains("nodetel_panics_total{where=\"request\"} 0"),
        "a request panicked"
    );
    Ok(())
}

/// Starts a busy loop in the cgroup directory `dir` (any name, UTF-8 or not) and returns once
/// it is there.
fn burn_in(dir: &std::path::Path) -> anyhow::Result<std::process::Child> {
    let mut child = Command::new("sh")
        .env("CG", dir)
        .args([
            "-c",
            r#"echo $$ > "$CG/cgroup.procs" && exec sh -c 'while :; do :; done'"#,
        ])
        .spawn()?;
    let pid = child.id().to_string();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if procs.lines().any(|l| l.trim() == pid) {
            return Ok(child);
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    bail!("burner did not move into {}", dir.display())
}

/// A tenant cannot hide CPU from its pod by what it calls its cgroups or how deep it nests
/// them: a child with a name that is not UTF-8 and a leaf 66 levels down each burn a CPU, and
/// the pod's total equals the kernel's.
#[test]
fn odd_names_and_deep_nesting_hide_nothing_from_the_pod() -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    if !privileged("odd_names_and_deep_nesting_hide_nothing_from_the_pod") {
        return Ok(());
    }
    let interval = Duration::from_millis(300);
    let agent = Agent::start(interval, &[])?;
    let pod = TestCgroup::create("nohide")?;
    let odd = pod.dir.join(std::ffi::OsStr::from_bytes(b"t\xffx"));
    std::fs::create_dir(&odd)?;
    let mut leaf = pod.dir.clone();
    for _ in 0..66 {
        leaf.push("d");
        std::fs::create_dir(&leaf)?;
    }
    let mut burners = vec![burn_in(&odd)?, burn_in(&leaf)?];
    thread::sleep(Duration::from_secs(3));
    for b in &mut burners {
        let _ = b.kill();
        let _ = b.wait();
    }
    thread::sleep(interval * 2);
    let e = agent.next_metrics()?;
    let kernel = pod.kernel_usage_seconds()?;
    let ours = e
        .value("container_cpu_usage_seconds_total", &pod.rel)
        .context("no CPU series for the pod")?;
    eprintln!("pod cgroup: nodetel {ours:.3} s, kernel {kernel:.3} s");
    // The escaped child is exported ('\' is written '\\' in the exposition).
    let odd_id = format!("{}/t\\\\xffx", pod.rel);
    assert!(
        e.mentions_id(&odd_id),
        "the non-UTF-8 child is not exported as {odd_id}"
    );
    let odd_cpu = e
        .value("container_cpu_usage_seconds_total", &odd_id)
        .unwrap_or(0.0);
    assert!(odd_cpu > 1.0, "the odd child's own CPU is {odd_cpu}");
    // Nothing below depth 64 is exported; the pod holds it all.
    let deepest = format!("{}{}", pod.rel, "/d".repeat(63));
    assert!(e.mentions_id(&deepest), "depth 64 must be exported");
    assert!(!e.mentions_id(&format!("{deepest}/d")), "depth 65 exported");
    // Both burners ran (the VM suite's emulated CPUs give them one CPU's worth between them),
    // and the deep leaf's share is in the pod's total, not only the odd child's.
    assert!(kernel > 1.5, "the burners did not run: {kernel}");
    assert!(
        ours - odd_cpu > 0.5,
        "the 66-deep leaf's CPU is missing from the pod: pod {ours} s, odd child {odd_cpu} s"
    );
    assert!(
        (ours - kernel).abs() <= kernel * 0.02,
        "pod total {ours} s, kernel {kernel} s"
    );
    Ok(())
}
