//! The cgroups both agents watch: N leaf cgroups under `/nodetel-bench`, each holding one live
//! process in every mounted hierarchy (v1 controllers and cgroup2 alike, so each agent finds
//! the files it reads), plus a few real Docker containers.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::Context as _;
use nodetel_integration_tests::runtimes::{Dockerd, IMAGE};

pub const PARENT: &str = "nodetel-bench";

/// Every cgroup hierarchy mounted on this host: each v1 mount (alone or co-mounted) and cgroup2.
pub fn hierarchies() -> anyhow::Result<Vec<Hierarchy>> {
    let mounts = fs::read_to_string("/proc/self/mounts").context("read /proc/self/mounts")?;
    let mut out = Vec::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(dir), Some(fstype), Some(opts)) = (f.get(1), f.get(2), f.get(3)) else {
            continue;
        };
        match *fstype {
            "cgroup2" => out.push(Hierarchy {
                root: PathBuf::from(dir),
                v2: true,
                cpuset: false,
            }),
            "cgroup" => out.push(Hierarchy {
                root: PathBuf::from(dir),
                v2: false,
                cpuset: opts.split(',').any(|o| o == "cpuset"),
            }),
            _ => {}
        }
    }
    anyhow::ensure!(!out.is_empty(), "no cgroup hierarchy is mounted");
    Ok(out)
}

pub struct Hierarchy {
    pub root: PathBuf,
    v2: bool,
    /// v1 cpuset refuses tasks until a child has its own cpus and mems.
    cpuset: bool,
}

impl Hierarchy {
    /// Makes `rel` (and its parents) ready to take processes.
    fn make(&self, rel: &str) -> anyhow::Result<PathBuf> {
        let mut dir = self.root.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            if self.v2 {
                // On cgroup2 a child has the controllers its parent enables for it.
                enable_controllers(&dir);
            }
            let parent = dir.clone();
            dir.push(part);
            if !dir.is_dir() {
                fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
            }
            if self.cpuset {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let v = fs::read_to_string(parent.join(f))?;
                    fs::write(dir.join(f), v.trim())?;
                }
            }
        }
        Ok(dir)
    }
}

/// Best effort: the root of a hybrid host's cgroup2 has no controllers to give.
fn enable_controllers(dir: &Path) {
    let Ok(have) = fs::read_to_string(dir.join("cgroup.controllers")) else {
        return;
    };
    for c in have.split_whitespace() {
        if matches!(c, "cpu" | "memory" | "io" | "pids") {
            let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
        }
    }
}

/// A directory at the same relative path in every hierarchy.
pub struct Cgroup {
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    pub fn make(hierarchies: &[Hierarchy], rel: &str) -> anyhow::Result<Cgroup> {
        let dirs = hierarchies
            .iter()
            .map(|h| h.make(rel))
            .collect::<anyhow::Result<_>>()?;
        Ok(Cgroup { dirs })
    }

    pub fn add(&self, pid: u32) -> anyhow::Result<()> {
        for d in &self.dirs {
            fs::write(d.join("cgroup.procs"), pid.to_string())
                .with_context(|| format!("move {pid} into {}", d.display()))?;
        }
        Ok(())
    }

    /// A shell command that moves itself here, for `sh -c "$(moves) && exec agent"`: the agent
    /// is charged from its first instruction (v1 memory does not move earlier charges).
    pub fn join_command(&self) -> String {
        self.dirs
            .iter()
            .map(|d| format!("echo $$ > '{}'", d.join("cgroup.procs").display()))
            .collect::<Vec<_>>()
            .join(" && ")
    }

    /// The cgroup's memory figure as a memory limit sees it (v1 usage includes kernel memory).
    pub fn memory_bytes(&self) -> Option<u64> {
        self.dirs.iter().find_map(|d| {
            ["memory.current", "memory.usage_in_bytes"]
                .iter()
                .find_map(|f| fs::read_to_string(d.join(f)).ok()?.trim().parse().ok())
        })
    }
}

/// Removed when dropped (a cgroup still holding a process stays: rmdir refuses it).
impl Drop for Cgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = fs::remove_dir(d);
        }
    }
}

/// N cgroups with a sleeping process each; all removed on drop.
pub struct Population {
    pub cgroups: Vec<Cgroup>,
    sleepers: Vec<Child>,
    /// Held only to be removed last, after its children.
    _parent: Cgroup,
}

impl Population {
    pub fn create(hierarchies: &[Hierarchy], n: usize) -> anyhow::Result<Population> {
        let parent = Cgroup::make(hierarchies, PARENT)?;
        let mut p = Population {
            cgroups: Vec::with_capacity(n),
            sleepers: Vec::with_capacity(n),
            _parent: parent,
        };
        for i in 0..n {
            let cg = Cgroup::make(hierarchies, &format!("{PARENT}/c{i}"))?;
            let child = Command::new("sleep")
                .arg("infinity")
                .stdin(Stdio::null())
                .spawn()
                .context("spawn sleep")?;
            let pid = child.id();
            p.sleepers.push(child);
            cg.add(pid)?;
            p.cgroups.push(cg);
        }
        Ok(p)
    }
}

impl Drop for Population {
    fn drop(&mut self) {
        for c in &mut self.sleepers {
            let _ = c.kill();
        }
        for c in &mut self.sleepers {
            let _ = c.wait();
        }
        // Then the fields drop in order: the leaf cgroups, now empty, before their parent.
    }
}

/// A private dockerd running `n` idle containers.
pub struct Containers {
    pub dockerd: Dockerd,
}

impl Containers {
    pub fn start(n: usize) -> anyhow::Result<Containers> {
        let dockerd = Dockerd::start("bench")?;
        dockerd.ensure_image()?;
        for i in 0..n {
            dockerd.docker(&[
                "run",
                "-d",
                "--name",
                &format!("bench-{i}"),
                "--memory",
                "64m",
                IMAGE,
                "sleep",
                "1000000",
            ])?;
        }
        Ok(Containers { dockerd })
    }
}
