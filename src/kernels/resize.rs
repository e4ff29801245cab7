//! Bilinear resizing of feature maps, as PyTorch's `F.interpolate(x, size, mode="bilinear",
//! align_corners=False)` on CPU computes it (`aten/src/ATen/native/cpu/UpSampleKernel.cpp`):
//! per output row and column a source index, the step to its neighbour (0 on the last input
//! row or column) and two weights, from `src = (dst + 0.5) * in / out - 0.5` clamped at 0, in
//! `f32`; each output is `(a * w0 + b * w1) * h0 + (c * w0 + d * w1) * h1`.
//!
//! The segmentation heads resize their logits to the input's size: 21 planes of up to 520x520
//! for a stride-8 map of 65x65, a pass that costs more than a whole MobileNetV3-Small backbone
//! when the coordinates are recomputed in `f64` for every output, as a generic kernel does.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv::filled_by;

/// Output rows per rayon task.
const TASK_ROWS: usize = 32;

/// One axis of the resize: for each output position, the first source index, the step to the
/// second, and the two weights.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LinearAxis {
    pub(crate) first: Vec<usize>,
    pub(crate) step: Vec<usize>,
    pub(crate) weights: Vec<[f32; 2]>,
}

impl LinearAxis {
    /// PyTorch's `compute_indices_weights_linear` with `align_corners=False` and no scale
    /// factor given: `scale = in / out` in `f32`.
    pub(crate) fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f32 / out_size as f32;
        let mut axis = Self {
            first: Vec::with_capacity(out_size),
            step: Vec::with_capacity(out_size),
            weights: Vec::with_capacity(out_size),
        };
        for out in 0..out_size {
            let source = (scale * (out as f32 + 0.5) - 0.5).max(0.0);
            // `source` is not negative, so the cast truncates to its floor.
            let index = (source as usize).min(in_size - 1);
            let lambda = (source - index as f32).clamp(0.0, 1.0);
            axis.first.push(index);
            axis.step.push(usize::from(index + 1 < in_size));
            axis.weights.push([1.0 - lambda, lambda]);
        }
        axis
    }
}

/// Resizes `planes` planes of `[in_h, in_w]` (`x`, one after the other) to `[out_h, out_w]`.
///
/// # Panics
/// If `x` does not hold `planes * in_h * in_w` values, or an input size is 0.
pub(crate) fn resize_bilinear(
    x: &[f32],
    planes: usize,
    [in_h, in_w]: [usize; 2],
    [out_h, out_w]: [usize; 2],
) -> Vec<f32> {
    assert_eq!(
        x.len(),
        planes * in_h * in_w,
        "resize_bilinear: input length"
    );
    assert!(in_h > 0 && in_w > 0, "resize_bilinear: empty input plane");
    let (rows, columns) = (LinearAxis::new(in_h, out_h), LinearAxis::new(in_w, out_w));
    let fill = |output: &mut [MaybeUninit<f32>]| {
        if out_w == 0 {
            return;
        }
        output
            .par_chunks_mut(TASK_ROWS * out_w)
            .enumerate()
            .for_each(|(task, chunk)| {
                // Tasks never straddle planes: each plane's rows are cut into whole tasks only
                // when `out_h` is a multiple of TASK_ROWS, so go row by row.
                for (offset, out_row) in chunk.chunks_exact_mut(out_w).enumerate() {
                    let row = task * TASK_ROWS + offset;
                    let (plane, oy) = (row / out_h, row % out_h);
                    let source = &x[plane * in_h * in_w..(plane + 1) * in_h * in_w];
                    let y0 = rows.first[oy];
                    let top = &source[y0 * in_w..(y0 + 1) * in_w];
                    let y1 = y0 + rows.step[oy];
                    let bottom = &source[y1 * in_w..(y1 + 1) * in_w];
                    let [h0, h1] = rows.weights[oy];
                    for (ox, slot) in out_row.iter_mut().enumerate() {
                        let (x0, x1) = (columns.first[ox], columns.first[ox] + columns.step[ox]);
                        let [w0, w1] = columns.weights[ox];
                        let upper = top[x0] * w0 + top[x1] * w1;
                        let lower = bottom[x0] * w0 + bottom[x1] * w1;
                        slot.write(upper * h0 + lower * h1);
                    }
                }
            });
    };
    // SAFETY: `chunks_exact_mut(out_w)` of chunks that are multiples of `out_w` (the last one
    // too, since the buffer is `planes * out_h` rows of `out_w`) covers every element, and
    // each is written once in the inner loop.
    unsafe { filled_by(planes * out_h * out_w, fill) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values;

    /// The same interpolation from the definition, one output at a time: source coordinates in
    /// `f32` as PyTorch computes them (`in / out` rounded to `f32` moves a source by up to
    /// ~1e-5 pixel at 781 columns), the blend in `f64`.
    fn reference(x: &[f32], planes: usize, [ih, iw]: [usize; 2], [oh, ow]: [usize; 2]) -> Vec<f64> {
        let coordinate = |out: usize, in_size: usize, out_size: usize| {
            let scale = in_size as f32 / out_size as f32;
            let source = f64::from((scale * (out as f32 + 0.5) - 0.5).max(0.0));
            let index = (source.floor() as usize).min(in_size - 1);
            (index, (index + 1).min(in_size - 1), source - index as f64)
        };
        let mut out = Vec::new();
        for plane in 0..planes {
            let at = |y: usize, column: usize| f64::from(x[(plane * ih + y) * iw + column]);
            for oy in 0..oh {
                let (y0, y1, ly) = coordinate(oy, ih, oh);
                for ox in 0..ow {
                    let (x0, x1, lx) = coordinate(ox, iw, ow);
                    let upper = at(y0, x0) * (1.0 - lx) + at(y0, x1) * lx;
                    let lower = at(y1, x0) * (1.0 - lx) + at(y1, x1) * lx;
                    out.push(upper * (1.0 - ly) + lower * ly);
                }
            }
        }
        out
    }

    #[test]
    fn resizing_matches_the_definition_up_and_down() {
        for (planes, input, output) in [
            (3, [4, 5], [16, 20]),
            (2, [65, 98], [520, 781]),
            (1, [33, 33], [65, 65]),
            (2, [7, 9], [3, 4]),
            (1, [1, 6], [5, 11]),
            (21, [5, 5], [37, 3]),
        ] {
            let x = test_values(planes * input[0] * input[1], 7);
            let ours = resize_bilinear(&x, planes, input, output);
            let theirs = reference(&x, planes, input, output);
            assert_eq!(ours.len(), theirs.len());
            for (index, (&a, &b)) in ours.iter().zip(&theirs).enumerate() {
                assert!(
                    (f64::from(a) - b).abs() < 1e-5,
                    "{input:?}->{output:?} at {index}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn same_size_is_the_identity_and_one_pixel_broadcasts() {
        let x = test_values(2 * 6 * 7, 3);
        assert_eq!(resize_bilinear(&x, 2, [6, 7], [6, 7]), x);
        let ones = resize_bilinear(&[0.25, -2.0], 2, [1, 1], [3, 4]);
        assert_eq!(ones, [[0.25; 12], [-2.0; 12]].concat());
    }

    #[test]
    fn axis_weights_are_pytorchs() {
        // 2 -> 4: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (the last input: no step).
        let axis = LinearAxis::new(2, 4);
        assert_eq!(axis.first, [0, 0, 0, 1]);
        assert_eq!(axis.step, [1, 1, 1, 0]);
        assert_eq!(
            axis.weights,
            [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.75, 0.25]]
        );
    }
}
