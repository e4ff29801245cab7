//! Training kernels for the layers a MobileNet trains, on NCHW `f32` slices: batch normalization
//! with batch statistics fused with the activation after it (forward and backward), and the
//! gradients of 1x1 and depthwise convolutions (their forwards are `conv::pointwise` and
//! `direct::depthwise`).
//!
//! burn 0.22.1 differentiates these layers through its generic operations: a batch norm's
//! statistics transpose the whole map (`swap_dims(0, 1)`) to reduce per channel, forward and
//! backward; the activation and its gradient are separate passes with masks; a convolution's
//! input gradient is a generic transposed convolution and its weight gradient a convolution of
//! transposed copies. Here each is one or two passes over the map, in the order PyTorch's CPU
//! kernels (`aten/src/ATen/native/cpu/batch_norm_kernel.cpp`) compute them.
//!
//! Sums over a channel accumulate in `f32` along a row and in `f64` across rows, in a fixed order:
//! results do not depend on the number of threads.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv::{ConvGeometry, filled_by};
use super::direct::{PhaseLayout, flat_conv, split_into_phases};
use super::elementwise::{Nonlinearity, SqueezeExcitationWeights};
use super::simd::{MulAdd, dispatch};

/// Sizes of a batch of feature maps: `[batch, channels, pixels per channel]`.
pub(crate) type MapDims = [usize; 3];

/// Statistics of one training batch norm: per channel, the batch mean, the *biased* variance (the
/// one it normalizes with) and the affine map `y = x * scale + shift` it applies.
#[derive(Debug, Clone)]
pub(crate) struct NormStatistics {
    pub mean: Vec<f32>,
    pub variance: Vec<f32>,
    /// `gamma / sqrt(variance + epsilon)`
    pub scale: Vec<f32>,
    /// `beta - mean * scale`
    pub shift: Vec<f32>,
    /// `1 / sqrt(variance + epsilon)`
    pub inv_std: Vec<f32>,
}

/// Sum of `values`, in eight `f32` lanes, returned as `f64`.
#[inline(always)]
fn sum_lanes<M: MulAdd>(values: &[f32]) -> f64 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, value) in lanes.iter_mut().zip(chunk) {
            *lane += value;
        }
    }
    lanes.iter().map(|&lane| lane as f64).sum::<f64>() + tail as f64
}

/// Sum of `(values - center)^2`, as [`sum_lanes`].
#[inline(always)]
fn sum_squares_lanes<M: MulAdd>(values: &[f32], center: f32) -> f64 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|value| (value - center) * (value - center))
        .sum();
    for chunk in chunks {
        for (lane, value) in lanes.iter_mut().zip(chunk) {
            let centered = value - center;
            *lane = M::mul_add(*lane, centered, centered);
        }
    }
    lanes.iter().map(|&lane| lane as f64).sum::<f64>() + tail as f64
}

/// The planes of channel `channel`: `batch` rows of `pixels` values.
fn channel_planes(
    values: &[f32],
    [batch, channels, pixels]: MapDims,
    channel: usize,
) -> impl Iterator<Item = &[f32]> {
    (0..batch).map(move |image| {
        let start = (image * channels + channel) * pixels;
        &values[start..start + pixels]
    })
}

/// Batch statistics of `z` (`[batch, channels, pixels]`) and the affine map of a batch norm
/// with `gamma`, `beta` and `epsilon`: mean, then the variance around it (two passes, as
/// PyTorch's CPU kernel).
pub(crate) fn norm_statistics(
    z: &[f32],
    dims: MapDims,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> NormStatistics {
    let [batch, channels, pixels] = dims;
    assert!(z.len() == batch * channels * pixels && gamma.len() == channels);
    assert!(beta.len() == channels);
    let count = (batch * pixels).max(1) as f64;
    let per_channel: Vec<(f32, f32)> = (0..channels)
        .into_par_iter()
        .map(|channel| {
            let sum: f64 = channel_planes(z, dims, channel)
                .map(|plane| dispatch!(sum_lanes(plane)))
                .sum();
            let mean = (sum / count) as f32;
            let squares: f64 = channel_planes(z, dims, channel)
                .map(|plane| dispatch!(sum_squares_lanes(plane, mean)))
                .sum();
            (mean, (squares / count) as f32)
        })
        .collect();
    let (mean, variance): (Vec<f32>, Vec<f32>) = per_channel.into_iter().unzip();
    let inv_std: Vec<f32> = variance
        .iter()
        .map(|&var| (1.0 / (var as f64 + epsilon).sqrt()) as f32)
        .collect();
    let scale: Vec<f32> = inv_std.iter().zip(gamma).map(|(s, g)| s * g).collect();
    let shift = beta
        .iter()
        .zip(&mean)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    NormStatistics {
        mean,
        variance,
        scale,
        shift,
        inv_std,
    }
}

/// An activation and its gradient as a type, so that each loop below is compiled once per
/// activation with the choice made outside it (LLVM then vectorizes the branches as selects).
trait Act: Copy {
    /// `activation(x)` with PyTorch's formulas (as `elementwise::activate_slice`).
    fn apply(x: f32) -> f32;
    /// `grad * activation'(x)`, with ATen's values at the kinks.
    fn grad(x: f32, grad: f32) -> f32;
}

#[derive(Clone, Copy)]
struct ReLU;
#[derive(Clone, Copy)]
struct ReLU6;
#[derive(Clone, Copy)]
struct HardSwish;
#[derive(Clone, Copy)]
struct Gelu;
#[derive(Clone, Copy)]
struct Identity;

impl Act for ReLU {
    #[inline(always)]
    fn apply(x: f32) -> f32 {
        x.max(0.0)
    }
    /// `threshold_backward`: 0 at 0.
    #[inline(always)]
    fn grad(x: f32, grad: f32) -> f32 {
        if x > 0.0 { grad } else { 0.0 }
    }
}

impl Act for ReLU6 {
    #[inline(always)]
    fn apply(x: f32) -> f32 {
        x.clamp(0.0, 6.0)
    }
    /// `hardtanh_backward`: 0 at 0 and at 6.
    #[inline(always)]
    fn grad(x: f32, grad: f32) -> f32 {
        if x > 0.0 && x < 6.0 { grad } else { 0.0 }
    }
}

impl Act for HardSwish {
    #[inline(always)]
    fn apply(x: f32) -> f32 {
        x * (x + 3.0).clamp(0.0, 6.0) / 6.0
    }
    /// `hardswish_backward`: 0 below -3, `x / 3 + 0.5` from -3 to 3 inclusive, 1 above.
    #[inline(always)]
    fn grad(x: f32, grad: f32) -> f32 {
        if x < -3.0 {
            0.0
        } else if x <= 3.0 {
            grad * (x / 3.0 + 0.5)
        } else {
            grad
        }
    }
}

impl Act for Gelu {
    #[inline(always)]
    fn apply(x: f32) -> f32 {
        super::elementwise::gelu(x)
    }
    /// `gelu_backward` (`approximate='none'`): `grad * (Φ(x) + x φ(x))`.
    #[inline(always)]
    fn grad(x: f32, grad: f32) -> f32 {
        let cdf = 0.5 * (1.0 + super::elementwise::erf(x * std::f32::consts::FRAC_1_SQRT_2));
        let pdf = (-0.5 * x * x).exp() / (2.0 * std::f32::consts::PI).sqrt();
        grad * (cdf + x * pdf)
    }
}

impl Act for Identity {
    #[inline(always)]
    fn apply(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    fn grad(_: f32, grad: f32) -> f32 {
        grad
    }
}

/// `$function::<M, A>($args)` with `A` the [`Act`] of `$activation`.
macro_rules! with_act {
    ($activation:expr, $function:ident::<$m:ident>($($arg:expr),* $(,)?)) => {
        match $activation {
            Nonlinearity::ReLU => $function::<$m, ReLU>($($arg),*),
            Nonlinearity::ReLU6 => $function::<$m, ReLU6>($($arg),*),
            Nonlinearity::HardSwish => $function::<$m, HardSwish>($($arg),*),
            Nonlinearity::Gelu => $function::<$m, Gelu>($($arg),*),
            Nonlinearity::Identity => $function::<$m, Identity>($($arg),*),
        }
    };
}

/// `grad * activation'(x)`, with ATen's values at the kinks (see each [`Act`]).
#[cfg(test)]
pub(crate) fn activation_grad(x: f32, grad: f32, activation: Nonlinearity) -> f32 {
    match activation {
        Nonlinearity::ReLU => ReLU::grad(x, grad),
        Nonlinearity::ReLU6 => ReLU6::grad(x, grad),
        Nonlinearity::HardSwish => HardSwish::grad(x, grad),
        Nonlinearity::Gelu => Gelu::grad(x, grad),
        Nonlinearity::Identity => Identity::grad(x, grad),
    }
}

/// Elements per rayon task of an element-wise pass.
const TASK_ELEMENTS: usize = 1 << 14;

/// `y = activation(z * scale[c] + shift[c])` for every plane.
pub(crate) fn norm_act_apply(
    z: &[f32],
    dims: MapDims,
    statistics: &NormStatistics,
    activation: Nonlinearity,
) -> Vec<f32> {
    let [_, channels, pixels] = dims;
    if pixels == 0 {
        return Vec::new();
    }
    let fill = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(pixels)
            .zip(z.par_chunks(pixels))
            .enumerate()
            .with_min_len((TASK_ELEMENTS / pixels).max(1))
            .for_each(|(plane, (out, input))| {
                let channel = plane % channels;
                let (scale, shift) = (statistics.scale[channel], statistics.shift[channel]);
                dispatch!(apply_plane(out, input, scale, shift, activation));
            })
    };
    // SAFETY: `y` and `z` are cut into the same `pixels`-long chunks (equal lengths), and
    // `apply_plane_with` writes each output chunk in full, zipped with its input chunk.
    unsafe { filled_by(z.len(), fill) }
}

/// Writes every element of `out`.
#[inline(always)]
fn apply_plane<M: MulAdd>(
    out: &mut [MaybeUninit<f32>],
    input: &[f32],
    scale: f32,
    shift: f32,
    activation: Nonlinearity,
) {
    with_act!(activation, apply_plane_with::<M>(out, input, scale, shift))
}

#[inline(always)]
fn apply_plane_with<M: MulAdd, A: Act>(
    out: &mut [MaybeUninit<f32>],
    input: &[f32],
    scale: f32,
    shift: f32,
) {
    for (y, &z) in out.iter_mut().zip(input) {
        y.write(A::apply(M::mul_add(shift, z, scale)));
    }
}

/// Per channel `(sum of g, sum of g * (z - mean))`, `g` being the gradient reaching the batch
/// norm's output (`grad * activation'(z * scale + shift)`).
#[inline(always)]
fn backward_sums<M: MulAdd>(
    z: &[f32],
    grad: &[f32],
    mean: f32,
    scale: f32,
    shift: f32,
    activation: Nonlinearity,
) -> (f64, f64) {
    with_act!(
        activation,
        backward_sums_with::<M>(z, grad, mean, scale, shift)
    )
}

#[inline(always)]
fn backward_sums_with<M: MulAdd, A: Act>(
    z: &[f32],
    grad: &[f32],
    mean: f32,
    scale: f32,
    shift: f32,
) -> (f64, f64) {
    let mut sum = [0.0f32; 8];
    let mut dot = [0.0f32; 8];
    let (mut sum_tail, mut dot_tail) = (0.0f64, 0.0f64);
    let z_chunks = z.chunks_exact(8);
    let grad_chunks = grad.chunks_exact(8);
    for (&z, &grad) in z_chunks.remainder().iter().zip(grad_chunks.remainder()) {
        let g = A::grad(M::mul_add(shift, z, scale), grad);
        sum_tail += g as f64;
        dot_tail += (g * (z - mean)) as f64;
    }
    for (z, grad) in z_chunks.zip(grad_chunks) {
        for lane in 0..8 {
            let g = A::grad(M::mul_add(shift, z[lane], scale), grad[lane]);
            sum[lane] += g;
            dot[lane] = M::mul_add(dot[lane], g, z[lane] - mean);
        }
    }
    (
        sum.iter().map(|&s| s as f64).sum::<f64>() + sum_tail,
        dot.iter().map(|&d| d as f64).sum::<f64>() + dot_tail,
    )
}

/// Gradients of [`norm_act_apply`] with batch statistics: `(dz, dgamma, dbeta)`.
///
/// With `g` the gradient at the batch norm's output, `m` values per channel and
/// `x̂ = (z - mean) * inv_std`: `dbeta = Σ g`, `dgamma = Σ g x̂`,
/// `dz = gamma * inv_std * (g - Σ g / m - x̂ * Σ g x̂ / m)` (PyTorch's
/// `batch_norm_backward` in training).
pub(crate) fn norm_act_backward(
    z: &[f32],
    grad: &[f32],
    dims: MapDims,
    gamma: &[f32],
    statistics: &NormStatistics,
    activation: Nonlinearity,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let [batch, channels, pixels] = dims;
    assert!(z.len() == batch * channels * pixels && grad.len() == z.len());
    let count = (batch * pixels).max(1) as f64;
    let sums: Vec<(f64, f64)> = (0..channels)
        .into_par_iter()
        .map(|channel| {
            let (mean, scale, shift) = (
                statistics.mean[channel],
                statistics.scale[channel],
                statistics.shift[channel],
            );
            channel_planes(z, dims, channel)
                .zip(channel_planes(grad, dims, channel))
                .map(|(z, grad)| dispatch!(backward_sums(z, grad, mean, scale, shift, activation)))
                .fold((0.0, 0.0), |(s, d), (ps, pd)| (s + ps, d + pd))
        })
        .collect();
    let dbeta: Vec<f32> = sums.iter().map(|&(sum, _)| sum as f32).collect();
    let dgamma: Vec<f32> = sums
        .iter()
        .zip(&statistics.inv_std)
        .map(|(&(_, dot), &inv_std)| (dot * inv_std as f64) as f32)
        .collect();
    // dz = a * g + b * z + c per channel, with
    // a = gamma * inv_std, b = -a * inv_std^2 * Σ g (z - mean) / m,
    // c = -a * Σ g / m - b * mean.
    let coefficients: Vec<[f32; 3]> = (0..channels)
        .map(|channel| {
            let (sum, dot) = sums[channel];
            let inv_std = statistics.inv_std[channel] as f64;
            let a = gamma[channel] as f64 * inv_std;
            let b = -a * inv_std * inv_std * dot / count;
            let c = -a * sum / count - b * statistics.mean[channel] as f64;
            [a as f32, b as f32, c as f32]
        })
        .collect();
    if pixels == 0 {
        return (Vec::new(), dgamma, dbeta);
    }
    let fill = |dz: &mut [MaybeUninit<f32>]| {
        dz.par_chunks_mut(pixels)
            .enumerate()
            .with_min_len((TASK_ELEMENTS / pixels).max(1))
            .for_each(|(plane, out)| {
                let channel = plane % channels;
                let range = plane * pixels..(plane + 1) * pixels;
                dispatch!(backward_plane(
                    out,
                    &z[range.clone()],
                    &grad[range],
                    coefficients[channel],
                    statistics.scale[channel],
                    statistics.shift[channel],
                    activation
                ));
            })
    };
    // SAFETY: every `pixels` chunk of `dz` (all of it) goes to `backward_plane_with`, which writes
    // it zipped with `z` and `grad` slices of the same length (`grad.len() == z.len()`, asserted).
    let dz = unsafe { filled_by(z.len(), fill) };
    (dz, dgamma, dbeta)
}

/// Writes every element of `out`.
#[inline(always)]
fn backward_plane<M: MulAdd>(
    out: &mut [MaybeUninit<f32>],
    z: &[f32],
    grad: &[f32],
    coefficients: [f32; 3],
    scale: f32,
    shift: f32,
    activation: Nonlinearity,
) {
    with_act!(
        activation,
        backward_plane_with::<M>(out, z, grad, coefficients, scale, shift)
    )
}

#[inline(always)]
fn backward_plane_with<M: MulAdd, A: Act>(
    out: &mut [MaybeUninit<f32>],
    z: &[f32],
    grad: &[f32],
    [a, b, c]: [f32; 3],
    scale: f32,
    shift: f32,
) {
    for ((dz, &z), &grad) in out.iter_mut().zip(z).zip(grad) {
        let g = A::grad(M::mul_add(shift, z, scale), grad);
        dz.write(M::mul_add(M::mul_add(c, b, z), a, g));
    }
}

/// Images per partial weight gradient: partials are summed in a fixed order, so the result does
/// not depend on how many threads computed them.
const IMAGES_PER_PARTIAL: usize = 4;

/// Gradients of a 1x1, stride-1 convolution without bias (`weight`: `[out, in]`) given the
/// gradient of its output: `(dx, dweight)`, `dx[b] = weightᵀ · grad[b]`,
/// `dweight = Σ_b grad[b] · x[b]ᵀ`.
pub(crate) fn pointwise_backward(
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    batch: usize,
    geometry: &ConvGeometry,
) -> (Vec<f32>, Vec<f32>) {
    let (cin, cout, pixels) = (
        geometry.in_channels,
        geometry.out_channels,
        geometry.in_pixels(),
    );
    assert!(x.len() == batch * cin * pixels && grad.len() == batch * cout * pixels);
    assert!(weight.len() == cout * cin);
    // With `cout == 0` the product has no terms and gemm would write nothing.
    let dx = if cout == 0 || pixels == 0 {
        vec![0.0f32; x.len()]
    } else {
        let fill = |dx: &mut [MaybeUninit<f32>]| {
            dx.par_chunks_mut(cin * pixels)
                .enumerate()
                .for_each(|(image, dx)| {
                    let grad = &grad[image * cout * pixels..(image + 1) * cout * pixels];
                    // SAFETY: `dx` holds `cin x pixels`, `weight` `cout x cin` (read transposed:
                    // column stride `cin`, row stride 1), `grad` `cout x pixels`; `dx` is its
                    // own buffer. With `read_dst` false gemm writes every element of `dx` (the
                    // product has `cout > 0` terms) and reads none.
                    unsafe {
                        gemm::gemm(
                            cin,
                            pixels,
                            cout,
                            dx.as_mut_ptr().cast::<f32>(),
                            1,
                            pixels as isize,
                            false,
                            weight.as_ptr(),
                            cin as isize,
                            1,
                            grad.as_ptr(),
                            1,
                            pixels as isize,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                })
        };
        // SAFETY: each image's `cin x pixels` block of `dx` (all of it) is written in full by
        // gemm (above).
        unsafe { filled_by(x.len(), fill) }
    };
    let partials: Vec<Vec<f32>> = (0..batch.div_ceil(IMAGES_PER_PARTIAL))
        .into_par_iter()
        .map(|group| {
            let mut partial = vec![0.0f32; cout * cin];
            let images = group * IMAGES_PER_PARTIAL..((group + 1) * IMAGES_PER_PARTIAL).min(batch);
            for image in images {
                let grad = &grad[image * cout * pixels..(image + 1) * cout * pixels];
                let x = &x[image * cin * pixels..(image + 1) * cin * pixels];
                // SAFETY: `partial` holds `cout x cin`; `grad` is `cout x pixels` row-major; `x`
                // is `cin x pixels`, read transposed (`pixels x cin`: column stride `pixels`,
                // row stride 1); `partial` is its own buffer. It starts at zero, so reading it
                // (`read_dst`) accumulates over the group's images.
                unsafe {
                    gemm::gemm(
                        cout,
                        cin,
                        pixels,
                        partial.as_mut_ptr(),
                        1,
                        cin as isize,
                        true,
                        grad.as_ptr(),
                        1,
                        pixels as isize,
                        x.as_ptr(),
                        pixels as isize,
                        1,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
            partial
        })
        .collect();
    (dx, sum_partials(partials, cout * cin))
}

/// Element-wise sum of `partials` (each `len` long), in order.
fn sum_partials(partials: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let mut total = vec![0.0f32; len];
    for partial in partials {
        total.iter_mut().zip(partial).for_each(|(t, p)| *t += p);
    }
    total
}

/// Gradients of a depthwise convolution without bias (`weight`: `[channels, 1, kh, kw]`, a
/// geometry `direct::supports`) given the gradient of its output: `(dx, dweight)`.
///
/// In the forward kernel's flat layout (`direct::PhaseLayout`: the padded input split into
/// stride phases, outputs `wide` rows apart), output `i` reads input `i + offset[tap]` for every
/// tap. So the input gradient is again a flat convolution, of the output gradient with offsets
/// `max_offset - offset[tap]` (`dx[j] = Σ w[tap] · grad[j - offset[tap]]`), and each tap's weight
/// gradient one dot product, `Σ grad[i] · x[i + offset[tap]]`: long contiguous runs however
/// small the map.
pub(crate) fn depthwise_backward(
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    batch: usize,
    geometry: &ConvGeometry,
) -> (Vec<f32>, Vec<f32>) {
    let channels = geometry.in_channels;
    let (in_pixels, out_pixels) = (geometry.in_pixels(), geometry.out_pixels());
    let taps = geometry.kernel[0] * geometry.kernel[1];
    assert!(x.len() == batch * channels * in_pixels);
    assert!(grad.len() == batch * channels * out_pixels && weight.len() == channels * taps);
    let mut dx = vec![0.0f32; x.len()];
    if in_pixels == 0 || out_pixels == 0 {
        return (dx, vec![0.0; weight.len()]);
    }
    let layout = PhaseLayout::new(geometry);
    let offsets = layout.tap_offsets(geometry);
    let max_offset = offsets.iter().copied().max().unwrap_or(0);
    let back_offsets: Vec<usize> = offsets.iter().map(|offset| max_offset - offset).collect();
    let flat = layout.flat_len(geometry);
    // Per plane: its input gradient, and its share of the weight gradient.
    let tap_sums: Vec<Vec<f64>> = dx
        .par_chunks_mut(in_pixels)
        .enumerate()
        .with_min_len((TASK_ELEMENTS / in_pixels).max(1))
        .map_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(x_phases, grad_wide, dx_phases), (plane, dx)| {
                let channel = plane % channels;
                let weight = &weight[channel * taps..(channel + 1) * taps];
                let grad = &grad[plane * out_pixels..(plane + 1) * out_pixels];
                // The input in phases, zeros around it.
                x_phases.clear();
                x_phases.resize(layout.total, 0.0);
                split_into_phases(
                    &x[plane * in_pixels..(plane + 1) * in_pixels],
                    geometry,
                    &layout,
                    x_phases,
                );
                // The output gradient in wide rows, `max_offset` zeros before it and enough
                // after it for every back offset.
                grad_wide.clear();
                grad_wide.resize(layout.total + max_offset, 0.0);
                for (row, values) in grad.chunks_exact(geometry.out_width).enumerate() {
                    let start = max_offset + row * layout.width;
                    grad_wide[start..start + values.len()].copy_from_slice(values);
                }
                dx_phases.clear();
                dx_phases.resize(layout.total, 0.0);
                dispatch!(flat_conv(grad_wide, &back_offsets, weight, 0.0, dx_phases));
                merge_from_phases(dx_phases, geometry, &layout, dx);
                let grad_flat = &grad_wide[max_offset..max_offset + flat];
                offsets
                    .iter()
                    .map(|&offset| dispatch!(dot(grad_flat, &x_phases[offset..offset + flat])))
                    .collect()
            },
        )
        .collect();
    let mut dweight = vec![0.0f64; weight.len()];
    for (plane, sums) in tap_sums.iter().enumerate() {
        let channel = plane % channels;
        for (total, sum) in dweight[channel * taps..(channel + 1) * taps]
            .iter_mut()
            .zip(sums)
        {
            *total += sum;
        }
    }
    (dx, dweight.into_iter().map(|value| value as f32).collect())
}

/// `Σ a[i] * b[i]` in eight `f32` lanes, returned as `f64`.
#[inline(always)]
fn dot<M: MulAdd>(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0.0f32; 8];
    let body = a.len().min(b.len()) / 8 * 8;
    for (a, b) in a[..body].chunks_exact(8).zip(b[..body].chunks_exact(8)) {
        for lane in 0..8 {
            lanes[lane] = M::mul_add(lanes[lane], a[lane], b[lane]);
        }
    }
    let tail: f32 = a[body..].iter().zip(&b[body..]).map(|(a, b)| a * b).sum();
    lanes.iter().map(|&lane| lane as f64).sum::<f64>() + tail as f64
}

/// The inverse of `direct::split_into_phases`: the input positions of `phases` back into
/// `plane` (`in_height x in_width`); what lies in the padding is dropped.
fn merge_from_phases(
    phases: &[f32],
    geometry: &ConvGeometry,
    layout: &PhaseLayout,
    plane: &mut [f32],
) {
    let [stride_h, stride_w] = geometry.stride;
    let [pad_top, pad_left] = geometry.padding;
    let phase_len = layout.height * layout.width;
    let (mut phase_y, mut phase_row) = (pad_top % stride_h, pad_top / stride_h);
    for row in plane.chunks_exact_mut(geometry.in_width) {
        let row_start = phase_y * stride_w * phase_len + phase_row * layout.width;
        for first in 0..stride_w.min(row.len()) {
            let column = first + pad_left;
            let start = row_start + (column % stride_w) * phase_len + column / stride_w;
            if stride_w == 1 {
                row.copy_from_slice(&phases[start..start + row.len()]);
            } else {
                row[first..]
                    .iter_mut()
                    .step_by(stride_w)
                    .zip(&phases[start..])
                    .for_each(|(slot, &value)| *slot = value);
            }
        }
        phase_y += 1;
        if phase_y == stride_h {
            phase_y = 0;
            phase_row += 1;
        }
    }
}

/// What a squeeze-and-excitation forward keeps for its backward, per image: the pooled input
/// `[batch, channels]`, the hidden layer after its ReLU `[batch, squeeze]`, and the gate
/// `[batch, channels]` with its argument.
#[derive(Debug, Clone)]
pub(crate) struct SqueezeSaved {
    pub pooled: Vec<f32>,
    pub hidden: Vec<f32>,
    pub gate_input: Vec<f32>,
    pub gate: Vec<f32>,
}

/// Squeeze-and-excitation forward, `y = x * gate(fc2(relu(fc1(mean(x)))))` per channel, as the
/// crate's layer computes it with burn's operations (average pool, two 1x1 convolutions with
/// bias, ReLU, hard-sigmoid, broadcast product), in two passes over the map.
pub(crate) fn squeeze_excitation_forward(
    x: &[f32],
    dims: MapDims,
    weights: SqueezeExcitationWeights,
) -> (Vec<f32>, SqueezeSaved) {
    let [batch, channels, pixels] = dims;
    let squeeze = weights.fc1_bias.len();
    assert!(x.len() == batch * channels * pixels && weights.fc2_bias.len() == channels);
    assert!(weights.fc1_weight.len() == squeeze * channels);
    assert!(weights.fc2_weight.len() == channels * squeeze);
    let pooled: Vec<f32> = x
        .par_chunks(pixels.max(1))
        .with_min_len((TASK_ELEMENTS / pixels.max(1)).max(1))
        .map(|plane| (dispatch!(sum_lanes(plane)) / pixels.max(1) as f64) as f32)
        .collect();
    let mut hidden = vec![0.0f32; batch * squeeze];
    let mut gate_input = vec![0.0f32; batch * channels];
    for image in 0..batch {
        let pooled = &pooled[image * channels..(image + 1) * channels];
        let hidden = &mut hidden[image * squeeze..(image + 1) * squeeze];
        for (j, h) in hidden.iter_mut().enumerate() {
            let row = &weights.fc1_weight[j * channels..(j + 1) * channels];
            let sum: f32 = row.iter().zip(pooled).map(|(w, p)| w * p).sum();
            *h = (sum + weights.fc1_bias[j]).max(0.0);
        }
        for (c, g) in gate_input[image * channels..(image + 1) * channels]
            .iter_mut()
            .enumerate()
        {
            let row = &weights.fc2_weight[c * squeeze..(c + 1) * squeeze];
            let sum: f32 = row.iter().zip(hidden.iter()).map(|(w, h)| w * h).sum();
            *g = sum + weights.fc2_bias[c];
        }
    }
    let gate: Vec<f32> = gate_input
        .iter()
        .map(|&v| (v * weights.slope + weights.offset).clamp(0.0, 1.0))
        .collect();
    let fill = |y: &mut [MaybeUninit<f32>]| {
        if pixels == 0 {
            return;
        }
        y.par_chunks_mut(pixels)
            .zip(x.par_chunks(pixels))
            .enumerate()
            .with_min_len((TASK_ELEMENTS / pixels).max(1))
            .for_each(|(plane, (out, input))| {
                let g = gate[plane];
                out.iter_mut().zip(input).for_each(|(o, &v)| {
                    o.write(v * g);
                });
            })
    };
    // SAFETY: with `pixels > 0`, `y` and `x` are cut into the same `pixels`-long chunks (equal
    // lengths) and each output chunk is written in full; with `pixels == 0` there is nothing.
    let y = unsafe { filled_by(x.len(), fill) };
    let saved = SqueezeSaved {
        pooled,
        hidden,
        gate_input,
        gate,
    };
    (y, saved)
}

/// Gradients of [`squeeze_excitation_forward`]: `(dx, dfc1_weight, dfc1_bias, dfc2_weight,
/// dfc2_bias)`. One pass for the gate's gradient (`Σ grad · x` per plane), the small layers in
/// between, and one pass writing `dx = grad * gate + dpooled / pixels`. The gate passes no
/// gradient where its ramp is saturated (`hardsigmoid_backward`), nor the ReLU at 0.
pub(crate) fn squeeze_excitation_backward(
    x: &[f32],
    grad: &[f32],
    dims: MapDims,
    weights: SqueezeExcitationWeights,
    saved: &SqueezeSaved,
) -> [Vec<f32>; 5] {
    let [batch, channels, pixels] = dims;
    let squeeze = weights.fc1_bias.len();
    assert!(x.len() == batch * channels * pixels && grad.len() == x.len());
    let dgate: Vec<f32> = grad
        .par_chunks(pixels.max(1))
        .zip(x.par_chunks(pixels.max(1)))
        .with_min_len((TASK_ELEMENTS / pixels.max(1)).max(1))
        .map(|(g, x)| dispatch!(dot(g, x)) as f32)
        .collect();
    let dgate_input: Vec<f32> = dgate
        .iter()
        .zip(&saved.gate_input)
        .map(|(&d, &v)| {
            let y = v * weights.slope + weights.offset;
            if y > 0.0 && y < 1.0 {
                d * weights.slope
            } else {
                0.0
            }
        })
        .collect();
    let mut dfc2_weight = vec![0.0f32; channels * squeeze];
    let mut dfc2_bias = vec![0.0f32; channels];
    let mut dfc1_weight = vec![0.0f32; squeeze * channels];
    let mut dfc1_bias = vec![0.0f32; squeeze];
    let mut dpooled = vec![0.0f32; batch * channels];
    let mut dhidden = vec![0.0f32; squeeze];
    for image in 0..batch {
        let dgate_input = &dgate_input[image * channels..(image + 1) * channels];
        let hidden = &saved.hidden[image * squeeze..(image + 1) * squeeze];
        let pooled = &saved.pooled[image * channels..(image + 1) * channels];
        dhidden.iter_mut().for_each(|d| *d = 0.0);
        for (c, &d) in dgate_input.iter().enumerate() {
            dfc2_bias[c] += d;
            let row = c * squeeze..(c + 1) * squeeze;
            for ((dw, &h), (dh, &w)) in dfc2_weight[row.clone()]
                .iter_mut()
                .zip(hidden)
                .zip(dhidden.iter_mut().zip(&weights.fc2_weight[row]))
            {
                *dw += d * h;
                *dh += w * d;
            }
        }
        // ReLU: no gradient where the hidden unit is 0.
        for (dh, &h) in dhidden.iter_mut().zip(hidden) {
            if h <= 0.0 {
                *dh = 0.0;
            }
        }
        let dpooled = &mut dpooled[image * channels..(image + 1) * channels];
        for (j, &d) in dhidden.iter().enumerate() {
            dfc1_bias[j] += d;
            let row = j * channels..(j + 1) * channels;
            for ((dw, &p), (dp, &w)) in dfc1_weight[row.clone()]
                .iter_mut()
                .zip(pooled)
                .zip(dpooled.iter_mut().zip(&weights.fc1_weight[row]))
            {
                *dw += d * p;
                *dp += w * d;
            }
        }
    }
    let fill = |dx: &mut [MaybeUninit<f32>]| {
        if pixels == 0 {
            return;
        }
        let inv_pixels = 1.0 / pixels as f32;
        dx.par_chunks_mut(pixels)
            .zip(grad.par_chunks(pixels))
            .enumerate()
            .with_min_len((TASK_ELEMENTS / pixels).max(1))
            .for_each(|(plane, (out, g))| {
                let (gate, from_pool) = (saved.gate[plane], dpooled[plane] * inv_pixels);
                out.iter_mut().zip(g).for_each(|(o, &g)| {
                    o.write(g * gate + from_pool);
                });
            })
    };
    // SAFETY: with `pixels > 0`, `dx` and `grad` are cut into the same `pixels`-long chunks
    // (`grad.len() == x.len()`, asserted) and each chunk of `dx` is written in full; with
    // `pixels == 0` there is nothing.
    let dx = unsafe { filled_by(x.len(), fill) };
    [dx, dfc1_weight, dfc1_bias, dfc2_weight, dfc2_bias]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gradients at the kinks are ATen's: ReLU6 passes none at exactly 0 and 6, h-swish's is
    /// `x / 3 + 0.5` from -3 to 3 inclusive and 0 below.
    #[test]
    fn activation_gradients_at_the_kinks_are_atens() {
        let at = |activation, x: f32| activation_grad(x, 1.0, activation);
        assert_eq!(at(Nonlinearity::ReLU6, 0.0), 0.0);
        assert_eq!(at(Nonlinearity::ReLU6, 6.0), 0.0);
        assert_eq!(at(Nonlinearity::ReLU6, 5.5), 1.0);
        assert_eq!(at(Nonlinearity::ReLU, 0.0), 0.0);
        assert_eq!(at(Nonlinearity::HardSwish, -3.0), -0.5);
        assert_eq!(at(Nonlinearity::HardSwish, -3.5), 0.0);
        assert_eq!(at(Nonlinearity::HardSwish, 3.0), 1.5);
        assert_eq!(at(Nonlinearity::HardSwish, 3.5), 1.0);
        // GELU is smooth: its derivative against a central difference in f64.
        for x in [-3.0f32, -0.7, 0.0, 0.4, 2.5] {
            let gelu = |x: f64| 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            let h = 1e-5;
            let numeric = (gelu(f64::from(x) + h) - gelu(f64::from(x) - h)) / (2.0 * h);
            let analytic = f64::from(at(Nonlinearity::Gelu, x));
            assert!(
                (analytic - numeric).abs() < 1e-5,
                "GELU'({x}) = {analytic}, not {numeric}"
            );
        }
    }
}
