//! Builds the kernel programs (agent-ebpf) with the nightly and embeds the object in the agent,
//! and fetches the web UI's charting library (see `ui_vendor.rs`).
//!
//! `NODETEL_SKIP_EBPF=1` writes an empty placeholder instead, so `cargo check`, clippy and unit
//! tests work on machines without the eBPF toolchain; such a binary refuses to start.
use std::{env, fs, path::PathBuf};

#[path = "build/ui_vendor.rs"]
mod ui_vendor;

use anyhow::{Context as _, anyhow};

const OBJECT: &str = "nodetel-ebpf";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=NODETEL_SKIP_EBPF");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    ui_vendor::vendor(&out_dir)?;
    let skip = env::var("NODETEL_SKIP_EBPF").is_ok_and(|v| v == "1" || v == "true");
    if skip {
        println!("cargo:warning=NODETEL_SKIP_EBPF set: building without kernel programs");
        fs::write(out_dir.join(OBJECT), [])?;
        return Ok(());
    }
    if which_bpf_linker().is_none() {
        return Err(anyhow!(
            "bpf-linker not found on PATH. Run `cargo xtask setup` (installs the nightly's rust-src \
             and a bpf-linker built against the nightly's LLVM), or set NODETEL_SKIP_EBPF=1 to \
             build without the kernel programs (check, clippy and unit tests only)."
        ));
    }
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("no manifest dir")?);
    let ebpf_dir = manifest
        .parent()
        .context("agent/ has no parent")?
        .join("agent-ebpf");
    let root_dir = ebpf_dir.to_str().context("non-UTF-8 path to agent-ebpf")?;
    let toolchain = env::var("NODETEL_EBPF_TOOLCHAIN").unwrap_or_else(|_| "nightly".into());
    println!("cargo:rerun-if-env-changed=NODETEL_EBPF_TOOLCHAIN");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "nodetel-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}

fn which_bpf_linker() -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join("bpf-linker"))
        .find(|candidate| candidate.is_file())
}
