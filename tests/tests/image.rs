//! The container image as the DaemonSet runs it: the Dockerfile's runtime stage built with a real
//! dockerd (BuildKit) on a base image made from this machine's Debian packages (no registry is
//! reachable here), then run by containerd, the runtime of Kubernetes nodes, with the DaemonSet's
//! own arguments, environment, capabilities, security options, host paths and memory limit (read
//! from target/deploy/daemonset-pod.json, which `cargo xtask deploy-check` derives from the
//! manifest and refuses to write for a field it does not translate), and scraped.
//!
//! Deliberate differences from a cluster: the container uses the host's network (no CNI here), so
//! its listen address is moved to a free loopback port; the binary under test is the one the
//! suite built, put in the image through the Dockerfile's `BINARY_FROM` argument instead of the
//! build stage (which needs a registry's Rust image); and AppArmor is not applied where the host
//! has none (this one).
//!
//! Host only: the VM suite has no container runtime in its initramfs.
use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nodetel_integration_tests::{
    Exposition, TestCgroup, agent_bin, daemonset_pod, http_get,
    image::build_image,
    netns::{Netns, device_counters, ip, ip_bin},
    privileged, require_tool,
    runtimes::{Containerd, Dockerd, du_bytes},
};

const IMAGE: &str = "nodetel-test/nodetel:1";
const NAME: &str = "nodetel-image-test";
/// Every capability of Linux 6.x: "drop ALL" for `ctr`, which takes names only.
const ALL_CAPS: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// `ctr run` options for the pod, and the agent's arguments with the listen address moved.
/// `containerd_root`: the test's containerd's data root, which stands in for the node's
/// `/var/lib/containerd` and is mounted where the host's mount table names its snapshots.
fn ctr_run_args(
    pod: &serde_json::Value,
    addr: &str,
    containerd_root: &Path,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut o: Vec<String> = vec!["--net-host".into()];
    if pod["host_network"] == true {
        bail!("hostNetwork is not expected in the DaemonSet");
    }
    if pod["host_pid"] == true {
        // The host's pid namespace, as this test process sees it (pid 1's link may be
        // unreadable, as in this VM).
        let own = format!("pid:/proc/{}/ns/pid", std::process::id());
        o.extend(["--with-ns".into(), own]);
    }
    if pod["read_only"] == true {
        o.push("--read-only".into());
    }
    // ctr sets no_new_privileges unless told otherwise.
    if pod["no_new_privileges"] != true {
        o.push("--allow-new-privs".into());
    }
    anyhow::ensure!(
        pod["user"] == 0,
        "the image test runs as root, as ctr does: {}",
        pod["user"]
    );
    match pod["seccomp"].as_str() {
        Some("RuntimeDefault") => o.push("--seccomp".into()),
        Some("Unconfined") => {}
        other => bail!("seccomp {other:?} not translated"),
    }
    let add = strings(&pod["caps_add"]);
    let drop = strings(&pod["caps_drop"]);
    for cap in &add {
        o.extend(["--cap-add".into(), format!("CAP_{cap}")]);
    }
    // ctr adds, then drops: "ALL" is every capability not added back.
    let dropped: Vec<&str> = if drop.iter().any(|d| d == "ALL") {
        ALL_CAPS
            .iter()
            .copied()
            .filter(|c| !add.iter().any(|a| a == c))
            .collect()
    } else {
        drop.iter().map(String::as_str).collect()
    };
    for cap in dropped {
        o.extend(["--cap-drop".into(), format!("CAP_{cap}")]);
    }
    if let Some(bytes) = pod["memory_limit_bytes"].as_u64() {
        o.extend(["--memory-limit".into(), bytes.to_string()]);
    }
    for m in pod["mounts"].as_array().context("no mounts")? {
        let (mut src, mut dst) = (
            m["source"].as_str().context("mount source")?,
            m["destination"].as_str().context("mount destination")?,
        );
        let root = containerd_root.to_str().context("containerd root")?;
        if src == "/var/lib/containerd" && dst == src {
            (src, dst) = (root, root);
        }
        if m["must_exist"] == true && !Path::new(src).exists() {
            bail!("{src} does not exist: the kubelet would refuse the pod (hostPath type check)");
        }
        if m["create_directory"] == true {
            fs::create_dir_all(src).with_context(|| format!("mkdir {src} (DirectoryOrCreate)"))?;
        }
        // Recursive, as the kubelet binds host paths (cgroupfs on a hybrid host is a tree of mounts).
        let opts = if m["read_only"] == true {
            "rbind:ro"
        } else {
            "rbind:rw"
        };
        o.extend([
            "--mount".into(),
            format!("type=bind,src={src},dst={dst},options={opts}"),
        ]);
    }
    for (k, v) in pod["env"].as_object().context("no env")? {
        o.extend([
            "--env".into(),
            format!("{k}={}", v.as_str().unwrap_or_default()),
        ]);
    }
    let mut moved = false;
    let args = strings(&pod["args"])
        .into_iter()
        .map(|a| {
            if a.starts_with("--listen=") {
                moved = true;
                format!("--listen={addr}")
            } else {
                a
            }
        })
        .collect();
    anyhow::ensure!(moved, "the DaemonSet's args have no --listen= to move");
    Ok((o, args))
}

#[test]
fn the_image_runs_with_the_daemonsets_privileges_and_serves() -> anyhow::Result<()> {
    let test = "the_image_runs_with_the_daemonsets_privileges_and_serves";
    if !privileged(test)
        || !require_tool(test, "dockerd")
        || !require_tool(test, "objcopy")
        || !require_tool(test, "dpkg")
    {
        return Ok(());
    }
    let pod = daemonset_pod()?;
    let health = pod["health_path"]
        .as_str()
        .context("no health path")?
        .to_string();
    let work = Path::new("/var/lib/nodetel-test/image-work");
    let _ = fs::remove_dir_all(work);
    fs::create_dir_all(work)?;
    let binary = agent_bin();
    let dockerd = Dockerd::start("image")?;
    let d = |args: &[&str]| dockerd.docker(args);

    build_image(&dockerd, work, &binary, IMAGE)?;

    // A workload the agent must see from inside its container.
    let cg = TestCgroup::create("image")?;
    let _burn = cg.burn()?;

    // Into containerd, as a node's kubelet would pull it.
    let saved = work.join("image.tar");
    d(&["save", "-o", &saved.display().to_string(), IMAGE])?;
    let containerd = Containerd::start("image")?;
    let ctr = |args: &[&str]| containerd.ctr("k8s.io", args);
    ctr(&["images", "import", &saved.display().to_string()])?;
    let image_ref = ctr(&["images", "ls", "-q"])?
        .lines()
        .find(|l| l.ends_with(IMAGE))
        .context("imported image not listed")?
        .to_string();

    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let (opts, args) = ctr_run_args(&pod, &addr, &containerd.root)?;
    let log = work.join("agent.log");
    let log_uri = format!("file://{}", log.display());
    // Kubernetes appends `args` to the image's entry point; `ctr run` takes the whole command.
    let entrypoint: Vec<String> = serde_json::from_str(&d(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Entrypoint}}",
        IMAGE,
    ])?)?;
    let remove = || {
        let _ = ctr(&["tasks", "rm", "-f", NAME]);
        let _ = ctr(&["containers", "rm", NAME]);
    };
    remove();
    let mut cmd: Vec<&str> = vec!["run", "-d", "--log-uri", &log_uri];
    cmd.extend(opts.iter().map(String::as_str));
    cmd.extend([image_ref.as_str(), NAME]);
    cmd.extend(entrypoint.iter().map(String::as_str));
    cmd.extend(args.iter().map(String::as_str));
    ctr(&cmd)?;
    let logs = || fs::read_to_string(&log).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match http_get(&addr, &health) {
            Ok((200, _)) => break,
            other if Instant::now() > deadline => {
                bail!(
                    "{health} not 200 within 60 s ({other:?}); containerd log:\n{}",
                    logs()
                )
            }
            _ => thread::sleep(Duration::from_millis(250)),
        }
    }
    // The runtime applied what the DaemonSet asks for: the OCI spec it ran.
    let info: serde_json::Value = serde_json::from_str(&ctr(&["containers", "info", NAME])?)?;
    let spec = &info["Spec"];
    let bounding = strings(&spec["process"]["capabilities"]["bounding"]);
    eprintln!("image: bounding capabilities {bounding:?}");
    let want: Vec<String> = strings(&pod["caps_add"])
        .iter()
        .map(|c| format!("CAP_{c}"))
        .collect();
    anyhow::ensure!(
        bounding.len() == want.len() && want.iter().all(|c| bounding.contains(c)),
        "capabilities {bounding:?}, the DaemonSet's {want:?}"
    );
    anyhow::ensure!(
        spec["root"]["readonly"] == true,
        "root file system writable"
    );
    anyhow::ensure!(
        spec["process"]["noNewPrivileges"] == true,
        "new privileges allowed"
    );
    anyhow::ensure!(
        spec["linux"]["seccomp"]["defaultAction"].is_string(),
        "no seccomp profile"
    );

    // Every program attached with only these capabilities, and the workload is measured.
    let deadline = Instant::now() + Duration::from_secs(20);
    let e = loop {
        let (status, body) = http_get(&addr, "/metrics")?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        let e = Exposition(body);
        if e.value("container_cpu_usage_seconds_total", &cg.rel)
            .is_some_and(|v| v > 0.2)
        {
            break e;
        }
        if Instant::now() > deadline {
            bail!("no CPU usage for {} within 20 s; log:\n{}", cg.rel, logs());
        }
        thread::sleep(Duration::from_millis(500));
    };
    let programs: Vec<&str> =
        e.0.lines()
            .filter(|l| l.starts_with("nodetel_ebpf_program_attached{"))
            .collect();
    eprintln!("image: {}", programs.join("\n       "));
    anyhow::ensure!(
        programs.len() >= 8,
        "too few programs reported: {programs:?}"
    );
    let refused: Vec<&&str> = programs.iter().filter(|l| !l.ends_with(" 1")).collect();
    anyhow::ensure!(
        refused.is_empty(),
        "programs not attached with the DaemonSet's capabilities: {refused:?}; /healthz: {:?}",
        http_get(&addr, &health)
    );
    // The host paths: machine id from the mounted file; host pids (a workload's network
    // namespace is found through its pid) by the interface check below. The `process` kind is
    // off at the defaults, as in cAdvisor.
    let machine_id = fs::read_to_string("/etc/machine-id")?.trim().to_string();
    anyhow::ensure!(
        e.0.lines()
            .any(|l| l.starts_with("machine_cpu_cores{") && l.contains(&machine_id)),
        "machine_cpu_cores without the host's machine id {machine_id}"
    );
    anyhow::ensure!(
        e.value("container_processes", &cg.rel).is_none(),
        "container_processes exported by the DaemonSet, whose kinds are the defaults"
    );
    interface_names_without_sys_admin(&addr, &logs)?;
    own_layer_usage(&addr, &ctr)?;
    let usage = ctr(&["tasks", "metrics", NAME]).unwrap_or_default();
    eprintln!(
        "image: {}",
        usage
            .lines()
            .filter(|l| l.contains("memory"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    remove();
    Ok(())
}

/// A workload in a network namespace of its own, as a pod's: its traffic must carry the device's
/// name in that namespace (what `ip -n <ns> link` shows), looked up with the DaemonSet's
/// capabilities alone (no SYS_ADMIN: the namespace cannot be entered), not `ifindex:N`.
fn interface_names_without_sys_admin(addr: &str, logs: &dyn Fn() -> String) -> anyhow::Result<()> {
    let pod = Netns::create("image-pod")?;
    let tag = std::process::id() % 100_000;
    let (host_end, pod_end) = (format!("nti{tag}h"), format!("nti{tag}p"));
    ip(&[
        "link", "add", &host_end, "type", "veth", "peer", "name", &pod_end,
    ])?;
    ip(&["link", "set", &pod_end, "netns", &pod.0])?;
    ip(&["addr", "add", "10.126.0.1/30", "dev", &host_end])?;
    ip(&[
        "-n",
        &pod.0,
        "addr",
        "add",
        "10.126.0.2/30",
        "dev",
        &pod_end,
    ])?;
    ip(&["link", "set", &host_end, "up"])?;
    ip(&["-n", &pod.0, "link", "set", &pod_end, "up"])?;
    let links = Command::new(ip_bin())
        .args(["-n", &pod.0, "-o", "link"])
        .output()?;
    let links = String::from_utf8_lossy(&links.stdout).to_string();
    anyhow::ensure!(
        links.contains(&format!(" {pod_end}@")),
        "ip -n link: {links}"
    );

    let cg = TestCgroup::create("image-net")?;
    let in_ns = format!("{} netns exec {}", ip_bin(), pod.0);
    let keep = cg.spawn(&format!("exec {in_ns} sleep 600"))?;
    let mut send = cg.spawn(&format!(
        "exec {in_ns} {} udp-send 10.126.0.1:9 10 100",
        env!("CARGO_BIN_EXE_nettool")
    ))?;
    anyhow::ensure!(send.wait()?.success(), "udp-send failed");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = http_get(addr, "/metrics")?;
        let e = Exposition(body);
        let lines = e.lines_of("container_network_transmit_packets_total", &cg.rel);
        // Alone in its namespace, the workload has its device's own counters: the 10
        // datagrams and whatever the kernel sent (neighbour discovery).
        let device = device_counters(keep.id(), &pod_end)?[3];
        if e.value_where(
            "container_network_transmit_packets_total",
            &cg.rel,
            "interface",
            &pod_end,
        ) == Some(device as f64)
            && device >= 10
        {
            eprintln!("image: {}", lines.join("\n       "));
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "no transmit_packets {device} (the device's) on interface {pod_end} for {} within 20 s: {lines:?}; log:\n{}",
                cg.rel,
                logs()
            );
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// The agent's own container's writable layer, found as on a node (containerd's root filesystem
/// mount in the host's mount table, the snapshot through the DaemonSet's `/var/lib/containerd`
/// mount) under the DaemonSet's capabilities: its usage is what `du` says of the snapshot that
/// containerd itself names.
fn own_layer_usage(
    addr: &str,
    ctr: &dyn Fn(&[&str]) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let mounts = ctr(&["snapshots", "mounts", "/mnt", NAME])?;
    let upper = mounts
        .split(['=', ','])
        .skip_while(|w| !w.ends_with("upperdir"))
        .nth(1)
        .map(PathBuf::from)
        .with_context(|| format!("no upperdir in {mounts:?}"))?;
    let du = || -> anyhow::Result<f64> { Ok(du_bytes(&upper)? as f64) };
    let id = format!("/k8s.io/{NAME}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = http_get(addr, "/metrics")?;
        let got = Exposition(body).value("container_fs_usage_bytes", &id);
        let want = du()?;
        if got == Some(want) {
            eprintln!("image: own writable layer {want} B, as du says");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the agent's own layer: container_fs_usage_bytes {got:?}, du {want}");
        }
        thread::sleep(Duration::from_millis(500));
    }
}
