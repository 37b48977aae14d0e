//! An agent that does not share the host's pid namespace (a Swarm task cannot; here util-linux
//! `unshare --pid --cgroup` makes one, without a container runtime): `cgroup.procs` then lists
//! none of the host's processes, so the agent places them through the host's procfs. Started
//! inside a cgroup of its own with a private cgroup namespace too, so that the host's processes
//! show there as `/../<cgroup>` paths, as in a Docker container on a cgroup v2 host: process
//! counts, thread states and the namespace's interface names must still be the kernel's.
//!
//! Host only (`unshare --kill-child` is util-linux's; the guest has busybox's).
use std::{thread, time::Duration};

use anyhow::Context as _;
use nodetel_integration_tests::{
    Agent, TestCgroup, privileged, require_tool, thread_states, unix_now,
};

#[test]
fn processes_and_thread_states_without_the_hosts_pid_namespace() -> anyhow::Result<()> {
    const TEST: &str = "processes_and_thread_states_without_the_hosts_pid_namespace";
    if !privileged(TEST) || !require_tool(TEST, "unshare") {
        return Ok(());
    }
    let home = TestCgroup::create("agent-home")?;
    let work = TestCgroup::create("pidns-work")?;
    let _sleepers = work.spawn("sleep 600 & sleep 600 & wait")?;
    let _busy = work.burn()?;
    thread::sleep(Duration::from_millis(200));

    // The wrapper joins `home`, then runs the agent as pid 1 of new pid and cgroup namespaces.
    let join = format!(
        "echo $$ > '{}' && exec unshare --pid --cgroup --kill-child=SIGTERM \"$0\" \"$@\"",
        home.dir.join("cgroup.procs").display()
    );
    let mut agent = Agent::spawn_under(&["sh", "-c", &join], Duration::from_millis(500), &[])?;
    agent.wait_healthy(Duration::from_secs(20))?;
    let procs = std::fs::read_to_string(work.dir.join("cgroup.procs"))?
        .lines()
        .count() as f64;
    let before = thread_states(&work.dir)?;
    let e = agent.metrics_after(unix_now())?;
    let after = thread_states(&work.dir)?;
    assert_eq!(before, after, "the workload moved");
    assert_eq!(before, [1, 3, 0, 0], "the workload itself");
    assert_eq!(procs, 4.0, "the workload itself");
    let served = ["running", "sleeping", "stopped", "uninterruptible"]
        .map(|s| e.value_where("container_tasks_state", &work.rel, "state", s));
    eprintln!(
        "own namespaces: processes {:?} (kernel {procs}), states {served:?} (kernel {before:?})",
        e.value("container_processes", &work.rel)
    );
    assert_eq!(e.value("container_processes", &work.rel), Some(procs));
    assert_eq!(served, before.map(|n| Some(n as f64)));
    // The agent's own cgroup: `unshare` and the agent it forked (pid 1 of its namespace). With
    // cgroup.procs as the agent's namespace lists it, this would be 1 and the work cgroup's 0.
    assert_eq!(e.value("container_processes", &home.rel), Some(2.0));
    let unplaced: f64 =
        e.0.lines()
            .find_map(|l| l.strip_prefix("nodetel_host_processes_unplaced_total "))
            .context("no nodetel_host_processes_unplaced_total")?
            .trim()
            .parse()?;
    eprintln!("host processes not placed: {unplaced}");
    Ok(())
}
