//! Loads the embedded object, hands it the running kernel's field offsets and the configured map
//! sizes, and attaches the programs. Dropping [`Probes`] detaches everything: nothing is pinned,
//! so a stopped (or killed) agent leaves nothing behind in the kernel.
use std::path::PathBuf;

use aya::{Btf as AyaBtf, Ebpf, EbpfLoader, programs::BtfTracePoint};
use nodetel_common::{GLOBAL_OFFSETS, MAP_CPU_NS, PROG_CGROUP_ATTACH, PROG_SCHED_SWITCH};

use crate::btf::{Btf, BtfError};

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

/// What the loader needs from the configuration.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// `/sys/kernel/btf/vmlinux`, or a copy of it.
    pub btf_path: PathBuf,
    /// Capacity of the per-cgroup CPU map.
    pub cpu_map_entries: u32,
}

/// The loaded object with its programs attached.
pub struct Probes {
    pub ebpf: Ebpf,
    pub attached: Vec<&'static str>,
    pub cpu_map_entries: u32,
}

impl Probes {
    /// Loads and attaches. Blocking (BTF parsing, verifier): call it off the async threads.
    pub fn load(opts: &LoadOptions) -> Result<Probes, LoadError> {
        if OBJECT.is_empty() {
            return Err(LoadError::NoObject);
        }
        let offsets = Btf::from_file(&opts.btf_path)?.kernel_offsets()?;
        tracing::debug!(?offsets, "kernel struct offsets from BTF");
        let mut ebpf = EbpfLoader::new()
            .override_global(GLOBAL_OFFSETS, &offsets, true)
            .map_max_entries(MAP_CPU_NS, opts.cpu_map_entries)
            .load(OBJECT)?;
        let kernel_btf = AyaBtf::parse_file(&opts.btf_path, aya::Endianness::default())?;
        let mut attached = Vec::new();
        // Migration first: attached after sched_switch, a move in between would be missed.
        for (name, tracepoint) in [
            (PROG_CGROUP_ATTACH, "cgroup_attach_task"),
            (PROG_SCHED_SWITCH, "sched_switch"),
        ] {
            attach_btf_tracepoint(&mut ebpf, name, tracepoint, &kernel_btf)?;
            attached.push(name);
        }
        tracing::info!(programs = ?attached, cpu_map_entries = opts.cpu_map_entries, "eBPF programs attached");
        Ok(Probes {
            ebpf,
            attached,
            cpu_map_entries: opts.cpu_map_entries,
        })
    }
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
