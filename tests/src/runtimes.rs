//! Real container runtimes for the identity tests: a private dockerd and a private containerd
//! (Debian's docker.io package), each with its own socket, state and root under
//! `/run/nodetel-test` and `/var/lib/nodetel-test`, so the host's own runtimes (if any) are
//! never touched. Both are stopped when dropped.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{Agent, Exposition};

/// The image every test container runs: busybox-static, imported without a registry.
pub const IMAGE: &str = "nodetel-test/busybox:1";

const RUN_DIR: &str = "/run/nodetel-test";
const LIB_DIR: &str = "/var/lib/nodetel-test";

/// Runs a command, failing with its stderr when it fails; returns its stdout.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn wait_for(what: &str, within: Duration, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} not ready within {within:?}")
}

/// SIGTERM, up to `within` to exit, then SIGKILL; always reaped.
pub fn stop(child: &mut Child, within: Duration) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = crate::signal(child.id(), "TERM");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// A private dockerd (its own managed containerd, no bridge or iptables, live-restore so
/// containers outlive a daemon restart as on production hosts).
pub struct Dockerd {
    child: Option<Child>,
    pub socket: PathBuf,
    name: String,
    /// Off for a Swarm manager: dockerd refuses swarm mode with live-restore.
    live_restore: bool,
}

impl Dockerd {
    /// The daemon's pid (for SIGSTOP/SIGCONT).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn start(name: &str) -> anyhow::Result<Dockerd> {
        Dockerd::start_with(name, true)
    }

    /// Its `--data-root` (images, layers, `image/overlay2/layerdb`).
    pub fn data_root(&self) -> PathBuf {
        Path::new(LIB_DIR).join(&self.name).join("data")
    }

    /// A daemon that can be made a Swarm manager (no live-restore).
    pub fn start_for_swarm(name: &str) -> anyhow::Result<Dockerd> {
        Dockerd::start_with(name, false)
    }

    fn start_with(name: &str, live_restore: bool) -> anyhow::Result<Dockerd> {
        let mut d = Dockerd {
            child: None,
            socket: Path::new(RUN_DIR).join(name).join("docker.sock"),
            name: name.to_string(),
            live_restore,
        };
        d.spawn()?;
        Ok(d)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let run = Path::new(RUN_DIR).join(&self.name);
        let lib = Path::new(LIB_DIR).join(&self.name);
        fs::create_dir_all(&run)?;
        fs::create_dir_all(&lib)?;
        let log = fs::File::create(run.join("dockerd.log"))?;
        let child = Command::new("dockerd")
            .arg(format!("--host=unix://{}", self.socket.display()))
            .arg(format!("--data-root={}", lib.join("data").display()))
            .arg(format!("--exec-root={}", run.join("exec").display()))
            .arg(format!("--pidfile={}", run.join("dockerd.pid").display()))
            .args(["--bridge=none", "--iptables=false"])
            .args(self.live_restore.then_some("--live-restore"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn dockerd (apt-get install docker.io)")?;
        self.child = Some(child);
        wait_for("dockerd", Duration::from_secs(30), || {
            self.docker(&["version", "--format", "{{.Server.APIVersion}}"])
                .is_ok()
        })
        .with_context(|| {
            let log = fs::read_to_string(run.join("dockerd.log")).unwrap_or_default();
            format!("dockerd log:\n{log}")
        })
    }

    /// `docker -H <this daemon> args...`
    pub fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args))
    }

    /// Imports the busybox image (once per data root).
    pub fn ensure_image(&self) -> anyhow::Result<()> {
        if self.docker(&["image", "inspect", IMAGE]).is_ok() {
            return Ok(());
        }
        let tar = busybox_rootfs_tar()?;
        self.docker(&[
            "import",
            "-c",
            r#"CMD ["/bin/sh"]"#,
            &tar.display().to_string(),
            IMAGE,
        ])?;
        Ok(())
    }

    /// Kills the daemon outright (SIGKILL: its socket file stays behind, as after a crash).
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.child.is_some()
            && let Ok(ids) = self.docker(&["ps", "-aq"])
        {
            for id in ids.split_whitespace() {
                let _ = self.docker(&["rm", "-f", id]);
            }
        }
        if let Some(mut c) = self.child.take() {
            stop(&mut c, Duration::from_secs(15));
        }
        // dockerd's cgroup parent, empty once its containers are gone (rmdir keeps a busy one).
        if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                let _ = fs::remove_dir(e.path().join("docker"));
            }
        }
        if let Some(unified) = crate::unified_root() {
            let _ = fs::remove_dir(unified.join("docker"));
        }
    }
}

/// `du -s -B1 --one-file-system`: the bytes a directory allocates (hard links once), what
/// cAdvisor's walk and nodetel's count for a writable layer.
pub fn du_bytes(dir: &Path) -> anyhow::Result<u64> {
    let out = run(Command::new("du")
        .args(["-s", "-B1", "--one-file-system"])
        .arg(dir))?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("du output {out:?}"))
}

/// A root filesystem with busybox-static and the applets the tests use, as a tarball.
pub fn busybox_rootfs_tar() -> anyhow::Result<PathBuf> {
    let dir = Path::new(LIB_DIR).join("rootfs");
    let tar = Path::new(LIB_DIR).join("busybox-rootfs.tar");
    if tar.is_file() {
        return Ok(tar);
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .context("no busybox (apt-get install busybox-static)")?;
    fs::create_dir_all(dir.join("bin"))?;
    fs::copy(busybox, dir.join("bin/busybox"))?;
    for applet in ["sh", "sleep", "cat", "dd", "true"] {
        let link = dir.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link)?;
        }
    }
    for d in ["proc", "sys", "dev", "etc", "tmp"] {
        fs::create_dir_all(dir.join(d))?;
    }
    run(Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&tar)
        .arg("."))?;
    Ok(tar)
}

/// A private containerd (what kubelet talks to through CRI; here driven with `ctr`).
pub struct Containerd {
    child: Child,
    pub socket: PathBuf,
    /// Its data root (a node's `/var/lib/containerd`): snapshots, hence writable layers.
    pub root: PathBuf,
}

impl Containerd {
    pub fn start(name: &str) -> anyhow::Result<Containerd> {
        let run_dir = Path::new(RUN_DIR).join(name);
        let lib = Path::new(LIB_DIR).join(name);
        fs::create_dir_all(&run_dir)?;
        fs::create_dir_all(&lib)?;
        let socket = run_dir.join("containerd.sock");
        let config = run_dir.join("config.toml");
        // Only what a task needs: no CRI plugin (no kubelet here), the default runc shim.
        fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{}\"\n",
                lib.join("root").display(),
                run_dir.join("state").display(),
                socket.display()
            ),
        )?;
        let log = fs::File::create(run_dir.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn containerd (apt-get install docker.io)")?;
        let c = Containerd {
            child,
            socket,
            root: lib.join("root"),
        };
        wait_for("containerd", Duration::from_secs(30), || {
            c.ctr("default", &["version"]).is_ok()
        })?;
        Ok(c)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Imports the busybox test image into `namespace` (saved from Docker once: no registry).
    pub fn import_image(&self, namespace: &str) -> anyhow::Result<String> {
        let tar = Path::new(LIB_DIR).join("busybox-image.tar");
        if !tar.is_file() {
            let dockerd = Dockerd::start("docker-image")?;
            dockerd.ensure_image()?;
            dockerd.docker(&["save", "-o", &tar.display().to_string(), IMAGE])?;
        }
        self.ctr(namespace, &["images", "import", &tar.display().to_string()])?;
        Ok(format!("docker.io/{IMAGE}"))
    }

    /// `ctr --address <this daemon> -n <namespace> args...`
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", namespace])
            .args(args))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for ns in ["k8s.io", "default"] {
            if let Ok(tasks) = self.ctr(ns, &["tasks", "ls", "-q"]) {
                for t in tasks.split_whitespace() {
                    let _ = self.ctr(ns, &["tasks", "kill", "-s", "KILL", t]);
                    thread::sleep(Duration::from_millis(200));
                    let _ = self.ctr(ns, &["tasks", "rm", "-f", t]);
                }
            }
            if let Ok(cs) = self.ctr(ns, &["containers", "ls", "-q"]) {
                for c in cs.split_whitespace() {
                    let _ = self.ctr(ns, &["containers", "rm", c]);
                }
            }
        }
        stop(&mut self.child, Duration::from_secs(15));
    }
}

/// `key="value"` of the first series of `family` for cgroup `id`.
pub fn label<'a>(e: &'a Exposition, family: &str, id: &str, key: &str) -> Option<&'a str> {
    let line = e.lines_of(family, id).into_iter().next()?;
    let start = line.find(&format!("{key}=\""))? + key.len() + 2;
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

pub fn resolver_value(e: &Exposition, family: &str, resolver: &str) -> Option<f64> {
    let prefix = format!("{family}{{resolver=\"{resolver}\"}} ");
    e.0.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

pub fn random_hex64() -> anyhow::Result<String> {
    let mut id = String::new();
    while id.len() < 64 {
        id.push_str(
            &std::fs::read_to_string("/proc/sys/kernel/random/uuid")?
                .trim()
                .replace('-', ""),
        );
    }
    id.truncate(64);
    Ok(id)
}

/// Waits until `id`'s series say `name="<name>"`; returns how long it took and the exposition.
pub fn wait_named(
    agent: &Agent,
    id: &str,
    name: &str,
    within: Duration,
) -> anyhow::Result<(Duration, Exposition)> {
    let t0 = Instant::now();
    let e = agent.scrape_until(within, |e| {
        label(e, "container_last_seen", id, "name") == Some(name)
    })?;
    Ok((t0.elapsed(), e))
}

/// Removes the kubelet-style cgroups the test's tasks left, deepest first, in every hierarchy.
pub fn remove_cgroup_dirs(rel: &[String]) {
    let mut roots = vec![];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(entries.flatten().map(|e| e.path()));
    }
    roots.extend(crate::unified_root());
    for root in roots {
        for r in rel.iter().rev() {
            let _ = std::fs::remove_dir(root.join(r.trim_start_matches('/')));
        }
    }
}
