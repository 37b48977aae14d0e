//! `cargo xtask integration-test vm`: the privileged suite on a second kernel with a pure cgroup
//! v2 hierarchy, the production layout this hybrid host cannot have.
//!
//! The guest is nothing but a kernel and an initramfs: busybox, the agent, the test binaries and
//! the tools the tests call, each with the shared libraries `ldd` names. `/init` mounts the
//! kernel filesystems, runs every test binary one at a time, prints a result line on the serial
//! console and powers off; the host streams the console and exits with the suite's status.
use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// Debian bookworm's cloud kernel metapackage: it depends on the current 6.1 LTS image.
const DEFAULT_KERNEL_META: &str = "linux-image-cloud-amd64";
/// What `/init` prints last; the host reads the suite's status from it.
const RESULT_MARKER: &str = "nodetel-vm-result:";
/// Tools the tests call, packed when the host has them (absent ones make those tests fail
/// under NODETEL_REQUIRE_PRIVILEGED, as on the host).
const GUEST_TOOLS: &[&str] = &[
    "bpftool", "promtool", "ip", "dmsetup", "losetup", "nft", "tc",
];
/// Modules in load order: a virtio disk (Debian's cloud kernel builds virtio as modules), which
/// gives the guest a real block device for the I/O tests (its root is tmpfs), veth for the
/// network-namespace test, and loop devices behind a device-mapper `delay` target for the block
/// I/O latency test (this host's kernel has no device-mapper), and nftables for the TCP test.
const GUEST_MODULES: &[&str] = &[
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/block/virtio_blk.ko",
    "drivers/net/veth.ko",
    "drivers/block/loop.ko",
    "drivers/md/dm-mod.ko",
    "drivers/md/dm-delay.ko",
    // nftables, for the TCP health test's known loss (numgen drops) and blackholed port.
    "lib/libcrc32c.ko",
    "net/netfilter/nfnetlink.ko",
    "net/netfilter/nf_tables.ko",
    "net/netfilter/nft_numgen.ko",
    // netem, for the TCP round-trip test's known delay.
    "net/sched/sch_netem.ko",
];
const DISK_MIB: u64 = 256;
/// Test binaries that need a container runtime (dockerd, containerd, runc and their images):
/// too much to pack into the guest, and what they test (runtime APIs, name resolution) does not
/// depend on the kernel. Their cgroup layouts on pure v2 are covered by the path-parser table.
/// `api_load` (a thousand cgroups, 20 heavy requests) would take the emulated VM too long.
/// `web_config` needs curl, openssl and Prometheus, `capabilities` setpriv and the rendered
/// DaemonSet (`target/deploy`): userspace the guest does not carry.
const HOST_ONLY_TESTS: &[&str] = &[
    // Static checks of the repository (README, test sources), which the VM does not hold.
    "matrix",
    "runtimes",
    "swarm",
    // util-linux's unshare (--kill-child); the guest has busybox's.
    "pid_namespace",
    // A Prometheus receiver, which the guest does not carry.
    "push",
    // Chromium and chromedriver, which the guest does not carry.
    "web_ui",
    "containerd_scale",
    "api",
    "api_load",
    "image",
    "dashboard",
    "web_config",
    "capabilities",
    "cadvisor_peer",
    "kube_prometheus",
    "fs_usage",
];

/// A bootable kernel and, when it came from a .deb, its modules directory.
struct Kernel {
    vmlinuz: PathBuf,
    modules: Option<PathBuf>,
}

pub struct Options {
    pub kernel: Option<PathBuf>,
    pub timeout: Duration,
    /// A single test binary taking longer is dumped and killed inside the guest.
    pub test_timeout: Duration,
    pub memory_mib: u32,
    /// Extra arguments for every test binary (a name filter, `--nocapture`).
    pub test_args: Vec<String>,
}

pub fn run(root: &Path, opts: &Options) -> anyhow::Result<()> {
    let work = root.join("target/vm");
    fs::create_dir_all(&work)?;
    ensure_tools(root)?;
    let kernel = kernel_image(&work, opts.kernel.as_deref())?;
    println!("vm: kernel {}", kernel.vmlinuz.display());

    let agent = crate::shipped_agent(root)?;
    let tests = build_test_binaries(root)?;
    let initrd = pack_initramfs(root, &agent, &work, &tests, &kernel, opts)?;
    // A fresh sparse disk each run: the guest formats it.
    let disk = work.join("disk.img");
    fs::File::create(&disk)?.set_len(DISK_MIB << 20)?;
    boot(&kernel.vmlinuz, &initrd, &disk, opts)
}

fn ensure_tools(root: &Path) -> anyhow::Result<()> {
    let script = root.join("xtask/scripts/ensure-vm-tools.sh");
    let status = Command::new("bash").arg(&script).status()?;
    if !status.success() {
        bail!("QEMU, cpio or a static busybox is missing (see above)");
    }
    Ok(())
}

/// A bootable bzImage: the one given, extracted from a given .deb, or Debian's current cloud
/// kernel fetched with apt into `target/vm` (kept there for the next run).
fn kernel_image(work: &Path, given: Option<&Path>) -> anyhow::Result<Kernel> {
    let deb = match given {
        Some(p) if p.extension().is_some_and(|e| e == "deb") => p.to_path_buf(),
        Some(p) => {
            if !p.is_file() {
                bail!("--kernel {}: no such file", p.display());
            }
            return Ok(Kernel {
                vmlinuz: p.to_path_buf(),
                modules: None,
            });
        }
        None => fetch_default_kernel(work)?,
    };
    let stem = deb
        .file_stem()
        .context("kernel .deb has no name")?
        .to_string_lossy()
        .into_owned();
    let dir = work.join(format!("kernel-{stem}"));
    if !dir.is_dir() {
        let tmp = work.join(format!("kernel-{stem}.partial"));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp)?;
        run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))
            .with_context(|| format!("unpacking {}", deb.display()))?;
        fs::rename(&tmp, &dir)?;
    }
    let boot = dir.join("boot");
    let found = fs::read_dir(&boot)
        .with_context(|| format!("{} holds no boot/ directory", deb.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        });
    let vmlinuz = found.with_context(|| format!("{} holds no boot/vmlinuz-*", deb.display()))?;
    let modules = fs::read_dir(dir.join("lib/modules"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(Result::ok)
        .map(|e| e.path().join("kernel"));
    Ok(Kernel { vmlinuz, modules })
}

fn fetch_default_kernel(work: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new("apt-cache")
        .args(["depends", DEFAULT_KERNEL_META])
        .output()
        .context("apt-cache is needed to find Debian's kernel (or pass --kernel)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(image) = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|d| d.starts_with("linux-image-"))
        .map(str::to_owned)
    else {
        bail!(
            "apt knows no {DEFAULT_KERNEL_META} (run apt-get update, or pass --kernel <vmlinuz or .deb>)"
        );
    };
    if let Some(deb) = find_deb(work, &image)? {
        return Ok(deb);
    }
    println!("vm: fetching {image} with apt-get download");
    let mut download = Command::new("apt-get");
    download.args(["download", &image]).current_dir(work);
    if run_ok(&mut download).is_err() {
        // A fresh machine may not have the package lists yet.
        run_ok(Command::new("apt-get").args(["update", "-qq"]))?;
        run_ok(&mut download).with_context(|| format!("apt-get download {image}"))?;
    }
    find_deb(work, &image)?.with_context(|| format!("apt-get download left no {image}_*.deb"))
}

fn find_deb(dir: &Path, package: &str) -> anyhow::Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    Ok(fs::read_dir(dir)?.flatten().map(|e| e.path()).find(|p| {
        p.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n.starts_with(&prefix) && n.ends_with(".deb")
        })
    }))
}

/// The integration-test executables, by target name, as cargo reports them.
fn build_test_binaries(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let out = Command::new("cargo")
        .args([
            "test",
            "-p",
            "nodetel-integration-tests",
            "--tests",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("building the integration tests failed");
    }
    let mut tests = Vec::new();
    for line in out.stdout.split(|b| *b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let is_test = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "test"));
        if let (true, Some(exe), Some(name)) = (
            is_test,
            msg["executable"].as_str(),
            msg["target"]["name"].as_str(),
        ) {
            tests.push((name.to_owned(), PathBuf::from(exe)));
        }
    }
    if tests.is_empty() {
        bail!("cargo built no integration-test executables");
    }
    tests.retain(|(name, _)| !HOST_ONLY_TESTS.contains(&name.as_str()));
    tests.sort();
    Ok(tests)
}

fn pack_initramfs(
    root: &Path,
    agent: &Path,
    work: &Path,
    tests: &[(String, PathBuf)],
    kernel: &Kernel,
    opts: &Options,
) -> anyhow::Result<PathBuf> {
    let stage = work.join("initramfs");
    let _ = fs::remove_dir_all(&stage);
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "tests",
    ] {
        fs::create_dir_all(stage.join(d))?;
    }
    copy_binary(Path::new("/bin/busybox"), &stage, "bin/busybox", false)?;
    copy_binary(agent, &stage, "nodetel", true)?;
    // The network tests' traffic generator, built with the test executables.
    copy_binary(&root.join("target/debug/nettool"), &stage, "nettool", true)?;
    let mut names = Vec::new();
    for (name, exe) in tests {
        copy_binary(exe, &stage, &format!("tests/{name}"), true)?;
        names.push(name.as_str());
    }
    for tool in GUEST_TOOLS {
        match which(tool) {
            Some(p) => {
                let rel = p.strip_prefix("/").unwrap_or(&p).to_path_buf();
                copy_binary(&p, &stage, &rel.to_string_lossy(), false)?;
            }
            None => println!("vm: {tool} is not installed on the host; tests needing it will fail"),
        }
    }
    let mut modules = Vec::new();
    if let Some(dir) = &kernel.modules {
        fs::create_dir_all(stage.join("modules"))?;
        for m in GUEST_MODULES {
            let src = dir.join(m);
            let Some(name) = src.file_name() else {
                continue;
            };
            if src.is_file() {
                fs::copy(&src, stage.join("modules").join(name))?;
                modules.push(name.to_string_lossy().into_owned());
            }
        }
    }
    let init = init_script(&names, &modules, opts);
    let init_path = stage.join("init");
    fs::write(&init_path, init)?;
    set_executable(&init_path)?;

    let initrd = work.join("initramfs.cpio");
    // Uncompressed: compressing ~100 MB costs more host time than the guest saves in reading it.
    let out = fs::File::create(&initrd)?;
    let status = Command::new("sh")
        .args(["-c", "find . -print | cpio -o -H newc --quiet"])
        .current_dir(&stage)
        .stdout(out)
        .status()?;
    if !status.success() {
        bail!("cpio failed to pack {}", stage.display());
    }
    let mib = fs::metadata(&initrd)?.len() / (1 << 20);
    println!("vm: initramfs {} ({mib} MiB)", initrd.display());
    Ok(initrd)
}

fn init_script(tests: &[&str], modules: &[String], opts: &Options) -> String {
    let mut args = vec!["--test-threads=1".to_owned()];
    args.extend(opts.test_args.iter().map(|a| shell_quote(a)));
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/tmp TMPDIR=/tmp RUST_BACKTRACE=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf
ip link set lo up
# A real block device for the I/O tests: the virtio disk, formatted here, as /var/tmp.
for m in {modules}; do insmod /modules/$m || echo "nodetel-vm: insmod $m failed"; done
mkdir -p /var/tmp
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.2; done
if [ -b /dev/vda ] && mke2fs -q -F /dev/vda && mount -t ext4 /dev/vda /var/tmp; then
  echo "nodetel-vm: /var/tmp is on /dev/vda"
else
  echo "nodetel-vm: no virtio disk: /var/tmp is tmpfs and the I/O tests will fail"
fi
# Every controller on for the test cgroups, as systemd does on a pure v2 node.
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
  echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control
done
echo "nodetel-vm: kernel $(uname -r), $(nproc) CPUs, cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
export NODETEL_BIN=/nodetel NODETEL_NETTOOL=/nettool NODETEL_REQUIRE_PRIVILEGED=1 NODETEL_UNDER_EMULATION=1
# A test binary that hangs is killed after {test_timeout}s, after printing what every process is
# blocked on (state, wchan, kernel stack), so the suite still reports and the hang can be read.
dump_and_kill() {{
  echo "nodetel-vm: $1 still running after {test_timeout}s; processes and kernel stacks:"
  for p in /proc/[0-9]*; do
    [ -r $p/stack ] || continue
    s=$(cut -d' ' -f3 $p/stat 2>/dev/null)
    [ "$(cat $p/cmdline 2>/dev/null | tr '\0' ' ')" ] || continue
    echo "--- pid ${{p#/proc/}} state $s wchan $(cat $p/wchan 2>/dev/null): $(cat $p/cmdline | tr '\0' ' ')"
    for th in $p/task/*; do cat $th/stack 2>/dev/null | sed 's/^/    /'; echo "    --"; done
  done
  echo w > /proc/sysrq-trigger
  kill -9 $2
}}
failed=""
for t in {tests}; do
  echo "nodetel-vm: ---- $t"
  /tests/$t {args} &
  pid=$!
  ( sleep {test_timeout}; kill -0 $pid 2>/dev/null && dump_and_kill $t $pid ) &
  watchdog=$!
  wait $pid || failed="$failed $t"
  kill $watchdog 2>/dev/null
done
if [ -z "$failed" ]; then
  echo "{RESULT_MARKER} 0"
else
  echo "nodetel-vm: failed:$failed"
  echo "{RESULT_MARKER} 1"
fi
poweroff -f
"#,
        tests = tests.join(" "),
        args = args.join(" "),
        test_timeout = opts.test_timeout.as_secs(),
        modules = if modules.is_empty() {
            "none".to_owned()
        } else {
            modules.join(" ")
        },
    )
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Copies `src` into the stage at `rel`, with every shared library it loads at the same
/// absolute path. Debug info is stripped from our own binaries: it is most of their size.
fn copy_binary(src: &Path, stage: &Path, rel: &str, strip: bool) -> anyhow::Result<()> {
    let dst = stage.join(rel);
    if let Some(dir) = dst.parent() {
        fs::create_dir_all(dir)?;
    }
    if strip {
        run_ok(
            Command::new("objcopy")
                .arg("--strip-debug")
                .arg(src)
                .arg(&dst),
        )
        .with_context(|| format!("objcopy {}", src.display()))?;
    } else {
        fs::copy(src, &dst).with_context(|| format!("copy {}", src.display()))?;
    }
    set_executable(&dst)?;
    // ldd fails on static binaries: they need nothing.
    let Ok(out) = Command::new("ldd").arg(src).output() else {
        return Ok(());
    };
    for lib in String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let lib_dst = stage.join(lib.trim_start_matches('/'));
        if !lib_dst.exists() {
            if let Some(dir) = lib_dst.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::copy(lib, &lib_dst).with_context(|| format!("copy {lib}"))?;
        }
    }
    Ok(())
}

fn set_executable(p: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!p.is_empty()).then(|| fs::canonicalize(&p).unwrap_or_else(|_| PathBuf::from(p)))
}

/// Boots the guest under QEMU's software emulation (a KVM guest hangs in early boot on this
/// nested host), streams its console, and returns the suite's status. Single-threaded TCG: with
/// one host thread per vCPU, one run in three once hung with the agent unkillable right after it
/// began detaching sched_switch (which re-patches a hot static key across CPUs); suspected
/// emulation, not confirmed. Nine runs single-threaded never hung, for ~40% more time. The
/// per-test watchdog in /init prints every task's kernel stack if a hang comes back.
fn boot(vmlinuz: &Path, initrd: &Path, disk: &Path, opts: &Options) -> anyhow::Result<()> {
    let smp = thread::available_parallelism().map_or(2, |n| n.get().min(2));
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg,thread=single",
            "-cpu",
            "max",
            "-nographic",
            "-no-reboot",
        ])
        .args(["-m", &opts.memory_mib.to_string(), "-smp", &smp.to_string()])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw", disk.display()))
        .args([
            "-append",
            "console=ttyS0 quiet cgroup_no_v1=all panic=-1 psi=1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line).trim_end().to_owned();
            println!("{line}");
            if let Some(rc) = line.strip_prefix(RESULT_MARKER) {
                let _ = tx.send(rc.trim().parse::<i32>().unwrap_or(1));
            }
        }
    });
    let started = Instant::now();
    let mut result = None;
    while started.elapsed() < opts.timeout {
        if let Ok(rc) = rx.recv_timeout(Duration::from_millis(200)) {
            result = Some(rc);
        }
        if child.try_wait()?.is_some() {
            // The console thread may still hold the last lines.
            if result.is_none() {
                result = rx.recv_timeout(Duration::from_secs(1)).ok();
            }
            break;
        }
    }
    if child.try_wait()?.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        if result.is_none() {
            bail!(
                "the VM did not finish within {:?} (raise --timeout-secs)",
                opts.timeout
            );
        }
    }
    println!("vm: {:.0?} in the VM", started.elapsed());
    match result {
        Some(0) => Ok(()),
        Some(_) => bail!("the privileged suite failed in the VM"),
        None => bail!("the VM stopped without reporting a result (kernel panic or /init failure?)"),
    }
}

fn run_ok(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status()?;
    if !status.success() {
        bail!("{cmd:?} exited with {status}");
    }
    Ok(())
}
