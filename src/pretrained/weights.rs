//! The pretrained weights torchvision publishes for the MobileNets, with the metadata its
//! `Weights` enums carry: where to download them, how to check them, what they score, and the
//! exact transform they were evaluated with.
//!
//! Every value here is checked against torchvision 0.29.2's own by
//! `tests/pretrained_tables.rs`, from the fixture `scripts/make_pretrained_fixtures.py` writes.

use super::imagenet_categories::IMAGENET_CATEGORIES;

/// ImageNet's per-channel mean, RGB, of pixels scaled to `[0, 1]`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation, RGB, of pixels scaled to `[0, 1]`.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The resampling filter of a resize, Pillow's (`Image.BILINEAR`, `Image.BICUBIC`), antialiased
/// when downscaling as Pillow's `resize` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResizeInterpolation {
    /// Triangle filter, support 1: torchvision's weights.
    Bilinear,
    /// Keys' cubic with `a = -0.5`, support 2: timm's MobileNetV4 weights.
    Bicubic,
}

/// The evaluation transform of a weights entry (torchvision's `ImageClassification`, timm's
/// `transforms_imagenet_eval` in its center-crop mode): resize the shorter side with Pillow's
/// antialiased filter, center-crop, scale to `[0, 1]`, normalize.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalTransform {
    /// Target length of the shorter side (timm: `floor(crop_size / crop_pct)`).
    pub resize_size: u32,
    /// Side of the square center crop.
    pub crop_size: u32,
    /// Per-channel mean subtracted after scaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
    /// The resize's filter: bilinear for torchvision's weights, bicubic for timm's.
    pub interpolation: ResizeInterpolation,
}

/// Everything known about one published checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightsInfo {
    /// torchvision's name of the entry, for example `IMAGENET1K_V2`.
    pub name: &'static str,
    /// Download URL.
    pub url: &'static str,
    /// The first hex digits of the file's SHA-256, as torchvision puts them in the file name.
    pub sha256_prefix: &'static str,
    /// Number of output classes.
    pub num_classes: usize,
    /// Class names, index for index with the logits.
    pub categories: &'static [&'static str],
    /// Top-1 accuracy on ImageNet-1k validation, percent, as torchvision reports it.
    pub acc1: f64,
    /// Top-5 accuracy on ImageNet-1k validation, percent.
    pub acc5: f64,
    /// Number of learned parameters.
    pub num_params: usize,
    /// The transform the accuracies were measured with.
    pub transform: EvalTransform,
}

impl WeightsInfo {
    /// The file name the weights are cached under: the last segment of the URL.
    pub fn file_name(&self) -> &'static str {
        url_file_name(self.url)
    }
}

/// The last segment of a weights URL, the name its file is cached under.
pub(crate) fn url_file_name(url: &'static str) -> &'static str {
    url.rsplit('/').next().unwrap_or(url)
}

const fn imagenet(resize_size: u32) -> EvalTransform {
    EvalTransform {
        resize_size,
        crop_size: 224,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        interpolation: ResizeInterpolation::Bilinear,
    }
}

/// Builds an ImageNet-1k entry; the SHA-256 prefix is the file name's suffix.
const fn entry(
    name: &'static str,
    url: &'static str,
    sha256_prefix: &'static str,
    (acc1, acc5): (f64, f64),
    num_params: usize,
    resize_size: u32,
) -> WeightsInfo {
    WeightsInfo {
        name,
        url,
        sha256_prefix,
        num_classes: 1000,
        categories: &IMAGENET_CATEGORIES,
        acc1,
        acc5,
        num_params,
        transform: imagenet(resize_size),
    }
}

/// torchvision's `MobileNet_V2_Weights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MobileNetV2Weights {
    /// The original recipe: acc@1 71.878.
    ImageNet1kV1,
    /// torchvision's improved recipe: acc@1 72.154.
    ImageNet1kV2,
}

impl MobileNetV2Weights {
    /// torchvision's `DEFAULT`.
    pub const DEFAULT: Self = Self::ImageNet1kV2;

    /// The entry's metadata.
    pub fn info(self) -> &'static WeightsInfo {
        const V1: WeightsInfo = entry(
            "IMAGENET1K_V1",
            "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
            "b0353104",
            (71.878, 90.286),
            3_504_872,
            256,
        );
        const V2: WeightsInfo = entry(
            "IMAGENET1K_V2",
            "https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth",
            "7ebf99e0",
            (72.154, 90.822),
            3_504_872,
            232,
        );
        match self {
            Self::ImageNet1kV1 => &V1,
            Self::ImageNet1kV2 => &V2,
        }
    }
}

/// torchvision's `MobileNet_V3_Large_Weights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MobileNetV3LargeWeights {
    /// The original recipe: acc@1 74.042.
    ImageNet1kV1,
    /// torchvision's improved recipe: acc@1 75.274.
    ImageNet1kV2,
}

impl MobileNetV3LargeWeights {
    /// torchvision's `DEFAULT`.
    pub const DEFAULT: Self = Self::ImageNet1kV2;

    /// The entry's metadata.
    pub fn info(self) -> &'static WeightsInfo {
        const V1: WeightsInfo = entry(
            "IMAGENET1K_V1",
            "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth",
            "8738ca79",
            (74.042, 91.34),
            5_483_032,
            256,
        );
        const V2: WeightsInfo = entry(
            "IMAGENET1K_V2",
            "https://download.pytorch.org/models/mobilenet_v3_large-5c1a4163.pth",
            "5c1a4163",
            (75.274, 92.566),
            5_483_032,
            232,
        );
        match self {
            Self::ImageNet1kV1 => &V1,
            Self::ImageNet1kV2 => &V2,
        }
    }
}

/// torchvision's `MobileNet_V3_Small_Weights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MobileNetV3SmallWeights {
    /// acc@1 67.668.
    ImageNet1kV1,
}

impl MobileNetV3SmallWeights {
    /// torchvision's `DEFAULT`.
    pub const DEFAULT: Self = Self::ImageNet1kV1;

    /// The entry's metadata.
    pub fn info(self) -> &'static WeightsInfo {
        const V1: WeightsInfo = entry(
            "IMAGENET1K_V1",
            "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth",
            "047dcff4",
            (67.668, 87.402),
            2_542_856,
            256,
        );
        match self {
            Self::ImageNet1kV1 => &V1,
        }
    }
}

/// Weights for either MobileNetV3, so that [`MobileNetV3::pretrained`](crate::MobileNetV3)
/// takes both; `From` converts each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MobileNetV3Weights {
    /// MobileNetV3-Large weights.
    Large(MobileNetV3LargeWeights),
    /// MobileNetV3-Small weights.
    Small(MobileNetV3SmallWeights),
}

impl MobileNetV3Weights {
    /// The entry's metadata.
    pub fn info(self) -> &'static WeightsInfo {
        match self {
            Self::Large(weights) => weights.info(),
            Self::Small(weights) => weights.info(),
        }
    }
}

impl From<MobileNetV3LargeWeights> for MobileNetV3Weights {
    fn from(weights: MobileNetV3LargeWeights) -> Self {
        Self::Large(weights)
    }
}

impl From<MobileNetV3SmallWeights> for MobileNetV3Weights {
    fn from(weights: MobileNetV3SmallWeights) -> Self {
        Self::Small(weights)
    }
}
