//! `load_rgb_image` on arbitrary bytes, then `EvalTransform::apply` on whatever decoded
//! (images up to 16 megapixels; the decoder's own limits refuse larger allocations).
#![no_main]

mod common;

use burn::tensor::Device;
use libfuzzer_sys::fuzz_target;
use mobilenet_burn::pretrained::{EvalTransform, IMAGENET_MEAN, IMAGENET_STD, load_rgb_image};

fuzz_target!(|data: &[u8]| {
    let path = common::write_input(data);
    if let Ok(image) = load_rgb_image(&path) {
        if u64::from(image.width()) * u64::from(image.height()) <= 1 << 24 {
            let transform = EvalTransform {
                resize_size: 36,
                crop_size: 32,
                mean: IMAGENET_MEAN,
                std: IMAGENET_STD,
            };
            let _ = transform.apply(&image, &Device::flex());
        }
    }
});
