//! The detector's input transform, as torchvision's `GeneralizedRCNNTransform` with
//! `fixed_size` (`torchvision/models/detection/transform.py`): normalize each channel, then
//! resize to the fixed size with `F.interpolate(mode="bilinear", align_corners=False)` (no
//! antialiasing). SSDLite320 normalizes `[0, 1]` to `[-1, 1]` (mean and std 0.5).

/// Normalizes `image` (`[3, height, width]`, row-major, values in [0, 1]) and resizes it to
/// `size` (`[height, width]`), as torchvision does: the result is `[3, size[0], size[1]]`.
pub(crate) fn normalize_and_resize(
    image: &[f32],
    [height, width]: [usize; 2],
    mean: [f32; 3],
    std: [f32; 3],
    size: [usize; 2],
) -> Vec<f32> {
    let rows = source_indices(height, size[0]);
    let columns = source_indices(width, size[1]);
    let mut out = Vec::with_capacity(3 * size[0] * size[1]);
    for channel in 0..3 {
        let plane = &image[channel * height * width..(channel + 1) * height * width];
        let value = |y: usize, x: usize| (plane[y * width + x] - mean[channel]) / std[channel];
        for &(y0, y1, ly) in &rows {
            for &(x0, x1, lx) in &columns {
                let top = (1.0 - lx) * value(y0, x0) + lx * value(y0, x1);
                let bottom = (1.0 - lx) * value(y1, x0) + lx * value(y1, x1);
                out.push((1.0 - ly) * top + ly * bottom);
            }
        }
    }
    out
}

/// For each output index: the two source indices and the weight of the second, as PyTorch's
/// `area_pixel_compute_source_index` with `align_corners=False`:
/// `src = (dst + 0.5) * in / out - 0.5`, clamped at 0.
fn source_indices(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|dst| {
            let src = ((dst as f32 + 0.5) * scale - 0.5).max(0.0);
            let first = (src as usize).min(input - 1);
            let second = if first < input - 1 { first + 1 } else { first };
            (first, second, src - first as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_normalization_only() {
        let image: Vec<f32> = (0..3 * 4 * 5).map(|i| i as f32 / 60.0).collect();
        let out = normalize_and_resize(&image, [4, 5], [0.5; 3], [0.5; 3], [4, 5]);
        for (a, b) in out.iter().zip(&image) {
            assert!((a - (b - 0.5) / 0.5).abs() < 1e-6);
        }
    }

    #[test]
    fn halving_averages_neighbours() {
        // 1x4 -> 1x2: src = (dst + 0.5) * 2 - 0.5 = 0.5, 2.5: the mean of pixel pairs.
        let image = [0.0, 1.0, 2.0, 3.0].repeat(3);
        let out = normalize_and_resize(&image, [1, 4], [0.0; 3], [1.0; 3], [1, 2]);
        assert_eq!(&out[..2], &[0.5, 2.5]);
    }
}
