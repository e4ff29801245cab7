//! Degenerate and non-finite inputs through every public forward and `detect`: a typed error
//! or a documented result, never a panic or a hang.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use mobilenet_burn::detection::SsdLiteConfig;
use mobilenet_burn::{Error, FeatureLocation, MobileNetV2Config, MobileNetV3Config};

fn device() -> Device {
    common::cpu_device()
}

fn filled(shape: [usize; 4], value: f32) -> Tensor<4> {
    let len = shape.iter().product();
    Tensor::from_data(TensorData::new(vec![value; len], shape), &device())
}

fn values(logits: Tensor<2>) -> Vec<f32> {
    logits
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn classifiers_take_any_size_and_refuse_empty_inputs() {
    let v2 = MobileNetV2Config::new()
        .with_width_mult(0.25)
        .with_num_classes(5)
        .init(&device());
    let v3l = MobileNetV3Config::large()
        .with_width_mult(0.25)
        .with_num_classes(5)
        .init(&device());
    let v3s = MobileNetV3Config::small()
        .with_width_mult(0.25)
        .with_num_classes(5)
        .init(&device());
    type Forward<'a> = Box<dyn Fn(Tensor<4>) -> Result<Tensor<2>, Error> + 'a>;
    let models: [(&str, Forward); 3] = [
        ("v2", Box::new(|x| v2.try_forward(x))),
        ("v3l", Box::new(|x| v3l.try_forward(x))),
        ("v3s", Box::new(|x| v3s.try_forward(x))),
    ];
    for (name, forward) in &models {
        for shape in [
            [1, 3, 1, 1],
            [1, 3, 1, 10_000],
            [2, 3, 10_000, 1],
            [1, 3, 7, 5],
        ] {
            let logits = forward(filled(shape, 0.5)).unwrap();
            assert_eq!(logits.dims(), [shape[0], 5], "{name} {shape:?}");
            assert!(
                values(logits).iter().all(|v| v.is_finite()),
                "{name} {shape:?}"
            );
        }
        for shape in [[0, 3, 32, 32], [1, 3, 0, 32], [1, 3, 32, 0], [1, 1, 32, 32]] {
            let error = forward(filled(shape, 0.5)).unwrap_err();
            assert!(
                matches!(error, Error::InvalidInput { .. }),
                "{name} {shape:?}: {error}"
            );
        }
        // As PyTorch 2.15 with torchvision 0.29.2 (checked when this test was written): an
        // all-NaN or all-infinite image, or one NaN pixel, makes every logit NaN.
        for value in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let logits = values(forward(filled([1, 3, 32, 32], value)).unwrap());
            assert!(
                logits.iter().all(|v| v.is_nan()),
                "{name} {value}: {logits:?}"
            );
        }
        for value in [f32::NAN, f32::INFINITY] {
            let mut pixels = vec![0.5f32; 3 * 32 * 32];
            pixels[32 * 32 + 5 * 32 + 7] = value;
            let x = Tensor::from_data(TensorData::new(pixels, [1, 3, 32, 32]), &device());
            let logits = values(forward(x).unwrap());
            assert_eq!(logits.len(), 5);
            if value.is_nan() {
                assert!(logits.iter().all(|v| v.is_nan()), "{name}: {logits:?}");
            }
        }
    }
}

#[test]
fn feature_taps_take_any_size_and_refuse_empty_inputs() {
    let v3s = MobileNetV3Config::small()
        .with_width_mult(0.25)
        .init(&device());
    let location = FeatureLocation::BlockOutput;
    let taps = v3s.forward_intermediates(filled([1, 3, 1, 1], 0.5), location, &[0, 1, 2, 3, 4]);
    assert!(taps.unwrap().iter().all(|tap| tap.dims()[2..] == [1, 1]));
    let error = v3s
        .forward_intermediates(filled([0, 3, 8, 8], 0.5), location, &[0])
        .unwrap_err();
    assert!(matches!(error, Error::InvalidInput { .. }), "{error}");
}

#[test]
fn detect_takes_any_image_size_and_non_finite_pixels() {
    let model = SsdLiteConfig::mobilenet_v3_large(3).init(&device());
    let image = |height: usize, width: usize, value: f32| -> Tensor<3> {
        Tensor::from_data(
            TensorData::new(vec![value; 3 * height * width], [3, height, width]),
            &device(),
        )
    };
    assert!(model.detect(&[]).unwrap().is_empty());
    for (height, width) in [(1, 1), (1, 10_000), (10_000, 1)] {
        let found = model.detect(&[image(height, width, 0.5)]).unwrap();
        assert_eq!(found.len(), 1);
        for b in &found[0].boxes {
            assert!(b.iter().all(|v| v.is_finite()), "{height}x{width}: {b:?}");
        }
    }
    // Non-finite scores pass no threshold: nothing is detected.
    for value in [f32::NAN, f32::INFINITY] {
        let found = model.detect(&[image(40, 30, value)]).unwrap();
        assert!(found[0].is_empty(), "{value}: {:?}", found[0]);
    }
    for bad in [image(0, 5, 0.5), image(5, 0, 0.5)] {
        assert!(matches!(
            model.detect(&[bad]),
            Err(Error::InvalidInput { .. })
        ));
    }
}
