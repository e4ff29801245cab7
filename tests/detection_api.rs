//! The detector's conveniences: image files in, a score threshold, detections one by one.
#![cfg(feature = "pretrained")]

mod common;

use mobilenet_burn::detection::{SsdLiteConfig, image_to_tensor};
use mobilenet_burn::pretrained::{RgbImage, load_rgb_image};

#[test]
fn detect_files_threshold_and_iter_agree_with_detect() {
    let device = common::cpu_device();
    let model = SsdLiteConfig::mobilenet_v3_large(3).init(&device);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gradient.png");
    RgbImage::from_fn(48, 36, |x, y| image::Rgb([x as u8 * 5, y as u8 * 7, 128]))
        .save(&path)
        .unwrap();

    let from_files = model.detect_files(&[&path]).unwrap();
    let image = image_to_tensor(&load_rgb_image(&path).unwrap(), &device);
    let direct = model.detect(std::slice::from_ref(&image)).unwrap();
    assert_eq!(from_files, direct);
    assert!(
        !direct[0].is_empty(),
        "an untrained model still scores above 0.001"
    );

    // One by one, in the same order as the parallel vectors.
    let all = &direct[0];
    for (i, detection) in all.iter().enumerate() {
        assert_eq!(detection.bbox, all.boxes[i]);
        assert_eq!(
            (detection.score, detection.label),
            (all.scores[i], all.labels[i])
        );
    }

    // A threshold keeps the detections above it, as `above` filters them afterwards (the
    // candidates per class are the same 300 best either way).
    let median = {
        let mut scores = all.scores.clone();
        scores.sort_by(f32::total_cmp);
        scores[scores.len() / 2]
    };
    let strict = model
        .with_score_threshold(f64::from(median))
        .detect(&[image])
        .unwrap();
    assert!(strict[0].len() < all.len());
    assert!(strict[0].scores.iter().all(|&score| score > median));
    let filtered = all.above(median);
    assert!(filtered.scores.iter().all(|&score| score >= median));
}
