//! The live exposition parses with Prometheus' own checker.
use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::Duration,
};

use nodetel_integration_tests::{Agent, TestCgroup, privileged, require_tool};

/// promtool lint findings that cAdvisor-compatible names cannot avoid: dashboards query these
/// names exactly, so renaming them would break the drop-in promise.
const LINT_ALLOWED: &[&str] =
    &[r#"container_memory_failcnt counter metrics should have "_total" suffix"#];

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
    Ok(())
}
