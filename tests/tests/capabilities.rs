//! Least privilege, tested: the agent under exactly the DaemonSet's capabilities (read from the
//! rendered DaemonSet, `cargo xtask deploy-check`), then with each of them taken away in turn,
//! against a workload that runs as another user (65534) in a network namespace of its own, as a
//! pod's does. With the full set everything is seen; without each capability something is lost,
//! and the test prints what: the README's capability table is this test's output.
//!
//! The capability sets are applied with `setpriv --bounding-set` on the host binary (the image
//! test runs the image itself under the same set).
use std::{
    fmt::Write as _,
    fs, thread,
    time::{Duration, Instant},
};

use nodetel_integration_tests::{
    Agent, Exposition, TestCgroup, daemonset_caps, http_get,
    netns::{Netns, ip, ip_bin},
    privileged, require_tool, with_only_caps,
};

/// What one agent saw of the workload.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    started: bool,
    programs_missing: Vec<String>,
    /// The `interface` of the workload's transmit series.
    interfaces: Vec<String>,
    processes: Option<f64>,
    namespace_errors: f64,
    /// `/api/v2.0/ps/<workload>`: (user, command, fd_count) of each process (not compared
    /// between runs: the workload's `sleep`s come and go).
    ps: Vec<(String, String, u64)>,
}

impl Seen {
    /// What `self` lacks compared with `full`, in words.
    fn lost(&self, full: &Seen) -> Vec<String> {
        let mut lost = Vec::new();
        if !self.started {
            lost.push("does not start".to_string());
            return lost;
        }
        if !self.programs_missing.is_empty() {
            lost.push(format!(
                "programs not attached: {}",
                self.programs_missing.join(", ")
            ));
        }
        if self.interfaces != full.interfaces {
            lost.push(format!(
                "traffic on {:?} instead of {:?}",
                self.interfaces, full.interfaces
            ));
        }
        if self.processes != full.processes {
            lost.push(format!(
                "process count {:?} instead of {:?}",
                self.processes, full.processes
            ));
        }
        if self.namespace_errors > 0.0 {
            lost.push(format!(
                "{} network namespace reads refused",
                self.namespace_errors
            ));
        }
        lost
    }
}

fn observe(caps: &[String], cg: &TestCgroup) -> anyhow::Result<Seen> {
    let wrapper = with_only_caps(caps);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let mut agent = Agent::spawn_under(&wrapper, Duration::from_millis(500), &[])?;
    if agent.wait_healthy(Duration::from_secs(20)).is_err() {
        return Ok(Seen::default());
    }
    // The workload sends every second; wait for its traffic (or give up: what is seen by then
    // is the answer).
    let deadline = Instant::now() + Duration::from_secs(15);
    let e = loop {
        let (_, body) = http_get(&agent.addr, "/metrics")?;
        let e = Exposition(body);
        let has_traffic = !e
            .lines_of("container_network_transmit_packets_total", &cg.rel)
            .is_empty();
        if has_traffic && e.value("container_processes", &cg.rel).is_some() {
            // One more pass, so a device lookup made this pass is in.
            thread::sleep(Duration::from_secs(1));
            break Exposition(http_get(&agent.addr, "/metrics")?.1);
        }
        if Instant::now() > deadline {
            break e;
        }
        thread::sleep(Duration::from_millis(300));
    };
    let label = |line: &str, name: &str| {
        line.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_string)
    };
    let mut interfaces: Vec<String> = e
        .lines_of("container_network_transmit_packets_total", &cg.rel)
        .iter()
        .filter_map(|l| label(l, "interface"))
        .collect();
    interfaces.sort();
    let (_, ps) = http_get(&agent.addr, &format!("/api/v2.0/ps{}", cg.rel))?;
    let ps: Vec<(String, String, u64)> = serde_json::from_str::<serde_json::Value>(&ps)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                p["user"].as_str().unwrap_or("").to_string(),
                p["cmd"].as_str().unwrap_or("").to_string(),
                p["fd_count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    Ok(Seen {
        ps,
        started: true,
        programs_missing: e
            .0
            .lines()
            .filter(|l| l.starts_with("nodetel_ebpf_program_attached{") && l.ends_with(" 0"))
            .filter_map(|l| label(l, "program"))
            .collect(),
        interfaces,
        processes: e.value("container_processes", &cg.rel),
        namespace_errors: e
            .0
            .lines()
            .find_map(|l| {
                l.strip_prefix("nodetel_network_namespace_errors_total ")?
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0),
    })
}

#[test]
fn each_daemonset_capability_is_needed_and_the_set_is_enough() -> anyhow::Result<()> {
    let test = "each_daemonset_capability_is_needed_and_the_set_is_enough";
    if !privileged(test) || !require_tool(test, "setpriv") {
        return Ok(());
    }
    let caps = daemonset_caps()?;
    eprintln!("DaemonSet capabilities: {caps:?}");

    // A pod-like workload: its own network namespace and veth, running as user 65534.
    let ns = Netns::create("caps-pod")?;
    let tag = std::process::id() % 100_000;
    let (host_end, pod_end) = (format!("ntc{tag}h"), format!("ntc{tag}p"));
    ip(&[
        "link", "add", &host_end, "type", "veth", "peer", "name", &pod_end,
    ])?;
    let _veth = scopeguard(host_end.clone());
    ip(&["link", "set", &pod_end, "netns", &ns.0])?;
    ip(&["addr", "add", "10.128.0.1/30", "dev", &host_end])?;
    ip(&["-n", &ns.0, "addr", "add", "10.128.0.2/30", "dev", &pod_end])?;
    ip(&["link", "set", &host_end, "up"])?;
    ip(&["-n", &ns.0, "link", "set", &pod_end, "up"])?;
    let cg = TestCgroup::create("caps")?;
    let script = std::env::temp_dir().join(format!("nodetel-caps-{tag}.sh"));
    fs::write(
        &script,
        format!(
            "while :; do {} udp-send 10.128.0.1:9 5 100 >/dev/null; sleep 1; done\n",
            env!("CARGO_BIN_EXE_nettool")
        ),
    )?;
    let _workload = cg.spawn(&format!(
        "exec {} netns exec {} setpriv --reuid 65534 --regid 65534 --clear-groups -- sh {}",
        ip_bin(),
        ns.0,
        script.display()
    ))?;

    let full = observe(&caps, &cg)?;
    eprintln!("with {caps:?}: {full:?}");
    anyhow::ensure!(
        full.started,
        "the agent does not start with the DaemonSet's capabilities"
    );
    anyhow::ensure!(
        full.programs_missing.is_empty(),
        "programs not attached with the DaemonSet's capabilities: {:?}",
        full.programs_missing
    );
    anyhow::ensure!(
        full.interfaces == vec![pod_end.clone()],
        "the workload's traffic is on {:?}, not its device {pod_end}",
        full.interfaces
    );
    anyhow::ensure!(
        full.processes.is_some_and(|p| p >= 2.0),
        "process count {:?}",
        full.processes
    );
    anyhow::ensure!(
        full.namespace_errors == 0.0,
        "{} namespace reads refused with the full set",
        full.namespace_errors
    );
    // cAdvisor's process list of the workload (another user's processes) with their open files.
    anyhow::ensure!(
        full.ps
            .iter()
            .any(|(user, cmd, fds)| user == "65534" && cmd == "sh" && *fds >= 3),
        "the workload's shell is not in /api/v2.0/ps with its open files: {:?}",
        full.ps
    );

    let mut table = String::from("\nwhat the agent cannot see without each capability:\n");
    let mut unneeded = Vec::new();
    for cap in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != cap).cloned().collect();
        let lost = observe(&fewer, &cg)?.lost(&full);
        let _ = writeln!(
            table,
            "  without {:<16} {}",
            cap.to_uppercase(),
            if lost.is_empty() {
                "nothing lost".to_string()
            } else {
                lost.join("; ")
            }
        );
        if lost.is_empty() {
            unneeded.push(cap.to_uppercase());
        }
    }
    eprintln!("{table}");
    anyhow::ensure!(
        unneeded.is_empty(),
        "the DaemonSet grants capabilities nothing needs: {unneeded:?}{table}"
    );
    Ok(())
}

/// Deletes the host end of the veth (and with it the pair) when dropped.
fn scopeguard(dev: String) -> impl Drop {
    struct Guard(String);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = ip(&["link", "del", &self.0]);
        }
    }
    Guard(dev)
}
