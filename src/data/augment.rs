//! torchvision's automatic augmentation policies on 8-bit RGB images, as the reference recipes
//! run them (on PIL images): [`TrivialAugmentWide`] and [`AutoAugment`] choose operations with
//! torchvision's sampling rules, and each [`AugmentOp`] computes what Pillow computes for
//! torchvision's `_apply_op` (same coordinate rules for the geometric ops, same blends,
//! lookup tables and rounding for the colour ops).

use image::{Rgb, RgbImage, imageops};

use super::transforms::Draws;

/// How the geometric operations sample the source image (`interpolation` of torchvision's
/// policies: `NEAREST` by default, `BILINEAR` in the reference training recipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interpolation {
    /// Pillow's `NEAREST`.
    #[default]
    Nearest,
    /// Pillow's `BILINEAR` for geometric transforms (a 2x2 neighbourhood, truncated to 8 bits).
    Bilinear,
}

/// One of the operations of torchvision's `_apply_op`. The magnitude's meaning depends on the
/// operation (see [`apply`](Self::apply)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AugmentOp {
    /// The image unchanged.
    Identity,
    /// Horizontal shear by `atan(magnitude)` about the top-left corner.
    ShearX,
    /// Vertical shear by `atan(magnitude)` about the top-left corner.
    ShearY,
    /// Horizontal shift by `int(magnitude)` pixels.
    TranslateX,
    /// Vertical shift by `int(magnitude)` pixels.
    TranslateY,
    /// Rotation by `magnitude` degrees counter-clockwise about the centre.
    Rotate,
    /// `ImageEnhance.Brightness` with factor `1 + magnitude`.
    Brightness,
    /// `ImageEnhance.Color` (saturation) with factor `1 + magnitude`.
    Color,
    /// `ImageEnhance.Contrast` with factor `1 + magnitude`.
    Contrast,
    /// `ImageEnhance.Sharpness` with factor `1 + magnitude`.
    Sharpness,
    /// Keeps the `int(magnitude)` high bits of each channel.
    Posterize,
    /// Inverts values at or above the threshold `magnitude`.
    Solarize,
    /// Stretches each channel to the full range.
    AutoContrast,
    /// Equalizes each channel's histogram.
    Equalize,
    /// `255 - value`.
    Invert,
}

impl AugmentOp {
    /// Every operation, in torchvision's `_apply_op` order.
    pub const ALL: [AugmentOp; 15] = [
        Self::ShearX,
        Self::ShearY,
        Self::TranslateX,
        Self::TranslateY,
        Self::Rotate,
        Self::Brightness,
        Self::Color,
        Self::Contrast,
        Self::Sharpness,
        Self::Posterize,
        Self::Solarize,
        Self::AutoContrast,
        Self::Equalize,
        Self::Invert,
        Self::Identity,
    ];

    /// torchvision's `_apply_op(img, op, magnitude, interpolation, fill=None)` on a PIL image:
    /// areas the geometric operations uncover are black.
    pub fn apply(self, image: &RgbImage, magnitude: f64, interpolation: Interpolation) -> RgbImage {
        let (width, height) = (f64::from(image.width()), f64::from(image.height()));
        match self {
            Self::Identity => image.clone(),
            Self::ShearX => {
                let shear = [magnitude.atan().to_degrees_py(), 0.0];
                let matrix = inverse_affine_matrix([0.0, 0.0], 0.0, [0.0, 0.0], 1.0, shear);
                affine(image, matrix, interpolation)
            }
            Self::ShearY => {
                let shear = [0.0, magnitude.atan().to_degrees_py()];
                let matrix = inverse_affine_matrix([0.0, 0.0], 0.0, [0.0, 0.0], 1.0, shear);
                affine(image, matrix, interpolation)
            }
            Self::TranslateX | Self::TranslateY => {
                // `int(magnitude)`: truncation toward zero.
                let shift = magnitude.trunc();
                let translate = if self == Self::TranslateX {
                    [shift, 0.0]
                } else {
                    [0.0, shift]
                };
                let center = [width * 0.5, height * 0.5];
                let matrix = inverse_affine_matrix(center, 0.0, translate, 1.0, [0.0, 0.0]);
                affine(image, matrix, interpolation)
            }
            Self::Rotate => rotate(image, magnitude, interpolation),
            Self::Brightness => {
                let black = RgbImage::new(image.width(), image.height());
                blend(&black, image, (1.0 + magnitude) as f32)
            }
            Self::Color => blend(&grayscale(image), image, (1.0 + magnitude) as f32),
            Self::Contrast => {
                let mean = mean_luminance(image);
                let grey = RgbImage::from_pixel(image.width(), image.height(), Rgb([mean; 3]));
                blend(&grey, image, (1.0 + magnitude) as f32)
            }
            Self::Sharpness => blend(&smooth(image), image, (1.0 + magnitude) as f32),
            Self::Posterize => {
                // `ImageOps.posterize(image, bits)`: `i & ~(2 ** (8 - bits) - 1)`.
                let bits = (magnitude.trunc() as i64).clamp(0, 8);
                let mask = !((1i64 << (8 - bits)) - 1);
                let lut: [u8; 256] = std::array::from_fn(|i| (i as i64 & mask) as u8);
                point(image, &[lut; 3])
            }
            Self::Solarize => {
                let lut: [u8; 256] = std::array::from_fn(|i| {
                    if (i as f64) < magnitude {
                        i as u8
                    } else {
                        255 - i as u8
                    }
                });
                point(image, &[lut; 3])
            }
            Self::AutoContrast => point(image, &histograms(image).map(|h| autocontrast_lut(&h))),
            Self::Equalize => point(image, &histograms(image).map(|h| equalize_lut(&h))),
            Self::Invert => {
                let lut: [u8; 256] = std::array::from_fn(|i| 255 - i as u8);
                point(image, &[lut; 3])
            }
        }
    }

    /// torchvision's name for the operation (`"ShearX"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "Identity",
            Self::ShearX => "ShearX",
            Self::ShearY => "ShearY",
            Self::TranslateX => "TranslateX",
            Self::TranslateY => "TranslateY",
            Self::Rotate => "Rotate",
            Self::Brightness => "Brightness",
            Self::Color => "Color",
            Self::Contrast => "Contrast",
            Self::Sharpness => "Sharpness",
            Self::Posterize => "Posterize",
            Self::Solarize => "Solarize",
            Self::AutoContrast => "AutoContrast",
            Self::Equalize => "Equalize",
            Self::Invert => "Invert",
        }
    }
}

/// Python's `math.degrees`: `x * (180 / pi)` (not Rust's `to_degrees`, which rounds
/// differently).
trait Degrees {
    fn to_degrees_py(self) -> f64;
}

impl Degrees for f64 {
    fn to_degrees_py(self) -> f64 {
        self * (180.0 / std::f64::consts::PI)
    }
}

/// Python's `math.radians`: `x * (pi / 180)`.
fn radians(degrees: f64) -> f64 {
    degrees * (std::f64::consts::PI / 180.0)
}

/// `torch.linspace(start, end, steps)` in float32, by its definition: from `start` up to the
/// middle, from `end` down after it.
fn linspace(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                start + step * i as f32
            } else {
                end - step * (steps - i - 1) as f32
            }
        })
        .collect()
}

/// The posterize magnitudes of torchvision's tables:
/// `8 - (arange(bins) / ((bins - 1) / levels)).round().int()`.
fn posterize_bits(bins: usize, levels: f32) -> Vec<f32> {
    let divisor = (bins - 1) as f32 / levels;
    (0..bins)
        .map(|i| 8.0 - (i as f32 / divisor).round_ties_even())
        .collect()
}

/// torchvision's `_get_inverse_affine_matrix` (the PIL branch of `F.affine`): the matrix
/// mapping output pixel coordinates to input coordinates.
fn inverse_affine_matrix(
    [cx, cy]: [f64; 2],
    angle: f64,
    [tx, ty]: [f64; 2],
    scale: f64,
    shear: [f64; 2],
) -> [f64; 6] {
    let rot = radians(angle);
    let sx = radians(shear[0]);
    let sy = radians(shear[1]);
    let a = (rot - sy).cos() / sy.cos();
    let b = -(rot - sy).cos() * sx.tan() / sy.cos() - rot.sin();
    let c = (rot - sy).sin() / sy.cos();
    let d = -(rot - sy).sin() * sx.tan() / sy.cos() + rot.cos();
    let mut m = [d, -b, 0.0, -c, a, 0.0].map(|x| x / scale);
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
    m[2] += cx;
    m[5] += cy;
    m
}

/// Python's float `%`: the result has the divisor's sign.
fn py_mod(x: f64, y: f64) -> f64 {
    let r = x % y;
    if r != 0.0 {
        if (y < 0.0) != (r < 0.0) { r + y } else { r }
    } else {
        0f64.copysign(y)
    }
}

/// `Image.rotate(angle, resample, expand=False, fillcolor=0)`: exact transposes for multiples
/// of 90 degrees that keep the size, else an affine transform about the centre.
fn rotate(image: &RgbImage, angle: f64, interpolation: Interpolation) -> RgbImage {
    let angle = py_mod(angle, 360.0);
    let square = image.width() == image.height();
    if angle == 0.0 {
        return image.clone();
    }
    if angle == 180.0 {
        return imageops::rotate180(image);
    }
    // Pillow's ROTATE_90 turns counter-clockwise.
    if angle == 90.0 && square {
        return imageops::rotate270(image);
    }
    if angle == 270.0 && square {
        return imageops::rotate90(image);
    }
    let (w, h) = (f64::from(image.width()), f64::from(image.height()));
    let center = (w / 2.0, h / 2.0);
    let angle = -radians(angle);
    let round15 = |x: f64| -> f64 { format!("{x:.15}").parse().unwrap_or(x) };
    let mut m = [
        round15(angle.cos()),
        round15(angle.sin()),
        0.0,
        round15(-angle.sin()),
        round15(angle.cos()),
        0.0,
    ];
    let (x, y) = (-center.0, -center.1);
    // `a x + b y + c` (addition commutes exactly, so `+=` is the same sum).
    m[2] += m[0] * x + m[1] * y;
    m[5] += m[3] * x + m[4] * y;
    m[2] += center.0;
    m[5] += center.1;
    affine(image, m, interpolation)
}

/// Pillow's `COORD`: -1 for negative coordinates, else truncation.
fn coord(v: f64) -> i64 {
    if v < 0.0 { -1 } else { v as i64 }
}

/// `Image.transform(size, AFFINE, matrix, resample, fillcolor=0)` at the image's own size:
/// output pixel `(x, y)` samples the input at `matrix · (x + 0.5, y + 0.5, 1)`, by Pillow's
/// three nearest-neighbour engines (scaling tables, 16.16 fixed point, floating point) or its
/// bilinear filter; pixels that fall outside stay black.
fn affine(image: &RgbImage, a: [f64; 6], interpolation: Interpolation) -> RgbImage {
    let (width, height) = (image.width() as i64, image.height() as i64);
    let mut out = RgbImage::new(image.width(), image.height());
    let inside = |x: i64, y: i64| x >= 0 && x < width && y >= 0 && y < height;
    match interpolation {
        Interpolation::Bilinear => {
            for y in 0..height {
                for x in 0..width {
                    let (xin, yin) = (x as f64 + 0.5, y as f64 + 0.5);
                    let xx = a[0] * xin + a[1] * yin + a[2];
                    let yy = a[3] * xin + a[4] * yin + a[5];
                    if let Some(pixel) = bilinear(image, xx, yy) {
                        out.put_pixel(x as u32, y as u32, pixel);
                    }
                }
            }
        }
        Interpolation::Nearest if a[1] == 0.0 && a[3] == 0.0 => {
            // ImagingScaleAffine: column table (0 where a column falls outside, as Pillow's
            // calloc leaves it), rows by an accumulated coordinate.
            let mut columns = vec![0i64; width as usize];
            let (mut xmin, mut xmax) = (width, 0);
            let mut xo = a[2] + a[0] * 0.5;
            for (x, column) in columns.iter_mut().enumerate() {
                let xin = coord(xo);
                if xin >= 0 && xin < width {
                    xmax = x as i64 + 1;
                    xmin = xmin.min(x as i64);
                    *column = xin;
                }
                xo += a[0];
            }
            let mut yo = a[5] + a[4] * 0.5;
            for y in 0..height {
                let yi = coord(yo);
                if yi >= 0 && yi < height {
                    for x in xmin..xmax {
                        let pixel = *image.get_pixel(columns[x as usize] as u32, yi as u32);
                        out.put_pixel(x as u32, y as u32, pixel);
                    }
                }
                yo += a[4];
            }
        }
        Interpolation::Nearest => {
            let fits = |x: i64, y: i64| {
                let (x, y) = (x as f64, y as f64);
                (x * a[0] + y * a[1] + a[2]).abs() < 32768.0
                    && (x * a[3] + y * a[4] + a[5]).abs() < 32768.0
            };
            if fits(0, 0) && fits(width, height) && fits(0, height) && fits(width, 0) {
                // affine_fixed: 16.16 fixed point, floor by arithmetic shift.
                let fix = |v: f64| (v * 65536.0 + 0.5).floor() as i32;
                let (a0, a1, a3, a4) = (fix(a[0]), fix(a[1]), fix(a[3]), fix(a[4]));
                let mut a2 = fix(a[2] + a[0] * 0.5 + a[1] * 0.5);
                let mut a5 = fix(a[5] + a[3] * 0.5 + a[4] * 0.5);
                for y in 0..height {
                    let (mut xx, mut yy) = (a2, a5);
                    for x in 0..width {
                        let (xin, yin) = (i64::from(xx >> 16), i64::from(yy >> 16));
                        if inside(xin, yin) {
                            let pixel = *image.get_pixel(xin as u32, yin as u32);
                            out.put_pixel(x as u32, y as u32, pixel);
                        }
                        xx = xx.wrapping_add(a0);
                        yy = yy.wrapping_add(a3);
                    }
                    a2 = a2.wrapping_add(a1);
                    a5 = a5.wrapping_add(a4);
                }
            } else {
                let mut xo = a[2] + a[1] * 0.5 + a[0] * 0.5;
                let mut yo = a[5] + a[4] * 0.5 + a[3] * 0.5;
                for y in 0..height {
                    let (mut xx, mut yy) = (xo, yo);
                    for x in 0..width {
                        let (xin, yin) = (coord(xx), coord(yy));
                        if inside(xin, yin) {
                            let pixel = *image.get_pixel(xin as u32, yin as u32);
                            out.put_pixel(x as u32, y as u32, pixel);
                        }
                        xx += a[0];
                        yy += a[3];
                    }
                    xo += a[1];
                    yo += a[4];
                }
            }
        }
    }
    out
}

/// Pillow's `bilinear_filter32RGB` at input coordinates `(xin, yin)`: `None` outside the
/// image; edges clamp; each band truncated to 8 bits.
fn bilinear(image: &RgbImage, xin: f64, yin: f64) -> Option<Rgb<u8>> {
    let (width, height) = (image.width() as i64, image.height() as i64);
    if xin < 0.0 || xin >= width as f64 || yin < 0.0 || yin >= height as f64 {
        return None;
    }
    let (xin, yin) = (xin - 0.5, yin - 0.5);
    let (x, y) = (xin.floor() as i64, yin.floor() as i64);
    let (dx, dy) = (xin - x as f64, yin - y as f64);
    let clip_x = |x: i64| x.clamp(0, width - 1) as u32;
    let (x0, x1) = (clip_x(x), clip_x(x + 1));
    let row = y.clamp(0, height - 1) as u32;
    let mut out = [0u8; 3];
    for (band, value) in out.iter_mut().enumerate() {
        let lerp = |a: u8, b: u8, d: f64| f64::from(a) + (f64::from(b) - f64::from(a)) * d;
        let at = |x: u32, y: u32| image.get_pixel(x, y).0[band];
        let v1 = lerp(at(x0, row), at(x1, row), dx);
        let v2 = if y + 1 >= 0 && y + 1 < height {
            let below = (y + 1) as u32;
            f64::from(at(x0, below)) + (f64::from(at(x1, below)) - f64::from(at(x0, below))) * dx
        } else {
            v1
        };
        *value = (v1 + (v2 - v1) * dy) as u8;
    }
    Some(Rgb(out))
}

/// `Image.blend(degenerate, image, alpha)` on 8-bit bands: `degenerate + alpha * (image -
/// degenerate)` in float32, truncated (clamped when extrapolating).
fn blend(degenerate: &RgbImage, image: &RgbImage, alpha: f32) -> RgbImage {
    if alpha == 0.0 {
        return degenerate.clone();
    }
    if alpha == 1.0 {
        return image.clone();
    }
    let mut out = image.clone();
    let pairs = out.iter_mut().zip(degenerate.iter().zip(image.iter()));
    for (out, (&d, &i)) in pairs {
        let value = f32::from(d) + alpha * (f32::from(i) - f32::from(d));
        *out = if (0.0..=1.0).contains(&alpha) {
            value as u8
        } else if value <= 0.0 {
            0
        } else if value >= 255.0 {
            255
        } else {
            value as u8
        };
    }
    out
}

/// Pillow's `RGB` to `L` conversion (ITU-R 601-2 luma in 16.16 fixed point).
fn luma([r, g, b]: [u8; 3]) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// `image.convert("L").convert("RGB")`.
fn grayscale(image: &RgbImage) -> RgbImage {
    let mut out = image.clone();
    for pixel in out.pixels_mut() {
        pixel.0 = [luma(pixel.0); 3];
    }
    out
}

/// `ImageEnhance.Contrast`'s grey level: `int(mean(L) + 0.5)`.
fn mean_luminance(image: &RgbImage) -> u8 {
    let mut histogram = [0u64; 256];
    for pixel in image.pixels() {
        histogram[usize::from(luma(pixel.0))] += 1;
    }
    let count: u64 = histogram.iter().sum();
    if count == 0 {
        return 0;
    }
    let sum = histogram
        .iter()
        .enumerate()
        .fold(0.0f64, |sum, (level, &n)| sum + (level as u64 * n) as f64);
    (sum / count as f64 + 0.5) as u8
}

/// `image.filter(ImageFilter.SMOOTH)`: the 3x3 kernel `[1 1 1; 1 5 1; 1 1 1] / 13` in float32
/// with Pillow's summation order and `+ 0.5` rounding; the border pixels are copied.
fn smooth(image: &RgbImage) -> RgbImage {
    let (width, height) = (image.width(), image.height());
    let mut out = image.clone();
    if width < 3 || height < 3 {
        return out;
    }
    let (side, centre) = (1.0f32 / 13.0, 5.0f32 / 13.0);
    let kernel = [side, side, side, side, centre, side, side, side, side];
    for y in 1..height - 1 {
        for x in 1..width - 1 {
            let mut pixel = [0u8; 3];
            for (band, value) in pixel.iter_mut().enumerate() {
                let at = |x: u32, y: u32| f32::from(image.get_pixel(x, y).0[band]);
                let row =
                    |y: u32, k: &[f32]| at(x - 1, y) * k[0] + at(x, y) * k[1] + at(x + 1, y) * k[2];
                let mut sum = 0.5f32;
                sum += row(y + 1, &kernel[0..3]);
                sum += row(y, &kernel[3..6]);
                sum += row(y - 1, &kernel[6..9]);
                *value = sum.clamp(0.0, 255.0) as u8;
            }
            out.put_pixel(x, y, Rgb(pixel));
        }
    }
    out
}

/// Per-band histograms.
fn histograms(image: &RgbImage) -> [[u64; 256]; 3] {
    let mut histograms = [[0u64; 256]; 3];
    for pixel in image.pixels() {
        for (band, &value) in pixel.0.iter().enumerate() {
            histograms[band][usize::from(value)] += 1;
        }
    }
    histograms
}

/// `image.point(lut)` with one table per band.
fn point(image: &RgbImage, luts: &[[u8; 256]; 3]) -> RgbImage {
    let mut out = image.clone();
    for pixel in out.pixels_mut() {
        for (band, value) in pixel.0.iter_mut().enumerate() {
            *value = luts[band][usize::from(*value)];
        }
    }
    out
}

/// `ImageOps.autocontrast`'s table for one band (no cutoff): `[lo, hi]` stretched to
/// `[0, 255]`, truncated.
fn autocontrast_lut(histogram: &[u64; 256]) -> [u8; 256] {
    let lo = histogram.iter().position(|&n| n > 0).unwrap_or(255);
    let hi = histogram.iter().rposition(|&n| n > 0).unwrap_or(0);
    if hi <= lo {
        return std::array::from_fn(|i| i as u8);
    }
    let scale = 255.0 / (hi - lo) as f64;
    let offset = -(lo as f64) * scale;
    std::array::from_fn(|i| ((i as f64 * scale + offset) as i64).clamp(0, 255) as u8)
}

/// `ImageOps.equalize`'s table for one band.
fn equalize_lut(histogram: &[u64; 256]) -> [u8; 256] {
    let used: Vec<u64> = histogram.iter().copied().filter(|&n| n > 0).collect();
    let identity = std::array::from_fn(|i| i as u8);
    if used.len() <= 1 {
        return identity;
    }
    let step = (used.iter().sum::<u64>() - used[used.len() - 1]) / 255;
    if step == 0 {
        return identity;
    }
    let mut n = step / 2;
    std::array::from_fn(|i| {
        let value = (n / step).min(255) as u8;
        n += histogram[i];
        value
    })
}

/// `transforms.TrivialAugmentWide(num_magnitude_bins=31, interpolation)`: one operation drawn
/// uniformly from fourteen, at a magnitude drawn uniformly from its bins, negated half of the
/// time for the signed ones.
#[derive(Debug, Clone, PartialEq)]
pub struct TrivialAugmentWide {
    /// Number of magnitude levels (31).
    pub num_magnitude_bins: usize,
    /// Sampling of the geometric operations.
    pub interpolation: Interpolation,
}

impl Default for TrivialAugmentWide {
    fn default() -> Self {
        Self {
            num_magnitude_bins: 31,
            interpolation: Interpolation::Nearest,
        }
    }
}

/// An operation's magnitudes (none for the parameterless ones) and whether they are signed.
type Space = Vec<(AugmentOp, Vec<f32>, bool)>;

impl TrivialAugmentWide {
    /// The augmentation space in torchvision's order: each operation with its magnitude bins
    /// and whether a random sign applies.
    pub fn space(&self) -> Space {
        let bins = self.num_magnitude_bins.max(2);
        let level = |end: f32| linspace(0.0, end, bins);
        vec![
            (AugmentOp::Identity, vec![], false),
            (AugmentOp::ShearX, level(0.99), true),
            (AugmentOp::ShearY, level(0.99), true),
            (AugmentOp::TranslateX, level(32.0), true),
            (AugmentOp::TranslateY, level(32.0), true),
            (AugmentOp::Rotate, level(135.0), true),
            (AugmentOp::Brightness, level(0.99), true),
            (AugmentOp::Color, level(0.99), true),
            (AugmentOp::Contrast, level(0.99), true),
            (AugmentOp::Sharpness, level(0.99), true),
            (AugmentOp::Posterize, posterize_bits(bins, 6.0), false),
            (AugmentOp::Solarize, linspace(255.0, 0.0, bins), false),
            (AugmentOp::AutoContrast, vec![], false),
            (AugmentOp::Equalize, vec![], false),
        ]
    }

    /// The operation and magnitude, drawn as torchvision draws them: `randint(14)`, then
    /// `randint(bins)` for operations with magnitudes, then `randint(2)` for signed ones.
    pub fn params(&self, draws: &mut impl Draws) -> (AugmentOp, f64) {
        let space = self.space();
        let (op, magnitudes, signed) = &space[draws.randint(0, space.len() as i64) as usize];
        let mut magnitude = if magnitudes.is_empty() {
            0.0
        } else {
            f64::from(magnitudes[draws.randint(0, magnitudes.len() as i64) as usize])
        };
        if *signed && draws.randint(0, 2) != 0 {
            magnitude = -magnitude;
        }
        (*op, magnitude)
    }

    /// The augmented image.
    pub fn apply(&self, image: &RgbImage, draws: &mut impl Draws) -> RgbImage {
        let (op, magnitude) = self.params(draws);
        op.apply(image, magnitude, self.interpolation)
    }
}

/// Which of AutoAugment's learned policies to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoAugmentPolicy {
    /// The ImageNet policy (the reference recipe's `--auto-augment imagenet`).
    #[default]
    ImageNet,
    /// The CIFAR-10 policy.
    Cifar10,
    /// The SVHN policy.
    Svhn,
}

/// One step of a sub-policy: operation, probability, magnitude bin.
type Step = (AugmentOp, f32, Option<usize>);

impl AutoAugmentPolicy {
    /// The 25 sub-policies of two steps each, as torchvision lists them.
    pub fn sub_policies(self) -> &'static [[Step; 2]] {
        use AugmentOp::*;
        match self {
            Self::ImageNet => &[
                [(Posterize, 0.4, Some(8)), (Rotate, 0.6, Some(9))],
                [(Solarize, 0.6, Some(5)), (AutoContrast, 0.6, None)],
                [(Equalize, 0.8, None), (Equalize, 0.6, None)],
                [(Posterize, 0.6, Some(7)), (Posterize, 0.6, Some(6))],
                [(Equalize, 0.4, None), (Solarize, 0.2, Some(4))],
                [(Equalize, 0.4, None), (Rotate, 0.8, Some(8))],
                [(Solarize, 0.6, Some(3)), (Equalize, 0.6, None)],
                [(Posterize, 0.8, Some(5)), (Equalize, 1.0, None)],
                [(Rotate, 0.2, Some(3)), (Solarize, 0.6, Some(8))],
                [(Equalize, 0.6, None), (Posterize, 0.4, Some(6))],
                [(Rotate, 0.8, Some(8)), (Color, 0.4, Some(0))],
                [(Rotate, 0.4, Some(9)), (Equalize, 0.6, None)],
                [(Equalize, 0.0, None), (Equalize, 0.8, None)],
                [(Invert, 0.6, None), (Equalize, 1.0, None)],
                [(Color, 0.6, Some(4)), (Contrast, 1.0, Some(8))],
                [(Rotate, 0.8, Some(8)), (Color, 1.0, Some(2))],
                [(Color, 0.8, Some(8)), (Solarize, 0.8, Some(7))],
                [(Sharpness, 0.4, Some(7)), (Invert, 0.6, None)],
                [(ShearX, 0.6, Some(5)), (Equalize, 1.0, None)],
                [(Color, 0.4, Some(0)), (Equalize, 0.6, None)],
                [(Equalize, 0.4, None), (Solarize, 0.2, Some(4))],
                [(Solarize, 0.6, Some(5)), (AutoContrast, 0.6, None)],
                [(Invert, 0.6, None), (Equalize, 1.0, None)],
                [(Color, 0.6, Some(4)), (Contrast, 1.0, Some(8))],
                [(Equalize, 0.8, None), (Equalize, 0.6, None)],
            ],
            Self::Cifar10 => &[
                [(Invert, 0.1, None), (Contrast, 0.2, Some(6))],
                [(Rotate, 0.7, Some(2)), (TranslateX, 0.3, Some(9))],
                [(Sharpness, 0.8, Some(1)), (Sharpness, 0.9, Some(3))],
                [(ShearY, 0.5, Some(8)), (TranslateY, 0.7, Some(9))],
                [(AutoContrast, 0.5, None), (Equalize, 0.9, None)],
                [(ShearY, 0.2, Some(7)), (Posterize, 0.3, Some(7))],
                [(Color, 0.4, Some(3)), (Brightness, 0.6, Some(7))],
                [(Sharpness, 0.3, Some(9)), (Brightness, 0.7, Some(9))],
                [(Equalize, 0.6, None), (Equalize, 0.5, None)],
                [(Contrast, 0.6, Some(7)), (Sharpness, 0.6, Some(5))],
                [(Color, 0.7, Some(7)), (TranslateX, 0.5, Some(8))],
                [(Equalize, 0.3, None), (AutoContrast, 0.4, None)],
                [(TranslateY, 0.4, Some(3)), (Sharpness, 0.2, Some(6))],
                [(Brightness, 0.9, Some(6)), (Color, 0.2, Some(8))],
                [(Solarize, 0.5, Some(2)), (Invert, 0.0, None)],
                [(Equalize, 0.2, None), (AutoContrast, 0.6, None)],
                [(Equalize, 0.2, None), (Equalize, 0.6, None)],
                [(Color, 0.9, Some(9)), (Equalize, 0.6, None)],
                [(AutoContrast, 0.8, None), (Solarize, 0.2, Some(8))],
                [(Brightness, 0.1, Some(3)), (Color, 0.7, Some(0))],
                [(Solarize, 0.4, Some(5)), (AutoContrast, 0.9, None)],
                [(TranslateY, 0.9, Some(9)), (TranslateY, 0.7, Some(9))],
                [(AutoContrast, 0.9, None), (Solarize, 0.8, Some(3))],
                [(Equalize, 0.8, None), (Invert, 0.1, None)],
                [(TranslateY, 0.7, Some(9)), (AutoContrast, 0.9, None)],
            ],
            Self::Svhn => &[
                [(ShearX, 0.9, Some(4)), (Invert, 0.2, None)],
                [(ShearY, 0.9, Some(8)), (Invert, 0.7, None)],
                [(Equalize, 0.6, None), (Solarize, 0.6, Some(6))],
                [(Invert, 0.9, None), (Equalize, 0.6, None)],
                [(Equalize, 0.6, None), (Rotate, 0.9, Some(3))],
                [(ShearX, 0.9, Some(4)), (AutoContrast, 0.8, None)],
                [(ShearY, 0.9, Some(8)), (Invert, 0.4, None)],
                [(ShearY, 0.9, Some(5)), (Solarize, 0.2, Some(6))],
                [(Invert, 0.9, None), (AutoContrast, 0.8, None)],
                [(Equalize, 0.6, None), (Rotate, 0.9, Some(3))],
                [(ShearX, 0.9, Some(4)), (Solarize, 0.3, Some(3))],
                [(ShearY, 0.8, Some(8)), (Invert, 0.7, None)],
                [(Equalize, 0.9, None), (TranslateY, 0.6, Some(6))],
                [(Invert, 0.9, None), (Equalize, 0.6, None)],
                [(Contrast, 0.3, Some(3)), (Rotate, 0.8, Some(4))],
                [(Invert, 0.8, None), (TranslateY, 0.0, Some(2))],
                [(ShearY, 0.7, Some(6)), (Solarize, 0.4, Some(8))],
                [(Invert, 0.6, None), (Rotate, 0.8, Some(4))],
                [(ShearY, 0.3, Some(7)), (TranslateX, 0.9, Some(3))],
                [(ShearX, 0.1, Some(6)), (Invert, 0.6, None)],
                [(Solarize, 0.7, Some(2)), (TranslateY, 0.6, Some(7))],
                [(ShearY, 0.8, Some(4)), (Invert, 0.8, None)],
                [(ShearX, 0.7, Some(9)), (TranslateY, 0.8, Some(3))],
                [(ShearY, 0.8, Some(5)), (AutoContrast, 0.7, None)],
                [(ShearX, 0.7, Some(2)), (Invert, 0.1, None)],
            ],
        }
    }
}

/// `transforms.AutoAugment(policy, interpolation)`: one of the policy's 25 sub-policies drawn
/// uniformly; each of its two steps applied with its probability, at its fixed magnitude bin
/// (of ten) with a random sign.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AutoAugment {
    /// The learned policy.
    pub policy: AutoAugmentPolicy,
    /// Sampling of the geometric operations.
    pub interpolation: Interpolation,
}

impl AutoAugment {
    /// The magnitude of `op` at bin `bin` (of ten) for a `width x height` image, unsigned, with
    /// whether a sign applies (torchvision's `_augmentation_space(10, (height, width))`).
    pub fn magnitude(op: AugmentOp, bin: usize, width: u32, height: u32) -> (f64, bool) {
        const BINS: usize = 10;
        let level = |end: f32| f64::from(linspace(0.0, end, BINS)[bin.min(BINS - 1)]);
        match op {
            AugmentOp::ShearX | AugmentOp::ShearY => (level(0.3), true),
            // `150 / 331 * size` in double, then a float32 tensor.
            AugmentOp::TranslateX => (level((150.0 / 331.0 * f64::from(width)) as f32), true),
            AugmentOp::TranslateY => (level((150.0 / 331.0 * f64::from(height)) as f32), true),
            AugmentOp::Rotate => (level(30.0), true),
            AugmentOp::Brightness
            | AugmentOp::Color
            | AugmentOp::Contrast
            | AugmentOp::Sharpness => (level(0.9), true),
            AugmentOp::Posterize => (
                f64::from(posterize_bits(BINS, 4.0)[bin.min(BINS - 1)]),
                false,
            ),
            AugmentOp::Solarize => (
                f64::from(linspace(255.0, 0.0, BINS)[bin.min(BINS - 1)]),
                false,
            ),
            AugmentOp::Identity
            | AugmentOp::AutoContrast
            | AugmentOp::Equalize
            | AugmentOp::Invert => (0.0, false),
        }
    }

    /// The operations to apply, in order, with their magnitudes, drawn as torchvision draws
    /// them: `randint(25)`, `rand((2,))`, `randint(2, (2,))`; a step applies when its draw is
    /// at most its probability, and a signed magnitude is negated when its sign draw is 0.
    pub fn params(&self, width: u32, height: u32, draws: &mut impl Draws) -> Vec<(AugmentOp, f64)> {
        let policies = self.policy.sub_policies();
        let policy = &policies[draws.randint(0, policies.len() as i64) as usize];
        let probs = [draws.rand(), draws.rand()];
        let signs = [draws.randint(0, 2), draws.randint(0, 2)];
        let mut ops = Vec::new();
        for (i, &(op, p, bin)) in policy.iter().enumerate() {
            if probs[i] <= p {
                let (mut magnitude, signed) = match bin {
                    Some(bin) => Self::magnitude(op, bin, width, height),
                    None => (0.0, false),
                };
                if signed && signs[i] == 0 {
                    magnitude = -magnitude;
                }
                ops.push((op, magnitude));
            }
        }
        ops
    }

    /// The augmented image.
    pub fn apply(&self, image: &RgbImage, draws: &mut impl Draws) -> RgbImage {
        let ops = self.params(image.width(), image.height(), draws);
        ops.into_iter()
            .fold(image.clone(), |image, (op, magnitude)| {
                op.apply(&image, magnitude, self.interpolation)
            })
    }
}

/// The automatic augmentation of a training recipe (torchvision's `--auto-augment`).
#[derive(Debug, Clone, PartialEq)]
pub enum AutoAugmentation {
    /// `ta_wide`.
    TrivialAugmentWide(TrivialAugmentWide),
    /// `imagenet`, `cifar10` or `svhn`.
    AutoAugment(AutoAugment),
}

impl AutoAugmentation {
    /// The augmented image.
    pub fn apply(&self, image: &RgbImage, draws: &mut impl Draws) -> RgbImage {
        match self {
            Self::TrivialAugmentWide(augment) => augment.apply(image, draws),
            Self::AutoAugment(augment) => augment.apply(image, draws),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_and_posterize_tables_follow_torch() {
        assert_eq!(linspace(0.0, 135.0, 31)[20], 90.0);
        assert_eq!(linspace(255.0, 0.0, 31)[20], 85.0);
        let bits = posterize_bits(31, 6.0);
        assert_eq!(bits[0], 8.0);
        assert_eq!(bits[30], 2.0);
        assert_eq!(bits[12], 6.0);
        // AutoAugment's: 8 - round(i / 2.25); 4.5 / 2.25 = 2 exactly, 5.0 / 2.25 rounds to 2.
        assert_eq!(
            posterize_bits(10, 4.0),
            [8.0, 8.0, 7.0, 7.0, 6.0, 6.0, 5.0, 5.0, 4.0, 4.0]
        );
    }

    #[test]
    fn python_modulo_takes_the_divisors_sign() {
        assert_eq!(py_mod(-90.0, 360.0), 270.0);
        assert_eq!(py_mod(450.0, 360.0), 90.0);
        assert!(py_mod(-0.0, 360.0).is_sign_positive());
    }
}
