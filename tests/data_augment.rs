//! torchvision's automatic augmentations and batch mixing, against outputs and draws recorded
//! from torchvision on PIL images (`scripts/make_augment_fixtures.py`, torch 2.15.0,
//! torchvision 0.29.2, Pillow 13.0.0): every operation within one grey level of Pillow's, the
//! policies choosing the same operations and magnitudes from the same draws, MixUp and CutMix
//! producing the same batch and soft targets.
#![cfg(feature = "pretrained")]

mod common;

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::replay::Replay;
use image::RgbImage;
use mobilenet_burn::data::{
    AugmentOp, AutoAugment, AutoAugmentPolicy, BatchMix, Draws, Interpolation, MixUpCutMix,
    TrivialAugmentWide,
};
use serde_json::Value;

struct Fixtures {
    cases: Value,
    images: Vec<u8>,
}

fn fixtures() -> Fixtures {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/augment");
    Fixtures {
        cases: serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap())
            .unwrap(),
        images: std::fs::read(dir.join("images.bin")).unwrap(),
    }
}

impl Fixtures {
    fn image(&self, stored: &Value) -> RgbImage {
        let [offset, width, height] =
            ["offset", "width", "height"].map(|key| stored[key].as_u64().unwrap() as usize);
        let bytes = self.images[offset..offset + width * height * 3].to_vec();
        RgbImage::from_raw(width as u32, height as u32, bytes).unwrap()
    }

    fn input(&self, name: &Value) -> RgbImage {
        self.image(&self.cases["images"][name.as_str().unwrap()])
    }
}

fn op(name: &Value) -> AugmentOp {
    let name = name.as_str().unwrap();
    *AugmentOp::ALL
        .iter()
        .find(|op| op.name() == name)
        .unwrap_or_else(|| panic!("unknown operation {name}"))
}

fn interpolation(value: &Value) -> Interpolation {
    match value.as_str().unwrap() {
        "nearest" => Interpolation::Nearest,
        "bilinear" => Interpolation::Bilinear,
        other => panic!("interpolation {other}"),
    }
}

/// Largest difference of any channel of any pixel, and how many values differ.
fn difference(found: &RgbImage, expected: &RgbImage) -> (u8, usize) {
    assert_eq!(found.dimensions(), expected.dimensions());
    found
        .as_raw()
        .iter()
        .zip(expected.as_raw())
        .fold((0, 0), |(max, count), (&a, &b)| {
            (max.max(a.abs_diff(b)), count + usize::from(a != b))
        })
}

#[test]
fn every_operation_is_within_one_grey_level_of_pillow() {
    let fixtures = fixtures();
    let (mut exact, mut values, mut off) = (0, 0, 0);
    let mut seen = std::collections::HashSet::new();
    for case in fixtures.cases["ops"].as_array().unwrap() {
        let input = fixtures.input(&case["image"]);
        let expected = fixtures.image(&case["output"]);
        let op = op(&case["op"]);
        let found = op.apply(
            &input,
            case["magnitude"].as_f64().unwrap(),
            interpolation(&case["interpolation"]),
        );
        let (max, count) = difference(&found, &expected);
        assert!(max <= 1, "{case}: differs by {max} grey levels");
        exact += usize::from(count == 0);
        off += count;
        values += input.as_raw().len();
        seen.insert(op);
    }
    assert_eq!(seen.len(), AugmentOp::ALL.len(), "every operation tested");
    let cases = fixtures.cases["ops"].as_array().unwrap().len();
    println!("{exact} of {cases} cases bit-exact; {off} of {values} values off by one");
    // Pillow's arithmetic is reproduced, not approximated: nearly all values are exact.
    assert!(off * 1000 < values, "{off} of {values} values differ");
}

fn assert_close(found: f64, expected: f64, what: &str) {
    assert!(
        (found - expected).abs() <= 1e-6 * expected.abs().max(1.0),
        "{what}: {found} vs torch's {expected}"
    );
}

#[test]
fn magnitude_tables_are_torchvisions() {
    let fixtures = fixtures();
    let tables = &fixtures.cases["magnitudes"];
    let space = TrivialAugmentWide::default().space();
    for (name, expected) in tables["ta_wide"].as_object().unwrap() {
        let (_, magnitudes, _) = space.iter().find(|(op, ..)| op.name() == name).unwrap();
        let expected = expected.as_array().unwrap();
        assert_eq!(magnitudes.len(), expected.len(), "{name}");
        for (found, expected) in magnitudes.iter().zip(expected) {
            assert_close(f64::from(*found), expected.as_f64().unwrap(), name);
        }
    }
    for (name, expected) in tables["imagenet_23x17"].as_object().unwrap() {
        let op = op(&Value::from(name.as_str()));
        for (bin, expected) in expected.as_array().unwrap().iter().enumerate() {
            let (found, _) = AutoAugment::magnitude(op, bin, 23, 17);
            assert_close(found, expected.as_f64().unwrap(), name);
        }
    }
}

#[test]
fn policies_choose_and_apply_what_torchvision_does() {
    let fixtures = fixtures();
    let cases = fixtures.cases["policies"].as_array().unwrap();
    let mut chosen = std::collections::HashSet::new();
    for (index, case) in cases.iter().enumerate() {
        let input = fixtures.input(&case["image"]);
        let interpolation = interpolation(&case["interpolation"]);
        let mut replay = Replay::new(case);
        let ops = match case["policy"].as_str().unwrap() {
            "ta_wide" => {
                let augment = TrivialAugmentWide {
                    interpolation,
                    ..TrivialAugmentWide::default()
                };
                vec![augment.params(&mut replay)]
            }
            "imagenet" => AutoAugment {
                policy: AutoAugmentPolicy::ImageNet,
                interpolation,
            }
            .params(input.width(), input.height(), &mut replay),
            other => panic!("policy {other}"),
        };
        assert!(replay.finished(), "case {index}: draws left over");
        let expected_ops = case["ops"].as_array().unwrap();
        assert_eq!(ops.len(), expected_ops.len(), "case {index}: {case}");
        for (&(op_found, magnitude), expected) in ops.iter().zip(expected_ops) {
            assert_eq!(op_found, op(&expected[0]), "case {index}");
            assert_close(magnitude, expected[1].as_f64().unwrap(), "magnitude");
            chosen.insert(op_found);
        }
        // The whole transform from the same draws.
        let mut replay = Replay::new(case);
        let output = match case["policy"].as_str().unwrap() {
            "ta_wide" => TrivialAugmentWide {
                interpolation,
                ..TrivialAugmentWide::default()
            }
            .apply(&input, &mut replay),
            _ => AutoAugment {
                policy: AutoAugmentPolicy::ImageNet,
                interpolation,
            }
            .apply(&input, &mut replay),
        };
        let (max, _) = difference(&output, &fixtures.image(&case["output"]));
        assert!(max <= 1, "case {index}: output differs by {max}");
    }
    assert!(chosen.len() >= 10, "the seeds reached only {chosen:?}");
}

#[test]
fn mixup_and_cutmix_match_torchvision() {
    let fixtures = fixtures();
    let device = Device::flex();
    let floats = |value: &Value| -> Vec<f32> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    for (index, case) in fixtures.cases["mix"].as_array().unwrap().iter().enumerate() {
        let shape: [usize; 4] =
            std::array::from_fn(|i| case["shape"][i].as_u64().unwrap() as usize);
        let classes = case["classes"].as_u64().unwrap() as usize;
        let alpha = case["alpha"].as_f64().unwrap() as f32;
        let labels: Vec<i64> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let mut replay = Replay::new(case);
        let (mixed, targets) = if case["kind"] == "choice" {
            // The reference recipe's RandomChoice between the two.
            let images =
                Tensor::<4>::from_data(TensorData::new(floats(&case["images"]), shape), &device);
            let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [shape[0]]), &device);
            let mix = MixUpCutMix::new(alpha, alpha).unwrap();
            let (mixed, targets) = mix.apply(images, labels, classes, &mut replay).unwrap();
            (
                mixed.into_data().try_to_vec::<f32>().unwrap(),
                targets.into_data().try_to_vec::<f32>().unwrap(),
            )
        } else {
            let mix = if case["kind"] == "mixup" {
                BatchMix::MixUp { alpha }
            } else {
                BatchMix::CutMix { alpha }
            };
            let mut images = floats(&case["images"]);
            let labels: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
            let targets = mix.apply_to_slices(&mut images, shape, &labels, classes, &mut replay);
            (images, targets)
        };
        assert!(replay.finished(), "case {index}: draws left over");
        for (found, expected, what) in [
            (mixed, floats(&case["mixed"]), "images"),
            (targets, floats(&case["targets"]), "targets"),
        ] {
            assert_eq!(found.len(), expected.len());
            for (a, b) in found.iter().zip(&expected) {
                assert!((a - b).abs() <= 1e-6, "case {index} {what}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn mixing_rejects_labels_it_cannot_encode() {
    let device = Device::flex();
    let mix = MixUpCutMix::new(1.0, 0.0).unwrap();
    let images = Tensor::<4>::zeros([2, 3, 4, 4], &device);
    let mut draws = mobilenet_burn::data::SeededDraws::new(0);
    let labels = Tensor::<1, Int>::from_ints([0, 5], &device);
    let error = mix
        .apply(images.clone(), labels, 3, &mut draws)
        .unwrap_err()
        .to_string();
    assert!(error.contains("number of classes, 3"), "{error}");
    let labels = Tensor::<1, Int>::from_ints([0], &device);
    let error = mix
        .apply(images, labels, 3, &mut draws)
        .unwrap_err()
        .to_string();
    assert!(error.contains("one label per image"), "{error}");
}

#[test]
fn seeded_beta_draws_have_the_beta_mean_and_spread() {
    // The default `Draws::beta` (used by `SeededDraws`): Beta(a, a) has mean 1/2 and variance
    // 1 / (4 (2a + 1)).
    for alpha in [0.2f32, 1.0, 4.0] {
        let mut draws = mobilenet_burn::data::SeededDraws::new(alpha.to_bits() as u64);
        let samples: Vec<f64> = (0..20000).map(|_| f64::from(draws.beta(alpha))).collect();
        assert!(samples.iter().all(|x| (0.0..=1.0).contains(x)));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        let variance =
            samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / samples.len() as f64;
        let expected = 1.0 / (4.0 * (2.0 * f64::from(alpha) + 1.0));
        assert!((mean - 0.5).abs() < 0.01, "alpha {alpha}: mean {mean}");
        assert!(
            (variance / expected - 1.0).abs() < 0.05,
            "alpha {alpha}: variance {variance} vs {expected}"
        );
    }
}
