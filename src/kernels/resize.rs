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
use super::simd::{MulAdd, dispatch};

/// Output rows per rayon task.
const TASK_ROWS: usize = 64;

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
                let (mut upper, mut lower) = (BlendedRow::new(out_w), BlendedRow::new(out_w));
                // A task may straddle two planes (unless `out_h` is a multiple of TASK_ROWS),
                // so go row by row; a blended row is known by its plane and row.
                for (offset, out_row) in chunk.chunks_exact_mut(out_w).enumerate() {
                    let row = task * TASK_ROWS + offset;
                    let (plane, oy) = (row / out_h, row % out_h);
                    let source = &x[plane * in_h * in_w..(plane + 1) * in_h * in_w];
                    let y0 = rows.first[oy];
                    let y1 = y0 + rows.step[oy];
                    // Rows move down the plane, so the last row's lower source is often this
                    // row's upper one.
                    if upper.source != Some((plane, y0)) && lower.source == Some((plane, y0)) {
                        std::mem::swap(&mut upper, &mut lower);
                    }
                    upper.blend(source, in_w, (plane, y0), &columns);
                    lower.blend(source, in_w, (plane, y1), &columns);
                    let [h0, h1] = rows.weights[oy];
                    dispatch!(blend_vertically(
                        &upper.values,
                        &lower.values,
                        [h0, h1],
                        out_row
                    ));
                }
            });
    };
    // SAFETY: `chunks_exact_mut(out_w)` of chunks that are multiples of `out_w` (the last one
    // too, since the buffer is `planes * out_h` rows of `out_w`) covers every element, and
    // `blend_vertically` writes each element of its row.
    unsafe { filled_by(planes * out_h * out_w, fill) }
}

/// One source row blended along the columns, `a * w0 + b * w1` for each output column, and
/// which row of which plane it is. All the output rows between two source rows use the same two
/// blended rows, so each is computed once per task instead of once per output row: the
/// per-column gathers then cost a fraction of the outputs (an eighth when upscaling 8x), and the
/// rest is a vectorized blend of two rows.
struct BlendedRow {
    source: Option<(usize, usize)>,
    values: Vec<f32>,
}

impl BlendedRow {
    fn new(out_w: usize) -> Self {
        Self {
            source: None,
            values: vec![0.0; out_w],
        }
    }

    /// Makes this the blend of row `y` of `plane` (`source` is that plane), unless it is already.
    fn blend(
        &mut self,
        source: &[f32],
        in_w: usize,
        (plane, y): (usize, usize),
        columns: &LinearAxis,
    ) {
        if self.source == Some((plane, y)) {
            return;
        }
        let row = &source[y * in_w..(y + 1) * in_w];
        dispatch!(blend_horizontally(row, columns, &mut self.values));
        self.source = Some((plane, y));
    }
}

/// `out[x] = row[first[x]] * w0 + row[first[x] + step[x]] * w1` for each output column.
#[inline(always)]
fn blend_horizontally<M: MulAdd>(row: &[f32], columns: &LinearAxis, out: &mut [f32]) {
    for (((value, &x0), &step), &[w0, w1]) in out
        .iter_mut()
        .zip(&columns.first)
        .zip(&columns.step)
        .zip(&columns.weights)
    {
        *value = row[x0] * w0 + row[x0 + step] * w1;
    }
}

/// `out = upper * h0 + lower * h1`, element by element: PyTorch's order of operations, two
/// products and a sum, not a fused multiply-add (the strategy `M` only picks the compiled
/// copy, so that LLVM vectorizes the loop 8 lanes wide where the CPU has AVX2).
#[inline(always)]
fn blend_vertically<M: MulAdd>(
    upper: &[f32],
    lower: &[f32],
    [h0, h1]: [f32; 2],
    out: &mut [MaybeUninit<f32>],
) {
    for ((slot, &a), &b) in out.iter_mut().zip(upper).zip(lower) {
        slot.write(a * h0 + b * h1);
    }
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

    /// Blending each source row once per task must not change a bit: the same products and
    /// sums as computing each output from its four neighbours.
    #[test]
    fn rows_blended_once_give_the_per_output_arithmetic_exactly() {
        for (planes, input, output) in [(3, [65, 65], [520, 520]), (2, [33, 41], [30, 77])] {
            let x = test_values(planes * input[0] * input[1], 11);
            let (rows, columns) = (
                LinearAxis::new(input[0], output[0]),
                LinearAxis::new(input[1], output[1]),
            );
            let mut direct = Vec::new();
            for plane in x.chunks_exact(input[0] * input[1]) {
                for oy in 0..output[0] {
                    let (y0, [h0, h1]) = (rows.first[oy], rows.weights[oy]);
                    let top = &plane[y0 * input[1]..];
                    let bottom = &plane[(y0 + rows.step[oy]) * input[1]..];
                    for ox in 0..output[1] {
                        let (x0, [w0, w1]) = (columns.first[ox], columns.weights[ox]);
                        let x1 = x0 + columns.step[ox];
                        let upper = top[x0] * w0 + top[x1] * w1;
                        let lower = bottom[x0] * w0 + bottom[x1] * w1;
                        direct.push(upper * h0 + lower * h1);
                    }
                }
            }
            let ours = resize_bilinear(&x, planes, input, output);
            assert_eq!(ours.len(), direct.len());
            assert!(
                ours.iter()
                    .zip(&direct)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{input:?}->{output:?}"
            );
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
