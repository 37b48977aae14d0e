//! A real cAdvisor (0.38.7, Debian bullseye's package, which `cargo xtask test` fetches and
//! names in `NODETEL_CADVISOR`) beside nodetel, on the same containers: the peer that
//! compatibility claims are checked against. Stopped when dropped.
use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{http_get, runtimes::stop, skip};

pub const ENV: &str = "NODETEL_CADVISOR";

/// The cAdvisor binary, or a loud skip (a failure in CI) when there is none.
pub fn binary(test: &str) -> Option<PathBuf> {
    let fetched =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/peer/root/usr/bin/cadvisor");
    let bin = std::env::var_os(ENV)
        .map(PathBuf::from)
        .or_else(|| fetched.is_file().then_some(fetched));
    if let Some(bin) = bin.filter(|b| b.is_file()) {
        return Some(bin);
    }
    skip(
        test,
        &format!("no cAdvisor binary (`cargo xtask test` fetches Debian's and sets {ENV})"),
    );
    None
}

pub struct Cadvisor {
    child: Child,
    pub addr: String,
}

impl Drop for Cadvisor {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(10));
    }
}

impl Cadvisor {
    /// cAdvisor at its defaults but for a 1 s housekeeping, naming containers from `docker`
    /// (a socket path), its log in `log`.
    pub fn start(bin: &Path, docker: &Path, log: &Path) -> anyhow::Result<Cadvisor> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let out = fs::File::create(log)?;
        let child = Command::new(bin)
            .args(["-listen_ip", "127.0.0.1", "-port", &port.to_string()])
            .args(["-housekeeping_interval", "1s"])
            .arg("-allow_dynamic_housekeeping=false")
            .arg("-docker")
            .arg(format!("unix://{}", docker.display()))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("start cadvisor")?;
        let c = Cadvisor { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(http_get(&c.addr, "/healthz"), Ok((200, _))) {
            if Instant::now() > deadline {
                bail!("cadvisor not healthy: {}", fs::read_to_string(log)?);
            }
            thread::sleep(Duration::from_millis(200));
        }
        Ok(c)
    }

    pub fn metrics(&self) -> anyhow::Result<crate::Exposition> {
        let (status, body) = http_get(&self.addr, "/metrics")?;
        anyhow::ensure!(status == 200, "cadvisor /metrics: {status}");
        Ok(crate::Exposition(body))
    }
}
