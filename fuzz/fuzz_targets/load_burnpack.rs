//! `load_burnpack` on arbitrary bytes, into V3-Small width 0.25 (3 classes). Seed: that model
//! saved with `save_burnpack` (see `fuzz/README.md`).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = common::write_input(data);
    let _ = common::V3S_W025.clone().load_burnpack(&path);
});
