//! `--web-config-file` (the Prometheus exporter toolkit's format) against real clients: curl
//! and openssl for handshakes and credentials, and Debian's Prometheus 2.42 scraping through
//! `tls_config` and `basic_auth`. Certificates are made here (rcgen), passwords hashed with
//! bcrypt as `htpasswd -B` does.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nodetel_integration_tests::{
    Agent, Exposition, privileged, prometheus::Prometheus, require_tool,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

const PASSWORD: &str = "correct horse";

/// A CA that signs serving and client certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> anyhow::Result<Ca> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Ok(Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate()?)?,
        })
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// (cert PEM, key PEM) for `cn`, valid for 127.0.0.1 and localhost.
    fn leaf(&self, cn: &str, usage: ExtendedKeyUsagePurpose) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Writes `text` to `path` the way Kubernetes updates a Secret volume: a new file renamed over
/// the old one, so a reader never sees half of it.
fn replace(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("new");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// Everything a TLS agent needs in `dir`: ca.pem, server.{crt,key} (CN nodetel-a),
/// client.{crt,key}, rogue.{crt,key} (a client certificate of another CA) and web.yml.
struct Setup {
    dir: PathBuf,
    ca: Ca,
}

impl Setup {
    fn new(name: &str, web_yml: &str) -> anyhow::Result<Setup> {
        let dir = Path::new("/var/lib/nodetel-test").join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let ca = Ca::new("nodetel test CA")?;
        let (cert, key) = ca.leaf("nodetel-a", ExtendedKeyUsagePurpose::ServerAuth)?;
        fs::write(dir.join("ca.pem"), ca.pem())?;
        fs::write(dir.join("server.crt"), cert)?;
        fs::write(dir.join("server.key"), key)?;
        let (cert, key) = ca.leaf("prometheus", ExtendedKeyUsagePurpose::ClientAuth)?;
        fs::write(dir.join("client.crt"), cert)?;
        fs::write(dir.join("client.key"), key)?;
        let rogue = Ca::new("someone else's CA")?;
        let (cert, key) = rogue.leaf("prometheus", ExtendedKeyUsagePurpose::ClientAuth)?;
        fs::write(dir.join("rogue.crt"), cert)?;
        fs::write(dir.join("rogue.key"), key)?;
        let hash = bcrypt::hash(PASSWORD, 10)?;
        fs::write(dir.join("web.yml"), web_yml.replace("HASH", &hash))?;
        Ok(Setup { dir, ca })
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn agent(&self) -> anyhow::Result<Agent> {
        let agent = Agent::spawn(
            Duration::from_millis(500),
            &["--web.config.file", &self.file("web.yml")],
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.curl(&agent, "/healthz", &["--cert", "client"])?;
            if r.code == 200 {
                return Ok(agent);
            }
            if Instant::now() > deadline {
                bail!("agent not healthy over TLS: {r:?}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// curl over https with the test CA. `opts` may hold `--cert <name>` (the name of a
    /// certificate pair in the directory) and `-u user:password`, or other curl options.
    fn curl(&self, agent: &Agent, path: &str, opts: &[&str]) -> anyhow::Result<Curl> {
        let mut args: Vec<String> = vec![
            "-sS".into(),
            "--max-time".into(),
            "10".into(),
            "--cacert".into(),
            self.file("ca.pem"),
            "-D".into(),
            "-".into(),
            "-o".into(),
            self.file("body"),
            "-w".into(),
            "\n%{http_code}".into(),
        ];
        let mut i = 0;
        while i < opts.len() {
            if opts[i] == "--cert" {
                let name = opts[i + 1];
                args.extend([
                    "--cert".into(),
                    self.file(&format!("{name}.crt")),
                    "--key".into(),
                    self.file(&format!("{name}.key")),
                ]);
                i += 2;
            } else {
                args.push(opts[i].to_string());
                i += 1;
            }
        }
        args.push(format!("https://{}{path}", agent.addr));
        let out = Command::new("curl").args(&args).output().context("curl")?;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let (headers, code) = stdout.rsplit_once('\n').unwrap_or(("", "000"));
        Ok(Curl {
            exit: out.status.code().unwrap_or(-1),
            code: code.trim().parse().unwrap_or(0),
            headers: headers.to_lowercase(),
            body: fs::read_to_string(self.dir.join("body")).unwrap_or_default(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        })
    }

    /// The CN of the certificate the agent serves now, as openssl sees it.
    fn served_cn(&self, agent: &Agent) -> anyhow::Result<String> {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect {} -CAfile {} -cert {} -key {} </dev/null 2>/dev/null \
                 | openssl x509 -noout -subject",
                agent.addr,
                self.file("ca.pem"),
                self.file("client.crt"),
                self.file("client.key")
            ))
            .output()?;
        let subject = String::from_utf8_lossy(&out.stdout).to_string();
        Ok(subject
            .rsplit("CN")
            .next()
            .unwrap_or("")
            .trim_start_matches([' ', '='])
            .trim()
            .to_string())
    }

    /// Scrapes until `ok` holds or `within` has passed; the last scrape either way.
    fn metrics_until(
        &self,
        agent: &Agent,
        within: Duration,
        ok: impl Fn(&Exposition) -> bool,
    ) -> anyhow::Result<Exposition> {
        let deadline = Instant::now() + within;
        loop {
            let e = self.metrics(agent)?;
            if ok(&e) || Instant::now() > deadline {
                return Ok(e);
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn metrics(&self, agent: &Agent) -> anyhow::Result<Exposition> {
        let r = self.curl(
            agent,
            "/metrics",
            &["--cert", "client", "-u", &format!("prom:{PASSWORD}")],
        )?;
        anyhow::ensure!(r.code == 200, "/metrics: {r:?}");
        Ok(Exposition(r.body))
    }
}

#[derive(Debug)]
struct Curl {
    exit: i32,
    code: u16,
    headers: String,
    body: String,
    stderr: String,
}

const MTLS_AND_USERS: &str = "tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
http_server_config:
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
basic_auth_users:
  prom: HASH
";

fn counter(e: &Exposition, series: &str) -> f64 {
    e.0.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(-1.0)
}

/// Client certificates and passwords, right and wrong, and plain HTTP to the TLS port: each
/// gets its own clear refusal, is counted, and the agent serves on.
#[test]
fn client_certificates_and_passwords_are_enforced() -> anyhow::Result<()> {
    let test = "client_certificates_and_passwords_are_enforced";
    if !privileged(test) || !require_tool(test, "curl") {
        return Ok(());
    }
    let s = Setup::new("web-config-mtls", MTLS_AND_USERS)?;
    let agent = s.agent()?;
    let right = format!("prom:{PASSWORD}");

    // The right certificate and password: the exposition, with the configured headers.
    let ok = s.curl(&agent, "/metrics", &["--cert", "client", "-u", &right])?;
    assert_eq!(ok.code, 200, "{ok:?}");
    assert!(ok.body.contains("container_cpu_usage_seconds_total"));
    assert!(
        ok.headers.contains("x-frame-options: deny"),
        "{}",
        ok.headers
    );
    assert!(ok.headers.contains("x-content-type-options: nosniff"));

    // Right certificate, wrong or no password: 401 asking for Basic, on /metrics, the API and
    // the index page alike.
    for path in [
        "/metrics",
        "/api/v1.3/machine",
        "/api/v2.0/summary/",
        "/containers/",
    ] {
        let wrong = s.curl(&agent, path, &["--cert", "client", "-u", "prom:guess"])?;
        assert_eq!(wrong.code, 401, "{path}: {wrong:?}");
        let none = s.curl(&agent, path, &["--cert", "client"])?;
        assert_eq!(none.code, 401, "{path}: {none:?}");
        assert!(
            none.headers.contains("www-authenticate: basic"),
            "{}",
            none.headers
        );
        assert!(
            !none.body.contains("container_"),
            "{path} leaked data without a password"
        );
    }
    let unknown = s.curl(
        &agent,
        "/metrics",
        &["--cert", "client", "-u", &format!("eve:{PASSWORD}")],
    )?;
    assert_eq!(unknown.code, 401, "{unknown:?}");

    // /healthz stays open to probes (still over TLS with a client certificate).
    let health = s.curl(&agent, "/healthz", &["--cert", "client"])?;
    assert_eq!(health.code, 200, "{health:?}");

    // No client certificate, or one from another CA: no HTTP at all, the handshake fails.
    for opts in [
        &["-u", right.as_str()][..],
        &["--cert", "rogue", "-u", right.as_str()][..],
    ] {
        let r = s.curl(&agent, "/metrics", opts)?;
        assert_ne!(r.exit, 0, "{opts:?}: {r:?}");
        assert_eq!(r.code, 0, "{opts:?} got an HTTP answer: {r:?}");
        assert!(r.body.is_empty() || !r.body.contains("container_"), "{r:?}");
        eprintln!("refused as expected ({opts:?}): {}", r.stderr.trim());
    }

    // Plain HTTP to the TLS port: a readable 400.
    let (code, body) = nodetel_integration_tests::http_get(&agent.addr, "/metrics")?;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("HTTPS server"), "{body}");

    // All of it counted (in the next snapshot), and the agent is still there.
    let e = s.metrics_until(&agent, Duration::from_secs(10), |e| {
        counter(
            e,
            "nodetel_http_tls_handshake_failures_total{reason=\"plain_http\"}",
        ) >= 1.0
    })?;
    assert!(
        counter(
            &e,
            "nodetel_http_tls_handshake_failures_total{reason=\"handshake\"}"
        ) >= 2.0,
        "handshake failures not counted"
    );
    assert_eq!(
        counter(
            &e,
            "nodetel_http_tls_handshake_failures_total{reason=\"plain_http\"}"
        ),
        1.0
    );
    assert!(counter(&e, "nodetel_http_auth_failures_total{reason=\"denied\"}") >= 5.0);
    assert!(counter(&e, "nodetel_http_auth_failures_total{reason=\"missing\"}") >= 4.0);
    assert_eq!(
        counter(&e, "nodetel_web_config_last_reload_successful"),
        1.0
    );
    Ok(())
}

/// A new serving certificate renamed over the old files (as cert-manager's Secret update does)
/// is served within a minute, while a scraper every 200 ms never fails; a broken rotation keeps
/// the last good certificate and says so.
#[test]
fn a_rotated_certificate_is_served_without_a_restart_or_a_failed_scrape() -> anyhow::Result<()> {
    let test = "a_rotated_certificate_is_served_without_a_restart_or_a_failed_scrape";
    if !privileged(test) || !require_tool(test, "curl") || !require_tool(test, "openssl") {
        return Ok(());
    }
    let s = Setup::new("web-config-rotation", MTLS_AND_USERS)?;
    let agent = s.agent()?;
    assert_eq!(s.served_cn(&agent)?, "nodetel-a");

    // A scraper on its own connection each time (as after Prometheus' keep-alive ends).
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let scraper = {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        let (ca, crt, key, addr) = (
            s.file("ca.pem"),
            s.file("client.crt"),
            s.file("client.key"),
            agent.addr.clone(),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new("curl")
                    .args([
                        "-sS",
                        "--max-time",
                        "10",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                    ])
                    .args(["--cacert", &ca, "--cert", &crt, "--key", &key])
                    .args(["-u", &format!("prom:{PASSWORD}")])
                    .arg(format!("https://{addr}/metrics"))
                    .output();
                match out {
                    Ok(o) if o.stdout == b"200" => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let (cert, key) =
        s.ca.leaf("nodetel-b", ExtendedKeyUsagePurpose::ServerAuth)?;
    thread::sleep(Duration::from_secs(1));
    replace(&s.dir.join("server.key"), &key)?;
    replace(&s.dir.join("server.crt"), &cert)?;
    let rotated = Instant::now();
    let mut cn = String::new();
    while rotated.elapsed() < Duration::from_secs(60) {
        cn = s.served_cn(&agent)?;
        if cn == "nodetel-b" {
            break;
        }
        thread::sleep(Duration::from_millis(250));
    }
    eprintln!("new certificate served after {:?}", rotated.elapsed());
    assert_eq!(
        cn, "nodetel-b",
        "the rotated certificate was not served within 60 s"
    );

    // A broken rotation (a key that is not a key): the last good certificate stays.
    replace(&s.dir.join("server.key"), "not a key\n")?;
    let e = s.metrics_until(&agent, Duration::from_secs(30), |e| {
        counter(e, "nodetel_web_config_last_reload_successful") == 0.0
    })?;
    assert_eq!(
        counter(&e, "nodetel_web_config_last_reload_successful"),
        0.0
    );
    assert!(counter(&e, "nodetel_web_config_reloads_total{result=\"failed\"}") >= 1.0);
    assert_eq!(
        s.served_cn(&agent)?,
        "nodetel-b",
        "a broken key replaced the good one"
    );
    thread::sleep(Duration::from_secs(1));

    stop.store(true, Ordering::Relaxed);
    let _ = scraper.join();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("scrapes during the rotation: {ok} ok, {failed} failed");
    assert!(ok > 10, "only {ok} scrapes");
    assert_eq!(failed, 0, "scrapes failed during the rotation");
    assert!(counter(&e, "nodetel_web_config_reloads_total{result=\"ok\"}") >= 1.0);
    Ok(())
}

/// Debian's Prometheus scrapes through `tls_config` (with a client certificate) and
/// `basic_auth`; a job with the wrong password is down with the agent's 401.
#[test]
fn prometheus_scrapes_with_tls_config_and_basic_auth() -> anyhow::Result<()> {
    let test = "prometheus_scrapes_with_tls_config_and_basic_auth";
    if !privileged(test) || !require_tool(test, "curl") || !require_tool(test, "prometheus") {
        return Ok(());
    }
    let s = Setup::new("web-config-prometheus", MTLS_AND_USERS)?;
    let agent = s.agent()?;
    fs::create_dir_all(s.dir.join("prometheus"))?;
    let job = |name: &str, password: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {}\n      \
             cert_file: {}\n      key_file: {}\n    basic_auth:\n      username: prom\n      \
             password: '{password}'\n    static_configs:\n      - targets: ['{}']\n",
            s.file("ca.pem"),
            s.file("client.crt"),
            s.file("client.key"),
            agent.addr
        )
    };
    let prom = Prometheus::start(
        &s.dir.join("prometheus"),
        &format!("{}{}", job("nodetel", PASSWORD), job("intruder", "guess")),
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        good = prom.targets("nodetel")?;
        bad = prom.targets("intruder")?;
        if good.first().is_some_and(|t| t["health"] == "up")
            && bad.first().is_some_and(|t| t["health"] == "down")
        {
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        good.first().map(|t| t["health"].clone()),
        Some("up".into()),
        "{good:?}"
    );
    assert_eq!(
        bad.first().map(|t| t["health"].clone()),
        Some("down".into()),
        "{bad:?}"
    );
    let err = bad[0]["lastError"].as_str().unwrap_or("");
    assert!(err.contains("401"), "the intruder's error: {err}");
    // The data arrived: a container series is queryable under the job.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = prom.query("count(container_cpu_usage_seconds_total{job=\"nodetel\"})")?;
        let n: f64 = r
            .first()
            .and_then(|v| v["value"][1].as_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if n > 0.0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("no container series reached Prometheus");
        }
        thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// A mistake in the file is a refusal to start that names it, not an open port.
#[test]
fn a_broken_web_config_refuses_to_start() -> anyhow::Result<()> {
    if !privileged("a_broken_web_config_refuses_to_start") {
        return Ok(());
    }
    let s = Setup::new(
        "web-config-broken",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: missing.key\n",
    )?;
    let out = Command::new(nodetel_integration_tests::agent_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--web-config-file",
            &s.file("web.yml"),
        ])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started with a missing key: {stderr}"
    );
    assert!(
        stderr.contains("--web-config-file") && stderr.contains("missing.key"),
        "{stderr}"
    );
    Ok(())
}
