//! An inverted residual block without squeeze-and-excitation in one pass per band of output
//! rows: expansion (1x1), depthwise, projection (1x1) and the residual add, so that the expanded
//! map, the block's largest tensor (six times its input for MobileNetV2), never reaches memory
//! in full. Each band computes the expanded rows its depthwise rows read (a few rows of overlap
//! with the next band are computed twice), runs the depthwise convolution on them, and projects
//! the result straight into its rows of the output. Bands are independent: one parallel region
//! per block instead of three, and a working set sized for the core's cache.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv::{
    ConvGeometry, Epilogue, SharedOutput, epilogue_columns, epilogue_rows, filled_by, gemm_strided,
    initialized,
};
use super::direct::{self, depthwise_image};
use super::elementwise::{Nonlinearity, SqueezeExcitationWeights};
use super::simd::dispatch;

/// Floats of expanded rows a band aims for (512 KiB): inside a core's L2 cache on current
/// server CPUs, and large enough that the overlap recomputed between bands stays small.
const BAND_FLOATS: usize = 1 << 17;

/// One 1x1 convolution of the block: `weight` `[out, in]`, its bias and activation.
#[derive(Clone, Copy)]
pub(crate) struct Pointwise<'a> {
    pub weight: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub activation: Nonlinearity,
}

/// The block's layers, as slices.
#[derive(Clone, Copy)]
pub(crate) struct InvertedResidualWeights<'a> {
    /// The expansion to `depthwise.in_channels` channels, if the block expands.
    pub expand: Option<Pointwise<'a>>,
    /// The depthwise convolution's geometry on one image (its in and out channels are the
    /// expanded width), weight `[c, 1, kh, kw]`, bias and activation.
    pub depthwise: ConvGeometry,
    pub depthwise_weight: &'a [f32],
    pub depthwise_bias: Option<&'a [f32]>,
    pub depthwise_activation: Nonlinearity,
    /// Squeeze-and-excitation on the depthwise output, if the block has it (only
    /// `kernels::blocked` takes such a block; [`inverted_residual`] here panics on one).
    pub squeeze_excitation: Option<SqueezeExcitationWeights<'a>>,
    /// The projection (no activation: a linear bottleneck).
    pub project_weight: &'a [f32],
    pub project_bias: Option<&'a [f32]>,
    /// Whether the input is added to the output (same shape).
    pub residual: bool,
}

/// Whether [`inverted_residual`] computes this block: a depthwise geometry the direct kernel
/// takes, and a residual only where input and output have one shape.
/// Takes the block's shape alone, so that a caller can decide before it gathers the weights.
pub(crate) fn supports(
    g: &ConvGeometry,
    expands: bool,
    residual: bool,
    [in_channels, out_channels]: [usize; 2],
) -> bool {
    direct::supports(g)
        && g.in_channels == g.out_channels
        && (expands || in_channels == g.in_channels)
        && (!residual
            || (in_channels == out_channels
                && g.out_height == g.in_height
                && g.out_width == g.in_width))
}

/// Output rows per band: as many as keep the expanded rows they read within `BAND_FLOATS`.
fn band_rows(g: &ConvGeometry) -> usize {
    let rows_in = (BAND_FLOATS / (g.in_channels * g.in_width).max(1)).max(1);
    (rows_in / g.stride[0]).clamp(1, g.out_height)
}

/// Whether the band kernel is worth it for this block at this batch on `threads` threads: when
/// every thread has whole images to work on (and two bands, all images counted, to share).
/// Then the layers one at a time would run each image on one thread, every image's expanded
/// map in memory at once, and the bands win (MobileNetV2 at batch 8 on 2 threads: 67 -> 38 ms).
/// With fewer images than threads the layers one at a time split each layer over the threads
/// and keep their maps in cache: at batch 1 they were 10-19% faster than the bands (V2,
/// V3-Large), so the bands decline there, and for a single image on one thread too (V2 5%
/// slower with bands: its expanded maps fit in cache anyway).
/// `g` is the depthwise convolution's geometry on one image.
pub(crate) fn worth_it(g: &ConvGeometry, batch: usize, threads: usize) -> bool {
    batch >= threads.max(2) && batch * g.out_height.div_ceil(band_rows(g)) >= 2 * threads
}

/// The block on `x` (`[batch, in_channels, h, w]`): `[batch, out_channels, out_h, out_w]`.
/// Needs [`supports`].
///
/// # Panics
/// If a slice is shorter than the shapes say, or the block has squeeze-and-excitation.
pub(crate) fn inverted_residual(
    x: &[f32],
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    block: &InvertedResidualWeights,
) -> Vec<f32> {
    assert!(
        block.squeeze_excitation.is_none(),
        "the band kernel has no squeeze-and-excitation"
    );
    let g = block.depthwise;
    let (in_pixels, out_pixels) = (g.in_pixels(), g.out_pixels());
    let (image_in, image_out) = (in_channels * in_pixels, out_channels * out_pixels);
    assert!(x.len() >= batch * image_in);
    assert!(block.project_weight.len() == out_channels * g.in_channels);
    let band_rows = band_rows(&g);
    let bands = g.out_height.div_ceil(band_rows);
    let fill = |output: &mut [MaybeUninit<f32>]| {
        let shared = SharedOutput(output.as_mut_ptr().cast::<f32>());
        (0..batch * bands).into_par_iter().for_each(|task| {
            let (image, band) = (task / bands, task % bands);
            let first = band * band_rows;
            let rows = band_rows.min(g.out_height - first);
            let x = &x[image * image_in..(image + 1) * image_in];
            // SAFETY: this task writes rows `first..first + rows` of every output channel of
            // image `image`, and no other task writes them; the image lies inside `output`.
            unsafe {
                band_into(
                    x,
                    in_channels,
                    out_channels,
                    block,
                    [first, rows],
                    shared.at(image * image_out),
                )
            };
        });
    };
    // SAFETY: the tasks cover every (image, band) pair, the bands cover every output row, and
    // each writes its rows of every channel in full (`band_into`).
    unsafe { filled_by(batch * image_out, fill) }
}

/// Output rows `first..first + rows` of one image, every output channel, written to `out`
/// (`[out_channels, out_h * out_w]`, row-major).
///
/// # Safety
/// `out` must point to one output image, and nobody else may access these rows meanwhile.
unsafe fn band_into(
    x: &[f32],
    in_channels: usize,
    out_channels: usize,
    block: &InvertedResidualWeights,
    [first, rows]: [usize; 2],
    out: *mut f32,
) {
    let g = block.depthwise;
    let channels = g.in_channels;
    // The input rows the band's outputs read, and the depthwise convolution on just those.
    let (start, band) = direct::band_geometry(&g, [first, rows]);
    let (band_height, end) = (band.in_height, start + band.in_height);
    let width = g.in_width;
    let in_pixels = g.in_pixels();
    // The expanded band, `[channels, band_height * width]`.
    let columns = band_height * width;
    let mut expanded = Vec::with_capacity(channels * columns);
    match &block.expand {
        Some(expand) => {
            let spare = &mut expanded.spare_capacity_mut()[..channels * columns];
            // SAFETY: `spare` holds `channels x columns`, contiguous; the input rows
            // `start..end` of each of the `in_channels` planes are `columns` values at stride
            // `in_pixels` inside `x`.
            unsafe {
                gemm_strided(
                    spare.as_mut_ptr().cast::<f32>(),
                    columns,
                    expand.weight,
                    x[start * width..].as_ptr(),
                    in_pixels,
                    [channels, in_channels, columns],
                );
            }
            // SAFETY: gemm_strided wrote all `channels * columns` values.
            let written = unsafe { initialized(spare) };
            let epilogue = Epilogue {
                bias: expand.bias,
                residual: None,
                activation: expand.activation,
            };
            dispatch!(epilogue_rows(written, columns, 0, epilogue));
            // SAFETY: the first `channels * columns` values were written just above.
            unsafe { expanded.set_len(channels * columns) };
        }
        None => {
            for plane in x.chunks_exact(in_pixels).take(channels) {
                expanded.extend_from_slice(&plane[start * width..end * width]);
            }
        }
    }
    let band_out = rows * g.out_width;
    let mut hidden = Vec::with_capacity(channels * band_out);
    let epilogue = Epilogue {
        bias: block.depthwise_bias,
        residual: None,
        activation: block.depthwise_activation,
    };
    depthwise_image(
        &expanded,
        &band,
        block.depthwise_weight,
        epilogue,
        &mut hidden.spare_capacity_mut()[..channels * band_out],
    );
    // SAFETY: `depthwise_image` wrote all `channels * band_out` values (or panicked).
    unsafe { hidden.set_len(channels * band_out) };
    // The projection, straight into the band's columns of every output row.
    let out_pixels = g.out_pixels();
    let column = first * g.out_width;
    // SAFETY: `out` holds `out_channels` rows of `out_pixels` (the caller's guarantee); this
    // band's columns `column..column + band_out` of each are written here only; `hidden` is
    // `channels x band_out`, contiguous.
    unsafe {
        gemm_strided(
            out.add(column),
            out_pixels,
            block.project_weight,
            hidden.as_ptr(),
            band_out,
            [out_channels, channels, band_out],
        );
    }
    let residual = block.residual.then_some(x);
    let epilogue = Epilogue {
        bias: block.project_bias,
        residual,
        activation: Nonlinearity::Identity,
    };
    // SAFETY: this band's columns of the `[out_channels, out_pixels]` output, written in full
    // just above and this band's alone.
    unsafe { epilogue_columns(out, [out_channels, out_pixels], column, band_out, epilogue) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::pointwise;
    use crate::kernels::direct::depthwise;

    use crate::kernels::{test_geometry as geometry, test_values as values};

    /// The fused block equals its three layers run one after the other (`pointwise`,
    /// `depthwise`, `pointwise` with the residual), which are themselves tested against the
    /// definition, on MobileNet's strides, kernels and dilations, with and without expansion,
    /// and sizes that do not divide into bands.
    #[test]
    fn fused_block_equals_its_layers_in_turn() {
        // (in, expanded, out, size, kernel, stride, dilation); the two large ones span several
        // bands.
        let cases = [
            (8, 48, 8, [13, 11], 3, 1, 1),
            (8, 48, 16, [13, 11], 3, 2, 1),
            (6, 6, 6, [9, 10], 3, 1, 1),
            (4, 24, 8, [17, 9], 5, 2, 1),
            (5, 30, 5, [12, 12], 5, 1, 2),
            (3, 12, 3, [1, 1], 3, 1, 1),
            (3, 12, 6, [2, 3], 5, 2, 1),
            (16, 96, 16, [80, 70], 3, 1, 1),
            (16, 96, 24, [81, 70], 3, 2, 1),
        ];
        for (index, (cin, ce, cout, size, kernel, stride, dilation)) in
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
            let block = InvertedResidualWeights {
                expand: expands.then_some(Pointwise {
                    weight: &expand,
                    bias: Some(&expand_bias),
                    activation: Nonlinearity::ReLU6,
                }),
                depthwise: g,
                depthwise_weight: &dw,
                depthwise_bias: Some(&dw_bias),
                depthwise_activation: Nonlinearity::HardSwish,
                squeeze_excitation: None,
                project_weight: &project,
                project_bias: Some(&project_bias),
                residual,
            };
            assert!(supports(&g, expands, residual, [cin, cout]), "case {index}");
            let hidden = if expands {
                let epilogue = Epilogue {
                    bias: Some(&expand_bias),
                    residual: None,
                    activation: Nonlinearity::ReLU6,
                };
                pointwise(
                    &x,
                    batch,
                    &geometry([cin, ce], size, 1, 1, 1),
                    &expand,
                    epilogue,
                )
            } else {
                x.clone()
            };
            let epilogue = Epilogue {
                bias: Some(&dw_bias),
                residual: None,
                activation: Nonlinearity::HardSwish,
            };
            let hidden = depthwise(&hidden, batch, &g, &dw, epilogue);
            let epilogue = Epilogue {
                bias: Some(&project_bias),
                residual: residual.then_some(&x[..]),
                activation: Nonlinearity::Identity,
            };
            let out_size = [g.out_height, g.out_width];
            let expected = pointwise(
                &hidden,
                batch,
                &geometry([ce, cout], out_size, 1, 1, 1),
                &project,
                epilogue,
            );
            let actual = inverted_residual(&x, batch, cin, cout, &block);
            assert_eq!(actual.len(), expected.len(), "case {index}: length");
            for (at, (a, e)) in actual.iter().zip(&expected).enumerate() {
                assert!(
                    (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
                    "case {index}[{at}]: {a} vs {e}"
                );
            }
        }
    }
}
