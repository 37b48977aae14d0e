//! The web UI in a real headless browser (Debian's chromium through chromedriver), over real
//! Docker containers: a busy one, an idle one, one labelled as a Kubernetes pod's, and one that
//! is OOM-killed while its page is open. Each page must load with no console error and show the
//! kernel's figures; the page must keep updating for 30 s without growing; it must work behind a
//! reverse proxy under a path prefix; and it must say so when the agent is gone. Screenshots of
//! each page go to `target/ui-screenshots/` (the README's are copies).
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use nodetel_integration_tests::{
    Agent,
    browser::Browser,
    privileged, require_tool,
    runtimes::{Dockerd, IMAGE},
    unix_now,
};
use serde_json::Value;

const TEST: &str = "web_ui";
const INTERVAL: Duration = Duration::from_secs(1);

fn shots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ui-screenshots")
}

/// The largest value a chart holds in series `i` (after its time axis).
fn chart_max(b: &Browser, chart: &str, i: usize) -> anyhow::Result<Option<f64>> {
    let v = b.eval(&format!(
        "const c = window.nodetel && nodetel.charts.get({chart:?}); \
         if (!c) return null; const s = c.data[{i} + 1].filter(v => v != null); \
         return s.length ? Math.max(...s) : null;"
    ))?;
    Ok(v.as_f64())
}

fn no_console_errors(b: &Browser, page: &str) -> anyhow::Result<()> {
    let errors = b.console_errors()?;
    anyhow::ensure!(errors.is_empty(), "{page}: console errors: {errors:?}");
    Ok(())
}

/// A reverse proxy serving the agent under `/nodetel/` (the prefix stripped, as an ingress
/// with a rewrite does), one request per connection.
fn prefix_proxy(agent: String) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let agent = agent.clone();
            thread::spawn(move || {
                let _ = forward(conn, &agent);
            });
        }
    });
    Ok(addr)
}

fn forward(mut client: TcpStream, agent: &str) -> anyhow::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = client.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "client left");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "client left");
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut lines = head.split("\r\n");
    let request_line = lines.next().context("no request line")?;
    let mut parts = request_line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Some(rest) = path.strip_prefix("/nodetel/") else {
        client.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    };
    let mut upstream = TcpStream::connect(agent)?;
    let mut out = format!("{method} /{rest} HTTP/1.0\r\n");
    for l in lines.filter(|l| !l.is_empty()) {
        let lower = l.to_ascii_lowercase();
        if !lower.starts_with("connection:") && !lower.starts_with("keep-alive") {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    upstream.write_all(out.as_bytes())?;
    upstream.write_all(&buf[head_end..head_end + length])?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer)?;
    client.write_all(&answer)?;
    Ok(())
}

#[test]
fn pages_in_a_real_browser() -> anyhow::Result<()> {
    if !privileged(TEST) || !require_tool(TEST, "docker") || !require_tool(TEST, "chromedriver") {
        return Ok(());
    }
    let dockerd = Dockerd::start("ui")?;
    dockerd.ensure_image()?;
    for name in ["ui-busy", "ui-idle", "ui-pod-app", "ui-oom"] {
        let _ = dockerd.docker(&["rm", "-f", name]);
    }
    // The busy loop under its own command name, so that the process list can be checked.
    dockerd.docker(&[
        "run",
        "-d",
        "--name",
        "ui-busy",
        IMAGE,
        "sh",
        "-c",
        "cp /bin/busybox /tmp/busybox-spin && exec /tmp/busybox-spin sh -c 'while :; do :; done'",
    ])?;
    dockerd.docker(&["run", "-d", "--name", "ui-idle", IMAGE, "sleep", "3600"])?;
    dockerd.docker(&[
        "run",
        "-d",
        "--name",
        "ui-pod-app",
        "--label",
        "io.kubernetes.pod.name=ui-pod",
        "--label",
        "io.kubernetes.pod.namespace=ui-ns",
        "--label",
        "io.kubernetes.pod.uid=ui-pod-uid",
        "--label",
        "io.kubernetes.container.name=app",
        IMAGE,
        "sleep",
        "3600",
    ])?;
    dockerd.docker(&[
        "run",
        "-d",
        "--name",
        "ui-oom",
        "--memory",
        "24m",
        "--memory-swap",
        "24m",
        IMAGE,
        "sleep",
        "3600",
    ])?;
    // The OOM tracepoint's layout is read from tracefs, which this host does not mount by itself.
    let agent = Agent::start_with_runtime(
        INTERVAL,
        "--docker-socket",
        &dockerd.socket,
        &["--mount-tracefs"],
    )?;
    let base = format!("http://{}/", agent.addr);
    let b = Browser::start()?;
    let dir = shots();

    // The machine page: facts, the top-containers table with our containers.
    b.goto(&base)?;
    anyhow::ensure!(
        b.url()?.ends_with("/containers/"),
        "/ redirects to containers/"
    );
    b.wait_for(
        "machine page with the busy container in its table",
        "return [...document.querySelectorAll('#main table a')].some(a => a.textContent.includes('ui-busy'))",
        Duration::from_secs(20),
    )?;
    let cores = b.eval("return document.querySelector('dl.facts dd').textContent")?;
    let want = format!("{} (", thread::available_parallelism()?.get());
    anyhow::ensure!(
        cores.as_str().is_some_and(|c| c.starts_with(&want)),
        "machine cores {cores} (want {want}...)"
    );
    thread::sleep(INTERVAL * 3);
    b.screenshot(&dir.join("machine.png"))?;
    no_console_errors(&b, "machine page")?;

    // Machine -> Pods -> the pod -> its container, by clicking.
    b.click("header nav a[href='pods/']")?;
    b.wait_for(
        "pods list with ui-pod",
        "return [...document.querySelectorAll('#main a')].some(a => a.textContent === 'ui-pod')",
        Duration::from_secs(10),
    )?;
    b.screenshot(&dir.join("pods.png"))?;
    b.click("#main a[href='pods/ui-ns/ui-pod']")?;
    b.wait_for(
        "pod page",
        "return document.querySelector('h1') && document.querySelector('h1').textContent === 'Pod: ui-ns/ui-pod'",
        Duration::from_secs(10),
    )?;
    b.wait_for(
        "the pod's container in its subcontainer table",
        "return [...document.querySelectorAll('#subs ~ * a, section a')].some(a => a.textContent === 'ui-ns/ui-pod/app')",
        Duration::from_secs(10),
    )?;
    b.screenshot(&dir.join("pod.png"))?;
    no_console_errors(&b, "pods and pod pages")?;
    let pod_app = b.eval(
        "const a = [...document.querySelectorAll('section a')].find(a => a.textContent === 'ui-ns/ui-pod/app'); a.id = 'to-app'; return a.getAttribute('href')",
    )?;
    b.click("#to-app")?;
    b.wait_for(
        "the pod's container page",
        "return document.querySelector('h1') && document.querySelector('h1').textContent === 'ui-ns/ui-pod/app'",
        Duration::from_secs(10),
    )?;
    anyhow::ensure!(
        b.url()?.ends_with(pod_app.as_str().unwrap_or("?")),
        "navigated to {pod_app}"
    );

    // The busy container at cAdvisor's /docker/<name> URL: CPU over half a core, its process.
    b.goto(&format!("{base}docker/ui-busy"))?;
    b.wait_for(
        "busy container's CPU chart above 0.5 cores",
        "const c = window.nodetel && nodetel.charts.get('CPU usage'); return c && c.data[1].some(v => v > 0.5)",
        Duration::from_secs(15),
    )?;
    b.wait_for(
        "the busy process in the process list",
        "return [...document.querySelectorAll('#ps ~ table td, section table td')].some(td => td.textContent === 'busybox-spin')",
        Duration::from_secs(10),
    )?;
    let started = Instant::now();
    let first = b.eval(
        "if (window.gc) gc(); return {heap: performance.memory.usedJSHeapSize, nodes: document.getElementsByTagName('*').length, points: nodetel.charts.get('CPU usage').data[0].length}",
    )?;
    b.screenshot(&dir.join("container-busy.png"))?;
    // 30 s of live updates: the chart keeps moving, the page does not grow without bound.
    thread::sleep(Duration::from_secs(30).saturating_sub(started.elapsed()));
    let last = b.eval(
        "if (window.gc) gc(); return {heap: performance.memory.usedJSHeapSize, nodes: document.getElementsByTagName('*').length, points: nodetel.charts.get('CPU usage').data[0].length, longest: Math.max(...[...nodetel.charts.values()].flatMap(c => c.data.map(s => s.length))), cap: nodetel.points, newest: nodetel.charts.get('CPU usage').data[0].slice(-1)[0]}",
    )?;
    eprintln!("busy page at 0 s: {first}; after 30 s: {last}");
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    anyhow::ensure!(
        f(&last, "newest") > (unix_now() - 3.0),
        "the CPU chart stopped updating: newest point {}",
        last["newest"]
    );
    anyhow::ensure!(
        f(&last, "points") >= f(&first, "points").min(f(&last, "cap") - 25.0) + 25.0
            || f(&last, "points") == f(&last, "cap"),
        "30 s at 1 s added fewer than 25 points: {first} -> {last}"
    );
    anyhow::ensure!(
        f(&last, "longest") <= f(&last, "cap"),
        "a series holds more than the cap: {last}"
    );
    anyhow::ensure!(
        f(&last, "nodes") <= f(&first, "nodes") * 1.2 + 50.0,
        "the page's DOM grew: {first} -> {last}"
    );
    anyhow::ensure!(
        f(&last, "heap") <= f(&first, "heap") * 1.5 + 4.0 * 1048576.0,
        "the JS heap grew: {first} -> {last}"
    );
    no_console_errors(&b, "busy container page")?;

    // The idle container: near zero.
    b.goto(&format!("{base}docker/ui-idle"))?;
    b.wait_for(
        "idle container's CPU chart with three points",
        "const c = window.nodetel && nodetel.charts.get('CPU usage'); return c && c.data[1].filter(v => v != null).length >= 3",
        Duration::from_secs(15),
    )?;
    let idle = chart_max(&b, "CPU usage", 0)?.context("no idle CPU")?;
    anyhow::ensure!(idle < 0.02, "idle container at {idle} cores");
    b.screenshot(&dir.join("container-idle.png"))?;
    no_console_errors(&b, "idle container page")?;

    // An OOM kill on the open page's timeline within two intervals of the kill.
    b.goto(&format!("{base}docker/ui-oom"))?;
    b.wait_for(
        "OOM page loaded",
        "return document.querySelector('ol.timeline li')",
        Duration::from_secs(10),
    )?;
    let _ = dockerd.docker(&["exec", "ui-oom", "sh", "-c", "exec tail /dev/zero"]);
    let killed = Instant::now();
    b.wait_for(
        "the OOM kill of tail on the timeline",
        "return [...document.querySelectorAll('ol.timeline li strong')].some(s => s.textContent === 'tail') && nodetel.charts.get('OOM kills').data[0].length > 0",
        INTERVAL * 2 + Duration::from_millis(500),
    )?;
    eprintln!(
        "OOM kill shown {:?} after the kill returned",
        killed.elapsed()
    );
    b.screenshot(&dir.join("container-oom.png"))?;
    no_console_errors(&b, "OOM container page")?;

    // Swarm page (no Swarm here: empty tables, no error) and the Docker list.
    b.goto(&format!("{base}docker/"))?;
    b.wait_for(
        "Docker list",
        "return [...document.querySelectorAll('#main a')].some(a => a.textContent.includes('ui-idle'))",
        Duration::from_secs(10),
    )?;
    no_console_errors(&b, "Docker list")?;

    // Behind a reverse proxy under /nodetel/: the same page, every URL relative.
    let proxy = prefix_proxy(agent.addr.clone())?;
    b.goto(&format!("http://{proxy}/nodetel/docker/ui-busy"))?;
    b.wait_for(
        "busy container through the prefix proxy",
        "const c = window.nodetel && nodetel.charts.get('CPU usage'); return c && c.data[1].some(v => v > 0.5)",
        Duration::from_secs(15),
    )?;
    no_console_errors(&b, "page under a path prefix")?;

    // The agent gone: a clear message, not a spinner.
    drop(agent);
    b.wait_for(
        "the status line saying the agent did not answer",
        "const s = document.getElementById('status'); return s.textContent.includes('did not answer') && s.textContent",
        Duration::from_secs(5),
    )?;
    b.screenshot(&dir.join("agent-gone.png"))?;

    drop(b);
    for name in ["ui-busy", "ui-idle", "ui-pod-app", "ui-oom"] {
        dockerd.docker(&["rm", "-f", name])?;
    }
    Ok(())
}
