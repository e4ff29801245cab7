//! `SsdLite::detect` on images of arbitrary size and content: two bytes each give the height
//! and width (1 to 4096), the rest the pixel values (repeated to fill), with non-finite values
//! where the bytes say so. An untrained SSDLite320 (3 classes): the decoding, clipping and
//! suppression see boxes of every kind.
#![no_main]

use std::sync::LazyLock;

use burn::tensor::{Device, Tensor, TensorData};
use libfuzzer_sys::fuzz_target;
use mobilenet_burn::detection::{SsdLite, SsdLiteConfig};

static MODEL: LazyLock<SsdLite> =
    LazyLock::new(|| SsdLiteConfig::mobilenet_v3_large(3).init(&Device::flex()));

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let side = |hi: u8, lo: u8| (usize::from(hi) << 8 | usize::from(lo)) % 4096 + 1;
    let (height, width) = (side(data[0], data[1]), side(data[2], data[3]));
    let pixels = &data[4..];
    let values: Vec<f32> = (0..3 * height * width)
        .map(|i| match pixels[i % pixels.len()] {
            255 => f32::NAN,
            254 => f32::INFINITY,
            value => f32::from(value) / 253.0,
        })
        .collect();
    let image =
        Tensor::<3>::from_data(TensorData::new(values, [3, height, width]), &Device::flex());
    let _ = MODEL.detect(&[image]);
});
