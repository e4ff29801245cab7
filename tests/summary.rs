//! `summary()` totals equal torchvision's published figures, and its shapes the real ones.

mod common;

use burn::tensor::Tensor;
use mobilenet_burn::{MobileNetV2Config, MobileNetV3Config, ModelSummary};

/// torchvision's model docs: parameters and "GFLOPS" (multiply-adds) at 224x224.
const PUBLISHED: [(&str, usize, f64); 3] = [
    ("mobilenet_v2", 3_504_872, 0.301),
    ("mobilenet_v3_large", 5_483_032, 0.217),
    ("mobilenet_v3_small", 2_542_856, 0.057),
];

#[test]
fn totals_match_torchvisions_published_figures() {
    let device = common::cpu_device();
    let summaries: [ModelSummary; 3] = [
        MobileNetV2Config::new().init(&device).summary(224, 224),
        MobileNetV3Config::large().init(&device).summary(224, 224),
        MobileNetV3Config::small().init(&device).summary(224, 224),
    ];
    for ((name, params, gmacs), summary) in PUBLISHED.iter().zip(&summaries) {
        println!("{name}:\n{summary}");
        assert_eq!(summary.total_params(), *params, "{name}");
        let ours = summary.total_macs() as f64 / 1e9;
        assert!(
            (ours - gmacs).abs() <= 0.01 * gmacs,
            "{name}: {ours} GMACs vs {gmacs}"
        );
    }
}

#[test]
fn shapes_match_a_real_forward_pass() {
    let device = common::cpu_device();
    let model = MobileNetV3Config::small()
        .with_width_mult(0.75)
        .with_dilated(true)
        .init(&device);
    let summary = model.summary(57, 71);
    let features = model.forward_features(Tensor::zeros([1, 3, 57, 71], &device));
    let last_conv = &summary.layers[summary.layers.len() - 4];
    assert_eq!(last_conv.output_shape, features.dims().to_vec());
    assert_eq!(summary.total_params(), model.num_learnable_params());
    assert_eq!(
        summary.layers.last().map(|l| l.output_shape.clone()),
        Some(vec![1, 1000])
    );
    // An empty image is summarized (zero-sized maps), not a panic from size arithmetic.
    assert_eq!(model.summary(0, 0).layers[0].output_shape[2..], [0, 0]);
}
