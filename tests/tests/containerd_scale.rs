//! containerd at scale and wedged, for real: a private containerd holding containers whose specs
//! add up to more than the 4 MiB a unary gRPC answer may carry, then stopped with SIGSTOP (it
//! still accepts connections, and answers nothing) and resumed.
//!
//! Host only: the VM suite has no container runtime in its initramfs.
use std::time::{Duration, Instant};

use nodetel_integration_tests::{
    Agent, privileged, require_tool,
    runtimes::{Containerd, random_hex64, remove_cgroup_dirs, resolver_value, wait_named},
    signal,
};

const INTERVAL: Duration = Duration::from_millis(500);
/// Containers made, each with a 100 KB environment variable in its OCI spec: 5 MB in all.
const FAT_CONTAINERS: usize = 50;

#[test]
fn containerd_over_4_mib_and_wedged_is_handled() -> anyhow::Result<()> {
    if !privileged("containerd_over_4_mib_and_wedged_is_handled")
        || !require_tool("containerd", "containerd")
        || !require_tool("containerd", "ctr")
        || !require_tool("containerd", "dockerd")
    {
        return Ok(());
    }
    let containerd = Containerd::start("containerd-scale")?;
    let image = containerd.import_image("k8s.io")?;
    let fat = format!("FILLER={}", "x".repeat(100_000));
    for i in 0..FAT_CONTAINERS {
        containerd.ctr(
            "k8s.io",
            &[
                "containers",
                "create",
                "--env",
                &fat,
                &image,
                &format!("fat-{i}"),
            ],
        )?;
    }
    let agent =
        Agent::start_with_runtime(INTERVAL, "--containerd-socket", &containerd.socket, &[])?;
    let mut cleanup = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        // The whole listing arrives: every fat container is known, nothing failed.
        let e = agent.scrape_until(Duration::from_secs(10), |e| {
            resolver_value(e, "nodetel_identity_containers", "containerd")
                >= Some(FAT_CONTAINERS as f64)
        })?;
        let known = resolver_value(&e, "nodetel_identity_containers", "containerd");
        let errors = resolver_value(&e, "nodetel_identity_errors_total", "containerd");
        eprintln!("containerd: {known:?} containers known, {errors:?} errors");
        assert!(known >= Some(FAT_CONTAINERS as f64), "listing incomplete");
        assert_eq!(errors, Some(0.0), "listing failed along the way");
        let named = run_named(&containerd, &agent, &image, &mut cleanup)?;
        eprintln!("a task among them is named {named:?} after ctr run");

        // Wedged: the socket still accepts, containerd answers nothing.
        signal(containerd.pid(), "STOP")?;
        let t = Instant::now();
        let e = agent.scrape_until(Duration::from_secs(15), |e| {
            resolver_value(e, "nodetel_identity_resolver_up", "containerd") == Some(0.0)
        })?;
        let down_after = t.elapsed();
        signal(containerd.pid(), "CONT")?;
        eprintln!("SIGSTOP: reported down after {down_after:?}");
        assert_eq!(
            resolver_value(&e, "nodetel_identity_resolver_up", "containerd"),
            Some(0.0),
            "a wedged containerd still reported up"
        );
        assert!(down_after <= Duration::from_secs(10), "{down_after:?}");
        assert_eq!(agent.get("/healthz")?.0, 200);

        // Resumed: up again, and new containers are named again.
        let t = Instant::now();
        agent.scrape_until(Duration::from_secs(40), |e| {
            resolver_value(e, "nodetel_identity_resolver_up", "containerd") == Some(1.0)
        })?;
        eprintln!("SIGCONT: up again after {:?}", t.elapsed());
        let named = run_named(&containerd, &agent, &image, &mut cleanup)?;
        eprintln!("after SIGCONT a new task is named {named:?} after ctr run");
        Ok(())
    })();
    drop(agent);
    drop(containerd);
    remove_cgroup_dirs(&cleanup);
    result
}

/// Runs a task under a kubelet-style cgroup and waits until the agent names it.
fn run_named(
    containerd: &Containerd,
    agent: &Agent,
    image: &str,
    cleanup: &mut Vec<String>,
) -> anyhow::Result<Duration> {
    let id = random_hex64()?;
    let uid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")?;
    let pod = format!("/kubepods/besteffort/pod{}", uid.trim());
    let path = format!("{pod}/{id}");
    for p in ["/kubepods", "/kubepods/besteffort", pod.as_str()] {
        if !cleanup.iter().any(|c| c == p) {
            cleanup.push(p.to_string());
        }
    }
    cleanup.push(path.clone());
    containerd.ctr(
        "k8s.io",
        &["run", "-d", "--cgroup", &path, image, &id, "sleep", "1000"],
    )?;
    let (took, e) = wait_named(agent, &path, &id, Duration::from_secs(10))?;
    assert!(
        e.0.contains(&format!("name=\"{id}\"")),
        "task {id} not named within 10 s"
    );
    Ok(took)
}
