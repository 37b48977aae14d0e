//! Loads the embedded object, hands it the running kernel's field offsets and the configured map
//! sizes, and attaches the programs. Dropping [`Probes`] detaches everything: nothing is pinned,
//! so a stopped (or killed) agent leaves nothing behind in the kernel.
use std::path::PathBuf;

use aya::{
    Btf as AyaBtf, Ebpf, EbpfLoader,
    maps::{MapData, RingBuf},
    programs::{BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, Iter, TracePoint},
};
use nodetel_common::{
    GLOBAL_OFFSETS, MAP_CPU_NS, MAP_NET_TRAFFIC, MAP_OOM_EVENTS, MAP_SCHED_HIST, PROG_CGROUP_MKDIR,
    PROG_CGROUP_RENAME, PROG_CGROUP_RMDIR, PROG_MARK_VICTIM, PROG_NET_EGRESS, PROG_NET_INGRESS,
    PROG_SCHED_SWITCH, PROG_SIGNAL_GENERATE,
};

use crate::btf::{Btf, BtfError};
pub use crate::snapshot::health::{NotAttached, ProgramStats};

/// The object built from `agent-ebpf` by `build.rs`; empty when built with NODETEL_SKIP_EBPF.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nodetel-ebpf"));

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// This binary was built without kernel programs.
    #[error(
        "this nodetel was built with NODETEL_SKIP_EBPF=1 and has no kernel programs; rebuild \
         without it (see README: cargo xtask setup)"
    )]
    NoObject,
    /// The running kernel's BTF could not be used.
    #[error("kernel BTF: {0}")]
    Btf(#[from] BtfError),
    /// aya could not read the kernel BTF for tp_btf attachment.
    #[error("failed to read kernel BTF for program attachment: {0}")]
    AyaBtf(#[from] aya::BtfError),
    /// The object could not be loaded (verifier, map creation, permissions).
    #[error("failed to load the eBPF object: {0}")]
    Object(#[from] aya::EbpfError),
    /// A program is missing from the object.
    #[error("program `{0}` missing from the eBPF object")]
    MissingProgram(&'static str),
    /// A program failed to load or attach.
    #[error("failed to load/attach program `{name}`: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
}

/// Where tracefs may be mounted, in aya's order of preference (aya attaches classic tracepoints
/// only through these two paths).
pub const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// What the loader needs from the configuration.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// `/sys/kernel/btf/vmlinux`, or a copy of it.
    pub btf_path: PathBuf,
    /// Capacity of the per-cgroup CPU map.
    pub cpu_map_entries: u32,
    /// Capacity of the traffic map.
    pub net_map_entries: u32,
    /// Capacity of the run-queue histogram map.
    pub sched_map_entries: u32,
    /// Where tracefs is mounted: classic tracepoints publish their record layout there.
    pub tracefs: Vec<PathBuf>,
    /// Mount tracefs at the first candidate when none has it (`--mount-tracefs`); otherwise the
    /// agent changes nothing on the host and says what is missing.
    pub mount_tracefs: bool,
    /// The cgroup v2 root the traffic programs attach to; `None` leaves them out (the `network`
    /// kind is disabled), so packets pay nothing.
    pub cgroup2_root: Option<PathBuf>,
    /// Measure run-queue waits and run periods at each switch (the `sched` kind).
    pub sched: bool,
    /// Each enabled kind's programs, in attach order (see `sources::programs`).
    pub kinds: Vec<KindPrograms>,
    /// Count traffic over `lo` too (`--network-loopback`).
    pub loopback: bool,
    /// Turn on the kernel's per-program run time accounting (`--bpf-stats`).
    pub bpf_stats: bool,
}

/// One kind's kernel programs, in attach order, and the read-only data they need from the
/// running kernel's BTF: a global of the object and how to make its bytes. When the BTF lacks
/// what it needs, none of the kind's programs is attached, each with the reason.
#[derive(Clone, Debug)]
pub struct KindPrograms {
    pub programs: Vec<(&'static str, Attach)>,
    pub global: Option<(&'static str, GlobalFromBtf)>,
}

/// Makes a global's bytes from the running kernel's BTF.
pub type GlobalFromBtf = fn(&Btf) -> Result<Vec<u8>, BtfError>;

/// The loaded object with its programs attached.
pub struct Probes {
    pub ebpf: Ebpf,
    pub attached: Vec<&'static str>,
    /// Programs this kernel refused: their metrics are absent, the rest is served.
    pub not_attached: Vec<NotAttached>,
    pub cpu_map_entries: u32,
    pub net_map_entries: u32,
    pub sched_map_entries: u32,
    /// Loopback traffic is counted (`--network-loopback`).
    pub loopback: bool,
    /// The OOM kill records, taken out of the object so they can be consumed in place.
    pub oom_events: Option<RingBuf<MapData>>,
    /// Keeps the kernel's run time accounting on while held (`--bpf-stats`).
    bpf_stats: Option<std::os::fd::OwnedFd>,
    /// `sched_switch` reads the scheduler's per-task wait figures (asked for, and this kernel
    /// keeps them).
    runqueue: bool,
}

/// Where a program attaches.
#[derive(Clone, Copy, Debug)]
pub enum Attach {
    /// A BTF-typed tracepoint (`tp_btf`).
    Btf(&'static str),
    /// A classic tracepoint: category, name.
    Classic(&'static str, &'static str),
    /// The cgroup v2 root (`LoadOptions::cgroup2_root`), one direction.
    CgroupSkb(CgroupSkbAttachType),
    /// An iterator over the kernel's objects (`iter/<target>`), walked once to its end when its
    /// turn comes (after the programs before it are attached), then dropped.
    IterOnce(&'static str),
}

impl Probes {
    /// Loads and attaches. Blocking (BTF parsing, verifier): call it off the async threads.
    ///
    /// Only an object that cannot be loaded at all is an error. A program that fails to load or
    /// attach (a missing tracepoint, a stricter verifier) is logged once and reported in
    /// `not_attached`; the others keep working.
    pub fn load(opts: &LoadOptions) -> Result<Probes, LoadError> {
        if OBJECT.is_empty() {
            return Err(LoadError::NoObject);
        }
        let btf = Btf::from_file(&opts.btf_path)?;
        let mut offsets = btf.kernel_offsets()?;
        let mut not_attached = Vec::new();
        let mut globals = Vec::new();
        let mut programs = Vec::new();
        for kind in &opts.kinds {
            if let Some((name, make)) = kind.global {
                match make(&btf) {
                    Ok(bytes) => globals.push((name, bytes)),
                    Err(e) => {
                        for (program, _) in &kind.programs {
                            not_attached.push(NotAttached {
                                program,
                                reason: format!("this kernel's BTF: {e}"),
                            });
                        }
                        continue;
                    }
                }
            }
            programs.extend(kind.programs.iter().copied());
        }
        ensure_tracefs(&opts.tracefs, opts.mount_tracefs);
        match tracepoint_field_offset(&opts.tracefs, "oom", "mark_victim", "pid") {
            Ok(off) => offsets.tp_mark_victim_pid = off,
            Err(reason) => {
                for program in [PROG_SIGNAL_GENERATE, PROG_MARK_VICTIM] {
                    not_attached.push(NotAttached {
                        program,
                        reason: reason.clone(),
                    });
                }
            }
        }
        if opts.loopback {
            offsets.features |= nodetel_common::FEATURE_LOOPBACK;
        }
        let runqueue = opts.sched && offsets.task_run_delay != 0 && offsets.task_pcount != 0;
        if runqueue {
            offsets.features |= nodetel_common::FEATURE_SCHED;
        } else if opts.sched {
            tracing::warn!(
                "this kernel keeps no per-task scheduler figures (task_struct.sched_info, \
                 CONFIG_SCHED_INFO): run-queue waits and run periods are absent"
            );
        }
        tracing::debug!(?offsets, "kernel struct offsets from BTF");
        let mut loader = EbpfLoader::new();
        loader
            .override_global(GLOBAL_OFFSETS, &offsets, true)
            .map_max_entries(MAP_CPU_NS, opts.cpu_map_entries)
            .map_max_entries(MAP_NET_TRAFFIC, opts.net_map_entries)
            .map_max_entries(MAP_SCHED_HIST, opts.sched_map_entries);
        for (name, bytes) in &globals {
            loader.override_global(name, bytes.as_slice(), true);
        }
        let mut ebpf = loader.load(OBJECT)?;
        let kernel_btf = AyaBtf::parse_file(&opts.btf_path, aya::Endianness::default())?;
        let mut attached = Vec::new();
        for (name, how) in programs {
            if not_attached.iter().any(|n: &NotAttached| n.program == name) {
                continue;
            }
            let done = match how {
                Attach::Btf(tp) => attach_btf_tracepoint(&mut ebpf, name, tp, &kernel_btf),
                Attach::Classic(category, tp) => attach_tracepoint(&mut ebpf, name, category, tp),
                Attach::IterOnce(target) => walk_iterator(&mut ebpf, name, target, &kernel_btf),
                Attach::CgroupSkb(direction) => match &opts.cgroup2_root {
                    Some(root) => attach_cgroup_skb(&mut ebpf, name, root, direction),
                    None => {
                        not_attached.push(NotAttached {
                            program: name,
                            reason: "no cgroup v2 root to attach to".into(),
                        });
                        continue;
                    }
                },
            };
            match done {
                Ok(()) => attached.push(name),
                Err(e) => not_attached.push(NotAttached {
                    program: name,
                    reason: e.to_string(),
                }),
            }
        }
        // Counting OOM kills needs both halves.
        if attached.contains(&PROG_SIGNAL_GENERATE) != attached.contains(&PROG_MARK_VICTIM) {
            tracing::warn!("only one of the two OOM programs attached; OOM kills are not counted");
        }
        if attached.contains(&PROG_NET_INGRESS) != attached.contains(&PROG_NET_EGRESS) {
            tracing::warn!(
                "only one direction of the traffic programs attached; network bytes are not reported"
            );
        }
        for n in &not_attached {
            tracing::warn!(program = n.program, reason = %n.reason, "eBPF program not attached; its metrics are absent");
        }
        let oom_events = match ebpf.take_map(MAP_OOM_EVENTS).map(RingBuf::try_from) {
            Some(Ok(rb)) => Some(rb),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "OOM event ring buffer unusable; kills are counted but not logged");
                None
            }
            None => None,
        };
        tracing::info!(programs = ?attached, cpu_map_entries = opts.cpu_map_entries, "eBPF programs attached");
        let bpf_stats = if opts.bpf_stats {
            match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    tracing::warn!(error = %e, "--bpf-stats: the kernel refused to time the programs");
                    None
                }
            }
        } else {
            None
        };
        Ok(Probes {
            ebpf,
            attached,
            not_attached,
            cpu_map_entries: opts.cpu_map_entries,
            net_map_entries: opts.net_map_entries,
            sched_map_entries: opts.sched_map_entries,
            loopback: opts.loopback,
            oom_events,
            bpf_stats,
            runqueue,
        })
    }

    /// Run time and runs of each attached program; empty unless `--bpf-stats` took effect.
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        if self.bpf_stats.is_none() {
            return Vec::new();
        }
        self.attached
            .iter()
            .filter_map(|name| {
                let info = self.ebpf.program(name)?.info().ok()?;
                Some(ProgramStats {
                    program: name,
                    run_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                    runs: info.run_count(),
                })
            })
            .collect()
    }

    pub fn is_attached(&self, program: &str) -> bool {
        self.attached.contains(&program)
    }

    /// The three cgroup-change programs are in place: an unchanged count means unchanged trees.
    pub fn watches_cgroup_changes(&self) -> bool {
        [PROG_CGROUP_MKDIR, PROG_CGROUP_RMDIR, PROG_CGROUP_RENAME]
            .iter()
            .all(|p| self.is_attached(p))
    }

    /// The context-switch program is in place and reads the scheduler's wait figures.
    pub fn measures_runqueue(&self) -> bool {
        self.runqueue && self.is_attached(PROG_SCHED_SWITCH)
    }
}

/// Mounts tracefs at the first candidate when none has it and `mount` allows it (systemd mounts
/// it at boot, but not every host runs systemd's unit); a failure is left to show as "no format
/// file". Without `mount` the agent never writes to the host: it says what is missing.
fn ensure_tracefs(candidates: &[PathBuf], mount: bool) {
    let populated = |p: &PathBuf| std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_some());
    if candidates.iter().any(populated) {
        return;
    }
    if !mount {
        tracing::warn!(
            candidates = ?candidates,
            "tracefs is not mounted: OOM kills cannot be attributed (mount it, e.g. \
             `mount -t tracefs tracefs /sys/kernel/tracing`, or pass --mount-tracefs)"
        );
        return;
    }
    let Some(target) = candidates.iter().find(|p| p.is_dir()) else {
        return;
    };
    match rustix::mount::mount(
        "tracefs",
        target,
        "tracefs",
        rustix::mount::MountFlags::empty(),
        None,
    ) {
        Ok(()) => {
            tracing::info!(path = %target.display(), "mounted tracefs for the OOM tracepoint")
        }
        Err(e) => tracing::debug!(path = %target.display(), error = %e, "could not mount tracefs"),
    }
}

/// The byte offset of `field` in the records of tracepoint `category:name`, from its format file
/// (`field:int pid;\toffset:8;\tsize:4;\tsigned:1;`).
pub fn tracepoint_field_offset(
    tracefs: &[PathBuf],
    category: &str,
    name: &str,
    field: &str,
) -> Result<u32, String> {
    let rel = format!("events/{category}/{name}/format");
    let Some(text) = tracefs
        .iter()
        .find_map(|root| std::fs::read_to_string(root.join(&rel)).ok())
    else {
        return Err(format!(
            "tracepoint {category}:{name} has no readable format file under {tracefs:?} (is \
             tracefs mounted?)"
        ));
    };
    parse_field_offset(&text, field)
        .ok_or_else(|| format!("tracepoint {category}:{name} has no field `{field}`"))
}

pub(crate) fn parse_field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let decl = parts.next()?.strip_prefix("field:")?;
        // The declaration ends with the field name: `int pid`, `char comm[16]`.
        let ident = decl.rsplit([' ', '*']).next()?;
        let ident = ident.split('[').next()?;
        if ident != field {
            return None;
        }
        parts.find_map(|p| p.strip_prefix("offset:")?.parse().ok())
    })
}

fn attach_btf_tracepoint(
    ebpf: &mut Ebpf,
    name: &'static str,
    tracepoint: &str,
    btf: &AyaBtf,
) -> Result<(), LoadError> {
    let err = |source| LoadError::Program { name, source };
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(name)
        .ok_or(LoadError::MissingProgram(name))?
        .try_into()
        .map_err(err)?;
    prog.load(tracepoint, btf).map_err(err)?;
    prog.attach().map_err(err)?;
    Ok(())
}

/// Loads an iterator, walks it to its end (reading its output, which is empty: it works through
/// maps), and unloads it.
fn walk_iterator(
    ebpf: &mut Ebpf,
    name: &'static str,
    target: &str,
    btf: &AyaBtf,
) -> Result<(), LoadError> {
    let err = |source| LoadError::Program { name, source };
    let prog: &mut Iter = ebpf
        .program_mut(name)
        .ok_or(LoadError::MissingProgram(name))?
        .try_into()
        .map_err(err)?;
    prog.load(target, btf).map_err(err)?;
    let link = prog.attach().map_err(err)?;
    let link = prog.take_link(link).map_err(err)?;
    let t0 = std::time::Instant::now();
    let walked = link
        .into_file()
        .map_err(std::io::Error::other)
        .and_then(|mut f| std::io::copy(&mut f, &mut std::io::sink()))
        .map_err(aya::programs::ProgramError::IOError);
    let _ = prog.unload();
    if walked.is_ok() {
        tracing::info!(
            program = name,
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "walked once"
        );
    }
    walked.map(|_| ()).map_err(err)
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    name: &'static str,
    category: &str,
    tracepoint: &str,
) -> Result<(), LoadError> {
    let err = |source| LoadError::Program { name, source };
    let prog: &mut TracePoint = ebpf
        .program_mut(name)
        .ok_or(LoadError::MissingProgram(name))?
        .try_into()
        .map_err(err)?;
    prog.load().map_err(err)?;
    prog.attach(category, tracepoint).map_err(err)?;
    Ok(())
}

/// Attaches through a BPF link, which the kernel always stacks with the other programs on the
/// cgroup (multi mode); a program attached there earlier in exclusive mode makes this fail (EPERM)
/// and leaves that program alone. Ours always allow, so no verdict changes.
fn attach_cgroup_skb(
    ebpf: &mut Ebpf,
    name: &'static str,
    cgroup: &std::path::Path,
    direction: CgroupSkbAttachType,
) -> Result<(), LoadError> {
    let err = |source| LoadError::Program { name, source };
    let prog: &mut CgroupSkb = ebpf
        .program_mut(name)
        .ok_or(LoadError::MissingProgram(name))?
        .try_into()
        .map_err(err)?;
    prog.load().map_err(err)?;
    // The link holds what it needs: the directory can be closed once attached.
    let dir =
        std::fs::File::open(cgroup).map_err(|e| err(aya::programs::ProgramError::IOError(e)))?;
    prog.attach(&dir, direction, CgroupAttachMode::Single)
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_offsets_from_format_files() {
        // 6.1's mark_victim, then the 6.8+ one with more fields.
        let old = "name: mark_victim\nID: 541\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;\n";
        assert_eq!(parse_field_offset(old, "pid"), Some(8));
        let new = "format:\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\tfield:char comm[16];\toffset:12;\tsize:16;\tsigned:0;\n\tfield:int pid;\toffset:28;\tsize:4;\tsigned:1;\n";
        assert_eq!(parse_field_offset(new, "pid"), Some(28));
        assert_eq!(parse_field_offset(new, "comm"), Some(12));
        assert_eq!(parse_field_offset(new, "uid"), None);
        assert_eq!(parse_field_offset("garbage\nfield:;offset:x;", "pid"), None);
    }
}
