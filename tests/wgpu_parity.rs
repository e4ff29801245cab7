//! Forward parity with torchvision on wgpu. CI runs it on lavapipe, Mesa's software Vulkan
//! device (`apt-get install mesa-vulkan-drivers`); without any Vulkan device the test fails
//! rather than passing silently.
#![cfg(feature = "wgpu")]

mod common;

use burn::tensor::Device;
use common::{case, max_abs_diff};

/// The CPU bound holds on lavapipe too; no looser bound is needed.
const RELATIVE_TOLERANCE: f32 = 1e-4;

/// The wgpu device, set up once per process: burn's wgpu runtime refuses a second
/// `wgpu_options().init()` ("Service already initialized"), and the tests run in parallel.
fn wgpu_device() -> Device {
    static DEVICE: std::sync::OnceLock<Result<Device, String>> = std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            Device::wgpu_options()
                .init()
                .map_err(|error| format!("{error:?}"))
        })
        .clone()
        .expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)")
}

/// Two small cases, one per family, keep the software-rendered run short.
const CASES: [&str; 2] = ["v2_w025_legacy", "v3s_w050_reduced"];

#[test]
fn logits_match_torchvision_on_wgpu() {
    let device = wgpu_device();
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

/// One training step of the smallest training case on wgpu: training-mode logits, loss, every
/// gradient, one SGD step (parameters and running statistics) and the eval logits after it,
/// against PyTorch, within the CPU bound.
#[test]
fn one_training_step_matches_pytorch_on_wgpu() {
    let device = wgpu_device();
    let case = common::training::train_case("v3s_w025");
    let model = case
        .v3_config()
        .init(&device.clone().autodiff())
        .load_torchvision(case.checkpoint_path())
        .expect("load");
    let (grad, sgd) = common::training::check_one_sgd_step(
        &case,
        "wgpu",
        model,
        &device.clone().autodiff(),
        &device,
    );
    println!(
        "wgpu {}: worst relative error: gradients {grad:.1e}, SGD {sgd:.1e}",
        case.name
    );
}

/// LR-ASPP on V3-Small at width 0.5 (batch 2, 40x56, `scripts/make_segmentation_fixtures.py`):
/// the dilated backbone, the gated head and both bilinear resizes on wgpu, against
/// torchvision's `model(x)["out"]`.
#[test]
fn segmentation_logits_match_torchvision_on_wgpu() {
    use mobilenet_burn::MobileNetV3Config;
    use mobilenet_burn::segmentation::LrAsppConfig;
    let device = wgpu_device();
    let file = "segmentation/lraspp_v3s_w050.io.safetensors";
    let backbone = MobileNetV3Config::small()
        .with_width_mult(0.5)
        .with_dilated(true);
    let model = LrAsppConfig::new(backbone, 3)
        .init(&device)
        .load_torchvision(common::fixtures().join("segmentation/lraspp_v3s_w050.pth"))
        .expect("load");
    let input = common::fixture_tensor::<4>(file, "input", &device);
    let reference = common::fixture_tensor::<4>(file, "out", &device);
    let (diff, scale) = max_abs_diff(model.forward(input), reference);
    assert!(
        diff <= RELATIVE_TOLERANCE * scale,
        "wgpu LR-ASPP: logits differ by {diff} (scale {scale})"
    );
    println!("wgpu LR-ASPP V3-Small: logits max diff {diff:.2e} (scale {scale:.2})");
}

/// The small MobileNetV4 Hybrids of `scripts/make_v4_fixtures.py` (FusedIB, UIB, mobile MQA with
/// and without key/value downsampling, layer scales; ReLU, and Hybrid-Large's GELU with 8 heads)
/// on wgpu, against timm's logits.
#[test]
fn mobilenet_v4_logits_match_timm_on_wgpu() {
    use mobilenet_burn::{Activation, MobileNetV4Config};
    let device = wgpu_device();
    let text =
        std::fs::read_to_string(common::fixtures().join("v4/manifest.json")).expect("v4 manifest");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("json");
    for name in ["v4_tiny_hybrid", "v4_tiny_hybrid_gelu"] {
        let case = manifest["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .find(|case| case["name"] == name)
            .expect("the hybrid case");
        let stages = case["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .map(|stage| {
                stage
                    .as_array()
                    .expect("rows")
                    .iter()
                    .map(|row| common::v4::parse_row(row.as_str().expect("a block string")))
                    .collect()
            })
            .collect();
        let number = |key: &str| case[key].as_u64().expect("a number") as usize;
        let activation = match case["activation"].as_str() {
            Some("gelu") => Activation::GELU,
            _ => Activation::ReLU,
        };
        let model = MobileNetV4Config::new(number("stem"), stages)
            .with_head_channels(number("head"))
            .with_num_classes(number("num_classes"))
            .with_layer_scale(case["layer_scale"].as_f64())
            .with_activation(activation)
            .init(&device)
            .load_timm(common::fixtures().join(format!("v4/{name}.safetensors")))
            .expect("load");
        let file = format!("v4/{name}.io.safetensors");
        let input = common::fixture_tensor::<4>(&file, "input", &device);
        let reference = common::fixture_tensor::<2>(&file, "logits", &device);
        let (diff, scale) = max_abs_diff(model.forward(input), reference);
        assert!(
            diff <= RELATIVE_TOLERANCE * scale,
            "wgpu MobileNetV4 {name}: logits differ by {diff} (scale {scale})"
        );
        println!("wgpu MobileNetV4 {name}: logits max diff {diff:.2e} (scale {scale:.2})");
    }
}
