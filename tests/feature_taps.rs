//! Feature taps: channels, strides and tensor shapes equal timm's `feature_info` for
//! `mobilenetv3_large_100`, `mobilenetv3_small_100` and `mobilenetv2_100` (fixture from
//! `scripts/make_feature_info_fixture.py`, timm 1.0.31), block outputs and expansions, output
//! stride 32 and (dilated V3) 16 and 8; and `forward_intermediates` returns what the full
//! forward computes.

mod common;

use burn::tensor::{Distribution, Tensor};
use mobilenet_burn::{Error, FeatureInfo, FeatureLocation, MobileNetV2Config, MobileNetV3Config};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    input_shape: [usize; 4],
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    timm: String,
    model: String,
    location: String,
    output_stride: usize,
    error: Option<String>,
    taps: Option<Vec<Tap>>,
}

#[derive(Deserialize)]
struct Tap {
    channels: usize,
    reduction: usize,
    shape: [usize; 4],
}

#[test]
fn taps_match_timm_feature_info() {
    let text = std::fs::read_to_string(common::fixtures().join("timm_feature_info.json"))
        .expect("timm_feature_info.json");
    let fixture: Fixture = serde_json::from_str(&text).expect("valid fixture");
    let device = common::cpu_device();
    let input = Tensor::<4>::random(fixture.input_shape, Distribution::Default, &device);
    let mut compared = 0;
    for case in &fixture.cases {
        let Some(expected) = &case.taps else {
            println!(
                "{} {}: timm fails ({:?}); skipped",
                case.timm, case.location, case.error
            );
            continue;
        };
        let location = match case.location.as_str() {
            "expansion" => FeatureLocation::Expansion,
            _ => FeatureLocation::BlockOutput,
        };
        let output_stride = case.output_stride;
        let (taps, tensors): (Vec<FeatureInfo>, Vec<Tensor<4>>) = match case.model.as_str() {
            "v2" => {
                assert_eq!(output_stride, 32, "torchvision's V2 has no dilated form");
                let model = MobileNetV2Config::new().init(&device);
                let indices: Vec<usize> = (0..model.feature_info(location).len()).collect();
                (
                    model.feature_info(location),
                    model
                        .forward_intermediates(input.clone(), location, &indices)
                        .expect("taps"),
                )
            }
            name => {
                let config = if name == "v3_large" {
                    MobileNetV3Config::large()
                } else {
                    MobileNetV3Config::small()
                };
                let model = config.with_output_stride(output_stride).init(&device);
                let indices: Vec<usize> = (0..model.feature_info(location).len()).collect();
                (
                    model.feature_info(location),
                    model
                        .forward_intermediates(input.clone(), location, &indices)
                        .expect("taps"),
                )
            }
        };
        let ours: Vec<(usize, usize, [usize; 4])> = taps
            .iter()
            .zip(&tensors)
            .map(|(tap, tensor)| (tap.channels, tap.reduction, tensor.dims()))
            .collect();
        let theirs: Vec<(usize, usize, [usize; 4])> = expected
            .iter()
            .map(|tap| (tap.channels, tap.reduction, tap.shape))
            .collect();
        assert_eq!(
            ours, theirs,
            "{} {} os{}: ours (channels, reduction, shape) vs timm",
            case.timm, case.location, case.output_stride
        );
        assert!(taps.iter().all(|tap| tap.location == location));
        compared += 1;
    }
    assert_eq!(compared, 9, "every case timm can build was compared");
}

#[test]
fn intermediates_are_the_tensors_of_the_full_forward() {
    let device = common::cpu_device();
    let model = MobileNetV3Config::large()
        .with_width_mult(0.5)
        .init(&device);
    let input = Tensor::<4>::random([2, 3, 64, 64], Distribution::Default, &device);
    let taps = model.feature_info(FeatureLocation::BlockOutput);
    // C5 is the last convolution's output: forward_features.
    let c5 = model
        .forward_intermediates(
            input.clone(),
            FeatureLocation::BlockOutput,
            &[taps.len() - 1],
        )
        .expect("C5");
    c5[0]
        .clone()
        .into_data()
        .assert_eq(&model.forward_features(input.clone()).into_data(), true);
    // C3 stops at its layer; asking in any order gives that order.
    let c3_and_c1 = model
        .forward_intermediates(input.clone(), FeatureLocation::BlockOutput, &[2, 0])
        .expect("C3, C1");
    let stem_and_first = model.features.blocks[0].forward(model.features.stem.forward(input));
    assert_eq!(c3_and_c1[0].dims()[1], taps[2].channels);
    c3_and_c1[1]
        .clone()
        .into_data()
        .assert_eq(&stem_and_first.into_data(), true);
}

#[test]
fn a_tap_past_the_last_is_a_typed_error() {
    let device = common::cpu_device();
    let model = MobileNetV2Config::new().with_width_mult(0.25).init(&device);
    let input = Tensor::<4>::zeros([1, 3, 32, 32], &device);
    let error = model
        .forward_intermediates(input, FeatureLocation::BlockOutput, &[1, 5])
        .expect_err("index 5 of 5 taps");
    assert!(
        matches!(error, Error::NoSuchFeatureTap { index: 5, taps: 5 }),
        "{error}"
    );
    let wrong_channels = Tensor::<4>::zeros([1, 4, 32, 32], &device);
    assert!(matches!(
        model.forward_intermediates(wrong_channels, FeatureLocation::Expansion, &[0]),
        Err(Error::InvalidInput { .. })
    ));
}

#[test]
fn torchvision_dilated_is_output_stride_16() {
    for config in [MobileNetV3Config::large(), MobileNetV3Config::small()] {
        let dilated: Vec<(usize, usize)> = config
            .clone()
            .with_dilated(true)
            .block_configs()
            .iter()
            .map(|block| (block.stride, block.dilation))
            .collect();
        let stride_16: Vec<(usize, usize)> = config
            .clone()
            .with_output_stride(16)
            .block_configs()
            .iter()
            .map(|block| (block.stride, block.dilation))
            .collect();
        assert_eq!(dilated, stride_16);
        // Output stride 8 dilates the stride-16 stage by 2 and the last by 4.
        let dilations: Vec<usize> = config
            .with_output_stride(8)
            .block_configs()
            .iter()
            .map(|block| block.dilation)
            .collect();
        assert_eq!(dilations.iter().max(), Some(&4));
        assert!(dilations.contains(&2));
    }
    let error = MobileNetV3Config::large()
        .with_output_stride(4)
        .validate()
        .expect_err("output stride 4");
    assert!(error.to_string().contains("output_stride"), "{error}");
}

#[test]
fn features_only_returns_the_taps_of_forward_intermediates() {
    let device = common::cpu_device();
    let model = mobilenet_burn::MobileNetV3Config::large()
        .with_width_mult(0.35)
        .init(&device);
    let x = burn::tensor::Tensor::<4>::random(
        [1, 3, 48, 40],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let location = mobilenet_burn::FeatureLocation::Expansion;
    let expected = model
        .forward_intermediates(x.clone(), location, &[1, 4])
        .unwrap();
    let extractor = model.features_only(location, &[1, 4]).unwrap();
    assert_eq!(extractor.feature_info().len(), 2);
    let found = extractor.forward(x).unwrap();
    for (a, b) in found.into_iter().zip(expected) {
        assert_eq!(a.into_data(), b.into_data());
    }
}
