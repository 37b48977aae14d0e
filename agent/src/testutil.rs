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

/// Where a golden test leaves what it rendered when it differs: `cargo xtask bless` copies
/// these over `testdata/golden/` (a test never rewrites a golden itself, so no setting left in
/// the environment can make a changed output pass).
pub fn golden_actual_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/golden-actual")
}

/// Compares `text` with `testdata/golden/<name>`; on a difference the rendering is written to
/// [`golden_actual_dir`] for review and `cargo xtask bless`.
pub fn assert_golden(name: &str, text: &str) {
    let path = testdata("golden").join(name);
    let golden = std::fs::read_to_string(&path).expect("golden file");
    if text != golden {
        let dir = golden_actual_dir();
        std::fs::create_dir_all(&dir).expect("create target/golden-actual");
        std::fs::write(dir.join(name), text).expect("write the actual rendering");
    }
    assert_eq!(
        text,
        golden,
        "{name} changed; the new rendering is in {}: review it, then `cargo xtask bless`",
        golden_actual_dir().display()
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

    /// Up to `max_len` bytes drawn from `alphabet` (the bytes a parser's format is made of, so
    /// garbled input reaches its deeper branches).
    pub fn bytes_from(&mut self, alphabet: &[u8], max_len: u64) -> Vec<u8> {
        let len = self.below(max_len);
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize])
            .collect()
    }
}
