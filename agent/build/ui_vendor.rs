//! The web UI's one third-party asset: uPlot (MIT), fetched from the npm registry at build time,
//! pinned by version and by the registry's own `integrity` hash (SHA-512 of the tarball), and
//! embedded in the binary: nodes are often air-gapped, so the page never loads from a CDN.
//!
//! The tarball is cached under `target/npm/` so that a build fetches it once. For a build without
//! the registry, `NODETEL_UPLOT_TGZ` names a copy of the same tarball (checked all the same).
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use base64::Engine as _;

const VERSION: &str = "1.6.32";
/// `dist.integrity` of uplot@1.6.32 in the npm registry.
const INTEGRITY: &str = "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==";
/// The files of the package the UI serves, as the tarball names them.
const FILES: [(&str, &str); 3] = [
    ("package/dist/uPlot.iife.min.js", "uPlot.iife.min.js"),
    ("package/dist/uPlot.min.css", "uPlot.min.css"),
    ("package/LICENSE", "uPlot.LICENSE"),
];

pub fn vendor(out_dir: &Path) -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=NODETEL_UPLOT_TGZ");
    println!("cargo:rerun-if-changed=build/ui_vendor.rs");
    let tgz = match env::var_os("NODETEL_UPLOT_TGZ") {
        Some(p) => PathBuf::from(p),
        None => cached_download()?,
    };
    let bytes = fs::read(&tgz).with_context(|| format!("reading {}", tgz.display()))?;
    check_integrity(&bytes).with_context(|| format!("{} is not uplot@{VERSION}", tgz.display()))?;
    let dest = out_dir.join("ui-vendor");
    fs::create_dir_all(&dest)?;
    for (member, name) in FILES {
        let out = Command::new("tar")
            .arg("-xzOf")
            .arg(&tgz)
            .arg(member)
            .output()
            .context("running tar (needed to unpack uPlot)")?;
        if !out.status.success() || out.stdout.is_empty() {
            bail!("{member} not found in {}", tgz.display());
        }
        fs::write(dest.join(name), out.stdout)?;
    }
    Ok(())
}

/// `target/npm/uplot-<version>.tgz`, fetched with curl if absent (written whole or not at all).
fn cached_download() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("no manifest dir")?);
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target"));
    let dir = target.join("npm");
    let file = dir.join(format!("uplot-{VERSION}.tgz"));
    if fs::read(&file).is_ok_and(|b| check_integrity(&b).is_ok()) {
        return Ok(file);
    }
    fs::create_dir_all(&dir)?;
    let partial = dir.join(format!("uplot-{VERSION}.tgz.partial"));
    let url = format!("https://registry.npmjs.org/uplot/-/uplot-{VERSION}.tgz");
    let status = Command::new("curl")
        .args(["-fsSL", "--retry", "3", "--max-time", "120", "-o"])
        .arg(&partial)
        .arg(&url)
        .status()
        .context("running curl (needed to fetch uPlot from the npm registry)")?;
    if !status.success() {
        bail!(
            "could not fetch {url} ({status}); without the registry, set NODETEL_UPLOT_TGZ to a \
             copy of that tarball"
        );
    }
    fs::rename(&partial, &file)?;
    Ok(file)
}

fn check_integrity(bytes: &[u8]) -> anyhow::Result<()> {
    let want = base64::engine::general_purpose::STANDARD
        .decode(INTEGRITY.trim_start_matches("sha512-"))
        .context("the pinned integrity is not base64")?;
    let got = ring::digest::digest(&ring::digest::SHA512, bytes);
    if got.as_ref() != want.as_slice() {
        bail!("SHA-512 differs from the pinned integrity {INTEGRITY}");
    }
    Ok(())
}
