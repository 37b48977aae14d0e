//! Everything read from cgroupfs: where the hierarchies are, which cgroups exist, and one reader
//! per controller.
pub mod cpu;
pub mod host_pids;
pub mod io;
pub mod layout;
pub mod memory;
pub mod parse;
pub mod pids;
pub mod psi;
pub mod read;
pub mod tasks;
pub mod tree;

pub use layout::Layout;
pub use tree::{Cgroup, Tree};
