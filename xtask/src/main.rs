//! Developer tasks: `cargo xtask <setup|build-ebpf|run|test|integration-test vm|lint|bench|
//! deploy-check>`.
mod bench;
mod fuzz;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "nodetel developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the eBPF build needs: the nightly's rust-src and a bpf-linker built against
    /// the nightly's own LLVM (idempotent; about a minute the first time).
    Setup,
    /// Build only the kernel programs and print where the object is (for bpftool or objdump).
    BuildEbpf,
    /// Build the agent in release mode and run it (needs root); arguments after `--` go to it.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Unit tests, then the privileged integration tests against the real kernel.
    Test {
        /// Passed to every integration-test binary, e.g. a test name filter.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        test_args: Vec<String>,
    },
    /// The privileged integration tests somewhere other than this host.
    IntegrationTest {
        #[command(subcommand)]
        place: Place,
    },
    /// cargo fmt --check and clippy -D warnings on the userspace crates.
    Lint,
    /// Rewrite the golden files (agent/testdata/golden/) from what the unit tests render now:
    /// runs them, copies each differing rendering over its golden, runs them again. Review the
    /// diff before committing.
    Bless,
    /// Validate deploy/: Kubernetes manifests and overlays (strict, 1.37 schemas), Prometheus
    /// rules and their unit tests, Compose and Swarm files. Also run by `test`.
    DeployCheck {
        /// Regenerate the Operator's PrometheusRule from deploy/prometheus/nodetel-rules.yaml.
        #[arg(long)]
        write: bool,
    },
    /// Build the fuzz targets (libFuzzer, on the nightly) and run each for a bounded time on its
    /// committed corpus (fuzz/corpus/<target>); a crash fails with the input that caused it.
    Fuzz {
        /// Seconds each target runs.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Only these targets (default: every folder in fuzz/corpus).
        #[arg(long, value_delimiter = ',')]
        targets: Vec<String>,
        /// Merge what the run found into fuzz/corpus (to commit) instead of a scratch copy.
        #[arg(long)]
        keep: bool,
    },
    /// Churn (cgroups and Docker containers made and removed while scraped) and a soak under a
    /// scrape flood with slow readers, against the release agent (needs root); figures printed,
    /// only "back to baseline", "flat" and "answered" asserted.
    Soak {
        /// The CI-sized run (about a minute) instead of the full one (about 15 minutes).
        #[arg(long)]
        short: bool,
    },
    /// nodetel and cAdvisor 0.38.7 side by side on the same N cgroups (needs root): CPU with
    /// eBPF time, memory, scrape latency, read floor, context-switch tax. Table and JSON in
    /// target/bench.
    Bench {
        /// Cgroup counts, comma-separated.
        #[arg(long, default_value = "300,1000,3000")]
        cgroups: String,
        /// Seconds each agent is scraped, once a second.
        #[arg(long, default_value_t = 30)]
        window: u64,
        /// Docker containers besides the plain cgroups.
        #[arg(long, default_value_t = 4)]
        containers: usize,
        /// perf bench sched pipe runs per configuration (0: skip).
        #[arg(long, default_value_t = 5)]
        pipe_runs: usize,
        /// Measure nodetel alone.
        #[arg(long)]
        no_peer: bool,
    },
}

#[derive(Subcommand)]
enum Place {
    /// In a QEMU VM with a pure cgroup v2 hierarchy on a second kernel (default: Debian
    /// bookworm's current cloud kernel, fetched with apt). Needs no KVM.
    Vm {
        /// A kernel to boot instead: a bzImage/vmlinuz, or a linux-image .deb to unpack.
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Give up on the VM after this long.
        #[arg(long, default_value_t = 900)]
        timeout_secs: u64,
        /// Give up on one test binary after this long (its processes' kernel stacks are printed).
        #[arg(long, default_value_t = 180)]
        test_timeout_secs: u64,
        /// Guest memory.
        #[arg(long, default_value_t = 2048)]
        memory_mib: u32,
        /// Passed to every test binary in the guest, e.g. a test name filter.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        test_args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let root = workspace_root()?;
    match Cli::parse().task {
        Task::Setup => setup(&root),
        Task::BuildEbpf => build_ebpf(&root),
        Task::Run { args } => {
            setup(&root)?;
            let bin = shipped_agent(&root)?;
            let status = Command::new(&bin).args(&args).status()?;
            if !status.success() {
                bail!("nodetel exited with {status}");
            }
            Ok(())
        }
        Task::Test { test_args } => test(&root, &test_args),
        Task::DeployCheck { write } => deploy_check(&root, write),
        Task::Soak { short } => soak(&root, short),
        Task::Fuzz {
            seconds,
            targets,
            keep,
        } => fuzz::run(&root, seconds, &targets, keep),
        Task::IntegrationTest {
            place:
                Place::Vm {
                    kernel,
                    timeout_secs,
                    test_timeout_secs,
                    memory_mib,
                    test_args,
                },
        } => {
            setup(&root)?;
            vm::run(
                &root,
                &vm::Options {
                    kernel,
                    timeout: Duration::from_secs(timeout_secs),
                    test_timeout: Duration::from_secs(test_timeout_secs),
                    memory_mib,
                    test_args,
                },
            )
        }
        Task::Bench {
            cgroups,
            window,
            containers,
            pipe_runs,
            no_peer,
        } => bench::run(
            &root,
            &bench::Options {
                cgroups,
                window,
                containers,
                pipe_runs,
                no_peer,
            },
        ),
        Task::Bless => bless(&root),
        Task::Lint => {
            cargo(&root, &["fmt", "--all", "--", "--check"])?;
            setup(&root)?;
            let mut args = vec!["clippy"];
            args.extend(package_args(USERSPACE));
            args.extend(["--all-targets", "--", "-D", "warnings"]);
            cargo(&root, &args)
        }
    }
}

/// The README's ground-truth matrix, between these markers, is rendered by the tests' matrix.
const MATRIX_BEGIN: &str =
    "<!-- ground-truth-matrix:begin (cargo xtask bless writes this table) -->\n";
const MATRIX_END: &str = "<!-- ground-truth-matrix:end -->";
const GOLDEN_TESTS: [&[&str]; 2] = [
    &["test", "-p", "nodetel", "--lib", "golden"],
    &[
        "test",
        "-p",
        "nodetel-integration-tests",
        "--test",
        "matrix",
    ],
];

fn bless(root: &Path) -> anyhow::Result<()> {
    let actual = root.join("target/golden-actual");
    let _ = std::fs::remove_dir_all(&actual);
    // They fail when a rendering differs: that is what leaves the renderings to copy.
    let first: Vec<anyhow::Result<()>> = GOLDEN_TESTS.iter().map(|a| cargo(root, a)).collect();
    let mut blessed = Vec::new();
    for entry in std::fs::read_dir(&actual).into_iter().flatten().flatten() {
        let name = entry.file_name();
        if name == "README-matrix.md" {
            let table = std::fs::read_to_string(entry.path())?;
            let readme_path = root.join("README.md");
            let readme = std::fs::read_to_string(&readme_path)?;
            let (head, rest) = readme
                .split_once(MATRIX_BEGIN)
                .context("README.md has no ground-truth-matrix:begin marker")?;
            let (_, tail) = rest
                .split_once(MATRIX_END)
                .context("README.md has no ground-truth-matrix:end marker")?;
            std::fs::write(
                &readme_path,
                format!("{head}{MATRIX_BEGIN}{table}{MATRIX_END}{tail}"),
            )?;
            blessed.push("README.md (the ground-truth matrix)".to_string());
            continue;
        }
        std::fs::copy(entry.path(), root.join("agent/testdata/golden").join(&name))?;
        blessed.push(name.to_string_lossy().into_owned());
    }
    if blessed.is_empty() {
        first.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        eprintln!("bless: every golden rendering already matches");
        return Ok(());
    }
    eprintln!("bless: rewrote {}; review `git diff`", blessed.join(", "));
    for args in GOLDEN_TESTS {
        cargo(root, args)?;
    }
    Ok(())
}

/// The host-side crates: linted together; the first three hold the unit tests.
const USERSPACE: &[&str] = &[
    "nodetel",
    "nodetel-common",
    "xtask",
    "nodetel-integration-tests",
];

fn package_args(packages: &[&'static str]) -> Vec<&'static str> {
    packages.iter().flat_map(|p| ["-p", *p]).collect()
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

fn setup(root: &Path) -> anyhow::Result<()> {
    let script = root.join("xtask/scripts/ensure-ebpf-toolchain.sh");
    let status = Command::new("bash").arg(&script).status()?;
    if !status.success() {
        bail!(
            "{} failed: the eBPF toolchain is not usable",
            script.display()
        );
    }
    Ok(())
}

fn soak(root: &Path, short: bool) -> anyhow::Result<()> {
    setup(root)?;
    let agent = shipped_agent(root)?;
    cargo(
        root,
        &[
            "build",
            "--release",
            "-p",
            "nodetel-integration-tests",
            "--bin",
            "soak",
        ],
    )?;
    let mut cmd = Command::new(root.join("target/release/soak"));
    cmd.env("NODETEL_BIN", &agent).current_dir(root);
    if short {
        cmd.args([
            "--churn-cgroups",
            "1000",
            "--churn-containers",
            "10",
            "--soak-cgroups",
            "300",
            "--soak-seconds",
            "40",
            "--scrapers",
            "20",
            "--slow-readers",
            "2",
            "--history-samples",
            "10",
        ]);
    }
    if !cmd.status()?.success() {
        bail!("soak: a property did not hold");
    }
    Ok(())
}

/// Installs (as root, with apt) or names every tool the test suite needs: one list, shared with
/// CI, in `xtask/scripts/ensure-test-tools.sh`.
fn ensure_test_tools(root: &Path) -> anyhow::Result<()> {
    let script = root.join("xtask/scripts/ensure-test-tools.sh");
    let status = Command::new("bash").arg(&script).status()?;
    if !status.success() {
        bail!("{} failed: the test tools are missing", script.display());
    }
    Ok(())
}

fn build_ebpf(root: &Path) -> anyhow::Result<()> {
    setup(root)?;
    let status = Command::new("rustup")
        .args([
            "run",
            "nightly",
            "cargo",
            "build",
            "--release",
            "-p",
            "nodetel-ebpf",
        ])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--target-dir", "target/ebpf"])
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Cdebuginfo=2\x1f-Clink-arg=--btf",
        )
        .current_dir(root)
        .status()?;
    if !status.success() {
        bail!("eBPF build failed");
    }
    println!(
        "{}",
        root.join("target/ebpf/bpfel-unknown-none/release/nodetel-ebpf")
            .display()
    );
    Ok(())
}

/// The agent as it ships: built exactly as the Dockerfile's build stage builds it (release,
/// `--locked`), so every suite runs the binary users get, not a debug build.
pub fn shipped_agent(root: &Path) -> anyhow::Result<PathBuf> {
    cargo(root, &["build", "--release", "--locked", "-p", "nodetel"])?;
    Ok(root.join("target/release/nodetel"))
}

fn test(root: &Path, test_args: &[String]) -> anyhow::Result<()> {
    ensure_test_tools(root)?;
    deploy_check(root, false)?;
    setup(root)?;
    let bin = shipped_agent(root)?;
    let mut args = vec!["test"];
    args.extend(package_args(&USERSPACE[..3]));
    cargo(root, &args)?;
    // One at a time: the tests burn CPU and compare with the kernel, and share the machine.
    let mut args = vec![
        "test",
        "-p",
        "nodetel-integration-tests",
        "--",
        "--test-threads=1",
    ];
    args.extend(test_args.iter().map(String::as_str));
    let mut cmd = Command::new("cargo");
    cmd.args(&args).env("NODETEL_BIN", &bin).current_dir(root);
    // The peer that compatibility is checked against, on the same containers (the bench's).
    match bench::fetch_cadvisor(&root.join("target/bench/peer")) {
        Ok(cadvisor) => {
            cmd.env("NODETEL_CADVISOR", cadvisor);
        }
        Err(e) => eprintln!("xtask: cAdvisor could not be fetched ({e:#}); its tests skip"),
    }
    let status = cmd.status()?;
    if !status.success() {
        bail!("integration tests failed");
    }
    Ok(())
}

/// The Python tools the deploy check uses, pinned, in a venv of their own under target/.
const DEPLOY_PY_TOOLS: [&str; 2] = ["kubernetes-validate==1.37.0", "jsonpatch==1.33"];

fn deploy_check(root: &Path, write: bool) -> anyhow::Result<()> {
    for (tool, package) in [
        ("promtool", "prometheus"),
        ("docker-compose", "docker-compose"),
    ] {
        if !has_command(tool) {
            bail!("{tool} not found: apt-get install {package}");
        }
    }
    let venv = root.join("target/deploy-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            .context("python3 -m venv (Debian: apt-get install python3-venv)")?;
    }
    run(Command::new(&python)
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
        .args(DEPLOY_PY_TOOLS))?;
    let mut check = Command::new(&python);
    check.arg(root.join("deploy/check.py")).current_dir(root);
    if write {
        check.arg("--write");
    }
    run(&mut check).context("deploy check failed")
}

fn has_command(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} exited with {status}", cmd.get_program());
    }
    Ok(())
}

fn cargo(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("cargo")
        .args(args)
        .current_dir(root)
        .status()?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}
