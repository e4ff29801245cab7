//! Activations applied in place, and squeeze-and-excitation on one image: the small passes that
//! burn runs as separate tensor operations (each with its own output buffer), done here on the
//! buffer the preceding convolution just wrote.

use rayon::prelude::*;

use super::simd::{MulAdd, dispatch};

/// The activation a kernel applies last: the kernels' own enum, so that this layer needs
/// nothing from the rest of the crate (the bridge converts the layers' `Activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nonlinearity {
    /// `max(x, 0)`.
    ReLU,
    /// `min(max(x, 0), 6)`.
    ReLU6,
    /// `x * relu6(x + 3) / 6`.
    HardSwish,
    /// `0.5 * x * (1 + erf(x / √2))`, the exact GELU.
    Gelu,
    /// None.
    Identity,
}

/// Applies `activation` to every element, in place, with PyTorch's formulas.
///
/// Plain `for` loops, not `for_each`: a `for_each` the compiler leaves out of line is compiled
/// on its own, without the caller's AVX2 and FMA (a profile of MobileNetV4-Hybrid-Large found
/// GELU's so, at 4% of the samples; inlined, the same work took about the same time, but the
/// loops should not depend on that choice).
#[inline(always)]
pub(crate) fn activate_slice<M: MulAdd>(values: &mut [f32], activation: Nonlinearity) {
    match activation {
        Nonlinearity::ReLU => {
            for x in values.iter_mut() {
                *x = relu(*x);
            }
        }
        Nonlinearity::ReLU6 => {
            for x in values.iter_mut() {
                *x = relu6(*x);
            }
        }
        Nonlinearity::HardSwish => {
            for x in values.iter_mut() {
                *x = hard_swish(*x);
            }
        }
        Nonlinearity::Gelu => {
            for x in values.iter_mut() {
                *x = gelu(*x);
            }
        }
        Nonlinearity::Identity => {}
    }
}

/// `max(x, 0)`.
#[inline(always)]
pub(crate) fn relu(x: f32) -> f32 {
    x.max(0.0)
}

/// `min(max(x, 0), 6)`.
#[inline(always)]
pub(crate) fn relu6(x: f32) -> f32 {
    x.clamp(0.0, 6.0)
}

/// torch's `x * relu6(x + 3) / 6`, with the division as a multiplication by 1/6 (within 1.5 ulp
/// of it): a vector division takes ~5 cycles per 8 values, the rest of h-swish under one, and
/// h-swish runs on a V3's widest maps.
#[inline(always)]
pub(crate) fn hard_swish(x: f32) -> f32 {
    x * (x + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0)
}

/// The exact GELU, `0.5 * x * (1 + erf(x / √2))` (`nn.GELU()`, `approximate='none'`), with
/// [`erf`] below.
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `erf(x)` as a rational function of `x` inside ±3.92 and exactly ±1 outside (where the true
/// `erf` rounds to ±1 in `f32`), with the
/// coefficients of Eigen's and XLA's float `erf`: within 6.5e-8 of the true `erf` in exact
/// arithmetic, 4.5e-7 evaluated in `f32` (the test below; libm's `erff` is within an ulp, 6e-8
/// near 1). The GELU it gives is within 1.2e-6 of the exact one (absolute, or relative above 1;
/// PyTorch's own CPU `gelu` is 1.1e-6 off at x = 3.5 in torch 2.15). Only multiplies, adds, one
/// division and a clamp, so it vectorizes: libm's `erff`, one call per element, was 21% of
/// MobileNetV4-Hybrid-Large's time (GELU on every expanded map).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_4e-10_f32;
    for alpha in [
        2.770_681_5e-8,
        -2.101_024e-6,
        -5.692_506_2e-5,
        -7.349_906_4e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ] {
        p = p * x2 + alpha;
    }
    let mut q = -1.456_607_15e-5_f32;
    for beta in [
        -2.133_740_5e-4,
        -1.682_827e-3,
        -7.373_329_3e-3,
        -1.426_473_9e-2,
    ] {
        q = q * x2 + beta;
    }
    // Past ±3.92 the true erf rounds to ±1 in f32: exactly that, so that GELU is exactly 0 far
    // below zero (as PyTorch's is), not x times the approximation's last ulp.
    if x.abs() >= 3.92 {
        x.signum()
    } else {
        x * p / q
    }
}

/// The weights of one squeeze-and-excitation layer, as plain slices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SqueezeExcitationWeights<'a> {
    /// `[squeeze, channels]`
    pub fc1_weight: &'a [f32],
    /// `[squeeze]`
    pub fc1_bias: &'a [f32],
    /// `[channels, squeeze]`
    pub fc2_weight: &'a [f32],
    /// `[channels]`
    pub fc2_bias: &'a [f32],
    /// The gate's hard-sigmoid, `clamp(slope * x + offset, 0, 1)`.
    pub slope: f32,
    /// See `slope`.
    pub offset: f32,
}

/// Feature maps at least this large are averaged and scaled in parallel.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// `Σ values`, in 8 running sums so that it vectorizes.
#[inline(always)]
fn sum<M: MulAdd>(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        lanes
            .iter_mut()
            .zip(chunk)
            .for_each(|(lane, &x)| *lane += x);
    }
    lanes.iter().sum::<f32>() + tail
}

/// `Σ a·b`, in 8 running sums so that it vectorizes.
#[inline(always)]
pub(crate) fn dot<M: MulAdd>(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .fold(0.0, |acc, (&x, &y)| M::mul_add(acc, x, y));
    for (a, b) in a_chunks.zip(b_chunks) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(a).zip(b) {
            *lane = M::mul_add(*lane, x, y);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[inline(always)]
fn scale_plane<M: MulAdd>(plane: &mut [f32], scale: f32) {
    plane.iter_mut().for_each(|x| *x *= scale);
}

/// [`squeeze_excitation`] on every image of a batch (`images`: `[batch, channels, pixels]`), in
/// place, the images in parallel: each image's own passes only split over threads when its map
/// is large, so a batch of small maps would otherwise run on one thread.
pub(crate) fn squeeze_excitation_images(
    images: &mut [f32],
    image_len: usize,
    channels: usize,
    weights: &SqueezeExcitationWeights,
) {
    if images.len() > image_len {
        images
            .par_chunks_exact_mut(image_len)
            .for_each(|image| squeeze_excitation(image, channels, weights));
    } else if image_len > 0 {
        images
            .chunks_exact_mut(image_len)
            .for_each(|image| squeeze_excitation(image, channels, weights));
    }
}

/// The mean of each plane of `planes` (`[planes, pixels]`, NCHW images one after another), in
/// the summation order of [`squeeze_excitation`]'s means: global average pooling, as the
/// classifiers' heads start. Large maps split their planes over the threads.
///
/// # Panics
/// If `planes` is not a whole number of planes of `pixels` (or `pixels` is zero).
pub(crate) fn plane_means(planes: &[f32], pixels: usize) -> Vec<f32> {
    assert!(pixels > 0 && planes.len().is_multiple_of(pixels));
    let mean = |plane: &[f32]| dispatch!(sum(plane)) / pixels as f32;
    if planes.len() >= PARALLEL_MIN_ELEMENTS {
        planes.par_chunks_exact(pixels).map(mean).collect()
    } else {
        planes.chunks_exact(pixels).map(mean).collect()
    }
}

/// Each image's `[channels, pixels]` map of `maps` (each `batch` images, NCHW, with its own
/// `[channels, pixels]`) transposed to `[pixels, channels]`, the maps one after another per
/// image. SSDLite's heads end so (torchvision's `view`, `permute(0, 3, 4, 1, 2)`, `reshape`
/// and `cat`: one copy here instead of two). Transposed in tiles of 8x8.
///
/// # Panics
/// If a map does not hold `batch` images of its shape.
pub(crate) fn pixels_by_channels(maps: &[(&[f32], [usize; 2])], batch: usize) -> Vec<f32> {
    const TILE: usize = 8;
    let image_len: usize = maps.iter().map(|&(_, [c, p])| c * p).sum();
    for &(map, [channels, pixels]) in maps {
        assert!(
            map.len() == batch * channels * pixels,
            "a map of another shape"
        );
    }
    // Tasks: each image's maps in bands of pixels (whole tiles of eight), each band's rows of
    // the output its own; large maps split between the threads, small ones whole.
    let threads = rayon::current_num_threads();
    let mut tasks = Vec::new();
    for image in 0..batch {
        let mut at = image * image_len;
        for (index, &(_, [channels, pixels])) in maps.iter().enumerate() {
            let tiles = pixels.div_ceil(TILE);
            let bands = if channels * pixels >= PARALLEL_MIN_ELEMENTS {
                threads.clamp(1, tiles.max(1))
            } else {
                1
            };
            for band in 0..bands {
                let first = (tiles * band / bands * TILE).min(pixels);
                let end = (tiles * (band + 1) / bands * TILE).min(pixels);
                tasks.push((image, index, at, [first, end]));
            }
            at += channels * pixels;
        }
    }
    let fill = |out: &mut [std::mem::MaybeUninit<f32>]| {
        let shared = super::conv::SharedOutput(out.as_mut_ptr().cast::<f32>());
        super::parallel::for_each_task(tasks.len(), |task| {
            let (image, index, at, [first, end]) = tasks[task];
            let (map, [channels, pixels]) = maps[index];
            let map = &map[image * channels * pixels..(image + 1) * channels * pixels];
            // SAFETY: the output rows `first..end` of this image's map (`channels` values
            // each, from `at`) lie inside the output, and only this task writes them (the
            // bands of a map, and the maps and images, are disjoint).
            let rows = unsafe {
                std::slice::from_raw_parts_mut(
                    shared
                        .at(at + first * channels)
                        .cast::<std::mem::MaybeUninit<f32>>(),
                    (end - first) * channels,
                )
            };
            let whole = channels / TILE * TILE;
            for p0 in (first..end).step_by(TILE) {
                let count = (end - p0).min(TILE);
                for c0 in (0..whole).step_by(TILE) {
                    if count == TILE {
                        let block: [[f32; TILE]; TILE] = std::array::from_fn(|c| {
                            let at = (c0 + c) * pixels + p0;
                            map[at..at + TILE].try_into().expect("eight values")
                        });
                        for (p, values) in super::simd::transpose8(&block).iter().enumerate() {
                            let at = (p0 - first + p) * channels + c0;
                            for (slot, &value) in rows[at..at + TILE].iter_mut().zip(values) {
                                slot.write(value);
                            }
                        }
                    } else {
                        for p in p0..p0 + count {
                            for c in c0..c0 + TILE {
                                rows[(p - first) * channels + c].write(map[c * pixels + p]);
                            }
                        }
                    }
                }
                for p in p0..p0 + count {
                    for c in whole..channels {
                        rows[(p - first) * channels + c].write(map[c * pixels + p]);
                    }
                }
            }
        });
    };
    // SAFETY: the tasks cover every pixel (their bands run from 0 to `pixels`) of every map of
    // every image, and each writes every channel of its pixels.
    unsafe { super::conv::filled_by(batch * image_len, fill) }
}

/// Squeeze-and-excitation on one image `[channels, pixels]`, in place: average each channel,
/// `fc1` + ReLU, `fc2` + hard-sigmoid, scale each channel.
pub(crate) fn squeeze_excitation(
    image: &mut [f32],
    channels: usize,
    weights: &SqueezeExcitationWeights,
) {
    let pixels = image.len() / channels;
    let parallel = image.len() >= PARALLEL_MIN_ELEMENTS;
    let means = plane_means(image, pixels);
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let scales = excitation(&means, weights, threads);
    let scale = |(plane, &scale): (&mut [f32], &f32)| dispatch!(scale_plane(plane, scale));
    if parallel {
        image
            .par_chunks_exact_mut(pixels)
            .zip(&scales)
            .for_each(scale);
    } else {
        image.chunks_exact_mut(pixels).zip(&scales).for_each(scale);
    }
}

/// The gates of squeeze-and-excitation from the channels' means: `fc1` + ReLU, `fc2` +
/// hard-sigmoid, one scale per channel. Shared by every layout, so that they scale by the same
/// values. Each layer's rows split over up to `threads` threads where its weights are many
/// (each output one dot product whichever thread takes it: the same values).
pub(crate) fn excitation(
    means: &[f32],
    weights: &SqueezeExcitationWeights,
    threads: usize,
) -> Vec<f32> {
    let squeeze = weights.fc1_bias.len();
    // The two layers read `2 * channels * squeeze` weights a call, and nothing else reads them
    // in between: at V3-Large's widest (960 channels, 1.8 MB) they stream from memory.
    let parallel = threads > 1 && weights.fc1_weight.len() >= PARALLEL_MIN_WEIGHTS;
    let fc1 = |(row, bias): (&[f32], &f32)| (dispatch!(dot(row, means)) + bias).max(0.0);
    let hidden: Vec<f32> = if parallel {
        let rows = weights.fc1_weight.par_chunks_exact(means.len());
        rows.zip(weights.fc1_bias).map(fc1).collect()
    } else {
        let rows = weights.fc1_weight.chunks_exact(means.len());
        rows.zip(weights.fc1_bias).map(fc1).collect()
    };
    let fc2 = |(row, bias): (&[f32], &f32)| {
        let gate = dispatch!(dot(row, &hidden)) + bias;
        (gate * weights.slope + weights.offset).clamp(0.0, 1.0)
    };
    if parallel {
        let rows = weights.fc2_weight.par_chunks_exact(squeeze);
        rows.zip(weights.fc2_bias).map(fc2).collect()
    } else {
        let rows = weights.fc2_weight.chunks_exact(squeeze);
        rows.zip(weights.fc2_bias).map(fc2).collect()
    }
}

/// Squeeze-and-excitation layers with at least this many weights in `fc1` split their rows
/// over the threads.
const PARALLEL_MIN_WEIGHTS: usize = 1 << 15;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::Plain;

    #[test]
    fn pixels_by_channels_transposes_each_map_in_turn() {
        // Two images; maps with tiles left over in both directions, and a 1x1 map.
        // The first over the size split between threads (on a pool of three: bands of 136,
        // 136 and 128 pixels), the others whole.
        let shapes = [[546usize, 400usize], [24, 9], [13, 1], [9, 13]];
        let batch = 2;
        let maps: Vec<Vec<f32>> = shapes
            .iter()
            .enumerate()
            .map(|(m, &[c, p])| (0..batch * c * p).map(|i| (i * 7 + m) as f32).collect())
            .collect();
        let inputs: Vec<(&[f32], [usize; 2])> = maps
            .iter()
            .zip(shapes)
            .map(|(map, shape)| (&map[..], shape))
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let out = pool.install(|| pixels_by_channels(&inputs, batch));
        let mut expected = Vec::new();
        for image in 0..batch {
            for (map, [c, p]) in maps.iter().zip(shapes) {
                for pixel in 0..p {
                    for channel in 0..c {
                        expected.push(map[image * c * p + channel * p + pixel]);
                    }
                }
            }
        }
        assert_eq!(out, expected);
    }

    #[test]
    fn plane_means_are_the_means_of_the_planes() {
        // 7x7 planes (V2's head, one thread) and 33x33 ones (over the parallel threshold).
        for (planes, pixels) in [(1280, 49), (40, 1089), (3, 1)] {
            let values: Vec<f32> = (0..planes * pixels)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let means = plane_means(&values, pixels);
            assert_eq!(means.len(), planes);
            for (plane, mean) in values.chunks_exact(pixels).zip(&means) {
                let exact = plane.iter().map(|&v| f64::from(v)).sum::<f64>() / pixels as f64;
                assert!((f64::from(*mean) - exact).abs() <= 1e-5 * (1.0 + exact.abs()));
            }
        }
    }

    #[test]
    fn activations_match_their_definitions() {
        let inputs = [-7.0f32, -3.0, -1.5, 0.0, 0.5, 2.9, 3.0, 6.0, 8.0];
        let relu6 = |x: f32| x.clamp(0.0, 6.0);
        for (activation, expected) in [
            (Nonlinearity::ReLU, inputs.map(|x| x.max(0.0))),
            (Nonlinearity::ReLU6, inputs.map(relu6)),
            (Nonlinearity::Identity, inputs),
        ] {
            let mut values = inputs;
            activate_slice::<Plain>(&mut values, activation);
            assert_eq!(values, expected, "{activation:?}");
        }
        // h-swish: PyTorch's `x * relu6(x + 3) / 6` within 1.5 ulp (the kernel multiplies by
        // 1/6), on the kinks and on a dense sweep.
        let sweep: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 1.7e-3).collect();
        let mut values = sweep.clone();
        activate_slice::<Plain>(&mut values, Nonlinearity::HardSwish);
        for (x, y) in inputs.iter().chain(&sweep).zip(
            inputs
                .map(|x| {
                    let mut v = [x];
                    activate_slice::<Plain>(&mut v, Nonlinearity::HardSwish);
                    v[0]
                })
                .iter()
                .chain(&values),
        ) {
            let torch = x * relu6(x + 3.0) / 6.0;
            assert!(
                (y - torch).abs() <= 1.5 * f32::EPSILON * torch.abs(),
                "h-swish({x}) = {y}, torch {torch}"
            );
        }
        // erf against libm's f64 erf on a dense sweep, and at the clamp and beyond.
        let mut worst = 0.0f64;
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            let error = (f64::from(erf(x)) - libm::erf(f64::from(x))).abs();
            worst = worst.max(error);
        }
        assert!(worst < 4.5e-7, "erf: worst error {worst}");
        for i in -80_000..=80_000 {
            let x = i as f32 * 1e-4;
            let exact = 0.5 * f64::from(x) * (1.0 + libm::erf(f64::from(x) / 2f64.sqrt()));
            let error = (f64::from(gelu(x)) - exact).abs();
            assert!(error <= 1.2e-6 * exact.abs().max(1.0), "GELU({x}): {error}");
        }
        assert_eq!((erf(9.0), erf(-9.0), erf(0.0)), (1.0, -1.0, 0.0));
        assert_eq!((gelu(-30.0), gelu(30.0)), (0.0, 30.0));
        // GELU against its definition in f64: within a few float32 ulps.
        let mut values = inputs;
        activate_slice::<Plain>(&mut values, Nonlinearity::Gelu);
        for (&x, &y) in inputs.iter().zip(&values) {
            let x = f64::from(x);
            let exact = 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            assert!(
                (f64::from(y) - exact).abs() <= 1e-6 * exact.abs().max(1.0),
                "GELU({x}) = {y}"
            );
        }
    }

    #[test]
    fn squeeze_excitation_scales_each_channel_by_its_gate() {
        // Two channels of two pixels; one squeeze unit that sums the channel means.
        let mut image = [1.0f32, 3.0, -2.0, -4.0];
        let weights = SqueezeExcitationWeights {
            fc1_weight: &[1.0, 1.0],
            fc1_bias: &[4.0],
            fc2_weight: &[0.5, -1.0],
            fc2_bias: &[0.0, 0.0],
            slope: 1.0 / 6.0,
            offset: 0.5,
        };
        // means 2, -3 -> hidden relu(2 - 3 + 4) = 3 -> gates hsig(1.5) = 0.75, hsig(-3) = 0.
        squeeze_excitation(&mut image, 2, &weights);
        assert_eq!(image, [0.75, 2.25, 0.0, 0.0]);
    }

    #[test]
    fn squeeze_excitation_on_large_maps_takes_the_parallel_path_and_matches_the_definition() {
        let (channels, squeeze, pixels) = (40, 8, 1024);
        assert!(channels * pixels >= PARALLEL_MIN_ELEMENTS);
        let value = |i: usize, seed: usize| ((i * 7919 + seed * 104729) % 211) as f32 / 105.5 - 1.0;
        let image: Vec<f32> = (0..channels * pixels).map(|i| value(i, 1)).collect();
        let fc1_weight: Vec<f32> = (0..squeeze * channels).map(|i| value(i, 2)).collect();
        let fc1_bias: Vec<f32> = (0..squeeze).map(|i| value(i, 3)).collect();
        let fc2_weight: Vec<f32> = (0..channels * squeeze).map(|i| value(i, 4)).collect();
        let fc2_bias: Vec<f32> = (0..channels).map(|i| value(i, 5)).collect();
        let weights = SqueezeExcitationWeights {
            fc1_weight: &fc1_weight,
            fc1_bias: &fc1_bias,
            fc2_weight: &fc2_weight,
            fc2_bias: &fc2_bias,
            slope: 1.0 / 6.0,
            offset: 0.5,
        };
        // The definition, in f64.
        let means: Vec<f64> = image
            .chunks(pixels)
            .map(|plane| plane.iter().map(|&x| x as f64).sum::<f64>() / pixels as f64)
            .collect();
        let hidden: Vec<f64> = (0..squeeze)
            .map(|s| {
                let dot: f64 = (0..channels)
                    .map(|c| fc1_weight[s * channels + c] as f64 * means[c])
                    .sum();
                (dot + fc1_bias[s] as f64).max(0.0)
            })
            .collect();
        let expected: Vec<f64> = (0..channels * pixels)
            .map(|i| {
                let c = i / pixels;
                let dot: f64 = (0..squeeze)
                    .map(|s| fc2_weight[c * squeeze + s] as f64 * hidden[s])
                    .sum();
                let gate = ((dot + fc2_bias[c] as f64) / 6.0 + 0.5).clamp(0.0, 1.0);
                image[i] as f64 * gate
            })
            .collect();
        let mut actual = image.clone();
        squeeze_excitation(&mut actual, channels, &weights);
        for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
            assert!((*a as f64 - e).abs() < 1e-5, "[{i}]: {a} vs {e}");
        }
    }
}
