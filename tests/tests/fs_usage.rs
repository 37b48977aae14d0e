//! Per-container filesystem usage (the `disk` kind) against the tools an operator checks it
//! with: `du -s -B1` of the writable layer the runtime itself reports (Docker's layer database
//! and `docker info`, containerd's snapshot mounts from `ctr`), `find` for inodes, `df` for the
//! filesystem's device, size and free inodes. A real dockerd and a real containerd from Debian's
//! docker.io; the figure must follow writes and deletions.
//!
//! The Docker agent runs under exactly the DaemonSet's capabilities (`setpriv`, as
//! `capabilities.rs`): what the README says of them is what this test sees.
//!
//! Host only: the VM suite has no container runtime in its initramfs.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::Context as _;
use nodetel_integration_tests::{
    Agent, Exposition, daemonset_caps, http_get, privileged, require_tool,
    runtimes::{
        Containerd, Dockerd, IMAGE, du_bytes as du, label, remove_cgroup_dirs, run, wait_named,
    },
    with_only_caps,
};

const INTERVAL: Duration = Duration::from_millis(500);
/// Each layer walked every second here (default one minute), so the test waits seconds.
const FS_INTERVAL: &str = "--fs-usage-interval=1s";
/// Writes 8 MiB and 100 KiB in a subdirectory, then marks itself done and sleeps.
const WRITER: &str = "dd if=/dev/zero of=/payload bs=1M count=8 2>/dev/null && mkdir -p /a/b && \
                      dd if=/dev/zero of=/a/b/c bs=1k count=100 2>/dev/null && : > /done && \
                      exec sleep 1000";

/// Inodes under `dir`, itself included (no hard links in these layers).
fn inodes(dir: &Path) -> anyhow::Result<u64> {
    Ok(run(Command::new("find").arg(dir).arg("-xdev"))?
        .lines()
        .count() as u64)
}

/// `df` of the filesystem holding `dir`: its device and size in bytes.
fn df(dir: &Path) -> anyhow::Result<(String, u64)> {
    let out = run(Command::new("df")
        .args(["-B1", "--output=source,size"])
        .arg(dir))?;
    let line = out.lines().nth(1).context("df output")?;
    let mut f = line.split_whitespace();
    Ok((
        f.next().context("source")?.to_string(),
        f.next().context("size")?.parse()?,
    ))
}

/// Waits until the agent's usage of `path` is `want`; returns the exposition either way.
fn converge(agent: &Agent, path: &str, want: u64) -> anyhow::Result<Exposition> {
    agent.scrape_until(Duration::from_secs(20), |e| {
        e.value("container_fs_usage_bytes", path) == Some(want as f64)
    })
}

/// What the agent says of `path`'s filesystem against `du`, `find` and `df` of its layer.
fn check_layer(
    e: &Exposition,
    path: &str,
    upper: &Path,
    usage: u64,
    what: &str,
) -> anyhow::Result<()> {
    assert_eq!(
        e.value("container_fs_usage_bytes", path),
        Some(usage as f64),
        "{what}: usage vs du; {}",
        e.lines_of("container_fs_usage_bytes", path).join("\n")
    );
    assert_eq!(
        e.value("container_fs_inodes_total", path),
        Some(inodes(upper)? as f64),
        "{what}: inodes of the layer vs find"
    );
    let (device, size) = df(upper)?;
    assert_eq!(
        label(e, "container_fs_usage_bytes", path, "device"),
        Some(device.as_str()),
        "{what}: device vs df"
    );
    assert_eq!(
        e.value("container_fs_limit_bytes", path),
        Some(size as f64),
        "{what}: limit vs df's size"
    );
    let free = e
        .value("container_fs_inodes_free", path)
        .context("inodes free")?;
    assert!(
        free > 0.0,
        "{what}: no free inodes on a writable filesystem"
    );
    Ok(())
}

#[test]
fn docker_writable_layer_usage_is_what_du_says() -> anyhow::Result<()> {
    let test = "docker_writable_layer_usage_is_what_du_says";
    if !privileged(test) || !require_tool(test, "dockerd") || !require_tool(test, "docker") {
        return Ok(());
    }
    let dockerd = Dockerd::start("fs-usage")?;
    dockerd.ensure_image()?;
    // The DaemonSet's capabilities, nothing more (no CAP_DAC_READ_SEARCH: see the end).
    let wrapper = with_only_caps(&daemonset_caps()?);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let socket = dockerd.socket.display().to_string();
    let mut agent = Agent::spawn_under(
        &wrapper,
        INTERVAL,
        &[
            "--docker-socket",
            &socket,
            "--containerd-socket=",
            "--podman-socket=",
            "--crio-socket=",
            FS_INTERVAL,
        ],
    )?;
    agent.wait_healthy(Duration::from_secs(20))?;
    let id = dockerd.docker(&["run", "-d", "--name", "nt-fs", IMAGE, "sh", "-c", WRITER])?;
    let path = format!("/docker/{id}");
    wait_named(&agent, &path, "nt-fs", Duration::from_secs(10))?;

    // Where Docker itself says the layer is: its data root and its layer database.
    let root = PathBuf::from(dockerd.docker(&["info", "--format", "{{.DockerRootDir}}"])?);
    let mount_id = std::fs::read_to_string(
        root.join("image/overlay2/layerdb/mounts")
            .join(&id)
            .join("mount-id"),
    )
    .context("Docker's mount-id of the container (overlay2 driver?)")?;
    let upper = root.join("overlay2").join(mount_id.trim()).join("diff");
    let extra = root.join("containers").join(&id);
    let done = upper.join("done");
    let t0 = std::time::Instant::now();
    while !done.exists() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::ensure!(done.exists(), "the container did not finish writing");

    // cAdvisor's usage: the layer plus Docker's files for the container (log, hosts, config).
    let usage = |upper: &Path| -> anyhow::Result<u64> { Ok(du(upper)? + du(&extra)?) };
    let want = usage(&upper)?;
    assert!(du(&upper)? >= 8 << 20, "du of the layer {}", du(&upper)?);
    let e = converge(&agent, &path, want)?;
    check_layer(&e, &path, &upper, want, "after 8 MiB")?;
    println!(
        "docker: layer {} B + Docker's files {} B, {} inodes",
        du(&upper)?,
        du(&extra)?,
        inodes(&upper)?
    );

    // The root container carries the host's filesystems, the layer's among them.
    let (device, size) = df(&upper)?;
    assert_eq!(
        e.value_where("container_fs_limit_bytes", "/", "device", &device),
        Some(size as f64),
        "the root's filesystems lack {device} of {size} B: {:?}",
        e.lines_of("container_fs_limit_bytes", "/")
    );

    // It follows what the container does: more written, then a file deleted.
    dockerd.docker(&[
        "exec",
        &id,
        "dd",
        "if=/dev/zero",
        "of=/more",
        "bs=1M",
        "count=4",
    ])?;
    let want = usage(&upper)?;
    let e = converge(&agent, &path, want)?;
    check_layer(&e, &path, &upper, want, "after 4 MiB more")?;
    dockerd.docker(&["exec", &id, "busybox", "rm", "/payload"])?;
    let want = usage(&upper)?;
    let e = converge(&agent, &path, want)?;
    check_layer(&e, &path, &upper, want, "after deleting 8 MiB")?;

    // The JSON API's filesystem entry: cAdvisor's fields, the same figures.
    let (_, body) = http_get(&agent.addr, &format!("/api/v1.3/containers{path}"))?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    let fs = v["stats"]
        .as_array()
        .and_then(|s| s.last())
        .and_then(|s| s["filesystem"].as_array())
        .and_then(|f| f.first())
        .with_context(|| format!("no stats[].filesystem[] in {body:.400}"))?;
    assert_eq!(fs["device"], serde_json::json!(device));
    assert_eq!(fs["capacity"], serde_json::json!(size));
    assert_eq!(fs["base_usage"], serde_json::json!(du(&upper)?));
    assert_eq!(fs["usage"], serde_json::json!(want));
    assert_eq!(fs["inodes"], serde_json::json!(inodes(&upper)?));
    assert_eq!(v["spec"]["has_filesystem"], serde_json::json!(true));

    // A directory only its owner (another user) may read: root without CAP_DAC_READ_SEARCH
    // cannot list it, so the figure is a lower bound, and said to be one.
    let incomplete = |e: &Exposition| {
        e.0.lines()
            .find_map(|l| l.strip_prefix("nodetel_fs_usage_incomplete_walks_total "))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let before = incomplete(&e).context("incomplete walks counter")?;
    let private = dockerd.docker(&[
        "run",
        "-d",
        IMAGE,
        "sh",
        "-c",
        "busybox mkdir /p && dd if=/dev/zero of=/p/f bs=1M count=2 2>/dev/null && \
         busybox chown -R 65534 /p && busybox chmod 700 /p && exec sleep 1000",
    ])?;
    let ppath = format!("/docker/{private}");
    let e = agent.scrape_until(Duration::from_secs(20), |e| {
        e.value("container_fs_usage_bytes", &ppath).is_some()
            && incomplete(e).is_some_and(|n| n > before)
    })?;
    let got = e
        .value("container_fs_usage_bytes", &ppath)
        .context("usage")?;
    assert!(
        incomplete(&e).is_some_and(|n| n > before),
        "a refused directory was not counted as an incomplete walk"
    );
    assert!(
        got < (2 << 20) as f64,
        "the unreadable directory's 2 MiB were counted ({got} B)"
    );
    Ok(())
}

#[test]
fn containerd_snapshot_usage_is_what_du_says() -> anyhow::Result<()> {
    let test = "containerd_snapshot_usage_is_what_du_says";
    if !privileged(test)
        || !require_tool(test, "containerd")
        || !require_tool(test, "ctr")
        || !require_tool(test, "dockerd")
    {
        return Ok(());
    }
    let containerd = Containerd::start("fs-usage-ctrd")?;
    let image = containerd.import_image("default")?;
    let agent = Agent::start_with_runtime(
        INTERVAL,
        "--containerd-socket",
        &containerd.socket,
        &[FS_INTERVAL],
    )?;
    let path = "/default/nt-fs";
    let cleanup = vec!["/default".to_string(), path.to_string()];
    let result = (|| -> anyhow::Result<()> {
        containerd.ctr(
            "default",
            &["run", "-d", &image, "nt-fs", "sh", "-c", WRITER],
        )?;
        wait_named(&agent, path, "nt-fs", Duration::from_secs(10))?;
        // Where containerd says the container's snapshot is: its mounts, as `ctr` prints them.
        let mounts = containerd.ctr("default", &["snapshots", "mounts", "/mnt", "nt-fs"])?;
        let upper = mounts
            .split(['=', ','])
            .skip_while(|w| !w.ends_with("upperdir"))
            .nth(1)
            .map(PathBuf::from)
            .with_context(|| format!("no upperdir in {mounts:?}"))?;
        let t0 = std::time::Instant::now();
        while !upper.join("done").exists() && t0.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::ensure!(
            upper.join("done").exists(),
            "the task did not finish writing"
        );
        // containerd keeps no per-container files beside the snapshot: usage is the layer's.
        let want = du(&upper)?;
        assert!(want >= 8 << 20, "du of the snapshot {want}");
        let e = converge(&agent, path, want)?;
        check_layer(&e, path, &upper, want, "containerd")?;
        println!("containerd: snapshot {want} B, {} inodes", inodes(&upper)?);
        Ok(())
    })();
    drop(agent);
    drop(containerd);
    remove_cgroup_dirs(&cleanup);
    result
}
