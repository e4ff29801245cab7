//! The full-size 1000-class models have exactly torchvision's `state_dict` keys and shapes, so
//! that real ImageNet checkpoints load; and the parameter counts are torchvision's and timm's.

mod common;

use std::collections::BTreeMap;

use mobilenet_burn::{MobileNetV2Config, MobileNetV3Config, torchvision_state_dict_shapes};
use serde::Deserialize;

#[derive(Deserialize)]
struct Listing {
    params: usize,
    state_dict: Vec<(String, Vec<usize>)>,
}

fn torchvision_listing(model: &str) -> Listing {
    let text = std::fs::read_to_string(common::fixtures().join("full_size_shapes.json"))
        .expect("full_size_shapes.json");
    let mut listings: BTreeMap<String, Listing> = serde_json::from_str(&text).expect("json");
    listings.remove(model).expect("model in listing")
}

/// torchvision's keys and shapes, less BatchNorm's `num_batches_tracked` counter, which burn's
/// BatchNorm does not keep (loading ignores it).
fn expected_shapes(listing: &Listing) -> BTreeMap<String, Vec<usize>> {
    listing
        .state_dict
        .iter()
        .filter(|(key, _)| !key.ends_with(".num_batches_tracked"))
        .cloned()
        .collect()
}

#[test]
fn full_size_models_have_torchvision_keys_shapes_and_counts() {
    let device = common::cpu_device();
    let v2 = MobileNetV2Config::new().init(&device);
    let large = MobileNetV3Config::large().init(&device);
    let small = MobileNetV3Config::small().init(&device);
    let ours = [
        (
            "mobilenet_v2",
            torchvision_state_dict_shapes(&v2),
            v2.num_learnable_params(),
        ),
        (
            "mobilenet_v3_large",
            torchvision_state_dict_shapes(&large),
            large.num_learnable_params(),
        ),
        (
            "mobilenet_v3_small",
            torchvision_state_dict_shapes(&small),
            small.num_learnable_params(),
        ),
    ];
    for (name, shapes, params) in ours {
        let listing = torchvision_listing(name);
        let shapes: BTreeMap<_, _> = shapes.into_iter().collect();
        assert_eq!(
            shapes,
            expected_shapes(&listing),
            "{name}: keys or shapes differ"
        );
        assert_eq!(params, listing.params, "{name}: parameter count");
    }
}

#[test]
fn parameter_counts_are_torchvisions_published_figures() {
    // torchvision's model docs: 3,504,872 / 5,483,032 / 2,542,856 parameters.
    let device = common::cpu_device();
    assert_eq!(
        MobileNetV2Config::new()
            .init(&device)
            .num_learnable_params(),
        3_504_872
    );
    assert_eq!(
        MobileNetV3Config::large()
            .init(&device)
            .num_learnable_params(),
        5_483_032
    );
    assert_eq!(
        MobileNetV3Config::small()
            .init(&device)
            .num_learnable_params(),
        2_542_856
    );
}

#[test]
fn minimal_variants_match_timm_parameter_counts() {
    // timm publishes 3.92M and 2.04M parameters for `tf_mobilenetv3_large_minimal_100` and
    // `tf_mobilenetv3_small_minimal_100`; timm 1.0.31's `create_model(...)` counts exactly
    // 3,924,288 and 2,044,736 (`sum(p.numel() for p in model.parameters())`).
    let device = common::cpu_device();
    let large = MobileNetV3Config::large_minimal().init(&device);
    let small = MobileNetV3Config::small_minimal().init(&device);
    assert_eq!(large.num_learnable_params(), 3_924_288);
    assert_eq!(small.num_learnable_params(), 2_044_736);
}
