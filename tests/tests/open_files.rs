//! cgroupfs files stay open between passes: steady passes open (almost) nothing, and a cgroup
//! removed and made again under the same name is read from the new one, not the dead one.
use std::{
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use nodetel_integration_tests::{Agent, Exposition, TestCgroup, privileged};

/// A cgroup with `pids.max` = `max` and a shell holding `sleeps` sleeps: 1 + `sleeps` processes.
fn populate(cg: &mut TestCgroup, max: u32, sleeps: usize) -> anyhow::Result<()> {
    let pids = cg.controller_dir("pids")?;
    std::fs::write(pids.join("pids.max"), max.to_string())?;
    let script = "sleep 600 & ".repeat(sleeps) + "wait";
    // Killed with the cgroup's other processes when the cgroup is removed.
    drop(cg.spawn(&script)?);
    Ok(())
}

fn has_strace() -> bool {
    Command::new("sh")
        .args(["-c", "command -v strace"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Descriptors of `pid` open on a cgroupfs file (`/sys/fs/cgroup/...`), by the kernel's list.
fn cgroupfs_fds(pid: u32) -> anyhow::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        if std::fs::read_link(entry.path()).is_ok_and(|t| t.starts_with("/sys/fs/cgroup/")) {
            n += 1;
        }
    }
    Ok(n)
}

#[test]
fn steady_passes_reopen_nothing_and_recreated_cgroups_read_afresh() -> anyhow::Result<()> {
    if !privileged("steady_passes_reopen_nothing_and_recreated_cgroups_read_afresh") {
        return Ok(());
    }
    let agent = Agent::start(Duration::from_millis(250), &[])?;
    let mut cg = TestCgroup::create("reopen")?;
    let rel = cg.rel.clone();
    populate(&mut cg, 40, 1)?;
    let shows = |procs: f64, max: f64| {
        let rel = rel.clone();
        move |e: &Exposition| {
            e.value("container_processes", &rel) == Some(procs)
                && e.value("container_threads_max", &rel) == Some(max)
        }
    };
    let e = agent.scrape_until(Duration::from_secs(5), shows(2.0, 40.0))?;
    anyhow::ensure!(
        shows(2.0, 40.0)(&e),
        "first cgroup never showed 2 processes and pids.max 40"
    );

    // Steady state: three passes over the same cgroups. Without held files each pass opens
    // every file of every cgroup again (at least five per cgroup). The kernel's own account of
    // the agent's opens, where strace is installed (the host; the VM has none): every openat
    // under cgroupfs, seen by ptrace.
    let trace = std::env::temp_dir().join(format!("nodetel-open-files-{}", std::process::id()));
    let strace = if has_strace() {
        let child = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
            .arg(&trace)
            .args(["-p", &agent.pid().to_string()])
            .stderr(Stdio::null())
            .spawn()?;
        // Attached before the first counted pass begins.
        std::thread::sleep(Duration::from_millis(500));
        Some(child)
    } else {
        None
    };
    let before = agent.next_metrics()?;
    let mut after = agent.next_metrics()?;
    for _ in 0..2 {
        after = agent.next_metrics()?;
    }
    let traced_opens = match strace {
        Some(mut child) => {
            nodetel_integration_tests::signal(child.id(), "INT")?;
            let _ = child.wait();
            let text = std::fs::read_to_string(&trace).unwrap_or_default();
            let _ = std::fs::remove_file(&trace);
            // Files, not the directories the tree walk lists.
            let files = text
                .lines()
                .filter(|l| l.contains("\"/sys/fs/cgroup") && !l.contains("O_DIRECTORY"));
            Some(files.count())
        }
        None => None,
    };
    // The files the agent holds, as the kernel lists its descriptors.
    let fds = cgroupfs_fds(agent.pid())?;
    let opens = |e: &Exposition| e.scalar("nodetel_cgroupfs_file_opens_total");
    let opened = opens(&after).context("no opens counter")? - opens(&before).context("no opens")?;
    let cgroups = after
        .scalar("nodetel_cgroups")
        .context("no cgroups gauge")?;
    let held = after
        .scalar("nodetel_cgroupfs_open_files")
        .context("no open-files gauge")?;
    eprintln!(
        "3 passes over {cgroups} cgroups: {opened} opens ({traced_opens:?} cgroupfs opens seen by \
         strace over a longer window); {held} files held open, {fds} cgroupfs descriptors in \
         /proc/<pid>/fd"
    );
    assert!(held >= cgroups, "{held} files held for {cgroups} cgroups");
    // The gauge is the descriptors: the agent holds no other cgroupfs file between passes.
    assert!(
        (fds as f64 - held).abs() <= 2.0,
        "{held} files held by the agent's count, {fds} cgroupfs descriptors by the kernel's"
    );
    if let Some(traced) = traced_opens {
        // strace watched from before the first pass counted to after the last: at least the
        // counted opens, and still far fewer than the files held.
        assert!(
            traced as f64 >= opened && (traced as f64) < held,
            "strace saw {traced} cgroupfs opens over three passes, the agent counted {opened}, \
             {held} files held"
        );
    }
    // Without held files, three passes open at least three times what is held. New cgroups of
    // the host's own (a login, a timer) may appear meanwhile and add their own few files.
    assert!(
        opened < held,
        "{opened} opens in three steady passes over {cgroups} cgroups ({held} files held)"
    );

    // Removed and made again at once, under the same name: files held open for the old cgroup
    // now fail with ENODEV and must be reopened to reach the new one.
    drop(cg);
    let mut cg = TestCgroup::create("reopen")?;
    assert_eq!(cg.rel, rel);
    populate(&mut cg, 30, 2)?;
    let e = agent.scrape_until(Duration::from_secs(5), shows(3.0, 30.0))?;
    assert!(
        shows(3.0, 30.0)(&e),
        "recreated cgroup: processes {:?}, threads_max {:?} (want 3, 30)",
        e.value("container_processes", &rel),
        e.value("container_threads_max", &rel)
    );
    assert_eq!(e.scalar("nodetel_cgroupfs_read_errors_total"), Some(0.0));
    Ok(())
}
