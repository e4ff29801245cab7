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

/// A pool of two threads, as CI's machine has: the kernels' thread splits and their choices
/// between the band and blocked kernels depend on the thread count.
fn two_threads() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("thread pool")
}

/// Batches that keep every thread busy with whole images, which the cases above (batches of 2
/// and 3) do not all reach: here a 2-thread pool and a batch of 4, on every fixture model with
/// torchvision's weights, against each image alone (the layers split over the threads inside
/// each image, checked against torchvision above) and burn's own operations.
/// - The features' forward hands runs of blocks to the blocked kernel, an image a thread.
/// - Each block's own forward takes the band kernel for whole inverted residual blocks
///   (`kernels::fused`; MobileNetV2: every block; V3: its blocks without SE).
#[test]
fn blocks_match_the_layers_at_larger_batches() {
    use burn::tensor::{Distribution, Tensor};

    let device = Device::flex();
    let pool = two_threads();
    let mut fused_blocks = 0;
    for case in cases() {
        let model = case.load(&device).fuse();
        let x = Tensor::<4>::random([4, 3, 72, 56], Distribution::Normal(0.0, 1.0), &device);
        let (runs, counts) =
            pool.install(|| native::count_layers(|| model.forward_features(x.clone())));
        assert!(counts.inference > 0, "{}: no kernel ran", case.name);
        // Each block on its own.
        let features = model.features();
        let (blocks, counts) = pool.install(|| {
            native::count_layers(|| {
                let x = features.stem.forward(x.clone());
                let x = features.blocks.iter().fold(x, |x, block| block.forward(x));
                features.last_conv.forward(x)
            })
        });
        // One image at a time: fewer images than threads, so the layers run one by one.
        let (alone, alone_counts) = pool.install(|| {
            native::count_layers(|| {
                let images =
                    (0..4).map(|image| model.forward_features(x.clone().narrow(0, image, 1)));
                Tensor::cat(images.collect(), 0)
            })
        });
        assert_eq!(alone_counts.fused_blocks, 0);
        let burn = native::with_kernels(false, || model.forward_features(x));
        let (diff, scale) = max_abs_diff(runs.clone(), alone.clone());
        let (blocks_diff, _) = max_abs_diff(blocks, alone);
        let (burn_diff, _) = max_abs_diff(runs, burn);
        println!(
            "{}: runs vs the layers {diff:.2e}, {} fused blocks vs the layers {blocks_diff:.2e}, \
             vs burn {burn_diff:.2e} (scale {scale:.2})",
            case.name, counts.fused_blocks
        );
        assert!(
            diff <= 1e-6 * scale,
            "{}: runs vs the layers {diff}",
            case.name
        );
        assert!(
            blocks_diff <= 1e-6 * scale,
            "{}: blocks vs the layers {blocks_diff}",
            case.name
        );
        assert!(
            burn_diff <= TORCHVISION_TOLERANCE * scale,
            "{}: vs burn {burn_diff}",
            case.name
        );
        fused_blocks += counts.fused_blocks;
    }
    assert!(fused_blocks > 0, "no block took the band kernel");
}

/// The blocked kernel keeps each block's packed weights with the block (made by its first
/// forward). A block whose weights are then replaced (here a public field assigned directly,
/// which no module operation sees) must repack: in the clone that changed, and in the original,
/// which shares the clone's cache and must not take the clone's packing either.
#[test]
fn packed_weights_follow_replaced_weights() {
    use burn::module::Param;
    use burn::tensor::{Distribution, Tensor};

    let device = Device::flex();
    // Two threads and one image: fewer images than threads, where the blocked kernel runs.
    let pool = two_threads();
    let common::AnyModel::V2(model) = common::case("v2_w035").load(&device) else {
        panic!("v2_w035 is a MobileNetV2");
    };
    let model = model.fuse();
    let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
    let before = pool.install(|| model.forward_features(x.clone()));
    let mut changed = model.clone();
    for block in &mut changed.features.blocks {
        block.project_conv.weight = Param::from_tensor(block.project_conv.weight.val() * 0.5);
    }
    let after = pool.install(|| changed.forward_features(x.clone()));
    let burn = native::with_kernels(false, || changed.forward_features(x.clone()));
    let (diff, scale) = max_abs_diff(after.clone(), burn);
    assert!(
        diff <= BURN_TOLERANCE * scale,
        "changed model vs burn: {diff}"
    );
    let (moved, _) = max_abs_diff(after, before.clone());
    assert!(
        moved > 1e-2 * scale,
        "halving the projections changed nothing: {moved}"
    );
    let again = pool.install(|| model.forward_features(x.clone()));
    assert_eq!(
        again.into_data(),
        before.into_data(),
        "the original model's output moved"
    );
}
