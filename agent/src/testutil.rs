//! Helpers shared by unit tests.
use std::path::PathBuf;

/// A fixture cgroupfs tree under `agent/testdata/cgroupfs/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/cgroupfs")
        .join(name)
}

/// Any fixture under `agent/testdata/` (e.g. `sys`, a sysfs tree).
pub fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}
