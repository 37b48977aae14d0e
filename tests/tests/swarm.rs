//! Docker Swarm and Compose against a real single-node Swarm: a private dockerd (Debian's
//! docker.io) made a Swarm manager by the test and left as found (the Swarm left, its
//! `docker_gwbridge` removed), a stack of two services deployed with `docker stack deploy`, and a
//! Compose project started with `docker-compose`. The agent, in its default label mode, must
//! export the Swarm and Compose labels on every task's series, count each service's tasks on
//! this node, name a task added by scaling within 2 s, and drop a removed stack's series within
//! two intervals of its containers going.
//!
//! Host only: the VM suite has no container runtime.
use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use nodetel_integration_tests::{
    Agent, Exposition, agent_bin,
    image::{build_image, repo},
    privileged,
    prometheus::Prometheus,
    require_tool,
    runtimes::{Dockerd, IMAGE, run},
    thread_states,
};
use serde_json::Value;

const INTERVAL: Duration = Duration::from_millis(500);
const STACK: &str = "ntshop";
const PROJECT: &str = "ntblog";

/// The Swarm the test made: on drop the stack removed, the Swarm left, the daemon stopped and
/// then the bridge Swarm adds to the host removed (the daemon would make it again).
struct Swarm {
    dockerd: Option<Dockerd>,
    /// `docker_gwbridge` was not there before: the test removes it.
    remove_gwbridge: bool,
    /// The host's network devices before the Swarm: the overlay networks' VXLAN devices made
    /// since are removed (a stale one holds its VNI, and the next overlay network fails).
    devices_before: Vec<String>,
    /// Where the daemon mounts its network namespaces (overlay sandboxes outlive it).
    exec_netns: PathBuf,
}

fn host_devices() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

impl Swarm {
    fn dockerd(&self) -> &Dockerd {
        self.dockerd
            .as_ref()
            .expect("the daemon lives as long as the Swarm")
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        // The bridge's ports, listed while the daemon's containers still hold them: a veth the
        // daemon does not take down with its container would stay behind.
        let ports: Vec<String> = std::fs::read_dir("/sys/class/net/docker_gwbridge/brif")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if let Some(d) = self.dockerd.take() {
            let _ = d.docker(&["stack", "rm", STACK]);
            let _ = d.docker(&["stack", "rm", "nodetel"]);
            let _ = d.docker(&["swarm", "leave", "--force"]);
            drop(d);
        }
        if self.remove_gwbridge {
            for dev in ports.iter().map(String::as_str).chain(["docker_gwbridge"]) {
                if Path::new("/sys/class/net").join(dev).exists() {
                    let _ = Command::new("ip").args(["link", "del", dev]).status();
                }
            }
        }
        for dev in host_devices() {
            if dev.starts_with("vx-") && !self.devices_before.contains(&dev) {
                let _ = Command::new("ip").args(["link", "del", &dev]).status();
            }
        }
        for ns in std::fs::read_dir(&self.exec_netns)
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(ns.path())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// The series of `family` whose labels include every `key="value"` given.
fn series<'a>(e: &'a Exposition, family: &str, labels: &[(&str, &str)]) -> Vec<&'a str> {
    let needles: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    e.0.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .filter(|l| needles.iter().all(|n| l.contains(n.as_str())))
        .collect()
}

/// The full ids of `service`'s running task containers, as Docker lists them.
fn task_ids(dockerd: &Dockerd, service: &str) -> anyhow::Result<Vec<String>> {
    Ok(dockerd
        .docker(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.swarm.service.name={service}"),
        ])?
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

fn value(line: &str) -> Option<f64> {
    line.rsplit_once(' ')?.1.parse().ok()
}

const SERVICE: &str = "container_label_com_docker_swarm_service_name";

/// CPU seconds of each of `service`'s named task containers, as served.
fn task_cpu(e: &Exposition, service: &str) -> Vec<f64> {
    series(
        e,
        "container_cpu_usage_seconds_total",
        &[(SERVICE, service)],
    )
    .iter()
    .filter_map(|l| value(l))
    .collect()
}

#[test]
fn swarm_services_and_compose_projects_are_counted_and_labelled() -> anyhow::Result<()> {
    const TEST: &str = "swarm_services_and_compose_projects_are_counted_and_labelled";
    if !privileged(TEST)
        || !require_tool(TEST, "dockerd")
        || !require_tool(TEST, "docker-compose")
        || !require_tool(TEST, "prometheus")
    {
        return Ok(());
    }
    let swarm = start_swarm("swarm")?;
    let dockerd = swarm.dockerd();
    let node_id = dockerd
        .docker(&["info", "--format", "{{.Swarm.NodeID}}"])?
        .trim()
        .to_string();
    let agent = Agent::start_with_dockerd(INTERVAL, dockerd)?;
    // A real Prometheus scraping the agent, with swarmprom's alert rules for Swarm tasks.
    let prom_dir = Path::new("/var/lib/nodetel-test/swarm-prometheus");
    let _ = std::fs::remove_dir_all(prom_dir);
    std::fs::create_dir_all(prom_dir)?;
    let prom = Prometheus::start_with_rules(
        prom_dir,
        &format!(
            "  - job_name: nodetel\n    honor_labels: true\n    static_configs:\n      - targets: ['{}']\n",
            agent.addr
        ),
        Some(&swarmprom().join("swarm_task.rules.yml")),
    )?;

    // Two services: a busy one with two replicas, an idle one with one.
    let work = Path::new("/var/lib/nodetel-test/swarm-work");
    std::fs::create_dir_all(work)?;
    let stack_file = work.join("stack.yml");
    std::fs::write(
        &stack_file,
        format!(
            "version: \"3.8\"\nservices:\n  web:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"while :; do :; done\"]\n    deploy: {{replicas: 2}}\n  db:\n    image: {IMAGE}\n    command: [\"sleep\", \"100000\"]\n    deploy: {{replicas: 1}}\n"
        ),
    )?;
    dockerd.docker(&[
        "stack",
        "deploy",
        "-c",
        &stack_file.display().to_string(),
        STACK,
    ])?;
    let web = format!("{STACK}_web");
    let db = format!("{STACK}_db");
    // Docker's own count of the service's running tasks on this node.
    let docker_count =
        |service: &str| -> anyhow::Result<usize> { Ok(task_ids(dockerd, service)?.len()) };
    // Running, by Docker's account, before the agent is asked.
    let deadline = Instant::now() + Duration::from_secs(60);
    while (docker_count(&web)?, docker_count(&db)?) != (2, 1) {
        ensure!(
            Instant::now() < deadline,
            "the stack's tasks never ran: {}",
            dockerd.docker(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"])?
        );
        thread::sleep(Duration::from_millis(100));
    }
    let stack_running = Instant::now();
    let tasks_of = |e: &Exposition, service: &str| {
        series(e, "container_last_seen", &[(SERVICE, service)]).len()
    };
    let e = agent.scrape_until(Duration::from_secs(60), |e| {
        tasks_of(e, &web) == 2 && tasks_of(e, &db) == 1
    })?;
    ensure!(
        tasks_of(&e, &web) == 2 && tasks_of(&e, &db) == 1,
        "tasks per service: web {}, db {}",
        tasks_of(&e, &web),
        tasks_of(&e, &db)
    );
    // Every task's series carry the Swarm labels the dashboards group by, with Docker's values.
    for line in series(&e, "container_last_seen", &[(SERVICE, &web)]) {
        for needle in [
            format!("container_label_com_docker_stack_namespace=\"{STACK}\""),
            format!("container_label_com_docker_swarm_node_id=\"{node_id}\""),
            format!("container_label_com_docker_swarm_task_name=\"{web}."),
            format!("name=\"{web}."),
        ] {
            ensure!(line.contains(&needle), "{needle} not in {line}");
        }
    }
    let count = |e: &Exposition, service: &str| {
        series(
            e,
            "nodetel_swarm_service_tasks",
            &[
                ("service", service),
                ("stack", STACK),
                ("node_id", &node_id),
            ],
        )
        .first()
        .and_then(|l| value(l))
    };
    ensure!(count(&e, &web) == Some(2.0), "web: {:?}", count(&e, &web));
    ensure!(count(&e, &db) == Some(1.0), "db: {:?}", count(&e, &db));
    // The busy service's CPU, summed by service as the dashboards do, moves.
    let cpu = |e: &Exposition| -> f64 {
        series(e, "container_cpu_usage_seconds_total", &[(SERVICE, &web)])
            .iter()
            .filter_map(|l| value(l))
            .sum()
    };
    let (c0, t0) = (cpu(&e), e.snapshot_time());
    thread::sleep(Duration::from_secs(2));
    let later = agent.next_metrics()?;
    let (c1, t1) = (cpu(&later), later.snapshot_time());
    let cores = (c1 - c0) / (t1 - t0);
    eprintln!("swarm: {web} used {cores:.2} CPUs over {:.2} s", t1 - t0);
    ensure!(cores > 0.5, "{web}'s two busy tasks used {cores} CPUs");

    // swarmprom's dashboard and rules, evaluated by Prometheus over what it scraped: at least
    // 20 s of the running stack (the window the test gives the dashboard's rates).
    let running_for = stack_running.elapsed();
    if running_for < Duration::from_secs(22) {
        thread::sleep(Duration::from_secs(22) - running_for);
    }
    swarmprom_queries_see_the_stack(&prom, &web, &db)?;
    // The CPU rule's 1-minute rate over a task that has lived t seconds is about t/60 of its
    // CPU: a busy task crosses its 50 % once it has lived 30 s; 40 s leaves a margin.
    let running_for = stack_running.elapsed();
    if running_for < Duration::from_secs(40) {
        thread::sleep(Duration::from_secs(40) - running_for);
    }
    swarmprom_rules_see_the_busy_tasks(&prom, &web)?;
    drop(prom);

    // Scaled to 3: the new task named within 2 s of its container starting.
    let before = task_ids(dockerd, &web)?;
    dockerd.docker(&["service", "scale", "-d", &format!("{web}=3")])?;
    let new_id = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = task_ids(dockerd, &web)?;
            if let Some(id) = now.into_iter().find(|id| !before.contains(id)) {
                break id;
            }
            ensure!(Instant::now() < deadline, "the third task never started");
            thread::sleep(Duration::from_millis(20));
        }
    };
    let started = Instant::now();
    let e = agent.scrape_until(Duration::from_secs(10), |e| {
        e.0.lines().any(|l| {
            l.starts_with("container_last_seen{")
                && l.contains(&new_id)
                && l.contains(&format!("{SERVICE}=\"{web}\""))
        })
    })?;
    let took = started.elapsed();
    eprintln!("swarm: the scaled task was named {took:?} after its container appeared");
    ensure!(took <= Duration::from_secs(2), "named after {took:?}");
    ensure!(
        count(&e, &web) == Some(3.0),
        "web after scaling: {:?}",
        count(&e, &web)
    );

    // Compose: a project with one service of two containers, started by docker-compose.
    let compose_file = work.join("compose.yml");
    std::fs::write(
        &compose_file,
        format!(
            "version: \"3.8\"\nservices:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"100000\"]\n    network_mode: none\n"
        ),
    )?;
    let compose = |args: &[&str]| -> anyhow::Result<String> {
        run(Command::new("docker-compose")
            .env(
                "DOCKER_HOST",
                format!("unix://{}", dockerd.socket.display()),
            )
            .args(["-p", PROJECT, "-f"])
            .arg(&compose_file)
            .args(args))
    };
    compose(&["up", "-d", "--scale", "app=2"])?;
    let compose_count = |e: &Exposition| {
        series(
            e,
            "nodetel_compose_service_containers",
            &[("project", PROJECT), ("service", "app")],
        )
        .first()
        .and_then(|l| value(l))
    };
    let e = agent.scrape_until(Duration::from_secs(10), |e| compose_count(e) == Some(2.0))?;
    let result = compose_count(&e);
    let _ = compose(&["down", "-t", "0"]);
    ensure!(result == Some(2.0), "compose app containers: {result:?}");
    ensure!(
        series(
            &e,
            "container_last_seen",
            &[("container_label_com_docker_compose_service", "app")]
        )
        .len()
            == 2,
        "compose labels missing from the containers' series"
    );

    // The stack removed: its series go within two intervals of its containers going.
    dockerd.docker(&["stack", "rm", STACK])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dockerd
        .docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.stack.namespace={STACK}"),
        ])?
        .trim()
        .is_empty()
    {
        ensure!(
            Instant::now() < deadline,
            "the stack's containers never went"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let gone = Instant::now();
    let e = agent.scrape_until(INTERVAL * 2, |e| {
        series(
            e,
            "container_last_seen",
            &[("container_label_com_docker_stack_namespace", STACK)],
        )
        .is_empty()
            && count(e, &web).is_none()
    })?;
    let left = series(
        &e,
        "container_last_seen",
        &[("container_label_com_docker_stack_namespace", STACK)],
    )
    .len();
    eprintln!(
        "swarm: stack series gone {:?} after its containers",
        gone.elapsed()
    );
    ensure!(
        left == 0 && count(&e, &web).is_none(),
        "{left} series of the removed stack remain"
    );
    ensure!(
        gone.elapsed() <= INTERVAL * 2 + Duration::from_millis(500),
        "the removed stack's series took {:?}",
        gone.elapsed()
    );
    Ok(())
}

/// stefanprodan/swarmprom's services dashboard and task rules (tests/testdata/swarmprom).
fn swarmprom() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/swarmprom")
}

/// Whether a query reads a cAdvisor family: a name starting `container_` (not dockerd's
/// `engine_daemon_container_...`).
fn reads_cadvisor(expr: &str) -> bool {
    expr.match_indices("container_").any(|(i, _)| {
        !expr[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The samples of a query as (the value of `label`, value).
fn by_label(result: &[Value], label: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = result
        .iter()
        .map(|r| {
            (
                r["metric"][label].as_str().unwrap_or("").to_string(),
                r["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every query of swarmprom's services dashboard over cAdvisor's families, with its Swarm-node
/// variable at "All" (`.+`), against the stack `web` (two busy tasks) and `db` (one idle task):
/// the stat panels count one node, one stack, two services and three containers; each
/// per-service panel has exactly one series per service, the task count per service is Docker's,
/// and the busy service's CPU is above 50 % where the idle one's is near 0. Panels over other
/// exporters (node-exporter, dockerd's metrics, swarmprom's `node_meta`) are listed, not
/// evaluated.
fn swarmprom_queries_see_the_stack(prom: &Prometheus, web: &str, db: &str) -> anyhow::Result<()> {
    const NOT_CADVISOR: &[&str] = &[
        "Health Checks",
        "CPU Idle",
        "Available Memory",
        "Available Disk Space",
        "Docker Daemon Container Actions",
        "Docker Daemon Network Actions",
        "Docker Engine Info",
    ];
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(
        swarmprom().join("swarmprom-services-dash.json"),
    )?)?;
    let panels: Vec<&Value> = dash["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["panels"].as_array().into_iter().flatten())
        .chain(dash["panels"].as_array().into_iter().flatten())
        .collect();
    let services = vec![db.to_string(), web.to_string()];
    let (mut evaluated, mut skipped) = (0, Vec::new());
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().context("target without expr")?;
            if !reads_cadvisor(expr) {
                ensure!(
                    NOT_CADVISOR.contains(&title),
                    "{title}: a query over no cAdvisor family, not on the list: {expr}"
                );
                skipped.push(title);
                continue;
            }
            // The dashboard's 5-minute rates count a task in proportion to the part of the
            // window it lived (for cAdvisor's series as for nodetel's): the test's tasks have
            // lived 20 s, so that is the window given; Grafana's auto interval likewise.
            let q = expr
                .replace("$node_id", ".+")
                .replace("$interval", "20s")
                .replace("[5m]", "[20s]");
            let result = prom.query(&q).with_context(|| format!("{title}: {q}"))?;
            let per_service = by_label(&result, SERVICE);
            eprintln!("swarmprom {title:<34} {per_service:?}");
            ensure!(!result.is_empty(), "{title}: no data for {q}");
            evaluated += 1;
            let one = || per_service.first().map(|s| s.1);
            match title {
                "Nodes" | "Stacks" => ensure!(one() == Some(1.0), "{title}: {per_service:?}"),
                "Services" => ensure!(one() == Some(2.0), "{title}: {per_service:?}"),
                "Containers" => ensure!(one() == Some(3.0), "{title}: {per_service:?}"),
                _ => {}
            }
            // A panel summed by service: its series carry that label alone.
            let grouped = result.iter().all(|r| {
                r["metric"]
                    .as_object()
                    .is_some_and(|m| m.len() == 1 && m.contains_key(SERVICE))
            });
            if grouped {
                let names: Vec<&String> = per_service.iter().map(|s| &s.0).collect();
                ensure!(
                    names == services.iter().collect::<Vec<_>>(),
                    "{title}: series per service {names:?}, not one for each of {services:?}"
                );
            }
            let of = |service: &str| {
                per_service
                    .iter()
                    .find(|s| s.0 == service)
                    .map_or(f64::NAN, |s| s.1)
            };
            match title {
                "Service Tasks" => ensure!(
                    of(web).round() == 2.0 && of(db).round() == 1.0,
                    "{title}: tasks per service {per_service:?}, Docker runs 2 and 1"
                ),
                "CPU usage by Service" => ensure!(
                    of(web) > 50.0 && of(db) < 5.0,
                    "{title}: {per_service:?} (% of a CPU)"
                ),
                "Memory usage by Service" => ensure!(
                    target["refId"] != "A" || (of(web) > 0.0 && of(db) > 0.0),
                    "{title}: {per_service:?}"
                ),
                _ => {}
            }
        }
    }
    skipped.dedup();
    eprintln!("swarmprom: {evaluated} queries evaluated; over other exporters: {skipped:?}");
    ensure!(evaluated >= 15, "only {evaluated} cAdvisor queries found");
    Ok(())
}

/// swarmprom's task rules: the CPU alert is pending or firing for each busy task of `web` and
/// for nothing else; the memory rule's left side sees every task (none is above its 1 GB).
fn swarmprom_rules_see_the_busy_tasks(prom: &Prometheus, web: &str) -> anyhow::Result<()> {
    // Pending during its `for: 1m`, then firing.
    let alerts = prom.query("ALERTS{alertname=\"task_high_cpu_usage_50\"}")?;
    let mut tasks: Vec<String> = alerts
        .iter()
        .filter_map(|a| {
            a["metric"]["container_label_com_docker_swarm_task_name"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    tasks.sort();
    eprintln!("swarmprom: task_high_cpu_usage_50 for {tasks:?}");
    ensure!(
        tasks.len() == 2 && tasks.iter().all(|t| t.starts_with(&format!("{web}."))),
        "task_high_cpu_usage_50 for {tasks:?}, not the two {web} tasks"
    );
    let rss = prom.query(
        "sum(container_memory_rss{container_label_com_docker_swarm_task_name=~\".+\"}) BY (container_label_com_docker_swarm_task_name, container_label_com_docker_swarm_node_id)",
    )?;
    ensure!(rss.len() == 3, "task rss series: {}", rss.len());
    Ok(())
}

/// Starts a Swarm on a private daemon, leaving a stale one first.
fn start_swarm(name: &str) -> anyhow::Result<Swarm> {
    let had_gwbridge = Path::new("/sys/class/net/docker_gwbridge").exists();
    let devices_before = host_devices();
    let swarm = Swarm {
        dockerd: Some(Dockerd::start_for_swarm(name)?),
        remove_gwbridge: !had_gwbridge,
        devices_before,
        exec_netns: Path::new("/run/nodetel-test").join(name).join("exec/netns"),
    };
    let dockerd = swarm.dockerd();
    dockerd.ensure_image()?;
    let _ = dockerd.docker(&["swarm", "leave", "--force"]);
    dockerd.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"])?;
    Ok(swarm)
}

/// A directory made for the test where none was, removed on drop.
struct MadeDir(Option<PathBuf>);

impl Drop for MadeDir {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The shipped Swarm stack file, deployed with `docker stack deploy` with the image built as the
/// Dockerfile builds it: the agent task becomes healthy and serves its node's tasks with their
/// Swarm labels, scraped from a container on the stack's overlay network by the DNS name the file
/// documents. Changed for this machine only where it must be: the Docker socket and data root
/// are the test daemon's, and Debian's docker.io 20.10, which does not
/// know `CAP_BPF` and `CAP_PERFMON`, gets `SYS_ADMIN` in their place, as the README says.
#[test]
fn the_stack_file_deploys_and_its_agent_serves_the_nodes_tasks() -> anyhow::Result<()> {
    const TEST: &str = "the_stack_file_deploys_and_its_agent_serves_the_nodes_tasks";
    if !privileged(TEST)
        || !require_tool(TEST, "dockerd")
        || !require_tool(TEST, "objcopy")
        || !require_tool(TEST, "dpkg")
    {
        return Ok(());
    }
    let swarm = start_swarm("swarm-stack")?;
    let dockerd = swarm.dockerd();
    let work = Path::new("/var/lib/nodetel-test/swarm-stack-work");
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work)?;

    let text = std::fs::read_to_string(repo().join("deploy/docker/docker-stack.yml"))?;
    let mut stack: serde_json::Value = serde_norway::from_str(&text)?;
    let agent = &mut stack["services"]["nodetel"];
    let image = agent["image"].as_str().context("no image")?.to_string();
    build_image(dockerd, work, &agent_bin(), &image)?;
    let version = dockerd.docker(&["version", "--format", "{{.Server.Version}}"])?;
    if version.starts_with("20.") {
        let caps = agent["cap_add"].as_array_mut().context("no cap_add")?;
        caps.retain(|c| c != "BPF" && c != "PERFMON");
        caps.push("SYS_ADMIN".into());
    }
    let socket = dockerd.socket.display().to_string();
    let data = dockerd.data_root().display().to_string();
    for v in agent["volumes"].as_array_mut().context("no volumes")? {
        let Some(spec) = v.as_str() else { continue };
        // The source (before the first colon) only: the target stays where the agent looks.
        let Some((source, rest)) = spec.split_once(':') else {
            continue;
        };
        let source = match source {
            "/var/run/docker.sock" => socket.as_str(),
            "/var/lib/docker" => data.as_str(),
            other => other,
        };
        let spec = format!("{source}:{rest}");
        *v = spec.into();
    }
    // Bind sources must exist: the containerd socket directory may not on a Docker-only host.
    let containerd_run = Path::new("/run/containerd");
    let _made = MadeDir(if containerd_run.exists() {
        None
    } else {
        std::fs::create_dir(containerd_run)?;
        Some(containerd_run.to_path_buf())
    });
    let file = work.join("docker-stack.json");
    std::fs::write(&file, serde_json::to_string_pretty(&stack)?)?;

    // A workload stack, then the agent's.
    let shop = work.join("shop.yml");
    std::fs::write(
        &shop,
        format!(
            "version: \"3.8\"\nservices:\n  web:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"while :; do :; done\"]\n    deploy: {{replicas: 2}}\n"
        ),
    )?;
    dockerd.docker(&["stack", "deploy", "-c", &shop.display().to_string(), STACK])?;
    dockerd.docker(&[
        "stack",
        "deploy",
        "-c",
        &file.display().to_string(),
        "nodetel",
    ])?;
    let web = format!("{STACK}_web");
    // Scraped as the file says Prometheus should: from a container on the stack's attachable
    // overlay network. By the task's address there: the test's busybox-static cannot resolve
    // names (static glibc without NSS), which Prometheus' `dns_sd_configs` would.
    let agent_ip = || -> anyhow::Result<String> {
        let id = dockerd.docker(&[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.swarm.service.name=nodetel_nodetel",
        ])?;
        let id = id.split_whitespace().next().context("no agent task yet")?;
        let ip = dockerd.docker(&[
            "inspect",
            "--format",
            "{{(index .NetworkSettings.Networks \"nodetel_nodetel\").IPAddress}}",
            id,
        ])?;
        ensure!(
            !ip.is_empty(),
            "the agent task has no address on nodetel_nodetel"
        );
        Ok(ip)
    };
    let scrape = |path: &str| -> anyhow::Result<String> {
        let ip = agent_ip()?;
        // HTTP/1.0 by hand through nc: busybox-static's wget crashes (static NSS lookups).
        // stdin stays open a moment: busybox nc stops reading the answer when its input ends,
        // which cut every /metrics reply at 78 kB of 189 kB.
        let reply = dockerd.docker(&[
            "run",
            "--rm",
            "--network",
            "nodetel_nodetel",
            IMAGE,
            "/bin/busybox",
            "sh",
            "-c",
            &format!("(printf 'GET {path} HTTP/1.0\\r\\n\\r\\n'; sleep 2) | /bin/busybox nc -w 5 {ip} 8080"),
        ])?;
        let (head, body) = reply.split_once("\r\n\r\n").context("no HTTP reply")?;
        ensure!(
            head.starts_with("HTTP/1.") && head.contains(" 200 "),
            "{head}"
        );
        // nc's timeout can cut a reply short: only a whole body is the agent's answer (a cut
        // one once held the tasks' CPU series but not the service families after them).
        let length = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        });
        if let Some(length) = length {
            // The docker helper trims the output: the exposition's final newline goes with it.
            ensure!(
                body.len() == length || body.len() + 1 == length,
                "reply cut short: {} of {length} bytes",
                body.len()
            );
        }
        Ok(body.to_string())
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let e = loop {
        let got = scrape("/metrics");
        if let Ok(body) = &got {
            let _ = std::fs::write(work.join("last-scrape.prom"), body);
            let e = Exposition(body.clone());
            // Named is not yet running: Docker names a task's container before its busy loop has
            // been exec'd in it (a clean-clone CI run scraped both tasks named at 0 CPU seconds),
            // so the wait is for two named tasks that have each been charged CPU time.
            let cpu = task_cpu(&e, &web);
            let named = series(&e, "container_last_seen", &[(SERVICE, &web)]).len();
            if named == 2 && cpu.len() == 2 && cpu.iter().all(|&s| s > 0.0) {
                eprintln!("swarm stack: {web}'s tasks at {cpu:?} CPU seconds");
                break e;
            }
        }
        ensure!(
            Instant::now() < deadline,
            "the stack's agent never served {web}'s two tasks with CPU time ({}); tasks: {}",
            got.as_ref().map_or_else(
                |e| format!("{e:#}"),
                |b| format!("{:?} CPU seconds", task_cpu(&Exposition(b.clone()), &web))
            ),
            dockerd.docker(&["service", "ps", "--no-trunc", "nodetel_nodetel"])?
        );
        thread::sleep(Duration::from_millis(500));
    };
    // Retried: a reply cut short by nc's timeout is not the agent's answer.
    let health = (0..5)
        .find_map(|_| scrape("/healthz").ok())
        .context("/healthz never answered 200")?;
    eprintln!("swarm stack: /healthz says {health:?}");
    let node_id = dockerd
        .docker(&["info", "--format", "{{.Swarm.NodeID}}"])?
        .trim()
        .to_string();
    let tasks = series(
        &e,
        "nodetel_swarm_service_tasks",
        &[("service", &web), ("stack", STACK), ("node_id", &node_id)],
    );
    ensure!(
        tasks.first().and_then(|l| value(l)) == Some(2.0),
        "task count: {tasks:?}"
    );
    // The agent is a Swarm task too, and names itself.
    ensure!(
        !series(&e, "container_last_seen", &[(SERVICE, "nodetel_nodetel")]).is_empty(),
        "the agent's own task is not named"
    );
    // Without the host's pid namespace the agent places processes through the host's procfs:
    // each busy task's thread states equal the kernel's, and its interfaces carry their names
    // (those of its network namespace, as /proc/<pid>/net/dev lists them).
    let unified = nodetel_integration_tests::unified_root().context("no cgroup2")?;
    for id in task_ids(dockerd, &web)? {
        let pid = dockerd.docker(&["inspect", "-f", "{{.State.Pid}}", &id])?;
        let pid = pid.trim();
        let rel = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            .context("no cgroup v2 line")?;
        let kernel = thread_states(&unified.join(rel.trim_start_matches('/')))?;
        let served = ["running", "sleeping", "stopped", "uninterruptible"].map(|state| {
            series(
                &e,
                "container_tasks_state",
                &[("id", rel.as_str()), ("state", state)],
            )
            .first()
            .and_then(|l| value(l))
        });
        eprintln!("swarm stack: task {rel}: states kernel {kernel:?}, served {served:?}");
        ensure!(
            served == kernel.map(|n| Some(n as f64)),
            "thread states of {rel}: served {served:?}, kernel {kernel:?}"
        );
        let devices: Vec<String> = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))?
            .lines()
            .skip(2)
            .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
            .filter(|n| n != "lo")
            .collect();
        ensure!(!devices.is_empty(), "task {rel} has no interface");
        for dev in &devices {
            ensure!(
                !series(
                    &e,
                    "container_network_receive_bytes_total",
                    &[("id", rel.as_str()), ("interface", dev.as_str())]
                )
                .is_empty(),
                "{rel}: no series for its interface {dev}"
            );
        }
    }
    let _ = dockerd.docker(&["stack", "rm", "nodetel"]);
    Ok(())
}
