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
