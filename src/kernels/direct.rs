//! Depthwise convolutions (one filter per channel), where a matrix multiply would waste its time,
//! as direct convolutions; and the phase planes that im2col (`conv.rs`) reads too.
//!
//! Each input plane is zero-padded and split into `stride_h * stride_w` phase planes (rows
//! `py, py + s, ...`, columns `px, px + s, ...`), each `phase_width` wide. In phase coordinates
//! every kernel tap is one constant offset, so with output rows laid `phase_width` apart a whole
//! output plane is a 1-D convolution over one flat index: each output is written once from
//! register accumulators (32 at a time) and every tap is a contiguous load, whatever the stride
//! or dilation. The columns past `out_width` are dropped when the rows are copied out.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv::{ConvGeometry, Epilogue, Prologue, filled_by, finishing};
use super::elementwise::{Nonlinearity, gelu, hard_swish, relu, relu6};
use super::interleaved::{self, GROUP, Tile, group as interleaved_group};
use super::rows3::{self, FlatRows, flat_conv_3x3};
use super::simd::{MulAdd, dispatch};

/// Output elements per rayon task (planes are grouped up to this).
const TASK_ELEMENTS: usize = 1 << 13;

/// Output planes up to this many pixels (14x14 and smaller) take the interleaved kernel when it
/// supports the geometry. Per shape, one thread: 0.52-0.83x the flat planes' time at 14x14 and
/// 7x7 outputs, 1.08-2.0x at 56x56 and larger (a tile of eight 56x56 planes, 107 KB, no longer
/// fits in L1). Whole forwards: see `docs/performance.md`.
const INTERLEAVED_MAX_PIXELS: usize = 256;

/// At stride 1, output planes up to this many pixels (28x28) take the interleaved kernel too:
/// since its tile positions are computed once per geometry, 0.79-0.89x the flat planes' time
/// there (240 channels: 1.0x); at stride 2 into 28x28 it reads a 56x56 tile, and took
/// 1.06-1.13x (3x3) and 0.94x (5x5).
const INTERLEAVED_MAX_PIXELS_STRIDE_1: usize = 1024;

/// The phase planes of one padded input plane.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PhaseLayout {
    /// Rows of each phase plane.
    pub(crate) height: usize,
    /// Columns of each phase plane; also the distance between output rows in the flat index.
    pub(crate) width: usize,
    /// `stride_h * stride_w` planes of `height * width`.
    pub(crate) total: usize,
}

impl PhaseLayout {
    pub(crate) fn new(geometry: &ConvGeometry) -> Self {
        let [kernel_h, kernel_w] = geometry.kernel;
        let [stride_h, stride_w] = geometry.stride;
        let [dilation_h, dilation_w] = geometry.dilation;
        // The padded plane covers every row and column a tap reaches.
        let padded_h = (geometry.in_height + geometry.padding[0])
            .max((geometry.out_height - 1) * stride_h + (kernel_h - 1) * dilation_h + 1);
        let padded_w = (geometry.in_width + geometry.padding[1])
            .max((geometry.out_width - 1) * stride_w + (kernel_w - 1) * dilation_w + 1);
        let (height, width) = (padded_h.div_ceil(stride_h), padded_w.div_ceil(stride_w));
        Self {
            height,
            width,
            total: stride_h * stride_w * height * width,
        }
    }

    /// Where tap `(ky, kx)` of output 0 reads, in the phase planes.
    pub(crate) fn tap_offsets(&self, geometry: &ConvGeometry) -> Vec<usize> {
        let [kernel_h, kernel_w] = geometry.kernel;
        let [stride_h, stride_w] = geometry.stride;
        let mut offsets = Vec::with_capacity(kernel_h * kernel_w);
        for ky in 0..kernel_h {
            for kx in 0..kernel_w {
                let (row, column) = (ky * geometry.dilation[0], kx * geometry.dilation[1]);
                let phase = (row % stride_h) * stride_w + column % stride_w;
                offsets.push(
                    phase * self.height * self.width
                        + (row / stride_h) * self.width
                        + column / stride_w,
                );
            }
        }
        offsets
    }

    /// Length of the flat output index: `out_height` rows `width` apart, the last one cut.
    pub(crate) fn flat_len(&self, geometry: &ConvGeometry) -> usize {
        (geometry.out_height - 1) * self.width + geometry.out_width
    }
}

/// Whether the direct kernels handle this geometry (MobileNet's always do).
pub(crate) fn supports(geometry: &ConvGeometry) -> bool {
    geometry.out_height > 0 && geometry.out_width > 0 && geometry.stride[1] <= 8
}

/// Writes one input plane into its zero-padded phase planes (`phases`, already zeroed in the
/// padding).
#[inline(always)]
pub(crate) fn split_into_phases(
    input: &[f32],
    geometry: &ConvGeometry,
    layout: &PhaseLayout,
    phases: &mut [f32],
) {
    split_into_phases_finished(input, geometry, layout, phases, |value| value);
}

/// [`split_into_phases`], each input value written as `finish(value)` (the padding stays zero).
#[inline(always)]
fn split_into_phases_finished(
    input: &[f32],
    geometry: &ConvGeometry,
    layout: &PhaseLayout,
    phases: &mut [f32],
    finish: impl Fn(f32) -> f32,
) {
    let [stride_h, stride_w] = geometry.stride;
    let [pad_top, pad_left] = geometry.padding;
    let in_width = geometry.in_width;
    let phase_len = layout.height * layout.width;
    // Per column phase: its first input column, that column's index in the phase plane, and
    // how many input columns fall in the phase.
    let mut column_phases = [(0usize, 0usize, 0usize); 8];
    for (phase_x, entry) in column_phases.iter_mut().enumerate().take(stride_w) {
        let first = (phase_x + stride_w - pad_left % stride_w) % stride_w;
        let count = in_width.saturating_sub(first).div_ceil(stride_w);
        *entry = (first, (first + pad_left) / stride_w, count);
    }
    let (mut phase_y, mut phase_row) = (pad_top % stride_h, pad_top / stride_h);
    for row in input.chunks_exact(in_width) {
        let row_start = phase_y * stride_w * phase_len + phase_row * layout.width;
        if stride_w == 1 {
            let start = row_start + pad_left;
            for (slot, &value) in phases[start..start + in_width].iter_mut().zip(row) {
                *slot = finish(value);
            }
        } else if stride_w == 2 {
            // Even input columns go to one phase, odd ones to the other: a deinterleave.
            let (even_phase, odd_phase) = if pad_left % 2 == 0 { (0, 1) } else { (1, 0) };
            let even_at = row_start + even_phase * phase_len + pad_left / 2;
            let odd_at = row_start + odd_phase * phase_len + pad_left.div_ceil(2);
            let (even, odd) = two_ranges(
                phases,
                (even_at, in_width.div_ceil(2)),
                (odd_at, in_width / 2),
            );
            for ((even, odd), pair) in even.iter_mut().zip(odd.iter_mut()).zip(row.chunks_exact(2))
            {
                *even = finish(pair[0]);
                *odd = finish(pair[1]);
            }
            if in_width % 2 == 1 {
                even[in_width / 2] = finish(row[in_width - 1]);
            }
        } else {
            for (phase_x, &(first, index, count)) in column_phases[..stride_w].iter().enumerate() {
                let start = row_start + phase_x * phase_len + index;
                for (j, slot) in phases[start..start + count].iter_mut().enumerate() {
                    *slot = finish(row[first + j * stride_w]);
                }
            }
        }
        phase_y += 1;
        if phase_y == stride_h {
            phase_y = 0;
            phase_row += 1;
        }
    }
}

/// Two disjoint ranges `(start, len)` of `values`, mutably.
#[inline(always)]
fn two_ranges(
    values: &mut [f32],
    (a, a_len): (usize, usize),
    (b, b_len): (usize, usize),
) -> (&mut [f32], &mut [f32]) {
    if a < b {
        let (low, high) = values.split_at_mut(b);
        (&mut low[a..a + a_len], &mut high[..b_len])
    } else {
        let (low, high) = values.split_at_mut(a);
        (&mut high[..a_len], &mut low[b..b + b_len])
    }
}

/// `wide[i] = bias + Σ_t weights[t] · source[i + offsets[t]]`, 32 then 8 outputs at a time in
/// registers.
#[inline(always)]
pub(crate) fn flat_conv<M: MulAdd>(
    source: &[f32],
    offsets: &[usize],
    weights: &[f32],
    bias: f32,
    wide: &mut [f32],
) {
    let len = wide.len();
    let mut start = 0;
    while start + 32 <= len {
        let block = flat_block::<M, 32>(source, offsets, weights, bias, start);
        wide[start..start + 32].copy_from_slice(&block);
        start += 32;
    }
    while start + 8 <= len {
        let block = flat_block::<M, 8>(source, offsets, weights, bias, start);
        wide[start..start + 8].copy_from_slice(&block);
        start += 8;
    }
    for (index, slot) in wide.iter_mut().enumerate().skip(start) {
        *slot = weights
            .iter()
            .zip(offsets)
            .fold(bias, |acc, (&weight, &offset)| {
                M::mul_add(acc, weight, source[index + offset])
            });
    }
}

/// Outputs `start..start + N` of [`flat_conv`], accumulated in `N` registers across every tap.
#[inline(always)]
fn flat_block<M: MulAdd, const N: usize>(
    source: &[f32],
    offsets: &[usize],
    weights: &[f32],
    bias: f32,
    start: usize,
) -> [f32; N] {
    let mut acc = [bias; N];
    for (&weight, &offset) in weights.iter().zip(offsets) {
        let inputs = &source[start + offset..][..N];
        for (acc, &value) in acc.iter_mut().zip(inputs) {
            *acc = M::mul_add(*acc, weight, value);
        }
    }
    acc
}

/// Scratch buffers reused by one rayon task across planes.
#[derive(Default)]
struct Scratch {
    phases: Vec<f32>,
    wide: Vec<f32>,
    /// The geometry `phases` was zeroed for: planes of the same geometry write the same
    /// positions, so the padding stays zero and needs no clearing.
    zeroed_for: Option<ConvGeometry>,
}

/// Planes of more input pixels than this (112x112, not 56x56) go in bands of output rows.
const BANDED_MIN_PIXELS: usize = 1 << 13;

/// Input floats per band of a banded plane (8 KiB): a band's phase planes, flat outputs and
/// output rows then stay in L1 together, where a whole 112x112 plane's (50 KB each) did not.
/// One thread, per layer: V2's 96-channel 112x112 stride-2 layer 575 -> 390 us, its 32-channel
/// stride-1 one 350 -> 320; at 56x56 (12 KB planes) bands were 10-17% slower. Whole forwards:
/// `docs/performance.md`.
const PLANE_BAND_FLOATS: usize = 1 << 11;

/// The input rows that output rows `first..first + rows` of a plane read, cut to the plane (the
/// rest is padding): the first of them, and the same convolution on just those rows, whose top
/// padding is whatever part of the kernel's reach lies above the plane. The band's input is
/// rows `start..start + band.in_height` of the plane.
pub(crate) fn band_geometry(g: &ConvGeometry, [first, rows]: [usize; 2]) -> (usize, ConvGeometry) {
    let reach = g.dilation[0] * (g.kernel[0] - 1);
    let top = (first * g.stride[0]) as isize - g.padding[0] as isize;
    let bottom = ((first + rows - 1) * g.stride[0] + reach) as isize - g.padding[0] as isize + 1;
    let start = top.max(0) as usize;
    let end = (bottom.max(0) as usize).min(g.in_height).max(start);
    let band = ConvGeometry {
        in_height: end - start,
        out_height: rows,
        padding: [(start as isize - top) as usize, g.padding[1]],
        ..*g
    };
    (start, band)
}

/// A band of output rows of a plane (or the whole plane), with its phase layout and tap
/// offsets: the same for every plane of a layer, so computed once per layer.
struct PlaneBand {
    /// The band's first output row.
    first: usize,
    /// The first input row it reads.
    start: usize,
    geometry: ConvGeometry,
    layout: PhaseLayout,
    offsets: Vec<usize>,
}

/// The bands a plane of this geometry is computed in: one, the whole plane, unless it has more
/// than [`BANDED_MIN_PIXELS`] input pixels.
fn plane_bands(g: &ConvGeometry) -> Vec<PlaneBand> {
    let band_rows = if g.in_pixels() <= BANDED_MIN_PIXELS {
        g.out_height
    } else {
        ((PLANE_BAND_FLOATS / g.in_width.max(1)) / g.stride[0]).clamp(1, g.out_height)
    };
    (0..g.out_height)
        .step_by(band_rows)
        .map(|first| {
            let (start, geometry) = if band_rows == g.out_height {
                (0, *g)
            } else {
                band_geometry(g, [first, band_rows.min(g.out_height - first)])
            };
            let layout = PhaseLayout::new(&geometry);
            PlaneBand {
                first,
                start,
                offsets: layout.tap_offsets(&geometry),
                geometry,
                layout,
            }
        })
        .collect()
}

/// [`split_into_phases`] of channel `channel`'s plane, finished by `prologue`.
#[inline(always)]
fn split_finished<M: MulAdd>(
    input: &[f32],
    (prologue, channel): (Prologue, usize),
    geometry: &ConvGeometry,
    layout: &PhaseLayout,
    phases: &mut [f32],
) {
    let input_bias = prologue.bias(channel);
    // The closures are `inline(always)`: left out of line, one is compiled without the
    // caller's AVX2.
    finishing!(prologue, |finish| split_into_phases_finished(
        input,
        geometry,
        layout,
        phases,
        #[inline(always)]
        |value| finish(value, input_bias),
    ));
}

/// How a layer's planes are computed, decided once per layer.
enum Planes {
    /// Read and written in place by [`plane3x3`](super::plane3x3) (x86-64 with AVX-512F, 3x3
    /// filters at strides 1 and 2), the layer's geometry.
    #[cfg(target_arch = "x86_64")]
    InPlace(ConvGeometry),
    /// On phase planes, in these bands (see [`plane_bands`]).
    Bands(Vec<PlaneBand>),
}

impl Planes {
    fn new(geometry: &ConvGeometry, prologue: Prologue, activation: Nonlinearity) -> Self {
        #[cfg(target_arch = "x86_64")]
        if super::plane3x3::fits(geometry, prologue, activation) {
            return Self::InPlace(*geometry);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (prologue, activation);
        Self::Bands(plane_bands(geometry))
    }

    /// Whether the planes are computed in place.
    fn in_place(&self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::InPlace(_) => true,
            Self::Bands(_) => false,
        }
    }
}

/// One depthwise plane, in place or band by band as `planes` says: channel `channel`, its input
/// finished by `prologue` as it is read.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn depthwise_plane<M: MulAdd>(
    input: &[f32],
    (prologue, channel): (Prologue, usize),
    out: &mut [MaybeUninit<f32>],
    filter: &[f32],
    bias: f32,
    planes: &Planes,
    scratch: &mut Scratch,
    activation: Nonlinearity,
) {
    match planes {
        #[cfg(target_arch = "x86_64")]
        Planes::InPlace(geometry) => super::plane3x3::plane(
            input,
            (prologue, channel),
            geometry,
            filter,
            bias,
            activation,
            out,
        ),
        Planes::Bands(bands) => {
            for band in bands {
                let g = &band.geometry;
                depthwise_band::<M>(
                    &input[band.start * g.in_width..(band.start + g.in_height) * g.in_width],
                    (prologue, channel),
                    &mut out[band.first * g.out_width..(band.first + g.out_height) * g.out_width],
                    filter,
                    bias,
                    g,
                    &band.layout,
                    &band.offsets,
                    scratch,
                    activation,
                );
            }
        }
    }
}

/// One depthwise plane (or band of one): phases (the input finished by `prologue` as it is
/// copied in), flat convolution, rows out, activation.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn depthwise_band<M: MulAdd>(
    input: &[f32],
    (prologue, channel): (Prologue, usize),
    out: &mut [MaybeUninit<f32>],
    filter: &[f32],
    bias: f32,
    geometry: &ConvGeometry,
    layout: &PhaseLayout,
    offsets: &[usize],
    scratch: &mut Scratch,
    activation: Nonlinearity,
) {
    if scratch.zeroed_for != Some(*geometry) {
        scratch.phases.clear();
        scratch.phases.resize(layout.total, 0.0);
        scratch.zeroed_for = Some(*geometry);
    }
    // Dispatched on its own rather than inlined here: with its six copies (one per prologue
    // activation) inside this function, the flat convolution below ran 5-10% slower (V2's
    // 144-channel 56x56 layers, one thread), without them at the speed it had before.
    dispatch!(split_finished(
        input,
        (prologue, channel),
        geometry,
        layout,
        &mut scratch.phases
    ));
    // Every element of `wide` is overwritten: no clearing.
    scratch.wide.resize(layout.flat_len(geometry), 0.0);
    if rows3::fits(geometry, layout) {
        let plane = FlatRows {
            width: layout.width,
            out_width: geometry.out_width,
            rows: geometry.out_height,
        };
        flat_conv_3x3::<M>(&scratch.phases, plane, filter, bias, &mut scratch.wide);
    } else {
        flat_conv::<M>(&scratch.phases, offsets, filter, bias, &mut scratch.wide);
    }
    compact_rows(
        &scratch.wide,
        out,
        layout.width,
        geometry.out_width,
        activation,
    );
}

/// Copies the `out_width` valid columns of each flat row into the output plane, activated as
/// they are copied (one pass over the output, not two: 0.89-0.96x the time of the 112x112
/// layers, ~0.99x at 56x56), writing all of it.
///
/// # Panics
/// If `out` is not a whole number of `out_width`-long rows, or `wide` is too short for them.
#[inline(always)]
fn compact_rows(
    wide: &[f32],
    out: &mut [MaybeUninit<f32>],
    row_distance: usize,
    out_width: usize,
    activation: Nonlinearity,
) {
    // Checked, not assumed: a remainder would be left unwritten and then read as floats.
    assert!(
        out_width > 0 && out.len().is_multiple_of(out_width),
        "compact_rows: {} values are not whole rows of {out_width}",
        out.len()
    );
    #[inline(always)]
    fn copy(
        wide: &[f32],
        out: &mut [MaybeUninit<f32>],
        row_distance: usize,
        out_width: usize,
        f: impl Fn(f32) -> f32,
    ) {
        for (oy, out_row) in out.chunks_exact_mut(out_width).enumerate() {
            let row = &wide[oy * row_distance..oy * row_distance + out_width];
            for (slot, &value) in out_row.iter_mut().zip(row) {
                slot.write(f(value));
            }
        }
    }
    match activation {
        Nonlinearity::ReLU => copy(wide, out, row_distance, out_width, relu),
        Nonlinearity::ReLU6 => copy(wide, out, row_distance, out_width, relu6),
        Nonlinearity::HardSwish => copy(wide, out, row_distance, out_width, hard_swish),
        Nonlinearity::Gelu => copy(wide, out, row_distance, out_width, gelu),
        Nonlinearity::Identity => copy(wide, out, row_distance, out_width, |x| x),
    }
}

/// Depthwise convolution (`groups == in_channels == out_channels`). `weight`: `[c, 1, kh, kw]`.
/// Needs [`supports`].
pub(crate) fn depthwise(
    x: &[f32],
    batch: usize,
    geometry: &ConvGeometry,
    weight: &[f32],
    epilogue: Epilogue,
) -> Vec<f32> {
    depthwise_after(x, Prologue::NONE, batch, geometry, weight, epilogue)
}

/// A 1x1 convolution and the depthwise convolution that reads it: the 1x1's bias and activation
/// (`pointwise`) applied as the depthwise convolution copies its input in, not in a pass of
/// their own (see [`Prologue`]). `x`: `[batch, pointwise.in_channels, h, w]`; weights as
/// [`pointwise`](super::conv::pointwise) and [`depthwise`] take them. The output is the
/// depthwise convolution's, bit for bit what the two layers give one after the other.
///
/// # Panics
/// If the depthwise convolution does not read the 1x1's output (channels, size), or as the two
/// kernels do.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pointwise_then_depthwise(
    x: &[f32],
    batch: usize,
    (pointwise_geometry, pointwise_weight, pointwise): (&ConvGeometry, &[f32], Prologue),
    geometry: &ConvGeometry,
    weight: &[f32],
    epilogue: Epilogue,
) -> Vec<f32> {
    assert!(
        pointwise_geometry.out_channels == geometry.in_channels
            && [pointwise_geometry.out_height, pointwise_geometry.out_width]
                == [geometry.in_height, geometry.in_width],
        "pointwise_then_depthwise: the depthwise convolution does not read the 1x1's output"
    );
    let expanded = super::conv::pointwise(
        x,
        batch,
        pointwise_geometry,
        pointwise_weight,
        Epilogue::NONE,
    );
    depthwise_after(&expanded, pointwise, batch, geometry, weight, epilogue)
}

/// [`depthwise`] of an input that `prologue` finishes as it is read.
fn depthwise_after(
    x: &[f32],
    prologue: Prologue,
    batch: usize,
    geometry: &ConvGeometry,
    weight: &[f32],
    epilogue: Epilogue,
) -> Vec<f32> {
    let channels = geometry.in_channels;
    let (in_pixels, out_pixels) = (geometry.in_pixels(), geometry.out_pixels());
    let taps = geometry.kernel[0] * geometry.kernel[1];
    // Small output planes go eight channels at a time through the interleaved kernel (see
    // `interleaved.rs`); the channels past the last whole group, and large planes, plane by
    // plane.
    let interleave = interleaved::supports(geometry)
        && (out_pixels <= INTERLEAVED_MAX_PIXELS
            || (geometry.stride == [1, 1] && out_pixels <= INTERLEAVED_MAX_PIXELS_STRIDE_1));
    // 3x3 planes are read and written in place where the CPU can (`plane3x3`), also where the
    // interleaved kernel would take them: 0.47-0.64x its time at 28x28 and 14x14 outputs at
    // stride 1, 0.71-0.73x at 14x14 outputs at stride 2.
    let kernel = Planes::new(geometry, prologue, epilogue.activation);
    let groups = if interleave && !kernel.in_place() {
        channels / GROUP
    } else {
        0
    };
    let planes = |output: &mut [MaybeUninit<f32>], first_plane: usize| {
        output
            .par_chunks_mut(out_pixels)
            .enumerate()
            .with_min_len((TASK_ELEMENTS / out_pixels).max(1))
            .for_each_init(Scratch::default, |scratch, (plane, out)| {
                let plane = first_plane + plane;
                let channel = plane % channels;
                dispatch!(depthwise_plane(
                    &x[plane * in_pixels..(plane + 1) * in_pixels],
                    (prologue, channel),
                    out,
                    &weight[channel * taps..(channel + 1) * taps],
                    epilogue.bias.map_or(0.0, |bias| bias[channel]),
                    &kernel,
                    scratch,
                    epilogue.activation
                ));
            })
    };
    let fill = |output: &mut [MaybeUninit<f32>]| {
        if groups == 0 {
            return planes(output, 0);
        }
        output
            .par_chunks_mut(channels * out_pixels)
            .enumerate()
            .for_each(|(image, image_out)| {
                let (grouped, rest) = image_out.split_at_mut(groups * GROUP * out_pixels);
                grouped
                    .par_chunks_mut(GROUP * out_pixels)
                    .enumerate()
                    .with_min_len((TASK_ELEMENTS / (GROUP * out_pixels)).max(1))
                    .for_each_init(Tile::default, |tile, (group, out)| {
                        let first = group * GROUP;
                        let bias: [f32; GROUP] = std::array::from_fn(|c| {
                            epilogue.bias.map_or(0.0, |bias| bias[first + c])
                        });
                        let start = (image * channels + first) * in_pixels;
                        dispatch!(interleaved_group(
                            &x[start..start + GROUP * in_pixels],
                            (prologue, first),
                            geometry,
                            &weight[first * taps..(first + GROUP) * taps],
                            bias,
                            epilogue.activation,
                            tile,
                            out
                        ));
                    });
                planes(rest, image * channels + groups * GROUP);
            });
    };
    // SAFETY: each `out_pixels` chunk of `output` (all of it: its length is a multiple) goes to
    // `depthwise_plane`, whose `compact_rows` writes the whole chunk (whole rows) or panics, or
    // is one of the `GROUP` planes of a chunk that `interleaved::group` writes in full or panics.
    unsafe { filled_by(batch * channels * out_pixels, fill) }
}

/// [`depthwise`] on one image, on the calling thread, into `out` (`[channels, out_pixels]`),
/// writing every element of it or panicking. For callers that are parallel already (one task per
/// band of a fused block).
///
/// # Panics
/// If `out` is not `channels * out_pixels` long or `x` is shorter than one input image.
pub(crate) fn depthwise_image(
    x: &[f32],
    geometry: &ConvGeometry,
    weight: &[f32],
    epilogue: Epilogue,
    out: &mut [MaybeUninit<f32>],
) {
    let channels = geometry.in_channels;
    let (in_pixels, out_pixels) = (geometry.in_pixels(), geometry.out_pixels());
    assert!(
        out_pixels > 0 && out.len() == channels * out_pixels && x.len() >= channels * in_pixels
    );
    let taps = geometry.kernel[0] * geometry.kernel[1];
    let kernel = Planes::new(geometry, Prologue::NONE, epilogue.activation);
    let mut scratch = Scratch::default();
    for (channel, plane_out) in out.chunks_exact_mut(out_pixels).enumerate() {
        dispatch!(depthwise_plane(
            &x[channel * in_pixels..(channel + 1) * in_pixels],
            (Prologue::NONE, channel),
            plane_out,
            &weight[channel * taps..(channel + 1) * taps],
            epilogue.bias.map_or(0.0, |bias| bias[channel]),
            &kernel,
            &mut scratch,
            epilogue.activation
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::pointwise;
    use crate::kernels::{test_geometry, test_values};

    /// Whether `plane3x3` runs on this CPU.
    fn has_avx512f() -> bool {
        #[cfg(target_arch = "x86_64")]
        return crate::kernels::simd::has_avx512f();
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// 3x3 planes at strides 1 and 2 computed in place (`plane3x3`, where the CPU has AVX-512F)
    /// equal the phase planes' flat path bit for bit: planes with and without whole register
    /// blocks of rows and columns, odd and even sizes, every prologue and activation it takes.
    #[test]
    fn planes_in_place_equal_the_phase_planes() {
        let activations = [
            Nonlinearity::ReLU6,
            Nonlinearity::HardSwish,
            Nonlinearity::ReLU,
            Nonlinearity::Identity,
        ];
        let mut planes_in_place = 0;
        // (input size, stride, whether the output is large enough to be computed in place)
        for (index, (size, stride, fits)) in [
            ([8, 16], 1, true),
            ([9, 17], 1, true),
            ([13, 31], 1, true),
            ([20, 56], 1, true),
            ([56, 56], 1, true),
            ([11, 40], 1, true),
            ([14, 14], 1, true),
            ([7, 7], 1, false),
            ([4, 5], 1, false),
            ([16, 16], 2, true),
            ([17, 33], 2, true),
            ([31, 47], 2, true),
            ([112, 18], 2, true),
            ([20, 56], 2, true),
            ([28, 28], 2, true),
            ([14, 14], 2, false),
            ([13, 40], 2, false),
        ]
        .into_iter()
        .enumerate()
        {
            let g = test_geometry([3, 3], size, 3, stride, 1);
            let pixels = size[0] * size[1];
            let out_pixels = g.out_pixels();
            let seed = index as u32 * 10;
            let x = test_values(3 * pixels, seed);
            let weight = test_values(27, seed + 1);
            let bias = test_values(3, seed + 2);
            let input_bias = test_values(3, seed + 3);
            let phase_planes = Planes::Bands(plane_bands(&g));
            for &activation in &activations {
                for (&input_activation, input_bias) in activations
                    .iter()
                    .flat_map(|a| [(a, None), (a, Some(input_bias.as_slice()))])
                {
                    let prologue = Prologue {
                        bias: input_bias,
                        activation: input_activation,
                    };
                    let in_place_planes = Planes::new(&g, prologue, activation);
                    let in_place = in_place_planes.in_place();
                    assert_eq!(in_place, fits && has_avx512f(), "{size:?} stride {stride}");
                    if !in_place {
                        continue;
                    }
                    planes_in_place += 1;
                    for channel in 0..3 {
                        let input = &x[channel * pixels..(channel + 1) * pixels];
                        let filter = &weight[channel * 9..(channel + 1) * 9];
                        let mut expected = vec![MaybeUninit::new(f32::NAN); out_pixels];
                        let mut scratch = Scratch::default();
                        dispatch!(depthwise_plane(
                            input,
                            (prologue, channel),
                            &mut expected,
                            filter,
                            bias[channel],
                            &phase_planes,
                            &mut scratch,
                            activation
                        ));
                        let mut actual = vec![MaybeUninit::new(f32::NAN); out_pixels];
                        dispatch!(depthwise_plane(
                            input,
                            (prologue, channel),
                            &mut actual,
                            filter,
                            bias[channel],
                            &in_place_planes,
                            &mut scratch,
                            activation
                        ));
                        for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
                            // SAFETY: both kernels write every element (the NaNs they start
                            // with are initialized values anyway).
                            let (a, e) = unsafe { (a.assume_init(), e.assume_init()) };
                            assert_eq!(
                                a.to_bits(),
                                e.to_bits(),
                                "{size:?} stride {stride} {input_activation:?} {:?} {activation:?} channel {channel} pixel {i}",
                                input_bias.is_some()
                            );
                        }
                    }
                }
            }
        }
        // Every size that fits, with each of the 4 activations after each of the 8 prologues,
        // where the CPU has AVX-512F; none elsewhere.
        let expected = if has_avx512f() { 13 * 4 * 8 } else { 0 };
        assert_eq!(planes_in_place, expected);
    }

    /// The expansion's bias and activation applied as the depthwise convolution copies its
    /// input give exactly what the two layers give one after the other: on the flat planes
    /// (strides 1 and 2, 5x5, a plane in bands), on the interleaved tile (with input pixels past
    /// the last whole eight, and channels past the last whole group), for every activation, and
    /// without a bias.
    #[test]
    fn pointwise_then_depthwise_equals_the_two_layers() {
        let cases = [
            // (in channels, expanded channels, size, kernel, stride)
            (3, 5, [9, 12], 3, 1),
            (4, 6, [11, 9], 3, 2),
            (3, 4, [10, 7], 5, 2),
            (2, 3, [100, 90], 3, 2),
            (5, 19, [14, 14], 3, 1),
            (3, 16, [7, 7], 5, 1),
            (6, 17, [13, 15], 3, 2),
            (4, 8, [28, 28], 5, 2),
        ];
        let activations = [
            Nonlinearity::ReLU6,
            Nonlinearity::HardSwish,
            Nonlinearity::ReLU,
            Nonlinearity::Gelu,
            Nonlinearity::Identity,
        ];
        for (index, &(in_channels, channels, size, kernel, stride)) in cases.iter().enumerate() {
            let seed = index as u32 * 10;
            let batch = 2;
            let expand = test_geometry([in_channels, channels], size, 1, 1, 1);
            let g = test_geometry([channels, channels], size, kernel, stride, 1);
            let x = test_values(batch * in_channels * size[0] * size[1], seed);
            let expand_weight = test_values(channels * in_channels, seed + 1);
            // Biases around 2, so that some sums cross ReLU6's 6 and h-swish's -3 and 3.
            let expand_bias: Vec<f32> = test_values(channels, seed + 2)
                .iter()
                .map(|b| 2.0 + 3.0 * b)
                .collect();
            let weight = test_values(channels * kernel * kernel, seed + 3);
            let bias = test_values(channels, seed + 4);
            for (a, &activation) in activations.iter().enumerate() {
                let expand_activation = activations[(a + index) % activations.len()];
                for expand_bias in [Some(expand_bias.as_slice()), None] {
                    let epilogue = Epilogue {
                        bias: Some(&bias),
                        residual: None,
                        activation,
                    };
                    let expanded = pointwise(
                        &x,
                        batch,
                        &expand,
                        &expand_weight,
                        Epilogue {
                            bias: expand_bias,
                            residual: None,
                            activation: expand_activation,
                        },
                    );
                    let expected = depthwise(&expanded, batch, &g, &weight, epilogue);
                    let actual = pointwise_then_depthwise(
                        &x,
                        batch,
                        (
                            &expand,
                            &expand_weight,
                            Prologue {
                                bias: expand_bias,
                                activation: expand_activation,
                            },
                        ),
                        &g,
                        &weight,
                        epilogue,
                    );
                    assert_eq!(actual.len(), expected.len());
                    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
                        assert!(
                            a == e,
                            "case {index} ({expand_activation:?} then {activation:?}, bias {}): \
                             output {i}: {a} vs {e}",
                            expand_bias.is_some()
                        );
                    }
                }
            }
        }
    }
}
