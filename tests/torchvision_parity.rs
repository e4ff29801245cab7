//! Forward parity with torchvision: each fixture's checkpoint, loaded into our model, gives
//! torchvision's logits and feature map on torchvision's input, on every CPU backend.

mod common;

use common::{cases, cpu_devices, max_abs_diff};

/// The bound of the foundation issue: max |ours - torchvision| <= 1e-4 * max(1, max |ref|).
const RELATIVE_TOLERANCE: f32 = 1e-4;

#[test]
fn logits_and_features_match_torchvision_on_cpu_backends() {
    for (backend, device) in cpu_devices() {
        for case in cases() {
            let model = case.load(&device);
            let input = case.tensor::<4>("input", &device);

            let (diff, scale) = max_abs_diff(
                model.forward_features(input.clone()),
                case.tensor::<4>("features", &device),
            );
            assert!(
                diff <= RELATIVE_TOLERANCE * scale,
                "{backend} {}: features differ by {diff} (scale {scale})",
                case.name
            );

            let (diff, scale) =
                max_abs_diff(model.forward(input), case.tensor::<2>("logits", &device));
            assert!(
                diff <= RELATIVE_TOLERANCE * scale,
                "{backend} {}: logits differ by {diff} (scale {scale})",
                case.name
            );
            println!(
                "{backend} {}: logits max diff {diff:.2e} (scale {scale:.2})",
                case.name
            );
        }
    }
}

#[test]
fn parameter_counts_match_torchvision() {
    let device = common::cpu_device();
    for case in cases() {
        assert_eq!(
            case.init(&device).num_learnable_params(),
            case.params,
            "{}",
            case.name
        );
    }
}
