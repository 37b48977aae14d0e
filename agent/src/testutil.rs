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

/// Compares `text` with `testdata/golden/<name>`; `NODETEL_BLESS=1` rewrites the file instead
/// (review the diff).
pub fn assert_golden(name: &str, text: &str) {
    let path = testdata("golden").join(name);
    if std::env::var_os("NODETEL_BLESS").is_some() {
        std::fs::write(&path, text).expect("write golden");
    }
    let golden = std::fs::read_to_string(&path).expect("golden file");
    assert_eq!(
        text, golden,
        "{name} changed; NODETEL_BLESS=1 rewrites the golden"
    );
}
