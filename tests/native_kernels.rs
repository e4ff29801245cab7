//! The native CPU kernels (burn-flex, fused models) against torchvision and against burn's own
//! operations, on every fixture case: all architectures, widths, dilation, odd input sizes,
//! batches of 2 and 3. Both paths run in one process: `native::with_kernels` chooses per call.
#![cfg(feature = "flex")]

mod common;

use burn::tensor::Device;
use common::{cases, max_abs_diff};
use mobilenet_burn::native;

/// The foundation issue's bound against torchvision, and the fuse issue's bound between paths.
const TORCHVISION_TOLERANCE: f32 = 1e-4;
const BURN_TOLERANCE: f32 = 1e-5;

#[test]
fn native_kernels_match_torchvision_and_burn() {
    let device = Device::flex();
    for case in cases() {
        let model = case.load(&device).fuse();
        let input = case.tensor::<4>("input", &device);

        let ((native, native_features), counts) = native::count_layers(|| {
            native::with_kernels(true, || {
                (
                    model.forward(input.clone()),
                    model.forward_features(input.clone()),
                )
            })
        });
        assert!(
            counts.inference > 0,
            "{}: the native kernels did not run",
            case.name
        );

        let (burn, counts) =
            native::count_layers(|| native::with_kernels(false, || model.forward(input.clone())));
        assert_eq!(counts.inference, 0, "kernels ran while disabled");

        let (diff, scale) = max_abs_diff(native.clone(), case.tensor::<2>("logits", &device));
        println!(
            "{}: native vs torchvision {diff:.2e} (scale {scale:.2})",
            case.name
        );
        assert!(
            diff <= TORCHVISION_TOLERANCE * scale,
            "{}: logits {diff}",
            case.name
        );
        let (diff, scale) = max_abs_diff(native_features, case.tensor::<4>("features", &device));
        assert!(
            diff <= TORCHVISION_TOLERANCE * scale,
            "{}: features {diff}",
            case.name
        );
        let (diff, scale) = max_abs_diff(native, burn);
        println!("{}: native vs burn {diff:.2e}", case.name);
        assert!(
            diff <= BURN_TOLERANCE * scale,
            "{}: vs burn {diff}",
            case.name
        );
    }
}
