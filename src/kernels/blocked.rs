//! An inverted residual block without squeeze-and-excitation in a channel-blocked layout
//! (NCHW8c: `[channels / 8, pixels, 8]`, eight channels in the lanes of a vector), AVX2 and FMA.
//!
//! The block's input is transposed into the blocked layout once, the expansion, the depthwise
//! convolution and the projection run on blocked maps, and the output is transposed back: the
//! expanded map, the block's largest, never exists in NCHW. In this layout
//! - a 1x1 convolution is a sum over input channels of one weight vector (eight output channels)
//!   times one broadcast input value, for a tile of output channel blocks and pixels held in
//!   registers, with the bias, residual and activation applied there before the one store (no
//!   separate epilogue pass, no packing of the input);
//! - a depthwise convolution is, per tap, one vector load of eight channels of an input pixel
//!   times one weight vector: a stride is only a step between pixels, with neither phase planes
//!   nor transposes.
//!
//! As ONNX Runtime's MLAS does (its NCHWc kernels), with its prepacked weights: [`pack`] puts
//! the 1x1 weights into `[out / 8, in, 8]` once, and the caller keeps them with the block. The
//! sums run in gemm's order (over the input channels in turn, fused multiply-adds from 0, then
//! the bias) and the depthwise taps in the flat kernels' (bias first, taps in (ky, kx) order):
//! on every fixture model the block's outputs are bit for bit the layers' one at a time
//! (`tests/native_kernels.rs`), though gemm may take other paths on other shapes, so the unit
//! tests allow 1e-5 relative. Measurements:
//! docs/performance.md ("First step, kept: `kernels::blocked`").

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv::{ConvGeometry, SharedOutput, filled_by};
use super::elementwise::Nonlinearity;
use super::fused::InvertedResidualWeights;
use super::simd::{has_avx2_fma, transpose8_avx};

/// Channels per block: the lanes of an AVX2 vector.
const LANES: usize = 8;

/// Output pixels per register tile of the 1x1 kernel.
const TILE_PIXELS: usize = 6;

/// Below this many multiply-adds a 1x1 convolution or a depthwise layer runs on one thread.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// Whether [`inverted_residual`] computes this block: a CPU with AVX2 and FMA; every channel
/// count a multiple of eight; a square, odd, undilated depthwise kernel at stride 1 or 2 with
/// torchvision's padding; activations with a vector form here (not GELU).
pub(crate) fn supports(
    g: &ConvGeometry,
    expands: bool,
    residual: bool,
    [in_channels, out_channels]: [usize; 2],
    activations: [Nonlinearity; 2],
) -> bool {
    let k = g.kernel[0];
    let s = g.stride[0];
    let out = |size: usize| (size + 2 * g.padding[0] - k) / s + 1;
    has_avx2_fma()
        && g.in_channels == g.out_channels
        && g.in_channels.is_multiple_of(LANES)
        && in_channels.is_multiple_of(LANES)
        && out_channels.is_multiple_of(LANES)
        && g.in_channels > 0
        && (expands || in_channels == g.in_channels)
        && g.kernel == [k, k]
        && k % 2 == 1
        && matches!(s, 1 | 2)
        && g.stride == [s, s]
        && g.dilation == [1, 1]
        && g.padding == [(k - 1) / 2; 2]
        && g.in_height > 0
        && g.in_width > 0
        && [g.out_height, g.out_width] == [out(g.in_height), out(g.in_width)]
        && (!residual
            || (in_channels == out_channels
                && [g.out_height, g.out_width] == [g.in_height, g.in_width]))
        && activations.iter().all(|a| !matches!(a, Nonlinearity::Gelu))
}

/// Panics unless [`supports`] takes `block` with these channel counts.
fn assert_supported(block: &InvertedResidualWeights, in_channels: usize, out_channels: usize) {
    let expand_activation = block
        .expand
        .map_or(Nonlinearity::Identity, |e| e.activation);
    assert!(supports(
        &block.depthwise,
        block.expand.is_some(),
        block.residual,
        [in_channels, out_channels],
        [expand_activation, block.depthwise_activation],
    ));
}

/// A block's weights in the blocked layout: the 1x1 weights `[out, in]` as `[out / 8, in, 8]`
/// and the depthwise weights `[c, k * k]` as `[c / 8, k * k, 8]` (the layout of a map whose
/// "pixels" are the inputs, or the taps). Made once per block by [`pack`] and kept by the caller
/// (as ONNX Runtime's MLAS prepacks), or made for one call.
#[derive(Debug, Clone)]
pub(crate) struct PackedBlock {
    expand: Option<Vec<f32>>,
    depthwise: Vec<f32>,
    project: Vec<f32>,
}

/// `block`'s weights packed for [`inverted_residual`]. Needs [`supports`].
///
/// # Panics
/// If the block is not [`supports`]ed or a weight's length is not what the shapes say.
pub(crate) fn pack(
    block: &InvertedResidualWeights,
    in_channels: usize,
    out_channels: usize,
) -> PackedBlock {
    let g = block.depthwise;
    assert_supported(block, in_channels, out_channels);
    let channels = g.in_channels;
    let taps = g.kernel[0] * g.kernel[1];
    assert!(block.project_weight.len() == out_channels * channels);
    assert!(block.depthwise_weight.len() == channels * taps);
    PackedBlock {
        expand: block.expand.map(|e| {
            assert!(e.weight.len() == channels * in_channels);
            to_blocked(e.weight, in_channels)
        }),
        depthwise: to_blocked(block.depthwise_weight, taps),
        project: to_blocked(block.project_weight, channels),
    }
}

/// The block on `x` (`[batch, in_channels, h, w]`): `[batch, out_channels, out_h, out_w]`, one
/// image at a time with the threads inside each layer, with the weights [`pack`]ed from
/// `block`. Needs [`supports`].
///
/// # Panics
/// If the block is not [`supports`]ed, `packed` was packed from a block of other shapes, or a
/// slice is shorter than the shapes say.
pub(crate) fn inverted_residual(
    x: &[f32],
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    block: &InvertedResidualWeights,
    packed: &PackedBlock,
) -> Vec<f32> {
    let g = block.depthwise;
    assert_supported(block, in_channels, out_channels);
    let channels = g.in_channels;
    let (in_pixels, out_pixels) = (g.in_pixels(), g.out_pixels());
    let (image_in, image_out) = (in_channels * in_pixels, out_channels * out_pixels);
    assert!(x.len() >= batch * image_in);
    assert!(packed.project.len() == out_channels * channels);
    assert!(packed.depthwise.len() == channels * g.kernel[0] * g.kernel[1]);
    let expand = match (block.expand, &packed.expand) {
        (Some(e), Some(weight)) if weight.len() == channels * in_channels => Some((weight, e)),
        (None, None) => None,
        _ => panic!("the packed expansion does not match the block's"),
    };
    let (depthwise, project) = (&packed.depthwise, &packed.project);
    let fill = |output: &mut [MaybeUninit<f32>]| {
        for (image, out) in output.chunks_exact_mut(image_out.max(1)).enumerate() {
            let input = to_blocked(&x[image * image_in..(image + 1) * image_in], in_pixels);
            let expanded = expand.map(|(weight, e)| {
                pointwise(
                    &input,
                    weight,
                    [channels, in_channels, in_pixels],
                    e.bias,
                    None,
                    e.activation,
                )
            });
            let hidden = depthwise_layer(
                expanded.as_deref().unwrap_or(&input),
                depthwise,
                &g,
                block.depthwise_bias,
                block.depthwise_activation,
            );
            let projected = pointwise(
                &hidden,
                project,
                [out_channels, channels, out_pixels],
                block.project_bias,
                block.residual.then_some(&input[..]),
                Nonlinearity::Identity,
            );
            from_blocked(&projected, out_pixels, out);
        }
    };
    // SAFETY: the images' chunks cover the output (its length is `batch * image_out`), and
    // `from_blocked` writes every element of each chunk.
    unsafe { filled_by(batch * image_out, fill) }
}

/// `[channels, pixels]` (NCHW, one image) as `[channels / 8, pixels, 8]`.
///
/// # Panics
/// If the channels (`x.len() / pixels`) are not a multiple of eight.
pub(crate) fn to_blocked(x: &[f32], pixels: usize) -> Vec<f32> {
    assert!(pixels > 0 && x.len().is_multiple_of(pixels * LANES) && has_avx2_fma());
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let chunk = pixels * LANES;
        let convert = |(planes, blocked): (&[f32], &mut [MaybeUninit<f32>])| {
            // SAFETY: the CPU has AVX2 (asserted above).
            unsafe { to_blocked_chunk(planes, blocked, pixels) }
        };
        #[target_feature(enable = "avx2,fma")]
        unsafe fn to_blocked_chunk(
            planes: &[f32],
            blocked: &mut [MaybeUninit<f32>],
            pixels: usize,
        ) {
            let whole = pixels / LANES * LANES;
            for first in (0..whole).step_by(LANES) {
                let rows: [[f32; LANES]; LANES] = std::array::from_fn(|lane| {
                    let at = lane * pixels + first;
                    planes[at..at + LANES].try_into().expect("eight values")
                });
                for (pixel, values) in transpose8_avx(&rows).iter().enumerate() {
                    let at = (first + pixel) * LANES;
                    for (slot, &value) in blocked[at..at + LANES].iter_mut().zip(values) {
                        slot.write(value);
                    }
                }
            }
            for pixel in whole..pixels {
                for lane in 0..LANES {
                    blocked[pixel * LANES + lane].write(planes[lane * pixels + pixel]);
                }
            }
        }
        if x.len() >= PARALLEL_MIN_COPY {
            x.par_chunks_exact(chunk)
                .zip(out.par_chunks_exact_mut(chunk))
                .for_each(convert);
        } else {
            x.chunks_exact(chunk)
                .zip(out.chunks_exact_mut(chunk))
                .for_each(convert);
        }
    };
    // SAFETY: `convert` writes every pixel of every lane of each channel block's chunk, and the
    // chunks cover the output (its length is a multiple of the chunk, asserted above).
    unsafe { filled_by(x.len(), fill) }
}

/// Below this many values a layout conversion runs on one thread.
const PARALLEL_MIN_COPY: usize = 1 << 15;

/// `[channels / 8, pixels, 8]` back to `[channels, pixels]`, every element of `out` written.
///
/// # Panics
/// If `out` and `blocked` differ in length, or it is not a multiple of `8 * pixels`.
pub(crate) fn from_blocked(blocked: &[f32], pixels: usize, out: &mut [MaybeUninit<f32>]) {
    assert!(pixels > 0 && blocked.len() == out.len() && out.len().is_multiple_of(pixels * LANES));
    assert!(has_avx2_fma());
    let chunk = pixels * LANES;
    let convert = |(values, planes): (&[f32], &mut [MaybeUninit<f32>])| {
        // SAFETY: the CPU has AVX2 (asserted above).
        unsafe { from_blocked_chunk(values, planes, pixels) }
    };
    #[target_feature(enable = "avx2,fma")]
    unsafe fn from_blocked_chunk(values: &[f32], planes: &mut [MaybeUninit<f32>], pixels: usize) {
        let whole = pixels / LANES * LANES;
        for first in (0..whole).step_by(LANES) {
            let rows: [[f32; LANES]; LANES] = std::array::from_fn(|pixel| {
                let at = (first + pixel) * LANES;
                values[at..at + LANES].try_into().expect("eight values")
            });
            for (lane, row) in transpose8_avx(&rows).iter().enumerate() {
                let at = lane * pixels + first;
                for (slot, &value) in planes[at..at + LANES].iter_mut().zip(row) {
                    slot.write(value);
                }
            }
        }
        for pixel in whole..pixels {
            for lane in 0..LANES {
                planes[lane * pixels + pixel].write(values[pixel * LANES + lane]);
            }
        }
    }
    if out.len() >= PARALLEL_MIN_COPY {
        blocked
            .par_chunks_exact(chunk)
            .zip(out.par_chunks_exact_mut(chunk))
            .for_each(convert);
    } else {
        blocked
            .chunks_exact(chunk)
            .zip(out.chunks_exact_mut(chunk))
            .for_each(convert);
    }
}

/// The eight lanes of channel block `block` of an optional bias (zeros without one).
fn bias_lanes(bias: Option<&[f32]>, block: usize) -> [f32; LANES] {
    std::array::from_fn(|lane| bias.map_or(0.0, |bias| bias[block * LANES + lane]))
}

/// `activation(x)` on eight lanes, the operations of `elementwise`'s scalar forms in their
/// order (NaN kept where those keep it).
#[inline(always)]
unsafe fn activate(v: __m256, activation: Nonlinearity) -> __m256 {
    // SAFETY: AVX, as the caller's target features guarantee.
    unsafe {
        let zero = _mm256_setzero_ps();
        let six = _mm256_set1_ps(6.0);
        match activation {
            Nonlinearity::Identity | Nonlinearity::Gelu => v,
            // `x.max(0.0)`: 0 for NaN, as `f32::max` (`max_ps` returns its second operand
            // when one is NaN).
            Nonlinearity::ReLU => _mm256_max_ps(v, zero),
            // `x.clamp(0.0, 6.0)`: NaN stays NaN.
            Nonlinearity::ReLU6 => _mm256_min_ps(six, _mm256_max_ps(zero, v)),
            // `x * (x + 3).clamp(0, 6) * (1 / 6)`.
            Nonlinearity::HardSwish => {
                let gate = _mm256_min_ps(
                    six,
                    _mm256_max_ps(zero, _mm256_add_ps(v, _mm256_set1_ps(3.0))),
                );
                _mm256_mul_ps(_mm256_mul_ps(v, gate), _mm256_set1_ps(1.0 / 6.0))
            }
        }
    }
}

/// A 1x1 convolution on blocked maps: `out[o, p] = activation(sum_i w[o, i] x[i, p] + bias[o] +
/// residual[o, p])`, `[m, k, n]` = output channels, input channels, pixels; `weight` packed by
/// [`to_blocked`]; `x`, `residual` and the result blocked. Split over the threads by pixels
/// when large.
fn pointwise(
    x: &[f32],
    weight: &[f32],
    [m, k, n]: [usize; 3],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    activation: Nonlinearity,
) -> Vec<f32> {
    assert!(
        x.len() == k * n
            && weight.len() == m * k
            && m.is_multiple_of(LANES)
            && k.is_multiple_of(LANES)
    );
    assert!(bias.is_none_or(|b| b.len() >= m) && residual.is_none_or(|r| r.len() == m * n));
    assert!(has_avx2_fma());
    let tasks = if m * n * k >= PARALLEL_MIN_MACS {
        rayon::current_num_threads().min(n.div_ceil(TILE_PIXELS))
    } else {
        1
    };
    let columns = n.div_ceil(tasks.max(1)).next_multiple_of(TILE_PIXELS);
    let fill = |output: &mut [MaybeUninit<f32>]| {
        let shared = SharedOutput(output.as_mut_ptr().cast::<f32>());
        let run = |task: usize| {
            let (first, last) = (task * columns, ((task + 1) * columns).min(n));
            // SAFETY: the CPU has AVX2 and FMA (asserted above); `x`, `weight`, `bias` and
            // `residual` hold what the shapes say (asserted above); `output` is `m * n` values
            // and this task writes only pixels `first..last` of each channel block.
            unsafe {
                pointwise_columns(
                    shared.at(0),
                    x,
                    weight,
                    [m, k, n],
                    [first, last],
                    bias,
                    residual,
                    activation,
                )
            };
        };
        if tasks <= 1 {
            run(0);
        } else {
            (0..n.div_ceil(columns)).into_par_iter().for_each(run);
        }
    };
    // SAFETY: the tasks' pixel ranges cover `0..n`, and `pointwise_columns` writes every
    // channel of each of its pixels.
    unsafe { filled_by(m * n, fill) }
}

/// Pixels `first..last` of every output channel block of [`pointwise`].
///
/// # Safety
/// The CPU must have AVX2 and FMA; `out` must hold `m * n` values in the blocked layout, of
/// which nobody else accesses these pixels meanwhile; `x` must be `k * n`, `weight` `m * k`,
/// `bias` at least `m` and `residual` `m * n` values; `last <= n`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn pointwise_columns(
    out: *mut f32,
    x: &[f32],
    weight: &[f32],
    [m, k, n]: [usize; 3],
    [first, last]: [usize; 2],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    activation: Nonlinearity,
) {
    let blocks = m / LANES;
    let mut block = 0;
    while block < blocks {
        // Two output blocks per tile (12 accumulators), one for an odd last one.
        let pair = blocks - block >= 2;
        let bias0 = bias_lanes(bias, block);
        let bias1 = bias_lanes(bias, block + usize::from(pair));
        let w0 = &weight[block * k * LANES..(block + 1) * k * LANES];
        let w1 = &weight[(block + usize::from(pair)) * k * LANES..][..k * LANES];
        let mut pixel = first;
        while pixel < last {
            let count = (last - pixel).min(TILE_PIXELS);
            // SAFETY: as this function's caller guarantees; the tile's pixels are inside
            // `first..last`.
            unsafe {
                let mut acc0 = [_mm256_setzero_ps(); TILE_PIXELS];
                let mut acc1 = [_mm256_setzero_ps(); TILE_PIXELS];
                for input_block in 0..k / LANES {
                    let xs = x.as_ptr().add((input_block * n + pixel) * LANES);
                    for lane in 0..LANES {
                        let c = input_block * LANES + lane;
                        let wv0 = _mm256_loadu_ps(w0.as_ptr().add(c * LANES));
                        let wv1 = _mm256_loadu_ps(w1.as_ptr().add(c * LANES));
                        if count == TILE_PIXELS {
                            for j in 0..TILE_PIXELS {
                                let xv = _mm256_broadcast_ss(&*xs.add(j * LANES + lane));
                                acc0[j] = _mm256_fmadd_ps(wv0, xv, acc0[j]);
                                acc1[j] = _mm256_fmadd_ps(wv1, xv, acc1[j]);
                            }
                        } else {
                            for j in 0..count {
                                let xv = _mm256_broadcast_ss(&*xs.add(j * LANES + lane));
                                acc0[j] = _mm256_fmadd_ps(wv0, xv, acc0[j]);
                                acc1[j] = _mm256_fmadd_ps(wv1, xv, acc1[j]);
                            }
                        }
                    }
                }
                for j in 0..count {
                    store(
                        out,
                        acc0[j],
                        &bias0,
                        residual,
                        [block, n, pixel + j],
                        activation,
                    );
                    if pair {
                        store(
                            out,
                            acc1[j],
                            &bias1,
                            residual,
                            [block + 1, n, pixel + j],
                            activation,
                        );
                    }
                }
            }
            pixel += count;
        }
        block += 1 + usize::from(pair);
    }
}

/// Stores `activation(acc + bias + residual)` at pixel `p` of channel block `block` (`n`
/// pixels a block) of the blocked map `out`.
///
/// # Safety
/// The CPU must have AVX2; `out` (and `residual`, if any) must hold that pixel of that block.
#[inline(always)]
unsafe fn store(
    out: *mut f32,
    acc: __m256,
    bias: &[f32; LANES],
    residual: Option<&[f32]>,
    [block, n, p]: [usize; 3],
    activation: Nonlinearity,
) {
    let at = (block * n + p) * LANES;
    // SAFETY: as the caller guarantees.
    unsafe {
        let mut v = _mm256_add_ps(acc, _mm256_loadu_ps(bias.as_ptr()));
        if let Some(residual) = residual {
            v = _mm256_add_ps(v, _mm256_loadu_ps(residual.as_ptr().add(at)));
        }
        _mm256_storeu_ps(out.add(at), activate(v, activation));
    }
}

/// A depthwise convolution on blocked maps (`x`: `[c / 8, h * w, 8]`), weights packed by
/// [`to_blocked`]: `activation(bias + sum of taps)`, blocked. Channel blocks in parallel
/// when large.
fn depthwise_layer(
    x: &[f32],
    weight: &[f32],
    g: &ConvGeometry,
    bias: Option<&[f32]>,
    activation: Nonlinearity,
) -> Vec<f32> {
    let (in_pixels, out_pixels) = (g.in_pixels(), g.out_pixels());
    let taps = g.kernel[0] * g.kernel[1];
    let blocks = g.in_channels / LANES;
    assert!(x.len() == blocks * in_pixels * LANES && weight.len() == blocks * taps * LANES);
    assert!(bias.is_none_or(|b| b.len() >= g.in_channels) && has_avx2_fma());
    let run = |block: usize, out: &mut [MaybeUninit<f32>]| {
        let bias = bias_lanes(bias, block);
        // SAFETY: the CPU has AVX2 and FMA (asserted above); the block's input, weights and
        // output hold what the geometry says (asserted above; `out` is one block's chunk).
        unsafe {
            depthwise_block(
                &x[block * in_pixels * LANES..(block + 1) * in_pixels * LANES],
                &weight[block * taps * LANES..(block + 1) * taps * LANES],
                &bias,
                g,
                activation,
                out,
            )
        };
    };
    let fill = |output: &mut [MaybeUninit<f32>]| {
        let chunks = output.chunks_exact_mut(out_pixels * LANES);
        if blocks * out_pixels * taps * LANES >= PARALLEL_MIN_MACS {
            output
                .par_chunks_exact_mut(out_pixels * LANES)
                .enumerate()
                .for_each(|(block, out)| run(block, out));
        } else {
            chunks.enumerate().for_each(|(block, out)| run(block, out));
        }
    };
    // SAFETY: every block's chunk goes to `depthwise_block`, which writes all of it.
    unsafe { filled_by(blocks * out_pixels * LANES, fill) }
}

/// Output pixels computed together away from the left and right edges.
const DW_PIXELS: usize = 4;

/// One channel block of [`depthwise_layer`], every element of `out` written.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `x` must hold `in_pixels * 8` values, `weight` `taps * 8`,
/// `out` `out_pixels * 8`.
#[target_feature(enable = "avx2,fma")]
unsafe fn depthwise_block(
    x: &[f32],
    weight: &[f32],
    bias: &[f32; LANES],
    g: &ConvGeometry,
    activation: Nonlinearity,
    out: &mut [MaybeUninit<f32>],
) {
    let (h, w, k, s, pad) = (
        g.in_height,
        g.in_width,
        g.kernel[0],
        g.stride[0],
        g.padding[0],
    );
    assert!(x.len() == h * w * LANES && weight.len() == k * k * LANES);
    assert!(out.len() == g.out_height * g.out_width * LANES);
    let (xs, ws) = (x.as_ptr(), weight.as_ptr());
    let out_ptr = out.as_mut_ptr().cast::<f32>();
    // Output columns whose taps all lie inside the row: `ox * s >= pad` and
    // `ox * s + k - 1 - pad < w`.
    let inner_first = pad.div_ceil(s);
    let inner_end = if w + pad >= k {
        ((w + pad - k) / s + 1).min(g.out_width)
    } else {
        0
    };
    // SAFETY (every block below): the CPU has AVX2 and FMA; input offsets are inside the plane
    // (rows and columns checked, or inside the inner columns), weight offsets below `k * k * 8`,
    // output offsets below `out_pixels * 8`.
    unsafe {
        let b = _mm256_loadu_ps(bias.as_ptr());
        for oy in 0..g.out_height {
            let top = (oy * s) as isize - pad as isize;
            // The kernel rows that fall inside the plane.
            let ky_first = (-top).clamp(0, k as isize) as usize;
            let ky_end = (h as isize - top).clamp(ky_first as isize, k as isize) as usize;
            let out_row = out_ptr.add(oy * g.out_width * LANES);
            let mut ox = 0;
            while ox < g.out_width {
                if ox >= inner_first && ox + DW_PIXELS <= inner_end {
                    let mut acc = [b; DW_PIXELS];
                    for ky in ky_first..ky_end {
                        let row = xs.add((top + ky as isize) as usize * w * LANES);
                        for kx in 0..k {
                            let wv = _mm256_loadu_ps(ws.add((ky * k + kx) * LANES));
                            for (j, a) in acc.iter_mut().enumerate() {
                                let ix = (ox + j) * s + kx - pad;
                                *a = _mm256_fmadd_ps(_mm256_loadu_ps(row.add(ix * LANES)), wv, *a);
                            }
                        }
                    }
                    for (j, a) in acc.into_iter().enumerate() {
                        _mm256_storeu_ps(out_row.add((ox + j) * LANES), activate(a, activation));
                    }
                    ox += DW_PIXELS;
                } else {
                    let mut acc = b;
                    for ky in ky_first..ky_end {
                        let row = xs.add((top + ky as isize) as usize * w * LANES);
                        for kx in 0..k {
                            let ix = (ox * s + kx) as isize - pad as isize;
                            if (0..w as isize).contains(&ix) {
                                let wv = _mm256_loadu_ps(ws.add((ky * k + kx) * LANES));
                                let xv = _mm256_loadu_ps(row.add(ix as usize * LANES));
                                acc = _mm256_fmadd_ps(xv, wv, acc);
                            }
                        }
                    }
                    _mm256_storeu_ps(out_row.add(ox * LANES), activate(acc, activation));
                    ox += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::{Epilogue, pointwise as pointwise_nchw};
    use crate::kernels::direct::depthwise;
    use crate::kernels::fused::Pointwise;
    use crate::kernels::{test_geometry as geometry, test_values as values};

    #[test]
    fn blocked_layout_round_trips() {
        for (channels, pixels) in [(8, 1), (8, 7), (16, 8), (24, 49), (32, 100)] {
            let x = values(channels * pixels, channels as u32);
            let blocked = to_blocked(&x, pixels);
            for c in 0..channels {
                for p in 0..pixels {
                    assert_eq!(
                        blocked[((c / 8) * pixels + p) * 8 + c % 8],
                        x[c * pixels + p]
                    );
                }
            }
            let mut back = vec![MaybeUninit::new(f32::NAN); x.len()];
            from_blocked(&blocked, pixels, &mut back);
            // SAFETY: `back` was initialized above (and overwritten by `from_blocked`).
            let back: Vec<f32> = back
                .into_iter()
                .map(|v| unsafe { v.assume_init() })
                .collect();
            assert_eq!(back, x);
        }
    }

    /// The blocked block equals its three layers run one after the other in NCHW (`pointwise`,
    /// `depthwise`, `pointwise` with the residual; each tested against the definition), on
    /// MobileNet's kernels and strides, with and without expansion, every activation, sizes
    /// that leave partial register tiles, and 1x1 maps.
    #[test]
    fn blocked_block_equals_its_layers_in_turn() {
        if !has_avx2_fma() {
            return;
        }
        // (in, expanded, out, size, kernel, stride, expansion's and depthwise's activations)
        use Nonlinearity::{HardSwish, Identity, ReLU, ReLU6};
        let cases = [
            (8, 48, 8, [13, 11], 3, 1, ReLU6, ReLU6),
            (16, 48, 24, [13, 11], 3, 2, ReLU6, ReLU6),
            (8, 8, 16, [9, 10], 3, 1, Identity, ReLU),
            (16, 24, 8, [17, 9], 5, 2, HardSwish, HardSwish),
            (16, 40, 16, [12, 12], 5, 1, ReLU, HardSwish),
            (8, 24, 8, [1, 1], 3, 1, ReLU6, ReLU6),
            (8, 24, 16, [2, 3], 5, 2, ReLU6, Identity),
            (24, 144, 24, [56, 30], 3, 1, ReLU6, ReLU6),
            (24, 72, 40, [57, 31], 5, 2, ReLU, ReLU),
        ];
        for (index, (cin, ce, cout, size, kernel, stride, expand_act, dw_act)) in
            cases.into_iter().enumerate()
        {
            let seed = 10 * index as u32;
            let batch = 2;
            let x = values(batch * cin * size[0] * size[1], seed);
            let expand = values(ce * cin, seed + 1);
            let expand_bias = values(ce, seed + 2);
            let dw = values(ce * kernel * kernel, seed + 3);
            let dw_bias = values(ce, seed + 4);
            let project = values(cout * ce, seed + 5);
            let project_bias = values(cout, seed + 6);
            let g = geometry([ce, ce], size, kernel, stride, 1);
            let residual = stride == 1 && cin == cout;
            let expands = ce != cin;
            let block = InvertedResidualWeights {
                expand: expands.then_some(Pointwise {
                    weight: &expand,
                    bias: Some(&expand_bias),
                    activation: expand_act,
                }),
                depthwise: g,
                depthwise_weight: &dw,
                depthwise_bias: Some(&dw_bias),
                depthwise_activation: dw_act,
                project_weight: &project,
                project_bias: Some(&project_bias),
                residual,
            };
            assert!(
                supports(&g, expands, residual, [cin, cout], [expand_act, dw_act]),
                "case {index}"
            );
            let hidden = if expands {
                let epilogue = Epilogue {
                    bias: Some(&expand_bias),
                    residual: None,
                    activation: expand_act,
                };
                let g1 = geometry([cin, ce], size, 1, 1, 1);
                pointwise_nchw(&x, batch, &g1, &expand, epilogue)
            } else {
                x.clone()
            };
            let epilogue = Epilogue {
                bias: Some(&dw_bias),
                residual: None,
                activation: dw_act,
            };
            let hidden = depthwise(&hidden, batch, &g, &dw, epilogue);
            let epilogue = Epilogue {
                bias: Some(&project_bias),
                residual: residual.then_some(&x[..]),
                activation: Nonlinearity::Identity,
            };
            let g2 = geometry([ce, cout], [g.out_height, g.out_width], 1, 1, 1);
            let expected = pointwise_nchw(&hidden, batch, &g2, &project, epilogue);
            let packed = pack(&block, cin, cout);
            let actual = inverted_residual(&x, batch, cin, cout, &block, &packed);
            assert_eq!(actual.len(), expected.len(), "case {index}: length");
            for (at, (a, e)) in actual.iter().zip(&expected).enumerate() {
                assert!(
                    (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
                    "case {index}[{at}]: {a} vs {e}"
                );
            }
        }
    }

    #[test]
    fn declines_what_it_does_not_compute() {
        let relu6 = [Nonlinearity::ReLU6; 2];
        // Channels not a multiple of eight, dilation, stride 3, GELU.
        assert!(!supports(
            &geometry([12, 12], [8, 8], 3, 1, 1),
            true,
            false,
            [8, 8],
            relu6
        ));
        assert!(!supports(
            &geometry([16, 16], [8, 8], 3, 1, 2),
            true,
            false,
            [8, 8],
            relu6
        ));
        assert!(!supports(
            &geometry([16, 16], [9, 9], 3, 3, 1),
            true,
            false,
            [8, 8],
            relu6
        ));
        let gelu = [Nonlinearity::Gelu, Nonlinearity::ReLU6];
        assert!(!supports(
            &geometry([16, 16], [8, 8], 3, 1, 1),
            true,
            false,
            [8, 8],
            gelu
        ));
        // Without expansion the input is the depthwise convolution's.
        assert!(!supports(
            &geometry([16, 16], [8, 8], 3, 1, 1),
            false,
            false,
            [8, 8],
            relu6
        ));
    }
}
