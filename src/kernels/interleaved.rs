//! Depthwise convolutions eight channels at a time, on a channel-interleaved tile: the planes of
//! eight channels are transposed (8x8 blocks, in registers) into one zero-padded tile whose
//! pixels hold the eight channels side by side (`[rows][columns][8]`). Each output pixel of the
//! eight channels is then `k * k` multiply-adds of one vector register against the filter taps,
//! four pixels of a row at a time (four independent chains), with no bounds tests and no work on
//! padding columns; the outputs are activated and transposed back into their planes.
//!
//! This is the layout ONNX Runtime's depthwise kernels work in (NCHWc), kept inside one layer:
//! it wins where the flat planes of `direct.rs` lose, on small maps (14x14, 7x7: a plane's rows
//! are too short for whole 32-output register blocks, and per-plane set-up dominates; 28x28 at
//! stride 1), and loses on large ones (its tile no longer fits in L1). `direct::depthwise` picks
//! per layer; the figures are in `docs/performance.md`.

use std::mem::MaybeUninit;

use super::conv::{ConvGeometry, Prologue, finishing};
use super::elementwise::{Nonlinearity, activate_slice};
use super::simd::{MulAdd, transpose8};

/// Channels computed together: one AVX2 register.
pub(crate) const GROUP: usize = 8;

/// Whether [`group`] computes this geometry: a square 3x3 or 5x5 kernel, no dilation, equal
/// strides of 1 or 2.
pub(crate) fn supports(geometry: &ConvGeometry) -> bool {
    let [kernel_h, kernel_w] = geometry.kernel;
    kernel_h == kernel_w
        && matches!(kernel_h, 3 | 5)
        && geometry.dilation == [1, 1]
        && geometry.stride[0] == geometry.stride[1]
        && matches!(geometry.stride[0], 1 | 2)
        && geometry.out_height > 0
        && geometry.out_width > 0
}

/// The zero-padded tile of one group, kept by a task across groups: every group of one geometry
/// writes the same positions, so the padding stays zero.
#[derive(Default)]
pub(crate) struct Tile {
    pixels: Vec<[f32; GROUP]>,
    /// The outputs, interleaved as the tile, before they go to their planes.
    staging: Vec<[f32; GROUP]>,
    /// Where each input pixel goes in `pixels`: its place in the tile, or the last pixel (a
    /// slot no output reads) for the pixels outside what the outputs read.
    positions: Vec<usize>,
    zeroed_for: Option<ConvGeometry>,
}

/// Tile rows and columns: every position a tap of some output reaches.
fn tile_size(geometry: &ConvGeometry) -> [usize; 2] {
    let stride = geometry.stride[0];
    let kernel = geometry.kernel[0];
    [
        (geometry.out_height - 1) * stride + kernel,
        (geometry.out_width - 1) * stride + kernel,
    ]
}

/// Depthwise convolution of [`GROUP`] channels of one image: `planes` their input planes
/// (`[GROUP, in_pixels]`), finished as they are copied into the tile by `prologue`'s
/// [`Prologue`], whose channels these are from `prologue.1` on; `filters` their filters as torch
/// stores them (`[GROUP, k, k]`), `out` their output planes (`[GROUP, out_pixels]`), every element of which is written.
/// Needs [`supports`].
///
/// # Panics
/// If a slice is shorter than these shapes or the geometry is not supported.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn group<M: MulAdd>(
    planes: &[f32],
    prologue: (Prologue, usize),
    geometry: &ConvGeometry,
    filters: &[f32],
    bias: [f32; GROUP],
    activation: Nonlinearity,
    tile: &mut Tile,
    out: &mut [MaybeUninit<f32>],
) {
    match [geometry.kernel[0], geometry.stride[0]] {
        [3, 1] => group_k::<M, 3, 1>(
            planes, prologue, geometry, filters, bias, activation, tile, out,
        ),
        [3, 2] => group_k::<M, 3, 2>(
            planes, prologue, geometry, filters, bias, activation, tile, out,
        ),
        [5, 1] => group_k::<M, 5, 1>(
            planes, prologue, geometry, filters, bias, activation, tile, out,
        ),
        [5, 2] => group_k::<M, 5, 2>(
            planes, prologue, geometry, filters, bias, activation, tile, out,
        ),
        [kernel, stride] => {
            panic!("interleaved depthwise: unsupported {kernel}x{kernel} kernel, stride {stride}")
        }
    }
}

/// Output pixels computed together along a row.
const PIXELS: usize = 4;
/// Tile pixels a block of [`PIXELS`] outputs reads on one kernel row: at most `5 + 3 * 2`.
const WINDOW: usize = 11;

/// `acc[c] += weights[c] * x[c]` for the group's channels.
#[inline(always)]
fn mul_add_lanes<M: MulAdd>(acc: &mut [f32; GROUP], weights: &[f32; GROUP], x: &[f32; GROUP]) {
    for ((acc, &w), &x) in acc.iter_mut().zip(weights).zip(x) {
        *acc = M::mul_add(*acc, w, x);
    }
}

/// Writes the group's input planes (`[GROUP, in_pixels]`) into their places in the tile, each
/// pixel's channels finished by `finish` (the producer's bias and activation, if left). Each
/// pixel goes to its precomputed place: no bookkeeping per pixel (walking the row and column
/// along with the pixel index, with a branch per pixel, cost 7-25% of the layer).
#[inline(always)]
fn fill_tile(
    planes: &[f32],
    in_pixels: usize,
    tile: &mut Tile,
    finish: impl Fn(&mut [f32; GROUP]),
) {
    let Tile {
        pixels, positions, ..
    } = tile;
    let whole = in_pixels / GROUP * GROUP;
    for first in (0..whole).step_by(GROUP) {
        let block: [[f32; GROUP]; GROUP] = std::array::from_fn(|channel| {
            planes[channel * in_pixels + first..][..GROUP]
                .try_into()
                .unwrap_or([0.0; GROUP])
        });
        for (mut values, &at) in transpose8(&block)
            .into_iter()
            .zip(&positions[first..first + GROUP])
        {
            finish(&mut values);
            pixels[at] = values;
        }
    }
    for pixel in whole..in_pixels {
        let mut values = std::array::from_fn(|channel| planes[channel * in_pixels + pixel]);
        finish(&mut values);
        pixels[positions[pixel]] = values;
    }
}

/// [`group`] for a `K`x`K` kernel at stride `S`, both known at compile time: a block's taps
/// are then constant offsets into one fixed-size window of the tile.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn group_k<M: MulAdd, const K: usize, const S: usize>(
    planes: &[f32],
    (prologue, first_channel): (Prologue, usize),
    geometry: &ConvGeometry,
    filters: &[f32],
    bias: [f32; GROUP],
    activation: Nonlinearity,
    tile: &mut Tile,
    out: &mut [MaybeUninit<f32>],
) {
    let (in_height, in_width) = (geometry.in_height, geometry.in_width);
    let (out_height, out_width) = (geometry.out_height, geometry.out_width);
    let (in_pixels, out_pixels) = (geometry.in_pixels(), geometry.out_pixels());
    let [pad_top, pad_left] = geometry.padding;
    let [tile_h, tile_w] = tile_size(geometry);
    assert!(
        supports(geometry)
            && geometry.kernel[0] == K
            && geometry.stride[0] == S
            && planes.len() >= GROUP * in_pixels
            && filters.len() >= GROUP * K * K
            && out.len() == GROUP * out_pixels
    );
    // The input pixels, eight at a time transposed into eight tile pixels (the tile covers
    // every input pixel an output reads; rows or columns past it are skipped).
    let rows = in_height.min(tile_h.saturating_sub(pad_top));
    let columns = in_width.min(tile_w.saturating_sub(pad_left));
    if tile.zeroed_for != Some(*geometry) {
        let unread = tile_h * tile_w + WINDOW;
        tile.pixels.clear();
        tile.pixels.resize(unread + 1, [0.0; GROUP]);
        tile.positions.clear();
        for iy in 0..in_height {
            for ix in 0..in_width {
                tile.positions.push(if iy < rows && ix < columns {
                    (iy + pad_top) * tile_w + ix + pad_left
                } else {
                    unread
                });
            }
        }
        tile.zeroed_for = Some(*geometry);
    }
    let biases: [f32; GROUP] = std::array::from_fn(|c| prologue.bias(first_channel + c));
    finishing!(prologue, |finish| fill_tile(
        planes,
        in_pixels,
        tile,
        #[inline(always)]
        |values: &mut [f32; GROUP]| {
            for (value, &bias) in values.iter_mut().zip(&biases) {
                *value = finish(*value, bias);
            }
        }
    ));
    // The filters tap by tap, eight channels each.
    let mut taps = [[[0.0f32; GROUP]; K]; K];
    for (channel, filter) in filters.chunks_exact(K * K).take(GROUP).enumerate() {
        for (tap, &weight) in filter.iter().enumerate() {
            taps[tap / K][tap % K][channel] = weight;
        }
    }
    let Tile {
        pixels: tile,
        staging,
        ..
    } = tile;
    // Every pixel is written below: sized, not cleared.
    staging.resize(out_pixels, [0.0; GROUP]);
    for oy in 0..out_height {
        // Four output pixels at a time along the row: four independent chains of multiply-adds
        // (one chain would wait on each one's latency), each adding the taps in the order of
        // `direct.rs`. A row whose width is not a multiple of four ends with a block that
        // overlaps the one before (recomputing, and rewriting, the same values).
        let mut ox = 0;
        while ox < out_width {
            let first = if ox + PIXELS <= out_width || out_width < PIXELS {
                ox
            } else {
                out_width - PIXELS
            };
            if first + PIXELS > out_width {
                // A row narrower than a block, one pixel at a time.
                for ox in first..out_width {
                    let mut acc = bias;
                    for (ky, taps) in taps.iter().enumerate() {
                        let row = &tile[(oy * S + ky) * tile_w + ox * S..][..K];
                        for (pixel, weights) in row.iter().zip(taps) {
                            mul_add_lanes::<M>(&mut acc, weights, pixel);
                        }
                    }
                    staging[oy * out_width + ox] = acc;
                }
                break;
            }
            let [mut a0, mut a1, mut a2, mut a3] = [bias; PIXELS];
            for (ky, taps) in taps.iter().enumerate() {
                // The pixels the block's taps read on this row (the tile has `WINDOW` spare
                // columns at its end, so the window always fits).
                let window: &[[f32; GROUP]; WINDOW] = tile[(oy * S + ky) * tile_w + first * S..]
                    [..WINDOW]
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("a window of WINDOW pixels"));
                for (kx, weights) in taps.iter().enumerate() {
                    mul_add_lanes::<M>(&mut a0, weights, &window[kx]);
                    mul_add_lanes::<M>(&mut a1, weights, &window[kx + S]);
                    mul_add_lanes::<M>(&mut a2, weights, &window[kx + 2 * S]);
                    mul_add_lanes::<M>(&mut a3, weights, &window[kx + 3 * S]);
                }
            }
            staging[oy * out_width + first..][..PIXELS].copy_from_slice(&[a0, a1, a2, a3]);
            ox = first + PIXELS;
        }
    }
    // The activation over every channel of every pixel, then eight pixels at a time transposed
    // into their eight planes.
    activate_slice::<M>(staging.as_flattened_mut(), activation);
    let whole = out_pixels / GROUP * GROUP;
    for first in (0..whole).step_by(GROUP) {
        let block: &[[f32; GROUP]; GROUP] = staging[first..first + GROUP]
            .try_into()
            .unwrap_or_else(|_| unreachable!("a block of GROUP pixels"));
        for (channel, values) in transpose8(block).into_iter().enumerate() {
            for (slot, value) in out[channel * out_pixels + first..][..GROUP]
                .iter_mut()
                .zip(values)
            {
                slot.write(value);
            }
        }
    }
    for (pixel, values) in staging.iter().enumerate().skip(whole) {
        for (channel, &value) in values.iter().enumerate() {
            out[channel * out_pixels + pixel].write(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::Plain;
    use crate::kernels::{test_geometry, test_values};

    /// The group through the plain (no SIMD) copy of the kernel, whatever this CPU has (the
    /// dispatched copy is what `direct::depthwise`'s tests run), against the definition in f64.
    #[test]
    fn plain_copy_matches_the_definition() {
        for (index, (size, kernel, stride)) in [
            ([7, 7], 3, 1),
            ([14, 14], 5, 2),
            ([9, 6], 5, 1),
            ([3, 2], 3, 2),
            ([1, 1], 5, 1),
        ]
        .into_iter()
        .enumerate()
        {
            let g = test_geometry([GROUP, GROUP], size, kernel, stride, 1);
            let seed = index as u32;
            let planes = test_values(GROUP * g.in_pixels(), 10 + seed);
            let filters = test_values(GROUP * kernel * kernel, 20 + seed);
            let bias: [f32; GROUP] = std::array::from_fn(|c| c as f32 * 0.25 - 1.0);
            let mut tile = Tile::default();
            let mut out = vec![MaybeUninit::new(f32::NAN); GROUP * g.out_pixels()];
            group::<Plain>(
                &planes,
                (Prologue::NONE, 0),
                &g,
                &filters,
                bias,
                Nonlinearity::ReLU6,
                &mut tile,
                &mut out,
            );
            for c in 0..GROUP {
                for oy in 0..g.out_height {
                    for ox in 0..g.out_width {
                        let mut sum = f64::from(bias[c]);
                        for ky in 0..kernel {
                            for kx in 0..kernel {
                                let iy = (oy * stride + ky) as isize - g.padding[0] as isize;
                                let ix = (ox * stride + kx) as isize - g.padding[1] as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= g.in_height as isize
                                    || ix >= g.in_width as isize
                                {
                                    continue;
                                }
                                let x = planes
                                    [c * g.in_pixels() + iy as usize * g.in_width + ix as usize];
                                let w = filters[(c * kernel + ky) * kernel + kx];
                                sum += f64::from(x) * f64::from(w);
                            }
                        }
                        let expected = sum.clamp(0.0, 6.0);
                        // SAFETY: `out` was initialized (NaN) when allocated.
                        let actual = unsafe {
                            out[c * g.out_pixels() + oy * g.out_width + ox].assume_init()
                        };
                        assert!(
                            (f64::from(actual) - expected).abs() < 1e-5,
                            "case {index}, channel {c}, ({oy}, {ox}): {actual} vs {expected}"
                        );
                    }
                }
            }
        }
    }
}
