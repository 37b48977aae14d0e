//! The kernel side as userspace sees it: loading and attaching the programs, and draining maps.
mod drain;
mod loader;

pub use drain::{CpuDrain, KernelStats};
pub use loader::{LoadError, LoadOptions, Probes};
