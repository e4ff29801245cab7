//! The segmentation weights' evaluation transform equals torchvision's
//! `SemanticSegmentation(resize_size=520)` on assets/chelsea.png (fixtures from
//! `scripts/make_segmentation_meta.py`, torchvision 0.29.2, Pillow 13.0.0): the resize is
//! Pillow's bit for bit, and 2,000 values of the normalized tensor at seeded positions equal
//! torchvision's.
#![cfg(feature = "pretrained")]

mod common;

use mobilenet_burn::pretrained::{LrAsppMobileNetV3LargeWeights, load_rgb_image};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    shape: Vec<usize>,
    positions: Vec<usize>,
    values: Vec<f32>,
}

#[test]
fn transform_of_a_photo_equals_torchvisions() {
    let device = common::cpu_device();
    let transform = LrAsppMobileNetV3LargeWeights::DEFAULT.info().transform;
    let photo = load_rgb_image("assets/chelsea.png").expect("photo");
    let resized = load_rgb_image(common::fixtures().join("segmentation/chelsea_resized.png"))
        .expect("torchvision's resize");
    assert_eq!(
        transform.resized_size(photo.width(), photo.height()),
        (resized.width(), resized.height())
    );

    let text =
        std::fs::read_to_string(common::fixtures().join("segmentation/chelsea_transform.json"))
            .expect("chelsea_transform.json");
    let reference: Reference = serde_json::from_str(&text).expect("json");
    let x = transform.apply(&photo, &device);
    assert_eq!(x.dims().to_vec(), reference.shape);
    let ours: Vec<f32> = x.into_data().convert::<f32>().try_to_vec().expect("floats");
    for (&position, &value) in reference.positions.iter().zip(&reference.values) {
        assert_eq!(ours[position], value, "value {position}");
    }
    // Every pixel of the resize: the normalized values are those of torchvision's resized image.
    let [_, height, width] = [3, resized.height() as usize, resized.width() as usize];
    for (index, pixel) in resized.pixels().enumerate() {
        for channel in 0..3 {
            let expected = (f32::from(pixel.0[channel]) / 255.0 - transform.mean[channel])
                / transform.std[channel];
            assert_eq!(
                ours[channel * height * width + index],
                expected,
                "pixel {index}, channel {channel}"
            );
        }
    }
}
