//! `cargo xtask fuzz`: what cargo-fuzz does, without installing it. The fuzz crate is built on
//! the nightly with LLVM's sanitizer coverage (the flags cargo-fuzz passes), for the host target
//! only so build scripts and proc macros stay uninstrumented; then the one binary runs once per
//! target with that target's corpus. New inputs go to a scratch copy under target/fuzz unless
//! `--keep` merges them into fuzz/corpus.
use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

const SANCOV: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg",
    "fuzzing",
];

pub fn run(root: &Path, seconds: u64, only: &[String], keep: bool) -> anyhow::Result<()> {
    // The nightly (and its rust-src) come with the eBPF toolchain's setup.
    crate::setup(root)?;
    let host = host_triple()?;
    let target_dir = root.join("target/fuzz");
    println!("fuzz: building the targets (nightly, sanitizer coverage, {host})");
    let status = Command::new("cargo")
        .args(["+nightly", "build", "--release", "--manifest-path"])
        .arg(root.join("fuzz/Cargo.toml"))
        .args(["--target", &host, "--target-dir"])
        .arg(&target_dir)
        .env("RUSTFLAGS", SANCOV.join(" "))
        // The kernel programs are not what is fuzzed: an empty placeholder object.
        .env("NODETEL_SKIP_EBPF", "1")
        .status()?;
    if !status.success() {
        bail!("building the fuzz targets failed");
    }
    let bin = target_dir.join(&host).join("release/nodetel-fuzz");
    let corpus = root.join("fuzz/corpus");
    let mut names: Vec<String> = std::fs::read_dir(&corpus)
        .with_context(|| format!("no corpus at {}", corpus.display()))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| only.is_empty() || only.contains(n))
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("no fuzz target selected");
    }
    let mut failed = Vec::new();
    for name in &names {
        let committed = corpus.join(name);
        let scratch = target_dir.join("corpus").join(name);
        let artifacts = target_dir.join("artifacts").join(name);
        std::fs::create_dir_all(&scratch)?;
        std::fs::create_dir_all(&artifacts)?;
        // libFuzzer adds what it finds to the first folder it is given.
        let (first, second) = if keep {
            (&committed, &scratch)
        } else {
            (&scratch, &committed)
        };
        println!("fuzz: {name} for {seconds} s");
        let status = Command::new(&bin)
            .env("NODETEL_FUZZ_TARGET", name)
            .arg(format!("-max_total_time={seconds}"))
            .arg("-rss_limit_mb=2048")
            .arg("-max_len=65536")
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(first)
            .arg(second)
            .status()?;
        if !status.success() {
            println!(
                "fuzz: {name} FAILED; the input is in {} (reproduce: NODETEL_FUZZ_TARGET={name} {} <file>)",
                artifacts.display(),
                bin.display()
            );
            failed.push(name.clone());
        }
    }
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    println!("fuzz: {} targets, {seconds} s each, no crash", names.len());
    Ok(())
}

fn host_triple() -> anyhow::Result<String> {
    let out = Command::new("rustc").arg("-vV").output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV printed no host")
}
