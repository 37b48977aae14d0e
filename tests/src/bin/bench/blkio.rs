//! The `blkio` kind's cost under a block I/O load: fio's 4 KiB random direct reads (one job,
//! psync, on the disk holding /var/tmp) without an agent, then with nodetel's block I/O programs
//! timed by the kernel (bpf_stats): ns per bio of each program, against the read's own latency.
//! The kind is on by default only if the whole path costs under 1 % of that read.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{Args, kind_cost, report::Program};

/// Seconds of fio per configuration.
const SECONDS: u64 = 10;

pub struct BlkioResult {
    pub seconds: u64,
    /// fio's mean completion latency of a read, µs, without and with the agent.
    pub latency_us_without: f64,
    pub latency_us_with: f64,
    /// Reads fio completed with the agent.
    pub reads_with: u64,
    /// The block I/O programs' runs and run time while fio ran with the agent.
    pub programs: Vec<Program>,
}

impl BlkioResult {
    /// ns the programs spent per bio: all their run time over the bios submitted.
    pub fn ns_per_bio(&self) -> f64 {
        let queued = self
            .programs
            .iter()
            .find(|p| p.name == "block_bio_queue")
            .map_or(0, |p| p.runs);
        let ns: u64 = self.programs.iter().map(|p| p.run_ns).sum();
        if queued == 0 {
            return 0.0;
        }
        ns as f64 / queued as f64
    }

    /// That cost as a share of one read's latency without the agent, in percent.
    pub fn percent_of_read(&self) -> f64 {
        self.ns_per_bio() / (self.latency_us_without * 1e3) * 100.0
    }
}

/// A file fio reads, on the disk holding /var/tmp (not tmpfs), removed on drop.
struct File(PathBuf);

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// (mean read latency µs, reads) of `seconds` of fio on `file`.
fn fio(file: &Path, seconds: u64) -> anyhow::Result<(f64, u64)> {
    let out = Command::new("fio")
        .args([
            "--name=nodetel-bench",
            "--rw=randread",
            "--bs=4k",
            "--direct=1",
            "--ioengine=psync",
            "--size=64M",
            "--time_based",
            "--output-format=json",
        ])
        .arg(format!("--runtime={seconds}"))
        .arg(format!("--filename={}", file.display()))
        .output()
        .context("run fio")?;
    if !out.status.success() {
        bail!("fio: {}", String::from_utf8_lossy(&out.stderr));
    }
    // fio may print notes before its JSON.
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text.find('{').map_or("", |i| &text[i..]);
    let v: serde_json::Value = serde_json::from_str(json).context("fio's JSON")?;
    let read = &v["jobs"][0]["read"];
    let mean_ns = read["clat_ns"]["mean"]
        .as_f64()
        .context("no clat_ns.mean")?;
    let ios = read["total_ios"].as_u64().context("no total_ios")?;
    Ok((mean_ns / 1e3, ios))
}

/// `None` (said why) when fio is not installed: `cargo xtask test` installs it.
pub fn run(
    args: &Args,
    docker_socket: &str,
    cgroup: &crate::population::Cgroup,
) -> anyhow::Result<Option<BlkioResult>> {
    if Command::new("fio").arg("--version").output().is_err() {
        eprintln!("bench: fio is not installed; the blkio cost is not measured");
        return Ok(None);
    }
    let file = File(PathBuf::from(format!(
        "/var/tmp/nodetel-bench-fio-{}",
        std::process::id()
    )));
    // Lays the file out (fio writes it on first use) and warms the device.
    fio(&file.0, 1)?;
    let (without, _) = fio(&file.0, SECONDS)?;
    let ((with, reads), programs) = kind_cost::timed_programs(
        args,
        docker_socket,
        cgroup,
        // The defaults plus `blkio`.
        (
            "nodetel-blkio",
            &["--disable-metrics=process,sched,pressure"],
        ),
        |name| name.starts_with("block_"),
        || fio(&file.0, SECONDS),
    )?;
    Ok(Some(BlkioResult {
        seconds: SECONDS,
        latency_us_without: without,
        latency_us_with: with,
        reads_with: reads,
        programs,
    }))
}
