//! The kernel side as userspace sees it: loading and attaching the programs, and the map access
//! every kind shares. Each kind's own maps are read in its folder under `sources/`.
mod loader;
mod maps;

pub use loader::{
    Attach, KindPrograms, LoadError, LoadOptions, NotAttached, Probes, ProgramStats, TRACEFS,
};
pub use maps::monotonic_ns;
pub(crate) use maps::{deleted, each_entry, missing};
// The fuzz entry points (crate::fuzz) reach this parser of kernel-provided text.
pub(crate) use loader::parse_field_offset;
