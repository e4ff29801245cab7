//! `load_torchvision` on arbitrary bytes: the first byte picks the model (V3-Small width 0.25,
//! 3 classes, or V2 width 0.25, 7 classes, the test fixtures' shapes), the rest is the file.
//! Seeds: zip and legacy `.pth`, `.safetensors` (see `fuzz/README.md`).
#![no_main]

mod common;

use std::sync::LazyLock;

use burn::tensor::Device;
use libfuzzer_sys::fuzz_target;
use mobilenet_burn::{MobileNetV2, MobileNetV2Config};

static V2: LazyLock<MobileNetV2> = LazyLock::new(|| {
    MobileNetV2Config::new()
        .with_width_mult(0.25)
        .with_num_classes(7)
        .init(&Device::flex())
});

fuzz_target!(|data: &[u8]| {
    let Some((&choice, file)) = data.split_first() else {
        return;
    };
    let path = common::write_input(file);
    if choice % 2 == 0 {
        let _ = common::V3S_W025.clone().load_torchvision(&path);
    } else {
        let _ = V2.clone().load_torchvision(&path);
    }
});
