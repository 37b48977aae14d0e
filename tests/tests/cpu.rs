//! CPU accounting against the kernel's own: the agent's container_cpu_usage_seconds_total must
//! match cgroup2 `cpu.stat usage_usec` within 2%, while a task is running (its in-flight time) and
//! after it exited.
use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use nodetel_integration_tests::{Agent, KernelSampler, TestCgroup, privileged, rel_err};

const USAGE: &str = "container_cpu_usage_seconds_total";

#[test]
fn cpu_usage_matches_the_kernel_mid_run_and_after_exit() -> anyhow::Result<()> {
    if !privileged("cpu_usage_matches_the_kernel_mid_run_and_after_exit") {
        return Ok(());
    }
    let emulated = std::env::var("NODETEL_UNDER_EMULATION").is_ok_and(|v| v == "1");
    let agent = Agent::start(Duration::from_millis(500), &[])?;
    let cg = TestCgroup::create("cpu")?;
    let sampler = KernelSampler::start(cg.dir.join("cpu.stat"));
    let mut burner = cg.burn()?;

    // Mid-run: compare each fresh snapshot with the kernel's figure at the instant it was drained.
    // cpu.stat brings a running task's time up to date only at scheduler ticks, and under QEMU's
    // emulation those (and the sampler's own reads) lag by up to ~20 ms: comparisons start once
    // that is well inside the 2%.
    thread::sleep(Duration::from_millis(1500));
    let mut checked = 0;
    for _ in 0..6 {
        let e = agent.next_metrics()?;
        let got = e
            .value(USAGE, &cg.rel)
            .expect("usage series for the test cgroup");
        let Some(want) = sampler.at(e.snapshot_time()) else {
            continue;
        };
        eprintln!("mid-run: agent {got:.6} s, kernel {want:.6} s");
        assert!(want > 0.5, "the burner did not run: kernel says {want}");
        // Under QEMU's emulator the kernel's own figure is the imprecise one: cpu.stat is
        // brought up to date at ticks that run late, and the sampler's reads with them. Measured
        // in the VM suite, 2 runs in 5: 29, 42 and 53 ms apart at 0.9-2.5 s, either way. There
        // the agent may be 80 ms off as well as 2 %; on real hardware only 2 %.
        let slack = if emulated { 0.08 } else { 0.0 };
        assert!(
            rel_err(got, want) < 0.02 || (got - want).abs() < slack,
            "mid-run agent {got} vs kernel {want}: in-flight time missing or wrong"
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} snapshots could be compared");

    burner.kill()?;
    burner.wait()?;
    thread::sleep(agent.interval * 3);
    let want = cg.kernel_usage_seconds()?;
    let got = agent
        .next_metrics()?
        .value(USAGE, &cg.rel)
        .expect("usage series after exit");
    eprintln!("after exit: agent {got:.6} s, kernel {want:.6} s");
    assert!(
        rel_err(got, want) < 0.02,
        "after exit: agent {got} vs kernel {want}"
    );

    // user + system from cgroupfs add up to the same usage.
    let e = agent.next_metrics()?;
    let user = e
        .value("container_cpu_user_seconds_total", &cg.rel)
        .expect("user");
    let system = e
        .value("container_cpu_system_seconds_total", &cg.rel)
        .expect("system");
    assert!(
        rel_err(user + system, want) < 0.02,
        "user {user} + system {system} vs {want}"
    );
    Ok(())
}

/// Two containers of one pod burning at once, contending for the CPUs: each container and the pod
/// agree with the kernel within 2%, the pod is the exact sum of its containers, and its counter
/// survives a container's removal.
///
/// This is the case that exposed kernels switching tasks in without firing `sched_switch` (this
/// host's 6.18 guest kernel, a few times per second; Debian's 6.1 in the VM suite: never). The
/// count of such switches during the run is printed: where it is not zero, the test checks that
/// the agent's fallback (charging the scheduler's own slice) keeps the siblings exact.
#[test]
fn siblings_match_the_kernel_and_sum_to_their_pod() -> anyhow::Result<()> {
    if !privileged("siblings_match_the_kernel_and_sum_to_their_pod") {
        return Ok(());
    }
    pod_scenario()
}

/// CFS throttling and the quota spec against the kernel's own counters, on v2 `cpu.max` or the
/// v1 cpu hierarchy of a hybrid host.
#[test]
fn throttling_under_a_cpu_quota_matches_the_kernel() -> anyhow::Result<()> {
    if !privileged("throttling_under_a_cpu_quota_matches_the_kernel") {
        return Ok(());
    }
    // Every pass reads cgroupfs: a quiet cgroup's figures may otherwise be reused for up to
    // --quiet-cgroup-refresh (documented), and the last period can tick after the burner died,
    // after the last read (seen in the VM: the agent 29 periods, the kernel 30 before and after).
    let agent = Agent::start(Duration::from_millis(500), &["--quiet-cgroup-refresh", "0"])?;
    let mut cg = TestCgroup::create("quota")?;
    // Half of one CPU: a busy loop spends its quota halfway through each period and is
    // throttled in nearly every one.
    cg.limit_cpu(50_000, 100_000)?;
    let mut burner = cg.burn()?;
    let spawned = Instant::now();
    thread::sleep(Duration::from_secs(2));

    let e = agent.next_metrics()?;
    assert_eq!(e.value("container_spec_cpu_quota", &cg.rel), Some(50_000.0));
    assert_eq!(
        e.value("container_spec_cpu_period", &cg.rel),
        Some(100_000.0)
    );
    burner.kill()?;
    burner.wait()?;
    // The whole time the loop could run: the sleep, the scrape and the kill.
    let ran = spawned.elapsed();
    thread::sleep(agent.interval * 2);

    // The counters may still move for a period after the task died: the agent's figure must lie
    // between the kernel's just before and just after the snapshot it comes from.
    let before = cg.kernel_throttling()?;
    let e = agent.next_metrics()?;
    let after = cg.kernel_throttling()?;
    let got = |f: &str| e.value(f, &cg.rel).unwrap_or(f64::NAN);
    let periods = got("container_cpu_cfs_periods_total");
    let throttled = got("container_cpu_cfs_throttled_periods_total");
    let throttled_s = got("container_cpu_cfs_throttled_seconds_total");
    eprintln!(
        "agent: {periods} periods, {throttled} throttled, {throttled_s:.4} s; kernel {before:?} .. {after:?}"
    );
    assert!(
        (before.0 as f64..=after.0 as f64).contains(&periods),
        "periods {periods} outside the kernel's {} .. {}",
        before.0,
        after.0
    );
    assert!(
        (before.1 as f64..=after.1 as f64).contains(&throttled),
        "throttled periods {throttled} outside the kernel's {} .. {}",
        before.1,
        after.1
    );
    assert!(
        (before.2 - 1e-6..=after.2 + 1e-6).contains(&throttled_s),
        "throttled seconds {throttled_s} outside the kernel's {} .. {}",
        before.2,
        after.2
    );
    assert!(
        throttled >= 10.0,
        "a busy loop under a 0.5-CPU quota was throttled in only {throttled} periods"
    );

    // The quota held, and eBPF's usage agrees with the kernel's under throttling too.
    let usage = got(USAGE);
    let kernel = cg.kernel_usage_seconds()?;
    eprintln!(
        "usage: agent {usage:.6}, kernel {kernel:.6}; unmatched switches {:?} ({:?} s)",
        e.scalar("nodetel_ebpf_unmatched_switches_total"),
        e.scalar("nodetel_ebpf_unmatched_switch_cpu_seconds_total")
    );
    assert!(
        rel_err(usage, kernel) < 0.02,
        "usage {usage} vs kernel {kernel}"
    );
    // Half of the time it ran, plus at most one period's quota: the run need not start or end
    // on a period boundary (measured here: 1.0 to 1.36 s in 2.0 to 2.7 s).
    assert!(
        usage <= 0.5 * ran.as_secs_f64() + 0.05 + 0.01,
        "{usage} s of CPU in {ran:?} under a 0.5-CPU quota"
    );
    Ok(())
}

fn pod_scenario() -> anyhow::Result<()> {
    let agent = Agent::start(Duration::from_millis(300), &[])?;
    let pod = TestCgroup::create("pod")?;
    let c1 = pod.child("c1")?;
    let c2 = pod.child("c2")?;
    let unmatched = |e: &nodetel_integration_tests::Exposition| {
        e.scalar("nodetel_ebpf_unmatched_switches_total")
            .context("no nodetel_ebpf_unmatched_switches_total")
    };
    let unmatched_before = unmatched(&agent.next_metrics()?)?;
    let mut b1 = c1.burn()?;
    let mut b2 = c2.burn()?;
    thread::sleep(Duration::from_millis(1500));
    b1.kill()?;
    b2.kill()?;
    b1.wait()?;
    b2.wait()?;
    thread::sleep(agent.interval * 3);

    let e = agent.next_metrics()?;
    let parent = e.value(USAGE, &pod.rel).expect("pod usage");
    let kids = e.value(USAGE, &c1.rel).expect("c1") + e.value(USAGE, &c2.rel).expect("c2");
    let kernel_parent = pod.kernel_usage_seconds()?;
    let hidden = unmatched(&e)? - unmatched_before;
    eprintln!(
        "pod: agent {parent:.6}, children {kids:.6}, kernel {kernel_parent:.6}; \
         {hidden} switches the kernel did not trace during the run"
    );
    for c in [&c1, &c2] {
        let got = e.value(USAGE, &c.rel).unwrap_or(f64::NAN);
        let want = c.kernel_usage_seconds()?;
        eprintln!("  {}: agent {got:.6}, kernel {want:.6}", c.rel);
        assert!(
            rel_err(got, want) < 0.02,
            "{}: agent {got} vs kernel {want}",
            c.rel
        );
    }
    assert!(
        rel_err(parent, kernel_parent) < 0.02,
        "pod: agent {parent} vs kernel {kernel_parent}"
    );
    assert!(
        rel_err(parent, kids) < 1e-9,
        "the pod is the sum of its containers"
    );

    c2.remove()?;
    thread::sleep(agent.interval * 3);
    let e = agent.next_metrics()?;
    assert!(!e.mentions_id(&c2.rel), "removed cgroup still exported");
    let after = e.value(USAGE, &pod.rel).expect("pod usage after removal");
    assert!(
        after >= parent,
        "the pod's counter went back from {parent} to {after} when a child was removed"
    );
    assert!(rel_err(after, pod.kernel_usage_seconds()?) < 0.02);
    Ok(())
}
