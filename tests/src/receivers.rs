//! Push receivers other than Prometheus, as Debian ships them, on free loopback ports with their
//! own directories; stopped when dropped: InfluxDB 1.6 (`influxd`) and VictoriaMetrics 1.79.
use std::{
    fs,
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::{http_get, http_post, prometheus::encode, runtimes::stop};

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `GET path` answers `status`.
fn wait_for(addr: &str, path: &str, status: u16, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http_get(addr, path), Ok((s, _)) if s == status) {
        if Instant::now() > deadline {
            bail!(
                "{addr}{path} never answered {status}: {}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

pub struct InfluxDb {
    child: Child,
    pub addr: String,
}

impl Drop for InfluxDb {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(10));
    }
}

impl InfluxDb {
    /// `influxd` with its meta, data and WAL under `dir`, no reporting, and `database` made.
    pub fn start(dir: &Path, database: &str) -> anyhow::Result<InfluxDb> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let rpc = format!("127.0.0.1:{}", free_port()?);
        let log_path = dir.join("influxd.log");
        let log = fs::File::create(&log_path)?;
        let child = Command::new("influxd")
            .args(["-config", "/dev/null"])
            .env("INFLUXDB_META_DIR", dir.join("meta"))
            .env("INFLUXDB_DATA_DIR", dir.join("data"))
            .env("INFLUXDB_DATA_WAL_DIR", dir.join("wal"))
            .env("INFLUXDB_HTTP_BIND_ADDRESS", &addr)
            .env("INFLUXDB_BIND_ADDRESS", &rpc)
            .env("INFLUXDB_REPORTING_DISABLED", "true")
            .env("INFLUXDB_HTTP_LOG_ENABLED", "false")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start influxd (apt-get install influxdb)")?;
        let db = InfluxDb { child, addr };
        wait_for(&db.addr, "/ping", 204, &log_path)?;
        let (status, body) = http_post(
            &db.addr,
            &format!(
                "/query?q={}",
                encode(&format!("CREATE DATABASE \"{database}\""))
            ),
            "",
        )?;
        ensure!(status == 200, "CREATE DATABASE: {status} {body}");
        Ok(db)
    }

    /// The rows of an InfluxQL query's first series, times in Unix milliseconds; empty when
    /// there is no series.
    pub fn query(&self, db: &str, q: &str) -> anyhow::Result<Vec<Vec<serde_json::Value>>> {
        let (status, body) = http_get(
            &self.addr,
            &format!("/query?db={}&epoch=ms&q={}", encode(db), encode(q)),
        )?;
        ensure!(status == 200, "{q}: {status} {body}");
        let v: serde_json::Value = serde_json::from_str(&body).with_context(|| body.clone())?;
        let result = &v["results"][0];
        ensure!(result["error"].is_null(), "{q}: {}", result["error"]);
        Ok(result["series"][0]["values"]
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| r.as_array().cloned()).collect())
            .unwrap_or_default())
    }
}

/// One exported series: its labels and (Unix ms, value) samples.
pub type Exported = (serde_json::Value, Vec<(i64, f64)>);

pub struct VictoriaMetrics {
    child: Child,
    pub addr: String,
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(10));
    }
}

impl VictoriaMetrics {
    /// Single-node VictoriaMetrics storing under `dir`; queries see the newest samples at once
    /// (`-search.latencyOffset=0s`; by default the last 30 s are hidden).
    pub fn start(dir: &Path) -> anyhow::Result<VictoriaMetrics> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let log_path = dir.join("victoria-metrics.log");
        let log = fs::File::create(&log_path)?;
        let child = Command::new("victoria-metrics")
            .arg(format!("-storageDataPath={}", dir.join("data").display()))
            .arg(format!("-httpListenAddr={addr}"))
            .args([
                "-search.latencyOffset=0s",
                "-retentionPeriod=1d",
                "-loggerLevel=WARN",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start victoria-metrics (apt-get install victoria-metrics)")?;
        let vm = VictoriaMetrics { child, addr };
        wait_for(&vm.addr, "/health", 200, &log_path)?;
        Ok(vm)
    }

    /// Raw samples of the series matching `selector` (`/api/v1/export`): per series its labels
    /// and (Unix ms, value) pairs. The receiver flushes what it took in first.
    pub fn export(&self, selector: &str) -> anyhow::Result<Vec<Exported>> {
        let _ = http_get(&self.addr, "/internal/force_flush");
        let (status, body) = http_get(
            &self.addr,
            &format!("/api/v1/export?match[]={}", encode(selector)),
        )?;
        ensure!(status == 200, "{selector}: {status} {body}");
        let mut out = Vec::new();
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let times = v["timestamps"].as_array().context("timestamps")?;
            let values = v["values"].as_array().context("values")?;
            let samples = times
                .iter()
                .zip(values)
                .filter_map(|(t, v)| Some((t.as_i64()?, v.as_f64()?)))
                .collect();
            out.push((v["metric"].clone(), samples));
        }
        Ok(out)
    }
}
