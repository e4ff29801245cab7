//! Invalid configurations and inputs are reported with the value and what would be valid.

mod common;

use burn::tensor::Tensor;
use mobilenet_burn::{Error, MobileNetV2Config, MobileNetV3Config};

fn field_of(error: Error) -> &'static str {
    match error {
        Error::InvalidConfig { field, .. } => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn invalid_configs_name_the_field() {
    let device = common::cpu_device();
    let v3 = MobileNetV3Config::small;
    let cases = [
        (
            v3().with_width_mult(0.0).try_init(&device).err(),
            "width_mult",
        ),
        (
            v3().with_width_mult(-1.0).try_init(&device).err(),
            "width_mult",
        ),
        (
            v3().with_width_mult(f64::NAN).try_init(&device).err(),
            "width_mult",
        ),
        (
            v3().with_num_classes(0).try_init(&device).err(),
            "num_classes",
        ),
        (v3().with_dropout(1.0).try_init(&device).err(), "dropout"),
        (v3().with_dropout(-0.1).try_init(&device).err(), "dropout"),
        (
            MobileNetV2Config::new()
                .with_width_mult(0.0)
                .try_init(&device)
                .err(),
            "width_mult",
        ),
        (
            MobileNetV2Config::new()
                .with_num_classes(0)
                .try_init(&device)
                .err(),
            "num_classes",
        ),
        (
            MobileNetV2Config::new()
                .with_dropout(1.5)
                .try_init(&device)
                .err(),
            "dropout",
        ),
        (
            MobileNetV2Config::new()
                .with_round_nearest(0)
                .try_init(&device)
                .err(),
            "round_nearest",
        ),
    ];
    for (index, (error, field)) in cases.into_iter().enumerate() {
        let error = error.unwrap_or_else(|| panic!("case {index} ({field}) was accepted"));
        assert_eq!(field_of(error), field, "case {index}");
    }
}

#[test]
fn config_error_message_names_value_and_range() {
    let error = MobileNetV3Config::large()
        .with_dropout(1.0)
        .validate()
        .expect_err("dropout 1.0");
    let message = error.to_string();
    assert!(
        message.contains("dropout") && message.contains('1') && message.contains("[0, 1)"),
        "{message}"
    );
}

#[test]
#[should_panic(expected = "width_mult")]
fn init_panics_with_the_validation_message() {
    MobileNetV3Config::small()
        .with_width_mult(0.0)
        .init(&common::cpu_device());
}

#[test]
fn wrong_channel_count_is_reported() {
    let device = common::cpu_device();
    let model = MobileNetV2Config::new().with_width_mult(0.25).init(&device);
    let error = model
        .features
        .check_input([1, 1, 32, 32])
        .expect_err("grayscale input");
    let Error::InvalidInput { shape, expected } = error else {
        panic!("expected InvalidInput");
    };
    assert_eq!(shape, vec![1, 1, 32, 32]);
    assert!(expected.contains("3 channels"), "{expected}");
    assert!(model.features.check_input([2, 3, 1, 1]).is_ok());
    assert!(model.features.check_input([1, 3, 0, 8]).is_err());
}

#[test]
#[should_panic(expected = "expected 3 channels (dimension 1), found 4")]
fn forward_panics_with_the_input_message() {
    let device = common::cpu_device();
    let model = MobileNetV3Config::small()
        .with_width_mult(0.25)
        .init(&device);
    model.forward(Tensor::zeros([1, 4, 32, 32], &device));
}

#[test]
fn every_variant_gives_the_documented_shapes() {
    let device = common::cpu_device();
    let input = || Tensor::<4>::zeros([2, 3, 45, 70], &device);
    for (name, config) in [
        ("large", MobileNetV3Config::large()),
        ("small", MobileNetV3Config::small()),
        ("large_minimal", MobileNetV3Config::large_minimal()),
        ("small_minimal", MobileNetV3Config::small_minimal()),
        (
            "small_dilated",
            MobileNetV3Config::small().with_dilated(true),
        ),
    ] {
        let model = config
            .with_width_mult(0.5)
            .with_num_classes(11)
            .init(&device);
        assert_eq!(model.forward(input()).dims(), [2, 11], "{name}");
        let [_, _, height, width] = model.forward_features(input()).dims();
        let stride = if name.ends_with("dilated") { 16 } else { 32 };
        assert_eq!(
            [height, width],
            [45usize.div_ceil(stride), 70usize.div_ceil(stride)],
            "{name}"
        );
    }
    let v2 = MobileNetV2Config::new()
        .with_width_mult(0.5)
        .with_num_classes(11)
        .init(&device);
    assert_eq!(v2.forward(input()).dims(), [2, 11]);
    assert_eq!(v2.forward_features(input()).dims(), [2, 1280, 2, 3]);
    // The smallest input the networks take is one pixel, as in torchvision.
    assert_eq!(
        v2.forward(Tensor::zeros([1, 3, 1, 1], &device)).dims(),
        [1, 11]
    );
}
