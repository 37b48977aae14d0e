//! A real Prometheus (Debian's `prometheus`, 2.42) scraping what a test starts, on a free
//! loopback port with its own storage directory; stopped when dropped.
use std::{
    fs,
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{http_get, runtimes::stop};

pub struct Prometheus {
    child: Child,
    pub addr: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(10));
    }
}

impl Prometheus {
    /// `scrape_configs` is the YAML list under `scrape_configs:` (items indented by two
    /// spaces); every job scrapes each second.
    pub fn start(dir: &Path, scrape_configs: &str) -> anyhow::Result<Prometheus> {
        Prometheus::start_with_rules(dir, scrape_configs, None)
    }

    /// As [`Self::start`], evaluating the rule file `rules` every second too.
    pub fn start_with_rules(
        dir: &Path,
        scrape_configs: &str,
        rules: Option<&Path>,
    ) -> anyhow::Result<Prometheus> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Prometheus::launch(
            dir,
            scrape_configs,
            rules,
            &format!("127.0.0.1:{port}"),
            &[],
        )
    }

    /// A remote write receiver (`POST /api/v1/write`) that scrapes nothing, on `addr` (a free
    /// port when `None`; the same one to come back after [`Self::stop`], as a receiver does).
    pub fn start_receiver(dir: &Path, addr: Option<&str>) -> anyhow::Result<Prometheus> {
        let addr = match addr {
            Some(a) => a.to_string(),
            None => format!(
                "127.0.0.1:{}",
                TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()
            ),
        };
        Prometheus::launch(
            dir,
            "",
            None,
            &addr,
            &["--web.enable-remote-write-receiver"],
        )
    }

    fn launch(
        dir: &Path,
        scrape_configs: &str,
        rules: Option<&Path>,
        addr: &str,
        flags: &[&str],
    ) -> anyhow::Result<Prometheus> {
        let addr = addr.to_string();
        let config = dir.join("prometheus.yml");
        let rule_files = rules
            .map(|r| format!("rule_files:\n  - {}\n", r.display()))
            .unwrap_or_default();
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{rule_files}scrape_configs:\n{scrape_configs}"
            ),
        )?;
        let log = fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .args(flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start prometheus (apt-get install prometheus)")?;
        let p = Prometheus { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(http_get(&p.addr, "/-/ready"), Ok((200, _))) {
            if Instant::now() > deadline {
                bail!(
                    "prometheus not ready: {}",
                    fs::read_to_string(dir.join("prometheus.log"))?
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
        Ok(p)
    }

    /// The `data` of an API call.
    pub fn api(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let (status, body) = http_get(&self.addr, path)?;
        let v: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("{path}: {body}"))?;
        anyhow::ensure!(
            status == 200 && v["status"] == "success",
            "{path}: {status} {body}"
        );
        Ok(v["data"].clone())
    }

    pub fn query(&self, expr: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The active targets of `job`, as `/api/v1/targets` lists them.
    pub fn targets(&self, job: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let data = self.api("/api/v1/targets?state=active")?;
        Ok(data["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t["labels"]["job"] == job)
            .collect())
    }
}

/// Percent-encoding for a query string value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
