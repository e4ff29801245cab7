//! 3x3 depthwise planes at strides 1 and 2 straight from the input plane to the output plane
//! (AVX-512).
//!
//! The flat kernels of `direct` first copy each input plane into zero-padded phase planes (and
//! finish it there, see [`Prologue`]; at stride 2 the copy also splits even and odd rows and
//! columns apart), convolve them into a wide flat buffer, and copy the valid columns out,
//! activated: three passes over the plane, two of them copies. Here the input is
//! read where it is: masked loads give the zero padding (the lanes left and right of the plane,
//! and the rows above and below it, are zeros, never read), the producer's bias and activation
//! are applied to each vector loaded, and the outputs are activated in registers and stored with
//! the same masks. Eight output rows at a time, as `rows3` (each input vector loaded once for the
//! three output rows that read it; the nine weights in registers). At stride 2 each input row
//! is loaded as 33 columns for 16 outputs and split into even and odd columns in registers.
//!
//! The operations are those of the flat path in its order (the prologue's `activation(x + bias)`,
//! then the bias and the taps in (ky, kx) order with fused multiply-adds, then the activation):
//! bit for bit its outputs.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::conv::{ConvGeometry, Prologue};
use super::elementwise::Nonlinearity;
use super::simd::has_avx512f;

/// Output rows per register block (then half-blocks for the rows left over).
const ROWS: usize = 8;

/// Lanes of a vector.
const LANES: usize = 16;

/// An activation on sixteen lanes, the vector form of `elementwise`'s (same operations, same
/// order, NaN kept where those keep it).
trait Activation {
    /// # Safety
    /// The CPU must have AVX-512F.
    unsafe fn apply(v: __m512) -> __m512;
}

struct Identity;
struct Relu;
struct Relu6;
struct HardSwish;

impl Activation for Identity {
    #[inline(always)]
    unsafe fn apply(v: __m512) -> __m512 {
        v
    }
}

impl Activation for Relu {
    /// `x.max(0.0)`: 0 for NaN, as `f32::max`.
    #[inline(always)]
    unsafe fn apply(v: __m512) -> __m512 {
        // SAFETY: AVX-512F, as the caller guarantees.
        unsafe { _mm512_max_ps(v, _mm512_setzero_ps()) }
    }
}

impl Activation for Relu6 {
    /// `x.clamp(0.0, 6.0)`: NaN stays NaN (`max_ps` and `min_ps` return their second operand
    /// when one is NaN).
    #[inline(always)]
    unsafe fn apply(v: __m512) -> __m512 {
        // SAFETY: AVX-512F, as the caller guarantees.
        unsafe { clamp6(v) }
    }
}

impl Activation for HardSwish {
    /// `x * (x + 3).clamp(0, 6) * (1 / 6)`.
    #[inline(always)]
    unsafe fn apply(v: __m512) -> __m512 {
        // SAFETY: AVX-512F, as the caller guarantees.
        unsafe {
            let gate = clamp6(_mm512_add_ps(v, _mm512_set1_ps(3.0)));
            _mm512_mul_ps(_mm512_mul_ps(v, gate), _mm512_set1_ps(1.0 / 6.0))
        }
    }
}

/// `v.clamp(0, 6)` lane by lane, NaN kept.
#[inline(always)]
unsafe fn clamp6(v: __m512) -> __m512 {
    // SAFETY: AVX-512F, as the caller guarantees.
    unsafe { _mm512_min_ps(_mm512_set1_ps(6.0), _mm512_max_ps(_mm512_setzero_ps(), v)) }
}

/// What the producer's epilogue left to this kernel: nothing, or `activation(x + bias)`.
trait Finish {
    /// # Safety
    /// The CPU must have AVX-512F.
    unsafe fn finish(v: __m512, bias: __m512) -> __m512;
}

/// The input is finished already.
struct Unchanged;

/// `A::apply(x + bias)`.
struct Biased<A>(std::marker::PhantomData<A>);

impl Finish for Unchanged {
    #[inline(always)]
    unsafe fn finish(v: __m512, _bias: __m512) -> __m512 {
        v
    }
}

impl<A: Activation> Finish for Biased<A> {
    #[inline(always)]
    unsafe fn finish(v: __m512, bias: __m512) -> __m512 {
        // SAFETY: AVX-512F, as the caller guarantees.
        unsafe { A::apply(_mm512_add_ps(v, bias)) }
    }
}

/// Whether [`plane`] computes this layer here: an undilated 3x3 depthwise convolution at stride
/// 1 or 2 with padding 1, on output planes at least a register block tall and half one wide
/// (the masks cut the blocks to the width; 7x7 planes, half of each vector wasted, took 1.18x
/// the interleaved kernel's time at stride 1), with activations it has in vector form, on a CPU
/// with AVX-512F.
pub(crate) fn fits(geometry: &ConvGeometry, prologue: Prologue, activation: Nonlinearity) -> bool {
    let vector_form = |activation| {
        matches!(
            activation,
            Nonlinearity::Identity
                | Nonlinearity::ReLU
                | Nonlinearity::ReLU6
                | Nonlinearity::HardSwish
        )
    };
    let [stride, _] = geometry.stride;
    let out = |size: usize| (size - 1) / stride + 1;
    geometry.kernel == [3, 3]
        && matches!(stride, 1 | 2)
        && geometry.stride == [stride; 2]
        && geometry.dilation == [1, 1]
        && geometry.padding == [1, 1]
        && geometry.in_height > 0
        && geometry.in_width > 0
        && [geometry.out_height, geometry.out_width]
            == [out(geometry.in_height), out(geometry.in_width)]
        && geometry.out_height >= ROWS
        && geometry.out_width >= LANES / 2
        && vector_form(prologue.activation)
        && vector_form(activation)
        && has_avx512f()
}

/// One plane, channel `channel` of a layer that [`fits`]: `out = activation(bias + filter *
/// finish(input))`, every element of `out` written.
///
/// # Panics
/// If the layer does not [`fits`], or `input`, `out` or `filter` do not hold one plane, one plane
/// and nine weights.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plane(
    input: &[f32],
    (prologue, channel): (Prologue, usize),
    geometry: &ConvGeometry,
    filter: &[f32],
    bias: f32,
    activation: Nonlinearity,
    out: &mut [MaybeUninit<f32>],
) {
    assert!(
        fits(geometry, prologue, activation),
        "plane3x3: the layer does not fit"
    );
    let (height, width) = (geometry.in_height, geometry.in_width);
    let (out_height, out_width) = (geometry.out_height, geometry.out_width);
    assert!(input.len() == height * width && out.len() == out_height * out_width);
    let filter: &[f32; 9] = filter.try_into().expect("plane3x3: nine weights");
    let input_bias = prologue.bias(channel);
    let args = (
        input,
        [height, width, out_height, out_width],
        input_bias,
        filter,
        bias,
        out,
    );
    macro_rules! with_epilogue {
        ($finish:ty) => {
            match activation {
                // SAFETY (each arm): the CPU has AVX-512F and the plane is at least a block tall
                // (both checked by `fits` above); the lengths are checked above.
                Nonlinearity::ReLU => unsafe { strided::<$finish, Relu>(geometry.stride, args) },
                Nonlinearity::ReLU6 => unsafe { strided::<$finish, Relu6>(geometry.stride, args) },
                Nonlinearity::HardSwish => unsafe {
                    strided::<$finish, HardSwish>(geometry.stride, args)
                },
                _ => unsafe { strided::<$finish, Identity>(geometry.stride, args) },
            }
        };
    }
    match prologue.activation {
        Nonlinearity::Identity if prologue.bias.is_none() => with_epilogue!(Unchanged),
        Nonlinearity::ReLU => with_epilogue!(Biased<Relu>),
        Nonlinearity::ReLU6 => with_epilogue!(Biased<Relu6>),
        Nonlinearity::HardSwish => with_epilogue!(Biased<HardSwish>),
        _ => with_epilogue!(Biased<Identity>),
    }
}

/// [`run`] at the layer's stride.
///
/// # Safety
/// As [`run`].
#[inline(always)]
unsafe fn strided<F: Finish, A: Activation>(stride: [usize; 2], args: PlaneArgs) {
    // SAFETY: as the caller guarantees.
    unsafe {
        if stride == [1, 1] {
            run::<F, A, 1>(args)
        } else {
            run::<F, A, 2>(args)
        }
    }
}

/// The arguments of [`run`]: input plane, its size and the output's (height, width, out_height,
/// out_width), the prologue's bias for this channel, the filter, the bias, the output plane.
type PlaneArgs<'a> = (
    &'a [f32],
    [usize; 4],
    f32,
    &'a [f32; 9],
    f32,
    &'a mut [MaybeUninit<f32>],
);

/// [`plane`] for one prologue, one activation and one stride `S`.
///
/// # Safety
/// The CPU must have AVX-512F; the output must be at least [`ROWS`] tall and the output size
/// that of a 3x3 filter at stride `S` with padding 1 over the input; `input` must be
/// `height * width` long and `out` `out_height * out_width`.
#[target_feature(enable = "avx512f")]
unsafe fn run<F: Finish, A: Activation, const S: usize>(
    (input, [height, width, out_height, out_width], input_bias, filter, bias, out): PlaneArgs,
) {
    let weights: [__m512; 9] = std::array::from_fn(|t| _mm512_set1_ps(filter[t]));
    let block = Block {
        input: input.as_ptr(),
        out: out.as_mut_ptr().cast::<f32>(),
        height,
        width,
        out_width,
        input_bias: _mm512_set1_ps(input_bias),
        bias: _mm512_set1_ps(bias),
    };
    let whole = out_height / ROWS * ROWS;
    for first_row in (0..whole).step_by(ROWS) {
        // SAFETY: output rows `first_row..first_row + ROWS` are rows of the plane; the rest as
        // the caller guarantees.
        unsafe {
            if S == 1 {
                block.rows::<F, A, ROWS>(first_row, &weights)
            } else {
                block.rows_stride_2::<F, A, ROWS>(first_row, &weights)
            }
        };
    }
    // The rows left over in half-blocks, the last one moved up to end at the last row (its
    // first rows computed again, the same values written).
    let mut first_row = whole;
    while first_row < out_height {
        let first = first_row.min(out_height - ROWS / 2);
        // SAFETY: as above; `out_height >= ROWS`.
        unsafe {
            if S == 1 {
                block.rows::<F, A, { ROWS / 2 }>(first, &weights)
            } else {
                block.rows_stride_2::<F, A, { ROWS / 2 }>(first, &weights)
            }
        };
        first_row += ROWS / 2;
    }
}

/// The lanes whose column `first + lane` lies in `0..width`.
#[inline(always)]
fn lanes(first: isize, width: usize) -> __mmask16 {
    let low = (-first).clamp(0, LANES as isize) as u32;
    let high = (width as isize - first).clamp(0, LANES as isize) as u32;
    let below_high = if high >= 16 {
        0xffff
    } else {
        (1u32 << high) - 1
    };
    (below_high & !((1u32 << low) - 1)) as __mmask16
}

/// One plane's pointers and constants.
struct Block {
    input: *const f32,
    out: *mut f32,
    height: usize,
    width: usize,
    out_width: usize,
    input_bias: __m512,
    bias: __m512,
}

impl Block {
    /// Output rows `first_row..first_row + R`, every column, [`LANES`] at a time.
    ///
    /// # Safety
    /// As [`run`], and `first_row + R <= height`.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<F: Finish, A: Activation, const R: usize>(
        &self,
        first_row: usize,
        weights: &[__m512; 9],
    ) {
        let width = self.width;
        for column in (0..width).step_by(LANES) {
            // Lanes of the taps kx = 0, 1, 2: columns `column + kx - 1 + lane`; the output's
            // are those of kx = 1.
            let masks: [__mmask16; 3] =
                std::array::from_fn(|kx| lanes(column as isize + kx as isize - 1, width));
            let mut acc = [self.bias; R];
            for j in 0..R + 2 {
                // Input row `first_row + j - 1`: zero padding above and below the plane.
                let row = (first_row + j).wrapping_sub(1);
                let inside = row < self.height;
                for kx in 0..3 {
                    let v = if inside {
                        let at = (row * width + column + kx) as isize - 1;
                        // SAFETY: the lanes of `masks[kx]` read columns `0..width` of row `row`
                        // of the input (`height * width` long); the other lanes are not read
                        // (masked loads do not touch them), so the pointer may point outside.
                        let loaded = unsafe {
                            _mm512_maskz_loadu_ps(masks[kx], self.input.wrapping_offset(at))
                        };
                        // SAFETY: AVX-512F (this function's features).
                        let finished = unsafe { F::finish(loaded, self.input_bias) };
                        // The padding is zero after the prologue, as in the phase planes.
                        _mm512_maskz_mov_ps(masks[kx], finished)
                    } else {
                        _mm512_setzero_ps()
                    };
                    for (r, acc) in acc.iter_mut().enumerate() {
                        if j >= r && j - r < 3 {
                            *acc = _mm512_fmadd_ps(weights[(j - r) * 3 + kx], v, *acc);
                        }
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                // SAFETY: AVX-512F (this function's features).
                let activated = unsafe { A::apply(*acc) };
                // SAFETY: the lanes of `masks[1]` are columns `column..` inside row
                // `first_row + r < height` of `out` (`height * width` long); the others are not
                // written.
                unsafe {
                    _mm512_mask_storeu_ps(
                        self.out.add((first_row + r) * width + column),
                        masks[1],
                        activated,
                    )
                };
            }
        }
    }

    /// [`rows`](Self::rows) at stride 2: output rows `first_row..first_row + R` read input rows
    /// `2 * first_row - 1..`, each output column `x` columns `2x - 1, 2x, 2x + 1`. Per input
    /// row and block of sixteen outputs, three masked loads (32 columns and one more), each
    /// finished as at stride 1; the even and odd columns taken apart in registers (two
    /// two-source permutes) and the third tap the even ones moved by one lane.
    ///
    /// # Safety
    /// As [`run`], and `first_row + R <= out_height`.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows_stride_2<F: Finish, A: Activation, const R: usize>(
        &self,
        first_row: usize,
        weights: &[__m512; 9],
    ) {
        let (width, out_width) = (self.width, self.out_width);
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        for column in (0..out_width).step_by(LANES) {
            // Input columns `base..base + 33`, in three vectors (of the third, its first lane).
            let base = 2 * column as isize - 1;
            let masks = [
                lanes(base, width),
                lanes(base + LANES as isize, width),
                lanes(base + 2 * LANES as isize, width) & 1,
            ];
            let out_mask = lanes(column as isize, out_width);
            let mut acc = [self.bias; R];
            for j in 0..2 * R + 1 {
                // Input row `2 * first_row + j - 1`: zero padding above and below the plane.
                let row = (2 * first_row + j).wrapping_sub(1);
                let taps = if row < self.height {
                    let at = (row * width) as isize + base;
                    let mut part = [_mm512_setzero_ps(); 3];
                    for (i, part) in part.iter_mut().enumerate() {
                        // SAFETY: the lanes of `masks[i]` read columns `0..width` of row `row`
                        // of the input (`height * width` long); the other lanes are not read,
                        // so the pointer may point outside.
                        let loaded = unsafe {
                            _mm512_maskz_loadu_ps(
                                masks[i],
                                self.input.wrapping_offset(at + (i * LANES) as isize),
                            )
                        };
                        // SAFETY: AVX-512F (this function's features).
                        let finished = unsafe { F::finish(loaded, self.input_bias) };
                        // The padding is zero after the prologue, as in the phase planes.
                        *part = _mm512_maskz_mov_ps(masks[i], finished);
                    }
                    let evens = _mm512_permutex2var_ps(part[0], even, part[1]);
                    let odds = _mm512_permutex2var_ps(part[0], odd, part[1]);
                    // Columns `base + 2 + 2 * lane`: the evens one lane on, the last from the
                    // third vector.
                    let next = _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
                        _mm512_castps_si512(part[2]),
                        _mm512_castps_si512(evens),
                    ));
                    [evens, odds, next]
                } else {
                    [_mm512_setzero_ps(); 3]
                };
                for (r, acc) in acc.iter_mut().enumerate() {
                    if j >= 2 * r && j - 2 * r < 3 {
                        for (kx, &tap) in taps.iter().enumerate() {
                            *acc = _mm512_fmadd_ps(weights[(j - 2 * r) * 3 + kx], tap, *acc);
                        }
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                // SAFETY: AVX-512F (this function's features).
                let activated = unsafe { A::apply(*acc) };
                // SAFETY: the lanes of `out_mask` are columns `column..` inside output row
                // `first_row + r < out_height` of `out` (`out_height * out_width` long); the
                // others are not written.
                unsafe {
                    _mm512_mask_storeu_ps(
                        self.out.add((first_row + r) * out_width + column),
                        out_mask,
                        activated,
                    )
                };
            }
        }
    }
}
