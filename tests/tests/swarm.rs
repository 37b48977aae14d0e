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
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::ensure;
use nodetel_integration_tests::{
    Agent, Exposition, privileged, require_tool,
    runtimes::{Dockerd, IMAGE, run},
};

const INTERVAL: Duration = Duration::from_millis(500);
const STACK: &str = "ntshop";
const PROJECT: &str = "ntblog";

/// The Swarm the test made: on drop the stack removed, the Swarm left, the daemon stopped and
/// then the bridge Swarm adds to the host removed (the daemon would make it again).
struct Swarm {
    dockerd: Option<Dockerd>,
    /// `docker_gwbridge` was not there before: the test removes it.
    remove_gwbridge: bool,
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
        if let Some(d) = self.dockerd.take() {
            let _ = d.docker(&["stack", "rm", STACK]);
            let _ = d.docker(&["swarm", "leave", "--force"]);
            drop(d);
        }
        if self.remove_gwbridge {
            let _ = Command::new("ip")
                .args(["link", "del", "docker_gwbridge"])
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

fn value(line: &str) -> Option<f64> {
    line.rsplit_once(' ')?.1.parse().ok()
}

const SERVICE: &str = "container_label_com_docker_swarm_service_name";

#[test]
fn swarm_services_and_compose_projects_are_counted_and_labelled() -> anyhow::Result<()> {
    const TEST: &str = "swarm_services_and_compose_projects_are_counted_and_labelled";
    if !privileged(TEST) || !require_tool(TEST, "dockerd") || !require_tool(TEST, "docker-compose")
    {
        return Ok(());
    }
    let had_gwbridge = Path::new("/sys/class/net/docker_gwbridge").exists();
    let swarm = Swarm {
        dockerd: Some(Dockerd::start_for_swarm("swarm")?),
        remove_gwbridge: !had_gwbridge,
    };
    let dockerd = swarm.dockerd();
    dockerd.ensure_image()?;
    // A Swarm left over by an interrupted run is left first.
    let _ = dockerd.docker(&["swarm", "leave", "--force"]);
    dockerd.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"])?;
    let node_id = dockerd
        .docker(&["info", "--format", "{{.Swarm.NodeID}}"])?
        .trim()
        .to_string();
    let agent = Agent::start_with_dockerd(INTERVAL, dockerd)?;

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
    let docker_count = |service: &str| -> anyhow::Result<usize> {
        Ok(dockerd
            .docker(&[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.swarm.service.name={service}"),
            ])?
            .split_whitespace()
            .count())
    };
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

    // Scaled to 3: the new task named within 2 s of its container starting.
    let before: Vec<String> = dockerd
        .docker(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.swarm.service.name={web}"),
        ])?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    dockerd.docker(&["service", "scale", "-d", &format!("{web}=3")])?;
    let new_id = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now: Vec<String> = dockerd
                .docker(&[
                    "ps",
                    "-q",
                    "--no-trunc",
                    "--filter",
                    &format!("label=com.docker.swarm.service.name={web}"),
                ])?
                .split_whitespace()
                .map(str::to_string)
                .collect();
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
