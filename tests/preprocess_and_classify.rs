//! Preprocessing equals torchvision's `weights.transforms()` on the shipped photo, and the
//! whole pipeline (photo, transform, model, softmax, top-5) gives torchvision's classes.
#![cfg(feature = "pretrained")]

mod common;

use std::path::PathBuf;

use burn::tensor::Tensor;
use mobilenet_burn::pretrained::{MobileNetV2Weights, load_rgb_image, top_k};
use mobilenet_burn::{Error, MobileNetV2Config};
use serde::Deserialize;

fn photo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/chelsea.png")
}

/// The aim is 1e-2 after normalization. Our resize reproduces Pillow's fixed-point
/// arithmetic, so on a losslessly decoded PNG the tensors agree to float rounding.
const PREPROCESS_TOLERANCE: f32 = 1e-5;

#[test]
fn transform_equals_torchvisions_for_both_resize_sizes() {
    let device = common::cpu_device();
    for weights in [
        MobileNetV2Weights::ImageNet1kV1,
        MobileNetV2Weights::ImageNet1kV2,
    ] {
        let transform = weights.info().transform;
        let ours = transform.apply_file(photo(), &device).expect("photo");
        assert_eq!(ours.dims(), [1, 3, 224, 224]);
        let reference: Tensor<3> = common::fixture_tensor(
            "chelsea_preprocess.safetensors",
            &format!("resize_{}", transform.resize_size),
            &device,
        );
        let diff = (ours.squeeze::<3>() - reference)
            .abs()
            .max()
            .into_scalar::<f32>();
        println!("resize {}: max abs diff {diff:e}", transform.resize_size);
        assert!(
            diff <= PREPROCESS_TOLERANCE,
            "resize {}: {diff}",
            transform.resize_size
        );
    }
}

#[derive(Deserialize)]
struct Classification {
    checkpoint: String,
    indices: Vec<usize>,
    probabilities: Vec<f32>,
}

#[test]
fn classify_pipeline_gives_torchvisions_top5() {
    let device = common::cpu_device();
    let text =
        std::fs::read_to_string(common::fixtures().join("chelsea_classify.json")).expect("fixture");
    let expected: Classification = serde_json::from_str(&text).expect("json");
    let case = common::case("v2_w035");
    assert_eq!(expected.checkpoint, case.checkpoint);
    let model = MobileNetV2Config::new()
        .with_width_mult(case.width_mult)
        .with_num_classes(case.num_classes)
        .init(&device)
        .load_torchvision(common::fixtures().join(&case.checkpoint))
        .expect("checkpoint");
    let image = MobileNetV2Weights::DEFAULT
        .info()
        .transform
        .apply_file(photo(), &device)
        .expect("photo");
    let top = &top_k(model.forward(image), 5)[0];
    let indices: Vec<usize> = top.iter().map(|(index, _)| *index).collect();
    assert_eq!(indices, expected.indices);
    for ((_, ours), theirs) in top.iter().zip(&expected.probabilities) {
        assert!((ours - theirs).abs() <= 1e-3, "{ours} vs {theirs}");
    }
}

#[test]
fn batches_grayscale_and_rgba_images() {
    let device = common::cpu_device();
    let dir = tempfile::tempdir().expect("tempdir");
    let gray = dir.path().join("gray.png");
    image::GrayImage::from_fn(64, 48, |x, y| image::Luma([(x * 3 + y) as u8]))
        .save(&gray)
        .expect("save");
    let rgba = dir.path().join("rgba.png");
    image::RgbaImage::from_fn(40, 70, |x, y| image::Rgba([x as u8, y as u8, 9, 128]))
        .save(&rgba)
        .expect("save");

    let rgb = load_rgb_image(&gray).expect("gray");
    assert!(rgb.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
    assert_eq!(
        load_rgb_image(&rgba).expect("rgba").get_pixel(5, 6).0,
        [5, 6, 9]
    );

    let transform = MobileNetV2Weights::DEFAULT.info().transform;
    let batch = transform
        .apply_files(&[gray.clone(), rgba, photo()], &device)
        .expect("batch");
    assert_eq!(batch.dims(), [3, 3, 224, 224]);
}

#[test]
fn unreadable_images_name_the_file() {
    let device = common::cpu_device();
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\n not really").expect("write");
    let transform = MobileNetV2Weights::DEFAULT.info().transform;

    let error = transform.apply_file(&broken, &device).expect_err("broken");
    assert!(matches!(error, Error::Image { .. }), "{error:?}");
    assert!(error.to_string().contains("broken.png"));

    let error = transform
        .apply_file(dir.path().join("absent.jpg"), &device)
        .expect_err("missing");
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("absent.jpg"));

    let error = transform
        .apply_files(&[photo(), broken], &device)
        .expect_err("one bad file in a batch");
    assert!(error.to_string().contains("broken.png"));
}

/// timm's MobileNetV4 eval transform (`scripts/make_v4_meta.py`): Pillow's bicubic resize of
/// the shorter side to `floor(size / crop_pct)`, center crop, normalize. Every pixel of the
/// resized crop equals timm's (checked through the normalized values: `(p / 255 - mean) / std`
/// is one-to-one on bytes), and the first 3000 normalized values equal timm's own tensor. The
/// third case upscales (300 -> 404 rows).
#[test]
fn timm_bicubic_transform_equals_timms_on_every_pixel() {
    use mobilenet_burn::pretrained::{MobileNetV4Weights, ResizeInterpolation};
    let device = common::cpu_device();
    let bytes = std::fs::read(common::fixtures().join("v4/chelsea_timm.safetensors"))
        .expect("chelsea_timm fixture");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    for (weights, tag) in [
        (
            MobileNetV4Weights::ConvSmallE2400R224In1k,
            "conv_small_e2400_r224_in1k",
        ),
        (
            MobileNetV4Weights::ConvMediumE500R256In1k,
            "conv_medium_e500_r256_in1k",
        ),
        (
            MobileNetV4Weights::HybridLargeE600R384In1k,
            "hybrid_large_e600_r384_in1k",
        ),
    ] {
        let transform = weights.info().transform;
        assert_eq!(transform.interpolation, ResizeInterpolation::Bicubic);
        let crop = transform.crop_size as usize;
        let ours = transform.apply_file(photo(), &device).expect("photo");
        assert_eq!(ours.dims(), [1, 3, crop, crop]);
        let ours: Vec<f32> = ours.into_data().try_to_vec().expect("f32");
        // timm's crop, HWC bytes, normalized here as ToTensor and Normalize do.
        let pixels = tensors.tensor(&format!("crop_{tag}")).expect("crop").data();
        assert_eq!(pixels.len(), crop * crop * 3);
        let mut mismatched = 0;
        for channel in 0..3 {
            let (mean, std) = (transform.mean[channel], transform.std[channel]);
            for index in 0..crop * crop {
                let expected = (f32::from(pixels[index * 3 + channel]) / 255.0 - mean) / std;
                if ours[channel * crop * crop + index] != expected {
                    mismatched += 1;
                }
            }
        }
        assert_eq!(mismatched, 0, "{tag}: pixels that differ from timm's crop");
        let values: Vec<f32> = tensors
            .tensor(&format!("values_{tag}"))
            .expect("values")
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let worst = values
            .iter()
            .zip(&ours)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!("{tag}: every pixel equal, normalized values within {worst:e}");
        assert!(worst <= PREPROCESS_TOLERANCE, "{tag}: {worst}");
    }
}
