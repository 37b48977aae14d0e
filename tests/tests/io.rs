//! Block I/O against the kernel's own per-cgroup counters: direct-I/O writes of a known size from
//! inside a cgroup show up in that cgroup's write bytes for the device that holds the file.
use std::{path::Path, time::Duration};

use anyhow::Context as _;
use nodetel_integration_tests::{Agent, TestCgroup, privileged};

const WRITE: u64 = 8 << 20;

/// The kernel's write bytes and writes for `dev` in this cgroup (v2 io.stat or v1 blkio).
fn kernel_writes(dir: &Path, v1: bool, dev: &str) -> anyhow::Result<(f64, f64)> {
    if v1 {
        let get = |file: &str| -> anyhow::Result<f64> {
            let text = std::fs::read_to_string(dir.join(file))?;
            Ok(text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{dev} Write ")))
                .map_or(Ok(0.0), |v| v.trim().parse::<f64>())?)
        };
        return Ok((
            get("blkio.throttle.io_service_bytes_recursive")?,
            get("blkio.throttle.io_serviced_recursive")?,
        ));
    }
    let [bytes, ios] = nodetel_integration_tests::io_stat(dir, dev, ["wbytes", "wios"])?;
    Ok((bytes, ios))
}

#[test]
fn direct_writes_land_on_the_right_device() -> anyhow::Result<()> {
    if !privileged("direct_writes_land_on_the_right_device") {
        return Ok(());
    }
    let scratch = Path::new("/var/tmp").join(format!("nodetel-it-io-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let (dev, device) = nodetel_integration_tests::block_device_of(&scratch)?;

    let agent = Agent::start(Duration::from_millis(500), &[])?;
    let mut cg = TestCgroup::create("io")?;
    let v1_dir = cg.v1("blkio")?;
    if let Some(dir) = &v1_dir {
        // The v1 throttle layer counts a device's I/O only once a rule exists on it; a limit far
        // above anything the test does turns the accounting on without slowing it.
        std::fs::write(
            dir.join("blkio.throttle.write_bps_device"),
            format!("{dev} 107374182400"),
        )?;
    }
    let stat_dir = v1_dir.clone().unwrap_or_else(|| cg.dir.clone());

    let file = scratch.join("direct");
    let mut writer = cg.spawn(&format!(
        "dd if=/dev/zero of={} bs=1M count={} oflag=direct 2>/dev/null",
        file.display(),
        WRITE >> 20
    ))?;
    assert!(writer.wait()?.success(), "dd with oflag=direct failed");
    std::thread::sleep(agent.interval);

    let before = kernel_writes(&stat_dir, v1_dir.is_some(), &dev)?;
    let e = agent.next_metrics()?;
    let after = kernel_writes(&stat_dir, v1_dir.is_some(), &dev)?;
    let series = |family: &str, extra: &str| -> Option<f64> {
        let id = format!("id=\"{}\"", cg.rel);
        let dev_label = format!("device=\"{device}\"");
        e.0.lines()
            .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
            .find(|l| l.contains(&id) && l.contains(&dev_label) && l.contains(extra))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse().ok())
    };
    let bytes = series("container_fs_writes_bytes_total", "")
        .with_context(|| format!("no write bytes on {device} for {}", cg.rel))?;
    let writes = series("container_fs_writes_total", "").context("no writes series")?;
    let usage = series("container_blkio_device_usage_total", "operation=\"Write\"")
        .context("no blkio usage series")?;
    eprintln!(
        "{device} ({dev}): agent {bytes} bytes in {writes} writes; kernel {before:?} .. {after:?}"
    );
    assert!(
        bytes >= WRITE as f64,
        "{WRITE} bytes written directly, agent shows {bytes}"
    );
    assert!(
        (before.0..=after.0).contains(&bytes),
        "agent {bytes} bytes outside the kernel's {} .. {}",
        before.0,
        after.0
    );
    assert!((before.1..=after.1).contains(&writes), "writes {writes}");
    assert_eq!(
        usage, bytes,
        "blkio usage{{operation=Write}} vs fs writes bytes"
    );
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
