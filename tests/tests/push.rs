//! Remote write into a real Prometheus (Debian's 2.42 with `--web.enable-remote-write-receiver`):
//! what arrives is what `/metrics` served, sample for sample at the same pass times, with the
//! external labels; and a receiver that goes away for a while loses nothing of its absence.
//!
//! Host only: the VM suite has no Prometheus.
use std::{
    collections::BTreeMap,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use nodetel_integration_tests::{
    Agent, TestCgroup, privileged, prometheus::Prometheus, require_tool, unix_now,
};

/// The raw samples Prometheus holds for `selector` over the last `window`: time (ms) -> value.
fn raw_samples(
    prom: &Prometheus,
    selector: &str,
    window: &str,
) -> anyhow::Result<BTreeMap<i64, f64>> {
    let result = prom.query(&format!("{selector}[{window}]"))?;
    ensure!(result.len() <= 1, "{selector}: {} series", result.len());
    let mut out = BTreeMap::new();
    for r in result {
        for v in r["values"].as_array().context("no values")? {
            let t = v[0].as_f64().context("time")?;
            let value: f64 = v[1].as_str().context("value")?.parse()?;
            out.insert((t * 1000.0).round() as i64, value);
        }
    }
    Ok(out)
}

#[test]
fn pushed_samples_are_the_scraped_ones_and_an_outage_loses_none() -> anyhow::Result<()> {
    const TEST: &str = "pushed_samples_are_the_scraped_ones_and_an_outage_loses_none";
    if !privileged(TEST) || !require_tool(TEST, "prometheus") {
        return Ok(());
    }
    let dir = Path::new("/var/lib/nodetel-test/push-receiver");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("data"))?;
    let prom = Prometheus::start_receiver(dir, None)?;
    let addr = prom.addr.clone();
    let cg = TestCgroup::create("push")?;
    let _busy = cg.burn()?;
    let agent = Agent::start(
        Duration::from_millis(500),
        &[
            "--remote-write-url",
            &format!("http://{addr}/api/v1/write"),
            "--remote-write-interval",
            "1s",
            "--remote-write-label",
            "cluster=test",
            "--node-name",
            "push-node",
        ],
    )?;
    let selector = format!(
        "container_cpu_usage_seconds_total{{id=\"{}\",job=\"nodetel\",instance=\"push-node\",cluster=\"test\"}}",
        cg.rel
    );
    // Scrapes of the agent meanwhile: pass time (ms) -> the value /metrics served.
    let mut scraped = BTreeMap::new();
    let mut series_at = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(12);
    while Instant::now() < deadline {
        let e = agent.next_metrics()?;
        let t = (e.snapshot_time() * 1000.0).round() as i64;
        if let Some(v) = e.value("container_cpu_usage_seconds_total", &cg.rel) {
            scraped.insert(t, v);
        }
        let lines =
            e.0.lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .count();
        series_at.insert(t, lines);
    }
    thread::sleep(Duration::from_secs(2));
    let pushed = raw_samples(&prom, &selector, "1m")?;
    let same: Vec<(i64, f64, f64)> = scraped
        .iter()
        .filter_map(|(t, v)| pushed.get(t).map(|p| (*t, *v, *p)))
        .collect();
    eprintln!(
        "push: {} samples pushed, {} scrapes, {} at the same pass",
        pushed.len(),
        scraped.len(),
        same.len()
    );
    ensure!(
        pushed.len() >= 8,
        "only {} samples in 12 s at 1 s",
        pushed.len()
    );
    ensure!(
        same.len() >= 4,
        "only {} pushed passes were also scraped",
        same.len()
    );
    for (t, scrape, push) in &same {
        ensure!(
            scrape == push,
            "pass at {t} ms: scraped {scrape}, pushed {push}"
        );
    }
    // Every series of a pass arrived: the count at a pushed pass equals the scrape's lines.
    let (t, lines) = series_at
        .iter()
        .rev()
        .find(|(t, _)| pushed.contains_key(t))
        .context("no scraped pass was pushed")?;
    let at = *t as f64 / 1000.0;
    let count = prom.api(&format!(
        "/api/v1/query?query=count(%7Bjob%3D%22nodetel%22%7D)&time={at:.3}"
    ))?["result"][0]["value"][1]
        .as_str()
        .context("no count")?
        .parse::<f64>()?;
    eprintln!("push: {count} series in Prometheus at {at}, {lines} lines in the scrape");
    ensure!(
        count as usize == *lines,
        "{count} series pushed, {lines} served"
    );

    // The receiver goes away for 15 s and comes back at the same address: every second of
    // its absence arrives, in order, once.
    let gone_at = unix_now();
    drop(prom);
    thread::sleep(Duration::from_secs(15));
    let back_at = unix_now();
    let prom = Prometheus::start_receiver(dir, Some(&addr))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let pushed = loop {
        let pushed = raw_samples(&prom, &selector, "2m")?;
        let caught_up = pushed
            .keys()
            .next_back()
            .is_some_and(|t| *t as f64 / 1000.0 > back_at + 2.0);
        if caught_up || Instant::now() > deadline {
            break pushed;
        }
        thread::sleep(Duration::from_millis(500));
    };
    let times: Vec<i64> = pushed.keys().copied().collect();
    let largest_gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let during = times
        .iter()
        .filter(|t| (gone_at..back_at).contains(&(**t as f64 / 1000.0)))
        .count();
    eprintln!(
        "push: receiver away {:.1} s: {during} samples of that time arrived, largest gap {largest_gap} ms",
        back_at - gone_at
    );
    ensure!(
        during >= 12,
        "only {during} samples of the 15 s outage arrived"
    );
    ensure!(
        largest_gap <= 1600,
        "a gap of {largest_gap} ms in the pushed samples"
    );
    let values: Vec<f64> = pushed.values().copied().collect();
    ensure!(
        values.windows(2).all(|w| w[1] >= w[0]),
        "a counter went back: samples out of order"
    );
    let m = agent.next_metrics()?;
    let retried = m.0.lines().any(|l| {
        l.starts_with("nodetel_remote_write_samples_total{")
            && l.contains("result=\"retried\"")
            && !l.ends_with(" 0")
    });
    ensure!(retried, "no retried samples counted");
    Ok(())
}
