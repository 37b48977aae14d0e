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
