//! `load_burnpack` on arbitrary bytes, into V3-Small width 0.25 (3 classes). Seed: that model
//! saved with `save_burnpack` (see `fuzz/README.md`).
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::LazyLock;

use burn::tensor::Device;
use libfuzzer_sys::fuzz_target;
use mobilenet_burn::{MobileNetV3, MobileNetV3Config};

static MODEL: LazyLock<MobileNetV3> = LazyLock::new(|| {
    MobileNetV3Config::small()
        .with_width_mult(0.25)
        .with_num_classes(3)
        .init(&Device::flex())
});

fuzz_target!(|data: &[u8]| {
    let path = common::write_input(data);
    let _ = MODEL.clone().load_burnpack(&path);
});
