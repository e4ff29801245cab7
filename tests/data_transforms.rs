//! torchvision's training-transform sampling rules and `ImageFolder` order, against draws and
//! results recorded from torchvision (`scripts/make_transform_fixtures.py`, torch 2.15.0,
//! torchvision 0.29.2): replaying torch's draws, the transforms must make exactly the same
//! calls (kind and arguments, in order) and choose the same crop box, flip and erased region.
#![cfg(feature = "pretrained")]

mod common;

use std::path::Path;

use common::replay::Replay;
use mobilenet_burn::data::{
    CropBox, Draws, ImageFolder, RandomErasing, RandomHorizontalFlip, RandomResizedCrop,
    SeededDraws, TrainTransform,
};
use serde_json::Value;

fn fixtures() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/transforms/draws.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn pair(value: &Value) -> (f64, f64) {
    (value[0].as_f64().unwrap(), value[1].as_f64().unwrap())
}

fn crop_box(value: &Value) -> CropBox {
    let [top, left, height, width] = [0, 1, 2, 3].map(|i| value[i].as_u64().unwrap() as u32);
    CropBox {
        top,
        left,
        height,
        width,
    }
}

#[test]
fn random_resized_crop_chooses_torchvisions_box() {
    let cases = fixtures()["random_resized_crop"]
        .as_array()
        .unwrap()
        .clone();
    let mut fallbacks = 0;
    for (index, case) in cases.iter().enumerate() {
        let crop = RandomResizedCrop {
            size: [224, 224],
            scale: pair(&case["scale"]),
            ratio: pair(&case["ratio"]),
        };
        let mut replay = Replay::new(case);
        let (width, height) = (
            case["width"].as_u64().unwrap(),
            case["height"].as_u64().unwrap(),
        );
        let chosen = crop.params(width as u32, height as u32, &mut replay);
        assert_eq!(chosen, crop_box(&case["box"]), "case {index}: {case}");
        assert!(replay.finished(), "case {index}: draws left over");
        fallbacks += usize::from(case["draws"].as_array().unwrap().len() == 20);
    }
    assert!(fallbacks > 0, "no case reached the central-crop fallback");
}

#[test]
fn horizontal_flip_decides_as_torchvision() {
    for case in fixtures()["horizontal_flip"].as_array().unwrap() {
        let flip = RandomHorizontalFlip {
            p: case["p"].as_f64().unwrap() as f32,
        };
        let mut replay = Replay::new(case);
        assert_eq!(flip.params(&mut replay), case["flipped"].as_bool().unwrap());
        assert!(replay.finished());
    }
}

#[test]
fn random_erasing_erases_torchvisions_region() {
    let cases = fixtures()["random_erasing"].as_array().unwrap().clone();
    let mut erased = 0;
    for (index, case) in cases.iter().enumerate() {
        let shape: Vec<usize> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let erasing = RandomErasing {
            p: case["p"].as_f64().unwrap() as f32,
            ..RandomErasing::default()
        };
        let mut values = vec![1.0f32; shape.iter().product()];
        let mut replay = Replay::new(case);
        erasing.apply(&mut values, [shape[0], shape[1], shape[2]], &mut replay);
        assert!(replay.finished(), "case {index}: draws left over");
        let expected = (!case["box"].is_null()).then(|| crop_box(&case["box"]));
        // The region of zeros in channel 0, as the script measured it.
        let [height, width] = [shape[1], shape[2]];
        let zeros: Vec<(usize, usize)> = (0..height * width)
            .filter(|&i| values[i] == 0.0)
            .map(|i| (i / width, i % width))
            .collect();
        let found = (!zeros.is_empty()).then(|| {
            let top = zeros.iter().map(|z| z.0).min().unwrap();
            let bottom = zeros.iter().map(|z| z.0).max().unwrap();
            let left = zeros.iter().map(|z| z.1).min().unwrap();
            let right = zeros.iter().map(|z| z.1).max().unwrap();
            CropBox {
                top: top as u32,
                left: left as u32,
                height: (bottom - top + 1) as u32,
                width: (right - left + 1) as u32,
            }
        });
        assert_eq!(found, expected, "case {index}: {case}");
        erased += usize::from(found.is_some());
    }
    assert!(
        erased > 0 && erased < cases.len(),
        "cases must cover both outcomes"
    );
}

#[test]
fn image_folder_orders_classes_and_images_as_torchvision() {
    let case = fixtures()["image_folder"].clone();
    let root = tempfile::tempdir().unwrap();
    for relative in case["tree"].as_array().unwrap() {
        let path = root.path().join(relative.as_str().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }
    let dataset = ImageFolder::new(root.path()).unwrap();
    let classes: Vec<&str> = case["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(dataset.classes(), classes);
    let samples: Vec<(String, usize)> = dataset
        .samples()
        .iter()
        .map(|(path, label)| {
            let relative = path.strip_prefix(root.path()).unwrap();
            (relative.to_string_lossy().into_owned(), *label)
        })
        .collect();
    let expected: Vec<(String, usize)> = case["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s[0].as_str().unwrap().to_string(),
                s[1].as_u64().unwrap() as usize,
            )
        })
        .collect();
    assert_eq!(samples, expected);
}

#[test]
fn image_folder_refuses_what_torchvision_refuses() {
    let root = tempfile::tempdir().unwrap();
    let error = ImageFolder::new(root.path()).unwrap_err().to_string();
    assert!(error.contains("no class directory"), "{error}");
    std::fs::create_dir_all(root.path().join("cats")).unwrap();
    std::fs::write(root.path().join("cats/notes.txt"), b"").unwrap();
    let error = ImageFolder::new(root.path()).unwrap_err().to_string();
    assert!(error.contains("\"cats\""), "{error}");
    let missing = ImageFolder::new(root.path().join("missing")).unwrap_err();
    assert!(
        matches!(missing, mobilenet_burn::Error::Io { .. }),
        "{missing}"
    );
}

#[cfg(unix)]
#[test]
fn a_link_cycle_is_an_error_not_a_hang() {
    let root = tempfile::tempdir().unwrap();
    let class = root.path().join("cats");
    std::fs::create_dir_all(&class).unwrap();
    std::fs::write(class.join("1.png"), b"").unwrap();
    std::os::unix::fs::symlink(&class, class.join("loop")).unwrap();
    let error = ImageFolder::new(root.path()).unwrap_err().to_string();
    assert!(error.contains("link cycle"), "{error}");
}

#[test]
fn split_is_stratified_and_reproducible() {
    let root = tempfile::tempdir().unwrap();
    for (class, count) in [("a", 10), ("b", 3), ("c", 1)] {
        std::fs::create_dir_all(root.path().join(class)).unwrap();
        for i in 0..count {
            std::fs::write(root.path().join(format!("{class}/{i}.png")), b"").unwrap();
        }
    }
    let dataset = ImageFolder::new(root.path()).unwrap();
    let (train, validation) = dataset.split(0.2, 7);
    assert_eq!(train.len() + validation.len(), 14);
    let per_class = |indices: &[usize], label| {
        indices
            .iter()
            .filter(|&&i| dataset.samples()[i].1 == label)
            .count()
    };
    assert_eq!(
        [0, 1, 2].map(|label| per_class(&validation, label)),
        [2, 1, 0]
    );
    assert_eq!(dataset.split(0.2, 7), (train.clone(), validation.clone()));
    assert_ne!(
        dataset.split(0.2, 8).1,
        validation,
        "another seed, another split"
    );
}

/// A batch is the same whatever the number of threads that decoded it.
#[test]
fn batches_are_reproducible() {
    use burn::tensor::Device;
    let root = tempfile::tempdir().unwrap();
    for (class, shade) in [("dark", 40u8), ("light", 200u8)] {
        std::fs::create_dir_all(root.path().join(class)).unwrap();
        for i in 0..3u8 {
            let image = image::RgbImage::from_fn(40 + u32::from(i), 30, |x, y| {
                image::Rgb([shade, (x * 5) as u8, (y * 7 + u32::from(i)) as u8])
            });
            image
                .save(root.path().join(format!("{class}/{i}.png")))
                .unwrap();
        }
    }
    let dataset = ImageFolder::new(root.path()).unwrap();
    let transform = TrainTransform::imagenet(16).with_random_erasing(0.5);
    let device = Device::flex();
    let indices: Vec<usize> = (0..dataset.len()).collect();
    let (a, labels) = dataset.batch(&indices, &transform, 3, 1, &device).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (b, _) = pool
        .install(|| dataset.batch(&indices, &transform, 3, 1, &device))
        .unwrap();
    assert_eq!(a.dims(), [6, 3, 16, 16]);
    assert_eq!(a.clone().into_data(), b.into_data());
    let (c, _) = dataset.batch(&indices, &transform, 3, 2, &device).unwrap();
    assert_ne!(a.into_data(), c.into_data(), "another epoch, other crops");
    let labels: Vec<i64> = labels.into_data().convert::<i64>().try_to_vec().unwrap();
    assert_eq!(labels, vec![0, 0, 0, 1, 1, 1]);
    // The evaluation batch is EvalTransform::apply of each image, stacked.
    let eval = mobilenet_burn::pretrained::EvalTransform {
        resize_size: 20,
        crop_size: 16,
        mean: [0.5, 0.4, 0.3],
        std: [0.2, 0.25, 0.3],
        interpolation: mobilenet_burn::pretrained::ResizeInterpolation::Bilinear,
    };
    let (batch, _) = dataset.eval_batch(&indices[1..3], &eval, &device).unwrap();
    for (row, &index) in indices[1..3].iter().enumerate() {
        let image =
            mobilenet_burn::pretrained::load_rgb_image(&dataset.samples()[index].0).unwrap();
        let single = eval.apply(&image, &device).unsqueeze_dim::<4>(0);
        assert_eq!(
            batch.clone().narrow(0, row, 1).into_data(),
            single.into_data()
        );
    }
    // The seeded source itself: same seed, same numbers.
    let mut x = SeededDraws::for_item(1, 2, 3);
    let mut y = SeededDraws::for_item(1, 2, 3);
    assert_eq!(x.uniform(0.0, 1.0), y.uniform(0.0, 1.0));
}
