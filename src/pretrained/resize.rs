//! Pillow's antialiased bilinear and bicubic resampling, bit for bit.
//!
//! torchvision's `weights.transforms()` resizes a PIL image with `Image.resize(size, BILINEAR)`,
//! and timm's evaluation transforms of MobileNetV4 with `BICUBIC`: a separable filter (triangle,
//! or Keys' cubic with `a = -0.5`) whose support widens with the downscaling factor (so it
//! antialiases), with coefficients in 22-bit fixed point and an 8-bit result after each pass
//! (horizontal first). Reproducing that arithmetic exactly (Pillow's `libImaging/Resample.c`)
//! makes our preprocessing equal to torchvision's and timm's on the same decoded pixels, rather
//! than close.

use image::RgbImage;

use super::weights::ResizeInterpolation;

/// Fixed-point precision of Pillow's 8-bit resampling coefficients: `32 - 8 - 2`.
const PRECISION_BITS: u32 = 22;
/// Pillow's bicubic parameter `a`.
const BICUBIC_A: f64 = -0.5;

/// Pillow's bilinear (triangle) filter, support 1.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Pillow's bicubic filter (Keys, `a = -0.5`), support 2, with its operations in its order.
fn bicubic(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((BICUBIC_A + 2.0) * x - (BICUBIC_A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * BICUBIC_A
    } else {
        0.0
    }
}

impl ResizeInterpolation {
    /// The filter and its support at scale 1.
    fn filter(self) -> (fn(f64) -> f64, f64) {
        match self {
            ResizeInterpolation::Bilinear => (triangle, 1.0),
            ResizeInterpolation::Bicubic => (bicubic, 2.0),
        }
    }
}

/// For each output pixel: the first input pixel, and the fixed-point weights of the input
/// pixels from there on (Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc`).
fn coefficients(
    in_size: usize,
    out_size: usize,
    interpolation: ResizeInterpolation,
) -> Vec<(usize, Vec<i32>)> {
    let (filter, filter_support) = interpolation.filter();
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_support * filter_scale;
    // Pillow multiplies by the reciprocal; dividing could differ in the last bit.
    let inverse_filter_scale = 1.0 / filter_scale;
    (0..out_size)
        .map(|out| {
            let center = (out as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero; both values here are clamped to >= 0 after.
            let min = ((center - support + 0.5) as i64).max(0) as usize;
            let max = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (min..max)
                .map(|x| filter((x as f64 - center + 0.5) * inverse_filter_scale))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { *w };
                    let rounding = if w < 0.0 { -0.5 } else { 0.5 };
                    (w * f64::from(1u32 << PRECISION_BITS) + rounding) as i32
                })
                .collect();
            (min, fixed)
        })
        .collect()
}

/// Pillow's `clip8`: the fixed-point sum back to a byte.
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resamples one axis: `lines` lines (3 channels), reading pixel `i` of line `l` at
/// `offset(l, i)`, into lines of `coefficients.len()` pixels written at `out_offset(l, o)`.
fn resample_axis(
    input: &[u8],
    output: &mut [u8],
    lines: usize,
    coefficients: &[(usize, Vec<i32>)],
    offset: impl Fn(usize, usize) -> usize,
    out_offset: impl Fn(usize, usize) -> usize,
) {
    for line in 0..lines {
        for (out, (min, weights)) in coefficients.iter().enumerate() {
            for channel in 0..3 {
                let sum = weights.iter().enumerate().fold(
                    1i32 << (PRECISION_BITS - 1),
                    |sum, (i, weight)| {
                        sum + i32::from(input[offset(line, min + i) + channel]) * weight
                    },
                );
                output[out_offset(line, out) + channel] = clip8(sum);
            }
        }
    }
}

/// `image.resize((width, height), Image.BILINEAR)` of Pillow.
pub(crate) fn resize_bilinear(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    resize(image, width, height, ResizeInterpolation::Bilinear)
}

/// `image.resize((width, height), filter)` of Pillow for its `BILINEAR` or `BICUBIC`:
/// horizontal pass, then vertical, each skipped when its size does not change.
pub(crate) fn resize(
    image: &RgbImage,
    width: u32,
    height: u32,
    interpolation: ResizeInterpolation,
) -> RgbImage {
    let (in_width, in_height) = (image.width() as usize, image.height() as usize);
    let (width, height) = (width as usize, height as usize);
    let mut pixels = image.as_raw().clone();
    if width != in_width {
        let mut out = vec![0u8; width * in_height * 3];
        resample_axis(
            &pixels,
            &mut out,
            in_height,
            &coefficients(in_width, width, interpolation),
            |row, x| (row * in_width + x) * 3,
            |row, x| (row * width + x) * 3,
        );
        pixels = out;
    }
    if height != in_height {
        let mut out = vec![0u8; width * height * 3];
        resample_axis(
            &pixels,
            &mut out,
            width,
            &coefficients(in_height, height, interpolation),
            |column, y| (y * width + column) * 3,
            |column, y| (y * width + column) * 3,
        );
        pixels = out;
    }
    RgbImage::from_raw(width as u32, height as u32, pixels)
        .unwrap_or_else(|| unreachable!("the buffer is sized for the image"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_of_each_output_pixel_sum_to_one() {
        for interpolation in [ResizeInterpolation::Bilinear, ResizeInterpolation::Bicubic] {
            for (in_size, out_size) in [(451, 232), (300, 256), (10, 10), (7, 20)] {
                for (_, weights) in coefficients(in_size, out_size, interpolation) {
                    let total: i32 = weights.iter().sum();
                    assert!((total - (1 << PRECISION_BITS)).abs() <= weights.len() as i32);
                }
            }
        }
    }

    #[test]
    fn unchanged_size_is_identity_and_constant_stays_constant() {
        let image = RgbImage::from_fn(9, 5, |x, y| image::Rgb([x as u8 * 20, y as u8 * 40, 7]));
        assert_eq!(resize_bilinear(&image, 9, 5), image);
        let flat = RgbImage::from_pixel(31, 17, image::Rgb([200, 13, 99]));
        let resized = resize_bilinear(&flat, 12, 8);
        assert!(resized.pixels().all(|p| p.0 == [200, 13, 99]));
        for (width, height) in [(12, 8), (45, 40)] {
            let resized = resize(&flat, width, height, ResizeInterpolation::Bicubic);
            assert!(resized.pixels().all(|p| p.0 == [200, 13, 99]));
        }
    }

    /// Keys' cubic: 1 at 0, 0 at the other integers, and its two pieces meet at 1.
    #[test]
    fn bicubic_filter_is_keys_cubic() {
        assert_eq!(bicubic(0.0), 1.0);
        for x in [1.0, 2.0, -1.0, 3.0] {
            assert_eq!(bicubic(x), 0.0, "at {x}");
        }
        assert!((bicubic(0.5) - 0.5625).abs() < 1e-12);
        assert!((bicubic(1.5) + 0.0625).abs() < 1e-12);
    }
}
