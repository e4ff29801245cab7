//! The flat convolution of `direct` (see [`flat_conv`]) for a stride-1, undilated 3x3 filter,
//! several output rows per register block.
//!
//! One output row at a time, every multiply-add loads its input: nine loads for nine taps, and
//! the loads, not the arithmetic, bound the kernel. An input row is read by the three output rows
//! around it; computing `R` output rows together, each input vector is loaded once for all the
//! rows that use it: `3 * (R + 2)` loads for `9 * R` multiply-adds. The taps are summed in
//! [`flat_conv`]'s order, so the outputs are its outputs, bit for bit.
//!
//! Written with intrinsics (AVX-512: 16 lanes and 32 registers, eight rows at a time; AVX2: 8
//! lanes, four rows): LLVM, given the same loops over arrays, neither kept the nine weights in
//! registers nor merged the shared loads, and came out 1.5-1.9x slower than [`flat_conv`]. With
//! intrinsics, one plane in L1 on one thread: 0.35-0.43x [`flat_conv`]'s time at 28x28 to
//! 112x112 with AVX-512 (AVX2 alone, four rows: 0.57-0.63x); at 14x14, 0.92x, so planes
//! narrower than [`MIN_OUT_WIDTH`] keep [`flat_conv`].

use super::conv::ConvGeometry;
use super::direct::{PhaseLayout, flat_conv};
use super::simd::MulAdd;
#[cfg(target_arch = "x86_64")]
use super::simd::{has_avx2_fma, has_avx512f};

/// Output planes narrower than this take [`flat_conv`]: a 16- or 8-lane block then wastes much
/// of its width on columns it computes twice.
#[cfg(target_arch = "x86_64")]
const MIN_OUT_WIDTH: usize = 16;

/// The rows of a flat output plane: `rows` of them, `width` apart in the flat index (the phase
/// plane's width), each `out_width` long; the input has `rows + 2` rows `width` apart.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlatRows {
    pub(crate) width: usize,
    pub(crate) out_width: usize,
    pub(crate) rows: usize,
}

/// Where [`flat_conv`] reads the nine taps of a 3x3 filter over rows `width` apart, in (ky, kx)
/// order.
fn offsets(width: usize) -> [usize; 9] {
    std::array::from_fn(|tap| tap / 3 * width + tap % 3)
}

/// Whether [`flat_conv_3x3`] computes the flat convolution of this geometry on these phase
/// planes: a stride-1, undilated 3x3 filter, whose input rows reach two columns past the output
/// rows and two rows below them.
pub(crate) fn fits(geometry: &ConvGeometry, layout: &PhaseLayout) -> bool {
    geometry.kernel == [3, 3]
        && geometry.stride == [1, 1]
        && geometry.dilation == [1, 1]
        && layout.width >= geometry.out_width + 2
        && layout.total >= (geometry.out_height + 1) * layout.width + geometry.out_width + 2
}

/// `wide[i] = bias + Σ weights[3 ky + kx] · source[i + ky · width + kx]` for the valid columns of
/// every row of `plane` ([`flat_conv`] with the 3x3 offsets); the columns between `out_width` and
/// `width` are left as they are. Takes the register-blocked kernels where the CPU has them.
///
/// # Panics
/// If `source` or `wide` is too short for the plane, or `weights` is not nine long.
#[inline(always)]
pub(crate) fn flat_conv_3x3<M: MulAdd>(
    source: &[f32],
    plane: FlatRows,
    weights: &[f32],
    bias: f32,
    wide: &mut [f32],
) {
    let FlatRows {
        width,
        out_width,
        rows,
    } = plane;
    assert!(weights.len() == 9 && out_width + 2 <= width);
    if rows == 0 {
        return;
    }
    // Checked once here: the loads and stores below stay inside these lengths.
    assert!(source.len() >= (rows + 1) * width + out_width + 2);
    assert!(wide.len() >= (rows - 1) * width + out_width);
    let weights: &[f32; 9] = weights.try_into().expect("nine weights");
    #[cfg(target_arch = "x86_64")]
    if out_width >= MIN_OUT_WIDTH {
        if has_avx512f() && rows >= avx512::ROWS {
            // SAFETY: the CPU has AVX-512F (checked just above); the plane has the rows, columns
            // and lengths the kernel needs (checked above).
            unsafe { avx512::rows(source, plane, weights, bias, wide) };
            return;
        }
        if has_avx2_fma() && rows >= avx2::ROWS {
            // SAFETY: the CPU has AVX2 and FMA (checked just above); the plane as above.
            unsafe { avx2::rows(source, plane, weights, bias, wide) };
            return;
        }
    }
    let offsets = offsets(width);
    let len = (rows - 1) * width + out_width;
    flat_conv::<M>(source, &offsets, weights, bias, &mut wide[..len]);
}

/// The first column of each block of `n` columns: `n` apart, the last block moved left to end at
/// `out_width` (its first columns computed twice). Needs `out_width >= n`.
#[cfg(target_arch = "x86_64")]
fn column_blocks(out_width: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..out_width.div_ceil(n)).map(move |block| (block * n).min(out_width - n))
}

/// Defines one register-blocked kernel as a module: blocks of `$r` output rows (then of `$r / 2`
/// for the rows left over) by `$n` lanes.
#[cfg(target_arch = "x86_64")]
macro_rules! rows_kernel {
    ($module:ident, $features:literal, $vector:ident, $r:literal, $n:literal,
     $set1:ident, $loadu:ident, $storeu:ident, $fmadd:ident) => {
        mod $module {
            use super::{FlatRows, column_blocks};
            use std::arch::x86_64::{$fmadd, $loadu, $set1, $storeu, $vector};

            const N: usize = $n;

            /// Output rows per block, and the fewest rows [`rows`] takes.
            pub(super) const ROWS: usize = $r;

            /// [`flat_conv_3x3`](super::flat_conv_3x3) in blocks of output rows and columns
            /// (see the module's doc).
            ///
            /// # Safety
            /// The CPU must have the target features; `plane` must have at least [`ROWS`] rows
            /// and `N` valid columns, and `source` and `wide` the lengths
            /// [`flat_conv_3x3`](super::flat_conv_3x3) checks.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn rows(
                source: &[f32],
                plane: FlatRows,
                weights: &[f32; 9],
                bias: f32,
                wide: &mut [f32],
            ) {
                let w: [$vector; 9] = std::array::from_fn(|t| $set1(weights[t]));
                let (source, wide) = (source.as_ptr(), wide.as_mut_ptr());
                let whole = plane.rows / ROWS * ROWS;
                for first_row in (0..whole).step_by(ROWS) {
                    // SAFETY: rows `first_row..first_row + ROWS` are rows of the plane; the
                    // lengths as the caller guarantees.
                    unsafe { block::<ROWS>(source, wide, plane, first_row, &w, bias) };
                }
                // The rows left over in half-height blocks, the last one moved up to end at
                // the last row (its first rows computed again, the same values written).
                let mut first_row = whole;
                while first_row < plane.rows {
                    let first = first_row.min(plane.rows - ROWS / 2);
                    // SAFETY: as above; `plane.rows >= ROWS`, so `first` is a row.
                    unsafe { block::<{ $r / 2 }>(source, wide, plane, first, &w, bias) };
                    first_row += ROWS / 2;
                }
            }

            /// Output rows `first_row..first_row + R`, every valid column.
            ///
            /// # Safety
            /// As [`rows`], and `first_row + R <= plane.rows`.
            #[target_feature(enable = $features)]
            unsafe fn block<const R: usize>(
                source: *const f32,
                wide: *mut f32,
                FlatRows {
                    width, out_width, ..
                }: FlatRows,
                first_row: usize,
                w: &[$vector; 9],
                bias: f32,
            ) {
                for column in column_blocks(out_width, N) {
                    let start = first_row * width + column;
                    let mut acc = [$set1(bias); R];
                    // Input rows `first_row + j`; row `j` feeds output rows `j - 2 ..= j`, and
                    // each output row takes its taps in (ky, kx) order, as `flat_conv` does.
                    for j in 0..R + 2 {
                        for kx in 0..3 {
                            // SAFETY: input row `first_row + j <= rows + 1`, columns
                            // `column + kx .. + N <= out_width + 2`: inside `source`, as the
                            // caller guarantees.
                            let v = unsafe { $loadu(source.add(start + j * width + kx)) };
                            for (r, acc) in acc.iter_mut().enumerate() {
                                if j >= r && j - r < 3 {
                                    *acc = $fmadd(w[(j - r) * 3 + kx], v, *acc);
                                }
                            }
                        }
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        // SAFETY: output row `first_row + r < rows`, columns
                        // `column .. column + N <= out_width`: inside `wide`, as the caller
                        // guarantees.
                        unsafe { $storeu(wide.add(start + r * width), *acc) };
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
rows_kernel!(
    avx512,
    "avx512f",
    __m512,
    8,
    16,
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_fmadd_ps
);

#[cfg(target_arch = "x86_64")]
rows_kernel!(
    avx2,
    "avx2,fma",
    __m256,
    4,
    8,
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_fmadd_ps
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values;

    /// Every kernel this CPU has equals `flat_conv` bit for bit, on planes whose rows and
    /// columns are and are not multiples of a block, and on planes too small for a block.
    #[test]
    fn equals_flat_conv() {
        for (out_height, out_width) in [
            (56, 56),
            (7, 28),
            (18, 112),
            (4, 16),
            (5, 17),
            (3, 40),
            (9, 8),
        ] {
            let width = out_width + 2;
            let source = test_values((out_height + 2) * width, 1);
            let weights = test_values(9, 2);
            let offsets = offsets(width);
            let len = (out_height - 1) * width + out_width;
            let plane = FlatRows {
                width,
                out_width,
                rows: out_height,
            };
            #[cfg(target_arch = "x86_64")]
            let mut expected = vec![0.0; len];
            #[cfg(target_arch = "x86_64")]
            if has_avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA.
                unsafe { reference_fused(&source, &offsets, &weights, &mut expected) };
            } else {
                flat_conv::<super::super::simd::Plain>(
                    &source,
                    &offsets,
                    &weights,
                    0.25,
                    &mut expected,
                );
            }
            #[cfg(not(target_arch = "x86_64"))]
            let mut expected = {
                let mut e = vec![0.0; len];
                flat_conv::<super::super::simd::Plain>(&source, &offsets, &weights, 0.25, &mut e);
                e
            };
            let check = |wide: &[f32], kernel: &str| {
                for row in 0..out_height {
                    for column in 0..out_width {
                        let i = row * width + column;
                        assert_eq!(
                            wide[i].to_bits(),
                            expected[i].to_bits(),
                            "{kernel} {out_height}x{out_width}: row {row} column {column}"
                        );
                    }
                }
            };
            let mut wide = vec![f32::NAN; len];
            super::super::simd::dispatch!(flat_conv_3x3(&source, plane, &weights, 0.25, &mut wide));
            check(&wide, "dispatched");
            #[cfg(target_arch = "x86_64")]
            if out_width >= 16 {
                let weights: &[f32; 9] = weights.as_slice().try_into().unwrap();
                if has_avx512f() && out_height >= avx512::ROWS {
                    let mut wide = vec![f32::NAN; len];
                    // SAFETY: the CPU has AVX-512F; the plane holds a block; lengths as checked.
                    unsafe { avx512::rows(&source, plane, weights, 0.25, &mut wide) };
                    check(&wide, "avx512");
                }
                if has_avx2_fma() && out_height >= avx2::ROWS {
                    let mut wide = vec![f32::NAN; len];
                    // SAFETY: the CPU has AVX2 and FMA; the plane holds a block; lengths as checked.
                    unsafe { avx2::rows(&source, plane, weights, 0.25, &mut wide) };
                    check(&wide, "avx2");
                }
            }
            expected.clear();
        }
    }

    /// `flat_conv` with fused multiply-adds, as the register-blocked kernels compute.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn reference_fused(source: &[f32], offsets: &[usize], weights: &[f32], expected: &mut [f32]) {
        flat_conv::<super::super::simd::Fused>(source, offsets, weights, 0.25, expected);
    }
}
