//! nodetel: an eBPF node telemetry agent with cAdvisor-compatible metrics.
//!
//! Data flow: kernel programs -> per-CPU maps -> each kind's drain and accounts (`sources`) and
//! cgroupfs readers (`cgroup`), orchestrated by `collector` -> `snapshot` -> pre-rendered
//! `prepared` -> `http`.
pub mod access;
pub mod agent;
pub mod allocator;
pub mod api;
pub mod btf;
pub mod cgroup;
pub mod cgroupfs;
pub mod collector;
pub mod config;
pub mod ebpf;
pub mod events;
pub mod fs_usage;
pub mod fuzz;
pub mod history;
pub mod http;
pub mod identity;
pub mod machine;
pub mod metric_kinds;
pub mod metrics;
pub mod panics;
pub mod prepared;
pub mod prune;
pub mod push;
pub mod snapshot;
pub mod sources;
pub mod tls_client;
pub mod ui;
pub mod unix_time;

#[cfg(test)]
mod testutil;

/// The unit tests allocate as the agent does (main.rs), so `allocator`'s figures are jemalloc's.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
