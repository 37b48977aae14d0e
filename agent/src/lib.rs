//! nodetel: an eBPF node telemetry agent with cAdvisor-compatible metrics.
//!
//! Data flow: kernel programs -> per-CPU maps -> drain (`ebpf`) -> accounts (`cpu_account`) and
//! cgroupfs readers (`cgroup`) -> `snapshot` -> pre-rendered `prepared` -> `http`.
pub mod access;
pub mod agent;
pub mod api;
pub mod btf;
pub mod cgroup;
pub mod cgroupfs;
pub mod collector;
pub mod config;
pub mod cpu_account;
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
pub mod net;
pub mod panics;
pub mod prepared;
pub mod prune;
pub mod push;
pub mod snapshot;
pub mod tls_client;
pub mod ui;
pub mod unix_time;

#[cfg(test)]
mod testutil;
