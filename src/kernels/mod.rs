//! Native CPU kernels for MobileNet's layers, on plain `f32` slices in NCHW order.
//!
//! This layer stands alone: it takes slices, a [`ConvGeometry`](conv::ConvGeometry) and an
//! [`Epilogue`](conv::Epilogue) (bias, residual, [`Nonlinearity`](elementwise::Nonlinearity)),
//! and knows nothing of burn or of this crate's modules. `crate::native` is the boundary: it
//! borrows burn-flex's buffers, decides whether a layer fits a kernel, and wraps the result.
//!
//! - `conv`: pointwise (1x1) convolutions through `gemm` and im2col convolutions, each with the
//!   epilogue fused into the pass that writes the output.
//! - `tapwise`: stride-1 convolutions with large dilations, one matrix multiply per kernel tap
//!   over the outputs it reaches inside the input (DeepLabV3's ASPP).
//! - `stem`: 3x3 stride-2 convolutions on a few input channels (every MobileNet's stem) with
//!   AVX-512: the strided input gathered by permutes, eight output channels a register tile.
//! - `direct`: depthwise convolutions as 1-D convolutions over phase planes; `interleaved`: the
//!   same on small maps, eight channels at a time on a channel-interleaved tile. Both copy their
//!   input once, and can finish it as they copy: a 1x1 expansion read only by a depthwise
//!   convolution leaves its bias and activation to that copy (a `Prologue`), one pass over the
//!   expanded map fewer. `plane3x3`: 3x3 planes at strides 1 and 2 with neither copy, read and
//!   written in place with masked AVX-512 loads and stores; `rows3`: the flat convolution of
//!   stride-1 3x3 planes, several output rows per register block, for the planes `plane3x3`
//!   does not take (CPUs with AVX2 only; GELU, which it has no vector form of: MobileNetV4
//!   Hybrid-Large).
//! - `blocked`: an inverted residual block without squeeze-and-excitation in a channel-blocked
//!   layout (eight channels in the lanes; AVX2, and AVX-512 with two channel blocks or two
//!   pixels a vector): its 1x1 convolutions with the epilogue in registers and its depthwise
//!   convolution without copies, for batches smaller than the threads.
//! - `fused`: an inverted residual block without squeeze-and-excitation (expansion, depthwise,
//!   projection, residual) per band of rows, its expanded map never in memory in full.
//! - `linear`: fully connected layers at small batch, a stream over the weight rows (the
//!   classifiers).
//! - `resize`: bilinear resizing of feature maps, as PyTorch computes it.
//! - `elementwise`: activations in place, and squeeze-and-excitation on one image.
//! - `train`: the forward and backward steps of the training kernels (BatchNorm with its
//!   activation, 1x1 and depthwise convolutions, squeeze-and-excitation).
//! - `simd`: run-time dispatch of the inner loops to AVX2+FMA copies where the CPU has them,
//!   and the AVX-512 check (`MOBILENET_BURN_AVX512=0` keeps every kernel on AVX2).
//!
//! Work is split over rayon's current thread pool; the caller decides which pool that is.

pub(crate) mod blocked;
pub(crate) mod conv;
pub(crate) mod direct;
pub(crate) mod elementwise;
pub(crate) mod fused;
pub(crate) mod interleaved;
pub(crate) mod linear;
pub(crate) mod parallel;
pub(crate) mod plane3x3;
pub(crate) mod resize;
pub(crate) mod rows3;
pub(crate) mod simd;
pub(crate) mod stem;
pub(crate) mod tapwise;
pub(crate) mod train;

/// Deterministic test values in [-1, 1), the same for every kernel's tests.
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// The geometry of a square convolution with torchvision's padding, `(kernel - 1) / 2 *
/// dilation`, for the kernels' tests.
#[cfg(test)]
pub(crate) fn test_geometry(
    channels: [usize; 2],
    size: [usize; 2],
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> conv::ConvGeometry {
    let padding = (kernel - 1) / 2 * dilation;
    let out = |size: usize| (size + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1;
    conv::ConvGeometry {
        in_channels: channels[0],
        out_channels: channels[1],
        in_height: size[0],
        in_width: size[1],
        kernel: [kernel, kernel],
        stride: [stride, stride],
        padding: [padding, padding],
        dilation: [dilation, dilation],
        out_height: out(size[0]),
        out_width: out(size[1]),
    }
}
