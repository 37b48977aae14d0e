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

/// A small deterministic generator (xorshift64*) for property tests: each case's seed is
/// printed on failure, so a failing case replays exactly; no dependency needed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// In `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}
