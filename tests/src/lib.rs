//! Helpers for the privileged integration tests: start the real agent, make real cgroups, burn
//! real CPU, and read the kernel's own accounting to compare with.
//!
//! Tests need root and BPF. Unprivileged, they print a loud SKIP and pass, unless
//! `NODETEL_REQUIRE_PRIVILEGED=1` (set by CI) turns the skip into a failure.
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};

pub mod browser;
pub mod cadvisor;
pub mod image;
pub mod matrix;
pub mod netns;
pub mod prometheus;
pub mod receivers;
pub mod runtimes;

pub const REQUIRE_ENV: &str = "NODETEL_REQUIRE_PRIVILEGED";

/// Returns true when the test may run; otherwise prints why and either skips or panics (CI).
pub fn privileged(test: &str) -> bool {
    let reason = if !is_root() {
        "not running as root"
    } else if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        "no kernel BTF at /sys/kernel/btf/vmlinux"
    } else if unified_root().is_none() {
        "no cgroup v2 hierarchy"
    } else {
        return true;
    };
    skip(
        test,
        &format!("{reason}. Privileged tests need root, BPF and cgroup v2"),
    )
}

/// The one way a test skips: loudly, and as a failure (a panic) when `NODETEL_REQUIRE_PRIVILEGED=1`
/// (CI), so nothing CI runs can pass by not running. Returns false, for `if !... { return }`.
pub fn skip(test: &str, reason: &str) -> bool {
    let msg = format!(
        "\n!!!!!!!! SKIPPED {test}: {reason}. Set {REQUIRE_ENV}=1 to make this a failure. !!!!!!!!\n"
    );
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{msg}");
    }
    eprintln!("{msg}");
    false
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// A tool the test needs (promtool, bpftool): absent is a skip, or a failure under CI.
pub fn require_tool(test: &str, tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found || skip(test, &format!("`{tool}` is not installed"))
}

/// The cgroup2 mount: `/sys/fs/cgroup` on pure v2 hosts, `/sys/fs/cgroup/unified` on hybrid ones.
pub fn unified_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").is_file())
}

/// The DaemonSet's pod as `cargo xtask deploy-check` translates it from the rendered manifest
/// (`target/deploy/daemonset-pod.json`): its capabilities, mounts, arguments and limits, so tests
/// run the agent exactly as the DaemonSet does.
pub fn daemonset_pod() -> anyhow::Result<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/deploy/daemonset-pod.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is missing: `cargo xtask deploy-check` writes it (`cargo xtask test` runs it first)",
            path.display()
        )
    })?;
    Ok(serde_json::from_str(&text)?)
}

/// The DaemonSet's added capabilities as `setpriv` names them (`bpf`, `perfmon`, ...).
pub fn daemonset_caps() -> anyhow::Result<Vec<String>> {
    Ok(daemonset_pod()?["caps_add"]
        .as_array()
        .context("caps_add")?
        .iter()
        .filter_map(|c| c.as_str().map(str::to_lowercase))
        .collect())
}

/// A `setpriv` prefix that runs its command as root with exactly `caps` (the bounding set;
/// nothing inherited), as a container granted only those runs.
pub fn with_only_caps(caps: &[String]) -> Vec<String> {
    let bounding = format!(
        "-all{}",
        caps.iter().map(|c| format!(",+{c}")).collect::<String>()
    );
    [
        "setpriv",
        "--bounding-set",
        &bounding,
        "--inh-caps",
        "-all",
        "--",
    ]
    .map(str::to_string)
    .to_vec()
}

/// The agent binary under test: `NODETEL_BIN`, else the workspace's release or debug build.
pub fn agent_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NODETEL_BIN") {
        return PathBuf::from(p);
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    for profile in ["release", "debug"] {
        let p = target.join(profile).join("nodetel");
        if p.is_file() {
            return p;
        }
    }
    panic!("no nodetel binary: run `cargo build -p nodetel` or set NODETEL_BIN");
}

/// A running agent on a free loopback port, stopped (SIGTERM) when dropped.
pub struct Agent {
    pub child: Child,
    pub addr: String,
    pub interval: Duration,
}

impl Agent {
    pub fn start(interval: Duration, extra: &[&str]) -> anyhow::Result<Agent> {
        let mut agent = Agent::spawn(interval, extra)?;
        agent.wait_healthy(Duration::from_secs(20))?;
        Ok(agent)
    }

    /// Started, not waited for: for an agent that does not answer plain HTTP (TLS), whose
    /// caller checks readiness its own way.
    pub fn spawn(interval: Duration, extra: &[&str]) -> anyhow::Result<Agent> {
        Agent::spawn_under(&[], interval, extra)
    }

    /// Started through `wrapper` (e.g. `setpriv` with a capability set), not waited for.
    pub fn spawn_under(
        wrapper: &[&str],
        interval: Duration,
        extra: &[&str],
    ) -> anyhow::Result<Agent> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let bin = agent_bin();
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        // The suite checks every kind's figures, so every kind is on unless a test chooses its
        // own set; the default set has its own test (lifecycle.rs).
        let chooses_kinds = extra
            .iter()
            .any(|a| a.starts_with("--enable-metrics") || a.starts_with("--disable-metrics"));
        if !chooses_kinds {
            cmd.arg("--disable-metrics=");
        }
        let child = cmd
            .args(["--listen", &addr])
            .args(["--interval", &format!("{}ms", interval.as_millis())])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn nodetel")?;
        Ok(Agent {
            child,
            addr,
            interval,
        })
    }

    /// An agent that names containers from `dockerd` alone: the host's own runtime sockets, if
    /// any, are left alone.
    pub fn start_with_dockerd(
        interval: Duration,
        dockerd: &runtimes::Dockerd,
    ) -> anyhow::Result<Agent> {
        Agent::start_with_runtime(interval, "--docker-socket", &dockerd.socket, &[])
    }

    /// An agent whose only runtime socket is `socket`, given to `flag` (`--docker-socket`,
    /// `--containerd-socket`, ...); the others are off. `extra` goes on the command line too.
    pub fn start_with_runtime(
        interval: Duration,
        flag: &str,
        socket: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Agent> {
        let socket = socket.display().to_string();
        let mut args: Vec<&str> = Vec::new();
        for f in [
            "--docker-socket",
            "--containerd-socket",
            "--podman-socket",
            "--crio-socket",
        ] {
            args.extend([f, if f == flag { socket.as_str() } else { "" }]);
        }
        args.extend_from_slice(extra);
        Agent::start(interval, &args)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn wait_healthy(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("nodetel exited before becoming healthy: {status}");
            }
            if matches!(self.get("/healthz"), Ok((200, _))) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        bail!("nodetel not healthy within {within:?}")
    }

    /// A plain HTTP/1.0 GET: status code and body.
    pub fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        http_get(&self.addr, path)
    }

    pub fn metrics(&self) -> anyhow::Result<String> {
        match self.get("/metrics")? {
            (200, body) => Ok(body),
            (code, body) => bail!("/metrics answered {code}: {body}"),
        }
    }

    /// Waits for a snapshot newer than the one currently served and returns it.
    pub fn next_metrics(&self) -> anyhow::Result<Exposition> {
        let first = Exposition(self.metrics()?);
        let t0 = first.snapshot_time();
        let deadline = Instant::now() + self.interval * 4 + Duration::from_secs(2);
        while Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
            let e = Exposition(self.metrics()?);
            if e.snapshot_time() > t0 {
                return Ok(e);
            }
        }
        bail!("no new snapshot within four intervals")
    }

    /// The first exposition whose figures were drained after unix time `t`: its pass began
    /// later, so every file it read was read after `t` (the ground truth's "before" bracket).
    pub fn metrics_after(&self, t: f64) -> anyhow::Result<Exposition> {
        let deadline = Instant::now() + self.interval * 8 + Duration::from_secs(2);
        while Instant::now() < deadline {
            let e = Exposition(self.metrics()?);
            if e.snapshot_time() > t {
                return Ok(e);
            }
            thread::sleep(Duration::from_millis(5));
        }
        bail!("no snapshot drained after {t} within eight intervals")
    }

    /// Takes fresh snapshots until `ok` holds or `within` has passed; the last one either way,
    /// so the caller's assertion reports what was served.
    pub fn scrape_until(
        &self,
        within: Duration,
        ok: impl Fn(&Exposition) -> bool,
    ) -> anyhow::Result<Exposition> {
        let deadline = Instant::now() + within;
        loop {
            let e = self.next_metrics()?;
            if ok(&e) || Instant::now() > deadline {
                return Ok(e);
            }
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        signal(self.child.id(), "TERM")?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        bail!("nodetel did not exit within {within:?} of SIGTERM")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = signal(self.child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `sig` (a name: `TERM`, `STOP`) to `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()?
        .success();
    if !ok {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}

pub fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    http_exchange(
        addr,
        &format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
    )
}

/// `POST path` with `body` (HTTP/1.0, the connection closed after the answer).
pub fn http_post(addr: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    http_exchange(
        addr,
        &format!(
            "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Sends `request` on a new connection; the answer's status and body.
fn http_exchange(addr: &str, request: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request.as_bytes())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status code")?;
    Ok((code, body.to_string()))
}

/// A scraped exposition with lookups by family and `id` label.
pub struct Exposition(pub String);

/// The value of a sample line: the first field after the name and labels (cAdvisor writes a
/// timestamp after it).
fn sample_value(line: &str) -> Option<f64> {
    let (_, rest) = line.rsplit_once('}').or_else(|| line.split_once(' '))?;
    rest.split_whitespace().next()?.parse().ok()
}

impl Exposition {
    /// The value of `family` for the cgroup whose `id` label is `id`.
    pub fn value(&self, family: &str, id: &str) -> Option<f64> {
        let needle = format!("id=\"{id}\"");
        self.0
            .lines()
            .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
            .find(|l| l.contains(&needle))
            .and_then(sample_value)
    }

    /// The value of `family` for the cgroup `id` in the series that also carries `label="value"`
    /// (e.g. one `interface`).
    pub fn value_where(&self, family: &str, id: &str, label: &str, value: &str) -> Option<f64> {
        let needles = [format!("id=\"{id}\""), format!("{label}=\"{value}\"")];
        self.0
            .lines()
            .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
            .find(|l| needles.iter().all(|n| l.contains(n.as_str())))
            .and_then(sample_value)
    }

    /// Every series of `family` for the cgroup `id`, as whole lines.
    pub fn lines_of(&self, family: &str, id: &str) -> Vec<&str> {
        let needle = format!("id=\"{id}\"");
        self.0
            .lines()
            .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
            .filter(|l| l.contains(&needle))
            .collect()
    }

    /// The value of an unlabelled agent metric.
    pub fn scalar(&self, name: &str) -> Option<f64> {
        self.0
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(sample_value)
    }

    pub fn mentions_id(&self, id: &str) -> bool {
        self.0.contains(&format!("id=\"{id}\""))
    }

    pub fn snapshot_time(&self) -> f64 {
        self.scalar("nodetel_last_collection_timestamp_seconds")
            .unwrap_or(0.0)
    }
}

/// The block device holding `path`: its `major:minor` and `/dev/<name>`.
pub fn block_device_of(path: &Path) -> anyhow::Result<(String, String)> {
    use std::os::unix::fs::MetadataExt as _;
    let st_dev = std::fs::metadata(path)?.dev();
    // Linux's dev_t encoding (glibc's major/minor).
    let major = ((st_dev >> 32) & 0xffff_f000) | ((st_dev >> 8) & 0xfff);
    let minor = ((st_dev >> 12) & 0xffff_ff00) | (st_dev & 0xff);
    let dev = format!("{major}:{minor}");
    let uevent =
        std::fs::read_to_string(format!("/sys/dev/block/{dev}/uevent")).with_context(|| {
            format!(
                "{} is on {dev}, which is not a block device",
                path.display()
            )
        })?;
    let name = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .context("no DEVNAME")?;
    Ok((dev, format!("/dev/{name}")))
}

/// Fields of the cgroup v2 `io.stat` line of device `dev` (`major:minor`) in `dir`, in this
/// order; zeros when the device has no line (no I/O yet).
pub fn io_stat<const N: usize>(dir: &Path, dev: &str, keys: [&str; N]) -> anyhow::Result<[f64; N]> {
    let text = std::fs::read_to_string(dir.join("io.stat"))?;
    let Some(line) = text.lines().find(|l| l.starts_with(&format!("{dev} "))) else {
        return Ok([0.0; N]);
    };
    let mut out = [0.0; N];
    for (v, k) in out.iter_mut().zip(keys) {
        *v = line
            .split_ascii_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{k}=")))
            .with_context(|| format!("no {k} in `{line}`"))?
            .parse::<f64>()
            .with_context(|| format!("{k} in `{line}`"))?;
    }
    Ok(out)
}

/// A cgroup made for one test under the cgroup2 root, removed (with its processes) on drop.
pub struct TestCgroup {
    pub rel: String,
    pub dir: PathBuf,
    /// On a hybrid host, the same relative path in v1 hierarchies (controller, directory), made
    /// by [`TestCgroup::v1`]: that is where quotas and memory live there.
    v1: Vec<(&'static str, PathBuf)>,
}

impl TestCgroup {
    pub fn create(name: &str) -> anyhow::Result<TestCgroup> {
        let root = unified_root().context("no cgroup2")?;
        let rel = format!("/nodetel-it-{}-{name}", std::process::id());
        let dir = root.join(rel.trim_start_matches('/'));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        Ok(TestCgroup {
            rel,
            dir,
            v1: Vec::new(),
        })
    }

    pub fn child(&self, name: &str) -> anyhow::Result<TestCgroup> {
        let dir = self.dir.join(name);
        std::fs::create_dir(&dir)?;
        Ok(TestCgroup {
            rel: format!("{}/{name}", self.rel),
            dir,
            v1: Vec::new(),
        })
    }

    /// The kernel's own figure: `usage_usec` of this cgroup's cpu.stat, in seconds.
    pub fn kernel_usage_seconds(&self) -> anyhow::Result<f64> {
        let text = std::fs::read_to_string(self.dir.join("cpu.stat"))?;
        let usec: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .context("no usage_usec")?
            .trim()
            .parse()?;
        Ok(usec as f64 / 1e6)
    }

    /// Starts a shell that moves itself into this cgroup, then becomes `script`.
    ///
    /// Returns once the move is done, so no time is charged elsewhere. The shell reports the
    /// move on a pipe rather than the caller polling `cgroup.procs`: a short script can run
    /// and exit between two polls (seen in CI), and then it never "appears".
    pub fn spawn(&self, script: &str) -> anyhow::Result<Child> {
        let mut moves = format!("echo $$ > '{}'", self.dir.join("cgroup.procs").display());
        for (_, v1) in &self.v1 {
            moves += &format!(" && echo $$ > '{}'", v1.join("cgroup.procs").display());
        }
        let cmd = format!("{moves} && echo moved && exec sh -c '{script}' >&2");
        let mut child = Command::new("sh")
            .args(["-c", &cmd])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut out = child.stdout.take().context("child stdout")?;
        let mut line = [0u8; 6];
        // The write to cgroup.procs has returned before "moved" is printed; a failed move ends
        // the shell (&&), which closes the pipe and fails the read.
        if out.read_exact(&mut line).is_ok() && &line == b"moved\n" {
            return Ok(child);
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("could not move a shell into {}", self.rel)
    }

    /// Starts a busy loop in this cgroup: one CPU's worth of user time until killed.
    pub fn burn(&self) -> anyhow::Result<Child> {
        self.spawn("while :; do :; done")
    }

    /// Sets a CFS quota: `cpu.max` on cgroup v2; on a hybrid host (where the cpu controller is
    /// v1) a directory at the same relative path in the v1 `cpu` hierarchy, which later spawns
    /// join too. Call before spawning.
    pub fn limit_cpu(&mut self, quota_us: u64, period_us: u64) -> anyhow::Result<()> {
        if self.dir.join("cpu.max").is_file() {
            std::fs::write(self.dir.join("cpu.max"), format!("{quota_us} {period_us}"))?;
            return Ok(());
        }
        let dir = self
            .v1("cpu")?
            .context("no cpu.max and no v1 cpu hierarchy")?;
        std::fs::write(dir.join("cpu.cfs_period_us"), period_us.to_string())?;
        std::fs::write(dir.join("cpu.cfs_quota_us"), quota_us.to_string())?;
        Ok(())
    }

    /// On a hybrid host, this cgroup's directory in the v1 hierarchy of `controller` (made on
    /// first use; later spawns join it too). `None` on pure v2, where the v2 directory has it.
    pub fn v1(&mut self, controller: &'static str) -> anyhow::Result<Option<PathBuf>> {
        if let Some((_, d)) = self.v1.iter().find(|(c, _)| *c == controller) {
            return Ok(Some(d.clone()));
        }
        if unified_root().is_some_and(|r| r == Path::new("/sys/fs/cgroup")) {
            return Ok(None);
        }
        let Some(mount) = v1_mount(controller) else {
            return Ok(None);
        };
        let dir = mount.join(self.rel.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        self.v1.push((controller, dir.clone()));
        Ok(Some(dir))
    }

    /// Where this cgroup's `controller` files are: its v1 directory on a hybrid host, else the
    /// v2 one.
    pub fn controller_dir(&mut self, controller: &'static str) -> anyhow::Result<PathBuf> {
        Ok(self.v1(controller)?.unwrap_or_else(|| self.dir.clone()))
    }

    /// The kernel's CFS figures: (periods, throttled periods, throttled seconds), from v2
    /// `cpu.stat` or the v1 cpu hierarchy's `cpu.stat`.
    pub fn kernel_throttling(&self) -> anyhow::Result<(u64, u64, f64)> {
        let v1 = self.v1.iter().find(|(c, _)| *c == "cpu").map(|(_, d)| d);
        let (file, time_key, time_unit) = match v1 {
            Some(v1) => (v1.join("cpu.stat"), "throttled_time", 1e9),
            None => (self.dir.join("cpu.stat"), "throttled_usec", 1e6),
        };
        let text = std::fs::read_to_string(&file)?;
        let get = |key: &str| -> anyhow::Result<u64> {
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .find(|(k, _)| *k == key)
                .with_context(|| format!("no {key} in {}", file.display()))?
                .1
                .trim()
                .parse()
                .with_context(|| format!("{key} in {}", file.display()))
        };
        Ok((
            get("nr_periods")?,
            get("nr_throttled")?,
            get(time_key)? as f64 / time_unit,
        ))
    }

    pub fn remove(&self) -> anyhow::Result<()> {
        kill_all(&self.dir);
        std::fs::remove_dir(&self.dir).with_context(|| format!("rmdir {}", self.dir.display()))
    }
}

fn kill_all(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                kill_all(&e.path());
            }
        }
    }
    for _ in 0..50 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if procs.trim().is_empty() {
            return;
        }
        // Never signal pid 0 (our own process group) on an unparsable line.
        for pid in procs.lines().filter_map(|p| p.trim().parse::<u32>().ok()) {
            if pid > 0 {
                let _ = signal(pid, "KILL");
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if self.dir.exists() {
            kill_all(&self.dir);
            // Children first: remove_dir fails on a non-empty cgroup.
            let mut dirs = vec![self.dir.clone()];
            let mut i = 0;
            while i < dirs.len() {
                if let Ok(entries) = std::fs::read_dir(&dirs[i]) {
                    for e in entries.flatten() {
                        if e.file_type().is_ok_and(|t| t.is_dir()) {
                            dirs.push(e.path());
                        }
                    }
                }
                i += 1;
            }
            for d in dirs.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
        for (_, v1) in &self.v1 {
            kill_all(v1);
            let _ = std::fs::remove_dir(v1);
        }
    }
}

/// Where a v1 controller is mounted (alone or co-mounted, e.g. `cpu,cpuacct`), if anywhere.
pub fn v1_mount(controller: &str) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (dir, fstype, opts) = (f.get(1)?, f.get(2)?, f.get(3)?);
        (*fstype == "cgroup" && opts.split(',').any(|o| o == controller))
            .then(|| PathBuf::from(dir))
    })
}

/// Records a cgroup's kernel usage every few milliseconds with wall-clock times, so the value at
/// the instant the agent drained its maps can be interpolated.
pub struct KernelSampler {
    samples: Arc<Mutex<Vec<(f64, f64)>>>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl KernelSampler {
    pub fn start(cpu_stat: PathBuf) -> KernelSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&samples), Arc::clone(&stop));
        let handle = thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                if let Ok(text) = std::fs::read_to_string(&cpu_stat) {
                    let usec = text
                        .lines()
                        .find_map(|l| l.strip_prefix("usage_usec "))
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    if let (Some(usec), Ok(mut v)) = (usec, s.lock()) {
                        v.push((now, usec as f64 / 1e6));
                    }
                }
                thread::sleep(Duration::from_millis(2));
            }
        });
        KernelSampler {
            samples,
            stop,
            handle: Some(handle),
        }
    }

    /// Kernel usage (s) at wall time `t`, interpolated between the samples around it.
    pub fn at(&self, t: f64) -> Option<f64> {
        let v = self.samples.lock().ok()?;
        let i = v.iter().position(|&(ts, _)| ts >= t)?;
        if i == 0 {
            return None;
        }
        let ((t0, u0), (t1, u1)) = (v[i - 1], v[i]);
        if t1 - t0 > 0.05 {
            return None; // a gap in sampling: no trustworthy value
        }
        Some(u0 + (u1 - u0) * (t - t0) / (t1 - t0).max(1e-9))
    }
}

impl Drop for KernelSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The wall clock as unix seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Relative difference of `got` from `want`.
pub fn rel_err(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs().max(1e-9)
}

/// The keys of one of the agent's eBPF maps, read from the kernel with bpftool: the maps the
/// agent's process holds (`map_id` in its fdinfo) whose name is `name`. Ground truth for what
/// the agent prunes.
pub fn bpf_map_keys(agent_pid: u32, name: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut ids: Vec<u32> = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{agent_pid}/fdinfo"))?.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        ids.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("map_id:"))
                .filter_map(|v| v.trim().parse::<u32>().ok()),
        );
    }
    ids.sort_unstable();
    ids.dedup();
    let bpftool = |args: &[&str]| -> anyhow::Result<serde_json::Value> {
        let out = Command::new("bpftool").arg("-j").args(args).output()?;
        anyhow::ensure!(out.status.success(), "bpftool {args:?}: {}", out.status);
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    for id in ids {
        let id = id.to_string();
        let info = bpftool(&["map", "show", "id", &id])?;
        if info["name"].as_str() != Some(name) {
            continue;
        }
        let dump = bpftool(&["map", "dump", "id", &id])?;
        let byte = |b: &serde_json::Value| {
            b.as_str()
                .and_then(|s| u8::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        };
        return dump
            .as_array()
            .context("bpftool dump is not a list")?
            .iter()
            .map(|entry| {
                entry["key"]
                    .as_array()
                    .context("entry without a raw key")?
                    .iter()
                    .map(|b| byte(b).context("key byte"))
                    .collect()
            })
            .collect();
    }
    bail!("the agent (pid {agent_pid}) holds no map named {name}")
}

/// The states the kernel shows for the threads of one cgroup itself (its `cgroup.threads`):
/// running, sleeping, stopped, uninterruptible (`R`, `S`, `T`, `D` in `/proc/<tid>/stat`).
pub fn thread_states(dir: &Path) -> anyhow::Result<[u64; 4]> {
    let mut n = [0u64; 4];
    for tid in std::fs::read_to_string(dir.join("cgroup.threads"))?.lines() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", tid.trim())) else {
            continue;
        };
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next());
        match state {
            Some("R") => n[0] += 1,
            Some("S") => n[1] += 1,
            Some("T") => n[2] += 1,
            Some("D") => n[3] += 1,
            _ => {}
        }
    }
    Ok(n)
}
