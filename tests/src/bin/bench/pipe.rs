//! The context-switch tax: `perf bench sched pipe` (two tasks ping-ponging over pipes, every
//! message a wakeup and a switch) with and without the agent's programs attached. Run as is
//! (the tasks on both CPUs, each switch to and from idle) and pinned to one CPU (each message
//! exactly one switch between the two tasks: the worst case, the least work per switch).
use std::process::Command;

use anyhow::Context as _;

/// Microseconds per round trip: (as is, pinned), each the median of `runs` runs.
pub fn usecs_per_op(runs: usize, loops: u32) -> anyhow::Result<(f64, f64)> {
    // As is, a round trip crosses CPUs and takes ten times as long here: fewer of them.
    Ok((median(runs, loops / 5, false)?, median(runs, loops, true)?))
}

/// The per-component medians of (as is, pinned) samples.
pub fn medians(samples: &[(f64, f64)]) -> (f64, f64) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    (
        median(samples.iter().map(|s| s.0).collect()),
        median(samples.iter().map(|s| s.1).collect()),
    )
}

/// ns per run of the agent's `sched_switch` program over one pinned run, as the kernel times it
/// (`kernel.bpf_stats_enabled`, which adds its own clock reads): the per-switch cost under a
/// switch-heavy load, with warm caches.
pub fn switch_ns_under_load(agent_pid: u32, loops: u32) -> anyhow::Result<Option<f64>> {
    let _stats = crate::probe::BpfStats::enable()?;
    let before = crate::probe::bpf_programs(agent_pid)?;
    median(1, loops, true)?;
    let after = crate::probe::bpf_programs(agent_pid)?;
    // The agent has one program on sched_switch: nodetel's, or the empty one (whose name the
    // kernel keeps to 15 characters).
    let find = |programs: &std::collections::BTreeMap<String, crate::probe::ProgStats>| {
        programs
            .iter()
            .find(|(name, _)| name.starts_with("sched_switch"))
            .map(|(_, p)| *p)
    };
    Ok(match (find(&before), find(&after)) {
        (Some(b), Some(a)) if a.run_cnt > b.run_cnt => Some(
            a.run_time_ns.saturating_sub(b.run_time_ns) as f64 / (a.run_cnt - b.run_cnt) as f64,
        ),
        _ => None,
    })
}

/// Keeps the agent's threads off CPU 0, where the pinned runs go: its own CPU is reported with
/// the agent's, and here would only add the noise of when a pass happens to land there.
pub fn keep_off_cpu0(agent_pid: u32) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        return Ok(());
    }
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", &format!("1-{}", cpus - 1)])
        .arg(agent_pid.to_string())
        .output()
        .context("run taskset")?;
    anyhow::ensure!(
        out.status.success(),
        "taskset: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn median(runs: usize, loops: u32, pinned: bool) -> anyhow::Result<f64> {
    let mut all = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut cmd = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", "perf"]);
            c
        } else {
            Command::new("perf")
        };
        let out = cmd
            .args(["bench", "sched", "pipe", "-l"])
            .arg(loops.to_string())
            .output()
            .context("run perf bench (apt-get install linux-perf util-linux)")?;
        anyhow::ensure!(
            out.status.success(),
            "perf bench sched pipe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        all.push(parse(&text).with_context(|| format!("no usecs/op in perf output:\n{text}"))?);
    }
    all.sort_by(f64::total_cmp);
    Ok(all[all.len() / 2])
}

/// `perf bench sched pipe` ends with a line like `      6.543210 usecs/op`.
fn parse(text: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let v = l.trim().strip_suffix("usecs/op")?;
        v.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_perf_output() {
        let out = "# Running 'sched/pipe' benchmark:\n# Executed 100000 pipe operations between two processes\n\n     Total time: 1.234 [sec]\n\n      12.340000 usecs/op\n          81037 ops/sec\n";
        assert_eq!(super::parse(out), Some(12.34));
        assert_eq!(super::parse("nothing"), None);
    }

    #[test]
    fn medians_per_component() {
        let m = super::medians(&[(3.0, 30.0), (1.0, 20.0), (2.0, 10.0)]);
        assert_eq!(m, (2.0, 20.0));
        assert!(super::medians(&[]).0.is_nan());
    }
}
