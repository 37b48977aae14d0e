//! Identity against the real runtimes: a private dockerd and a private containerd from Debian's
//! docker.io package. Containers started after the agent must be named within 2 s, removed ones
//! must lose their series, and a runtime that dies and comes back must not stop the agent.
//!
//! Host only: the VM suite has no container runtime in its initramfs.
use anyhow::Context as _;
use std::{
    path::Path,
    thread,
    time::{Duration, Instant},
};

use nodetel_integration_tests::{
    Agent, privileged, require_tool,
    runtimes::{
        Containerd, Dockerd, IMAGE, label, random_hex64, remove_cgroup_dirs, resolver_value,
        wait_named,
    },
    unified_root,
};

const INTERVAL: Duration = Duration::from_millis(500);
/// The issue's freshness bound: named within 2 s of `docker run` returning.
const NAMED_WITHIN: Duration = Duration::from_secs(2);

#[test]
fn docker_containers_are_named_and_survive_a_daemon_restart() -> anyhow::Result<()> {
    if !privileged("docker_containers_are_named_and_survive_a_daemon_restart")
        || !require_tool("docker", "dockerd")
        || !require_tool("docker", "docker")
    {
        return Ok(());
    }
    let mut dockerd = Dockerd::start("docker")?;
    dockerd.ensure_image()?;
    let agent = Agent::start_with_dockerd(INTERVAL, &dockerd)?;

    // A container with the labels the kubelet's dockershim set.
    let started = Instant::now();
    let id = dockerd.docker(&[
        "run",
        "-d",
        "--name",
        "nt-web",
        "--label",
        "io.kubernetes.pod.name=web-0",
        "--label",
        "io.kubernetes.pod.namespace=prod",
        "--label",
        "io.kubernetes.container.name=nginx",
        "--label",
        "app=web",
        IMAGE,
        "sleep",
        "1000",
    ])?;
    let run_took = started.elapsed();
    let path = format!("/docker/{id}");
    let (took, e) = wait_named(&agent, &path, "nt-web", Duration::from_secs(10))?;
    println!("docker run returned in {run_took:?}; named {took:?} later");
    assert_eq!(
        label(&e, "container_last_seen", &path, "name"),
        Some("nt-web"),
        "{}",
        e.0
    );
    assert!(
        took <= NAMED_WITHIN,
        "named {took:?} after docker run returned"
    );
    assert_eq!(
        label(&e, "container_last_seen", &path, "image"),
        Some(IMAGE)
    );
    assert_eq!(
        label(&e, "container_last_seen", &path, "pod"),
        Some("web-0")
    );
    assert_eq!(
        label(&e, "container_last_seen", &path, "namespace"),
        Some("prod")
    );
    assert_eq!(
        label(&e, "container_last_seen", &path, "container"),
        Some("nginx")
    );
    assert_eq!(
        resolver_value(&e, "nodetel_identity_resolver_up", "docker"),
        Some(1.0)
    );

    // A plain Docker container: a name and an image, no Kubernetes labels.
    let plain = dockerd.docker(&["run", "-d", "--name", "nt-plain", IMAGE, "sleep", "1000"])?;
    let plain_path = format!("/docker/{plain}");
    let (took, e) = wait_named(&agent, &plain_path, "nt-plain", Duration::from_secs(10))?;
    assert!(
        took <= NAMED_WITHIN,
        "named {took:?} after docker run returned"
    );
    assert_eq!(
        label(&e, "container_last_seen", &plain_path, "image"),
        Some(IMAGE)
    );
    assert_eq!(
        label(&e, "container_last_seen", &plain_path, "pod"),
        Some("")
    );
    // Removed: its series go within two intervals (plus the scrape in flight).
    dockerd.docker(&["rm", "-f", "nt-plain"])?;
    let removed = Instant::now();
    let e = agent.scrape_until(Duration::from_secs(5), |e| !e.mentions_id(&plain_path))?;
    assert!(
        !e.mentions_id(&plain_path),
        "series of a removed container remain"
    );
    println!(
        "removed container's series gone {:?} after docker rm",
        removed.elapsed()
    );

    // dockerd wedged (SIGSTOP: it accepts connections and answers nothing): reported down
    // within 10 s, up again after SIGCONT.
    let pid = dockerd.pid().context("dockerd pid")?;
    nodetel_integration_tests::signal(pid, "STOP")?;
    let stopped = Instant::now();
    let e = agent.scrape_until(Duration::from_secs(15), |e| {
        resolver_value(e, "nodetel_identity_resolver_up", "docker") == Some(0.0)
    })?;
    let down_after = stopped.elapsed();
    nodetel_integration_tests::signal(pid, "CONT")?;
    println!("SIGSTOPped dockerd reported down after {down_after:?}");
    assert_eq!(
        resolver_value(&e, "nodetel_identity_resolver_up", "docker"),
        Some(0.0),
        "a wedged dockerd still reported up"
    );
    assert!(down_after <= Duration::from_secs(10), "{down_after:?}");
    let e = agent.scrape_until(Duration::from_secs(40), |e| {
        resolver_value(e, "nodetel_identity_resolver_up", "docker") == Some(1.0)
    })?;
    assert_eq!(
        resolver_value(&e, "nodetel_identity_resolver_up", "docker"),
        Some(1.0),
        "dockerd not up again after SIGCONT"
    );

    // dockerd dies (its socket file stays): the agent keeps serving, with the names it has.
    dockerd.kill()?;
    let e = agent.scrape_until(Duration::from_secs(10), |e| {
        resolver_value(e, "nodetel_identity_resolver_up", "docker") == Some(0.0)
    })?;
    assert_eq!(
        resolver_value(&e, "nodetel_identity_resolver_up", "docker"),
        Some(0.0),
        "{}",
        e.0
    );
    assert_eq!(
        label(&e, "container_last_seen", &path, "name"),
        Some("nt-web"),
        "live-restored container keeps its name while dockerd is down"
    );
    thread::sleep(Duration::from_secs(2));
    let e = agent.next_metrics()?;
    let errors = resolver_value(&e, "nodetel_identity_errors_total", "docker").unwrap_or(0.0);
    assert!(errors >= 1.0, "failed reconnects are counted: {errors}");

    // Back: new containers are named again without restarting the agent.
    dockerd.restart()?;
    let back = Instant::now();
    let after = dockerd.docker(&["run", "-d", "--name", "nt-after", IMAGE, "sleep", "1000"])?;
    let after_path = format!("/docker/{after}");
    let (_, e) = wait_named(&agent, &after_path, "nt-after", Duration::from_secs(40))?;
    assert_eq!(
        label(&e, "container_last_seen", &after_path, "name"),
        Some("nt-after"),
        "{}",
        e.0
    );
    println!("named again {:?} after dockerd restarted", back.elapsed());
    assert_eq!(
        resolver_value(&e, "nodetel_identity_resolver_up", "docker"),
        Some(1.0)
    );
    assert_eq!(
        label(&e, "container_last_seen", &path, "name"),
        Some("nt-web")
    );
    Ok(())
}

#[test]
fn containerd_tasks_in_kubelet_cgroups_resolve_to_their_pod() -> anyhow::Result<()> {
    if !privileged("containerd_tasks_in_kubelet_cgroups_resolve_to_their_pod")
        || !require_tool("containerd", "containerd")
        || !require_tool("containerd", "ctr")
        || !require_tool("containerd", "dockerd")
    {
        return Ok(());
    }
    // The image comes from Docker: no registry here.
    let containerd = Containerd::start("containerd")?;
    containerd.import_image("k8s.io")?;
    let image_ref = containerd.import_image("default")?;
    let agent =
        Agent::start_with_runtime(INTERVAL, "--containerd-socket", &containerd.socket, &[])?;

    let uid = {
        let u = std::fs::read_to_string("/proc/sys/kernel/random/uuid")?;
        u.trim().to_string()
    };
    let id = random_hex64()?;
    let pod_path = format!("/kubepods/burstable/pod{uid}");
    let path = format!("{pod_path}/{id}");
    let cleanup = vec![
        "/default".to_string(),
        "/default/nt-plain".to_string(),
        "/kubepods".to_string(),
        "/kubepods/burstable".to_string(),
        pod_path.clone(),
        path.clone(),
    ];
    let result = (|| -> anyhow::Result<()> {
        // Exactly what the kubelet's CRI calls leave in containerd: the cgroup parent and labels.
        let started = Instant::now();
        containerd.ctr(
            "k8s.io",
            &[
                "run",
                "-d",
                "--cgroup",
                &path,
                "--label",
                "io.kubernetes.pod.name=db-0",
                "--label",
                "io.kubernetes.pod.namespace=data",
                "--label",
                &format!("io.kubernetes.pod.uid={uid}"),
                "--label",
                "io.kubernetes.container.name=postgres",
                &image_ref,
                &id,
                "sleep",
                "1000",
            ],
        )?;
        let (took, e) = wait_named(&agent, &path, &id, Duration::from_secs(10))?;
        println!(
            "ctr run took {:?}; named {took:?} later",
            started.elapsed() - took
        );
        assert!(
            took <= NAMED_WITHIN,
            "named {took:?} after ctr run returned"
        );
        let l = |p: &str, k: &str| label(&e, "container_last_seen", p, k).map(str::to_string);
        assert_eq!(l(&path, "image").as_deref(), Some(image_ref.as_str()));
        assert_eq!(l(&path, "container").as_deref(), Some("postgres"));
        assert_eq!(l(&path, "pod").as_deref(), Some("db-0"));
        assert_eq!(l(&path, "namespace").as_deref(), Some("data"));
        // The pod cgroup: pod and namespace from the UID in its path, no image, no name.
        assert_eq!(l(&pod_path, "pod").as_deref(), Some("db-0"), "{}", e.0);
        assert_eq!(l(&pod_path, "namespace").as_deref(), Some("data"));
        assert_eq!(l(&pod_path, "image").as_deref(), Some(""));
        assert_eq!(l(&pod_path, "name").as_deref(), Some(""));
        assert_eq!(
            resolver_value(&e, "nodetel_identity_resolver_up", "containerd"),
            Some(1.0)
        );

        // `ctr run` without a parent: `/<namespace>/<id>`.
        containerd.ctr(
            "default",
            &["run", "-d", &image_ref, "nt-plain", "sleep", "1000"],
        )?;
        let plain = "/default/nt-plain";
        let (_, e) = wait_named(&agent, plain, "nt-plain", Duration::from_secs(10))?;
        assert_eq!(
            label(&e, "container_last_seen", plain, "image"),
            Some(image_ref.as_str())
        );

        // Gone from containerd and from the cgroup tree: gone from the metrics.
        containerd.ctr("default", &["tasks", "kill", "-s", "KILL", "nt-plain"])?;
        thread::sleep(Duration::from_millis(300));
        containerd.ctr("default", &["tasks", "rm", "-f", "nt-plain"])?;
        containerd.ctr("default", &["containers", "rm", "nt-plain"])?;
        let e = agent.scrape_until(Duration::from_secs(5), |e| !e.mentions_id(plain))?;
        assert!(!e.mentions_id(plain), "series of a removed task remain");
        Ok(())
    })();
    drop(agent);
    drop(containerd);
    remove_cgroup_dirs(&cleanup);
    result
}

/// A stand-in for CRI-O's monitoring API on a unix socket (Debian packages no CRI-O): answers
/// `/info` and `/containers/<id>` for the ids it is given, in the shape of CRI-O's
/// `types.ContainerInfo`, and 404 for anything else, as CRI-O does.
fn fake_crio(
    socket: &Path,
    known: Vec<(String, String)>,
) -> anyhow::Result<thread::JoinHandle<()>> {
    use std::io::{Read as _, Write as _};
    let listener = std::os::unix::net::UnixListener::bind(socket)?;
    Ok(thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            let found = known
                .iter()
                .find(|(id, _)| path == format!("/containers/{id}"));
            let (status, body) = match (path.as_str(), found) {
                ("/info", _) => ("200 OK", r#"{"storage_driver":"overlay","storage_root":"/var/lib/containers/storage","cgroup_driver":"systemd"}"#.to_string()),
                (_, Some((_, body))) => ("200 OK", body.clone()),
                _ => ("404 Not Found", "can't find the container\n".to_string()),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    }))
}

/// A process in `rel` of the unified hierarchy and of each v1 one that takes it (a v1 cpuset
/// without cpus refuses tasks), as a runtime puts a container's init there.
fn spawn_in_every_hierarchy(rel: &str) -> anyhow::Result<std::process::Child> {
    let unified = unified_root()
        .context("no cgroup2")?
        .join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(&unified)?;
    let mut moves = String::new();
    // On a pure v2 host /sys/fs/cgroup is the unified root and its directories are cgroups.
    let hybrid = unified_root().is_some_and(|u| u != Path::new("/sys/fs/cgroup"));
    for entry in std::fs::read_dir("/sys/fs/cgroup")?.flatten() {
        if hybrid
            && entry.path().join("cgroup.procs").exists()
            && Some(entry.path()) != unified_root()
        {
            let dir = entry.path().join(rel.trim_start_matches('/'));
            std::fs::create_dir_all(&dir)?;
            moves += &format!(
                "{{ echo $$ > '{}'; }} 2>/dev/null; ",
                dir.join("cgroup.procs").display()
            );
        }
    }
    moves += &format!("echo $$ > '{}'", unified.join("cgroup.procs").display());
    Ok(std::process::Command::new("sh")
        .args(["-c", &format!("{moves} && exec sleep 1000")])
        .spawn()?)
}

/// CRI-O's systemd-driver layout, named through CRI-O's API by the id in `crio-<id>.scope` the
/// moment the collector sees the cgroup (there is no listing or event stream to wait for).
#[test]
fn crio_containers_are_named_through_its_socket() -> anyhow::Result<()> {
    if !privileged("crio_containers_are_named_through_its_socket") {
        return Ok(());
    }
    let uid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")?
        .trim()
        .to_string();
    let (id, sandbox) = (random_hex64()?, random_hex64()?);
    let crio_name = format!("k8s_nginx_web-0_prod_{uid}_0");
    let info = |name: &str, image: &str, container: Option<&str>| {
        let mut labels = serde_json::json!({
            "io.kubernetes.pod.name": "web-0",
            "io.kubernetes.pod.namespace": "prod",
            "io.kubernetes.pod.uid": uid,
        });
        if let Some(c) = container {
            labels["io.kubernetes.container.name"] = c.into();
        }
        serde_json::json!({
            "name": name, "pid": 1, "image": image, "image_ref": "", "created_time": 0,
            "labels": labels, "annotations": {}, "crio_annotations": null,
            "log_path": "", "root": "", "sandbox": sandbox, "ip_addresses": ["10.85.0.7"],
        })
        .to_string()
    };
    let dir = std::env::temp_dir().join(format!("nodetel-crio-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("crio.sock");
    fake_crio(
        &socket,
        vec![
            (
                id.clone(),
                info(&crio_name, "docker.io/library/nginx:1.27", Some("nginx")),
            ),
            (
                sandbox.clone(),
                info(
                    &format!("k8s_POD_web-0_prod_{uid}_0"),
                    "registry.k8s.io/pause:3.10",
                    None,
                ),
            ),
        ],
    )?;
    let agent = Agent::start(
        INTERVAL,
        &[
            "--crio-socket",
            &socket.display().to_string(),
            "--docker-socket",
            "",
            "--podman-socket",
            "",
            "--containerd-socket",
            "",
        ],
    )?;
    let qos = "/kubepods.slice/kubepods-burstable.slice";
    let pod_path = format!(
        "{qos}/kubepods-burstable-pod{}.slice",
        uid.replace('-', "_")
    );
    let path = format!("{pod_path}/crio-{id}.scope");
    let sandbox_path = format!("{pod_path}/crio-{sandbox}.scope");
    let cleanup = vec![
        "/kubepods.slice".to_string(),
        qos.to_string(),
        pod_path.clone(),
        path.clone(),
        sandbox_path.clone(),
    ];
    let mut children = vec![];
    let result = (|| -> anyhow::Result<()> {
        children.push(spawn_in_every_hierarchy(&sandbox_path)?);
        let started = Instant::now();
        children.push(spawn_in_every_hierarchy(&path)?);
        let (took, e) = wait_named(&agent, &path, &crio_name, Duration::from_secs(10))?;
        println!("named {took:?} after its cgroup was made");
        assert!(took <= NAMED_WITHIN, "named {took:?} after {started:?}");
        let l = |p: &str, k: &str| label(&e, "container_last_seen", p, k).map(str::to_string);
        assert_eq!(
            l(&path, "image").as_deref(),
            Some("docker.io/library/nginx:1.27")
        );
        assert_eq!(l(&path, "container").as_deref(), Some("nginx"));
        assert_eq!(l(&path, "pod").as_deref(), Some("web-0"));
        assert_eq!(l(&path, "namespace").as_deref(), Some("prod"));
        let e = agent.scrape_until(Duration::from_secs(5), |e| {
            label(e, "container_last_seen", &sandbox_path, "pod") == Some("web-0")
        })?;
        let l = |p: &str, k: &str| label(&e, "container_last_seen", p, k).map(str::to_string);
        assert_eq!(
            l(&sandbox_path, "image").as_deref(),
            Some("registry.k8s.io/pause:3.10")
        );
        // The pod cgroup: pod and namespace from the UID in its path, no image, no name.
        assert_eq!(l(&pod_path, "pod").as_deref(), Some("web-0"), "{}", e.0);
        assert_eq!(l(&pod_path, "namespace").as_deref(), Some("prod"));
        assert_eq!(l(&pod_path, "image").as_deref(), Some(""));
        assert_eq!(
            resolver_value(&e, "nodetel_identity_resolver_up", "crio"),
            Some(1.0)
        );
        assert_eq!(
            resolver_value(&e, "nodetel_identity_errors_total", "crio"),
            Some(0.0)
        );
        Ok(())
    })();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(agent);
    remove_cgroup_dirs(&cleanup);
    let _ = std::fs::remove_dir_all(&dir);
    result
}
