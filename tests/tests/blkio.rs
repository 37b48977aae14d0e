//! Per-container block I/O latency (the `blkio` kind) against the kernel's own accounting:
//! io.stat on cgroup v2, the v1 blkio throttle counters on a hybrid host; and, in the VM (whose
//! kernel has device-mapper), against a `delay` target of a known 20 ms.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};
use nodetel_integration_tests::{Agent, Exposition, TestCgroup, privileged, require_tool};

/// The kind is off by default: these agents turn it on (and keep the other defaults).
const BLKIO_ON: &str = "--disable-metrics=process,sched,pressure";

/// A cgroup's own I/O on one device as the kernel counts it: (read ios, write ios, read bytes,
/// write bytes).
fn kernel_io(cg: &mut TestCgroup, dev: &str) -> anyhow::Result<[f64; 4]> {
    if let Some(v1) = cg.v1("blkio")? {
        let get = |file: &str, op: &str| -> anyhow::Result<f64> {
            let text = std::fs::read_to_string(v1.join(file))?;
            Ok(text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{dev} {op} ")))
                .map_or(Ok(0.0), |v| v.trim().parse::<f64>())?)
        };
        return Ok([
            get("blkio.throttle.io_serviced", "Read")?,
            get("blkio.throttle.io_serviced", "Write")?,
            get("blkio.throttle.io_service_bytes", "Read")?,
            get("blkio.throttle.io_service_bytes", "Write")?,
        ]);
    }
    nodetel_integration_tests::io_stat(&cg.dir, dev, ["rios", "wios", "rbytes", "wbytes"])
}

/// One family's value for one cgroup, disk and operation; 0 when the series is absent (no such
/// I/O yet).
fn value(e: &Exposition, family: &str, id: &str, device: &str, op: &str) -> f64 {
    let needles = [
        format!("id=\"{id}\""),
        format!("device=\"{device}\""),
        format!("operation=\"{op}\""),
    ];
    e.0.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .find(|l| needles.iter().all(|n| l.contains(n.as_str())))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

/// The agent's (ios, bytes, histogram count) for one cgroup, disk and operation.
fn agent_io(e: &Exposition, id: &str, device: &str, op: &str) -> (f64, f64, f64) {
    let get = |family: &str| value(e, family, id, device, op);
    (
        get("nodetel_container_blkio_ios_total"),
        get("nodetel_container_blkio_bytes_total"),
        get("nodetel_container_blkio_latency_seconds_count"),
    )
}

/// The agent's writes as io.stat counts them: a flush (the empty write `sync` ends with, which
/// nodetel shows as `flush`) is one of io.stat's `wios`.
fn writes(e: &Exposition, id: &str, device: &str) -> (f64, f64, f64) {
    let (w, f) = (
        agent_io(e, id, device, "write"),
        agent_io(e, id, device, "flush"),
    );
    (w.0 + f.0, w.1 + f.1, w.2 + f.2)
}

/// A scratch directory on a real block device (not tmpfs), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> anyhow::Result<Scratch> {
        let dir = Path::new("/var/tmp").join(format!("nodetel-it-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(script: &str) -> anyhow::Result<()> {
    let status = Command::new("sh").args(["-c", script]).status()?;
    if !status.success() {
        bail!("`{script}` failed: {status}");
    }
    Ok(())
}

/// Two cgroups doing direct I/O of known sizes on one disk: each one's reads and writes, and
/// their bytes, equal the kernel's counts of that cgroup's I/O (nothing of one under the
/// other's name), and every counted I/O is in the latency histogram.
#[test]
fn direct_io_per_cgroup_equals_the_kernels_accounting() -> anyhow::Result<()> {
    if !privileged("direct_io_per_cgroup_equals_the_kernels_accounting") {
        return Ok(());
    }
    let scratch = Scratch::new("blkio")?;
    let (dev, device) = nodetel_integration_tests::block_device_of(&scratch.0)?;
    let (a_file, b_file) = (scratch.0.join("a"), scratch.0.join("b"));
    // Made outside the cgroups and flushed, so the cgroups' own I/O is only the test's.
    run(&format!(
        "dd if=/dev/zero of={} bs=64k count=64 2>/dev/null && dd if=/dev/zero of={} bs=64k count=64 2>/dev/null && sync",
        a_file.display(),
        b_file.display()
    ))?;

    let agent = Agent::start(Duration::from_millis(500), &[BLKIO_ON])?;
    let mut a = TestCgroup::create("blkio-a")?;
    let mut b = TestCgroup::create("blkio-b")?;
    for cg in [&mut a, &mut b] {
        if let Some(v1) = cg.v1("blkio")? {
            // The v1 throttle layer counts a device's I/O only once a rule exists on it; limits
            // far above anything the test does turn the accounting on without slowing it.
            for rule in [
                "blkio.throttle.read_bps_device",
                "blkio.throttle.write_bps_device",
            ] {
                std::fs::write(v1.join(rule), format!("{dev} 107374182400"))?;
            }
        }
    }
    let before = [kernel_io(&mut a, &dev)?, kernel_io(&mut b, &dev)?];
    let e0 = agent.next_metrics()?;
    // a: 256 reads of 4 KiB, then 128 writes of 4 KiB in place; b: 64 reads of 64 KiB.
    let mut wa = a.spawn(&format!(
        "dd if={f} of=/dev/null bs=4k count=256 iflag=direct 2>/dev/null && dd if=/dev/zero of={f} bs=4k count=128 oflag=direct conv=notrunc 2>/dev/null",
        f = a_file.display()
    ))?;
    let mut wb = b.spawn(&format!(
        "dd if={} of=/dev/null bs=64k count=64 iflag=direct 2>/dev/null",
        b_file.display()
    ))?;
    assert!(wa.wait()?.success() && wb.wait()?.success(), "dd failed");
    let after = [kernel_io(&mut a, &dev)?, kernel_io(&mut b, &dev)?];
    std::thread::sleep(agent.interval);
    let e1 = agent.next_metrics()?;

    for (i, (cg, want_reads, want_writes)) in [(&a, 256.0, 128.0), (&b, 64.0, 0.0)]
        .into_iter()
        .enumerate()
    {
        let kernel: Vec<f64> = (0..4).map(|k| after[i][k] - before[i][k]).collect();
        let r = (
            agent_io(&e1, &cg.rel, &device, "read"),
            agent_io(&e0, &cg.rel, &device, "read"),
        );
        let w = (writes(&e1, &cg.rel, &device), writes(&e0, &cg.rel, &device));
        let got = [r.0.0 - r.1.0, w.0.0 - w.1.0, r.0.1 - r.1.1, w.0.1 - w.1.1];
        eprintln!(
            "{} on {device}: kernel (rios, wios, rbytes, wbytes) {kernel:?}, agent {got:?}",
            cg.rel
        );
        assert!(
            kernel[0] >= want_reads && kernel[1] >= want_writes,
            "the kernel saw less I/O than the test did: {kernel:?}"
        );
        assert_eq!(got.to_vec(), kernel, "{}: agent vs kernel", cg.rel);
        assert_eq!(r.0.2, r.0.0, "every read is in the histogram");
        assert_eq!(w.0.2, w.0.0, "every write is in the histogram");
    }

    // Removed cgroups: their series go, and so do their kernel entries (not left to fill the map).
    let forgotten = |e: &Exposition| {
        e.scalar("nodetel_blkio_entries_forgotten_total")
            .unwrap_or(0.0)
    };
    let before_removal = forgotten(&e1);
    let rels = [a.rel.clone(), b.rel.clone()];
    drop(a);
    drop(b);
    let mut e2 = agent.next_metrics()?;
    for _ in 0..4 {
        if forgotten(&e2) > before_removal {
            break;
        }
        e2 = agent.next_metrics()?;
    }
    for rel in &rels {
        assert!(
            e2.lines_of("nodetel_container_blkio_ios_total", rel)
                .is_empty(),
            "{rel}'s series outlived it"
        );
    }
    assert!(
        forgotten(&e2) >= before_removal + 3.0,
        "the removed cgroups' entries (3 keys of reads and writes at least) were not deleted: {} -> {}",
        before_removal,
        forgotten(&e2)
    );
    Ok(())
}

/// On cgroup v2 the kernel charges buffered writeback to the cgroup that dirtied the pages, not
/// to the flusher thread that writes them: so does nodetel (hybrid hosts charge writeback to
/// the root, where v1 cannot tell; the VM suite runs this).
#[test]
fn buffered_writeback_is_charged_to_the_writer() -> anyhow::Result<()> {
    if !privileged("buffered_writeback_is_charged_to_the_writer") {
        return Ok(());
    }
    if nodetel_integration_tests::unified_root().is_none_or(|r| r != Path::new("/sys/fs/cgroup")) {
        eprintln!(
            "buffered_writeback_is_charged_to_the_writer: cgroup writeback needs the io controller on v2; this host is hybrid (the VM suite runs it)"
        );
        return Ok(());
    }
    let scratch = Scratch::new("writeback")?;
    let (dev, device) = nodetel_integration_tests::block_device_of(&scratch.0)?;
    let agent = Agent::start(Duration::from_millis(500), &[BLKIO_ON])?;
    let mut cg = TestCgroup::create("blkio-wb")?;
    let before = kernel_io(&mut cg, &dev)?;
    let e0 = agent.next_metrics()?;
    // Buffered: the writes are dirty pages until sync makes the flusher write them.
    let mut w = cg.spawn(&format!(
        "dd if=/dev/zero of={} bs=1M count=8 2>/dev/null && sync",
        scratch.0.join("wb").display()
    ))?;
    assert!(w.wait()?.success(), "dd + sync failed");
    let after = kernel_io(&mut cg, &dev)?;
    std::thread::sleep(agent.interval);
    let e1 = agent.next_metrics()?;
    let (ios1, bytes1, _) = writes(&e1, &cg.rel, &device);
    let (ios0, bytes0, _) = writes(&e0, &cg.rel, &device);
    let kernel = (after[1] - before[1], after[3] - before[3]);
    eprintln!(
        "writeback of 8 MiB: kernel {kernel:?}, agent {:?}",
        (ios1 - ios0, bytes1 - bytes0)
    );
    assert!(
        kernel.1 >= (8 << 20) as f64,
        "the kernel charged less than the 8 MiB written: {kernel:?}"
    );
    assert_eq!((ios1 - ios0, bytes1 - bytes0), kernel);
    Ok(())
}

/// The nodetel JSON extension's histogram of one cgroup, disk and operation: per kernel bucket
/// (bucket b: under 2^b µs).
fn json_buckets(agent: &Agent, rel: &str, device: &str, op: &str) -> anyhow::Result<Vec<u64>> {
    let (status, body) = agent.get(&format!("/api/v1.3/containers{rel}?nodetel=true"))?;
    anyhow::ensure!(status == 200, "{status}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    let rows = v["nodetel"]["blkio"]
        .as_array()
        .with_context(|| format!("no nodetel.blkio for {rel}: {body}"))?;
    let row = rows
        .iter()
        .find(|r| r["device"] == device && r["operation"] == op)
        .with_context(|| format!("no {op} on {device} for {rel}: {rows:?}"))?;
    Ok(row["latency_buckets"]
        .as_array()
        .context("no latency_buckets")?
        .iter()
        .map(|b| b["count"].as_u64().unwrap_or(0))
        .collect())
}

/// util-linux's losetup (the VM's PATH finds busybox's first, which has no `--show`).
fn losetup() -> &'static str {
    ["/usr/sbin/losetup", "/sbin/losetup"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("losetup")
}

/// A loop device over a file, detached on drop. Buffered (no direct I/O to the file): the
/// backing file's pages are cached, so the undelayed device answers in microseconds even under
/// emulation.
struct Loop(String);

impl Loop {
    fn new(file: &Path) -> anyhow::Result<Loop> {
        let out = Command::new(losetup())
            .args(["--find", "--show"])
            .arg(file)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Loop(String::from_utf8(out.stdout)?.trim().to_string()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new(losetup()).args(["-d", &self.0]).status();
    }
}

/// A device-mapper device, removed on drop.
struct Dm(String);

impl Drop for Dm {
    fn drop(&mut self) {
        let _ = Command::new("dmsetup")
            .args(["remove", "--noudevsync", &self.0])
            .status();
    }
}

/// Two cgroups reading two loop devices directly, one of them behind a device-mapper `delay`
/// target adding 20 ms: the slow cgroup's histogram for the delayed device puts at least 90 % of
/// its reads in the buckets around 20 ms, the fast one's below 2 ms. Needs device-mapper and
/// dm-delay: the VM suite's kernel has them, this host's has not.
#[test]
fn a_known_device_delay_lands_in_its_bucket() -> anyhow::Result<()> {
    if !privileged("a_known_device_delay_lands_in_its_bucket")
        || !require_tool("a_known_device_delay_lands_in_its_bucket", "dmsetup")
        || !require_tool("a_known_device_delay_lands_in_its_bucket", "losetup")
    {
        return Ok(());
    }
    let has_dm = std::fs::read_to_string("/proc/misc").is_ok_and(|m| m.contains("device-mapper"));
    if !has_dm {
        // The VM suite's kernel has device-mapper (its /init loads dm-mod and dm-delay): there a
        // missing module is a failure, not a skip.
        if std::env::var_os("NODETEL_UNDER_EMULATION").is_some() {
            bail!("the VM's kernel has no device-mapper loaded (dm-mod, dm-delay)");
        }
        eprintln!(
            "a_known_device_delay_lands_in_its_bucket: this kernel has no device-mapper (the VM suite runs it)"
        );
        return Ok(());
    }
    let scratch = Scratch::new("dm-delay")?;
    let (fast_file, slow_file) = (scratch.0.join("fast.img"), scratch.0.join("slow.img"));
    for f in [&fast_file, &slow_file] {
        run(&format!(
            "dd if=/dev/zero of={} bs=1M count=16 2>/dev/null",
            f.display()
        ))?;
    }
    let fast = Loop::new(&fast_file)?;
    let slow_lo = Loop::new(&slow_file)?;
    let name = format!("nodetel-it-{}", std::process::id());
    let sectors = 16 * 2048;
    let out = Command::new("dmsetup")
        .args(["create", "--noudevsync", "--noudevrules", &name, "--table"])
        .arg(format!("0 {sectors} delay {} 0 20", slow_lo.0))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "dmsetup create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dm = Dm(name.clone());
    // The kernel names it dm-N; /sys/block/dm-N/dm/name says which.
    let slow = std::fs::read_dir("/sys/block")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| {
            n.starts_with("dm-")
                && std::fs::read_to_string(format!("/sys/block/{n}/dm/name"))
                    .is_ok_and(|s| s.trim() == name)
        })
        .map(|n| format!("/dev/{n}"))
        .context("the dm device is not in /sys/block")?;

    let agent = Agent::start(Duration::from_millis(500), &[BLKIO_ON])?;
    let fast_cg = TestCgroup::create("blkio-fast")?;
    let slow_cg = TestCgroup::create("blkio-slow")?;
    const READS: u64 = 50;
    let mut f = fast_cg.spawn(&format!(
        "dd if={} of=/dev/null bs=4k count={READS} iflag=direct 2>/dev/null",
        fast.0
    ))?;
    let mut s = slow_cg.spawn(&format!(
        "dd if={slow} of=/dev/null bs=4k count={READS} iflag=direct 2>/dev/null"
    ))?;
    assert!(f.wait()?.success() && s.wait()?.success(), "dd failed");
    std::thread::sleep(agent.interval);
    let _ = agent.next_metrics()?;

    let slow_b = json_buckets(&agent, &slow_cg.rel, &slow, "read")?;
    let fast_b = json_buckets(&agent, &fast_cg.rel, &fast.0, "read")?;
    eprintln!(
        "slow {slow} buckets {slow_b:?}\nfast {} buckets {fast_b:?}",
        fast.0
    );
    let total = |b: &[u64]| b.iter().sum::<u64>();
    assert!(
        total(&slow_b) >= READS && total(&fast_b) >= READS,
        "reads missing"
    );
    // 20 ms is in bucket 15 ([16.4, 32.8) ms); a busy emulator may push some into 16.
    let around_20ms: u64 = slow_b.iter().skip(15).take(2).sum();
    assert!(
        around_20ms * 10 >= total(&slow_b) * 9,
        "only {around_20ms} of {} delayed reads in 16.4-65.5 ms",
        total(&slow_b)
    );
    // Under 2 ms: buckets 0..=11 (2^11 µs = 2.05 ms).
    let under_2ms: u64 = fast_b.iter().take(12).sum();
    assert!(
        under_2ms * 10 >= total(&fast_b) * 9,
        "only {under_2ms} of {} undelayed reads under 2 ms",
        total(&fast_b)
    );
    drop(dm);
    Ok(())
}

/// A block device's request limit (`queue/nr_requests`), put back on drop.
struct RequestLimit {
    file: PathBuf,
    was: String,
}

impl RequestLimit {
    fn set(device: &str, limit: u32) -> anyhow::Result<RequestLimit> {
        let name = device.trim_start_matches("/dev/");
        let file = Path::new("/sys/block").join(name).join("queue/nr_requests");
        let was = std::fs::read_to_string(&file)?.trim().to_string();
        std::fs::write(&file, limit.to_string())?;
        Ok(RequestLimit { file, was })
    }
}

impl Drop for RequestLimit {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.file, &self.was);
    }
}

/// (queue, service, latency sum) seconds of one cgroup's reads on one disk.
fn split(e: &Exposition, id: &str, device: &str) -> (f64, f64, f64) {
    let get = |family: &str| value(e, family, id, device, "read");
    (
        get("nodetel_container_blkio_queue_seconds_total"),
        get("nodetel_container_blkio_service_seconds_total"),
        get("nodetel_container_blkio_latency_seconds_sum"),
    )
}

/// Queue time is measured where the kernel queues. A loop device limited to 4 requests
/// (`nr_requests`, the kernel's minimum) read by 32 direct readers at once: at most 4 bios are
/// with the driver, so by Little's law about 28 of 32 wait for a request, and most of the
/// deep cgroup's latency is queue time; one reader alone on another loop device waits for
/// nothing, and its latency is almost all service.
#[test]
fn queue_time_is_the_wait_for_a_request() -> anyhow::Result<()> {
    if !privileged("queue_time_is_the_wait_for_a_request")
        || !require_tool("queue_time_is_the_wait_for_a_request", "losetup")
    {
        return Ok(());
    }
    let scratch = Scratch::new("blkio-queue")?;
    let (deep_file, alone_file) = (scratch.0.join("deep.img"), scratch.0.join("alone.img"));
    for f in [&deep_file, &alone_file] {
        run(&format!(
            "dd if=/dev/zero of={} bs=1M count=16 2>/dev/null",
            f.display()
        ))?;
    }
    let (deep_dev, alone_dev) = (Loop::new(&deep_file)?, Loop::new(&alone_file)?);
    let _limit = RequestLimit::set(&deep_dev.0, 4)?;

    let agent = Agent::start(Duration::from_millis(500), &[BLKIO_ON])?;
    let mut deep = TestCgroup::create("blkio-deep")?;
    let mut alone = TestCgroup::create("blkio-alone")?;
    // On a hybrid host the bios are charged to the v1 blkio cgroup: the readers join one.
    for cg in [&mut deep, &mut alone] {
        cg.v1("blkio")?;
    }
    // 32 readers of 4 KiB blocks, each its own 512 KiB of the device.
    let readers = (0..32)
        .map(|i| {
            format!(
                "dd if={} of=/dev/null bs=4k count=128 skip={} iflag=direct 2>/dev/null &",
                deep_dev.0,
                i * 128
            )
        })
        .collect::<String>();
    let mut d = deep.spawn(&format!("{readers} wait"))?;
    let mut a = alone.spawn(&format!(
        "dd if={} of=/dev/null bs=4k count=1024 iflag=direct 2>/dev/null",
        alone_dev.0
    ))?;
    assert!(d.wait()?.success() && a.wait()?.success(), "dd failed");
    std::thread::sleep(agent.interval);
    let e = agent.next_metrics()?;

    let (dq, ds, dl) = split(&e, &deep.rel, &deep_dev.0);
    let (aq, as_, al) = split(&e, &alone.rel, &alone_dev.0);
    let reads = |id: &str, dev: &str| agent_io(&e, id, dev, "read").0;
    eprintln!(
        "deep ({} reads, 4 requests): queue {dq:.4} s, service {ds:.4} s, latency {dl:.4} s\n\
         alone ({} reads): queue {aq:.4} s, service {as_:.4} s, latency {al:.4} s",
        reads(&deep.rel, &deep_dev.0),
        reads(&alone.rel, &alone_dev.0),
    );
    assert!(
        reads(&deep.rel, &deep_dev.0) >= 32.0 * 128.0 && reads(&alone.rel, &alone_dev.0) >= 1024.0,
        "reads missing"
    );
    assert!(ds > 0.0 && as_ > 0.0, "no service time");
    assert!(
        dq >= 0.5 * dl,
        "32 readers on 4 requests: only {:.0} % of their latency was queue time",
        100.0 * dq / dl
    );
    assert!(
        aq <= 0.25 * al,
        "a reader alone: {:.0} % of its latency was queue time",
        100.0 * aq / al
    );
    Ok(())
}
