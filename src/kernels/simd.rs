//! Runtime CPU-feature dispatch for the inner loops of the native kernels.
//!
//! The crate is compiled for the baseline target (SSE2 on x86-64), as crates on crates.io are.
//! The hot loops are written once as `#[inline(always)]` functions that take a [`MulAdd`]
//! strategy; [`dispatch!`] calls them through a copy compiled with AVX2 and FMA enabled when the
//! CPU has them (checked once), so LLVM vectorizes them with 8-lane fused multiply-adds, and
//! through the baseline copy otherwise.

/// How `acc + a * b` is computed: with one rounding (FMA) where the CPU has it, else plainly.
pub(crate) trait MulAdd: Copy {
    fn mul_add(acc: f32, a: f32, b: f32) -> f32;
}

/// `acc + a * b` as two operations; any CPU.
#[derive(Clone, Copy)]
pub(crate) struct Plain;

impl MulAdd for Plain {
    #[inline(always)]
    fn mul_add(acc: f32, a: f32, b: f32) -> f32 {
        acc + a * b
    }
}

/// `acc + a * b` as one fused multiply-add; only inside code compiled with `fma` enabled,
/// where `f32::mul_add` is one instruction (elsewhere it is a slow library call).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Fused;

#[cfg(target_arch = "x86_64")]
impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(acc: f32, a: f32, b: f32) -> f32 {
        a.mul_add(b, acc)
    }
}

/// Whether this CPU has AVX2 and FMA (checked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

/// Whether this CPU has AVX-512F (checked once) and [`AVX512_ENV`] does not turn it off. The
/// kernels written with its intrinsics take it; the rest of the kernels stay on
/// [`dispatch!`]'s AVX2 (see `docs/performance.md`).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512f() -> bool {
    use std::sync::OnceLock;
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::env::var(AVX512_ENV).map_or(true, |value| value != "0")
    })
}

/// Environment variable that, set to `0`, keeps the kernels on their AVX2 paths on a CPU with
/// AVX-512: to test those paths there (CI runs the kernel and parity tests so) and to measure
/// one against the other.
#[cfg(target_arch = "x86_64")]
pub(crate) const AVX512_ENV: &str = "MOBILENET_BURN_AVX512";

/// `dispatch!(function(args...))` calls `function::<Fused>` inside an AVX2+FMA context when the
/// CPU supports it and `function::<Plain>` otherwise. `function` must be `#[inline(always)]` and
/// generic over one [`MulAdd`] type parameter.
macro_rules! dispatch {
    ($function:ident ( $($arg:expr),* $(,)? )) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if $crate::kernels::simd::has_avx2_fma() {
                #[target_feature(enable = "avx2,fma")]
                #[inline]
                unsafe fn with_avx2_fma<R>(run: impl FnOnce() -> R) -> R {
                    run()
                }
                // SAFETY: the CPU was checked for AVX2 and FMA just above.
                // The closure and `$function` are inlined into `with_avx2_fma` (both
                // `inline(always)`: left to LLVM's judgement, a closure around a large function
                // was once compiled on its own, without the features, and every `f32::mul_add`
                // in it became a call to libm's software `fmaf`), so their loops are compiled
                // with its features.
                unsafe {
                    with_avx2_fma(
                        #[inline(always)]
                        || $function::<$crate::kernels::simd::Fused>($($arg),*),
                    )
                }
            } else {
                $function::<$crate::kernels::simd::Plain>($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $function::<$crate::kernels::simd::Plain>($($arg),*)
        }
    }};
}

pub(crate) use dispatch;

/// The transpose of an 8x8 block, `out[j][i] = rows[i][j]`: 24 register shuffles where the CPU
/// has AVX (checked once, as for [`dispatch!`]), 64 scalar moves otherwise.
#[inline(always)]
pub(crate) fn transpose8(rows: &[[f32; 8]; 8]) -> [[f32; 8]; 8] {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 (checked just above), so it has AVX.
        return unsafe { transpose8_avx(rows) };
    }
    transpose8_scalar(rows)
}

/// [`transpose8`] one value at a time, for CPUs without AVX.
#[inline(always)]
fn transpose8_scalar(rows: &[[f32; 8]; 8]) -> [[f32; 8]; 8] {
    std::array::from_fn(|j| std::array::from_fn(|i| rows[i][j]))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
pub(crate) fn transpose8_avx(rows: &[[f32; 8]; 8]) -> [[f32; 8]; 8] {
    use std::arch::x86_64::{
        __m256, _mm256_loadu_ps, _mm256_permute2f128_ps, _mm256_shuffle_ps, _mm256_storeu_ps,
        _mm256_unpackhi_ps, _mm256_unpacklo_ps,
    };
    // SAFETY: each pointer is to an `[f32; 8]`, exactly the 8 values an unaligned load reads.
    let r: [__m256; 8] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(rows[i].as_ptr()) });
    // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves swapped.
    let t: [__m256; 8] = [
        _mm256_unpacklo_ps(r[0], r[1]),
        _mm256_unpackhi_ps(r[0], r[1]),
        _mm256_unpacklo_ps(r[2], r[3]),
        _mm256_unpackhi_ps(r[2], r[3]),
        _mm256_unpacklo_ps(r[4], r[5]),
        _mm256_unpackhi_ps(r[4], r[5]),
        _mm256_unpacklo_ps(r[6], r[7]),
        _mm256_unpackhi_ps(r[6], r[7]),
    ];
    let u: [__m256; 8] = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]),
        _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]),
        _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]),
        _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]),
        _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
    ];
    let o: [__m256; 8] = [
        _mm256_permute2f128_ps::<0x20>(u[0], u[4]),
        _mm256_permute2f128_ps::<0x20>(u[1], u[5]),
        _mm256_permute2f128_ps::<0x20>(u[2], u[6]),
        _mm256_permute2f128_ps::<0x20>(u[3], u[7]),
        _mm256_permute2f128_ps::<0x31>(u[0], u[4]),
        _mm256_permute2f128_ps::<0x31>(u[1], u[5]),
        _mm256_permute2f128_ps::<0x31>(u[2], u[6]),
        _mm256_permute2f128_ps::<0x31>(u[3], u[7]),
    ];
    let mut out = [[0.0f32; 8]; 8];
    for (row, value) in out.iter_mut().zip(o) {
        // SAFETY: `row` is an `[f32; 8]`, exactly the 8 values an unaligned store writes.
        unsafe { _mm256_storeu_ps(row.as_mut_ptr(), value) };
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn transpose8_transposes() {
        let rows: [[f32; 8]; 8] =
            std::array::from_fn(|i| std::array::from_fn(|j| (i * 8 + j) as f32));
        // The path this CPU takes (AVX shuffles on x86-64 with AVX2), and the scalar one.
        for out in [super::transpose8(&rows), super::transpose8_scalar(&rows)] {
            for i in 0..8 {
                for j in 0..8 {
                    assert_eq!(out[j][i], rows[i][j], "[{j}][{i}]");
                }
            }
        }
    }
}
