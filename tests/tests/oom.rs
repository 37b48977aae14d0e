//! OOM kills against the kernel's own counters: the victim's container is charged, not the
//! allocator's, and a burst of kills is counted to the last one.
use std::{
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use nodetel_integration_tests::{Agent, TestCgroup, privileged};

const MIB: u64 = 1 << 20;

/// The kernel's count of OOM kills of tasks in this memory cgroup: v1 `memory.oom_control`,
/// v2 `memory.events.local` (`memory.events` would include descendants).
fn kernel_oom_kills(mem_dir: &Path) -> anyhow::Result<u64> {
    let v2 = mem_dir.join("memory.events.local");
    let file = if v2.exists() {
        v2
    } else {
        mem_dir.join("memory.oom_control")
    };
    let text = std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .with_context(|| format!("no oom_kill in {}", file.display()))?
        .trim()
        .parse()
        .context("oom_kill")
}

/// Sets a memory limit: v2 `memory.max` or v1 `memory.limit_in_bytes`.
fn limit_memory(mem_dir: &Path, bytes: u64) -> anyhow::Result<()> {
    let v2 = mem_dir.join("memory.max");
    let file = if v2.exists() {
        v2
    } else {
        mem_dir.join("memory.limit_in_bytes")
    };
    std::fs::write(&file, bytes.to_string()).with_context(|| file.display().to_string())
}

fn usage(mem_dir: &Path) -> u64 {
    ["memory.current", "memory.usage_in_bytes"]
        .iter()
        .find_map(|f| std::fs::read_to_string(mem_dir.join(f)).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// On v2, children get the memory controller only when their parent hands it down.
fn enable_memory_for_children(cg: &TestCgroup) -> anyhow::Result<()> {
    let control = cg.dir.join("cgroup.subtree_control");
    if cg.dir.join("memory.max").exists() {
        std::fs::write(&control, "+memory").context("enable memory for children")?;
    }
    Ok(())
}

/// `dd` reads `mib` MiB of zeroes into one buffer, then blocks on a pipe nobody reads: that much
/// anonymous memory, touched page by page and held.
fn hold(mib: u64) -> String {
    format!("dd if=/dev/zero bs={mib}M count=1 2>/dev/null | sleep 600")
}

#[test]
fn the_victim_is_charged_not_the_allocator() -> anyhow::Result<()> {
    if !privileged("the_victim_is_charged_not_the_allocator") {
        return Ok(());
    }
    let agent = Agent::start(Duration::from_millis(250), &[])?;
    let mut parent = TestCgroup::create("oom")?;
    let parent_mem = parent.controller_dir("memory")?;
    limit_memory(&parent_mem, 200 * MIB)?;
    enable_memory_for_children(&parent)?;
    let mut b = parent.child("holder")?;
    let mut a = parent.child("allocator")?;
    let (b_mem, a_mem) = (b.controller_dir("memory")?, a.controller_dir("memory")?);

    // B holds 150 MiB; then A asks for 120 MiB, which the parent's 200 MiB cannot fit. The OOM
    // killer runs in A's allocation and picks the biggest task under the parent: B's.
    let _b = b.spawn(&hold(150))?;
    let t0 = Instant::now();
    while usage(&b_mem) < 150 * MIB {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(20),
            "B never reached 150 MiB"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let _a = a.spawn(&hold(120))?;
    let t0 = Instant::now();
    while kernel_oom_kills(&b_mem)? == 0 {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(20),
            "the kernel killed nothing in B (A has {} kills)",
            kernel_oom_kills(&a_mem)?
        );
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(300));
    let (kb, ka) = (kernel_oom_kills(&b_mem)?, kernel_oom_kills(&a_mem)?);
    assert_eq!(
        ka, 0,
        "the set-up: the kernel killed in the allocator's cgroup"
    );

    let e = agent.scrape_until(Duration::from_secs(5), |e| {
        e.value("container_oom_events_total", &b.rel) == Some(kb as f64)
    })?;
    let got = |cg: &TestCgroup| e.value("container_oom_events_total", &cg.rel);
    eprintln!(
        "kernel: B {kb}, A {ka}; nodetel: B {:?}, A {:?}, parent {:?}",
        got(&b),
        got(&a),
        got(&parent)
    );
    assert_eq!(got(&b), Some(kb as f64), "the victim's container");
    assert_eq!(got(&a), Some(0.0), "the allocator's container");
    assert_eq!(
        got(&parent),
        Some(0.0),
        "kills are the victim's own cgroup's, not its parents'"
    );
    assert!(e.scalar("nodetel_ebpf_oom_kills_total").unwrap_or(0.0) >= kb as f64);

    // The event API tells the same story: each kill an `oomKill` at the victim's container,
    // each paired with an `oom` where the allocation hit the limit (the allocator's).
    let (code, body) = agent.get(&format!(
        "/api/v1.3/events{}?oom_events=true&oom_kill_events=true&subcontainers=true&max_events=-1",
        parent.rel
    ))?;
    assert_eq!(code, 200, "{body}");
    let events: serde_json::Value = serde_json::from_str(&body)?;
    let events = events.as_array().context("a list")?;
    let of = |kind: &str, cg: &TestCgroup| {
        events
            .iter()
            .filter(|e| e["event_type"] == kind && e["container_name"] == cg.rel.as_str())
            .count() as u64
    };
    eprintln!("events: {events:?}");
    assert_eq!(
        of("oomKill", &b),
        kb,
        "one oomKill per kill, at the victim's container"
    );
    assert_eq!(of("oomKill", &a), 0);
    assert_eq!(of("oom", &a), kb, "the OOM is where the allocation failed");
    assert!(
        events
            .iter()
            .filter(|e| e["event_type"] == "oomKill")
            .all(|e| e["event_data"]["oom"]["process_name"] == "dd")
    );
    Ok(())
}

#[test]
fn a_burst_of_kills_is_counted_to_the_last() -> anyhow::Result<()> {
    if !privileged("a_burst_of_kills_is_counted_to_the_last") {
        return Ok(());
    }
    let agent = Agent::start(Duration::from_millis(500), &[])?;
    let mut cg = TestCgroup::create("oomburst")?;
    let mem = cg.controller_dir("memory")?;
    limit_memory(&mem, 64 * MIB)?;
    // Twenty processes that each want 100 MiB in a 64 MiB cgroup, all at once: every one of them
    // is killed, within a second or two. The kernel's own OOM report is rate-limited (10 lines
    // per 5 s), which is why log-parsing agents miss most of a burst.
    let workers = 20;
    let script = format!("for i in $(seq {workers}); do ({}) & done; wait", hold(100));
    let _burst = cg.spawn(&script)?;
    let t0 = Instant::now();
    let mut last = (u64::MAX, Instant::now());
    loop {
        let k = kernel_oom_kills(&mem)?;
        if k != last.0 {
            last = (k, Instant::now());
        }
        // Settled: no new kill for a second, and at least the workers' worth.
        if k >= workers && last.1.elapsed() > Duration::from_secs(1) {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "only {k} kills in 60 s"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let kernel = kernel_oom_kills(&mem)?;
    let e = agent.scrape_until(Duration::from_secs(5), |e| {
        e.value("container_oom_events_total", &cg.rel) == Some(kernel as f64)
    })?;
    let got = e.value("container_oom_events_total", &cg.rel);
    eprintln!(
        "burst: kernel oom_kill {kernel} in {:.1} s; nodetel {got:?}",
        (last.1 - t0).as_secs_f64()
    );
    assert_eq!(got, Some(kernel as f64));
    Ok(())
}
