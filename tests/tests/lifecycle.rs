//! The agent as an operator sees it: series of removed cgroups vanish, a full map is counted,
//! /healthz and unknown paths answer sensibly, and SIGTERM leaves nothing attached.
use std::{process::Command, thread, time::Duration};

use nodetel_integration_tests::{Agent, TestCgroup, privileged, require_tool};

#[test]
fn removed_cgroup_series_vanish_within_two_intervals() -> anyhow::Result<()> {
    if !privileged("removed_cgroup_series_vanish_within_two_intervals") {
        return Ok(());
    }
    let interval = Duration::from_millis(500);
    let agent = Agent::start(interval, &[])?;
    let cg = TestCgroup::create("gone")?;
    let mut p = cg.spawn("sleep 0.2")?;
    p.wait()?;
    thread::sleep(interval * 2);
    assert!(
        agent.next_metrics()?.mentions_id(&cg.rel),
        "new cgroup not exported"
    );

    cg.remove()?;
    // Two intervals, plus the time a scrape takes.
    thread::sleep(interval * 2 + Duration::from_millis(100));
    let body = agent.metrics()?;
    assert!(
        !body.contains(&format!("id=\"{}\"", cg.rel)),
        "stale series:\n{body}"
    );
    Ok(())
}

/// The traffic map's size is a flag, and a full one is counted: 80 cgroups each sending a
/// datagram need 80 entries of a 64-entry map.
#[test]
fn a_full_traffic_map_is_counted_not_silent() -> anyhow::Result<()> {
    if !privileged("a_full_traffic_map_is_counted_not_silent") {
        return Ok(());
    }
    let nettool =
        std::env::var("NODETEL_NETTOOL").unwrap_or_else(|_| env!("CARGO_BIN_EXE_nettool").into());
    // Loopback is the simplest traffic; it is counted only when asked for.
    let agent = Agent::start(
        Duration::from_millis(300),
        &["--net-map-entries", "64", "--network-loopback"],
    )?;
    let parent = TestCgroup::create("netfull")?;
    let mut kids = Vec::new();
    for i in 0..80 {
        let c = parent.child(&format!("c{i}"))?;
        c.spawn(&format!("{nettool} udp-send 127.0.0.1:9 1 10 >/dev/null"))?
            .wait()?;
        kids.push(c);
    }
    let e = agent.next_metrics()?;
    let line = |m: &str| {
        e.0.lines()
            .find(|l| l.starts_with(m) && l.contains("map=\"net_traffic\""))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
    let (entries, capacity) = (
        line("nodetel_ebpf_map_entries"),
        line("nodetel_ebpf_map_capacity"),
    );
    let uncounted = e
        .scalar("nodetel_ebpf_traffic_uncounted_packets_total")
        .unwrap_or(0.0);
    eprintln!("traffic map {entries:?} of {capacity:?}, {uncounted} packets uncounted");
    assert_eq!(capacity, Some(64.0));
    assert!(entries.is_some_and(|n| n <= 64.0), "{entries:?}");
    assert!(
        uncounted > 0.0,
        "80 senders in a 64-entry map must be counted as uncounted"
    );
    Ok(())
}

#[test]
fn a_full_map_is_counted_not_silent() -> anyhow::Result<()> {
    if !privileged("a_full_map_is_counted_not_silent") {
        return Ok(());
    }
    let agent = Agent::start(Duration::from_millis(300), &["--cpu-map-entries", "64"])?;
    let parent = TestCgroup::create("full")?;
    let mut kids = Vec::new();
    for i in 0..100 {
        let c = parent.child(&format!("c{i}"))?;
        c.spawn("i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done")?
            .wait()?;
        kids.push(c);
    }
    thread::sleep(Duration::from_secs(1));
    let e = agent.next_metrics()?;
    let drops = e.scalar("nodetel_ebpf_map_full_drops_total").unwrap_or(0.0);
    let entries = e.scalar("nodetel_ebpf_map_entries").unwrap_or(0.0);
    eprintln!("map entries {entries}, full drops {drops}");
    assert!(
        drops > 0.0,
        "100 busy cgroups in a 64-entry map must be counted as drops"
    );
    assert!(entries <= 64.0, "map holds {entries} > its capacity");
    let lost = e
        .scalar("nodetel_ebpf_map_full_lost_cpu_seconds_total")
        .unwrap_or(0.0);
    assert!(
        lost > 0.0,
        "the CPU time lost to a full map must be reported"
    );
    Ok(())
}

#[test]
fn health_paths_and_clean_shutdown() -> anyhow::Result<()> {
    if !privileged("health_paths_and_clean_shutdown") || !require_tool("shutdown", "bpftool") {
        return Ok(());
    }
    let mut agent = Agent::start(Duration::from_millis(500), &[])?;
    assert_eq!(agent.get("/healthz")?.0, 200);
    for hostile in [
        "/nope",
        "/../../etc/passwd",
        "/metrics/../../x",
        "/%2e%2e/%2e%2e",
    ] {
        let (code, body) = agent.get(hostile)?;
        assert_eq!(code, 404, "{hostile}: {body}");
    }

    let ids = bpf_prog_ids(agent.pid());
    assert!(!ids.is_empty(), "the agent holds no BPF program fds");
    for id in &ids {
        assert!(bpftool_has_prog(*id), "prog {id} not visible to bpftool");
    }
    let status = agent.terminate(Duration::from_secs(10))?;
    assert!(status.success(), "nodetel exited with {status} on SIGTERM");
    thread::sleep(Duration::from_millis(200));
    for id in &ids {
        assert!(
            !bpftool_has_prog(*id),
            "prog {id} still loaded after shutdown"
        );
    }
    Ok(())
}

/// Program ids behind the agent's BPF fds (program and link fds both name their prog_id).
fn bpf_prog_ids(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for e in entries.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("prog_id:")
                && let Ok(id) = v.trim().parse()
            {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn bpftool_has_prog(id: u32) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// With no kind flag the agent exports cAdvisor 0.38.7's default kinds: no `process`, `sched`
/// or `pressure` series (about 12 per container, 29 more for a run-queue histogram), so a node
/// costs Prometheus no more than cAdvisor did; and no `blkio` (its programs cost too much to be
/// on by default) or `tcp_health` (1.56 % of a connection-heavy load, over the 1 % budget).
/// Everything else is there.
#[test]
fn default_metric_kinds_are_cadvisors() -> anyhow::Result<()> {
    if !privileged("default_metric_kinds_are_cadvisors") {
        return Ok(());
    }
    // One family of each kind that is off (`container_threads` needs the pids controller,
    // which the VM suite's hierarchy does not enable).
    let off = [
        "container_cpu_schedstat_",
        "container_processes{",
        "container_pressure_",
        // The kind's own health: present whenever its programs run, I/O or not.
        "nodetel_blkio_map_capacity",
        "nodetel_tcp_map_capacity",
    ];
    // The control: with every kind on (the harness's default) the families are there.
    let all = Agent::start(Duration::from_millis(300), &[])?;
    let e = all.next_metrics()?;
    for family in off {
        assert!(
            e.0.lines().any(|l| l.starts_with(family)),
            "{family}* missing with every kind on"
        );
    }
    drop(all);
    // An empty --enable-metrics is "not given": the harness then adds no kind flag of its own.
    let agent = Agent::start(Duration::from_millis(300), &["--enable-metrics="])?;
    let e = agent.next_metrics()?;
    for kept in [
        "container_cpu_usage_seconds_total{",
        "container_memory_usage_bytes{",
        "container_oom_events_total{",
        "container_last_seen{",
    ] {
        assert!(e.0.contains(kept), "{kept} missing at the defaults");
    }
    for gone in off.iter().chain(&[
        "container_threads",
        "nodetel_container_runqueue_latency_seconds",
    ]) {
        assert!(
            !e.0.lines().any(|l| l.starts_with(gone)),
            "{gone}* exported at the defaults"
        );
    }
    Ok(())
}

/// `--disable-metrics` leaves whole kinds out; an unknown kind is refused at start-up.
#[test]
fn disabled_metric_kinds_are_absent_and_unknown_ones_refused() -> anyhow::Result<()> {
    if !privileged("disabled_metric_kinds_are_absent_and_unknown_ones_refused") {
        return Ok(());
    }
    let agent = Agent::start(
        Duration::from_millis(300),
        &["--disable-metrics", "memory,diskIO,disk,tcp"],
    )?;
    let e = agent.next_metrics()?;
    assert!(e.0.contains("container_cpu_usage_seconds_total{"));
    for gone in [
        "container_memory_",
        "container_spec_memory_",
        "container_fs_",
        "container_blkio_",
    ] {
        assert!(
            !e.0.lines().any(|l| l.starts_with(gone)),
            "{gone}* exported although disabled"
        );
    }
    drop(agent);

    let out = std::process::Command::new(nodetel_integration_tests::agent_bin())
        .args(["--listen", "127.0.0.1:0", "--enable-metrics", "cpu,bogus"])
        .output()?;
    assert!(!out.status.success(), "an unknown metric kind was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown metric kind `bogus`"),
        "unclear error: {stderr}"
    );
    Ok(())
}

/// cAdvisor's `--docker_only` with `--raw_cgroup_prefix_whitelist`, as cAdvisor spells them: raw
/// cgroups leave the exposition and the API, but the root and the allow-listed prefix stay.
#[test]
fn docker_only_keeps_the_root_and_allowed_raw_cgroups() -> anyhow::Result<()> {
    if !privileged("docker_only_keeps_the_root_and_allowed_raw_cgroups") {
        return Ok(());
    }
    let kept = TestCgroup::create("rawkept")?;
    let dropped = TestCgroup::create("rawdropped")?;
    let allow = format!("--raw_cgroup_prefix_whitelist={}", kept.rel);
    let agent = Agent::start(Duration::from_millis(300), &["--docker_only", &allow])?;
    let e = agent.next_metrics()?;
    assert!(e.mentions_id("/"), "the root is always reported");
    assert!(e.mentions_id(&kept.rel), "{} is allow-listed", kept.rel);
    assert!(
        !e.mentions_id(&dropped.rel),
        "{} is a raw cgroup",
        dropped.rel
    );
    let (status, _) = agent.get(&format!("/api/v1.3/containers{}", dropped.rel))?;
    assert_eq!(status, 404, "nor in the API");
    Ok(())
}
