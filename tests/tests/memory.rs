//! Memory figures against the kernel's own files: a process holding 100 MiB of anonymous memory
//! and 60 MiB of page cache, read from v2 `memory.stat`/`memory.current` on a pure v2 host and
//! from the v1 memory hierarchy on a hybrid one.
use std::{collections::HashMap, path::Path, thread, time::Duration};

use anyhow::Context as _;
use nodetel_integration_tests::{Agent, TestCgroup, privileged, rel_err};

const MIB: f64 = 1024.0 * 1024.0;

/// The kernel's figures in cAdvisor's terms, from whichever hierarchy holds them.
fn kernel_figures(dir: &Path, v1: bool) -> anyhow::Result<HashMap<&'static str, f64>> {
    let stat = std::fs::read_to_string(dir.join("memory.stat"))?;
    let key = |k: &str| -> anyhow::Result<f64> {
        stat.lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(name, _)| *name == k)
            .with_context(|| format!("no {k} in memory.stat"))?
            .1
            .trim()
            .parse::<f64>()
            .with_context(|| format!("{k} in memory.stat"))
    };
    let usage_file = if v1 {
        "memory.usage_in_bytes"
    } else {
        "memory.current"
    };
    let usage: f64 = std::fs::read_to_string(dir.join(usage_file))?
        .trim()
        .parse()?;
    let (rss, cache, inactive_file) = if v1 {
        (
            key("total_rss")?,
            key("total_cache")?,
            key("total_inactive_file")?,
        )
    } else {
        (key("anon")?, key("file")?, key("inactive_file")?)
    };
    Ok(HashMap::from([
        ("container_memory_usage_bytes", usage),
        ("container_memory_rss", rss),
        ("container_memory_cache", cache),
        (
            "container_memory_working_set_bytes",
            (usage - inactive_file).max(0.0),
        ),
    ]))
}

#[test]
fn memory_matches_the_kernel_for_anon_and_page_cache() -> anyhow::Result<()> {
    if !privileged("memory_matches_the_kernel_for_anon_and_page_cache") {
        return Ok(());
    }
    let agent = Agent::start(Duration::from_millis(500), &[])?;
    let mut cg = TestCgroup::create("mem")?;
    let v1 = cg.v1("memory")?.is_some();
    let dir = cg.controller_dir("memory")?;
    let limit: u64 = 512 << 20;
    let limit_file = if v1 {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    std::fs::write(dir.join(limit_file), limit.to_string())?;

    // 60 MiB of page cache, written from inside the cgroup so it is charged there (a disk
    // filesystem on the host; the VM's root is tmpfs, whose pages count as file too). Then dd
    // reads 100 MiB from /dev/zero into one buffer and blocks writing it into a pipe nobody
    // reads: 100 MiB of touched anonymous memory, held until the test kills it.
    let scratch = tempdir()?;
    let file = scratch.join("cache");
    let script = format!(
        "dd if=/dev/zero of={} bs=1M count=60 2>/dev/null && \
         dd if=/dev/zero bs=100M count=1 2>/dev/null | sleep 600",
        file.display()
    );
    let _hog = cg.spawn(&script)?;

    // Wait until both are in place, by the kernel's own account.
    let mut settled = false;
    for _ in 0..100 {
        let k = kernel_figures(&dir, v1)?;
        if k["container_memory_rss"] >= 100.0 * MIB && k["container_memory_cache"] >= 60.0 * MIB {
            settled = true;
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        settled,
        "the hog never reached 100 MiB anon + 60 MiB cache: {:?}",
        kernel_figures(&dir, v1)?
    );
    thread::sleep(agent.interval);

    let before = kernel_figures(&dir, v1)?;
    let e = agent.next_metrics()?;
    let after = kernel_figures(&dir, v1)?;
    for (family, want) in &after {
        let got = e
            .value(family, &cg.rel)
            .with_context(|| format!("no {family} for {}", cg.rel))?;
        eprintln!(
            "{family}: agent {:.1} MiB, kernel {:.1} .. {:.1} MiB",
            got / MIB,
            before[family] / MIB,
            want / MIB
        );
        assert!(
            rel_err(got, *want) < 0.03 || rel_err(got, before[family]) < 0.03,
            "{family}: agent {got} vs kernel {} .. {want}",
            before[family]
        );
    }
    assert_eq!(
        e.value("container_spec_memory_limit_bytes", &cg.rel),
        Some(limit as f64)
    );
    // Unlimited swap (v2 `max`, v1 page-rounded i64::MAX) is reported as 0, as cAdvisor does.
    if let Some(swap_limit) = e.value("container_spec_memory_swap_limit_bytes", &cg.rel) {
        assert_eq!(swap_limit, 0.0);
    }
    let faults = e.0.lines().find(|l| {
        l.starts_with("container_memory_failures_total{")
            && l.contains(&format!("id=\"{}\"", cg.rel))
            && l.contains("failure_type=\"pgfault\"")
    });
    assert!(faults.is_some(), "no pgfault series for the test cgroup");
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// A scratch directory on a disk filesystem where there is one (page cache, not tmpfs).
fn tempdir() -> anyhow::Result<std::path::PathBuf> {
    let base = ["/var/tmp", "/tmp"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_dir())
        .context("no /var/tmp or /tmp")?;
    let dir = base.join(format!("nodetel-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
