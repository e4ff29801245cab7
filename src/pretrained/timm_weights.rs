//! The ImageNet-1k checkpoints timm publishes for MobileNetV4, with the metadata of timm's
//! `pretrained_cfg`: where the file is, what it scores, and the evaluation transform (bicubic,
//! `crop_pct`). Every value is checked against timm 1.0.31's own by `tests/pretrained_tables.rs`,
//! from the fixture `scripts/make_v4_meta.py` writes (top-1 and top-5 from timm's
//! `results/results-imagenet.csv`).
//!
//! The files' SHA-256 is not recorded: timm's code carries none, and the Hugging Face hub, which
//! has them, was out of reach where this crate is built. [`MobileNetV4::pretrained`] therefore
//! checks a download by loading it strictly (every key and shape must be the architecture's)
//! rather than by hash; pass the hub's hash to [`MobileNetV4::pretrained_with_sha256`] to have
//! it checked as well.

use std::path::Path;

use burn::tensor::Device;

use super::download::WeightsCache;
use super::imagenet_categories::IMAGENET_CATEGORIES;
use super::weights::{EvalTransform, IMAGENET_MEAN, IMAGENET_STD, ResizeInterpolation};
use crate::{Error, MobileNetV4, MobileNetV4Config};

/// timm's `IMAGENET_INCEPTION_MEAN`: 0.5 for every channel.
pub const INCEPTION_MEAN: [f32; 3] = [0.5, 0.5, 0.5];
/// timm's `IMAGENET_INCEPTION_STD`: 0.5 for every channel.
pub const INCEPTION_STD: [f32; 3] = [0.5, 0.5, 0.5];

/// Everything known about one of timm's published checkpoints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimmWeightsInfo {
    /// timm's name, `architecture.tag`, for example `mobilenetv4_conv_small.e2400_r224_in1k`.
    pub name: &'static str,
    /// timm's architecture, for example `mobilenetv4_conv_small`.
    pub architecture: &'static str,
    /// Download URL: the `model.safetensors` of the Hugging Face hub repository `timm/{name}`.
    pub url: &'static str,
    /// The name the file is cached under, `{name}.safetensors` (every hub file is called
    /// `model.safetensors`).
    pub file_name: &'static str,
    /// The file's SHA-256 (hex), where known; `None` for every entry today (see the module
    /// documentation).
    pub sha256: Option<&'static str>,
    /// Number of output classes.
    pub num_classes: usize,
    /// Class names, index for index with the logits.
    pub categories: &'static [&'static str],
    /// Top-1 accuracy on ImageNet-1k validation, percent, with [`transform`](Self::transform),
    /// as timm's results table reports it.
    pub acc1: f64,
    /// Top-5 accuracy, percent, with [`transform`](Self::transform).
    pub acc5: f64,
    /// Top-1 and top-5 with [`test_transform`](Self::test_transform), where timm has one.
    pub test_acc: Option<(f64, f64)>,
    /// Number of learned parameters.
    pub num_params: usize,
    /// timm's `crop_pct` of [`transform`](Self::transform): the crop over the resized shorter
    /// side.
    pub crop_pct: f64,
    /// The evaluation transform at the training size (timm's `input_size`, `crop_pct`).
    pub transform: EvalTransform,
    /// The transform at timm's `test_input_size` and `test_crop_pct`, where it has one (larger
    /// inputs score higher; see [`test_acc`](Self::test_acc)).
    pub test_transform: Option<EvalTransform>,
}

/// A bicubic transform of timm's: resize the shorter side to `resize_size`
/// (`floor(crop_size / crop_pct)`), crop `crop_size`.
const fn bicubic(resize_size: u32, crop_size: u32, mean: [f32; 3], std: [f32; 3]) -> EvalTransform {
    EvalTransform {
        resize_size,
        crop_size,
        mean,
        std,
        interpolation: ResizeInterpolation::Bicubic,
    }
}

/// One entry: the URL and cache name follow from the name.
macro_rules! timm_entry {
    (
        $architecture:literal, $tag:literal, ($acc1:expr, $acc5:expr), $test_acc:expr,
        $num_params:expr,
        bicubic($resize:expr, $crop:expr, $crop_pct:expr, $mean:expr, $std:expr),
        $test_transform:expr $(,)?
    ) => {
        TimmWeightsInfo {
            name: concat!($architecture, ".", $tag),
            architecture: $architecture,
            url: concat!(
                "https://huggingface.co/timm/",
                $architecture,
                ".",
                $tag,
                "/resolve/main/model.safetensors"
            ),
            file_name: concat!($architecture, ".", $tag, ".safetensors"),
            sha256: None,
            num_classes: 1000,
            categories: &IMAGENET_CATEGORIES,
            acc1: $acc1,
            acc5: $acc5,
            test_acc: $test_acc,
            num_params: $num_params,
            crop_pct: $crop_pct,
            transform: bicubic($resize, $crop, $mean, $std),
            test_transform: $test_transform,
        }
    };
}

/// The ImageNet-1k checkpoints timm 1.0.31 publishes for the five MobileNetV4 models (the
/// `in1k` tags, and `in12k_ft_in1k`: pretrained on ImageNet-12k, fine-tuned on 1k).
///
/// ```
/// use mobilenet_burn::pretrained::{ResizeInterpolation, MobileNetV4Weights};
///
/// let info = MobileNetV4Weights::ConvSmallE2400R224In1k.info();
/// assert_eq!(info.name, "mobilenetv4_conv_small.e2400_r224_in1k");
/// assert_eq!((info.acc1, info.num_params), (73.756, 3_774_024));
/// // timm's eval transform: bicubic resize of the shorter side to 224 / 0.875, crop 224.
/// assert_eq!((info.transform.resize_size, info.transform.crop_size), (256, 224));
/// assert_eq!(info.transform.interpolation, ResizeInterpolation::Bicubic);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MobileNetV4Weights {
    /// timm's `mobilenetv4_conv_small.e1200_r224_in1k`: top-1 73.45 at 224x224.
    ConvSmallE1200R224In1k,
    /// timm's `mobilenetv4_conv_small.e2400_r224_in1k`: top-1 73.756 at 224x224.
    ConvSmallE2400R224In1k,
    /// timm's `mobilenetv4_conv_small.e3600_r256_in1k`: top-1 74.534 at 256x256.
    ConvSmallE3600R256In1k,
    /// timm's `mobilenetv4_conv_medium.e250_r384_in12k_ft_in1k`: top-1 82.776 at 384x384.
    ConvMediumE250R384In12kFtIn1k,
    /// timm's `mobilenetv4_conv_medium.e500_r224_in1k`: top-1 79.092 at 224x224.
    ConvMediumE500R224In1k,
    /// timm's `mobilenetv4_conv_medium.e500_r256_in1k`: top-1 79.916 at 256x256.
    ConvMediumE500R256In1k,
    /// timm's `mobilenetv4_conv_large.e500_r256_in1k`: top-1 81.864 at 256x256.
    ConvLargeE500R256In1k,
    /// timm's `mobilenetv4_conv_large.e600_r384_in1k`: top-1 82.974 at 384x384.
    ConvLargeE600R384In1k,
    /// timm's `mobilenetv4_hybrid_medium.e200_r256_in12k_ft_in1k`: top-1 82.36 at 256x256.
    HybridMediumE200R256In12kFtIn1k,
    /// timm's `mobilenetv4_hybrid_medium.e500_r224_in1k`: top-1 80.432 at 224x224.
    HybridMediumE500R224In1k,
    /// timm's `mobilenetv4_hybrid_medium.ix_e550_r256_in1k`: top-1 81.478 at 256x256.
    HybridMediumIxE550R256In1k,
    /// timm's `mobilenetv4_hybrid_medium.ix_e550_r384_in1k`: top-1 82.952 at 384x384.
    HybridMediumIxE550R384In1k,
    /// timm's `mobilenetv4_hybrid_large.e600_r384_in1k`: top-1 83.826 at 384x384.
    HybridLargeE600R384In1k,
    /// timm's `mobilenetv4_hybrid_large.ix_e600_r384_in1k`: top-1 83.996 at 384x384.
    HybridLargeIxE600R384In1k,
}

impl MobileNetV4Weights {
    /// Every entry, smallest model first, each model's tags in timm's order (its default, what
    /// `timm.create_model(name, pretrained=True)` loads, first).
    pub const ALL: [Self; 14] = [
        Self::ConvSmallE2400R224In1k,
        Self::ConvSmallE1200R224In1k,
        Self::ConvSmallE3600R256In1k,
        Self::ConvMediumE500R256In1k,
        Self::ConvMediumE500R224In1k,
        Self::ConvMediumE250R384In12kFtIn1k,
        Self::ConvLargeE600R384In1k,
        Self::ConvLargeE500R256In1k,
        Self::HybridMediumE200R256In12kFtIn1k,
        Self::HybridMediumIxE550R256In1k,
        Self::HybridMediumIxE550R384In1k,
        Self::HybridMediumE500R224In1k,
        Self::HybridLargeIxE600R384In1k,
        Self::HybridLargeE600R384In1k,
    ];

    /// The entry's metadata.
    pub fn info(self) -> &'static TimmWeightsInfo {
        match self {
            Self::ConvSmallE1200R224In1k => {
                const ENTRY: TimmWeightsInfo = timm_entry!(
                    "mobilenetv4_conv_small",
                    "e1200_r224_in1k",
                    (73.45, 91.34),
                    Some((74.282, 92.122)),
                    3774024,
                    bicubic(256, 224, 0.875, IMAGENET_MEAN, IMAGENET_STD),
                    Some(bicubic(269, 256, IMAGENET_MEAN, IMAGENET_STD))
                );
                &ENTRY
            }
            Self::ConvSmallE2400R224In1k => {
                const ENTRY: TimmWeightsInfo = timm_entry!(
                    "mobilenetv4_conv_small",
                    "e2400_r224_in1k",
                    (73.756, 91.43),
                    Some((74.644, 92.022)),
                    3774024,
                    bicubic(256, 224, 0.875, IMAGENET_MEAN, IMAGENET_STD),
                    Some(bicubic(269, 256, IMAGENET_MEAN, IMAGENET_STD))
                );
                &ENTRY
            }
            Self::ConvSmallE3600R256In1k => {
                const ENTRY: TimmWeightsInfo = timm_entry!(
                    "mobilenetv4_conv_small",
                    "e3600_r256_in1k",
                    (74.534, 91.94),
                    Some((75.616, 92.768)),
                    3774024,
                    bicubic(269, 256, 0.95, INCEPTION_MEAN, INCEPTION_STD),
                    Some(bicubic(320, 320, INCEPTION_MEAN, INCEPTION_STD))
                );
                &ENTRY
            }
            Self::ConvMediumE250R384In12kFtIn1k => {
                const ENTRY: TimmWeightsInfo = timm_entry!(
                    "mobilenetv4_conv_medium",
                    "e250_r384_in12k_ft_in1k",
                    (82.776, 96.448),
                    None,
                    9715512,
                    bicubic(404, 384, 0.95, IMAGENET_MEAN, IMAGENET_STD),
                    None
                );
                &ENTRY
            }
            Self::ConvMediumE500R224In1k => {
                const ENTRY: TimmWeightsInfo = timm_entry!(
                    "mobilenetv4_conv_medium",
                    "e500_r224_in1k",
                    (79.092, 94.788),
                    Some((79.836, 95.192)),
                    9715512,
                    bicubic(235, 224, 0.95, IMAGENET_MEAN, IMAGENET_STD),
                    Some(bicubic(256, 256, IMAGENET_MEAN, IMAGENET_STD))
                );
                &ENTRY
            }
            Self::ConvMediumE500R256In1k => {
                const ENTRY: TimmWeightsInfo = timm_entry!(
                    "mobilenetv4_conv_medium",
                    "e500_r256_in1k",
                    (79.916, 95.188),
                    Some((80.89, 95.75)),
                    9715512,
                    bicubic(269, 256, 0.95, IMAGENET_MEAN, IMAGENET_STD),
                    Some(bicubic(320, 320, IMAGENET_MEAN, IMAGENET_STD))
                );
                &ENTRY
            }
            Self::ConvLargeE500R256In1k => {
                const ENTRY: TimmWeightsInfo = timm_entry!(
                    "mobilenetv4_conv_large",
                    "e500_r256_in1k",
                    (81.864, 95.696),
                    Some((82.672, 96.31)),
                    32590864,
                    bicubic(269, 256, 0.95, IMAGENET_MEAN, IMAGENET_STD),
                    Some(bicubic(320, 320, IMAGENET_MEAN, IMAGENET_STD))
                );
                &ENTRY
            }
            Self::ConvLargeE600R384In1k => {
                const ENTRY: TimmWeightsInfo = timm_entry!(
                    "mobilenetv4_conv_large",
                    "e600_r384_in1k",
                    (82.974, 96.244),
                    Some((83.418, 96.612)),
                    32590864,
                    bicubic(404, 384, 0.95, IMAGENET_MEAN, IMAGENET_STD),
                    Some(bicubic(448, 448, IMAGENET_MEAN, IMAGENET_STD))
                );
                &ENTRY
            }
            Self::HybridMediumE200R256In12kFtIn1k => {
                const ENTRY: TimmWeightsInfo = timm_entry!(
                    "mobilenetv4_hybrid_medium",
                    "e200_r256_in12k_ft_in1k",
                    (82.36, 96.256),
                    Some((82.998, 96.676)),
                    11074648,
                    bicubic(269, 256, 0.95, IMAGENET_MEAN, IMAGENET_STD),
                    Some(bicubic(320, 320, IMAGENET_MEAN, IMAGENET_STD))
                );
                &ENTRY
            }
            Self::HybridMediumE500R224In1k => {
                const ENTRY: TimmWeightsInfo = timm_entry!(
                    "mobilenetv4_hybrid_medium",
                    "e500_r224_in1k",
                    (80.432, 95.378),
                    Some((81.284, 95.746)),
                    11074648,
                    bicubic(235, 224, 0.95, IMAGENET_MEAN, IMAGENET_STD),
                    Some(bicubic(256, 256, IMAGENET_MEAN, IMAGENET_STD))
                );
                &ENTRY
            }
            Self::HybridMediumIxE550R256In1k => {
                const ENTRY: TimmWeightsInfo = timm_entry!(
                    "mobilenetv4_hybrid_medium",
                    "ix_e550_r256_in1k",
                    (81.478, 95.692),
                    Some((82.5, 96.286)),
                    11074648,
                    bicubic(269, 256, 0.95, IMAGENET_MEAN, IMAGENET_STD),
                    Some(bicubic(320, 320, IMAGENET_MEAN, IMAGENET_STD))
                );
                &ENTRY
            }
            Self::HybridMediumIxE550R384In1k => {
                const ENTRY: TimmWeightsInfo = timm_entry!(
                    "mobilenetv4_hybrid_medium",
                    "ix_e550_r384_in1k",
                    (82.952, 96.47),
                    Some((83.39, 96.766)),
                    11074648,
                    bicubic(404, 384, 0.95, IMAGENET_MEAN, IMAGENET_STD),
                    Some(bicubic(448, 448, IMAGENET_MEAN, IMAGENET_STD))
                );
                &ENTRY
            }
            Self::HybridLargeE600R384In1k => {
                const ENTRY: TimmWeightsInfo = timm_entry!(
                    "mobilenetv4_hybrid_large",
                    "e600_r384_in1k",
                    (83.826, 96.748),
                    Some((84.264, 96.956)),
                    37764624,
                    bicubic(404, 384, 0.95, IMAGENET_MEAN, IMAGENET_STD),
                    Some(bicubic(448, 448, IMAGENET_MEAN, IMAGENET_STD))
                );
                &ENTRY
            }
            Self::HybridLargeIxE600R384In1k => {
                const ENTRY: TimmWeightsInfo = timm_entry!(
                    "mobilenetv4_hybrid_large",
                    "ix_e600_r384_in1k",
                    (83.996, 96.714),
                    Some((84.352, 96.888)),
                    37764624,
                    bicubic(404, 384, 0.95, IMAGENET_MEAN, IMAGENET_STD),
                    Some(bicubic(448, 448, IMAGENET_MEAN, IMAGENET_STD))
                );
                &ENTRY
            }
        }
    }

    /// timm's default checkpoint of an architecture (`mobilenetv4_conv_small`, ...), or `None`
    /// for a name that is not one of the five.
    ///
    /// ```
    /// use mobilenet_burn::pretrained::MobileNetV4Weights;
    ///
    /// let weights = MobileNetV4Weights::default_for("mobilenetv4_conv_small").unwrap();
    /// assert_eq!(weights, MobileNetV4Weights::ConvSmallE2400R224In1k);
    /// assert!(MobileNetV4Weights::default_for("mobilenetv4_tiny").is_none());
    /// ```
    pub fn default_for(architecture: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|weights| weights.info().architecture == architecture)
    }

    /// The configuration of the entry's model: its architecture, with its number of classes.
    ///
    /// ```
    /// use mobilenet_burn::pretrained::MobileNetV4Weights;
    ///
    /// let config = MobileNetV4Weights::HybridMediumE500R224In1k.config();
    /// assert_eq!(config.num_classes, 1000);
    /// assert!(config.layer_scale.is_some());
    /// ```
    pub fn config(self) -> MobileNetV4Config {
        let info = self.info();
        let config = match info.architecture {
            "mobilenetv4_conv_small" => MobileNetV4Config::conv_small(),
            "mobilenetv4_conv_medium" => MobileNetV4Config::conv_medium(),
            "mobilenetv4_conv_large" => MobileNetV4Config::conv_large(),
            "mobilenetv4_hybrid_medium" => MobileNetV4Config::hybrid_medium(),
            _ => MobileNetV4Config::hybrid_large(),
        };
        config.with_num_classes(info.num_classes)
    }
}

impl MobileNetV4 {
    /// MobileNetV4 with timm's ImageNet weights, downloaded from the Hugging Face hub into the
    /// [`WeightsCache::from_env`] cache (as `{name}.safetensors`) on first use. The file is
    /// checked by strict loading, every key and shape, not by hash (see
    /// [`TimmWeightsInfo::sha256`]; [`pretrained_with_sha256`](Self::pretrained_with_sha256)
    /// checks one). Preprocess with the entry's [`transform`](TimmWeightsInfo::transform).
    ///
    /// # Errors
    ///
    /// As [`WeightsCache::fetch_url_as`] and [`MobileNetV4::load_timm`].
    ///
    /// ```no_run
    /// use burn::tensor::Device;
    /// use mobilenet_burn::pretrained::MobileNetV4Weights;
    /// use mobilenet_burn::MobileNetV4;
    ///
    /// let weights = MobileNetV4Weights::ConvSmallE2400R224In1k;
    /// let model = MobileNetV4::pretrained(weights, &Device::flex())?.fuse();
    /// let x = weights.info().transform.apply_file("cat.jpg", &Device::flex())?;
    /// let logits = model.forward(x);
    /// # Ok::<(), mobilenet_burn::Error>(())
    /// ```
    pub fn pretrained(weights: MobileNetV4Weights, device: &Device) -> Result<Self, Error> {
        let info = weights.info();
        let path = WeightsCache::from_env()?.fetch_url_as(info.url, info.file_name, info.sha256)?;
        Self::from_file(weights, path, device)
    }

    /// As [`pretrained`](Self::pretrained), with the file's SHA-256 checked against `sha256`
    /// (hex, a prefix suffices), for example the one the Hugging Face hub lists for the file.
    ///
    /// # Errors
    ///
    /// [`Error::HashMismatch`] for a download and [`Error::WrongFile`] for a cached file whose
    /// hash differs; otherwise as [`pretrained`](Self::pretrained).
    ///
    /// ```no_run
    /// use burn::tensor::Device;
    /// use mobilenet_burn::pretrained::MobileNetV4Weights;
    /// use mobilenet_burn::MobileNetV4;
    ///
    /// // The SHA-256 the Hugging Face hub lists for the file (here a placeholder prefix).
    /// let weights = MobileNetV4Weights::ConvSmallE2400R224In1k;
    /// let model = MobileNetV4::pretrained_with_sha256(weights, "0123abcd", &Device::flex())?;
    /// # Ok::<(), mobilenet_burn::Error>(())
    /// ```
    pub fn pretrained_with_sha256(
        weights: MobileNetV4Weights,
        sha256: &str,
        device: &Device,
    ) -> Result<Self, Error> {
        let info = weights.info();
        let path =
            WeightsCache::from_env()?.fetch_url_as(info.url, info.file_name, Some(sha256))?;
        Self::from_file(weights, path, device)
    }

    /// MobileNetV4 configured for `weights`, loaded from a local copy of its file (timm's
    /// `.safetensors`, or a `.pth` state dict), strictly.
    ///
    /// # Errors
    ///
    /// As [`MobileNetV4::load_timm`].
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::pretrained::MobileNetV4Weights;
    /// use mobilenet_burn::MobileNetV4;
    ///
    /// // Not a checkpoint: a typed error naming the file, nothing loaded.
    /// let path = std::env::temp_dir().join(format!("not-v4-{}.safetensors", std::process::id()));
    /// std::fs::write(&path, b"<html>404</html>").unwrap();
    /// let result = MobileNetV4::from_file(MobileNetV4Weights::ConvSmallE2400R224In1k, &path, &Device::flex());
    /// assert!(result.is_err());
    /// # std::fs::remove_file(&path).ok();
    /// ```
    pub fn from_file(
        weights: MobileNetV4Weights,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self, Error> {
        weights.config().try_init(device)?.load_timm(path)
    }
}
