//! The kernel side as userspace sees it: loading and attaching the programs, and draining maps.
mod drain;
mod loader;
mod net;
mod oom;

pub use drain::{CpuDrain, KernelStats, monotonic_ns};
pub use loader::{LoadError, LoadOptions, NotAttached, Probes, TRACEFS};
pub use net::{DeviceTraffic, Traffic};
pub use oom::comm_str;
