//! nodetel against a real cAdvisor (0.38.7) on the same Docker containers in the same run: the
//! figures dashboards compare must be the same numbers.
use std::{
    thread,
    time::{Duration, Instant},
};

use nodetel_integration_tests::{
    Agent, cadvisor,
    cadvisor::Cadvisor,
    netns::device_counters,
    privileged, require_tool,
    runtimes::{Dockerd, IMAGE, du_bytes},
};

const FAMILIES: [&str; 4] = [
    "container_network_receive_bytes_total",
    "container_network_receive_packets_total",
    "container_network_transmit_bytes_total",
    "container_network_transmit_packets_total",
];

/// A download between two containers on a bridge: the receiver's side is ACK-heavy (a 22 %
/// shortfall of its received bytes when they were counted at the IP layer), the sender's is
/// full segments. Both are alone in their network namespaces, as Docker containers are:
/// nodetel's figures must be the devices' counters, which are cAdvisor's.
#[test]
fn network_figures_are_cadvisors_for_the_same_docker_containers() -> anyhow::Result<()> {
    const TEST: &str = "network_figures_are_cadvisors_for_the_same_docker_containers";
    if !privileged(TEST) || !require_tool(TEST, "dockerd") {
        return Ok(());
    }
    let Some(bin) = cadvisor::binary(TEST) else {
        return Ok(());
    };
    let dockerd = Dockerd::start("peer")?;
    dockerd.ensure_image()?;
    for name in ["peer-web", "peer-get", "peer-fs"] {
        let _ = dockerd.docker(&["rm", "-f", name]);
    }
    // A container whose layer holds 5 MiB before either agent starts: both walk it when they
    // find it (cAdvisor then every minute), so both see the finished write.
    let fs = dockerd
        .docker(&[
            "run",
            "-d",
            "--name",
            "peer-fs",
            IMAGE,
            "sh",
            "-c",
            "head -c 5242880 /dev/zero > /f && : > /done && exec sleep 600",
        ])?
        .trim()
        .to_string();
    let t0 = Instant::now();
    while dockerd.docker(&["exec", &fs, "cat", "/done"]).is_err() {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(20),
            "peer-fs never wrote"
        );
        thread::sleep(Duration::from_millis(100));
    }
    if dockerd
        .docker(&["network", "inspect", "peer-bridge"])
        .is_err()
    {
        dockerd.docker(&["network", "create", "peer-bridge"])?;
    }
    let agent = Agent::start_with_dockerd(Duration::from_secs(1), &dockerd)?;
    let log = std::env::temp_dir().join(format!("nodetel-it-{}-cadvisor.log", std::process::id()));
    let peer = Cadvisor::start(&bin, &dockerd.socket, &log)?;

    let size: u64 = 30 << 20;
    let web = dockerd
        .docker(&[
            "run", "-d", "--name", "peer-web", "--network", "peer-bridge", IMAGE, "sh", "-c",
            &format!("mkdir -p /www && head -c {size} /dev/zero > /www/f && exec busybox httpd -f -p 8000 -h /www"),
        ])?
        .trim()
        .to_string();
    let web_ip = dockerd
        .docker(&[
            "inspect",
            "-f",
            "{{(index .NetworkSettings.Networks \"peer-bridge\").IPAddress}}",
            &web,
        ])?
        .trim()
        .to_string();
    thread::sleep(Duration::from_secs(1));
    let get = dockerd
        .docker(&[
            "run", "-d", "--name", "peer-get", "--network", "peer-bridge", IMAGE, "sh", "-c",
            &format!("until busybox wget -q -O /dev/null http://{web_ip}:8000/f; do sleep 0.2; done; exec sleep 600"),
        ])?
        .trim()
        .to_string();
    let (web_id, get_id) = (format!("/docker/{web}"), format!("/docker/{get}"));

    // The download done and both agents past it: nodetel's figure stands still for 3 s
    // (cAdvisor's housekeeping is 1 s).
    let t0 = Instant::now();
    let mut last = None;
    let mut still = 0;
    loop {
        let e = agent.next_metrics()?;
        let now = e.value_where(FAMILIES[0], &get_id, "interface", "eth0");
        if now.is_some_and(|b| b >= size as f64) && now == last {
            still += 1;
            if still >= 3 {
                break;
            }
        } else {
            still = 0;
        }
        last = now;
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "the download never finished: {now:?}"
        );
    }
    let ours = agent.next_metrics()?;
    let theirs = peer.metrics()?;
    let mut bad = Vec::new();
    for (name, id) in [("peer-web", &web), ("peer-get", &get)] {
        let pid: u32 = dockerd
            .docker(&["inspect", "-f", "{{.State.Pid}}", id])?
            .trim()
            .parse()?;
        let device = device_counters(pid, "eth0")?;
        let cg = format!("/docker/{id}");
        for (family, device) in FAMILIES.iter().zip(device) {
            let n = ours.value_where(family, &cg, "interface", "eth0");
            let c = theirs.value_where(family, &cg, "interface", "eth0");
            eprintln!(
                "{name:8} {family:42} nodetel {n:>12?}  cadvisor {c:>12?}  device {device:>10}"
            );
            let close = |v: Option<f64>, to: f64| v.is_some_and(|v| (v - to).abs() <= to * 0.01);
            if !close(n, device as f64) || !close(c, device as f64) || !close(n, c.unwrap_or(-1.0))
            {
                bad.push(format!(
                    "{name} {family}: nodetel {n:?}, cAdvisor {c:?}, device {device}"
                ));
            }
        }
    }
    // Filesystem usage: the writable layer plus Docker's files for the container, both agents
    // to the byte, and what `du` says of them (Docker's data root and layer database).
    let root = std::path::PathBuf::from(
        dockerd
            .docker(&["info", "--format", "{{.DockerRootDir}}"])?
            .trim(),
    );
    let mount_id = std::fs::read_to_string(
        root.join("image/overlay2/layerdb/mounts")
            .join(&fs)
            .join("mount-id"),
    )?;
    let du = |p: std::path::PathBuf| -> anyhow::Result<f64> { Ok(du_bytes(&p)? as f64) };
    let want = du(root.join("overlay2").join(mount_id.trim()).join("diff"))?
        + du(root.join("containers").join(&fs))?;
    let fs_id = format!("/docker/{fs}");
    let n = ours.value("container_fs_usage_bytes", &fs_id);
    let c = theirs.value("container_fs_usage_bytes", &fs_id);
    eprintln!("peer-fs  container_fs_usage_bytes nodetel {n:?}  cadvisor {c:?}  du {want}");
    if n != Some(want) || c != Some(want) {
        bad.push(format!(
            "peer-fs usage: nodetel {n:?}, cAdvisor {c:?}, du {want}"
        ));
    }
    for family in ["container_fs_limit_bytes", "container_fs_inodes_total"] {
        let (n, c) = (ours.value(family, &fs_id), theirs.value(family, &fs_id));
        eprintln!("peer-fs  {family} nodetel {n:?}  cadvisor {c:?}");
        if n.is_none() || n != c {
            bad.push(format!("peer-fs {family}: nodetel {n:?}, cAdvisor {c:?}"));
        }
    }

    // Loopback is nobody's bandwidth, in either agent.
    for (agent_name, e) in [("nodetel", &ours), ("cAdvisor", &theirs)] {
        for id in [&web_id, &get_id] {
            let lo = e.value_where(FAMILIES[0], id, "interface", "lo");
            if lo.is_some() {
                bad.push(format!("{agent_name} shows lo for {id}: {lo:?}"));
            }
        }
    }
    drop(peer);
    for name in ["peer-web", "peer-get", "peer-fs"] {
        dockerd.docker(&["rm", "-f", name])?;
    }
    dockerd.docker(&["network", "rm", "peer-bridge"])?;
    anyhow::ensure!(
        bad.is_empty(),
        "not within 1 % (network) or not equal (filesystem):\n{}",
        bad.join("\n")
    );
    Ok(())
}
