//! `cargo xtask bench`: builds the release agent and the bench harness, fetches the peer
//! (cAdvisor 0.38.7, Debian bullseye's `cadvisor` package, from the mirror this machine's apt
//! already uses) and runs them side by side. Without the peer, nodetel is measured alone and the
//! report says why.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

pub struct Options {
    pub cgroups: String,
    pub window: u64,
    pub containers: usize,
    pub pipe_runs: usize,
    pub no_peer: bool,
}

pub fn run(root: &Path, opts: &Options) -> anyhow::Result<()> {
    for tool in ["perf", "bpftool", "taskset", "dockerd", "docker", "busybox"] {
        if !have(tool) {
            bail!(
                "`{tool}` is missing: apt-get install linux-perf bpftool util-linux docker.io busybox-static"
            );
        }
    }
    crate::setup(root)?;
    let agent = crate::shipped_agent(root)?;
    crate::cargo(
        root,
        &[
            "build",
            "--release",
            "-p",
            "nodetel-integration-tests",
            "--bin",
            "bench",
        ],
    )?;
    let out = root.join("target/bench");
    fs::create_dir_all(&out)?;
    let peer = if opts.no_peer {
        Err("not requested (--no-peer)".to_string())
    } else {
        fetch_cadvisor(&out.join("peer")).map_err(|e| format!("{e:#}"))
    };
    let mut cmd = Command::new(root.join("target/release/bench"));
    cmd.arg("--nodetel")
        .arg(&agent)
        .args(["--cgroups", &opts.cgroups])
        .args(["--window", &opts.window.to_string()])
        .args(["--containers", &opts.containers.to_string()])
        .args(["--pipe-runs", &opts.pipe_runs.to_string()])
        .arg("--out")
        .arg(&out)
        .current_dir(root);
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match peer {
        Ok(bin) => {
            cmd.arg("--cadvisor").arg(bin);
        }
        // CI compares with the peer or fails: a silent nodetel-only run compares nothing.
        Err(reason) if ci => bail!("bench: cAdvisor is required under CI=true: {reason}"),
        Err(reason) => {
            eprintln!("bench: cAdvisor is not available: {reason}; measuring nodetel alone");
            cmd.args(["--no-peer-reason", &reason]);
        }
    }
    let status = cmd.status().context("run the bench")?;
    if !status.success() {
        bail!("the bench failed ({status})");
    }
    let report = out.join("report.json");
    // The DaemonSet's limit comes from the rendered manifest that `cargo xtask deploy-check`
    // (run by `cargo xtask test`, so by CI) writes; a bench run on its own may not have it.
    if !ci && !root.join("target/deploy/daemonset-pod.json").is_file() {
        eprintln!("bench: bounds not checked: run `cargo xtask deploy-check` first");
        return Ok(());
    }
    let broken = out_of_bounds(root, &report)?;
    if broken.is_empty() {
        eprintln!(
            "bench: nodetel within its bounds (RSS under the DaemonSet's limit, CPU under {MAX_CPU_PERCENT} % of a core at {BOUNDED_CGROUPS} cgroups or fewer)"
        );
        return Ok(());
    }
    for b in &broken {
        eprintln!("bench: OUT OF BOUNDS: {b}");
    }
    if ci {
        bail!(
            "the bench's figures left their bounds (see {})",
            report.display()
        );
    }
    Ok(())
}

/// The bounds a run must stay within (all figures are printed either way): peak RSS under the
/// DaemonSet's memory limit at every size, and CPU under a tenth of a core where the node has
/// at most this many cgroups. A bound, not a target: measured 1.3 % at 300 cgroups.
const MAX_CPU_PERCENT: f64 = 10.0;
const BOUNDED_CGROUPS: u64 = 50;

fn out_of_bounds(root: &Path, report: &Path) -> anyhow::Result<Vec<String>> {
    let pod = root.join("target/deploy/daemonset-pod.json");
    let pod: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(&pod)
            .with_context(|| format!("{} (cargo xtask deploy-check writes it)", pod.display()))?,
    )?;
    let limit = pod["memory_limit_bytes"]
        .as_f64()
        .context("the DaemonSet has no memory limit")?;
    let report: serde_json::Value = serde_json::from_str(&fs::read_to_string(report)?)?;
    let mut broken = Vec::new();
    let sizes = report["sizes"].as_array().context("report: no sizes")?;
    for size in sizes {
        let cgroups = size["cgroups"].as_u64().unwrap_or(0);
        let agents = size["agents"].as_array().context("report: no agents")?;
        let nodetel = agents
            .iter()
            .find(|a| a["agent"] == "nodetel")
            .context("report: no nodetel figures")?;
        let figure = |k: &str| {
            nodetel[k]
                .as_f64()
                .with_context(|| format!("report: no {k}"))
        };
        let (rss, cpu) = (figure("rss_bytes_peak")?, figure("cpu_percent_total")?);
        if rss >= limit {
            broken.push(format!(
                "{cgroups} cgroups: peak RSS {:.1} MiB, the DaemonSet's limit {:.0} MiB",
                rss / 1048576.0,
                limit / 1048576.0
            ));
        }
        if cgroups <= BOUNDED_CGROUPS && cpu >= MAX_CPU_PERCENT {
            broken.push(format!(
                "{cgroups} cgroups: CPU {cpu:.2} % of a core, bound {MAX_CPU_PERCENT} %"
            ));
        }
    }
    if sizes.is_empty() {
        broken.push("the report has no sizes".to_string());
    }
    Ok(broken)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Debian bullseye's `cadvisor` binary package, unpacked under `dir` (once).
pub fn fetch_cadvisor(dir: &Path) -> anyhow::Result<PathBuf> {
    let bin = dir.join("root/usr/bin/cadvisor");
    if bin.is_file() {
        return Ok(bin);
    }
    let mirror = debian_mirror().context("no Debian mirror in this machine's apt sources")?;
    let parts = dir.join("sources");
    let lists = dir.join("lists");
    let cache = dir.join("cache");
    let debs = dir.join("debs");
    for d in [
        &parts,
        &lists.join("partial"),
        &cache.join("archives/partial"),
        &debs,
    ] {
        fs::create_dir_all(d)?;
    }
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    fs::write(
        parts.join("bullseye.sources"),
        format!(
            "Types: deb\nURIs: {mirror}\nSuites: bullseye\nComponents: main\nSigned-By: {keyring}\n"
        ),
    )?;
    // Only our own lists, cache and sources: the machine's apt state is not touched.
    let apt = |args: &[&str]| -> anyhow::Result<()> {
        let status = Command::new("apt-get")
            .args(["-q", "-o", "Dir::Etc::SourceList=/dev/null"])
            .arg("-o")
            .arg(format!("Dir::Etc::SourceParts={}", parts.display()))
            .arg("-o")
            .arg(format!("Dir::State::Lists={}", lists.display()))
            .arg("-o")
            .arg(format!("Dir::Cache={}", cache.display()))
            .args([
                "-o",
                "Debug::NoLocking=1",
                "-o",
                "APT::Sandbox::User=root",
                "-o",
                "Acquire::Languages=none",
            ])
            .args(args)
            .current_dir(&debs)
            .status()
            .context("run apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    apt(&["update"])?;
    apt(&["download", "cadvisor"])?;
    let deb = fs::read_dir(&debs)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download left no .deb")?;
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(dir.join("root"))
        .status()?;
    if !status.success() || !bin.is_file() {
        bail!("unpacking {} gave no usr/bin/cadvisor", deb.display());
    }
    Ok(bin)
}

/// The Debian archive URI of this machine's apt sources (deb822 `.sources` or one-line lists).
fn debian_mirror() -> Option<String> {
    let mut texts = Vec::new();
    if let Ok(t) = fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "sources" || x == "list")
                && let Ok(t) = fs::read_to_string(&p)
            {
                texts.push(t);
            }
        }
    }
    texts.iter().find_map(|t| mirror_in(t))
}

fn mirror_in(text: &str) -> Option<String> {
    let uris = text.lines().flat_map(|l| {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix("URIs:") {
            rest.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        } else if l.starts_with("deb ") {
            // deb [options] URI suite components
            l.split_whitespace()
                .skip(1)
                .find(|w| w.contains("://"))
                .map(str::to_string)
                .into_iter()
                .collect()
        } else {
            Vec::new()
        }
    });
    uris.filter(|u| u.contains("debian") && !u.contains("security"))
        .map(|u| u.trim_end_matches('/').to_string())
        .next()
}

#[cfg(test)]
mod tests {
    use super::mirror_in;

    #[test]
    fn finds_the_archive_not_security() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\nTypes: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n";
        assert_eq!(
            mirror_in(deb822).as_deref(),
            Some("http://mirror.example/debian")
        );
        let list = "# comment\ndeb [arch=amd64] http://ftp.de.debian.org/debian bookworm main\n";
        assert_eq!(
            mirror_in(list).as_deref(),
            Some("http://ftp.de.debian.org/debian")
        );
        assert_eq!(
            mirror_in("deb https://deb.nodesource.com/node_20.x nodistro main\n"),
            None
        );
    }
}
