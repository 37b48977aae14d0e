//! One libFuzzer binary for every target in `nodetel::fuzz::TARGETS`; `NODETEL_FUZZ_TARGET`
//! names the one to run (`cargo xtask fuzz` sets it, with that target's corpus).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn target() -> fn(&[u8]) {
    static TARGET: OnceLock<fn(&[u8])> = OnceLock::new();
    *TARGET.get_or_init(|| {
        let name = std::env::var("NODETEL_FUZZ_TARGET").unwrap_or_default();
        nodetel::fuzz::TARGETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .unwrap_or_else(|| {
                let names: Vec<_> = nodetel::fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
                panic!("NODETEL_FUZZ_TARGET must be one of {names:?}, not {name:?}")
            })
    })
}

fuzz_target!(|data: &[u8]| target()(data));
