//! torchvision's training transforms (`transforms.RandomResizedCrop`, `RandomHorizontalFlip`,
//! `RandomErasing`), with torchvision's sampling rules: given the same random draws, they pick
//! the same crop box, flip and erased region.
//!
//! Randomness comes from a [`Draws`] source that makes exactly the calls torchvision makes to
//! torch's generator (`torch.empty(1).uniform_(low, high)`, `torch.randint(low, high, (1,))`,
//! `torch.rand(1)`), in the same order. [`SeededDraws`] is a seeded generator (not torch's: the
//! numbers differ, the rules do not); the tests replay draws recorded from torchvision.

use image::RgbImage;
use image::imageops;

use crate::pretrained::resize_bilinear;

/// The random draws torchvision's transforms make, one call each.
pub trait Draws {
    /// `torch.empty(1).uniform_(low, high).item()`: a float32 in `[low, high)`.
    fn uniform(&mut self, low: f32, high: f32) -> f32;
    /// `torch.randint(low, high, (1,)).item()`: an integer in `[low, high)`; `high > low`.
    fn randint(&mut self, low: i64, high: i64) -> i64;
    /// `torch.rand(1).item()`: a float32 in `[0, 1)`.
    fn rand(&mut self) -> f32;

    /// `torch.multinomial(torch.tensor([1 / n] * n), 1)`: the choice of `RandomChoice` among
    /// `n` transforms. By default one [`randint`](Self::randint).
    fn choice(&mut self, n: usize) -> usize {
        self.randint(0, n.max(1) as i64) as usize
    }

    /// `torch.distributions.Beta(alpha, alpha).sample()`, the mixing weight of `MixUp` and
    /// `CutMix`. By default from two Gamma(`alpha`) variates (Marsaglia and Tsang's method over
    /// [`rand`](Self::rand) draws; torch's sampler draws differently, the distribution is the
    /// same).
    fn beta(&mut self, alpha: f32) -> f32 {
        let x = gamma(self, f64::from(alpha));
        let y = gamma(self, f64::from(alpha));
        if x + y > 0.0 {
            (x / (x + y)) as f32
        } else {
            0.5
        }
    }
}

/// A Gamma(`shape`, 1) variate (Marsaglia and Tsang, with the `U^(1/shape)` boost below 1).
fn gamma<D: Draws + ?Sized>(draws: &mut D, shape: f64) -> f64 {
    if shape.is_nan() || shape <= 0.0 {
        return 0.0;
    }
    if shape < 1.0 {
        let u = f64::from(draws.rand()).max(f64::MIN_POSITIVE);
        return gamma(draws, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        // A standard normal by Box-Muller.
        let u1 = f64::from(draws.rand()).max(f64::MIN_POSITIVE);
        let u2 = f64::from(draws.rand());
        let x = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = f64::from(draws.rand()).max(f64::MIN_POSITIVE);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A seeded source of [`Draws`] (SplitMix64): reproducible, thread-independent, cheap to fork
/// per image ([`SeededDraws::for_item`]).
#[derive(Debug, Clone)]
pub struct SeededDraws {
    state: u64,
}

impl SeededDraws {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The generator for item `index` of epoch `epoch` under `seed`: each image's draws depend
    /// only on these three numbers, not on which thread decodes it or in which order.
    pub fn for_item(seed: u64, epoch: u64, index: u64) -> Self {
        let mut mixer = Self::new(seed ^ 0x9E37_79B9_7F4A_7C15);
        let a = mixer.next_u64() ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut mixer = Self::new(a);
        Self::new(mixer.next_u64() ^ index.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7))
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float32 in `[0, 1)` with 24 random bits, as torch's CPU generator makes them.
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

impl Draws for SeededDraws {
    fn uniform(&mut self, low: f32, high: f32) -> f32 {
        // torch: `x * (to - from) + from`, in float32.
        self.unit() * (high - low) + low
    }

    fn randint(&mut self, low: i64, high: i64) -> i64 {
        let range = (high - low).max(1) as u64;
        low + (self.next_u64() % range) as i64
    }

    fn rand(&mut self) -> f32 {
        self.unit()
    }
}

/// Shuffles `items` in place (Fisher-Yates, one `randint` per position from the last down).
pub fn shuffle<T>(items: &mut [T], draws: &mut impl Draws) {
    for i in (1..items.len()).rev() {
        let j = draws.randint(0, i as i64 + 1) as usize;
        items.swap(i, j);
    }
}

/// A region of an image: rows `top..top + height`, columns `left..left + width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// First row.
    pub top: u32,
    /// First column.
    pub left: u32,
    /// Number of rows.
    pub height: u32,
    /// Number of columns.
    pub width: u32,
}

/// `int(round(x))` of Python: halves to even.
fn round_half_even(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// `transforms.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3/4, 4/3))`: a random region
/// of random area and aspect ratio, resized (Pillow's bilinear, as torchvision on PIL images)
/// to `size`.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomResizedCrop {
    /// Output `[height, width]`.
    pub size: [u32; 2],
    /// Range of the region's area, as fractions of the image's.
    pub scale: (f64, f64),
    /// Range of the region's aspect ratio (width / height).
    pub ratio: (f64, f64),
}

impl RandomResizedCrop {
    /// A square output of `size`, torchvision's default scale and ratio.
    pub fn new(size: u32) -> Self {
        Self {
            size: [size, size],
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }

    /// `RandomResizedCrop.get_params(img, scale, ratio)` for an image of `width x height`: up to
    /// ten tries of a random area and log-uniform aspect ratio that fit, else the central crop
    /// with the ratio clamped to the range.
    pub fn params(&self, width: u32, height: u32, draws: &mut impl Draws) -> CropBox {
        let area = f64::from(height) * f64::from(width);
        // torch.log(torch.tensor(ratio)): float32.
        let log_ratio = ((self.ratio.0 as f32).ln(), (self.ratio.1 as f32).ln());
        for _ in 0..10 {
            let target_area =
                area * f64::from(draws.uniform(self.scale.0 as f32, self.scale.1 as f32));
            let aspect_ratio = f64::from(draws.uniform(log_ratio.0, log_ratio.1).exp());
            let w = round_half_even((target_area * aspect_ratio).sqrt());
            let h = round_half_even((target_area / aspect_ratio).sqrt());
            if 0 < w && w <= i64::from(width) && 0 < h && h <= i64::from(height) {
                let top = draws.randint(0, i64::from(height) - h + 1);
                let left = draws.randint(0, i64::from(width) - w + 1);
                return CropBox {
                    top: top as u32,
                    left: left as u32,
                    height: h as u32,
                    width: w as u32,
                };
            }
        }
        // Fallback to the central crop.
        let in_ratio = f64::from(width) / f64::from(height);
        let (min_ratio, max_ratio) = (
            self.ratio.0.min(self.ratio.1),
            self.ratio.0.max(self.ratio.1),
        );
        let (w, h) = if in_ratio < min_ratio {
            (
                i64::from(width),
                round_half_even(f64::from(width) / min_ratio),
            )
        } else if in_ratio > max_ratio {
            (
                round_half_even(f64::from(height) * max_ratio),
                i64::from(height),
            )
        } else {
            (i64::from(width), i64::from(height))
        };
        CropBox {
            top: ((i64::from(height) - h) / 2) as u32,
            left: ((i64::from(width) - w) / 2) as u32,
            height: h as u32,
            width: w as u32,
        }
    }

    /// The crop of `image` by [`params`](Self::params), resized to `size`.
    pub fn apply(&self, image: &RgbImage, draws: &mut impl Draws) -> RgbImage {
        let crop = self.params(image.width(), image.height(), draws);
        resized_crop(image, crop, self.size)
    }
}

/// `F.resized_crop(img, top, left, height, width, size)` on an image: crop, then Pillow's
/// bilinear resize to `[height, width]`.
pub fn resized_crop(image: &RgbImage, crop: CropBox, [height, width]: [u32; 2]) -> RgbImage {
    let region = imageops::crop_imm(image, crop.left, crop.top, crop.width, crop.height).to_image();
    resize_bilinear(&region, width, height)
}

/// `transforms.RandomHorizontalFlip(p)`: mirrors the image when `torch.rand(1) < p`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomHorizontalFlip {
    /// Probability of a flip.
    pub p: f32,
}

impl Default for RandomHorizontalFlip {
    fn default() -> Self {
        Self { p: 0.5 }
    }
}

impl RandomHorizontalFlip {
    /// Whether to flip (one draw).
    pub fn params(&self, draws: &mut impl Draws) -> bool {
        draws.rand() < self.p
    }

    /// `image`, mirrored or not.
    pub fn apply(&self, image: RgbImage, draws: &mut impl Draws) -> RgbImage {
        if self.params(draws) {
            imageops::flip_horizontal(&image)
        } else {
            image
        }
    }
}

/// `transforms.RandomErasing(p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)`, on a
/// normalized `[channels, height, width]` image: with probability `p`, a random rectangle set
/// to `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomErasing {
    /// Probability of erasing anything.
    pub p: f32,
    /// Range of the region's area, as fractions of the image's.
    pub scale: (f64, f64),
    /// Range of the region's aspect ratio (height / width, as torchvision draws it).
    pub ratio: (f64, f64),
    /// The value written (after normalization).
    pub value: f32,
}

impl Default for RandomErasing {
    fn default() -> Self {
        Self {
            p: 0.5,
            scale: (0.02, 0.33),
            ratio: (0.3, 3.3),
            value: 0.0,
        }
    }
}

impl RandomErasing {
    /// The region to erase in a `height x width` image, or `None` (the `torch.rand(1) < p`
    /// draw failed, or ten tries found no region smaller than the image: torchvision then
    /// returns the image unchanged).
    pub fn params(&self, height: u32, width: u32, draws: &mut impl Draws) -> Option<CropBox> {
        if draws.rand() >= self.p {
            return None;
        }
        let area = f64::from(height) * f64::from(width);
        let log_ratio = ((self.ratio.0 as f32).ln(), (self.ratio.1 as f32).ln());
        for _ in 0..10 {
            let erase_area =
                area * f64::from(draws.uniform(self.scale.0 as f32, self.scale.1 as f32));
            let aspect_ratio = f64::from(draws.uniform(log_ratio.0, log_ratio.1).exp());
            let h = round_half_even((erase_area * aspect_ratio).sqrt());
            let w = round_half_even((erase_area / aspect_ratio).sqrt());
            if !(h < i64::from(height) && w < i64::from(width)) {
                continue;
            }
            let top = draws.randint(0, i64::from(height) - h + 1);
            let left = draws.randint(0, i64::from(width) - w + 1);
            return Some(CropBox {
                top: top as u32,
                left: left as u32,
                height: h as u32,
                width: w as u32,
            });
        }
        None
    }

    /// Erases a region of `values` (`[channels, height, width]`, row-major) in place.
    pub fn apply(
        &self,
        values: &mut [f32],
        [channels, height, width]: [usize; 3],
        draws: &mut impl Draws,
    ) {
        assert_eq!(
            values.len(),
            channels * height * width,
            "RandomErasing: values and shape differ"
        );
        let Some(region) = self.params(height as u32, width as u32, draws) else {
            return;
        };
        for channel in 0..channels {
            for row in region.top..region.top + region.height {
                let start = (channel * height + row as usize) * width + region.left as usize;
                values[start..start + region.width as usize].fill(self.value);
            }
        }
    }
}
