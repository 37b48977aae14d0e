//! Push into real receivers. Remote write into Prometheus (Debian's 2.42 with
//! `--web.enable-remote-write-receiver`): what arrives is what `/metrics` served, sample for
//! sample at the same pass times, with the external labels; a receiver that goes away for a
//! while loses nothing of its absence, nor does a killed agent with a spool. cAdvisor's
//! InfluxDB schema into InfluxDB 1.6, and both protocols into VictoriaMetrics 1.79.
//!
//! Host only: the VM suite has none of these receivers.
use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use nodetel_integration_tests::{
    Agent, Exposition, TestCgroup,
    netns::{Netns, ip},
    privileged,
    prometheus::Prometheus,
    receivers::{InfluxDb, VictoriaMetrics},
    require_tool, unix_now,
};

/// A fresh directory for one test's receivers (with a `data` subdirectory, as Prometheus wants).
fn workdir(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = Path::new("/var/lib/nodetel-test").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data"))?;
    Ok(dir)
}

/// The value of the first self-metric line of `family` that contains every one of `needles`.
fn self_metric(e: &Exposition, family: &str, needles: &[&str]) -> Option<f64> {
    e.0.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

/// The raw samples Prometheus holds for `selector` over the last `window`: time (ms) -> value.
fn raw_samples(
    prom: &Prometheus,
    selector: &str,
    window: &str,
) -> anyhow::Result<BTreeMap<i64, f64>> {
    let result = prom.query(&format!("{selector}[{window}]"))?;
    ensure!(result.len() <= 1, "{selector}: {} series", result.len());
    let mut out = BTreeMap::new();
    for r in result {
        for v in r["values"].as_array().context("no values")? {
            let t = v[0].as_f64().context("time")?;
            let value: f64 = v[1].as_str().context("value")?.parse()?;
            out.insert((t * 1000.0).round() as i64, value);
        }
    }
    Ok(out)
}

#[test]
fn pushed_samples_are_the_scraped_ones() -> anyhow::Result<()> {
    const TEST: &str = "pushed_samples_are_the_scraped_ones";
    if !privileged(TEST) || !require_tool(TEST, "prometheus") {
        return Ok(());
    }
    let dir = &workdir("push-receiver")?;
    let prom = Prometheus::start_receiver(dir, None)?;

    let cg = TestCgroup::create("push")?;
    let _busy = cg.burn()?;
    let agent = Agent::start(
        Duration::from_millis(500),
        &[
            "--remote-write-url",
            &format!("http://{}/api/v1/write", prom.addr),
            "--remote-write-interval",
            "1s",
            "--remote-write-label",
            "cluster=test",
            "--node-name",
            "push-node",
        ],
    )?;
    let selector = format!(
        "container_cpu_usage_seconds_total{{id=\"{}\",job=\"nodetel\",instance=\"push-node\",cluster=\"test\"}}",
        cg.rel
    );
    // Scrapes of the agent meanwhile: pass time (ms) -> the value /metrics served.
    let mut scraped = BTreeMap::new();
    let mut series_at = BTreeMap::new();
    // 30 s of pushing, as an operator would first look.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let e = agent.next_metrics()?;
        let t = (e.snapshot_time() * 1000.0).round() as i64;
        if let Some(v) = e.value("container_cpu_usage_seconds_total", &cg.rel) {
            scraped.insert(t, v);
        }
        let lines =
            e.0.lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .count();
        series_at.insert(t, lines);
    }
    thread::sleep(Duration::from_secs(2));
    let pushed = raw_samples(&prom, &selector, "1m")?;
    let same: Vec<(i64, f64, f64)> = scraped
        .iter()
        .filter_map(|(t, v)| pushed.get(t).map(|p| (*t, *v, *p)))
        .collect();
    eprintln!(
        "push: {} samples pushed, {} scrapes, {} at the same pass",
        pushed.len(),
        scraped.len(),
        same.len()
    );
    ensure!(
        pushed.len() >= 25,
        "only {} samples in 30 s at 1 s",
        pushed.len()
    );
    ensure!(
        same.len() >= 4,
        "only {} pushed passes were also scraped",
        same.len()
    );
    for (t, scrape, push) in &same {
        ensure!(
            scrape == push,
            "pass at {t} ms: scraped {scrape}, pushed {push}"
        );
    }
    // Every series of a pass arrived: the count at a pushed pass equals the scrape's lines.
    let (t, lines) = series_at
        .iter()
        .rev()
        .find(|(t, _)| pushed.contains_key(t))
        .context("no scraped pass was pushed")?;
    let at = *t as f64 / 1000.0;
    let count = prom.api(&format!(
        "/api/v1/query?query=count(%7Bjob%3D%22nodetel%22%7D)&time={at:.3}"
    ))?["result"][0]["value"][1]
        .as_str()
        .context("no count")?
        .parse::<f64>()?;
    eprintln!("push: {count} series in Prometheus at {at}, {lines} lines in the scrape");
    ensure!(
        count as usize == *lines,
        "{count} series pushed, {lines} served"
    );

    Ok(())
}

/// The batches a spool directory holds: (pass time in ms, samples), oldest first.
fn spooled(root: &Path) -> anyhow::Result<Vec<(i64, usize)>> {
    let mut out = Vec::new();
    for receiver in std::fs::read_dir(root)? {
        for f in std::fs::read_dir(receiver?.path())? {
            let name = f?.file_name().to_string_lossy().into_owned();
            let Some((at, samples)) = name.strip_suffix(".batch").and_then(|s| s.split_once('-'))
            else {
                continue;
            };
            out.push((at.parse()?, samples.parse()?));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// With `--remote-write-spool-dir`, an agent killed (SIGKILL: no chance to save anything) while
/// its receiver is away loses nothing: the next agent sends what the first left, oldest first,
/// and then its own. Checked pass by pass: every batch file the killed agent left arrives in
/// Prometheus at its pass time with every series it held.
#[test]
fn a_killed_agent_s_spool_is_sent_by_the_next_one() -> anyhow::Result<()> {
    const TEST: &str = "a_killed_agent_s_spool_is_sent_by_the_next_one";
    if !privileged(TEST) || !require_tool(TEST, "prometheus") {
        return Ok(());
    }
    let dir = &workdir("push-spool")?;
    let spool = dir.join("spool");
    // An address nothing listens on yet: the receiver is away from the start.
    let addr = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    );
    let cg = TestCgroup::create("push-spool")?;
    let _busy = cg.burn()?;
    let url = format!("http://{addr}/api/v1/write");
    let spool_arg = spool.display().to_string();
    let args = [
        "--remote-write-url",
        url.as_str(),
        "--remote-write-interval",
        "1s",
        "--remote-write-spool-dir",
        spool_arg.as_str(),
        "--node-name",
        "spool-node",
    ];
    let mut first = Agent::start(Duration::from_millis(500), &args)?;
    thread::sleep(Duration::from_secs(8));
    let m = first.next_metrics()?;
    let waiting =
        self_metric(&m, "nodetel_remote_write_spool_batches", &[]).context("no spool gauge")?;
    ensure!(waiting >= 6.0, "{waiting} batches spooled after 8 s at 1 s");
    first.child.kill()?;
    first.child.wait()?;
    let left = spooled(&spool)?;
    eprintln!(
        "push spool: the killed agent left {} batches ({} samples)",
        left.len(),
        left.iter().map(|(_, s)| s).sum::<usize>()
    );
    ensure!(left.len() >= 6, "only {} batches on disk", left.len());

    // The next agent starts with the receiver still away, then the receiver comes.
    let second = Agent::start(Duration::from_millis(500), &args)?;
    thread::sleep(Duration::from_secs(3));
    let prom = Prometheus::start_receiver(dir, Some(&addr))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = second.next_metrics()?;
        if self_metric(&m, "nodetel_remote_write_spool_batches", &[]) == Some(0.0) {
            break;
        }
        ensure!(Instant::now() < deadline, "the spool never emptied");
    }
    let selector = format!(
        "container_cpu_usage_seconds_total{{id=\"{}\",instance=\"spool-node\"}}",
        cg.rel
    );
    let pushed = raw_samples(&prom, &selector, "2m")?;
    for (at_ms, samples) in &left {
        ensure!(
            pushed.contains_key(at_ms),
            "the killed agent's pass at {at_ms} ms never arrived ({} samples of the cgroup)",
            pushed.len()
        );
        // Series with a sample at exactly that pass's time (passes are a second apart).
        let count = prom.api(&format!(
            "/api/v1/query?query=count(last_over_time(%7Binstance%3D%22spool-node%22%7D%5B1ms%5D))&time={t}",
            t = format_args!("{:.3}", *at_ms as f64 / 1000.0)
        ))?["result"][0]["value"][1]
            .as_str()
            .context("no count")?
            .parse::<f64>()?;
        ensure!(
            count as usize == *samples,
            "pass at {at_ms} ms: {count} series arrived, {samples} spooled"
        );
    }
    let values: Vec<f64> = pushed
        .range(..=left.last().map_or(0, |l| l.0))
        .map(|(_, v)| *v)
        .collect();
    ensure!(
        values.windows(2).all(|w| w[1] >= w[0]),
        "the killed agent's counter went back: passes out of order"
    );
    let after: Vec<&i64> = pushed
        .keys()
        .filter(|t| **t > left.last().map_or(0, |l| l.0))
        .collect();
    eprintln!(
        "push spool: all {} passes arrived with every series; the next agent's own passes: {}",
        left.len(),
        after.len()
    );
    ensure!(
        !after.is_empty(),
        "the next agent's own passes never arrived"
    );
    Ok(())
}

/// Scrapes the agent for `secs` seconds: pass time (ms) -> the exposition.
fn scrapes(agent: &Agent, secs: u64) -> anyhow::Result<BTreeMap<i64, Exposition>> {
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        let e = agent.next_metrics()?;
        out.insert((e.snapshot_time() * 1000.0).round() as i64, e);
    }
    Ok(out)
}

/// cAdvisor's InfluxDB storage driver, as its users start it (underscore flags), into a real
/// InfluxDB 1.6: InfluxQL in cAdvisor's schema returns the test cgroup's figures, each point
/// equal to what `/metrics` served for the same pass.
#[test]
fn influxdb_gets_cadvisor_s_schema_with_the_served_figures() -> anyhow::Result<()> {
    const TEST: &str = "influxdb_gets_cadvisor_s_schema_with_the_served_figures";
    if !privileged(TEST) || !require_tool(TEST, "influxd") {
        return Ok(());
    }
    let dir = &workdir("push-influxdb")?;
    let influx = InfluxDb::start(dir, "cadvisor")?;
    let mut cg = TestCgroup::create("push-influx")?;
    // On a hybrid host memory is a v1 controller: the burner joins its v1 cgroup too.
    cg.v1("memory")?;
    let _busy = cg.burn()?;
    let host = format!("--storage_driver_host={}", influx.addr);
    let agent = Agent::start(
        Duration::from_millis(500),
        &[
            "--storage_driver=influxdb",
            &host,
            "--storage_driver_db=cadvisor",
            "--storage_driver_buffer_duration=2s",
            "--remote-write-interval=1s",
            "--node-name=influx-node",
        ],
    )?;
    let served = scrapes(&agent, 10)?;
    thread::sleep(Duration::from_secs(4));
    let name = cg.rel.replace('\'', "\\'");
    let points = |measurement: &str| -> anyhow::Result<BTreeMap<i64, f64>> {
        let rows = influx.query(
            "cadvisor",
            &format!("SELECT value FROM {measurement} WHERE container_name = '{name}' AND machine = 'influx-node'"),
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.first()?.as_i64()?, r.get(1)?.as_f64()?)))
            .collect())
    };
    // (measurement, family, factor from the family's unit to the measurement's)
    let pairs = [
        ("memory_usage", "container_memory_usage_bytes", 1.0),
        (
            "memory_working_set",
            "container_memory_working_set_bytes",
            1.0,
        ),
        ("memory_rss", "container_memory_rss", 1.0),
        ("memory_cache", "container_memory_cache", 1.0),
        ("cpu_usage_user", "container_cpu_user_seconds_total", 1e9),
        (
            "cpu_usage_system",
            "container_cpu_system_seconds_total",
            1e9,
        ),
    ];
    for (measurement, family, factor) in pairs {
        let pushed = points(measurement)?;
        let same: Vec<(i64, f64, f64)> = served
            .iter()
            .filter_map(|(t, e)| Some((*t, e.value(family, &cg.rel)? * factor, *pushed.get(t)?)))
            .collect();
        eprintln!(
            "influxdb: {measurement}: {} points, {} at a scraped pass",
            pushed.len(),
            same.len()
        );
        ensure!(
            same.len() >= 4,
            "{measurement}: {} passes in common",
            same.len()
        );
        for (t, scraped, point) in same {
            // Seconds in the exposition are printed with 9 decimals at most.
            ensure!(
                (scraped - point).abs() <= 1.0,
                "{measurement} at {t}: served {scraped}, pushed {point}"
            );
        }
    }
    // cAdvisor's own query: the busy loop's rate of CPU nanoseconds (one thread: near 1e9/s).
    let rates = influx.query(
        "cadvisor",
        &format!(
            "SELECT derivative(value, 1s) FROM cpu_usage_total WHERE container_name = '{name}'"
        ),
    )?;
    let rates: Vec<f64> = rates.iter().filter_map(|r| r.get(1)?.as_f64()).collect();
    eprintln!("influxdb: derivative(cpu_usage_total) per second: {rates:?}");
    ensure!(rates.len() >= 5, "only {} rates", rates.len());
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    ensure!(
        (0.5e9..=1.1e9).contains(&mean),
        "a busy loop at {mean} ns a second"
    );
    let keys = influx.query("cadvisor", "SHOW TAG KEYS FROM memory_failure")?;
    let keys: Vec<&str> = keys.iter().filter_map(|r| r.first()?.as_str()).collect();
    for k in ["container_name", "machine", "failure_type", "scope", "id"] {
        ensure!(
            keys.contains(&k),
            "memory_failure has no `{k}` tag: {keys:?}"
        );
    }
    let m = agent.next_metrics()?;
    let sent = self_metric(
        &m,
        "nodetel_remote_write_samples_total",
        &["/write?db=cadvisor", "result=\"sent\""],
    )
    .context("no sent count for the InfluxDB receiver")?;
    ensure!(sent > 0.0, "no points counted as sent");
    Ok(())
}

/// VictoriaMetrics takes both: remote write at `/api/v1/write` and cAdvisor's InfluxDB line
/// protocol at `/write` (dash spellings of the driver flags this time), from one agent.
#[test]
fn victoria_metrics_takes_remote_write_and_line_protocol() -> anyhow::Result<()> {
    const TEST: &str = "victoria_metrics_takes_remote_write_and_line_protocol";
    if !privileged(TEST) || !require_tool(TEST, "victoria-metrics") {
        return Ok(());
    }
    let dir = &workdir("push-victoria-metrics")?;
    let vm = VictoriaMetrics::start(dir)?;
    let mut cg = TestCgroup::create("push-vm")?;
    // On a hybrid host memory is a v1 controller: the burner joins its v1 cgroup too.
    cg.v1("memory")?;
    let _busy = cg.burn()?;
    let url = format!("http://{}/api/v1/write", vm.addr);
    let agent = Agent::start(
        Duration::from_millis(500),
        &[
            "--remote-write-url",
            &url,
            "--remote-write-interval",
            "1s",
            "--storage-driver",
            "influxdb",
            "--storage-driver-host",
            &vm.addr,
            "--storage-driver-db",
            "nodes",
            "--storage-driver-buffer-duration",
            "2s",
            "--node-name",
            "vm-node",
        ],
    )?;
    let served = scrapes(&agent, 8)?;
    thread::sleep(Duration::from_secs(4));
    let rw = vm.export(&format!(
        "container_memory_usage_bytes{{id=\"{}\",instance=\"vm-node\"}}",
        cg.rel
    ))?;
    ensure!(rw.len() == 1, "remote write: {} series", rw.len());
    // VictoriaMetrics names line protocol `<measurement>_<field>` and adds the database as `db`.
    let lp = vm.export(&format!(
        "memory_usage_value{{container_name=\"{}\",machine=\"vm-node\",db=\"nodes\"}}",
        cg.rel
    ))?;
    ensure!(lp.len() == 1, "line protocol: {} series", lp.len());
    for (what, samples) in [("remote write", &rw[0].1), ("line protocol", &lp[0].1)] {
        let same: Vec<(i64, f64, f64)> = samples
            .iter()
            .filter_map(|(t, v)| {
                Some((
                    *t,
                    served
                        .get(t)?
                        .value("container_memory_usage_bytes", &cg.rel)?,
                    *v,
                ))
            })
            .collect();
        eprintln!(
            "victoria-metrics: {what}: {} samples, {} at a scraped pass",
            samples.len(),
            same.len()
        );
        ensure!(same.len() >= 4, "{what}: {} passes in common", same.len());
        for (t, scraped, pushed) in same {
            ensure!(
                scraped == pushed,
                "{what} at {t}: served {scraped}, pushed {pushed}"
            );
        }
    }
    Ok(())
}

/// A node whose only way out is an HTTP proxy (the agent in a network namespace that reaches
/// nothing but Debian's tinyproxy on a veth peer): with `--remote-write-proxy` every pass
/// reaches the receiver, through the proxy, which logs the requests.
#[test]
fn a_node_whose_only_way_out_is_a_proxy_pushes_through_it() -> anyhow::Result<()> {
    const TEST: &str = "a_node_whose_only_way_out_is_a_proxy_pushes_through_it";
    if !privileged(TEST)
        || !require_tool(TEST, "prometheus")
        || !require_tool(TEST, "tinyproxy")
        || !require_tool(TEST, "curl")
        || !require_tool(TEST, "nsenter")
    {
        return Ok(());
    }
    let dir = &workdir("push-proxy")?;
    let prom = Prometheus::start_receiver(dir, None)?;
    let ns = Netns::create("proxy")?;
    let (host_end, ns_end) = (
        format!("ntpx{}h", std::process::id() % 100_000),
        format!("ntpx{}n", std::process::id() % 100_000),
    );
    ip(&[
        "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end, "netns", &ns.0,
    ])?;
    let _link = DeleteLink(host_end.clone());
    ip(&["addr", "add", "10.231.0.1/30", "dev", &host_end])?;
    ip(&["link", "set", &host_end, "up"])?;
    ip(&["-n", &ns.0, "addr", "add", "10.231.0.2/30", "dev", &ns_end])?;
    ip(&["-n", &ns.0, "link", "set", &ns_end, "up"])?;

    // tinyproxy drops to nobody: its log directory must be writable by it.
    let logs = dir.join("tinyproxy");
    std::fs::create_dir_all(&logs)?;
    std::fs::set_permissions(&logs, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
    let port = std::net::TcpListener::bind("10.231.0.1:0")?
        .local_addr()?
        .port();
    let log = logs.join("tinyproxy.log");
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "User nobody\nGroup nogroup\nPort {port}\nListen 10.231.0.1\nTimeout 60\nAllow 10.231.0.0/30\nLogFile \"{}\"\nLogLevel Info\nMaxClients 20\n",
            log.display()
        ),
    )?;
    let mut proxy = Command::new("tinyproxy")
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start tinyproxy")?;
    let _proxy = KillOnDrop(&mut proxy);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("10.231.0.1", port)).is_err() {
        ensure!(Instant::now() < deadline, "tinyproxy never listened");
        thread::sleep(Duration::from_millis(100));
    }

    // From the namespace the receiver cannot be reached directly.
    // nsenter, not `ip netns exec`, which mounts a sysfs of the namespace's own over /sys
    // (and with it hides /sys/fs/cgroup from the agent).
    let enter = format!("--net=/run/netns/{}", ns.0);
    let direct = Command::new("nsenter")
        .args([enter.as_str(), "curl", "-s", "-m", "2"])
        .arg(format!("http://{}/-/ready", prom.addr))
        .status()?;
    ensure!(
        !direct.success(),
        "the namespace reaches the receiver without the proxy"
    );

    let url = format!("http://{}/api/v1/write", prom.addr);
    let proxy_url = format!("http://10.231.0.1:{port}");
    let _agent = Agent::spawn_under(
        &["nsenter", &enter],
        Duration::from_millis(500),
        &[
            "--remote-write-url",
            &url,
            "--remote-write-interval",
            "1s",
            "--remote-write-proxy",
            &proxy_url,
            "--node-name",
            "proxy-node",
        ],
    )?;
    let deadline = Instant::now() + Duration::from_secs(40);
    let passes = loop {
        let pushed = raw_samples(&prom, "nodetel_build_info{instance=\"proxy-node\"}", "1m")?;
        if pushed.len() >= 5 {
            break pushed.len();
        }
        ensure!(
            Instant::now() < deadline,
            "{} passes arrived through the proxy in 40 s; its log: {}",
            pushed.len(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(500));
    };
    let requests = std::fs::read_to_string(&log)?
        .lines()
        .filter(|l| l.contains(&format!("POST {url}")))
        .count();
    eprintln!(
        "push proxy: {passes} passes arrived; the proxy logged {requests} POSTs to the receiver"
    );
    ensure!(
        requests >= passes.min(5),
        "the proxy logged {requests} requests"
    );
    Ok(())
}

struct DeleteLink(String);

impl Drop for DeleteLink {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.0]);
    }
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the relay in front of the receiver does with requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Passed on to the receiver, its status returned.
    Relay,
    /// 500 to every request.
    ServerError,
    /// 429 with `Retry-After: 5`.
    TooMany,
    /// No listener: connections are refused.
    Gone,
}

/// An HTTP relay on a fixed port in front of a real receiver, failing as `phase` says; it
/// records each request's time and the status it answered.
struct Relay {
    phase: std::sync::Arc<std::sync::Mutex<Phase>>,
    log: std::sync::Arc<std::sync::Mutex<Vec<(Instant, u16)>>>,
    addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    fn start(receiver: String) -> anyhow::Result<Relay> {
        use std::sync::{Arc, Mutex, atomic::AtomicBool};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let relay = Relay {
            phase: Arc::new(Mutex::new(Phase::Relay)),
            log: Arc::default(),
            addr: addr.clone(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (phase, log, stop) = (
            Arc::clone(&relay.phase),
            Arc::clone(&relay.log),
            Arc::clone(&relay.stop),
        );
        thread::spawn(move || {
            let mut listener = Some(listener);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = *phase.lock().expect("phase");
                match (&listener, now) {
                    (Some(_), Phase::Gone) => listener = None,
                    (None, Phase::Gone) => {
                        thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    // std binds with SO_REUSEADDR: the port is taken again at once.
                    (None, _) => match std::net::TcpListener::bind(&addr) {
                        Ok(l) => listener = Some(l),
                        Err(_) => {
                            thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                    },
                    _ => {}
                }
                let Some(l) = &listener else { continue };
                l.set_nonblocking(true).expect("nonblocking");
                match l.accept() {
                    Ok((conn, _)) => {
                        let (phase, log, receiver) =
                            (Arc::clone(&phase), Arc::clone(&log), receiver.clone());
                        thread::spawn(move || relay_connection(conn, &phase, &log, &receiver));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(relay)
    }

    fn set(&self, p: Phase) {
        *self.phase.lock().expect("phase") = p;
    }

    fn log(&self) -> Vec<(Instant, u16)> {
        self.log.lock().expect("log").clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One kept-alive connection of the agent: each request answered by the phase, until the
/// phase is `Gone` (the connection is then dropped, as a receiver that went away drops it).
fn relay_connection(
    conn: std::net::TcpStream,
    phase: &std::sync::Mutex<Phase>,
    log: &std::sync::Mutex<Vec<(Instant, u16)>>,
    receiver: &str,
) {
    use std::io::{BufRead as _, Read as _, Write as _};
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let _ = conn.set_nonblocking(false);
    let mut reader = std::io::BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_or(true, |n| n == 0) {
            return;
        }
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).map_or(true, |n| n == 0) {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                } else if !k.eq_ignore_ascii_case("connection") && !k.eq_ignore_ascii_case("host") {
                    headers.push(h.trim_end().to_string());
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let status = match *phase.lock().expect("phase") {
            Phase::Gone => return,
            Phase::ServerError => 500,
            Phase::TooMany => 429,
            Phase::Relay => forward(receiver, &line, &headers, &body).unwrap_or(502),
        };
        log.lock().expect("log").push((Instant::now(), status));
        let retry = if status == 429 {
            "Retry-After: 5\r\n"
        } else {
            ""
        };
        let answer = format!("HTTP/1.1 {status} X\r\n{retry}Content-Length: 0\r\n\r\n");
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// The request passed on to the receiver on a new connection; its status.
fn forward(receiver: &str, line: &str, headers: &[String], body: &[u8]) -> anyhow::Result<u16> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(receiver)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{}Host: {receiver}\r\nConnection: close\r\n", line);
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status from the receiver")
}

/// A real Prometheus behind a relay that fails in phases: 500 for 15 s, 429 with
/// `Retry-After: 5` for 15 s, then gone (connections refused) for two minutes, then back.
/// Every pass of those three minutes arrives, in order, once; the 429 phase is retried no
/// sooner than Retry-After says; the retries are counted and nothing is dropped.
#[test]
fn a_receiver_failing_then_gone_for_two_minutes_gets_every_pass() -> anyhow::Result<()> {
    const TEST: &str = "a_receiver_failing_then_gone_for_two_minutes_gets_every_pass";
    if !privileged(TEST) || !require_tool(TEST, "prometheus") {
        return Ok(());
    }
    let dir = &workdir("push-outage")?;
    let prom = Prometheus::start_receiver(dir, None)?;
    let relay = Relay::start(prom.addr.clone())?;
    let cg = TestCgroup::create("push-outage")?;
    let _busy = cg.burn()?;
    let url = format!("http://{}/api/v1/write", relay.addr);
    let agent = Agent::start(
        Duration::from_millis(500),
        &[
            "--remote-write-url",
            &url,
            "--remote-write-interval",
            "1s",
            "--node-name",
            "outage-node",
        ],
    )?;
    thread::sleep(Duration::from_secs(5));
    let started = unix_now();
    let phases = [
        (Phase::ServerError, 15),
        (Phase::TooMany, 15),
        (Phase::Gone, 120),
    ];
    let mut spans = Vec::new();
    for (phase, secs) in phases {
        let from = Instant::now();
        relay.set(phase);
        thread::sleep(Duration::from_secs(secs));
        spans.push((phase, from, Instant::now()));
    }
    relay.set(Phase::Relay);
    let back = unix_now();
    eprintln!(
        "push outage: the receiver is back after {:.0} s",
        back - started
    );
    // Backoff reaches 30 s (plus jitter) during the two minutes: the catch-up starts within 40 s.
    let selector = format!(
        "container_cpu_usage_seconds_total{{id=\"{}\",instance=\"outage-node\"}}",
        cg.rel
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let pushed = loop {
        let pushed = raw_samples(&prom, &selector, "5m")?;
        if pushed
            .keys()
            .next_back()
            .is_some_and(|t| *t as f64 / 1000.0 > back + 2.0)
        {
            break pushed;
        }
        ensure!(Instant::now() < deadline, "push never caught up");
        thread::sleep(Duration::from_secs(1));
    };
    let times: Vec<i64> = pushed
        .keys()
        .copied()
        .filter(|t| *t as f64 / 1000.0 >= started - 5.0)
        .collect();
    let largest_gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let during = times
        .iter()
        .filter(|t| (started..back).contains(&(**t as f64 / 1000.0)))
        .count();
    eprintln!(
        "push outage: {during} passes of the {:.0} s of failures arrived, largest gap {largest_gap} ms",
        back - started
    );
    ensure!(
        during as f64 >= (back - started) - 3.0,
        "only {during} passes of {:.0} s arrived",
        back - started
    );
    ensure!(largest_gap <= 1600, "a gap of {largest_gap} ms");
    let values: Vec<f64> = pushed.values().copied().collect();
    ensure!(
        values.windows(2).all(|w| w[1] >= w[0]),
        "a counter went back: passes out of order"
    );

    // The 429 phase: retried no sooner than Retry-After (5 s) after each answer.
    let (_, from, to) = spans[1];
    let attempts: Vec<Instant> = relay
        .log()
        .iter()
        .filter(|(t, s)| *s == 429 && (from..to).contains(t))
        .map(|(t, _)| *t)
        .collect();
    let gaps: Vec<f64> = attempts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    eprintln!(
        "push outage: 429 answered {} times, gaps {gaps:.2?} s",
        attempts.len()
    );
    ensure!(
        attempts.len() >= 2,
        "only {} attempts in the 429 phase",
        attempts.len()
    );
    // Not sooner than Retry-After, and not the backoff either (8 s or more after 15 s of
    // 500s): Retry-After plus at most a quarter of jitter.
    ensure!(
        gaps.iter().all(|g| (4.9..=7.0).contains(g)),
        "429 retried {gaps:?} s apart, Retry-After said 5"
    );
    let m = agent.next_metrics()?;
    let count = |result: &str| {
        let needle = format!("result=\"{result}\"");
        self_metric(&m, "nodetel_remote_write_samples_total", &[&needle]).unwrap_or(-1.0)
    };
    let (retried, dropped) = (
        count("retried"),
        count("dropped_queue_full") + count("dropped_rejected"),
    );
    eprintln!("push outage: {retried} samples retried, {dropped} dropped");
    ensure!(retried > 0.0, "no retries counted");
    ensure!(dropped == 0.0, "{dropped} samples dropped");
    // Stopped, so nothing is on the way while the two are counted.
    drop(agent);
    thread::sleep(Duration::from_secs(1));
    // None twice: each accepted request carries one pass, so the requests the receiver accepted
    // over the whole run equal the distinct passes it holds.
    let accepted = relay.log().iter().filter(|(_, s)| *s / 100 == 2).count();
    let passes = raw_samples(&prom, "nodetel_build_info{instance=\"outage-node\"}", "10m")?.len();
    eprintln!("push outage: {accepted} requests accepted, {passes} distinct passes held");
    ensure!(
        accepted == passes,
        "{accepted} requests accepted for {passes} passes: some sent twice"
    );
    Ok(())
}
