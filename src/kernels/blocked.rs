//! An inverted residual block (with or without squeeze-and-excitation) in a channel-blocked layout
//! (NCHW8c: `[channels / 8, pixels, 8]`, eight channels in the lanes of a vector), AVX2 and FMA,
//! with AVX-512F forms of the 1x1 kernel (a pair of channel blocks a vector) and of the stride-1
//! depthwise kernel (two pixels a vector) where the CPU has it ([`Isa`]).
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
//!   nor transposes;
//! - squeeze-and-excitation averages eight channels a vector and scales them in place, between
//!   the depthwise convolution and the projection.
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

use super::conv::{ConvGeometry, Epilogue, SharedOutput, filled_by, filled_into};
use super::elementwise::{Nonlinearity, SqueezeExcitationWeights, excitation};
use super::fused::InvertedResidualWeights;
use super::parallel::{for_each_task, zip_chunks};
use super::simd::{has_avx2_fma, has_avx512f, transpose8_avx};

/// Channels per block: the lanes of an AVX2 vector.
const LANES: usize = 8;

/// Output pixels per register tile of the 1x1 kernel.
const TILE_PIXELS: usize = 6;

/// Below this many multiply-adds a 1x1 convolution or a depthwise layer runs on one thread.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// Whether [`inverted_residual`] computes this block: a CPU with AVX2 and FMA; every channel
/// count a multiple of eight; a square, odd depthwise kernel at stride 1 or 2, dilated or not
/// (the segmentation backbones' last stages), with torchvision's padding; activations with a
/// vector form here (not GELU).
pub(crate) fn supports(
    g: &ConvGeometry,
    expands: bool,
    residual: bool,
    [in_channels, out_channels]: [usize; 2],
    activations: [Nonlinearity; 2],
) -> bool {
    let (k, s, d) = (g.kernel[0], g.stride[0], g.dilation[0]);
    let span = d * k.saturating_sub(1) + 1;
    let out = |size: usize| (size + 2 * g.padding[0]).saturating_sub(span) / s + 1;
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
        && d >= 1
        && g.dilation == [d, d]
        && g.padding == [d * (k - 1) / 2; 2]
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
///
/// For the AVX-512 1x1 kernel ([`Isa::Avx512`]) the 1x1 weights of each pair of output channel
/// blocks are interleaved, `[out / 16, in, 16]` (one 16-lane vector per input channel), an odd
/// last block staying `[in, 8]`.
#[derive(Debug, Clone)]
pub(crate) struct PackedBlock {
    expand: Option<Vec<f32>>,
    depthwise: Vec<f32>,
    project: Vec<f32>,
    isa: Isa,
}

/// The instructions of the 1x1 kernel: 8-lane AVX2 and FMA, or 16-lane AVX-512F (two output
/// channel blocks per vector). Both sum in the same order: their outputs are bit for bit equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx2,
    Avx512,
}

impl Isa {
    /// AVX-512 where the CPU has it (and `MOBILENET_BURN_AVX512=0` does not turn it off), else
    /// AVX2.
    pub(crate) fn best() -> Self {
        if has_avx512f() {
            Isa::Avx512
        } else {
            Isa::Avx2
        }
    }
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
    pack_for(block, in_channels, out_channels, Isa::best())
}

/// [`pack`] for the 1x1 kernel of `isa`.
///
/// # Panics
/// As [`pack`], and for [`Isa::Avx512`] on a CPU without AVX-512F.
pub(crate) fn pack_for(
    block: &InvertedResidualWeights,
    in_channels: usize,
    out_channels: usize,
    isa: Isa,
) -> PackedBlock {
    assert!(isa == Isa::Avx2 || has_avx512f());
    let g = block.depthwise;
    assert_supported(block, in_channels, out_channels);
    let channels = g.in_channels;
    let taps = g.kernel[0] * g.kernel[1];
    assert!(block.project_weight.len() == out_channels * channels);
    assert!(block.depthwise_weight.len() == channels * taps);
    PackedBlock {
        expand: block.expand.map(|e| {
            assert!(e.weight.len() == channels * in_channels);
            pack_pointwise(e.weight, in_channels, isa)
        }),
        depthwise: to_blocked(block.depthwise_weight, taps),
        project: pack_pointwise(block.project_weight, channels, isa),
        isa,
    }
}

/// 1x1 weights `[out, in]` for [`pointwise`] on `isa`: `[out / 8, in, 8]`, with each pair of
/// output blocks interleaved into `[in, 16]` for AVX-512 (an odd last block with eight zero
/// lanes: [`packed_len`] values).
fn pack_pointwise(weight: &[f32], in_channels: usize, isa: Isa) -> Vec<f32> {
    let blocked = to_blocked(weight, in_channels);
    if isa == Isa::Avx2 {
        return blocked;
    }
    let pair = 2 * in_channels * LANES;
    let mut wide = Vec::with_capacity(blocked.len());
    let mut pairs = blocked.chunks_exact(pair);
    for both in &mut pairs {
        let (first, second) = both.split_at(in_channels * LANES);
        for (a, b) in first.chunks_exact(LANES).zip(second.chunks_exact(LANES)) {
            wide.extend_from_slice(a);
            wide.extend_from_slice(b);
        }
    }
    // An odd last block: its eight lanes and eight zeros, a pair whose second block is not
    // stored.
    for lanes in pairs.remainder().chunks_exact(LANES) {
        wide.extend_from_slice(lanes);
        wide.extend_from_slice(&[0.0; LANES]);
    }
    wide
}

/// The length of `[m, k]` 1x1 weights packed for `isa` by [`pack_pointwise`].
fn packed_len(m: usize, k: usize, isa: Isa) -> usize {
    match isa {
        Isa::Avx2 => m * k,
        Isa::Avx512 => m.next_multiple_of(2 * LANES) * k,
    }
}

/// One block of a run for [`inverted_residuals`]: its weights, their packing, and its input and
/// output channels.
pub(crate) struct Stage<'a> {
    pub(crate) block: &'a InvertedResidualWeights<'a>,
    pub(crate) packed: &'a PackedBlock,
    /// `[in_channels, out_channels]`.
    pub(crate) channels: [usize; 2],
}

/// The block on `x` (`[batch, in_channels, h, w]`): `[batch, out_channels, out_h, out_w]`, one
/// image at a time with the threads inside each layer, with the weights [`pack`]ed from
/// `block`. Needs [`supports`].
///
/// # Panics
/// If the block is not [`supports`]ed, `packed` was packed from a block of other shapes, or a
/// slice is shorter than the shapes say.
// The bridge hands even single blocks to `inverted_residuals`; the unit tests take one block.
#[cfg(test)]
pub(crate) fn inverted_residual(
    x: &[f32],
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    block: &InvertedResidualWeights,
    packed: &PackedBlock,
) -> Vec<f32> {
    let stage = Stage {
        block,
        packed,
        channels: [in_channels, out_channels],
    };
    inverted_residuals(x, batch, None, &[stage])
}

/// A network's stem (`kernels::stem`'s dense 3x3 convolution at stride 2) that writes the
/// input of a run of blocks directly in the blocked layout.
#[derive(Clone, Copy)]
pub(crate) struct StemLayer<'a> {
    pub(crate) geometry: ConvGeometry,
    /// `[out, in, 3, 3]`.
    pub(crate) weight: &'a [f32],
    /// Bias and activation; no residual.
    pub(crate) epilogue: Epilogue<'a>,
}

/// Blocks in turn on `x` (`[batch, in_channels, h, w]` of the first), each one's output the
/// next one's input, in the blocked layout throughout: one conversion in and one out per image,
/// where [`inverted_residual`] block by block converts at every block. With a `stem`, `x` is
/// the stem's input (`[batch, stem_in, H, W]`), and the stem writes each image's first map in
/// the blocked layout (no conversion in). The same values (the conversions are copies),
/// whichever way the work is split ([`images_in_parallel`]).
///
/// # Panics
/// If `stages` is empty, a block is not [`supports`]ed, one block's output is not the next
/// one's input (channels and size; the stem's output the first block's input), the stem is not
/// `kernels::stem::supports`ed, a packing does not match its block, or `x` is shorter than
/// the shapes say.
pub(crate) fn inverted_residuals(
    x: &[f32],
    batch: usize,
    stem: Option<StemLayer>,
    stages: &[Stage],
) -> Vec<f32> {
    let (first, last) = (&stages[0], &stages[stages.len() - 1]);
    let in_pixels = first.block.depthwise.in_pixels();
    let out_pixels = last.block.depthwise.out_pixels();
    let image_in = match &stem {
        Some(stem) => {
            let (g, d) = (&stem.geometry, &first.block.depthwise);
            assert!(
                g.out_channels == first.channels[0]
                    && [g.out_height, g.out_width] == [d.in_height, d.in_width],
                "the stem's output is not the first block's input"
            );
            g.in_channels * g.in_pixels()
        }
        None => first.channels[0] * in_pixels,
    };
    let image_out = last.channels[1] * out_pixels;
    for (stage, next) in stages.iter().zip(&stages[1..]) {
        let (g, n) = (&stage.block.depthwise, &next.block.depthwise);
        assert!(
            stage.channels[1] == next.channels[0]
                && [g.out_height, g.out_width] == [n.in_height, n.in_width],
            "a block's output is not the next block's input"
        );
    }
    assert!(x.len() >= batch * image_in);
    let threads = rayon::current_num_threads();
    // One image through every block, on up to `threads` threads inside each layer.
    let image = |image: usize, out: &mut [MaybeUninit<f32>], threads: usize| {
        let mut scratch = Scratch::take();
        let x = &x[image * image_in..(image + 1) * image_in];
        let input = std::mem::take(&mut scratch.input);
        scratch.input = match &stem {
            Some(stem) => super::stem::conv_blocked_into(
                x,
                &stem.geometry,
                stem.weight,
                stem.epilogue,
                input,
                threads,
            ),
            None => to_blocked_into(x, in_pixels, input, threads),
        };
        for stage in stages {
            block_on_blocked(stage, &mut scratch, threads);
            // This block's output is the next one's input.
            std::mem::swap(&mut scratch.input, &mut scratch.projected);
        }
        from_blocked(&scratch.input, out_pixels, out, threads);
        scratch.give_back();
    };
    let fill = |output: &mut [MaybeUninit<f32>]| {
        let chunk = image_out.max(1);
        if images_in_parallel(batch, threads) {
            // Each thread its own images (and its own scratch), one thread inside each.
            let images = output.par_chunks_exact_mut(chunk).enumerate();
            images.for_each(|(at, out)| image(at, out, 1));
        } else {
            let images = output.chunks_exact_mut(chunk).enumerate();
            images.for_each(|(at, out)| image(at, out, threads));
        }
    };
    // SAFETY: the images' chunks cover the output (its length is `batch * image_out`), and
    // `from_blocked` writes every element of each chunk.
    unsafe { filled_by(batch * image_out, fill) }
}

/// Whether [`inverted_residuals`] gives each thread whole images (one thread inside each
/// layer), rather than taking the images one at a time with the threads inside each layer:
/// where the batch splits evenly between the threads (any batch of two or more on one
/// thread), or is at least twice their number.
/// (MobileNetV2 at batch 8 on two threads: each thread streams four images through the run,
/// its maps in its own cache, where a layer at a time split two ways had a parallel region
/// per layer and its maps shared between the cores.)
pub(crate) fn images_in_parallel(batch: usize, threads: usize) -> bool {
    batch > 1 && (batch.is_multiple_of(threads.max(1)) || batch >= 2 * threads)
}

/// One block on one image already in the blocked layout, `scratch.input` (`[in / 8, h * w,
/// 8]`): its output, blocked, in `scratch.projected`; each layer on up to `threads` threads.
///
/// # Panics
/// As [`inverted_residuals`].
fn block_on_blocked(stage: &Stage, scratch: &mut Scratch, threads: usize) {
    let &Stage {
        block,
        packed,
        channels: [in_channels, out_channels],
    } = stage;
    let g = block.depthwise;
    assert_supported(block, in_channels, out_channels);
    let channels = g.in_channels;
    let (in_pixels, out_pixels) = (g.in_pixels(), g.out_pixels());
    assert!(scratch.input.len() == in_channels * in_pixels);
    assert!(packed.project.len() == packed_len(out_channels, channels, packed.isa));
    assert!(packed.depthwise.len() == channels * g.kernel[0] * g.kernel[1]);
    let expand = match (block.expand, &packed.expand) {
        (Some(e), Some(weight))
            if weight.len() == packed_len(channels, in_channels, packed.isa) =>
        {
            Some((weight, e))
        }
        (None, None) => None,
        _ => panic!("the packed expansion does not match the block's"),
    };
    let Scratch {
        input,
        expanded,
        hidden,
        projected,
    } = scratch;
    if let Some((weight, e)) = expand {
        *expanded = pointwise(
            input,
            weight,
            [channels, in_channels, in_pixels],
            e.bias,
            None,
            e.activation,
            packed.isa,
            std::mem::take(expanded),
            threads,
        );
    }
    *hidden = depthwise_layer(
        if expand.is_some() { expanded } else { input },
        &packed.depthwise,
        &g,
        block.depthwise_bias,
        block.depthwise_activation,
        packed.isa,
        std::mem::take(hidden),
        threads,
    );
    if let Some(se) = &block.squeeze_excitation {
        squeeze_excitation(hidden, out_pixels, se, threads);
    }
    *projected = pointwise(
        hidden,
        &packed.project,
        [out_channels, channels, out_pixels],
        block.project_bias,
        block.residual.then_some(&input[..]),
        Nonlinearity::Identity,
        packed.isa,
        std::mem::take(projected),
        threads,
    );
}

/// The blocked maps of one image's pass through [`inverted_residuals`] (a block's input,
/// expansion, depthwise output and projection), kept for the next pass. Allocated afresh at
/// every call, maps this large go back to the system when freed and are faulted in again,
/// page by page, at the next (glibc's allocator trims them; measured on MobileNetV3-Small: 460
/// page faults and 1.3x the time per forward). Freeing them at the end of each call instead
/// measured worse still for LR-ASPP at 520x520 (14,000 faults and 1.4x the time a forward).
///
/// The sets are shared by the whole process ([`SCRATCH`]): there are as many as images were
/// ever in flight at once (one at batch 1, one per thread at larger batches), each as large as
/// the largest maps it held (MobileNetV2 at 224x224: about 8 MiB).
#[derive(Default)]
struct Scratch {
    input: Vec<f32>,
    expanded: Vec<f32>,
    hidden: Vec<f32>,
    projected: Vec<f32>,
}

/// The [`Scratch`] sets not in use.
static SCRATCH: std::sync::Mutex<Vec<Scratch>> = std::sync::Mutex::new(Vec::new());

impl Scratch {
    /// A set not in use, or a new empty one.
    fn take() -> Self {
        let mut sets = SCRATCH
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sets.pop().unwrap_or_default()
    }

    /// Keeps the set for the next pass.
    fn give_back(self) {
        let mut sets = SCRATCH
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sets.push(self);
    }
}

/// Squeeze-and-excitation on one blocked map (`[channels / 8, pixels, 8]`) in place: each
/// channel's mean, the gates from them ([`excitation`], as the NCHW kernel's), each channel
/// scaled by its gate. The means are summed in the NCHW kernel's order (`elementwise::sum`:
/// eight running sums over the pixels in turn, added up in order, then the pixels left over),
/// eight channels at once: the same bits as the layers one at a time. Channel blocks in
/// parallel when the map is large and `threads` is more than one.
///
/// # Panics
/// If the map is not whole channel blocks of `pixels`, or the weights' shapes do not match
/// its channels.
fn squeeze_excitation(
    map: &mut [f32],
    pixels: usize,
    weights: &SqueezeExcitationWeights,
    threads: usize,
) {
    let chunk = pixels * LANES;
    assert!(pixels > 0 && map.len().is_multiple_of(chunk));
    let channels = map.len() / pixels;
    let squeeze = weights.fc1_bias.len();
    assert!(
        weights.fc1_weight.len() == squeeze * channels
            && weights.fc2_weight.len() == channels * squeeze
            && weights.fc2_bias.len() == channels,
        "squeeze-and-excitation weights of other channels"
    );
    let whole = pixels / LANES * LANES;
    let means_of = |values: &[f32]| -> [f32; LANES] {
        // `running[j]` sums the pixels `p` with `p % 8 == j` below `whole`, eight channels in
        // its lanes; then they and the pixels left over are added in `sum`'s order.
        let mut running = [[0.0f32; LANES]; LANES];
        for group in values[..whole * LANES].chunks_exact(LANES * LANES) {
            for (sums, pixel) in running.iter_mut().zip(group.chunks_exact(LANES)) {
                sums.iter_mut().zip(pixel).for_each(|(s, &v)| *s += v);
            }
        }
        let mut tail = [-0.0f32; LANES];
        for pixel in values[whole * LANES..].chunks_exact(LANES) {
            tail.iter_mut().zip(pixel).for_each(|(s, &v)| *s += v);
        }
        let mut total = [-0.0f32; LANES];
        for sums in &running {
            total.iter_mut().zip(sums).for_each(|(t, &s)| *t += s);
        }
        std::array::from_fn(|lane| (total[lane] + tail[lane]) / pixels as f32)
    };
    // The passes over the map split only when it is large; the gates by their own rule.
    let map_threads = if map.len() >= PARALLEL_MIN_COPY {
        threads
    } else {
        1
    };
    let mut means = vec![0.0f32; channels];
    zip_chunks(
        map,
        chunk,
        &mut means,
        LANES,
        map_threads,
        |(values, means)| {
            means.copy_from_slice(&means_of(values));
        },
    );
    let scales = excitation(&means, weights, threads);
    let scale = |(scales, values): (&[f32], &mut [f32])| {
        for pixel in values.chunks_exact_mut(LANES) {
            pixel.iter_mut().zip(scales).for_each(|(v, &s)| *v *= s);
        }
    };
    zip_chunks(&scales, LANES, map, chunk, map_threads, scale);
}

/// `[channels, pixels]` (NCHW, one image) as `[channels / 8, pixels, 8]`.
///
/// # Panics
/// If the channels (`x.len() / pixels`) are not a multiple of eight.
pub(crate) fn to_blocked(x: &[f32], pixels: usize) -> Vec<f32> {
    to_blocked_into(x, pixels, Vec::new(), rayon::current_num_threads())
}

/// [`to_blocked`] in `buffer`'s allocation, on up to `threads` threads.
fn to_blocked_into(x: &[f32], pixels: usize, buffer: Vec<f32>, threads: usize) -> Vec<f32> {
    assert!(pixels > 0 && x.len().is_multiple_of(pixels * LANES) && has_avx2_fma());
    let blocks = x.len() / (pixels * LANES);
    // Bands of pixels with every channel block in each (starting at whole groups of eight):
    // the maps come from layers split by rows or pixels, and the 1x1 layer after reads them
    // by pixels, so each thread converts mostly what it wrote and reads what it converted.
    let groups = pixels / LANES;
    let bands = if x.len() >= PARALLEL_MIN_COPY {
        threads.clamp(1, groups.max(1))
    } else {
        1
    };
    let at = |band: usize| {
        if band == bands {
            pixels
        } else {
            groups * band / bands * LANES
        }
    };
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let shared = SharedOutput(out.as_mut_ptr().cast::<f32>());
        for_each_task(bands, |band| {
            let (first, end) = (at(band), at(band + 1));
            for block in 0..blocks {
                let planes = &x[block * pixels * LANES..(block + 1) * pixels * LANES];
                // SAFETY: pixels `first..end` of this block's chunk lie inside `out` (`end <=
                // pixels`), and no other band writes them (the bands are disjoint).
                let part = unsafe {
                    std::slice::from_raw_parts_mut(
                        shared
                            .at((block * pixels + first) * LANES)
                            .cast::<MaybeUninit<f32>>(),
                        (end - first) * LANES,
                    )
                };
                // SAFETY: the CPU has AVX2 (asserted above); `first` is a multiple of eight.
                unsafe { to_blocked_pixels(planes, part, pixels, [first, end]) }
            }
        });
    };
    // SAFETY: the bands cover every pixel (`at(0) == 0`, `at(bands) == pixels`) of every
    // block, and `to_blocked_pixels` writes every lane of each pixel of its band.
    unsafe { filled_into(buffer, x.len(), fill) }
}

/// Pixels `first..end` of one channel block (its eight planes, `planes`) in the blocked layout,
/// to `blocked` (those pixels' `(end - first) * 8` values), every element written.
///
/// # Safety
/// The CPU must have AVX2; `first` must be a multiple of eight, `end <= pixels`, `planes` hold
/// `8 * pixels` values.
#[target_feature(enable = "avx2,fma")]
unsafe fn to_blocked_pixels(
    planes: &[f32],
    blocked: &mut [MaybeUninit<f32>],
    pixels: usize,
    [first, end]: [usize; 2],
) {
    let whole = first + (end - first) / LANES * LANES;
    for start in (first..whole).step_by(LANES) {
        let rows: [[f32; LANES]; LANES] = std::array::from_fn(|lane| {
            let at = lane * pixels + start;
            planes[at..at + LANES].try_into().expect("eight values")
        });
        for (pixel, values) in transpose8_avx(&rows).iter().enumerate() {
            let at = (start - first + pixel) * LANES;
            for (slot, &value) in blocked[at..at + LANES].iter_mut().zip(values) {
                slot.write(value);
            }
        }
    }
    for pixel in whole..end {
        for lane in 0..LANES {
            blocked[(pixel - first) * LANES + lane].write(planes[lane * pixels + pixel]);
        }
    }
}

/// Below this many values a layout conversion runs on one thread.
const PARALLEL_MIN_COPY: usize = 1 << 15;

/// `[channels / 8, pixels, 8]` back to `[channels, pixels]`, every element of `out` written.
///
/// # Panics
/// If `out` and `blocked` differ in length, or it is not a multiple of `8 * pixels`.
pub(crate) fn from_blocked(
    blocked: &[f32],
    pixels: usize,
    out: &mut [MaybeUninit<f32>],
    threads: usize,
) {
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
    let threads = if out.len() >= PARALLEL_MIN_COPY {
        threads
    } else {
        1
    };
    zip_chunks(blocked, chunk, out, chunk, threads, convert);
}

/// The eight lanes of channel block `block` of an optional bias (zeros without one).
fn bias_lanes(bias: Option<&[f32]>, block: usize) -> [f32; LANES] {
    std::array::from_fn(|lane| bias.map_or(0.0, |bias| bias[block * LANES + lane]))
}

/// Defines `activation(x)` on one vector type from its intrinsics: the operations of
/// `elementwise`'s scalar forms in their order, lane by lane (NaN kept where those keep it).
macro_rules! activation_on {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($vector:ty): $setzero:ident, $set1:ident,
     $max:ident, $min:ident, $add:ident, $mul:ident) => {
        $(#[$doc])*
        #[inline(always)]
        $vis unsafe fn $name(v: $vector, activation: Nonlinearity) -> $vector {
            // SAFETY: the vector's instructions, as the caller's target features guarantee.
            unsafe {
                let zero = $setzero();
                let six = $set1(6.0);
                match activation {
                    Nonlinearity::Identity | Nonlinearity::Gelu => v,
                    // `x.max(0.0)`: 0 for NaN, as `f32::max` (`max_ps` returns its second
                    // operand when one is NaN).
                    Nonlinearity::ReLU => $max(v, zero),
                    // `x.clamp(0.0, 6.0)`: NaN stays NaN.
                    Nonlinearity::ReLU6 => $min(six, $max(zero, v)),
                    // `x * (x + 3).clamp(0, 6) * (1 / 6)`.
                    Nonlinearity::HardSwish => {
                        let gate = $min(six, $max(zero, $add(v, $set1(3.0))));
                        $mul($mul(v, gate), $set1(1.0 / 6.0))
                    }
                }
            }
        }
    };
}

activation_on!(
    /// `activation(x)` on eight lanes.
    ///
    /// # Safety
    /// The CPU must have AVX (the caller's target features).
    fn activate(__m256): _mm256_setzero_ps, _mm256_set1_ps, _mm256_max_ps, _mm256_min_ps,
        _mm256_add_ps, _mm256_mul_ps
);

activation_on!(
    /// [`activate`] on sixteen lanes.
    ///
    /// # Safety
    /// The CPU must have AVX-512F (the caller's target features).
    pub(crate) fn activate_wide(__m512): _mm512_setzero_ps, _mm512_set1_ps, _mm512_max_ps,
        _mm512_min_ps, _mm512_add_ps, _mm512_mul_ps
);

/// A 1x1 convolution on blocked maps: `out[o, p] = activation(sum_i w[o, i] x[i, p] + bias[o] +
/// residual[o, p])`, `[m, k, n]` = output channels, input channels, pixels; `weight` packed by
/// [`pack_pointwise`] for `isa`; `x`, `residual` and the result blocked. Split over the threads
/// by pixels when large, on up to `threads` threads. Written in `buffer`'s allocation.
#[allow(clippy::too_many_arguments)]
fn pointwise(
    x: &[f32],
    weight: &[f32],
    [m, k, n]: [usize; 3],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    activation: Nonlinearity,
    isa: Isa,
    buffer: Vec<f32>,
    threads: usize,
) -> Vec<f32> {
    assert!(
        x.len() == k * n
            && weight.len() == packed_len(m, k, isa)
            && m.is_multiple_of(LANES)
            && k.is_multiple_of(LANES)
    );
    assert!(bias.is_none_or(|b| b.len() >= m) && residual.is_none_or(|r| r.len() == m * n));
    assert!(has_avx2_fma() && (isa == Isa::Avx2 || has_avx512f()));
    let seven = isa == Isa::Avx512 && seven_pixel_tiles(n);
    let tile = match isa {
        Isa::Avx2 => TILE_PIXELS,
        Isa::Avx512 if seven => SEVEN_PIXELS,
        Isa::Avx512 => WIDE_TILE_PIXELS,
    };
    // Large maps are split between the threads by pixels; small ones (7x7: 49 pixels, where
    // whole tiles of pixels would split unevenly) by output channels, no more tasks than tiles of
    // channels.
    let threads = if m * n * k >= PARALLEL_MIN_MACS {
        threads.max(1)
    } else {
        1
    };
    let unit = match isa {
        Isa::Avx2 => 2,
        Isa::Avx512 if seven => 6,
        Isa::Avx512 => 4,
    };
    let by_pixels = n >= 4 * threads * tile;
    let blocks = m / LANES;
    let tasks = if by_pixels {
        threads.min(n.div_ceil(tile))
    } else {
        threads.min(blocks.div_ceil(unit))
    }
    .max(1);
    let fill = |output: &mut [MaybeUninit<f32>]| {
        let shared = SharedOutput(output.as_mut_ptr().cast::<f32>());
        let run = |task: usize| {
            let (pixels, range) = if by_pixels {
                // Equal shares of pixels, not of whole tiles: a remainder tile in each task
                // costs less than a tile more in one (a 10x10 map in tiles of 12 went 60 / 40).
                ([n * task / tasks, n * (task + 1) / tasks], [0, blocks])
            } else {
                // Pairs of blocks (the AVX-512 kernels start at an even block), as evenly as
                // they go. In whole tiles (6 blocks on a 7x7 map) V2's 160-channel
                // projections went 12 / 8 blocks, a fifth of their time waiting.
                let pairs = blocks.div_ceil(2);
                let at = |task: usize| (pairs * task / tasks * 2).min(blocks);
                ([0, n], [at(task), at(task + 1)])
            };
            let args = Columns {
                out: shared.at(0),
                x,
                weight,
                shape: [m, k, n],
                pixels,
                blocks: range,
                bias,
                residual,
                activation,
            };
            match isa {
                // SAFETY: the CPU has AVX2 and FMA (asserted above); `x`, `weight`, `bias` and
                // `residual` hold what the shapes say (asserted above); `output` is `m * n`
                // values and this task writes only its pixels of its channel blocks.
                Isa::Avx2 => unsafe { pointwise_columns(&args) },
                // SAFETY: as above, and the CPU has AVX-512F (asserted above); `weight` was
                // packed for it (its length asserted above); the task's blocks start at an even
                // block (units of four).
                Isa::Avx512 if seven => unsafe { pointwise_columns_seven(&args) },
                // SAFETY: as above.
                Isa::Avx512 => unsafe { pointwise_columns_wide(&args) },
            }
        };
        // One task runs on the calling thread.
        for_each_task(tasks, run);
    };
    // SAFETY: the tasks' pixel ranges (each with every block) or block ranges (each with every
    // pixel) cover the output, and `pointwise_columns` (or `pointwise_columns_wide`) writes
    // every channel of each block of its range at each of its pixels.
    unsafe { filled_into(buffer, m * n, fill) }
}

/// One task's share of [`pointwise`]: pixels `first..last` of the output.
struct Columns<'a> {
    out: *mut f32,
    x: &'a [f32],
    weight: &'a [f32],
    /// `[m, k, n]`: output channels, input channels, pixels.
    shape: [usize; 3],
    /// `[first, last]`.
    pixels: [usize; 2],
    /// The output channel blocks `[first, end)` (of 8 channels).
    blocks: [usize; 2],
    bias: Option<&'a [f32]>,
    residual: Option<&'a [f32]>,
    activation: Nonlinearity,
}

/// Pixels `first..last` of the output channel blocks in `args.blocks`, 8 lanes a vector;
/// `weight` packed `[m / 8, k, 8]` (or for AVX-512, where only an odd last block comes here,
/// whose weights sit where they would in that layout).
///
/// # Safety
/// The CPU must have AVX2 and FMA; `out` must hold `m * n` values in the blocked layout, of
/// which nobody else accesses these pixels of these blocks meanwhile; `x` must be `k * n`,
/// `weight` `m * k`, `bias` at least `m` and `residual` `m * n` values; `last <= n`, the blocks'
/// end at most `m / 8`.
#[target_feature(enable = "avx2,fma")]
unsafe fn pointwise_columns(args: &Columns) {
    let &Columns {
        out,
        x,
        weight,
        shape: [_, k, n],
        pixels: [first, last],
        blocks: [mut block, blocks],
        bias,
        residual,
        activation,
    } = args;
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

/// Output pixels per register tile of the AVX-512 1x1 kernel: with two 16-lane vectors of
/// output channels, 24 accumulators of the 32 registers.
const WIDE_TILE_PIXELS: usize = 12;

/// [`pointwise_columns`] on AVX-512F: a pair of output channel blocks (16 channels) a vector,
/// two vectors and 12 pixels a tile (one vector for an odd last pair), each input value
/// broadcast once for both; an odd last block is a pair with zero weights whose second half is
/// not stored. The sums run in the AVX2 kernel's order, so the two agree bit for bit.
///
/// # Safety
/// As [`pointwise_columns`], the CPU must have AVX-512F too, `weight` must be packed by
/// [`pack_pointwise`] for [`Isa::Avx512`], and the blocks' range must start at an even block.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn pointwise_columns_wide(args: &Columns) {
    let &Columns {
        out,
        x,
        weight,
        shape: [_, k, n],
        pixels: [first, last],
        blocks: [first_block, end_block],
        bias,
        residual,
        activation,
    } = args;
    // The pairs of blocks in the range (which starts at an even block), an odd last block as
    // a pair with zero weights whose second half is not stored.
    let pairs = end_block.div_ceil(2);
    let mut pair = first_block / 2;
    while pair < pairs {
        let both = pairs - pair >= 2;
        let w0 = &weight[pair * k * 2 * LANES..][..k * 2 * LANES];
        let w1 = &weight[(pair + usize::from(both)) * k * 2 * LANES..][..k * 2 * LANES];
        // The bias lanes of the tile's (up to) four blocks.
        let biases: [[f32; LANES]; 4] = std::array::from_fn(|b| {
            if 2 * pair + b < end_block {
                bias_lanes(bias, 2 * pair + b)
            } else {
                [0.0; LANES]
            }
        });
        let mut pixel = first;
        while pixel < last {
            let count = (last - pixel).min(WIDE_TILE_PIXELS);
            // SAFETY: as this function's caller guarantees; the tile's pixels are inside
            // `first..last`, its weights inside `weight` (sliced above).
            unsafe {
                let mut acc0 = [_mm512_setzero_ps(); WIDE_TILE_PIXELS];
                let mut acc1 = [_mm512_setzero_ps(); WIDE_TILE_PIXELS];
                for input_block in 0..k / LANES {
                    let xs = x.as_ptr().add((input_block * n + pixel) * LANES);
                    for lane in 0..LANES {
                        let c = input_block * LANES + lane;
                        let wv0 = _mm512_loadu_ps(w0.as_ptr().add(c * 2 * LANES));
                        if both {
                            let wv1 = _mm512_loadu_ps(w1.as_ptr().add(c * 2 * LANES));
                            if count == WIDE_TILE_PIXELS {
                                for j in 0..WIDE_TILE_PIXELS {
                                    let xv = _mm512_set1_ps(*xs.add(j * LANES + lane));
                                    acc0[j] = _mm512_fmadd_ps(wv0, xv, acc0[j]);
                                    acc1[j] = _mm512_fmadd_ps(wv1, xv, acc1[j]);
                                }
                            } else {
                                // A fixed trip count (no slice of the accumulators), so that
                                // they stay in registers.
                                for j in 0..WIDE_TILE_PIXELS {
                                    if j < count {
                                        let xv = _mm512_set1_ps(*xs.add(j * LANES + lane));
                                        acc0[j] = _mm512_fmadd_ps(wv0, xv, acc0[j]);
                                        acc1[j] = _mm512_fmadd_ps(wv1, xv, acc1[j]);
                                    }
                                }
                            }
                        } else if count == WIDE_TILE_PIXELS {
                            for (j, acc) in acc0.iter_mut().enumerate() {
                                let xv = _mm512_set1_ps(*xs.add(j * LANES + lane));
                                *acc = _mm512_fmadd_ps(wv0, xv, *acc);
                            }
                        } else {
                            for (j, acc) in acc0.iter_mut().enumerate() {
                                if j < count {
                                    let xv = _mm512_set1_ps(*xs.add(j * LANES + lane));
                                    *acc = _mm512_fmadd_ps(wv0, xv, *acc);
                                }
                            }
                        }
                    }
                }
                let vectors = 1 + usize::from(both);
                for (v, acc) in [acc0, acc1].into_iter().enumerate() {
                    if v >= vectors {
                        continue;
                    }
                    let block = 2 * (pair + v);
                    let bias = pair_lanes(&biases[2 * v], &biases[2 * v + 1]);
                    for (j, sum) in acc.into_iter().enumerate() {
                        if j < count {
                            store_pair(
                                out,
                                sum,
                                bias,
                                residual,
                                [block, end_block, n, pixel + j],
                                activation,
                            );
                        }
                    }
                }
            }
            pixel += count;
        }
        pair += 1 + usize::from(both);
    }
}

/// Pixels a tile of the AVX-512 1x1 kernel on maps of a multiple of 7 pixels up to
/// [`SEVEN_MAX_PIXELS`] (7x7: 49 pixels, which tiles of 12 leave a 1-pixel remainder at every
/// block): three vectors by 7 pixels, 21 accumulators.
const SEVEN_PIXELS: usize = 7;

/// The largest map the 7-pixel tiles take (7x7 and 7x14).
const SEVEN_MAX_PIXELS: usize = 98;

/// Whether the AVX-512 1x1 kernel takes `n` pixels in tiles of [`SEVEN_PIXELS`].
fn seven_pixel_tiles(n: usize) -> bool {
    n.is_multiple_of(SEVEN_PIXELS) && n <= SEVEN_MAX_PIXELS
}

/// [`pointwise_columns_wide`] in tiles of three vectors (fewer for the last pairs) by
/// [`SEVEN_PIXELS`], for the maps of [`seven_pixel_tiles`]. The activation is a constant of
/// each copy (`ACT`, see [`nonlinearity`]), so that no store branches on it.
///
/// # Safety
/// As [`pointwise_columns_wide`].
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn pointwise_columns_seven(args: &Columns) {
    // SAFETY: as this function's caller guarantees.
    unsafe {
        match args.activation {
            Nonlinearity::Identity | Nonlinearity::Gelu => columns_seven::<0>(args),
            Nonlinearity::ReLU => columns_seven::<1>(args),
            Nonlinearity::ReLU6 => columns_seven::<2>(args),
            Nonlinearity::HardSwish => columns_seven::<3>(args),
        }
    }
}

/// The activation numbered `ACT` by [`pointwise_columns_seven`] (Identity, ReLU, ReLU6,
/// HardSwish).
#[inline(always)]
fn nonlinearity<const ACT: u8>() -> Nonlinearity {
    match ACT {
        1 => Nonlinearity::ReLU,
        2 => Nonlinearity::ReLU6,
        3 => Nonlinearity::HardSwish,
        _ => Nonlinearity::Identity,
    }
}

/// [`pointwise_columns_seven`] with the activation `ACT`.
///
/// # Safety
/// As [`pointwise_columns_wide`].
#[inline(always)]
unsafe fn columns_seven<const ACT: u8>(args: &Columns) {
    let [first_block, end_block] = args.blocks;
    let pairs = end_block.div_ceil(2);
    let mut pair = first_block / 2;
    // SAFETY (each call): as this function's caller guarantees; the pairs lie in the range.
    unsafe {
        while pair < pairs {
            match pairs - pair {
                1 => pixels_seven::<1, ACT>(args, pair),
                2 => pixels_seven::<2, ACT>(args, pair),
                _ => pixels_seven::<3, ACT>(args, pair),
            }
            pair += (pairs - pair).min(3);
        }
    }
}

/// Pairs `pair..pair + V` of [`columns_seven`] at every pixel of the task's range.
///
/// # Safety
/// As [`pointwise_columns_wide`]; those pairs lie in the range (the last may be an odd
/// block's).
#[inline(always)]
unsafe fn pixels_seven<const V: usize, const ACT: u8>(args: &Columns, pair: usize) {
    let [first, last] = args.pixels;
    let end_block = args.blocks[1];
    // The bias lanes of the tile's blocks (zeros past the range's end).
    let biases: [[[f32; LANES]; 2]; V] = std::array::from_fn(|v| {
        std::array::from_fn(|half| {
            let block = 2 * (pair + v) + half;
            if block < end_block {
                bias_lanes(args.bias, block)
            } else {
                [0.0; LANES]
            }
        })
    });
    let mut pixel = first;
    // SAFETY (each call): as this function's caller guarantees; the tile's pixels lie in
    // `first..last`.
    unsafe {
        while pixel + SEVEN_PIXELS <= last {
            tile_seven::<V, ACT, true>(args, &biases, pair, pixel, SEVEN_PIXELS);
            pixel += SEVEN_PIXELS;
        }
        if pixel < last {
            tile_seven::<V, ACT, false>(args, &biases, pair, pixel, last - pixel);
        }
    }
}

/// One register tile of [`pixels_seven`]: pairs `pair..pair + V` at pixels
/// `pixel..pixel + count` (`count` is 7 where `FULL`). The accumulators are indexed only by
/// constants after unrolling (index loops of fixed trip count, a test inside for a partial
/// tile), so that they stay in registers; the sums run in the other tiles' order.
///
/// # Safety
/// As [`pixels_seven`], and the tile's pixels lie in the task's range.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn tile_seven<const V: usize, const ACT: u8, const FULL: bool>(
    args: &Columns,
    biases: &[[[f32; LANES]; 2]; V],
    pair: usize,
    pixel: usize,
    count: usize,
) {
    let &Columns {
        out,
        x,
        weight,
        shape: [_, k, n],
        blocks: [_, end_block],
        residual,
        ..
    } = args;
    let pair_len = k * 2 * LANES;
    let w = &weight[pair * pair_len..(pair + V) * pair_len];
    // SAFETY: as this function's caller guarantees: the input's, the weights' (sliced above)
    // and the output's offsets lie inside the shapes.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); SEVEN_PIXELS]; V];
        for input_block in 0..k / LANES {
            let xs = x.as_ptr().add((input_block * n + pixel) * LANES);
            for lane in 0..LANES {
                let c = input_block * LANES + lane;
                let mut wv = [_mm512_setzero_ps(); V];
                for v in 0..V {
                    wv[v] = _mm512_loadu_ps(w.as_ptr().add(v * pair_len + c * 2 * LANES));
                }
                for j in 0..SEVEN_PIXELS {
                    if FULL || j < count {
                        let xv = _mm512_set1_ps(*xs.add(j * LANES + lane));
                        for v in 0..V {
                            acc[v][j] = _mm512_fmadd_ps(wv[v], xv, acc[v][j]);
                        }
                    }
                }
            }
        }
        for v in 0..V {
            let bias = pair_lanes(&biases[v][0], &biases[v][1]);
            for j in 0..SEVEN_PIXELS {
                if !FULL && j >= count {
                    continue;
                }
                store_pair(
                    out,
                    acc[v][j],
                    bias,
                    residual,
                    [2 * (pair + v), end_block, n, pixel + j],
                    nonlinearity::<ACT>(),
                );
            }
        }
    }
}

/// Lanes `0..8` (`half` 0) or `8..16` (`half` 1) of `v`.
#[inline(always)]
unsafe fn half_of(v: __m512, half: usize) -> __m256 {
    // SAFETY: AVX-512F, as the caller's target features guarantee.
    unsafe {
        if half == 0 {
            _mm512_castps512_ps256(v)
        } else {
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)))
        }
    }
}

/// The bias lanes of a pair of blocks as one vector.
///
/// # Safety
/// The CPU must have AVX-512F.
#[inline(always)]
unsafe fn pair_lanes(first: &[f32; LANES], second: &[f32; LANES]) -> __m512 {
    // SAFETY: AVX-512F, as the caller guarantees; each load reads one `[f32; 8]`.
    unsafe {
        let low = _mm256_loadu_ps(first.as_ptr());
        let high = _mm256_loadu_ps(second.as_ptr());
        join_halves(low, high)
    }
}

/// `[low, high]` as one 16-lane vector.
///
/// # Safety
/// The CPU must have AVX-512F.
#[inline(always)]
unsafe fn join_halves(low: __m256, high: __m256) -> __m512 {
    // SAFETY: AVX-512F, as the caller guarantees; register operations only.
    unsafe {
        _mm512_castpd_ps(_mm512_insertf64x4::<1>(
            _mm512_castps_pd(_mm512_castps256_ps512(low)),
            _mm256_castps_pd(high),
        ))
    }
}

/// [`store`] for a pair of blocks at once (`block` and `block + 1`, the second only where it
/// is below `end_block`): the bias, residual and activation on all 16 lanes, then each half
/// stored to its block. Lane by lane the operations of two calls of [`store`], so the same
/// values, in half the vector operations (the 1x1 layers with few input channels, V2's
/// expansions from 16 and 24, spent a quarter of their time here).
///
/// # Safety
/// The CPU must have AVX-512F; `out` (and `residual`, if any) must hold that pixel of block
/// `block` and, if `block + 1 < end_block`, of `block + 1`.
#[inline(always)]
unsafe fn store_pair(
    out: *mut f32,
    acc: __m512,
    bias: __m512,
    residual: Option<&[f32]>,
    [block, end_block, n, p]: [usize; 4],
    activation: Nonlinearity,
) {
    let both = block + 1 < end_block;
    let (low, high) = ((block * n + p) * LANES, ((block + 1) * n + p) * LANES);
    // SAFETY: as the caller guarantees: the second block is touched only where `both`.
    unsafe {
        let mut v = _mm512_add_ps(acc, bias);
        if let Some(residual) = residual {
            let first = _mm256_loadu_ps(residual.as_ptr().add(low));
            let second = if both {
                _mm256_loadu_ps(residual.as_ptr().add(high))
            } else {
                _mm256_setzero_ps()
            };
            v = _mm512_add_ps(v, join_halves(first, second));
        }
        let v = activate_wide(v, activation);
        _mm256_storeu_ps(out.add(low), half_of(v, 0));
        if both {
            _mm256_storeu_ps(out.add(high), half_of(v, 1));
        }
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
/// when large, on up to `threads` threads. Written in `buffer`'s allocation.
#[allow(clippy::too_many_arguments)]
fn depthwise_layer(
    x: &[f32],
    weight: &[f32],
    g: &ConvGeometry,
    bias: Option<&[f32]>,
    activation: Nonlinearity,
    isa: Isa,
    buffer: Vec<f32>,
    threads: usize,
) -> Vec<f32> {
    let (in_pixels, out_pixels) = (g.in_pixels(), g.out_pixels());
    let taps = g.kernel[0] * g.kernel[1];
    let blocks = g.in_channels / LANES;
    assert!(x.len() == blocks * in_pixels * LANES && weight.len() == blocks * taps * LANES);
    assert!(bias.is_none_or(|b| b.len() >= g.in_channels) && has_avx2_fma());
    assert!(isa == Isa::Avx2 || has_avx512f());
    let row_len = g.out_width * LANES;
    // Output rows `rows` of channel block `block`, written to `out` (those rows of its chunk).
    let run = |block: usize, rows: [usize; 2], out: &mut [MaybeUninit<f32>]| {
        let bias = bias_lanes(bias, block);
        let x = &x[block * in_pixels * LANES..(block + 1) * in_pixels * LANES];
        let weight = &weight[block * taps * LANES..(block + 1) * taps * LANES];
        match isa {
            // SAFETY: the CPU has AVX2 and FMA (asserted above); the block's input, weights
            // and output rows hold what the geometry says (asserted above; `out` is those rows
            // of one block's chunk).
            Isa::Avx2 => unsafe { depthwise_block(x, weight, &bias, g, activation, rows, out) },
            // SAFETY: as above, and the CPU has AVX-512F (asserted above).
            Isa::Avx512 => unsafe {
                depthwise_block_wide(x, weight, &bias, g, activation, rows, out)
            },
        }
    };
    let threads = if blocks * out_pixels * taps * LANES >= PARALLEL_MIN_MACS {
        threads.max(1)
    } else {
        1
    };
    let all_rows = [0, g.out_height];
    let fill = |output: &mut [MaybeUninit<f32>]| {
        if threads <= 1 {
            let chunks = output.chunks_exact_mut(out_pixels * LANES);
            chunks
                .enumerate()
                .for_each(|(block, out)| run(block, all_rows, out));
            return;
        }
        // Bands of output rows with every channel block in each, where each thread gets enough
        // rows: a thread reads mostly the rows of the input that it wrote itself (the
        // expansion is split by pixels), where a split by channel blocks read half of them
        // from the other core's cache. Else equal ranges of channel blocks with every row:
        // rayon's adaptive split of the blocks left a thread idle for 12 us of thread time a
        // layer (V2, 7x7 and 14x14 maps), the equal ranges 4.5.
        let by_rows = g.out_height >= ROW_BANDS_MIN_ROWS_PER_THREAD * threads;
        let shared = SharedOutput(output.as_mut_ptr().cast::<f32>());
        for_each_task(threads, |task| {
            let (range, rows) = if by_rows {
                let band = |task: usize| g.out_height * task / threads;
                (0..blocks, [band(task), band(task + 1)])
            } else {
                let at = |task: usize| blocks * task / threads;
                (at(task)..at(task + 1), all_rows)
            };
            for block in range {
                let at = block * out_pixels * LANES + rows[0] * row_len;
                // SAFETY: these rows of this block's chunk lie inside the output (`block <
                // blocks`, `rows[1] <= out_height`), and no other task touches them (the
                // tasks' bands of rows, or ranges of blocks, are disjoint).
                let out = unsafe {
                    std::slice::from_raw_parts_mut(
                        shared.at(at).cast::<MaybeUninit<f32>>(),
                        (rows[1] - rows[0]) * row_len,
                    )
                };
                run(block, rows, out);
            }
        });
    };
    // SAFETY: every row of every block's chunk goes to `depthwise_block` (whole chunks, bands
    // of rows covering `0..out_height` with every block, or ranges of blocks covering
    // `0..blocks` with every row), which writes all of what it is given.
    unsafe { filled_into(buffer, blocks * out_pixels * LANES, fill) }
}

/// Output pixels computed together away from the left and right edges.
const DW_PIXELS: usize = 4;

/// A depthwise layer is split between the threads by bands of output rows where each thread
/// gets at least this many, else by channel blocks. Measured on two threads (V2, per layer):
/// bands 0.67-0.87x the channel split's time at 112x112 to 28x28 inputs, 1.13-1.25x at 14x14
/// outputs.
const ROW_BANDS_MIN_ROWS_PER_THREAD: usize = 12;

/// Output rows `rows` of one channel block of [`depthwise_layer`], every element of `out`
/// (those rows) written.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `x` must hold `in_pixels * 8` values, `weight` `taps * 8`,
/// `out` `(rows[1] - rows[0]) * out_width * 8`, `rows[1] <= out_height`.
#[target_feature(enable = "avx2,fma")]
unsafe fn depthwise_block(
    x: &[f32],
    weight: &[f32],
    bias: &[f32; LANES],
    g: &ConvGeometry,
    activation: Nonlinearity,
    rows: [usize; 2],
    out: &mut [MaybeUninit<f32>],
) {
    // SAFETY: as this function's caller guarantees.
    unsafe { depthwise_sizes::<false>(x, weight, bias, g, activation, rows, out) }
}

/// [`depthwise_block`] with AVX-512F at stride 1: away from the edges two neighbouring output
/// pixels (16 contiguous values, as are their inputs at each tap) a vector, the eight weights
/// of a tap broadcast to both halves; lane by lane the same operations, so the same values.
///
/// # Safety
/// As [`depthwise_block`], and the CPU must have AVX-512F.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn depthwise_block_wide(
    x: &[f32],
    weight: &[f32],
    bias: &[f32; LANES],
    g: &ConvGeometry,
    activation: Nonlinearity,
    rows: [usize; 2],
    out: &mut [MaybeUninit<f32>],
) {
    // SAFETY: as this function's caller guarantees.
    unsafe { depthwise_sizes::<true>(x, weight, bias, g, activation, rows, out) }
}

/// [`depthwise_rows`] compiled for `g`'s kernel size and stride where MobileNet has them.
///
/// # Safety
/// As [`depthwise_block`] (AVX-512F where `WIDE`).
#[inline(always)]
unsafe fn depthwise_sizes<const WIDE: bool>(
    x: &[f32],
    weight: &[f32],
    bias: &[f32; LANES],
    g: &ConvGeometry,
    activation: Nonlinearity,
    rows: [usize; 2],
    out: &mut [MaybeUninit<f32>],
) {
    // SAFETY: as this function's caller guarantees; each copy gets `g`'s own sizes.
    unsafe {
        match (g.kernel[0], g.stride[0], g.dilation[0]) {
            (3, 1, 1) => depthwise_rows::<WIDE, 3, 1, 1>(x, weight, bias, g, activation, rows, out),
            (3, 2, 1) => depthwise_rows::<WIDE, 3, 2, 1>(x, weight, bias, g, activation, rows, out),
            (5, 1, 1) => depthwise_rows::<WIDE, 5, 1, 1>(x, weight, bias, g, activation, rows, out),
            (5, 2, 1) => depthwise_rows::<WIDE, 5, 2, 1>(x, weight, bias, g, activation, rows, out),
            // The segmentation backbones' dilated last stage.
            (3, 1, 2) => depthwise_rows::<WIDE, 3, 1, 2>(x, weight, bias, g, activation, rows, out),
            (5, 1, 2) => depthwise_rows::<WIDE, 5, 1, 2>(x, weight, bias, g, activation, rows, out),
            _ => depthwise_rows::<WIDE, 0, 0, 0>(x, weight, bias, g, activation, rows, out),
        }
    }
}

/// The body of [`depthwise_block`] (`WIDE` false) and [`depthwise_block_wide`] (`WIDE` true),
/// compiled for kernel size `K`, stride `S` and dilation `D` where they are not 0 (MobileNet's
/// 3x3 and 5x5 at strides 1 and 2, and the segmentation backbones' at dilation 2), else for
/// `g`'s. Dilation `d` puts tap `(ky, kx)` at `(ky * d, kx * d)` from the window's corner.
/// With constant sizes the tap loops unroll and the offsets are constants; with the sizes read
/// at run time the same loops measured as fast in one build and 1.4x slower in another, so
/// MobileNet's sizes do not depend on that.
///
/// # Safety
/// As those functions' (AVX-512F where `WIDE`), and `K`, `S` and `D`, where `K` is not 0, must
/// be `g`'s kernel size, stride and dilation.
#[inline(always)]
unsafe fn depthwise_rows<const WIDE: bool, const K: usize, const S: usize, const D: usize>(
    x: &[f32],
    weight: &[f32],
    bias: &[f32; LANES],
    g: &ConvGeometry,
    activation: Nonlinearity,
    [first_row, end_row]: [usize; 2],
    out: &mut [MaybeUninit<f32>],
) {
    let (k, s, d) = if K == 0 {
        (g.kernel[0], g.stride[0], g.dilation[0])
    } else {
        (K, S, D)
    };
    assert!(k == g.kernel[0] && s == g.stride[0] && d == g.dilation[0] && d >= 1);
    let (h, w, pad) = (g.in_height, g.in_width, g.padding[0]);
    assert!(x.len() == h * w * LANES && weight.len() == k * k * LANES);
    assert!(first_row <= end_row && end_row <= g.out_height);
    assert!(out.len() == (end_row - first_row) * g.out_width * LANES);
    let (xs, ws) = (x.as_ptr(), weight.as_ptr());
    let out_ptr = out.as_mut_ptr().cast::<f32>();
    // Output columns whose taps all lie inside the row: `ox * s >= pad` and
    // `ox * s + (k - 1) * d - pad < w`.
    let span = (k - 1) * d + 1;
    let inner_first = pad.div_ceil(s);
    let inner_end = if w + pad >= span {
        ((w + pad - span) / s + 1).min(g.out_width)
    } else {
        0
    };
    // SAFETY (every block below): the CPU has AVX2 and FMA, and AVX-512F where `WIDE`; input
    // offsets are inside the plane (rows and columns checked, or inside the inner columns; the
    // wide path's 16 values at each tap are two pixels of them), weight offsets below
    // `k * k * 8`, output offsets below `out.len()` (rows `first_row..end_row`).
    unsafe {
        let b = _mm256_loadu_ps(bias.as_ptr());
        for oy in first_row..end_row {
            let top = (oy * s) as isize - pad as isize;
            // The kernel rows that fall inside the plane: `0 <= top + ky * d < h`.
            let ky_first = ((-top).max(0) as usize).div_ceil(d).min(k);
            let ky_end = ((h as isize - top).max(0) as usize)
                .div_ceil(d)
                .clamp(ky_first, k);
            let out_row = out_ptr.add((oy - first_row) * g.out_width * LANES);
            let mut ox = 0;
            while ox < g.out_width {
                if WIDE && s == 1 && ox >= inner_first && ox + 2 * DW_PIXELS <= inner_end {
                    let b16 = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(b)));
                    let mut acc = [b16; DW_PIXELS];
                    for ky in ky_first..ky_end {
                        let row = xs.add((top + (ky * d) as isize) as usize * w * LANES);
                        for kx in 0..k {
                            let wv = _mm256_loadu_ps(ws.add((ky * k + kx) * LANES));
                            let wv = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(wv)));
                            for (j, a) in acc.iter_mut().enumerate() {
                                let ix = ox + 2 * j + kx * d - pad;
                                *a = _mm512_fmadd_ps(_mm512_loadu_ps(row.add(ix * LANES)), wv, *a);
                            }
                        }
                    }
                    for (j, a) in acc.into_iter().enumerate() {
                        let at = out_row.add((ox + 2 * j) * LANES);
                        _mm512_storeu_ps(at, activate_wide(a, activation));
                    }
                    ox += 2 * DW_PIXELS;
                } else if ox >= inner_first && ox + DW_PIXELS <= inner_end {
                    let mut acc = [b; DW_PIXELS];
                    for ky in ky_first..ky_end {
                        let row = xs.add((top + (ky * d) as isize) as usize * w * LANES);
                        for kx in 0..k {
                            let wv = _mm256_loadu_ps(ws.add((ky * k + kx) * LANES));
                            for (j, a) in acc.iter_mut().enumerate() {
                                let ix = (ox + j) * s + kx * d - pad;
                                *a = _mm256_fmadd_ps(_mm256_loadu_ps(row.add(ix * LANES)), wv, *a);
                            }
                        }
                    }
                    for (j, a) in acc.into_iter().enumerate() {
                        _mm256_storeu_ps(out_row.add((ox + j) * LANES), activate(a, activation));
                    }
                    ox += DW_PIXELS;
                } else {
                    // Near an edge (or in a row too short for the tiles above): up to
                    // `DW_PIXELS` pixels with each tap checked against the row. Independent
                    // sums, so that the pixels overlap in the pipeline rather than each wait
                    // for its previous multiply-add; taps in the same order, so the same values.
                    let pixels = (g.out_width - ox).min(DW_PIXELS);
                    let mut acc = [b; DW_PIXELS];
                    for ky in ky_first..ky_end {
                        let row = xs.add((top + (ky * d) as isize) as usize * w * LANES);
                        for kx in 0..k {
                            let wv = _mm256_loadu_ps(ws.add((ky * k + kx) * LANES));
                            for (j, a) in acc.iter_mut().enumerate() {
                                let ix = ((ox + j) * s + kx * d) as isize - pad as isize;
                                if j < pixels && (0..w as isize).contains(&ix) {
                                    let xv = _mm256_loadu_ps(row.add(ix as usize * LANES));
                                    *a = _mm256_fmadd_ps(xv, wv, *a);
                                }
                            }
                        }
                    }
                    for (j, a) in acc.into_iter().enumerate().take(pixels) {
                        _mm256_storeu_ps(out_row.add((ox + j) * LANES), activate(a, activation));
                    }
                    ox += pixels;
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
    use crate::kernels::elementwise::squeeze_excitation_images;
    use crate::kernels::fused::Pointwise;
    use crate::kernels::{test_geometry as geometry, test_values as values};

    #[test]
    fn blocked_layout_round_trips() {
        // The last two are large enough to split: in bands of pixels that end in a partial
        // group of eight, on two and three threads.
        let cases = [
            (8, 1),
            (8, 7),
            (16, 8),
            (24, 49),
            (32, 100),
            (16, 3001),
            (40, 1089),
        ];
        for ((channels, pixels), threads) in cases
            .into_iter()
            .flat_map(|case| [1, 2, 3].map(|threads| (case, threads)))
        {
            let x = values(channels * pixels, channels as u32);
            let blocked = to_blocked_into(&x, pixels, Vec::new(), threads);
            for c in 0..channels {
                for p in 0..pixels {
                    assert_eq!(
                        blocked[((c / 8) * pixels + p) * 8 + c % 8],
                        x[c * pixels + p]
                    );
                }
            }
            let mut back = vec![MaybeUninit::new(f32::NAN); x.len()];
            from_blocked(&blocked, pixels, &mut back, threads);
            // SAFETY: `back` was initialized above (and overwritten by `from_blocked`).
            let back: Vec<f32> = back
                .into_iter()
                .map(|v| unsafe { v.assume_init() })
                .collect();
            assert_eq!(back, x);
        }
    }

    /// The blocked block equals its layers run one after the other in NCHW (`pointwise`,
    /// `depthwise`, squeeze-and-excitation where the case has it, `pointwise` with the
    /// residual; each tested against the definition), on MobileNet's kernels and strides, with
    /// and without expansion, every activation, sizes that leave partial register tiles (and
    /// pixel counts that are not whole groups of eight for the means), and 1x1 maps.
    #[test]
    fn blocked_block_equals_its_layers_in_turn() {
        if !has_avx2_fma() {
            return;
        }
        // (in, expanded, out, size, kernel, stride, expansion's and depthwise's activations,
        // squeeze-and-excitation's squeezed channels, dilation)
        use Nonlinearity::{HardSwish, Identity, ReLU, ReLU6};
        let cases = [
            (8, 48, 8, [13, 11], 3, 1, ReLU6, ReLU6, 0, 1),
            (16, 48, 24, [13, 11], 3, 2, ReLU6, ReLU6, 0, 1),
            (8, 8, 16, [9, 10], 3, 1, Identity, ReLU, 0, 1),
            (16, 24, 8, [17, 9], 5, 2, HardSwish, HardSwish, 0, 1),
            (16, 40, 16, [12, 12], 5, 1, ReLU, HardSwish, 0, 1),
            (8, 24, 8, [1, 1], 3, 1, ReLU6, ReLU6, 0, 1),
            (8, 24, 16, [2, 3], 5, 2, ReLU6, Identity, 0, 1),
            (24, 144, 24, [56, 30], 3, 1, ReLU6, ReLU6, 0, 1),
            (24, 72, 40, [57, 31], 5, 2, ReLU, ReLU, 0, 1),
            // Sizes without their own compiled copy (read at run time).
            (16, 32, 16, [9, 12], 7, 1, ReLU, ReLU6, 0, 1),
            (8, 16, 8, [6, 5], 7, 2, ReLU, HardSwish, 0, 1),
            // Squeeze-and-excitation: V3's shapes, without expansion, 1x1 and odd maps, and a
            // map large enough for the parallel means.
            (16, 16, 16, [15, 13], 3, 2, Identity, ReLU, 8, 1),
            (40, 120, 40, [14, 14], 5, 1, HardSwish, HardSwish, 32, 1),
            (24, 72, 40, [29, 27], 5, 2, ReLU, ReLU, 24, 1),
            (48, 288, 96, [7, 7], 5, 1, HardSwish, HardSwish, 72, 1),
            (8, 16, 8, [1, 1], 3, 1, ReLU, HardSwish, 8, 1),
            (24, 72, 24, [56, 56], 3, 1, ReLU, ReLU, 24, 1),
            // Dilated: the segmentation backbones' last stages (dilation 2, 5x5 with
            // squeeze-and-excitation, at 1/16 of 520x520: 33x33), a dilation wider than the
            // map, stride 2.
            (40, 120, 40, [33, 33], 5, 1, HardSwish, HardSwish, 32, 2),
            (24, 72, 24, [17, 17], 5, 1, HardSwish, HardSwish, 24, 2),
            (80, 480, 112, [33, 33], 3, 1, HardSwish, HardSwish, 0, 2),
            (16, 48, 16, [5, 7], 5, 1, ReLU6, ReLU6, 0, 3),
            (16, 48, 24, [19, 20], 3, 2, ReLU6, ReLU, 0, 2),
        ];
        for (index, (cin, ce, cout, size, kernel, stride, expand_act, dw_act, squeeze, dilation)) in
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
            let g = geometry([ce, ce], size, kernel, stride, dilation);
            let residual = stride == 1 && cin == cout;
            let expands = ce != cin;
            let (fc1, fc1_bias) = (values(squeeze * ce, seed + 7), values(squeeze, seed + 8));
            let (fc2, fc2_bias) = (values(ce * squeeze, seed + 9), values(ce, seed + 10));
            let se = (squeeze > 0).then_some(SqueezeExcitationWeights {
                fc1_weight: &fc1,
                fc1_bias: &fc1_bias,
                fc2_weight: &fc2,
                fc2_bias: &fc2_bias,
                slope: 1.0 / 6.0,
                offset: 0.5,
            });
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
                squeeze_excitation: se,
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
            let mut hidden = depthwise(&hidden, batch, &g, &dw, epilogue);
            if let Some(se) = &se {
                let image = ce * g.out_pixels();
                squeeze_excitation_images(&mut hidden, image, ce, se);
            }
            let epilogue = Epilogue {
                bias: Some(&project_bias),
                residual: residual.then_some(&x[..]),
                activation: Nonlinearity::Identity,
            };
            let g2 = geometry([ce, cout], [g.out_height, g.out_width], 1, 1, 1);
            let expected = pointwise_nchw(&hidden, batch, &g2, &project, epilogue);
            let packed = pack_for(&block, cin, cout, Isa::Avx2);
            let actual = inverted_residual(&x, batch, cin, cout, &block, &packed);
            assert_eq!(actual.len(), expected.len(), "case {index}: length");
            for (at, (a, e)) in actual.iter().zip(&expected).enumerate() {
                assert!(
                    (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
                    "case {index}[{at}]: {a} vs {e}"
                );
            }
            // The AVX-512 kernel sums in the AVX2 kernel's order: bit for bit the same.
            if has_avx512f() {
                let packed = pack_for(&block, cin, cout, Isa::Avx512);
                let wide = inverted_residual(&x, batch, cin, cout, &block, &packed);
                let same = wide
                    .iter()
                    .zip(&actual)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "case {index}: AVX-512 differs from AVX2");
            }
        }
    }

    /// A run of blocks in the blocked layout (`inverted_residuals`) is the blocks one at a time
    /// bit for bit (the conversions between them are copies): V3's shapes with and without
    /// squeeze-and-excitation, a stride, residuals and no expansion; on two threads, three
    /// images (one at a time, the threads inside each layer) and two (an image a thread).
    #[test]
    fn a_run_of_blocks_is_the_blocks_in_turn() {
        if !has_avx2_fma() {
            return;
        }
        // (in, expanded, out, kernel, stride, squeezed channels) from a 15x13 input.
        let rows = [
            (16, 16, 16, 3, 2, 8),
            (16, 64, 24, 3, 2, 0),
            (24, 72, 24, 3, 1, 0),
            (24, 72, 40, 5, 2, 24),
            (40, 120, 40, 5, 1, 32),
        ];
        let (batch, mut size) = (3, [15, 13]);
        let mut owned = Vec::new();
        for (index, &(cin, ce, cout, kernel, stride, squeeze)) in rows.iter().enumerate() {
            let seed = 20 * index as u32;
            let g = geometry([ce, ce], size, kernel, stride, 1);
            size = [g.out_height, g.out_width];
            let weights: Vec<Vec<f32>> = [
                ce * cin,
                ce,
                ce * kernel * kernel,
                ce,
                cout * ce,
                cout,
                squeeze * ce,
                squeeze,
                ce * squeeze,
                ce,
            ]
            .iter()
            .enumerate()
            .map(|(at, &len)| values(len, seed + at as u32))
            .collect();
            owned.push((g, [cin, ce, cout], squeeze, weights));
        }
        let blocks: Vec<InvertedResidualWeights> = owned
            .iter()
            .map(|(g, [cin, ce, cout], squeeze, w)| InvertedResidualWeights {
                expand: (ce != cin).then_some(Pointwise {
                    weight: &w[0],
                    bias: Some(&w[1]),
                    activation: Nonlinearity::HardSwish,
                }),
                depthwise: *g,
                depthwise_weight: &w[2],
                depthwise_bias: Some(&w[3]),
                depthwise_activation: Nonlinearity::ReLU,
                squeeze_excitation: (*squeeze > 0).then_some(SqueezeExcitationWeights {
                    fc1_weight: &w[6],
                    fc1_bias: &w[7],
                    fc2_weight: &w[8],
                    fc2_bias: &w[9],
                    slope: 1.0 / 6.0,
                    offset: 0.5,
                }),
                project_weight: &w[4],
                project_bias: Some(&w[5]),
                residual: g.stride[0] == 1 && cin == cout,
            })
            .collect();
        let packed: Vec<PackedBlock> = blocks
            .iter()
            .zip(&rows)
            .map(|(block, &(cin, _, cout, ..))| pack(block, cin, cout))
            .collect();
        let x = values(batch * rows[0].0 * 15 * 13, 99);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("thread pool");
        assert!(!images_in_parallel(3, 2) && images_in_parallel(2, 2));
        let mut expected = x.clone();
        for ((block, packed), &(cin, _, cout, ..)) in blocks.iter().zip(&packed).zip(&rows) {
            expected =
                pool.install(|| inverted_residual(&expected, batch, cin, cout, block, packed));
        }
        let stages: Vec<Stage> = blocks
            .iter()
            .zip(&packed)
            .zip(&rows)
            .map(|((block, packed), &(cin, _, cout, ..))| Stage {
                block,
                packed,
                channels: [cin, cout],
            })
            .collect();
        let same = |a: &[f32], b: &[f32]| {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits())
        };
        let actual = pool.install(|| inverted_residuals(&x, batch, None, &stages));
        assert!(
            same(&actual, &expected),
            "the run differs from the blocks in turn"
        );
        let two = &x[..2 * x.len() / 3];
        let actual = pool.install(|| inverted_residuals(two, 2, None, &stages));
        let expected = &expected[..2 * expected.len() / 3];
        assert!(same(&actual, expected), "an image a thread differs");
    }

    /// Squeeze-and-excitation on a blocked map is the NCHW kernel's bit for bit (the means
    /// summed in its order), on pixel counts below, at and past whole groups of eight, on maps
    /// large enough for the parallel passes, and with gates computed on one or two threads.
    #[test]
    fn blocked_squeeze_excitation_is_the_nchw_kernels() {
        if !has_avx2_fma() {
            return;
        }
        for (index, (channels, squeeze, pixels)) in [
            (8, 8, 1),
            (16, 8, 7),
            (24, 8, 8),
            (72, 24, 49),
            (40, 16, 50),
            (96, 24, 197),
            (72, 24, 3136),
            // Gates computed on two threads here (many weights) and on one by the NCHW
            // kernel (a small map), then on two by both.
            (576, 144, 7),
            (960, 240, 49),
        ]
        .into_iter()
        .enumerate()
        {
            let seed = 11 * index as u32;
            let map = values(channels * pixels, seed);
            let (fc1, fc1_bias) = (
                values(squeeze * channels, seed + 1),
                values(squeeze, seed + 2),
            );
            let (fc2, fc2_bias) = (
                values(channels * squeeze, seed + 3),
                values(channels, seed + 4),
            );
            let weights = SqueezeExcitationWeights {
                fc1_weight: &fc1,
                fc1_bias: &fc1_bias,
                fc2_weight: &fc2,
                fc2_bias: &fc2_bias,
                slope: 1.0 / 6.0,
                offset: 0.5,
            };
            let mut expected = map.clone();
            crate::kernels::elementwise::squeeze_excitation(&mut expected, channels, &weights);
            let mut blocked = to_blocked(&map, pixels);
            squeeze_excitation(&mut blocked, pixels, &weights, 2);
            let mut actual = vec![MaybeUninit::new(f32::NAN); map.len()];
            from_blocked(&blocked, pixels, &mut actual, 2);
            // SAFETY: `actual` was initialized above (and overwritten by `from_blocked`).
            let same = actual
                .iter()
                .zip(&expected)
                .all(|(a, e)| unsafe { a.assume_init() }.to_bits() == e.to_bits());
            assert!(
                same,
                "{channels} channels, {pixels} pixels: not the NCHW kernel's"
            );
        }
    }

    /// The 1x1 kernel against the definition (sums in input channel order with fused
    /// multiply-adds from 0, then the bias, the residual, the activation), on both instruction
    /// sets: pixel splits with partial tiles, the channel split of small maps (7x7), odd block
    /// counts (24, 40, 72 outputs), one block, and the 7-pixel tiles of 7x7 and 7x14 maps.
    /// AVX-512 must equal AVX2 bit for bit.
    #[test]
    fn pointwise_kernels_equal_the_definition() {
        if !has_avx2_fma() {
            return;
        }
        let shapes = [
            (960, 160, 49),
            (24, 144, 49),
            (40, 96, 7),
            (8, 8, 1),
            (16, 32, 200),
            (72, 24, 97),
            (32, 64, 3136),
            // Tiles of 7 pixels: one, two and three vectors; split by pixels at 98.
            (16, 24, 98),
            (48, 32, 98),
            (40, 96, 49),
            // A 10x10 map split by pixels into shares that are not whole tiles.
            (64, 48, 100),
            // Split by channels: pairs of blocks in tiles of 7 pixels; an odd last block.
            (160, 96, 49),
            (40, 288, 25),
        ];
        for (index, (m, k, n)) in shapes.into_iter().enumerate() {
            let seed = 7 * index as u32;
            let x = values(k * n, seed);
            let weight = values(m * k, seed + 1);
            let bias = values(m, seed + 2);
            let residual = values(m * n, seed + 3);
            let activation = Nonlinearity::ReLU6;
            let (xb, rb) = (to_blocked(&x, n), to_blocked(&residual, n));
            let mut expected = vec![0.0; m * n];
            for o in 0..m {
                for p in 0..n {
                    let sum = (0..k).fold(0.0f32, |acc, i| {
                        weight[o * k + i].mul_add(x[i * n + p], acc)
                    });
                    let v = sum + bias[o] + residual[o * n + p];
                    expected[o * n + p] = v.clamp(0.0, 6.0);
                }
            }
            let mut outputs = vec![];
            // One to three tasks (split by pixels or by channels, as the shape says).
            for (isa, threads) in [Isa::Avx2, Isa::Avx512]
                .into_iter()
                .flat_map(|isa| [1, 2, 3].map(|threads| (isa, threads)))
            {
                if isa == Isa::Avx512 && !has_avx512f() {
                    continue;
                }
                let packed = pack_pointwise(&weight, k, isa);
                let blocked = pointwise(
                    &xb,
                    &packed,
                    [m, k, n],
                    Some(&bias),
                    Some(&rb),
                    activation,
                    isa,
                    Vec::new(),
                    threads,
                );
                let mut actual = vec![MaybeUninit::new(f32::NAN); m * n];
                from_blocked(&blocked, n, &mut actual, 2);
                // SAFETY: `actual` was initialized above (and overwritten by `from_blocked`).
                let actual: Vec<f32> = actual
                    .into_iter()
                    .map(|v| unsafe { v.assume_init() })
                    .collect();
                for (at, (a, e)) in actual.iter().zip(&expected).enumerate() {
                    assert!(
                        (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
                        "{isa:?} {threads} tasks {m}x{k}x{n}[{at}]: {a} vs {e}"
                    );
                }
                outputs.push(actual);
            }
            for other in &outputs[1..] {
                let same = outputs[0]
                    .iter()
                    .zip(other)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{m}x{k}x{n}: the ISAs or splits differ in bits");
            }
        }
    }

    #[test]
    fn declines_what_it_does_not_compute() {
        let relu6 = [Nonlinearity::ReLU6; 2];
        // Channels not a multiple of eight, padding other than the dilation's, stride 3, GELU.
        assert!(!supports(
            &geometry([12, 12], [8, 8], 3, 1, 1),
            true,
            false,
            [8, 8],
            relu6
        ));
        let mut padded = geometry([16, 16], [8, 8], 3, 1, 2);
        assert!(supports(&padded, true, false, [8, 8], relu6));
        padded.padding = [1, 1];
        assert!(!supports(&padded, true, false, [8, 8], relu6));
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
