//! Fully connected layers at small batch, `y = activation(x · W + b)`, as a stream over the rows
//! of `W`: the classifiers' weights (up to 10 MB for MobileNetV3-Large's two layers) are read
//! once, front to back, each row scaled into every image's running sums, which stay in L1. At
//! batch 1 a general matrix multiply first packs `W` (a second pass over it) for a product that
//! is only a matrix-vector one; this pass is bound by memory bandwidth alone.

use rayon::prelude::*;

use super::conv::{ConvGeometry, Epilogue};
use super::elementwise::{Nonlinearity, activate_slice, dot};
use super::simd::{MulAdd, dispatch};

/// Weights per task at least (rows of `W` times its width): a task streams this much.
const TASK_WEIGHTS: usize = 1 << 17;

/// Checks what both products index: `x` `[batch, in]`, `weight` `in * out`, `bias` `out`.
///
/// # Panics
/// If a slice does not fit the shapes.
fn check_shapes(
    x: &[f32],
    batch: usize,
    weight: &[f32],
    [in_features, out_features]: [usize; 2],
    bias: Option<&[f32]>,
) {
    assert!(
        x.len() >= batch * in_features
            && weight.len() == in_features * out_features
            && bias.is_none_or(|bias| bias.len() == out_features),
        "linear: [{batch}, {in_features}] times a weight of {in_features} x {out_features}"
    );
}

/// `rows` weight rows of `width` in contiguous ranges, one per task: as many tasks as threads,
/// each streaming at least [`TASK_WEIGHTS`] weights (a single range for small layers).
fn row_ranges(rows: usize, width: usize) -> Vec<std::ops::Range<usize>> {
    let tasks = (rows * width / TASK_WEIGHTS)
        .clamp(1, rayon::current_num_threads())
        .min(rows.max(1));
    let per_task = rows.div_ceil(tasks).max(1);
    (0..tasks)
        .map(|task| task * per_task..((task + 1) * per_task).min(rows))
        .collect()
}

/// `sums += scale * row`, vectorized.
#[inline(always)]
fn axpy<M: MulAdd>(sums: &mut [f32], scale: f32, row: &[f32]) {
    for (sum, &value) in sums.iter_mut().zip(row) {
        *sum = M::mul_add(*sum, scale, value);
    }
}

/// The running sums of rows `rows` of `weight` for every image: `[batch, out_features]`.
#[inline(always)]
fn partial_sums<M: MulAdd>(
    x: &[f32],
    batch: usize,
    weight: &[f32],
    [in_features, out_features]: [usize; 2],
    rows: std::ops::Range<usize>,
) -> Vec<f32> {
    let mut sums = vec![0.0f32; batch * out_features];
    for i in rows {
        let row = &weight[i * out_features..(i + 1) * out_features];
        for (image, sums) in sums.chunks_exact_mut(out_features).enumerate() {
            axpy::<M>(sums, x[image * in_features + i], row);
        }
    }
    sums
}

/// `activation(x · weight + bias)` for `x` `[batch, in_features]` and `weight`
/// `[in_features, out_features]` (burn's `Linear` layout): `[batch, out_features]`. The rows of
/// `weight` are split in contiguous ranges over the threads, whose sums are added at the end.
///
/// # Panics
/// If a slice is shorter than the shapes say.
pub(crate) fn linear(
    x: &[f32],
    batch: usize,
    weight: &[f32],
    [in_features, out_features]: [usize; 2],
    bias: Option<&[f32]>,
    activation: Nonlinearity,
) -> Vec<f32> {
    let shape = [in_features, out_features];
    check_shapes(x, batch, weight, shape, bias);
    let partials: Vec<Vec<f32>> = row_ranges(in_features, out_features)
        .into_par_iter()
        .map(|rows| dispatch!(partial_sums(x, batch, weight, shape, rows)))
        .collect();
    let mut output = vec![0.0f32; batch * out_features];
    for image in output.chunks_exact_mut(out_features) {
        if let Some(bias) = bias {
            image.copy_from_slice(bias);
        }
    }
    for partial in &partials {
        output
            .iter_mut()
            .zip(partial)
            .for_each(|(out, value)| *out += value);
    }
    dispatch!(activate_slice(&mut output, activation));
    output
}

/// Outputs `outputs` of [`linear_transposed`] for every image, `[batch, outputs.len()]`.
#[inline(always)]
fn dot_rows<M: MulAdd>(
    x: &[f32],
    batch: usize,
    weight: &[f32],
    in_features: usize,
    bias: Option<&[f32]>,
    outputs: std::ops::Range<usize>,
) -> Vec<f32> {
    let width = outputs.len();
    let mut sums = vec![0.0f32; batch * width];
    for (column, o) in outputs.enumerate() {
        let row = &weight[o * in_features..(o + 1) * in_features];
        let bias = bias.map_or(0.0, |bias| bias[o]);
        for image in 0..batch {
            sums[image * width + column] =
                bias + dot::<M>(row, &x[image * in_features..(image + 1) * in_features]);
        }
    }
    sums
}

/// `activation(x · weightᵀ + bias)` for `weight` `[out_features, in_features]` (PyTorch's
/// layout, and a 1x1 convolution's on a 1x1 map: MobileNetV4's head, the segmentation heads'
/// pooling branches): `[batch, out_features]`. Each output is a dot product with one contiguous
/// row of `weight`; the rows are split in contiguous ranges over the threads.
///
/// # Panics
/// If a slice is shorter than the shapes say.
pub(crate) fn linear_transposed(
    x: &[f32],
    batch: usize,
    weight: &[f32],
    [in_features, out_features]: [usize; 2],
    bias: Option<&[f32]>,
    activation: Nonlinearity,
) -> Vec<f32> {
    check_shapes(x, batch, weight, [in_features, out_features], bias);
    let parts: Vec<(std::ops::Range<usize>, Vec<f32>)> = row_ranges(out_features, in_features)
        .into_par_iter()
        .map(|outputs| {
            let sums = dispatch!(dot_rows(
                x,
                batch,
                weight,
                in_features,
                bias,
                outputs.clone()
            ));
            (outputs, sums)
        })
        .collect();
    let mut output = vec![0.0f32; batch * out_features];
    for (outputs, sums) in &parts {
        for (image, sums) in sums.chunks_exact(outputs.len().max(1)).enumerate() {
            output[image * out_features + outputs.start..][..outputs.len()].copy_from_slice(sums);
        }
    }
    dispatch!(activate_slice(&mut output, activation));
    output
}

/// A 1x1 convolution on a 1x1 map (no residual: the caller checks) as the matrix-vector
/// product it is, [`linear_transposed`] of its `[out, in]` weight. The signature of the
/// convolution kernels, so the bridge picks it like them.
pub(crate) fn pointwise_single_pixel(
    x: &[f32],
    batch: usize,
    geometry: &ConvGeometry,
    weight: &[f32],
    epilogue: Epilogue,
) -> Vec<f32> {
    linear_transposed(
        x,
        batch,
        weight,
        [geometry.in_channels, geometry.out_channels],
        epilogue.bias,
        epilogue.activation,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values;

    /// Against the definition in f64, at batch 1 and 3, on one task and split over several; the
    /// transposed form against the other.
    #[test]
    fn linear_matches_the_definition() {
        for ([in_features, out_features], batch) in [([7, 5], 1), ([600, 300], 3), ([300, 1000], 1)]
        {
            let x = test_values(batch * in_features, 1);
            let weight = test_values(in_features * out_features, 2);
            let bias = test_values(out_features, 3);
            for (bias, activation) in [
                (Some(bias.as_slice()), Nonlinearity::HardSwish),
                (None, Nonlinearity::Identity),
            ] {
                let ours = linear(
                    &x,
                    batch,
                    &weight,
                    [in_features, out_features],
                    bias,
                    activation,
                );
                for image in 0..batch {
                    for j in 0..out_features {
                        let sum = (0..in_features).fold(
                            bias.map_or(0.0, |bias| f64::from(bias[j])),
                            |acc, i| {
                                acc + f64::from(x[image * in_features + i])
                                    * f64::from(weight[i * out_features + j])
                            },
                        );
                        let mut expected = [sum as f32];
                        activate_slice::<crate::kernels::simd::Plain>(&mut expected, activation);
                        let got = ours[image * out_features + j];
                        assert!(
                            (got - expected[0]).abs() <= 1e-4 * expected[0].abs().max(1.0),
                            "[{in_features}, {out_features}] image {image} column {j}: {got} vs {}",
                            expected[0]
                        );
                    }
                }
            }
        }
    }
}
