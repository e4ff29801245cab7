//! Dense 3x3 convolutions at stride 2 on a few input channels (MobileNet's stems: 3 -> 32 or
//! 16 channels at the image's full size), NCHW in and out, with AVX-512F.
//!
//! With three input channels, im2col and a matrix multiply (`conv::dense`) multiply a
//! 27-deep product: gemm's packing and its 27-step inner loop leave the multiply-adds a third of
//! its time (V2's stem: 380 us on one thread, ONNX Runtime 268). Here, for 32 output pixels of
//! a row, the 27 input vectors (each input channel, kernel row and column: 16 pixels apart by
//! the stride, gathered with one two-register permute from two contiguous loads) are made once
//! and kept in L1, then each group of eight output channels sums its 27 taps over them, in
//! registers (16 accumulators), and stores its rows with bias and activation applied. The
//! output rows are split between the threads in bands.
//!
//! The sums run over the taps in the weight's order (input channel, kernel row, column) with
//! fused multiply-adds from 0, then the bias, as the matrix multiply's; the outputs agree with
//! `conv::dense` within rounding (1e-6 relative in the tests), not bit for bit (gemm splits its
//! 27-deep sums differently).

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::blocked::activate_wide;
use super::conv::{ConvGeometry, Epilogue, SharedOutput, filled_by, filled_into};
use super::elementwise::Nonlinearity;
use super::parallel::for_each_task;
use super::simd::has_avx512f;

/// The most input channels taken (the input vectors of 32 pixels stay under 8 KiB of L1).
const MAX_IN_CHANNELS: usize = 4;

/// Output channels per register tile.
const GROUP: usize = 8;

/// Pixels a vector; a tile is two vectors (32 output pixels of a row).
const LANES: usize = 16;

/// Taps of a 3x3 kernel.
const TAPS: usize = 9;

/// Whether [`conv`] computes this layer, with this activation and no residual: a CPU with
/// AVX-512F; 1 to 4 input channels, output channels a multiple of eight; a 3x3 kernel at
/// stride 2 with padding 1, undilated; not GELU.
pub(crate) fn supports(g: &ConvGeometry, activation: Nonlinearity) -> bool {
    has_avx512f()
        && (1..=MAX_IN_CHANNELS).contains(&g.in_channels)
        && g.out_channels > 0
        && g.out_channels.is_multiple_of(GROUP)
        && g.kernel == [3, 3]
        && g.stride == [2, 2]
        && g.padding == [1, 1]
        && g.dilation == [1, 1]
        && g.in_height > 0
        && g.in_width > 0
        && g.out_height == (g.in_height - 1) / 2 + 1
        && g.out_width == (g.in_width - 1) / 2 + 1
        && !matches!(activation, Nonlinearity::Gelu)
}

/// The convolution of `x` (`[batch, in, h, w]`) by `weight` (`[out, in, 3, 3]`), then the
/// epilogue's bias and activation: `[batch, out, out_h, out_w]`. Needs [`supports`].
///
/// # Panics
/// If the layer is not [`supports`]ed, the epilogue has a residual, or a slice is shorter than
/// the shapes say.
pub(crate) fn conv(
    x: &[f32],
    batch: usize,
    g: &ConvGeometry,
    weight: &[f32],
    epilogue: Epilogue,
) -> Vec<f32> {
    assert!(supports(g, epilogue.activation) && epilogue.residual.is_none());
    let (image_in, image_out) = (
        g.in_channels * g.in_pixels(),
        g.out_channels * g.out_pixels(),
    );
    assert!(x.len() >= batch * image_in);
    assert!(weight.len() >= g.out_channels * g.in_channels * TAPS);
    assert!(
        epilogue
            .bias
            .is_none_or(|bias| bias.len() >= g.out_channels)
    );
    let bands = rayon::current_num_threads().clamp(1, g.out_height);
    let fill = |output: &mut [MaybeUninit<f32>]| {
        let shared = SharedOutput(output.as_mut_ptr().cast::<f32>());
        for_each_task(batch * bands, |task| {
            let (image, band) = (task / bands, task % bands);
            let rows = [
                g.out_height * band / bands,
                g.out_height * (band + 1) / bands,
            ];
            // SAFETY: the CPU has AVX-512F and the layer's shapes are what `band_rows` needs
            // (both asserted above); the image's input and weights hold what the shapes say
            // (asserted above); this task alone writes these rows of this image's output
            // (images and bands are disjoint), which lie inside the output.
            unsafe {
                band_rows::<false>(
                    &x[image * image_in..(image + 1) * image_in],
                    g,
                    weight,
                    &epilogue,
                    rows,
                    shared.at(image * image_out),
                )
            }
        });
    };
    // SAFETY: the tasks' bands cover every output row of every image, and `band_rows` writes
    // every channel and column of its rows.
    unsafe { filled_by(batch * image_out, fill) }
}

/// [`conv`] on one image (`x`: `[in, h, w]`), its output in the channel-blocked layout of
/// `kernels::blocked` (`[out / 8, out_h * out_w, 8]`), in `buffer`'s allocation, the rows
/// split in bands between up to `threads` threads: the stem that starts a run of blocked
/// inverted residuals writes their input directly, without a conversion after it. The same
/// values as [`conv`]'s, bit for bit (the same sums, stored transposed). Needs [`supports`].
///
/// # Panics
/// As [`conv`].
pub(crate) fn conv_blocked_into(
    x: &[f32],
    g: &ConvGeometry,
    weight: &[f32],
    epilogue: Epilogue,
    buffer: Vec<f32>,
    threads: usize,
) -> Vec<f32> {
    assert!(supports(g, epilogue.activation) && epilogue.residual.is_none());
    assert!(x.len() >= g.in_channels * g.in_pixels());
    assert!(weight.len() >= g.out_channels * g.in_channels * TAPS);
    assert!(
        epilogue
            .bias
            .is_none_or(|bias| bias.len() >= g.out_channels)
    );
    let bands = threads.clamp(1, g.out_height);
    let fill = |output: &mut [MaybeUninit<f32>]| {
        let shared = SharedOutput(output.as_mut_ptr().cast::<f32>());
        for_each_task(bands, |band| {
            let rows = [
                g.out_height * band / bands,
                g.out_height * (band + 1) / bands,
            ];
            // SAFETY: as in `conv`: AVX-512F and the shapes asserted above; this task alone
            // writes these rows' pixels of every channel block (the bands are disjoint), which
            // lie inside the output.
            unsafe { band_rows::<true>(x, g, weight, &epilogue, rows, shared.at(0)) }
        });
    };
    // SAFETY: the bands cover every output row, and `band_rows` writes every channel of every
    // pixel of its rows.
    unsafe { filled_into(buffer, g.out_channels * g.out_pixels(), fill) }
}

/// `row[start..start + 16]` with zeros where a column lies outside `0..width`; no memory
/// outside the row is read.
///
/// # Safety
/// The CPU must have AVX-512F; `row` must hold `width` values.
#[inline(always)]
unsafe fn load_columns(row: *const f32, start: isize, width: usize) -> __m512 {
    let first = (-start).clamp(0, LANES as isize) as u32;
    let end = (width as isize - start).clamp(0, LANES as isize) as u32;
    let mask = if end > first {
        (((1u32 << end) - 1) & !((1u32 << first) - 1)) as u16
    } else {
        0
    };
    // SAFETY: the lanes of `mask` are the columns inside `0..width`, which `row` holds; the
    // masked-off lanes are not accessed (nor faulted on), so the pointer may lie outside the
    // row there (formed with `wrapping_offset`, never dereferenced itself).
    unsafe { _mm512_maskz_loadu_ps(mask, row.wrapping_offset(start)) }
}

/// Output rows `rows` of one image, in NCHW (`[out, out_h, out_w]`) or, if `BLOCKED`, in the
/// blocked layout (`[out / 8, out_h * out_w, 8]`).
///
/// # Safety
/// The CPU must have AVX-512F; the layer must be [`supports`]ed; `x` must hold the image
/// (`in * h * w` values), `weight` `out * in * 9` values, the bias (if any) `out`; `out` must
/// point at the image's output (`out * out_h * out_w` values), whose rows `rows` nobody else
/// accesses meanwhile; `rows[1] <= out_h`.
#[target_feature(enable = "avx512f")]
unsafe fn band_rows<const BLOCKED: bool>(
    x: &[f32],
    g: &ConvGeometry,
    weight: &[f32],
    epilogue: &Epilogue,
    [first_row, end_row]: [usize; 2],
    out: *mut f32,
) {
    let (channels, h, w) = (g.in_channels, g.in_height, g.in_width);
    let (out_h, out_w) = (g.out_height, g.out_width);
    let depth = channels * TAPS;
    // SAFETY (the whole body): AVX-512F, as the caller guarantees; every input read goes
    // through `load_columns` on a row inside the image; weight and bias offsets are below
    // `out * in * 9` and `out`; stores are masked to the row's columns, in the caller's rows.
    unsafe {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        // The input vectors of the current 32 pixels: `[tap of the weight][vector]`.
        let mut inputs = [[_mm512_setzero_ps(); 2]; MAX_IN_CHANNELS * TAPS];
        for oy in first_row..end_row {
            for first_column in (0..out_w).step_by(2 * LANES) {
                for channel in 0..channels {
                    for ky in 0..3 {
                        let tap = channel * TAPS + ky * 3;
                        let iy = (2 * oy + ky) as isize - 1;
                        if iy < 0 || iy >= h as isize {
                            for kx in 0..3 {
                                inputs[tap + kx] = [_mm512_setzero_ps(); 2];
                            }
                            continue;
                        }
                        let row = x.as_ptr().add((channel * h + iy as usize) * w);
                        for (v, column) in
                            [first_column, first_column + LANES].into_iter().enumerate()
                        {
                            // Output column `c` reads input columns `2c - 1 + kx`.
                            let start = 2 * column as isize;
                            let low = load_columns(row, start, w);
                            let high = load_columns(row, start + LANES as isize, w);
                            let low_left = load_columns(row, start - 2, w);
                            let high_left = load_columns(row, start + LANES as isize - 2, w);
                            inputs[tap][v] = _mm512_permutex2var_ps(low_left, odd, high_left);
                            inputs[tap + 1][v] = _mm512_permutex2var_ps(low, even, high);
                            inputs[tap + 2][v] = _mm512_permutex2var_ps(low, odd, high);
                        }
                    }
                }
                let counts = [
                    (out_w - first_column).min(LANES),
                    out_w.saturating_sub(first_column + LANES).min(LANES),
                ];
                let masks = counts.map(|count| ((1u32 << count) - 1) as u16);
                for group in 0..g.out_channels / GROUP {
                    let weights = weight.as_ptr().add(group * GROUP * depth);
                    let mut acc = [[_mm512_setzero_ps(); 2]; GROUP];
                    for (tap, input) in inputs[..depth].iter().enumerate() {
                        for (j, sums) in acc.iter_mut().enumerate() {
                            let wv = _mm512_set1_ps(*weights.add(j * depth + tap));
                            sums[0] = _mm512_fmadd_ps(input[0], wv, sums[0]);
                            sums[1] = _mm512_fmadd_ps(input[1], wv, sums[1]);
                        }
                    }
                    // Plain loops, not closures: the intrinsics stay inlined here.
                    let mut values = acc;
                    for (j, sums) in values.iter_mut().enumerate() {
                        let channel = group * GROUP + j;
                        let bias = _mm512_set1_ps(epilogue.bias.map_or(0.0, |bias| bias[channel]));
                        for sum in sums.iter_mut() {
                            *sum = activate_wide(_mm512_add_ps(*sum, bias), epilogue.activation);
                        }
                    }
                    for v in 0..2 {
                        if counts[v] == 0 {
                            continue;
                        }
                        if BLOCKED {
                            // The 16 pixels' eight channels: 128 consecutive values of the
                            // group's block, two pixels a vector.
                            let pixel = oy * out_w + first_column + v * LANES;
                            let block = out.add((group * out_h * out_w + pixel) * GROUP);
                            let mut rows = [values[0][v]; GROUP];
                            for (row, sums) in rows.iter_mut().zip(&values) {
                                *row = sums[v];
                            }
                            let pixels = transpose_8x16(rows);
                            for (pair, value) in pixels.into_iter().enumerate() {
                                let first = 2 * pair;
                                if first >= counts[v] {
                                    break;
                                }
                                let mask = if first + 1 < counts[v] {
                                    0xffff
                                } else {
                                    0x00ff
                                };
                                _mm512_mask_storeu_ps(block.add(first * GROUP), mask, value);
                            }
                        } else {
                            for (j, sums) in values.iter().enumerate() {
                                let channel = group * GROUP + j;
                                let row = out.add((channel * out_h + oy) * out_w + first_column);
                                _mm512_mask_storeu_ps(row.add(v * LANES), masks[v], sums[v]);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Eight rows of 16 values (`rows[j][i]`: channel `j` of pixel `i`) as 16 rows of eight, two
/// a vector: vector `p` holds pixels `2p` and `2p + 1`, eight channels each.
///
/// # Safety
/// The CPU must have AVX-512F.
#[inline(always)]
unsafe fn transpose_8x16(rows: [__m512; GROUP]) -> [__m512; GROUP] {
    // SAFETY: AVX-512F, as the caller guarantees; register operations only.
    unsafe {
        // Per 128-bit lane `k` (pixels 4k..4k + 4): `t[2q]` pixels 4k, 4k + 1 and `t[2q + 1]`
        // pixels 4k + 2, 4k + 3 of channels 2q and 2q + 1, interleaved.
        let mut t = rows;
        for pair in 0..GROUP / 2 {
            let (a, b) = (rows[2 * pair], rows[2 * pair + 1]);
            t[2 * pair] = _mm512_unpacklo_ps(a, b);
            t[2 * pair + 1] = _mm512_unpackhi_ps(a, b);
        }
        // `quads[h][m]`, per lane `k`: channels 4h..4h + 4 of pixel 4k + m.
        let mut quads = [[rows[0]; 4]; 2];
        for (h, quad) in quads.iter_mut().enumerate() {
            let t = &t[4 * h..4 * h + 4];
            *quad = [
                _mm512_shuffle_ps::<0x44>(t[0], t[2]),
                _mm512_shuffle_ps::<0xee>(t[0], t[2]),
                _mm512_shuffle_ps::<0x44>(t[1], t[3]),
                _mm512_shuffle_ps::<0xee>(t[1], t[3]),
            ];
        }
        // `low[m]`: pixel m, then 4 + m (all eight channels each); `high[m]`: 8 + m, 12 + m.
        let low_index = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
        let high_index =
            _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
        let (mut low, mut high) = ([rows[0]; 4], [rows[0]; 4]);
        for m in 0..4 {
            low[m] = _mm512_permutex2var_ps(quads[0][m], low_index, quads[1][m]);
            high[m] = _mm512_permutex2var_ps(quads[0][m], high_index, quads[1][m]);
        }
        // Vector `p = 2k + h` holds pixels 4k + 2h and 4k + 2h + 1.
        [
            _mm512_shuffle_f32x4::<0x44>(low[0], low[1]),
            _mm512_shuffle_f32x4::<0x44>(low[2], low[3]),
            _mm512_shuffle_f32x4::<0xee>(low[0], low[1]),
            _mm512_shuffle_f32x4::<0xee>(low[2], low[3]),
            _mm512_shuffle_f32x4::<0x44>(high[0], high[1]),
            _mm512_shuffle_f32x4::<0x44>(high[2], high[3]),
            _mm512_shuffle_f32x4::<0xee>(high[0], high[1]),
            _mm512_shuffle_f32x4::<0xee>(high[2], high[3]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::dense;
    use crate::kernels::{test_geometry as geometry, test_values as values};

    /// Against `conv::dense` (im2col and a matrix multiply, tested against the definition):
    /// MobileNet's stems at sizes that leave partial vectors, odd and even sizes, tiny images
    /// (one output pixel), 1 to 4 input channels, each activation, a batch of two.
    #[test]
    fn stem_equals_the_dense_kernel() {
        if !has_avx512f() {
            return;
        }
        use Nonlinearity::{HardSwish, Identity, ReLU, ReLU6};
        let cases = [
            (3, 32, [224, 224], ReLU6),
            (3, 16, [37, 53], HardSwish),
            (3, 16, [1, 1], HardSwish),
            (1, 8, [2, 3], ReLU),
            (4, 24, [65, 34], Identity),
            (2, 8, [5, 97], ReLU6),
        ];
        for (index, (cin, cout, size, activation)) in cases.into_iter().enumerate() {
            let seed = 11 * index as u32;
            let batch = 2;
            let g = geometry([cin, cout], size, 3, 2, 1);
            let x = values(batch * cin * size[0] * size[1], seed);
            let weight = values(cout * cin * TAPS, seed + 1);
            let bias = values(cout, seed + 2);
            let epilogue = || Epilogue {
                bias: Some(&bias),
                residual: None,
                activation,
            };
            assert!(supports(&g, activation), "case {index}");
            let expected = dense(&x, batch, &g, &weight, epilogue());
            let actual = conv(&x, batch, &g, &weight, epilogue());
            assert_eq!(actual.len(), expected.len(), "case {index}: length");
            for (at, (a, e)) in actual.iter().zip(&expected).enumerate() {
                assert!(
                    (a - e).abs() <= 1e-6 * (1.0 + e.abs()) * 8.0,
                    "case {index}[{at}]: {a} vs {e}"
                );
            }
        }
    }

    /// The blocked output is the NCHW output converted, bit for bit: sizes with partial
    /// vectors (odd pixel counts: a last pair with one pixel), one pixel, one to four bands.
    #[test]
    fn blocked_output_is_the_planes_converted() {
        if !has_avx512f() {
            return;
        }
        let cases = [
            (3, 32, [224, 224], Nonlinearity::ReLU6, 2),
            (3, 16, [37, 53], Nonlinearity::HardSwish, 3),
            (3, 16, [1, 1], Nonlinearity::HardSwish, 4),
            (2, 24, [9, 67], Nonlinearity::Identity, 1),
            (4, 8, [65, 34], Nonlinearity::ReLU, 2),
        ];
        for (index, (cin, cout, size, activation, threads)) in cases.into_iter().enumerate() {
            let seed = 7 * index as u32 + 3;
            let g = geometry([cin, cout], size, 3, 2, 1);
            let x = values(cin * size[0] * size[1], seed);
            let weight = values(cout * cin * TAPS, seed + 1);
            let bias = values(cout, seed + 2);
            let epilogue = Epilogue {
                bias: Some(&bias),
                residual: None,
                activation,
            };
            let planes = conv(&x, 1, &g, &weight, epilogue);
            let expected = crate::kernels::blocked::to_blocked(&planes, g.out_pixels());
            // A reused buffer of another length.
            let buffer = vec![f32::NAN; 5];
            let actual = conv_blocked_into(&x, &g, &weight, epilogue, buffer, threads);
            assert_eq!(actual.len(), expected.len(), "case {index}: length");
            for (at, (a, e)) in actual.iter().zip(&expected).enumerate() {
                assert_eq!(a.to_bits(), e.to_bits(), "case {index}[{at}]: {a} vs {e}");
            }
        }
    }

    #[test]
    fn declines_what_it_does_not_compute() {
        let relu6 = Nonlinearity::ReLU6;
        // Five input channels, stride 1, a 5x5 kernel, twelve outputs, GELU.
        assert!(!supports(&geometry([5, 16], [8, 8], 3, 2, 1), relu6));
        assert!(!supports(&geometry([3, 16], [8, 8], 3, 1, 1), relu6));
        assert!(!supports(&geometry([3, 16], [8, 8], 5, 2, 1), relu6));
        assert!(!supports(&geometry([3, 12], [8, 8], 3, 2, 1), relu6));
        assert!(!supports(
            &geometry([3, 16], [8, 8], 3, 2, 1),
            Nonlinearity::Gelu
        ));
    }

    /// A residual is not added here: `conv` refuses an epilogue with one (the bridge sends
    /// such layers elsewhere before asking `supports`). Without AVX-512F it refuses the layer
    /// anyway.
    #[test]
    #[should_panic]
    fn refuses_a_residual() {
        let g = geometry([3, 16], [4, 4], 3, 2, 1);
        let (x, weight, residual) = (values(3 * 16, 1), values(16 * 27, 2), values(16 * 4, 3));
        let epilogue = Epilogue {
            bias: None,
            residual: Some(&residual),
            activation: Nonlinearity::ReLU6,
        };
        conv(&x, 1, &g, &weight, epilogue);
    }
}
