//! Convolutions of MobileNet's three kinds on NCHW `f32` buffers, each ending in a fused
//! epilogue (bias, residual, activation) instead of burn's separate passes:
//!
//! - [`pointwise`]: 1x1, stride 1 (expansion, projection, head): one matrix multiply per image,
//!   `out[c_out, pixels] = weight[c_out, c_in] · x[c_in, pixels]`, with the `gemm` crate that
//!   burn-flex itself uses.
//! - [`dense`]: any other convolution with `groups == 1` (the stem, MobileNetV4's full 3x3
//!   convolutions): im2col (from the zero-padded phase planes of `direct.rs`), then the same
//!   matrix multiply, in bands of output rows.
//!
//! Depthwise convolutions are direct convolutions, in `direct.rs` and `interleaved.rs`.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::direct::{PhaseLayout, split_into_phases};
use super::elementwise::{Nonlinearity, activate_slice};
use super::simd::{MulAdd, dispatch};

/// Below this many multiply-adds a matrix multiply runs on one thread; above it, `gemm` splits it
/// over rayon's threads.
const PARALLEL_MIN_MACS: usize = 1 << 19;

/// Output elements per rayon task of an epilogue pass.
const EPILOGUE_TASK_ELEMENTS: usize = 1 << 15;

/// Sizes of one convolution on one image, all validated by the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ConvGeometry {
    pub in_channels: usize,
    pub out_channels: usize,
    pub in_height: usize,
    pub in_width: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Top and left padding (bottom and right only change the output size).
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub out_height: usize,
    pub out_width: usize,
}

impl ConvGeometry {
    pub(crate) fn in_pixels(&self) -> usize {
        self.in_height * self.in_width
    }

    pub(crate) fn out_pixels(&self) -> usize {
        self.out_height * self.out_width
    }
}

/// The bias and the tensor added after the convolution, and the activation applied last.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    /// `[out_channels]`
    pub bias: Option<&'a [f32]>,
    /// Same layout as the output (the block's input, for a residual connection).
    pub residual: Option<&'a [f32]>,
    pub activation: Nonlinearity,
}

impl Epilogue<'_> {
    /// Nothing: the output as the matrix multiply leaves it.
    pub(crate) const NONE: Epilogue<'static> = Epilogue {
        bias: None,
        residual: None,
        activation: Nonlinearity::Identity,
    };

    /// Whether this is [`Epilogue::NONE`]: nothing to apply.
    pub(crate) fn is_none(&self) -> bool {
        self.bias.is_none() && self.residual.is_none() && self.activation == Nonlinearity::Identity
    }
}

/// A producer's bias and activation, left for the kernel that reads its output to apply as it
/// copies each value in: a 1x1 expansion read only by a depthwise convolution, which copies
/// every input value once anyway (into its phase planes or its tile). The expanded map, the
/// largest of its block, is then written once and read once, where its own epilogue read and
/// wrote it once more in between (V2: 7% of a forward, measured with the epilogues left out).
#[derive(Clone, Copy)]
pub(crate) struct Prologue<'a> {
    /// `[channels]` of the producer's output, the consumer's input.
    pub bias: Option<&'a [f32]>,
    pub activation: Nonlinearity,
}

impl Prologue<'_> {
    /// Nothing to apply: the input is finished.
    pub(crate) const NONE: Prologue<'static> = Prologue {
        bias: None,
        activation: Nonlinearity::Identity,
    };

    /// Channel `channel`'s bias (0 without one).
    #[inline(always)]
    pub(crate) fn bias(self, channel: usize) -> f32 {
        self.bias.map_or(0.0, |bias| bias[channel])
    }
}

/// `finishing!(prologue, |finish| body)` runs `body` with `finish(value, bias)` the function
/// that [`Prologue`] `prologue` applies, `activation(value + bias)`: the operations of the
/// producer's epilogue ([`epilogue_segment`]) in its order, so the same values. The activation
/// is matched once, here, so that `finish` inlines into the copy loops of `body` (which must
/// pass each channel's [`Prologue::bias`]); without bias or activation it is the identity, and
/// the loops are plain copies.
macro_rules! finishing {
    ($prologue:expr, |$finish:ident| $body:expr) => {{
        use $crate::kernels::conv::finish;
        use $crate::kernels::elementwise::Nonlinearity;
        let prologue: $crate::kernels::conv::Prologue = $prologue;
        match prologue.activation {
            Nonlinearity::Identity if prologue.bias.is_none() => {
                let $finish = finish::unchanged;
                $body
            }
            Nonlinearity::Identity => {
                let $finish = finish::biased;
                $body
            }
            Nonlinearity::ReLU => {
                let $finish = finish::relu;
                $body
            }
            Nonlinearity::ReLU6 => {
                let $finish = finish::relu6;
                $body
            }
            Nonlinearity::HardSwish => {
                let $finish = finish::hard_swish;
                $body
            }
            Nonlinearity::Gelu => {
                let $finish = finish::gelu;
                $body
            }
        }
    }};
}

/// The functions [`finishing!`] hands its body: `activation(value + bias)` per activation,
/// functions rather than closures so that they are `inline(always)` (a closure left out of line
/// is compiled without the caller's AVX2).
pub(crate) mod finish {
    use super::super::elementwise;

    #[inline(always)]
    pub(crate) fn unchanged(value: f32, _bias: f32) -> f32 {
        value
    }

    #[inline(always)]
    pub(crate) fn biased(value: f32, bias: f32) -> f32 {
        value + bias
    }

    #[inline(always)]
    pub(crate) fn relu(value: f32, bias: f32) -> f32 {
        elementwise::relu(value + bias)
    }

    #[inline(always)]
    pub(crate) fn relu6(value: f32, bias: f32) -> f32 {
        elementwise::relu6(value + bias)
    }

    #[inline(always)]
    pub(crate) fn hard_swish(value: f32, bias: f32) -> f32 {
        elementwise::hard_swish(value + bias)
    }

    #[inline(always)]
    pub(crate) fn gelu(value: f32, bias: f32) -> f32 {
        elementwise::gelu(value + bias)
    }
}

pub(crate) use finishing;

/// `segment = activation(segment + bias[channel] + residual[channel, column..])`: part of one
/// output row, starting at pixel `column` of a `pixels`-wide row.
#[inline(always)]
pub(crate) fn epilogue_segment<M: MulAdd>(
    segment: &mut [f32],
    channel: usize,
    column: usize,
    pixels: usize,
    epilogue: Epilogue,
) {
    let bias = epilogue.bias.map_or(0.0, |bias| bias[channel]);
    match epilogue.residual {
        Some(residual) => {
            let start = channel * pixels + column;
            let residual = &residual[start..start + segment.len()];
            segment
                .iter_mut()
                .zip(residual)
                .for_each(|(x, r)| *x = *x + bias + r);
        }
        None if epilogue.bias.is_some() => segment.iter_mut().for_each(|x| *x += bias),
        None => {}
    }
    activate_slice::<M>(segment, epilogue.activation);
}

/// `rows[channel, pixel] = activation(rows + bias[channel] + residual[channel, pixel])`.
#[inline(always)]
pub(crate) fn epilogue_rows<M: MulAdd>(
    rows: &mut [f32],
    pixels: usize,
    first_channel: usize,
    epilogue: Epilogue,
) {
    for (row_index, row) in rows.chunks_exact_mut(pixels).enumerate() {
        epilogue_segment::<M>(row, first_channel + row_index, 0, pixels, epilogue);
    }
}

/// [`epilogue_segment`] over columns `first..first + width` of every one of `rows` rows `n`
/// apart: the epilogue of the block of columns a matrix multiply has just written.
///
/// # Safety
/// `output` must point to `rows` rows of `n` values, with `first + width <= n`; the block's
/// values must be initialized, and no one else may access them meanwhile.
pub(crate) unsafe fn epilogue_columns(
    output: *mut f32,
    [rows, n]: [usize; 2],
    first: usize,
    width: usize,
    epilogue: Epilogue,
) {
    for channel in 0..rows {
        // SAFETY: row `channel`'s columns of the block: inside the output, initialized, and
        // ours alone, as the caller guarantees.
        let segment =
            unsafe { std::slice::from_raw_parts_mut(output.add(channel * n + first), width) };
        dispatch!(epilogue_segment(segment, channel, first, n, epilogue));
    }
}

/// Applies the epilogue to one image `[channels, pixels]`, in parallel over channel blocks when
/// the image is large.
pub(crate) fn finish_image(image: &mut [f32], pixels: usize, epilogue: Epilogue) {
    let rows_per_task = (EPILOGUE_TASK_ELEMENTS / pixels.max(1)).max(1);
    if image.len() <= rows_per_task * pixels {
        dispatch!(epilogue_rows(image, pixels, 0, epilogue));
    } else {
        image
            .par_chunks_mut(rows_per_task * pixels)
            .enumerate()
            .for_each(|(task, rows)| {
                dispatch!(epilogue_rows(rows, pixels, task * rows_per_task, epilogue))
            });
    }
}

/// `dst[m, n] = lhs[m, k] · rhs[k, n]`, row-major and contiguous, written in full (so `dst` needs
/// no zeroing first); returns `dst`, initialized.
fn matmul<'a>(
    dst: &'a mut [MaybeUninit<f32>],
    lhs: &[f32],
    rhs: &[f32],
    [m, k, n]: [usize; 3],
    threads: bool,
) -> &'a mut [f32] {
    assert!(dst.len() == m * n && lhs.len() == m * k && rhs.len() == k * n);
    if k == 0 {
        dst.fill(MaybeUninit::new(0.0));
    }
    let parallelism = if threads && m * n * k >= PARALLEL_MIN_MACS {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the three slices were checked to hold exactly the matrices the strides describe.
    unsafe {
        gemm_into(
            dst.as_mut_ptr().cast::<f32>(),
            lhs.as_ptr(),
            rhs.as_ptr(),
            [m, k, n],
            n,
            parallelism,
        );
        initialized(dst)
    }
}

/// `dst[m, n] = lhs[m, k] · rhs[k, n]`: `lhs` contiguous, `rhs` and `dst` with rows
/// `row_stride` apart (a block of columns of wider matrices). With `k > 0`, writes every
/// element of the block and reads none of it.
///
/// # Safety
/// `lhs` must hold `m * k` values; `rhs` and `dst` rows `0..k` and `0..m`, each `n` values long
/// at `row_stride` spacing; `dst` must not overlap the others.
unsafe fn gemm_into(
    dst: *mut f32,
    lhs: *const f32,
    rhs: *const f32,
    mkn: [usize; 3],
    row_stride: usize,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: as the caller guarantees, for both strides.
    unsafe { gemm_raw(dst, row_stride, lhs, rhs, row_stride, mkn, parallelism) }
}

/// The one call of `gemm::gemm` for the forward kernels: `dst[m, n] = lhs[m, k] · rhs[k, n]`,
/// `lhs` contiguous, `rhs` and `dst` rows at their own strides. With `k > 0`, writes every
/// element of the `dst` block and reads none of it (`read_dst` false).
///
/// # Safety
/// `lhs` must hold `m * k` values; `rhs` rows `0..k` and `dst` rows `0..m` must each hold `n`
/// values at their stride; `dst` must not overlap the others.
unsafe fn gemm_raw(
    dst: *mut f32,
    dst_stride: usize,
    lhs: *const f32,
    rhs: *const f32,
    rhs_stride: usize,
    [m, k, n]: [usize; 3],
    parallelism: gemm::Parallelism,
) {
    // SAFETY: as the caller guarantees; with `read_dst` false gemm only writes `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_stride as isize,
            false,
            lhs,
            1,
            k as isize,
            rhs,
            1,
            rhs_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `dst[m, n] = lhs[m, k] · rhs[k, n]` on one thread: `lhs` contiguous, `rhs` rows
/// `rhs_stride` apart and `dst` rows `dst_stride` apart (blocks of columns of wider matrices).
/// Writes every element of the `m x n` block of `dst` (zeros if `k == 0`) and reads none of it.
///
/// # Safety
/// `lhs` must hold `m * k` values; `rhs` rows `0..k` and `dst` rows `0..m` must each hold `n`
/// values at their stride; the `dst` block must not overlap the others or be accessed by anyone
/// else meanwhile.
pub(crate) unsafe fn gemm_strided(
    dst: *mut f32,
    dst_stride: usize,
    lhs: &[f32],
    rhs: *const f32,
    rhs_stride: usize,
    [m, k, n]: [usize; 3],
) {
    assert!(lhs.len() >= m * k);
    if k == 0 {
        for row in 0..m {
            // SAFETY: row `row` of the `dst` block, `n` values, as the caller guarantees.
            unsafe { std::ptr::write_bytes(dst.add(row * dst_stride), 0, n) };
        }
        return;
    }
    // SAFETY: as the caller guarantees (`lhs` checked above); `k > 0` here, so every element
    // of the block is written.
    unsafe {
        gemm_raw(
            dst,
            dst_stride,
            lhs.as_ptr(),
            rhs,
            rhs_stride,
            [m, k, n],
            gemm::Parallelism::None,
        );
    }
}

/// `slice`, which the caller has just written in full, as initialized values.
///
/// # Safety
/// Every element of `slice` must have been written.
pub(crate) unsafe fn initialized(slice: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the caller wrote every element.
    unsafe { std::slice::from_raw_parts_mut(slice.as_mut_ptr().cast::<f32>(), slice.len()) }
}

/// A buffer of `len` values for a kernel that writes each one before anything reads it:
/// `fill` gets the uninitialized values and must write them all. (Not zeroing the output first
/// saves a pass over every feature map.)
///
/// # Safety
/// `fill` must write every one of the `len` elements it is given (unless it panics).
pub(crate) unsafe fn filled_by(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    // SAFETY: as this function's caller guarantees.
    unsafe { filled_into(Vec::new(), len, fill) }
}

/// [`filled_by`] in `buffer`'s allocation (grown if it is too small; its values are dropped):
/// for scratch maps reused from call to call, which spares the allocator the large blocks that
/// it would otherwise return to the system and fault back in at every call.
///
/// # Safety
/// As [`filled_by`].
pub(crate) unsafe fn filled_into(
    mut buffer: Vec<f32>,
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<f32>]),
) -> Vec<f32> {
    buffer.clear();
    // Exactly: a kept scratch map grows to the largest map it holds, not twice that.
    buffer.reserve_exact(len);
    fill(&mut buffer.spare_capacity_mut()[..len]);
    // SAFETY: `fill` wrote all `len` values, as the caller guarantees; if it panicked, the
    // length is still 0 and nothing uninitialized is exposed.
    unsafe { buffer.set_len(len) };
    buffer
}

/// Runs `per_image(image_index, output_image, threads_inside)` for each image of the batch:
/// one image at a time with threads inside each, or, when the batch can keep every thread busy,
/// images in parallel with none inside.
pub(crate) fn for_each_image<T: Send>(
    output: &mut [T],
    batch: usize,
    per_image: impl Fn(usize, &mut [T], bool) + Sync,
) {
    if output.is_empty() {
        return;
    }
    let image_len = output.len() / batch.max(1);
    if batch >= rayon::current_num_threads() && batch > 1 {
        output
            .par_chunks_mut(image_len)
            .enumerate()
            .for_each(|(image, out)| per_image(image, out, false));
    } else {
        for (image, out) in output.chunks_mut(image_len).enumerate() {
            per_image(image, out, true);
        }
    }
}

/// 1x1 convolution, stride 1, no padding. `weight`: `[out_channels, in_channels]`.
pub(crate) fn pointwise(
    x: &[f32],
    batch: usize,
    geometry: &ConvGeometry,
    weight: &[f32],
    epilogue: Epilogue,
) -> Vec<f32> {
    let (in_channels, out_channels) = (geometry.in_channels, geometry.out_channels);
    let pixels = geometry.in_pixels();
    let fill = |output: &mut [MaybeUninit<f32>]| {
        for_each_image(output, batch, |image, out, threads| {
            let input = &x[image * in_channels * pixels..(image + 1) * in_channels * pixels];
            let residual = epilogue
                .residual
                .map(|residual| &residual[image * out.len()..(image + 1) * out.len()]);
            let epilogue = Epilogue {
                residual,
                ..epilogue
            };
            pointwise_image(
                out,
                weight,
                input,
                [out_channels, in_channels, pixels],
                epilogue,
                threads,
            );
        })
    };
    // SAFETY: `for_each_image` hands every image's part of `output` to the closure, and
    // `pointwise_image` writes all of it (`matmul`/`gemm_into` write every element of their
    // `[m, n]` block, and the blocks cover the image).
    unsafe { filled_by(batch * out_channels * pixels, fill) }
}

/// Below this many output rows per task, a pointwise convolution is split by columns: the
/// matrix multiply's register tile is 16 rows.
const MIN_ROWS_PER_TASK: usize = 32;

/// A raw pointer that may cross threads: tasks write disjoint parts of one output.
#[derive(Clone, Copy)]
pub(crate) struct SharedOutput(pub(crate) *mut f32);
// SAFETY: every task writes only its own rows or columns of the output (see `pointwise_image`).
unsafe impl Send for SharedOutput {}
unsafe impl Sync for SharedOutput {}

impl SharedOutput {
    /// The element at `offset`. (A method, so that closures capture the `Send` wrapper rather
    /// than its raw pointer field.)
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `out = epilogue(weight · input)` for one image (`[m, k, n]`: output channels, input channels,
/// pixels). Large products are split over rayon's threads by output rows when there are enough
/// of them, else by columns; each task runs a one-thread matrix multiply and then its own part
/// of the epilogue while that part is in cache: one parallel region per layer, not two.
fn pointwise_image(
    out: &mut [MaybeUninit<f32>],
    weight: &[f32],
    input: &[f32],
    [m, k, n]: [usize; 3],
    epilogue: Epilogue,
    threads: bool,
) {
    let tasks = if threads && m * n * k >= PARALLEL_MIN_MACS {
        rayon::current_num_threads()
    } else {
        1
    };
    if tasks <= 1 {
        rows_then_epilogue(out, weight, input, [m, k, n], 0, epilogue);
    } else if m >= MIN_ROWS_PER_TASK * tasks {
        let rows_per_task = m.div_ceil(tasks);
        out.par_chunks_mut(rows_per_task * n)
            .enumerate()
            .for_each(|(task, block)| {
                let (first, rows) = (task * rows_per_task, block.len() / n);
                let lhs = &weight[first * k..(first + rows) * k];
                rows_then_epilogue(block, lhs, input, [rows, k, n], first, epilogue);
            });
    } else {
        assert!(out.len() == m * n && weight.len() == m * k && input.len() == k * n);
        // Column blocks a multiple of 16 wide (whole SIMD registers).
        let columns = n.div_ceil(tasks).next_multiple_of(16);
        let output = SharedOutput(out.as_mut_ptr().cast::<f32>());
        (0..n.div_ceil(columns)).into_par_iter().for_each(|task| {
            let (first, last) = (task * columns, ((task + 1) * columns).min(n));
            // SAFETY: `output` is the `[m, n]` output (its length checked above); this task's
            // columns `first..last` are its alone; `k > 0`, as the product is at least
            // `PARALLEL_MIN_MACS` to be split.
            unsafe {
                columns_then_epilogue(
                    output.at(0),
                    weight,
                    input,
                    [m, k, n],
                    [first, last - first],
                    epilogue,
                );
            }
        });
    }
}

/// Output rows above this many floats (2 MiB, a core's L2 here) are computed in blocks of
/// columns, each block's epilogue right after its matrix multiply. One thread, per layer: V2's
/// 16 -> 96 channel expansion at 112x112 509 -> 425 us, V3-Large's 16 -> 64 423 -> 390 us (two
/// threads, whose row halves are 2.4 MB: 236 -> 216 us); at 56x56 (1.8 MB) 1.02x, so not there.
/// Bitwise the same outputs.
const BLOCKED_EPILOGUE_MIN_FLOATS: usize = 1 << 19;

/// Floats of a block of columns there (256 KiB, in L2 while its epilogue runs).
const EPILOGUE_BLOCK_FLOATS: usize = 1 << 16;

/// `block = epilogue(lhs · input)` for output rows `first_row..` of a pointwise convolution
/// (`block`: `[rows, n]`, every element written): one matrix multiply and then the epilogue
/// over all of it, or, when the rows are larger than L2 (V2's and V3-Large's 112x112
/// expansions: 4.8 MB), blocks of columns each followed by its epilogue, so that the epilogue
/// reads its values from L2 instead of memory. Without an epilogue (an expansion that leaves it
/// to the depthwise convolution reading it), one matrix multiply.
fn rows_then_epilogue(
    block: &mut [MaybeUninit<f32>],
    lhs: &[f32],
    input: &[f32],
    [rows, k, n]: [usize; 3],
    first_row: usize,
    epilogue: Epilogue,
) {
    if rows * n <= BLOCKED_EPILOGUE_MIN_FLOATS || k == 0 || epilogue.is_none() {
        let block = matmul(block, lhs, input, [rows, k, n], false);
        if !epilogue.is_none() {
            dispatch!(epilogue_rows(block, n, first_row, epilogue));
        }
        return;
    }
    assert!(block.len() == rows * n && lhs.len() == rows * k && input.len() == k * n);
    // The epilogue of these rows alone: their biases and residual rows from channel 0.
    let epilogue = Epilogue {
        bias: epilogue.bias.map(|bias| &bias[first_row..]),
        residual: epilogue.residual.map(|residual| &residual[first_row * n..]),
        ..epilogue
    };
    let columns = (EPILOGUE_BLOCK_FLOATS / rows).next_multiple_of(16);
    let output = block.as_mut_ptr().cast::<f32>();
    let mut first = 0;
    while first < n {
        let width = columns.min(n - first);
        // SAFETY: `block` holds `[rows, n]` (checked above) and is ours alone; `k > 0` (the
        // early return above).
        unsafe {
            columns_then_epilogue(output, lhs, input, [rows, k, n], [first, width], epilogue);
        }
        first += width;
    }
}

/// Columns `first..first + width` of `output = epilogue(lhs · input)` (`output`: `[rows, n]`),
/// every element of them written: a one-thread matrix multiply into them, then their epilogue
/// while they are in cache.
///
/// # Safety
/// `output` must point to `rows` rows of `n` values, and nobody else may access these columns
/// of them meanwhile; `k` must be above 0 (gemm then writes every element).
///
/// # Panics
/// If `lhs` is not `[rows, k]`, `input` not `[k, n]`, or the columns pass `n`.
unsafe fn columns_then_epilogue(
    output: *mut f32,
    lhs: &[f32],
    input: &[f32],
    [rows, k, n]: [usize; 3],
    [first, width]: [usize; 2],
    epilogue: Epilogue,
) {
    assert!(lhs.len() == rows * k && input.len() == k * n && first + width <= n && k > 0);
    // SAFETY: the columns are inside `output`'s rows and ours (the caller's guarantee); `lhs`
    // and `input` hold the matrices the strides describe (checked above); with `k > 0` gemm
    // writes every element of the block, which the epilogue then reads.
    unsafe {
        gemm_into(
            output.add(first),
            lhs.as_ptr(),
            input.as_ptr().add(first),
            [rows, k, width],
            n,
            gemm::Parallelism::None,
        );
        epilogue_columns(output, [rows, n], first, width, epilogue);
    }
}

/// Floats of im2col columns a band of [`dense`] aims for (256 KiB): written and then read by the
/// band's matrix multiply while in L2, where the whole image's columns (3.6 MB for the
/// 32-channel 3x3 convolution at 56x56 of MobileNetV4-Conv-Small) went to memory and back.
const COLUMN_BAND_FLOATS: usize = 1 << 16;

/// Any convolution with `groups == 1`, through im2col. `weight`: `[out, in, kh, kw]`. Needs
/// `direct::supports` (im2col reads the direct kernels' phase planes).
///
/// Each image's output rows go in bands: a band's columns (im2col of its rows), its matrix
/// multiply into its columns of the output, and its epilogue, one after the other in cache;
/// bands split over the threads.
pub(crate) fn dense(
    x: &[f32],
    batch: usize,
    geometry: &ConvGeometry,
    weight: &[f32],
    epilogue: Epilogue,
) -> Vec<f32> {
    let [kernel_h, kernel_w] = geometry.kernel;
    let (in_channels, out_channels) = (geometry.in_channels, geometry.out_channels);
    let depth = in_channels * kernel_h * kernel_w;
    let (in_len, out_pixels) = (in_channels * geometry.in_pixels(), geometry.out_pixels());
    let (out_height, out_width) = (geometry.out_height, geometry.out_width);
    assert!(x.len() >= batch * in_len && weight.len() >= out_channels * depth);
    let layout = PhaseLayout::new(geometry);
    let offsets = layout.tap_offsets(geometry);
    let band_rows = (COLUMN_BAND_FLOATS / (depth * out_width).max(1)).clamp(1, out_height.max(1));
    let bands = out_height.div_ceil(band_rows);
    let image_out = out_channels * out_pixels;
    let fill = |output: &mut [MaybeUninit<f32>]| {
        if image_out == 0 {
            return;
        }
        for_each_image(output, batch, |image, out, threads| {
            let input = &x[image * in_len..(image + 1) * in_len];
            let mut phases = vec![0.0f32; in_channels * layout.total];
            for (phase_planes, plane) in phases
                .chunks_mut(layout.total)
                .zip(input.chunks_exact(geometry.in_pixels()))
            {
                split_into_phases(plane, geometry, &layout, phase_planes);
            }
            let residual = epilogue
                .residual
                .map(|residual| &residual[image * image_out..(image + 1) * image_out]);
            let epilogue = Epilogue {
                residual,
                ..epilogue
            };
            let output = SharedOutput(out.as_mut_ptr().cast::<f32>());
            let band = |columns: &mut Vec<f32>, index: usize| {
                let rows = index * band_rows..((index + 1) * band_rows).min(out_height);
                let (first, pixels) = (rows.start * out_width, rows.len() * out_width);
                im2col_rows(&phases, &layout, &offsets, geometry, rows, columns);
                assert_eq!(columns.len(), depth * pixels, "im2col of a band");
                // SAFETY: columns `first..first + pixels` of every output channel's row of
                // `out_pixels` (inside the image's output, this band's alone); `columns` holds
                // `[depth, pixels]` (checked above) and `weight` `[out_channels, depth]`.
                unsafe {
                    gemm_strided(
                        output.at(first),
                        out_pixels,
                        &weight[..out_channels * depth],
                        columns.as_ptr(),
                        pixels,
                        [out_channels, depth, pixels],
                    );
                }
                // SAFETY: this band's columns of the image's `[out_channels, out_pixels]`
                // output, written in full just above.
                unsafe {
                    epilogue_columns(
                        output.at(0),
                        [out_channels, out_pixels],
                        first,
                        pixels,
                        epilogue,
                    );
                }
            };
            if threads && bands > 1 {
                (0..bands).into_par_iter().for_each_init(Vec::new, band);
            } else {
                let mut columns = Vec::new();
                (0..bands).for_each(|index| band(&mut columns, index));
            }
        })
    };
    // SAFETY: `for_each_image` hands every image's output to the closure, and its bands (all of
    // its rows) are written in full by `gemm_strided`.
    unsafe { filled_by(batch * image_out, fill) }
}

/// `columns[(channel, ky, kx), (oy, ox)]` for output rows `rows`: the input pixel under that tap,
/// or 0 in the padding, read from the input's zero-padded phase planes (as the direct kernels
/// lay them out, `direct::PhaseLayout`), where every tap of every stride and dilation reads a
/// constant offset: each row of the columns is contiguous copies, with no bounds tests.
fn im2col_rows(
    phases: &[f32],
    layout: &PhaseLayout,
    offsets: &[usize],
    geometry: &ConvGeometry,
    rows: std::ops::Range<usize>,
    columns: &mut Vec<f32>,
) {
    let taps = offsets.len();
    let out_width = geometry.out_width;
    let pixels = rows.len() * out_width;
    columns.clear();
    columns.reserve(geometry.in_channels * taps * pixels);
    for channel in 0..geometry.in_channels {
        for &offset in offsets {
            let source = &phases[channel * layout.total + offset..];
            for oy in rows.clone() {
                let start = oy * layout.width;
                columns.extend_from_slice(&source[start..start + out_width]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::direct::depthwise;
    use super::*;

    use crate::kernels::{test_geometry as geometry, test_values as values};

    /// The definition: every output a sum over its input channels (one, if depthwise) and taps.
    fn reference(
        x: &[f32],
        batch: usize,
        g: &ConvGeometry,
        weight: &[f32],
        depthwise: bool,
        epilogue: Epilogue,
    ) -> Vec<f32> {
        let [kernel_h, kernel_w] = g.kernel;
        let per_output = if depthwise { 1 } else { g.in_channels };
        let mut out = Vec::new();
        for n in 0..batch {
            for co in 0..g.out_channels {
                for oy in 0..g.out_height {
                    for ox in 0..g.out_width {
                        let mut acc = epilogue.bias.map_or(0.0, |bias| bias[co]);
                        for i in 0..per_output {
                            let ci = if depthwise { co } else { i };
                            for ky in 0..kernel_h {
                                for kx in 0..kernel_w {
                                    let iy = (oy * g.stride[0] + ky * g.dilation[0]) as isize
                                        - g.padding[0] as isize;
                                    let ix = (ox * g.stride[1] + kx * g.dilation[1]) as isize
                                        - g.padding[1] as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy >= g.in_height as isize
                                        || ix >= g.in_width as isize
                                    {
                                        continue;
                                    }
                                    let pixel = x[((n * g.in_channels + ci) * g.in_height
                                        + iy as usize)
                                        * g.in_width
                                        + ix as usize];
                                    let w = weight
                                        [((co * per_output + i) * kernel_h + ky) * kernel_w + kx];
                                    acc += w * pixel;
                                }
                            }
                        }
                        out.push(acc);
                    }
                }
            }
        }
        if let Some(residual) = epilogue.residual {
            out.iter_mut().zip(residual).for_each(|(o, r)| *o += r);
        }
        activate_slice::<super::super::simd::Plain>(&mut out, epilogue.activation);
        out
    }

    fn assert_close(actual: &[f32], expected: &[f32], what: &str) {
        assert_eq!(actual.len(), expected.len(), "{what}: length");
        for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
            assert!(
                (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
                "{what}[{index}]: {a} vs {e}"
            );
        }
    }

    #[test]
    fn depthwise_matches_the_definition() {
        // MobileNet's shapes (3x3 and 5x5, stride 1 and 2, dilation 2) and awkward ones:
        // 1-pixel planes, odd sizes, planes narrower than the kernel, wide rows.
        let cases = [
            (4, [7, 7], 3, 1, 1),
            (3, [9, 8], 3, 2, 1),
            (5, [13, 11], 5, 2, 1),
            (2, [14, 14], 5, 1, 1),
            (3, [10, 9], 3, 1, 2),
            (2, [9, 12], 5, 1, 2),
            (3, [1, 1], 3, 2, 1),
            (2, [2, 3], 5, 1, 1),
            (2, [3, 70], 3, 2, 1),
            (1, [5, 40], 3, 1, 1),
            // Output stride 8: the last stage's 5x5 at dilation 4.
            (2, [20, 17], 5, 1, 4),
            (2, [7, 7], 5, 1, 4),
            // Eight channels and more on small planes: the interleaved kernel, with the channels
            // past the last group of eight plane by plane; rows narrower than its block of four
            // pixels, and widths not a multiple of four.
            (8, [7, 7], 3, 1, 1),
            (11, [14, 14], 5, 2, 1),
            (16, [13, 9], 3, 2, 1),
            (19, [5, 6], 5, 1, 1),
            (8, [3, 2], 3, 1, 1),
            (9, [1, 1], 5, 2, 1),
            (24, [7, 7], 5, 1, 1),
            (8, [16, 16], 3, 1, 1),
            // Stride 1 up to 1024 output pixels goes there too (and stride 2 there does not).
            (9, [20, 24], 3, 1, 1),
            (8, [30, 28], 5, 1, 1),
            (8, [40, 36], 3, 2, 1),
        ];
        for (index, (channels, size, kernel, stride, dilation)) in cases.into_iter().enumerate() {
            let g = geometry([channels, channels], size, kernel, stride, dilation);
            let batch = 2;
            let x = values(batch * channels * size[0] * size[1], index as u32);
            let weight = values(channels * kernel * kernel, 100 + index as u32);
            let bias = values(channels, 200 + index as u32);
            for activation in [
                Nonlinearity::Identity,
                Nonlinearity::ReLU6,
                Nonlinearity::HardSwish,
            ] {
                let epilogue = Epilogue {
                    bias: Some(&bias),
                    residual: None,
                    activation,
                };
                let expected = reference(&x, batch, &g, &weight, true, epilogue);
                let actual = depthwise(&x, batch, &g, &weight, epilogue);
                assert_close(
                    &actual,
                    &expected,
                    &format!("depthwise case {index} {activation:?}"),
                );
            }
        }
    }

    #[test]
    fn depthwise_in_bands_matches_the_definition() {
        // Planes above `BANDED_MIN_PIXELS` go in bands of rows: strides 1 and 2, 3x3 and 5x5,
        // dilation 2, heights that leave a short last band, and no padding at all.
        for (index, (size, kernel, stride, dilation, padding)) in [
            ([100, 97], 3, 1, 1, 1),
            ([101, 90], 3, 2, 1, 1),
            ([96, 99], 5, 2, 1, 2),
            ([95, 90], 3, 1, 2, 2),
            ([91, 92], 3, 1, 1, 0),
        ]
        .into_iter()
        .enumerate()
        {
            let g = geometry([2, 2], size, kernel, stride, dilation);
            let g = if padding == g.padding[0] {
                g
            } else {
                // No padding: the outputs whose taps stay inside the plane.
                let reach = dilation * (kernel - 1);
                ConvGeometry {
                    padding: [padding, padding],
                    out_height: (size[0] + 2 * padding - reach - 1) / stride + 1,
                    out_width: (size[1] + 2 * padding - reach - 1) / stride + 1,
                    ..g
                }
            };
            assert!(g.in_pixels() > 1 << 13, "case {index} is not banded");
            let what = format!("banded case {index}");
            assert_depthwise_matches(&g, 600 + index as u32, Nonlinearity::ReLU6, &what);
        }
    }

    /// [`depthwise`] on `g` (batch 2, test values from `seed`, a bias, `activation`) against the
    /// definition.
    fn assert_depthwise_matches(g: &ConvGeometry, seed: u32, activation: Nonlinearity, what: &str) {
        let (batch, channels, taps) = (2, g.in_channels, g.kernel[0] * g.kernel[1]);
        let x = values(batch * channels * g.in_pixels(), seed);
        let weight = values(channels * taps, seed + 100);
        let bias = values(channels, seed + 200);
        let epilogue = Epilogue {
            bias: Some(&bias),
            residual: None,
            activation,
        };
        let expected = reference(&x, batch, g, &weight, true, epilogue);
        let actual = depthwise(&x, batch, g, &weight, epilogue);
        assert_close(&actual, &expected, what);
    }

    #[test]
    fn depthwise_with_other_paddings_matches_the_definition() {
        // No padding, one-sided padding (more on the top and left than the kernel needs, or
        // less), on planes small enough for the interleaved kernel and channels past its groups.
        for (index, (kernel, stride, padding, size)) in [
            (3, 1, [0, 0], [9, 7]),
            (3, 2, [0, 1], [10, 9]),
            (5, 1, [4, 3], [6, 5]),
            (5, 2, [1, 2], [12, 13]),
            (3, 1, [2, 0], [4, 11]),
        ]
        .into_iter()
        .enumerate()
        {
            let channels = 10;
            let out = |size: usize, pad: usize| (size + pad - kernel) / stride + 1;
            let g = ConvGeometry {
                in_channels: channels,
                out_channels: channels,
                in_height: size[0],
                in_width: size[1],
                kernel: [kernel, kernel],
                stride: [stride, stride],
                padding,
                dilation: [1, 1],
                // Padded on the top and left only: the bottom and right get none.
                out_height: out(size[0], padding[0]),
                out_width: out(size[1], padding[1]),
            };
            let what = format!("padding case {index}");
            assert_depthwise_matches(&g, 300 + index as u32, Nonlinearity::HardSwish, &what);
        }
    }

    #[test]
    fn dense_in_many_bands_matches_the_definition() {
        // Enough columns per output row that each band holds a few rows: 64 channels x 3x3 x 45
        // columns is 25,920 floats, two rows per band of COLUMN_BAND_FLOATS; 23 rows make 12
        // bands, the last one short. Stride 1 and 2, dilation 2, a residual, batch 1 (bands over
        // the threads) and 3 (images over the threads, bands in turn).
        for (index, (stride, dilation, batch)) in
            [(1, 1, 1), (2, 1, 3), (1, 2, 1)].into_iter().enumerate()
        {
            let size = [23 * stride, 45 * stride];
            let g = geometry([64, 20], size, 3, stride, dilation);
            assert!(
                g.out_height
                    .div_ceil(COLUMN_BAND_FLOATS / (64 * 9 * g.out_width))
                    > 2
            );
            let x = values(batch * 64 * size[0] * size[1], 600 + index as u32);
            let weight = values(20 * 64 * 9, 601);
            let bias = values(20, 602);
            let residual = values(batch * 20 * g.out_pixels(), 603);
            let epilogue = Epilogue {
                bias: Some(&bias),
                residual: Some(&residual),
                activation: Nonlinearity::ReLU6,
            };
            let expected = reference(&x, batch, &g, &weight, false, epilogue);
            let actual = dense(&x, batch, &g, &weight, epilogue);
            // Sums of 576 products in another order than the reference's: a looser bound than
            // `assert_close`'s (a wrong tap or band would be off by whole products, ~0.3).
            assert_eq!(actual.len(), expected.len());
            for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
                assert!(
                    (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "dense in bands, case {index}[{i}]: {a} vs {e}"
                );
            }
        }
    }

    #[test]
    fn pointwise_split_by_rows_or_columns_matches_the_definition() {
        // Large enough to be split over two threads: 80 output rows split by rows, 24 by columns
        // (with a last column block narrower than the others).
        for (index, out_channels) in [80, 24].into_iter().enumerate() {
            let g = geometry([40, out_channels], [30, 31], 1, 1, 1);
            assert!(out_channels * 40 * 930 >= PARALLEL_MIN_MACS);
            let what = format!("pointwise split, {out_channels} rows");
            let seeds = [500 + index as u32, 500];
            assert_pointwise_matches(2, &g, seeds, Nonlinearity::HardSwish, &what);
        }
    }

    /// [`pointwise`] at batch 1 on a pool of `threads` (input from `x_seed`, weight, bias and a
    /// residual from `seed + 1..=3`) against the definition.
    fn assert_pointwise_matches(
        threads: usize,
        g: &ConvGeometry,
        [x_seed, seed]: [u32; 2],
        activation: Nonlinearity,
        what: &str,
    ) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        let (pixels, [k, m]) = (g.in_pixels(), [g.in_channels, g.out_channels]);
        let x = values(k * pixels, x_seed);
        let weight = values(m * k, seed + 1);
        let bias = values(m, seed + 2);
        let residual = values(m * pixels, seed + 3);
        let epilogue = Epilogue {
            bias: Some(&bias),
            residual: Some(&residual),
            activation,
        };
        let expected = reference(&x, 1, g, &weight, false, epilogue);
        let actual = pool.install(|| pointwise(&x, 1, g, &weight, epilogue));
        assert_close(&actual, &expected, what);
    }

    #[test]
    fn pointwise_in_column_blocks_matches_the_definition() {
        // Output rows above BLOCKED_EPILOGUE_MIN_FLOATS: 40 rows of 15,000 pixels on one thread,
        // 160 split into two tasks of 80 on two; blocks of 1,648 columns (and of 832), the last
        // one short; a residual, so that a task's rows of it are the ones it adds.
        for (index, (threads, out_channels)) in [(1, 40), (2, 160)].into_iter().enumerate() {
            let g = geometry([8, out_channels], [120, 125], 1, 1, 1);
            assert!(out_channels / threads * 15_000 > BLOCKED_EPILOGUE_MIN_FLOATS);
            let what = format!("pointwise in column blocks, {threads} threads");
            let seeds = [900 + index as u32, 900];
            assert_pointwise_matches(threads, &g, seeds, Nonlinearity::ReLU6, &what);
        }
    }

    #[test]
    fn pointwise_and_dense_match_the_definition() {
        for (index, batch) in [1, 3].into_iter().enumerate() {
            // Pointwise with bias and residual, as a projection; then without bias.
            let g = geometry([24, 40], [9, 7], 1, 1, 1);
            let x = values(batch * 24 * 63, 300 + index as u32);
            let weight = values(40 * 24, 301);
            let bias = values(40, 302);
            let residual = values(batch * 40 * 63, 303);
            for epilogue in [
                Epilogue {
                    bias: Some(&bias),
                    residual: Some(&residual),
                    activation: Nonlinearity::Identity,
                },
                Epilogue {
                    bias: None,
                    residual: None,
                    activation: Nonlinearity::ReLU,
                },
            ] {
                let expected = reference(&x, batch, &g, &weight, false, epilogue);
                assert_close(
                    &pointwise(&x, batch, &g, &weight, epilogue),
                    &expected,
                    "pointwise",
                );
            }
            // The stem: 3 channels, 3x3, stride 2, on odd sizes; 16 and 18 output channels, with
            // and without a bias.
            for (channels, with_bias) in [(16, true), (18, false)] {
                let g = geometry([3, channels], [15, 11], 3, 2, 1);
                let x = values(batch * 3 * 165, 400 + index as u32);
                let weight = values(channels * 27, 401);
                let epilogue = Epilogue {
                    bias: with_bias.then_some(&bias[..channels]),
                    residual: None,
                    activation: Nonlinearity::HardSwish,
                };
                let expected = reference(&x, batch, &g, &weight, false, epilogue);
                assert_close(&dense(&x, batch, &g, &weight, epilogue), &expected, "dense");
            }
        }
    }
}
