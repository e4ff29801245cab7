//! Dense stride-1 convolutions with large dilations as one matrix multiply per kernel tap,
//! over only the outputs whose input under that tap lies inside the image.
//!
//! DeepLabV3's ASPP runs 3x3 convolutions dilated by 12, 24 and 36 on a 33x33 map (a 520x520
//! input at output stride 16). Most of their taps read only the zero padding for most outputs
//! (at dilation 36 every tap but the centre does, for every output), yet im2col, PyTorch and
//! ONNX Runtime multiply those zeros all the same: 7.2 of DeepLabV3's 10.5 G multiply-adds. Per
//! tap `(ky, kx)`, the outputs it reaches form one rectangle; the tap contributes
//! `weight[:, :, ky, kx] · x[:, rectangle shifted by the tap]` there, one matrix multiply of
//! exactly the work that is not zero. At 520x520 the three branches need 0.57, 0.27 and 0.11
//! of their im2col work.

use rayon::prelude::*;

use super::conv::{ConvGeometry, Epilogue, finish_image, for_each_image};

/// Below this share of im2col's work, the tap-wise form is used (it gathers each tap's input
/// and adds each partial product into the output: worth it only when much work is skipped).
const MAX_LIVE_SHARE: f64 = 0.8;

/// Below this many multiply-adds a tap's matrix multiply runs on one thread.
const PARALLEL_MIN_MACS: usize = 1 << 19;

/// One kernel tap: where it sits in the weight, and the outputs it reaches inside the input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tap {
    /// `ky * kernel_w + kx`.
    pub(crate) index: usize,
    /// Output rows `rows.0..rows.1` and columns `columns.0..columns.1`.
    pub(crate) rows: (usize, usize),
    pub(crate) columns: (usize, usize),
    /// Input row and column of output `(0, 0)` under this tap (may be negative).
    pub(crate) offset: (isize, isize),
}

impl Tap {
    fn pixels(&self) -> usize {
        (self.rows.1 - self.rows.0) * (self.columns.1 - self.columns.0)
    }
}

/// The taps that reach the input for at least one output, for a stride-1 `geometry`.
pub(crate) fn live_taps(geometry: &ConvGeometry) -> Vec<Tap> {
    let [kernel_h, kernel_w] = geometry.kernel;
    // Outputs `o` with `0 <= o + offset < size`.
    let reach = |offset: isize, size: usize, out: usize| {
        let first = (-offset).max(0) as usize;
        let last = (size as isize - offset).clamp(0, out as isize) as usize;
        (first.min(last), last)
    };
    let mut taps = Vec::new();
    for ky in 0..kernel_h {
        for kx in 0..kernel_w {
            let offset = (
                (ky * geometry.dilation[0]) as isize - geometry.padding[0] as isize,
                (kx * geometry.dilation[1]) as isize - geometry.padding[1] as isize,
            );
            let tap = Tap {
                index: ky * kernel_w + kx,
                rows: reach(offset.0, geometry.in_height, geometry.out_height),
                columns: reach(offset.1, geometry.in_width, geometry.out_width),
                offset,
            };
            if tap.pixels() > 0 {
                taps.push(tap);
            }
        }
    }
    taps
}

/// Whether `geometry` takes the tap-wise form: stride 1, and the taps' live outputs at most
/// [`MAX_LIVE_SHARE`] of im2col's work.
pub(crate) fn worth_it(geometry: &ConvGeometry) -> bool {
    let all = geometry.kernel[0] * geometry.kernel[1] * geometry.out_pixels();
    geometry.stride == [1, 1]
        && all > 0
        && (live_taps(geometry).iter().map(Tap::pixels).sum::<usize>() as f64)
            <= MAX_LIVE_SHARE * all as f64
}

/// `dst[m, n] (+)= weight[:, :, tap] · rhs[k, n]`, `weight` `[m, k, taps]` (the convolution's
/// `[out, in, kh, kw]`), `rhs` and `dst` contiguous; adds to `dst` when `accumulate`.
fn tap_matmul(
    dst: &mut [f32],
    weight: &[f32],
    [tap, taps]: [usize; 2],
    rhs: &[f32],
    [m, k, n]: [usize; 3],
    accumulate: bool,
    threads: bool,
) {
    assert!(tap < taps && weight.len() == m * k * taps);
    assert!(rhs.len() == k * n && dst.len() == m * n && k > 0);
    let parallelism = if threads && m * n * k >= PARALLEL_MIN_MACS {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the lengths were checked above: `weight` from element `tap` holds rows `m` of `k`
    // values at `k * taps` apart, each `taps` apart, ending inside the slice; `rhs` is `[k, n]`
    // and `dst` `[m, n]`, both contiguous; `dst` is a distinct `&mut` and, read when
    // `accumulate` (its values are initialized `f32`), written in full.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            weight.as_ptr().add(tap),
            taps as isize,
            (k * taps) as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A stride-1 convolution with `groups == 1` computed tap by tap. `weight`: `[out, in, kh, kw]`.
pub(crate) fn tapwise(
    x: &[f32],
    batch: usize,
    geometry: &ConvGeometry,
    weight: &[f32],
    epilogue: Epilogue,
) -> Vec<f32> {
    assert_eq!(geometry.stride, [1, 1], "tapwise: stride 1 only");
    let taps = live_taps(geometry);
    let (in_channels, out_channels) = (geometry.in_channels, geometry.out_channels);
    let (in_len, out_pixels) = (in_channels * geometry.in_pixels(), geometry.out_pixels());
    let kernel_taps = geometry.kernel[0] * geometry.kernel[1];
    let mut output = vec![0.0f32; batch * out_channels * out_pixels];
    let per_image = |image: usize, out: &mut [f32], threads: bool| {
        let input = &x[image * in_len..(image + 1) * in_len];
        for tap in &taps {
            let (height, width) = (tap.rows.1 - tap.rows.0, tap.columns.1 - tap.columns.0);
            let whole = (height, width) == (geometry.out_height, geometry.out_width);
            let reads_input_as_is = whole
                && tap.offset == (0, 0)
                && (geometry.in_height, geometry.in_width) == (height, width);
            let gathered;
            let rhs = if reads_input_as_is {
                input
            } else {
                gathered = gather(input, geometry, tap, threads);
                &gathered
            };
            let shape = [out_channels, in_channels, height * width];
            if whole {
                tap_matmul(
                    out,
                    weight,
                    [tap.index, kernel_taps],
                    rhs,
                    shape,
                    true,
                    threads,
                );
            } else {
                let mut partial = vec![0.0f32; out_channels * height * width];
                tap_matmul(
                    &mut partial,
                    weight,
                    [tap.index, kernel_taps],
                    rhs,
                    shape,
                    false,
                    threads,
                );
                add_rectangle(out, &partial, geometry, tap, threads);
            }
        }
        let image_epilogue = Epilogue {
            residual: epilogue
                .residual
                .map(|residual| &residual[image * out.len()..(image + 1) * out.len()]),
            ..epilogue
        };
        finish_image(out, out_pixels, image_epilogue);
    };
    for_each_image(&mut output, batch, per_image);
    output
}

/// The input under `tap` for its output rectangle: `[in_channels, height * width]`.
fn gather(input: &[f32], geometry: &ConvGeometry, tap: &Tap, threads: bool) -> Vec<f32> {
    let (height, width) = (tap.rows.1 - tap.rows.0, tap.columns.1 - tap.columns.0);
    let plane = geometry.in_pixels();
    let mut columns = vec![0.0f32; geometry.in_channels * height * width];
    let copy = |(channel, rows): (usize, &mut [f32])| {
        let source = &input[channel * plane..(channel + 1) * plane];
        for (row, values) in rows.chunks_exact_mut(width).enumerate() {
            // Inside the input by the construction of the tap's rectangle.
            let y = (tap.rows.0 + row) as isize + tap.offset.0;
            let x = tap.columns.0 as isize + tap.offset.1;
            let start = y as usize * geometry.in_width + x as usize;
            values.copy_from_slice(&source[start..start + width]);
        }
    };
    if threads {
        columns
            .par_chunks_mut(height * width)
            .enumerate()
            .for_each(copy);
    } else {
        columns
            .chunks_mut(height * width)
            .enumerate()
            .for_each(copy);
    }
    columns
}

/// `out[:, rectangle of tap] += partial`.
fn add_rectangle(
    out: &mut [f32],
    partial: &[f32],
    geometry: &ConvGeometry,
    tap: &Tap,
    threads: bool,
) {
    let (height, width) = (tap.rows.1 - tap.rows.0, tap.columns.1 - tap.columns.0);
    let out_pixels = geometry.out_pixels();
    let add = |(plane, sums): (&mut [f32], &[f32])| {
        for (row, values) in sums.chunks_exact(width).enumerate() {
            let start = (tap.rows.0 + row) * geometry.out_width + tap.columns.0;
            plane[start..start + width]
                .iter_mut()
                .zip(values)
                .for_each(|(o, v)| *o += v);
        }
    };
    if threads {
        out.par_chunks_mut(out_pixels)
            .zip(partial.par_chunks(height * width))
            .for_each(add);
    } else {
        out.chunks_mut(out_pixels)
            .zip(partial.chunks(height * width))
            .for_each(add);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::dense;
    use crate::kernels::elementwise::Nonlinearity;
    use crate::kernels::{test_geometry, test_values};

    #[test]
    fn equals_im2col_on_asp_shapes_and_awkward_ones() {
        // (channels, size, kernel, dilation, batch)
        for (channels, size, kernel, dilation, batch) in [
            ([16, 8], [33, 33], 3, 12, 1),
            ([16, 8], [33, 33], 3, 24, 2),
            ([16, 8], [33, 33], 3, 36, 1),
            ([5, 7], [9, 14], 3, 6, 3),
            ([4, 3], [6, 5], 5, 2, 1),
            ([3, 2], [2, 3], 3, 40, 1),
        ] {
            let geometry = test_geometry(channels, size, kernel, 1, dilation);
            let x = test_values(batch * channels[0] * size[0] * size[1], 11);
            let weight = test_values(channels[1] * channels[0] * kernel * kernel, 12);
            let bias = test_values(channels[1], 13);
            let residual = test_values(batch * channels[1] * geometry.out_pixels(), 14);
            // `dense` adds a residual to batches of one only (the bridge gives the non-pointwise
            // kernels none).
            let epilogue = Epilogue {
                bias: Some(&bias),
                residual: (batch == 1).then_some(residual.as_slice()),
                activation: Nonlinearity::ReLU6,
            };
            let ours = tapwise(&x, batch, &geometry, &weight, epilogue);
            let reference = dense(&x, batch, &geometry, &weight, epilogue);
            assert_eq!(ours.len(), reference.len());
            for (index, (a, b)) in ours.iter().zip(&reference).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{channels:?} {size:?} d{dilation} at {index}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn live_work_is_what_the_padding_leaves() {
        // ASPP at 520x520: a 33x33 map, dilations 12, 24, 36.
        let share = |dilation: usize| {
            let geometry = test_geometry([1, 1], [33, 33], 3, 1, dilation);
            let live: usize = live_taps(&geometry).iter().map(Tap::pixels).sum();
            live as f64 / (9.0 * 33.0 * 33.0)
        };
        assert!((share(12) - (75.0f64 / 99.0).powi(2)).abs() < 1e-12);
        assert!((share(24) - (51.0f64 / 99.0).powi(2)).abs() < 1e-12);
        assert!((share(36) - 1.0 / 9.0).abs() < 1e-12);
        assert!(worth_it(&test_geometry([1, 1], [33, 33], 3, 1, 12)));
        // An ordinary 3x3 convolution on a large map skips almost nothing.
        assert!(!worth_it(&test_geometry([1, 1], [33, 33], 3, 1, 1)));
        assert!(!worth_it(&test_geometry([1, 1], [33, 33], 3, 2, 12)));
    }
}
