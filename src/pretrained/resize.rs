//! Pillow's antialiased bilinear resampling, bit for bit.
//!
//! torchvision's `weights.transforms()` resizes a PIL image with `Image.resize(size, BILINEAR)`:
//! a separable triangle filter whose support widens with the downscaling factor (so it
//! antialiases), with coefficients in 22-bit fixed point and an 8-bit result after each pass
//! (horizontal first). Reproducing that arithmetic exactly (Pillow's `libImaging/Resample.c`)
//! makes our preprocessing equal to torchvision's on the same decoded pixels, rather than close.

use image::RgbImage;

/// Fixed-point precision of Pillow's 8-bit resampling coefficients: `32 - 8 - 2`.
const PRECISION_BITS: u32 = 22;

/// Pillow's bilinear (triangle) filter, support 1.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// For each output pixel: the first input pixel, and the fixed-point weights of the input
/// pixels from there on (Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc`).
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's support is 1
    // Pillow multiplies by the reciprocal; dividing could differ in the last bit.
    let inverse_filter_scale = 1.0 / filter_scale;
    (0..out_size)
        .map(|out| {
            let center = (out as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero; both values here are clamped to >= 0 after.
            let min = ((center - support + 0.5) as i64).max(0) as usize;
            let max = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (min..max)
                .map(|x| triangle((x as f64 - center + 0.5) * inverse_filter_scale))
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

/// Resamples one axis: `lines` lines of `in_size` pixels (3 channels), reading pixel `i` of line
/// `l` at `offset(l, i)`, into lines of `out_size` pixels written at `out_offset(l, o)`.
fn resample_axis(
    input: &[u8],
    output: &mut [u8],
    lines: usize,
    in_size: usize,
    out_size: usize,
    offset: impl Fn(usize, usize) -> usize,
    out_offset: impl Fn(usize, usize) -> usize,
) {
    let coefficients = coefficients(in_size, out_size);
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

/// `image.resize((width, height), Image.BILINEAR)` of Pillow: horizontal pass, then vertical,
/// each skipped when its size does not change.
pub(crate) fn resize_bilinear(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_width, in_height) = (image.width() as usize, image.height() as usize);
    let (width, height) = (width as usize, height as usize);
    let mut pixels = image.as_raw().clone();
    if width != in_width {
        let mut out = vec![0u8; width * in_height * 3];
        resample_axis(
            &pixels,
            &mut out,
            in_height,
            in_width,
            width,
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
            in_height,
            height,
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
        for (in_size, out_size) in [(451, 232), (300, 256), (10, 10), (7, 20)] {
            for (_, weights) in coefficients(in_size, out_size) {
                let total: i32 = weights.iter().sum();
                assert!((total - (1 << PRECISION_BITS)).abs() <= weights.len() as i32);
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
    }
}
