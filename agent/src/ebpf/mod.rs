//! The kernel side as userspace sees it: loading and attaching the programs, and draining maps.
mod drain;
mod loader;
mod net;
mod oom;
mod sched;

pub use drain::{CpuDrain, KernelStats, monotonic_ns};
pub use loader::{LoadError, LoadOptions, NotAttached, Probes, ProgramStats, TRACEFS};
pub use net::{DeviceTraffic, Traffic, entries_of, fold_traffic};
pub use oom::comm_str;
pub use sched::{SchedCounters, SchedDrain};
// The fuzz entry points (crate::fuzz) reach these parsers of kernel-provided text and records.
pub(crate) use loader::parse_field_offset;
pub(crate) use oom::parse_record;
