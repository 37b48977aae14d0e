//! The live exposition parses with Prometheus' own checker.
use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::Duration,
};

use nodetel_integration_tests::{Agent, TestCgroup, privileged, require_tool};

/// promtool lint findings that cAdvisor-compatible names cannot avoid: dashboards query these
/// names exactly, so renaming them would break the drop-in promise.
const LINT_ALLOWED: &[&str] = &[
    r#"container_memory_failcnt counter metrics should have "_total" suffix"#,
    // A gauge (a layer's inode count, or a filesystem's) under cAdvisor's name.
    r#"container_fs_inodes_total non-counter metrics should not have "_total" suffix"#,
    // cAdvisor's own label names (cadvisorVersion, kernelVersion, ...), as its version tables read.
    "cadvisor_version_info label names should be written in 'snake_case' not 'camelCase'",
    // cAdvisor's name: the load average of uninterruptible ("D") threads, not days.
    "container_cpu_load_d_average_10s metric names should not contain abbreviated units",
];

#[test]
fn promtool_finds_no_parse_error() -> anyhow::Result<()> {
    if !privileged("promtool_finds_no_parse_error") || !require_tool("promtool", "promtool") {
        return Ok(());
    }
    let agent = Agent::start(Duration::from_millis(500), &[])?;
    let cg = TestCgroup::create("prom")?;
    cg.spawn("sleep 0.1")?.wait()?;
    let body = agent.next_metrics()?.0;
    assert!(
        body.contains("container_cpu_usage_seconds_total{"),
        "{body}"
    );

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(body.as_bytes())?;
    let out = child.wait_with_output()?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => {}
        Some(3) => {
            for line in report.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    LINT_ALLOWED.iter().any(|a| line.trim() == *a),
                    "promtool lint finding not on the allow-list: {line}"
                );
            }
        }
        other => panic!("promtool check metrics failed ({other:?}):\n{report}"),
    }
    Ok(())
}

/// The machine families against the host's own /proc and /sys.
#[test]
fn machine_facts_match_the_host() -> anyhow::Result<()> {
    if !privileged("machine_facts_match_the_host") {
        return Ok(());
    }
    let agent = Agent::start(Duration::from_millis(500), &[])?;
    let e = agent.next_metrics()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let mem_kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no MemTotal"))?;
    assert_eq!(e.scalar("machine_memory_bytes"), Some(mem_kb * 1024.0));
    let online = std::thread::available_parallelism()?.get() as f64;
    assert_eq!(e.scalar("machine_cpu_cores"), Some(online));
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
    let line =
        e.0.lines()
            .find(|l| l.starts_with("machine_cpu_cores{"))
            .ok_or_else(|| anyhow::anyhow!("no machine_cpu_cores"))?;
    assert!(
        line.contains(&format!("boot_id=\"{}\"", boot_id.trim())),
        "{line}"
    );
    // cAdvisor's version table: the running kernel's release, as `uname -r` prints it.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    let version =
        e.0.lines()
            .find(|l| l.starts_with("cadvisor_version_info{"))
            .ok_or_else(|| anyhow::anyhow!("no cadvisor_version_info"))?;
    assert!(
        version.contains(&format!("kernelVersion=\"{}\"", release.trim()))
            && version.contains("cadvisorVersion=\"nodetel-")
            && version.ends_with(" 1"),
        "{version}"
    );
    Ok(())
}

/// A scraper that accepts gzip (Prometheus always sends `Accept-Encoding: gzip`) gets the same
/// exposition gzipped; one that does not gets it plain. Raw HTTP/1.0 requests, as Prometheus'
/// client sends them, and the body decoded here; the sizes are printed.
#[test]
fn metrics_are_gzipped_for_scrapers_that_ask() -> anyhow::Result<()> {
    use std::io::Read as _;
    if !privileged("metrics_are_gzipped_for_scrapers_that_ask") {
        return Ok(());
    }
    let agent = Agent::start(Duration::from_millis(500), &[])?;
    let fetch = |extra: &str| -> anyhow::Result<(String, Vec<u8>)> {
        let mut s = std::net::TcpStream::connect(&agent.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n{extra}\r\n")?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| anyhow::anyhow!("no header end"))?;
        Ok((
            String::from_utf8_lossy(&raw[..end]).to_lowercase(),
            raw[end + 4..].to_vec(),
        ))
    };
    let (plain_head, plain) = fetch("")?;
    let (gz_head, gz) = fetch("Accept-Encoding: gzip\r\n")?;
    let (refused_head, _) = fetch("Accept-Encoding: gzip;q=0, identity\r\n")?;
    assert!(plain_head.starts_with("http/1.0 200"), "{plain_head}");
    assert!(!plain_head.contains("content-encoding"), "{plain_head}");
    assert!(plain_head.contains("vary: accept-encoding"), "{plain_head}");
    assert!(gz_head.contains("content-encoding: gzip"), "{gz_head}");
    assert!(!refused_head.contains("content-encoding"), "{refused_head}");
    // gzip's magic, and the decoded body is an exposition of the same shape.
    assert_eq!(gz.get(..2), Some(&[0x1f, 0x8b][..]), "not gzip");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text)?;
    assert!(text.contains("# TYPE container_cpu_usage_seconds_total counter"));
    let families = |t: &str| t.lines().filter(|l| l.starts_with("# TYPE")).count();
    assert_eq!(
        families(&text),
        families(&String::from_utf8(plain.clone())?)
    );
    eprintln!(
        "/metrics: {} bytes plain, {} gzipped ({:.1}x)",
        plain.len(),
        gz.len(),
        plain.len() as f64 / gz.len() as f64
    );
    // 6.6x on the host, 4.4x in the VM (a smaller body); under 3x would mean no compression to speak of.
    assert!(gz.len() * 3 < plain.len(), "gzip saved less than 3x");
    Ok(())
}
