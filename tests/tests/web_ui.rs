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
/// The open page's CPU chart has a point above half a core.
const BUSY_CHART: &str = "const c = window.nodetel && nodetel.charts.get('CPU usage'); return c && c.data[1].some(v => v > 0.5)";
const INTERVAL: Duration = Duration::from_secs(1);
/// WebDriver's key codes.
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

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

/// A reverse proxy serving the agent under two prefixes (see [`forward`]), one request per
/// connection.
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
    // /strip/...: the prefix taken off (an ingress with a rewrite); /nodetel/...: forwarded as
    // it is, to an agent started with --url-base-prefix=/nodetel.
    let rest = if let Some(rest) = path.strip_prefix("/strip/") {
        rest.to_string()
    } else if path == "/nodetel" || path.starts_with("/nodetel/") {
        path.trim_start_matches('/').to_string()
    } else {
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
    for name in ["ui-busy", "ui-idle", "ui-pod-app", "ui-oom", "ui-tcp"] {
        let _ = dockerd.docker(&["rm", "-f", name]);
    }
    // Docker leaves the pod container's parent cgroups behind; a `/kubepods` left on the host
    // would make every later agent's auto label mode take the host for a Kubernetes node.
    let _pod_cgroups = PodCgroups::new(&dockerd);
    let run = |name: &str, flags: &[&str], cmd: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend(flags);
        args.push(IMAGE);
        args.extend(cmd);
        dockerd.docker(&args)
    };
    // The busy loop under its own command name, so that the process list can be checked. The
    // busy and idle containers carry the labels Docker puts on Swarm tasks: two services of one
    // stack, as the UI's Swarm pages group them.
    run(
        "ui-busy",
        &[
            "--label=com.docker.swarm.service.name=ui-stack_web",
            "--label=com.docker.stack.namespace=ui-stack",
        ],
        &[
            "sh",
            "-c",
            "cp /bin/busybox /tmp/busybox-spin && exec /tmp/busybox-spin sh -c 'while :; do :; done'",
        ],
    )?;
    run(
        "ui-idle",
        &[
            "--label=com.docker.swarm.service.name=ui-stack_db",
            "--label=com.docker.stack.namespace=ui-stack",
        ],
        &["sleep", "3600"],
    )?;
    // A pod's container under a pod cgroup named as the kubelet names it (pod<uid>).
    let (parent, uid_label) = (
        format!("--cgroup-parent=/kubepods/pod{POD_UID}"),
        format!("--label=io.kubernetes.pod.uid={POD_UID}"),
    );
    run(
        "ui-pod-app",
        &[
            parent.as_str(),
            "--label=io.kubernetes.pod.name=ui-pod",
            "--label=io.kubernetes.pod.namespace=ui-ns",
            uid_label.as_str(),
            "--label=io.kubernetes.container.name=app",
        ],
        &["sleep", "3600"],
    )?;
    run(
        "ui-oom",
        &["--memory=24m", "--memory-swap=24m"],
        &["sleep", "3600"],
    )?;
    // TCP: one connection to itself held open (two established sockets: the client's and the
    // accepted one), and a connect to a closed port every 0.3 s (refused).
    run(
        "ui-tcp",
        &[],
        &[
            "sh",
            "-c",
            // nc closes its side when its input ends: each end reads from a sleep.
            "sleep 3600 | nc -l -p 8081 > /dev/null & sleep 1; \
             sleep 3600 | nc 127.0.0.1 8081 > /dev/null & \
             while :; do nc 127.0.0.1 9 < /dev/null 2> /dev/null; sleep 0.3; done",
        ],
    )?;
    // The OOM tracepoint's layout is read from tracefs, which this host does not mount by itself.
    let agent = Agent::start_with_runtime(
        INTERVAL,
        "--docker-socket",
        &dockerd.socket,
        &["--mount-tracefs", "--url-base-prefix=/nodetel"],
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
        BUSY_CHART,
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

    // From the keyboard: the first Tab reaches the skip link, Enter moves the focus to the
    // content. The theme button switches to dark (charts redrawn in its colours) and back.
    b.key(TAB)?;
    let focused = b.eval("return document.activeElement.className")?;
    anyhow::ensure!(focused == "skip", "the first Tab focused {focused}");
    b.key(ENTER)?;
    b.wait_for(
        "the focus on the content after the skip link",
        "return document.activeElement.id === 'main'",
        Duration::from_secs(2),
    )?;
    anyhow::ensure!(
        b.url()?.ends_with("/docker/ui-busy#main"),
        "the skip link left the page for {}",
        b.url()?
    );
    b.click("#theme")?;
    b.wait_for(
        "the dark theme",
        "return document.documentElement.dataset.theme === 'dark' && getComputedStyle(document.body).backgroundColor === 'rgb(13, 17, 23)'",
        Duration::from_secs(2),
    )?;
    thread::sleep(INTERVAL);
    b.screenshot(&dir.join("container-busy-dark.png"))?;
    b.click("#theme")?;
    no_console_errors(&b, "keyboard and theme")?;

    // The idle container: near zero.
    b.goto(&format!("{base}docker/ui-idle"))?;
    b.wait_for(
        "idle container's CPU chart with three points",
        "const c = window.nodetel && nodetel.charts.get('CPU usage'); return c && c.data[1].filter(v => v != null).length >= 3",
        Duration::from_secs(15),
    )?;
    let idle = chart_max(&b, "CPU usage", 0)?.context("no idle CPU")?;
    anyhow::ensure!(idle < 0.02, "idle container at {idle} cores");
    b.wait_for(
        "idle container's TCP: no connection established",
        "const e = nodetel.charts.get('TCP established connections'); return e && e.data[1].slice(-1)[0] === 0",
        Duration::from_secs(5),
    )?;
    b.screenshot(&dir.join("container-idle.png"))?;
    no_console_errors(&b, "idle container page")?;

    // TCP health: the connection it holds (2 sockets) and its refused connects, per second. The
    // eighth page of this browser: its polls are answered only if the pages left behind gave
    // back their connections (they did not before the UI closed its stream on pagehide).
    b.goto(&format!("{base}docker/ui-tcp"))?;
    let shown = b.wait_for(
        "the TCP charts: 2 established, refused connects",
        "const e = window.nodetel && nodetel.charts.get('TCP established connections'), \
         c = window.nodetel && nodetel.charts.get('TCP connects and accepts'); \
         return e && c && e.data[1].slice(-1)[0] === 2 && c.data[2].some(v => v > 0)",
        Duration::from_secs(15),
    );
    if shown.is_err() {
        // What the page showed: its status line says whether its requests were answered.
        eprintln!(
            "TCP page: {:?}",
            b.eval("return {status: document.body.innerText.slice(0, 300), tcp: [...nodetel.charts.entries()].filter(([k]) => k.startsWith('TCP')).map(([k, c]) => [k, c.data])}")
        );
        let _ = b.screenshot(&dir.join("container-tcp-failed.png"));
    }
    shown?;
    let refused = chart_max(&b, "TCP connects and accepts", 1)?.context("no refused rate")?;
    anyhow::ensure!(
        refused > 0.5 && refused < 5.0,
        "a refused connect every 0.3 s plotted at {refused}/s"
    );
    b.screenshot(&dir.join("container-tcp.png"))?;
    no_console_errors(&b, "TCP container page")?;

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

    // The Swarm pages: the stack's two services, the busy one's CPU, a service's task.
    b.goto(&format!("{base}swarm/"))?;
    let web = b.wait_for(
        "the busy service with one task above 0.5 cores",
        "const tr = [...document.querySelectorAll('tbody tr')].find(tr => tr.cells[0].textContent === 'ui-stack_web'); \
         return tr && tr.cells[2].textContent === '1' && parseFloat(tr.cells[3].textContent) > 0.5 && tr.innerText",
        Duration::from_secs(15),
    )?;
    b.wait_for(
        "the stack with two services and two tasks",
        "const tr = [...document.querySelectorAll('tbody tr')].find(tr => tr.cells[0].textContent === 'ui-stack'); \
         return tr && tr.cells[1].textContent === '2' && tr.cells[2].textContent === '2'",
        Duration::from_secs(5),
    )?;
    eprintln!("swarm page: {web}");
    b.screenshot(&dir.join("swarm.png"))?;
    b.click("#main a[href='swarm/services/ui-stack_web']")?;
    b.wait_for(
        "the service's task",
        "return [...document.querySelectorAll('tbody a')].some(a => a.textContent === 'ui-busy')",
        Duration::from_secs(10),
    )?;
    b.screenshot(&dir.join("swarm-service.png"))?;
    no_console_errors(&b, "Swarm pages")?;

    // The Docker list.
    b.goto(&format!("{base}docker/"))?;
    b.wait_for(
        "Docker list",
        "return [...document.querySelectorAll('#main a')].some(a => a.textContent.includes('ui-idle'))",
        Duration::from_secs(10),
    )?;
    b.screenshot(&dir.join("docker.png"))?;
    no_console_errors(&b, "Docker list")?;

    // Behind a reverse proxy under a path prefix, stripped by the proxy (every URL in the page
    // is relative) or forwarded to the agent as it is (--url-base-prefix): the same page, and
    // the machine page reached from `/` under the prefix.
    let proxy = prefix_proxy(agent.addr.clone())?;
    // (`/nodetel` without its slash too: the agent sees it whole and redirects into it.)
    for (prefix, root) in [("strip", "strip/"), ("nodetel", "nodetel")] {
        b.goto(&format!("http://{proxy}/{prefix}/docker/ui-busy"))?;
        b.wait_for(
            &format!("busy container through the proxy under /{prefix}/"),
            BUSY_CHART,
            Duration::from_secs(15),
        )?;
        b.goto(&format!("http://{proxy}/{root}"))?;
        b.wait_for(
            &format!("machine page through the proxy under /{prefix}/"),
            "return document.querySelector('h1') && document.querySelector('h1').textContent === 'Machine'",
            Duration::from_secs(10),
        )?;
        anyhow::ensure!(
            b.url()?.ends_with(&format!("/{prefix}/containers/")),
            "/{prefix}/ redirected to {}",
            b.url()?
        );
        no_console_errors(&b, &format!("pages under /{prefix}/"))?;
    }

    // Under --web-config-file's TLS and basic auth: the page and every API request it makes
    // carry the credentials the browser holds for the origin (sent here as a header on every
    // request, as a browser does after its login prompt); without them, 401.
    let tls = tls_agent(&dockerd)?;
    let secure = format!("https://{}/", tls.addr);
    b.goto(&format!("{secure}containers/"))?;
    // Headless chromium cancels the login prompt and shows nothing: no page was served.
    let served = b.eval("return !!window.nodetel")?;
    anyhow::ensure!(
        served == serde_json::json!(false),
        "a page was served without credentials"
    );
    let _ = b.console_errors()?; // the 401 itself
    b.cdp("Network.enable", serde_json::json!({}))?;
    let basic = format!("Basic {}", base64_encode(&format!("{USER}:{PASSWORD}")));
    b.cdp(
        "Network.setExtraHTTPHeaders",
        serde_json::json!({"headers": {"Authorization": basic}}),
    )?;
    b.goto(&format!("{secure}docker/ui-busy"))?;
    b.wait_for(
        "busy container over TLS with basic auth",
        BUSY_CHART,
        Duration::from_secs(15),
    )?;
    no_console_errors(&b, "page over TLS with basic auth")?;
    // Back to the plain agent (which ignores the header) before the TLS one goes: a request
    // refused with 401 would wait on headless chromium's login prompt.
    b.goto(&format!("{base}docker/ui-busy"))?;
    b.wait_for(
        "busy container page again",
        BUSY_CHART,
        Duration::from_secs(15),
    )?;
    drop(tls);

    // The agent gone: a clear message, not a spinner.
    drop(agent);
    b.wait_for(
        "the status line saying the agent did not answer",
        "const s = document.getElementById('status'); return s.textContent.includes('did not answer') && s.textContent",
        Duration::from_secs(5),
    )?;
    b.screenshot(&dir.join("agent-gone.png"))?;

    drop(b);
    for name in ["ui-busy", "ui-idle", "ui-pod-app", "ui-oom", "ui-tcp"] {
        dockerd.docker(&["rm", "-f", name])?;
    }
    Ok(())
}

const USER: &str = "operator";
const PASSWORD: &str = "ui-test-password";

/// An agent serving HTTPS (a self-signed certificate) with one basic-auth user, beside the
/// plain one, over the same dockerd.
fn tls_agent(dockerd: &Dockerd) -> anyhow::Result<Agent> {
    let dir = Path::new("/var/lib/nodetel-test/web-ui-tls");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])?;
    std::fs::write(dir.join("server.crt"), cert.cert.pem())?;
    std::fs::write(dir.join("server.key"), cert.signing_key.serialize_pem())?;
    let hash = bcrypt::hash(PASSWORD, 10)?;
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  {USER}: {hash}\n",
            dir.join("server.crt").display(),
            dir.join("server.key").display()
        ),
    )?;
    let web = web.display().to_string();
    let socket = dockerd.socket.display().to_string();
    // Docker's socket only, as Agent::start_with_runtime gives it (not the host's runtimes).
    let agent = Agent::spawn(
        INTERVAL,
        &[
            "--web.config.file",
            &web,
            "--docker-socket",
            &socket,
            "--containerd-socket",
            "",
            "--podman-socket",
            "",
            "--crio-socket",
            "",
        ],
    )?;
    // Ready once it has named the busy container (asked over TLS with the credentials).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = std::process::Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-u"])
            .arg(format!("{USER}:{PASSWORD}"))
            .arg(format!("https://{}/api/v1.3/docker/ui-busy", agent.addr))
            .output()?;
        if out.stdout == b"200" {
            return Ok(agent);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "TLS agent did not name ui-busy in 30 s"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

const POD_UID: &str = "5b0e3c1a-1111-4a2b-9c3d-0123456789ab";

/// Removes, when dropped (the test passed or not), the pod container and the `kubepods/pod<uid>`
/// cgroups Docker made for it in every hierarchy, and `kubepods` itself where the test made it.
struct PodCgroups<'a> {
    dockerd: &'a Dockerd,
    hierarchies: Vec<(PathBuf, bool)>,
}

impl<'a> PodCgroups<'a> {
    fn new(dockerd: &'a Dockerd) -> Self {
        let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
        if let Ok(dir) = std::fs::read_dir("/sys/fs/cgroup") {
            roots.extend(dir.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        let hierarchies = roots
            .into_iter()
            .map(|r| {
                let had = r.join("kubepods").exists();
                (r, had)
            })
            .collect();
        PodCgroups {
            dockerd,
            hierarchies,
        }
    }
}

impl Drop for PodCgroups<'_> {
    fn drop(&mut self) {
        let _ = self.dockerd.docker(&["rm", "-f", "ui-pod-app"]);
        for (root, had) in &self.hierarchies {
            let _ = std::fs::remove_dir(root.join("kubepods").join(format!("pod{POD_UID}")));
            if !had {
                let _ = std::fs::remove_dir(root.join("kubepods"));
            }
        }
    }
}
