//! Forward parity with torchvision on wgpu. CI runs it on lavapipe, Mesa's software Vulkan
//! device (`apt-get install mesa-vulkan-drivers`); without any Vulkan device the test fails
//! rather than passing silently.
#![cfg(feature = "wgpu")]

mod common;

use burn::tensor::Device;
use common::{case, max_abs_diff};

/// The CPU bound holds on lavapipe too; no looser bound is needed.
const RELATIVE_TOLERANCE: f32 = 1e-4;

/// Two small cases, one per family, keep the software-rendered run short.
const CASES: [&str; 2] = ["v2_w025_legacy", "v3s_w050_reduced"];

#[test]
fn logits_match_torchvision_on_wgpu() {
    let device = Device::wgpu_options()
        .init()
        .expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
    for name in CASES {
        let case = case(name);
        let model = case.load(&device);
        let input = case.tensor::<4>("input", &device);
        let (diff, scale) = max_abs_diff(model.forward(input), case.tensor::<2>("logits", &device));
        assert!(
            diff <= RELATIVE_TOLERANCE * scale,
            "wgpu {name}: logits differ by {diff} (scale {scale})"
        );
        println!("wgpu {name}: logits max diff {diff:.2e} (scale {scale:.2})");
    }
}
