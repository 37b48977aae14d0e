//! Every query of the Grafana dashboard (deploy/grafana/nodetel-dashboard.json) against a real
//! Prometheus (Debian's `prometheus`) scraping a running nodetel, with Docker containers that
//! carry the kubelet's labels and do what each panel shows: burn CPU under a quota and contend
//! for one CPU (CPU, throttling, run-queue), hold memory under a limit, write to disk with
//! O_DIRECT, talk over a bridge, and get OOM-killed. Each panel query, with the dashboard's
//! variables set to those containers, must return data for them; each variable query must offer
//! their values.
//!
//! Host only: the VM suite has no container runtime or Prometheus in its initramfs.
use std::{fs, path::Path, thread, time::Duration};

use anyhow::Context as _;
use nodetel_integration_tests::{
    Agent, privileged,
    prometheus::{Prometheus, encode},
    require_tool,
    runtimes::{Dockerd, IMAGE},
};

const NODE: &str = "dash-node";
const NAMESPACE: &str = "dash-ns";
const POD: &str = "dash-pod";

/// The dashboard's variables set to the test's node, namespace, pod and containers.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "15s")
        .replace("$node", NODE)
        .replace("$namespace", NAMESPACE)
        .replace("$pod", POD)
        .replace("$container", "dash-.*")
}

#[test]
fn every_dashboard_panel_has_data_for_real_containers() -> anyhow::Result<()> {
    let test = "every_dashboard_panel_has_data_for_real_containers";
    if !privileged(test) || !require_tool(test, "dockerd") || !require_tool(test, "prometheus") {
        return Ok(());
    }
    let dashboard: serde_json::Value = serde_json::from_str(&fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/nodetel-dashboard.json"),
    )?)?;
    let work = Path::new("/var/lib/nodetel-test/dashboard-work");
    let _ = fs::remove_dir_all(work);
    fs::create_dir_all(work.join("data"))?;

    let dockerd = Dockerd::start("dashboard")?;
    dockerd.ensure_image()?;
    let agent = Agent::start_with_dockerd(Duration::from_secs(1), &dockerd)?;
    let run = |name: &str, flags: &[&str], script: &str| -> anyhow::Result<String> {
        // hostNetwork pods, unless the container chooses its network.
        let network = if flags.contains(&"--network") {
            vec![]
        } else {
            vec!["--network", "host"]
        };
        let mut args = vec!["run", "-d", "--name", name];
        args.extend(network);
        args.extend([
            "--label",
            "io.kubernetes.pod.name=dash-pod",
            "--label",
            "io.kubernetes.pod.namespace=dash-ns",
        ]);
        let container_label = format!("io.kubernetes.container.name={name}");
        args.extend(["--label", &container_label]);
        args.extend(flags);
        args.extend([IMAGE, "sh", "-c", script]);
        dockerd.docker(&args)
    };
    // Two busy loops on one CPU under a quota: CPU, throttling, and run-queue waits.
    run(
        "dash-cpu",
        &["--cpus", "0.5", "--cpuset-cpus", "0", "--memory", "64m"],
        "while :; do :; done & while :; do :; done",
    )?;
    // Direct writes to a host directory: block I/O charged to the container on v1 and v2.
    let disk = work.join("disk");
    fs::create_dir_all(&disk)?;
    let volume = format!("{}:/data", disk.display());
    // On cgroup v1 the throttle layer counts a device's I/O only once some cgroup has a rule on
    // it (io.rs sets one, and the test passed only when io.rs had run earlier in the same boot):
    // a limit far above the test's rate turns the accounting on without slowing it.
    let (_, device) = nodetel_integration_tests::block_device_of(&disk)?;
    let throttle = format!("{device}:100gb");
    run(
        "dash-disk",
        &["-v", &volume, "--device-write-bps", &throttle],
        "while :; do dd if=/dev/zero of=/data/f bs=1M count=8 oflag=direct 2>/dev/null; sleep 1; done",
    )?;
    // Traffic over a bridge between two containers in namespaces of their own (loopback is
    // left out of container_network_*, as cAdvisor does).
    // The test's dockerd has no default bridge (--bridge=none): a network of its own, removed
    // at the end (its bridge would outlive the daemon).
    if dockerd
        .docker(&["network", "inspect", "dash-bridge"])
        .is_err()
    {
        dockerd.docker(&["network", "create", "dash-bridge"])?;
    }
    run(
        "dash-web",
        &["--network", "dash-bridge"],
        "mkdir -p /www && head -c 200000 /dev/zero > /www/f && exec busybox httpd -f -p 8000 -h /www",
    )?;
    let web_ip = dockerd
        .docker(&[
            "inspect",
            "-f",
            "{{(index .NetworkSettings.Networks \"dash-bridge\").IPAddress}}",
            "dash-web",
        ])?
        .trim()
        .to_string();
    let fetch =
        format!("while :; do busybox wget -q -O /dev/null http://{web_ip}:8000/f; sleep 0.2; done");
    run("dash-net", &["--network", "dash-bridge"], &fetch)?;
    // A shell whose children are OOM-killed one after another; the shell (and the series) stay.
    run(
        "dash-oom",
        &["--memory", "16m", "--memory-swap", "16m"],
        "while :; do dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; sleep 2; done",
    )?;

    let prom = Prometheus::start(
        work,
        &format!(
            "  - job_name: nodetel\n    honor_labels: true\n    static_configs:\n      - targets: ['{}']\n        labels:\n          node: {NODE}\n",
            agent.addr
        ),
    )?;
    // Enough scrapes for every rate window (15 s) and a few OOM kills.
    thread::sleep(Duration::from_secs(25));

    for var in dashboard["templating"]["list"]
        .as_array()
        .context("no variables")?
    {
        let Some(q) = var["query"]["query"].as_str() else {
            continue;
        };
        let (selector, label) = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .and_then(|r| r.rsplit_once(','))
            .with_context(|| format!("variable query {q}"))?;
        let selector = substitute(selector);
        let label = label.trim();
        let data = prom.api(&format!(
            "/api/v1/label/{label}/values?match[]={}",
            encode(&selector)
        ))?;
        let values: Vec<&str> = data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        let want = match label {
            "node" => NODE,
            "namespace" => NAMESPACE,
            "pod" => POD,
            _ => "dash-cpu",
        };
        eprintln!("variable {label}: {values:?}");
        anyhow::ensure!(
            values.contains(&want),
            "variable {label} ({q}) offers {values:?}, not {want}"
        );
    }

    // Panel queries that must show the named container doing what it does, not just a zero
    // series: (panel, query, container, what).
    let active = [
        ("CPU usage", "A", "dash-cpu", "CPU"),
        (
            "CPU throttling (share of CFS periods)",
            "A",
            "dash-cpu",
            "throttling",
        ),
        ("Run-queue latency p99", "A", "dash-cpu", "run-queue waits"),
        (
            "Memory working set vs limit",
            "B",
            "dash-cpu",
            "its 64 MiB limit",
        ),
        ("OOM kills", "A", "dash-oom", "OOM kills"),
        (
            "Disk I/O (read, written)",
            "B",
            "dash-disk",
            "direct writes",
        ),
        (
            "Block I/O latency p50, p99",
            "B",
            "dash-disk",
            "its direct writes' latency",
        ),
        (
            "Network (received, sent)",
            "A",
            "dash-net",
            "traffic over a bridge",
        ),
        (
            "TCP connects by result, retransmits",
            "A",
            "dash-net",
            "its connects to dash-web",
        ),
    ];
    let mut idle = Vec::new();
    // Each row must find its panel and query: a renamed panel fails rather than skip its check.
    let mut matched = vec![0usize; active.len()];
    let mut checked = 0;
    let mut empty = Vec::new();
    for panel in dashboard["panels"].as_array().context("no panels")? {
        let title = panel["title"].as_str().unwrap_or("?");
        let Some(targets) = panel["targets"].as_array() else {
            continue;
        };
        // A panel shows data when any of its queries does; each query must at least evaluate.
        let mut series = 0;
        for t in targets {
            let expr = substitute(t["expr"].as_str().context("target without expr")?);
            let result = prom
                .query(&expr)
                .with_context(|| format!("panel {title}: {expr}"))?;
            series += result.len();
            for (i, (panel, query, container, what)) in active.iter().enumerate() {
                if *panel != title || t["refId"] != *query {
                    continue;
                }
                matched[i] += 1;
                let moving = result.iter().any(|r| {
                    r["metric"]["container"] == *container
                        && r["value"][1]
                            .as_str()
                            .and_then(|v| v.parse::<f64>().ok())
                            .is_some_and(|v| v.is_finite() && v != 0.0)
                });
                if !moving {
                    idle.push(format!("{title}: no {what} of {container}"));
                }
            }
            // Where the series name a namespace, it is the test's.
            let namespaces: Vec<&str> = result
                .iter()
                .filter_map(|r| r["metric"]["namespace"].as_str())
                .collect();
            if !namespaces.is_empty() && !namespaces.contains(&NAMESPACE) {
                empty.push(format!("{title}: only namespaces {namespaces:?}"));
            }
        }
        eprintln!("panel {title:<45} {series} series");
        if series == 0 {
            empty.push(title.to_string());
        }
        checked += 1;
    }
    drop(prom);
    for name in ["dash-net", "dash-web"] {
        dockerd.docker(&["rm", "-f", name])?;
    }
    dockerd.docker(&["network", "rm", "dash-bridge"])?;
    anyhow::ensure!(checked >= 12, "only {checked} panels with queries");
    let unmatched: Vec<_> = active
        .iter()
        .zip(matched)
        .filter(|(_, n)| *n == 0)
        .map(|(row, _)| row)
        .collect();
    anyhow::ensure!(
        unmatched.is_empty(),
        "checks whose panel or query is not in the dashboard (renamed?): {unmatched:?}"
    );
    anyhow::ensure!(
        empty.is_empty(),
        "panels without data for the test containers: {empty:?}"
    );
    anyhow::ensure!(
        idle.is_empty(),
        "panels that miss what the containers did: {idle:?}"
    );
    Ok(())
}
