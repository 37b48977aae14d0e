//! The container image as the Dockerfile builds it, made where no registry is reachable: the
//! Dockerfile's runtime stage built with BuildKit by a test dockerd, its base a root filesystem of
//! this machine's Debian packages that hold the binary's libraries, and the binary under test put
//! in through the Dockerfile's `BINARY_FROM` argument (the build stage needs a registry's Rust
//! image). Shared by the image test and the Swarm test.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::Context as _;

use crate::runtimes::{Dockerd, run};

const BASE: &str = "nodetel-test/runtime-base:1";
const BINARY: &str = "nodetel-test/binary:1";

/// The CLI of Debian's docker.io package.
const DEBIAN_DOCKER_CLI: &str = "/usr/bin/docker";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A root filesystem holding the files of the Debian packages the binary's libraries come from
/// (as installed on this machine), as a tarball for `docker import`.
fn base_rootfs_tar(work: &Path, binary: &Path) -> anyhow::Result<PathBuf> {
    let ldd = run(Command::new("ldd").arg(binary))?;
    let mut packages = Vec::new();
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let owner = run(Command::new("dpkg").args(["-S", lib]))
            .or_else(|_| {
                // usrmerge: /lib64/ld-linux is /usr/lib64/... to dpkg, or the other way round.
                let alt = lib
                    .strip_prefix("/usr")
                    .map_or_else(|| format!("/usr{lib}"), String::from);
                run(Command::new("dpkg").args(["-S", &alt]))
            })
            .with_context(|| format!("which Debian package holds {lib}"))?;
        let pkg = owner
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        if !pkg.is_empty() && !packages.contains(&pkg) {
            packages.push(pkg);
        }
    }
    anyhow::ensure!(!packages.is_empty(), "ldd named no libraries:\n{ldd}");
    eprintln!("image: base from the Debian packages {packages:?}");
    let mut paths = std::collections::BTreeSet::new();
    for pkg in &packages {
        for f in run(Command::new("dpkg").args(["-L", pkg]))?.lines() {
            let p = Path::new(f);
            // Directories come with their files; docs are not needed.
            if f.starts_with("/usr/share/") || p.is_dir() || !p.exists() && !p.is_symlink() {
                continue;
            }
            // dpkg names /lib/...; on a merged-/usr system that is /usr/lib/..., which the image
            // gets, with /lib a link to it as on the host (a file under a directory that a later
            // entry turns into a link breaks the layer).
            let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
                continue;
            };
            paths.insert(fs::canonicalize(dir)?.join(name));
        }
    }
    let mut files = String::new();
    for p in &paths {
        files.push_str(p.to_string_lossy().trim_start_matches('/'));
        files.push('\n');
    }
    let list = work.join("files");
    fs::write(&list, files)?;
    let tar = work.join("base.tar");
    run(Command::new("tar")
        .args(["-C", "/", "-cf"])
        .arg(&tar)
        .arg("-T")
        .arg(&list))?;
    // usrmerge: the loader and libraries are found through /lib and /lib64 links.
    let links = work.join("links");
    fs::create_dir_all(links.join("usr/lib64"))?;
    for (link, target) in [
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("bin", "usr/bin"),
    ] {
        let at = links.join(link);
        if !at.is_symlink() {
            std::os::unix::fs::symlink(target, &at)?;
        }
    }
    run(Command::new("tar")
        .arg("-C")
        .arg(&links)
        .arg("-rf")
        .arg(&tar)
        .args(["lib", "lib64", "bin"]))?;
    Ok(tar)
}

/// `/out/nodetel` alone, as the build stage leaves it, with debug info stripped.
fn binary_tar(work: &Path, binary: &Path) -> anyhow::Result<PathBuf> {
    let out = work.join("binary/out");
    fs::create_dir_all(&out)?;
    run(Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(out.join("nodetel")))?;
    let tar = work.join("binary.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(work.join("binary"))
        .arg("-cf")
        .arg(&tar)
        .arg("out"))?;
    Ok(tar)
}

/// Builds the Dockerfile's runtime stage as `tag` on `dockerd`, from `binary`; `work` holds the
/// tarballs.
pub fn build_image(dockerd: &Dockerd, work: &Path, binary: &Path, tag: &str) -> anyhow::Result<()> {
    let d = |args: &[&str]| dockerd.docker(args);
    let base = base_rootfs_tar(work, binary)?;
    d(&["import", &base.display().to_string(), BASE])?;
    let bin = binary_tar(work, binary)?;
    d(&["import", &bin.display().to_string(), BINARY])?;
    // The Dockerfile's runtime stage, exactly; BuildKit builds only the stages it needs (the
    // classic builder would run the build stage too). Every base is a local image. Debian's
    // docker.io CLI (20.10) drives BuildKit itself; newer CLIs need the buildx plugin, which
    // Debian does not package, so this one is called by its path.
    let t0 = Instant::now();
    run(Command::new(DEBIAN_DOCKER_CLI)
        .arg("-H")
        .arg(format!("unix://{}", dockerd.socket.display()))
        .args(["build", "--target", "runtime", "-t", tag])
        .args(["--build-arg", &format!("BUILD_IMAGE={BASE}")])
        .args(["--build-arg", &format!("RUNTIME_IMAGE={BASE}")])
        .args(["--build-arg", &format!("BINARY_FROM={BINARY}")])
        .arg("-f")
        .arg(repo().join("Dockerfile"))
        .arg(repo())
        .env("DOCKER_BUILDKIT", "1"))?;
    eprintln!("image: runtime stage built in {:?}", t0.elapsed());
    Ok(())
}
