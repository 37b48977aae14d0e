//! What a kind's kernel programs cost under a load: the kernel's own timing of each run.
use crate::probe;

/// Runs `load` while an agent with `flags` (a kind's switch) runs and the kernel times its
/// programs (bpf_stats): `load`'s result, and the runs and run time of the programs `wanted`
/// names, over the load alone (the agent settles for 2 s first).
pub fn timed_programs<T>(
    args: &crate::Args,
    docker_socket: &str,
    cgroup: &crate::population::Cgroup,
    (name, flags): (&'static str, &[&str]),
    wanted: fn(&str) -> bool,
    load: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, Vec<crate::report::Program>)> {
    let mut agent = crate::AgentCommand::nodetel(&args.nodetel, docker_socket)?.with(flags);
    agent.name = name;
    let mut child = crate::start(args, &agent, cgroup, 0)?;
    crate::wait_serving(&agent, &mut child)?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    let stats = probe::BpfStats::enable()?;
    let before = probe::bpf_programs(child.id())?;
    let out = load()?;
    let after = probe::bpf_programs(child.id())?;
    drop(stats);
    drop(child);
    let programs = after
        .iter()
        .filter(|(name, _)| wanted(name))
        .map(|(name, end)| {
            let start = before.get(name).copied().unwrap_or_default();
            crate::report::Program {
                name: name.clone(),
                runs: end.run_cnt.saturating_sub(start.run_cnt),
                run_ns: end.run_time_ns.saturating_sub(start.run_time_ns),
            }
        })
        .collect();
    Ok((out, programs))
}
