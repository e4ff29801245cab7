//! torchvision's SSDLite weights: `SSDLite320_MobileNet_V3_Large_Weights`, and loading them into
//! [`SsdLite`].

use std::path::Path;

use burn::tensor::Device;

use super::WeightsCache;
use super::coco_categories::COCO_CATEGORIES;
use crate::Error;
use crate::detection::{SsdLite, SsdLiteConfig};

/// Everything known about one published detection checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectionWeightsInfo {
    /// torchvision's name of the entry, for example `COCO_V1`.
    pub name: &'static str,
    /// Download URL.
    pub url: &'static str,
    /// The first hex digits of the file's SHA-256, as torchvision puts them in the file name.
    pub sha256_prefix: &'static str,
    /// Class names, the background first, index for index with the class logits.
    pub categories: &'static [&'static str],
    /// Box mAP on COCO val2017, as torchvision reports it.
    pub box_map: f64,
    /// Number of learned parameters.
    pub num_params: usize,
}

impl DetectionWeightsInfo {
    /// Classes, the background included.
    pub fn num_classes(&self) -> usize {
        self.categories.len()
    }

    /// The file name the weights are cached under: the last segment of the URL.
    pub fn file_name(&self) -> &'static str {
        super::weights::url_file_name(self.url)
    }
}

/// torchvision's `SSDLite320_MobileNet_V3_Large_Weights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SsdLite320MobileNetV3LargeWeights {
    /// Trained on COCO 2017 train: box mAP 21.3 on val2017.
    CocoV1,
}

impl SsdLite320MobileNetV3LargeWeights {
    /// torchvision's `DEFAULT`.
    pub const DEFAULT: Self = Self::CocoV1;

    /// The entry's metadata.
    pub fn info(self) -> &'static DetectionWeightsInfo {
        const COCO_V1: DetectionWeightsInfo = DetectionWeightsInfo {
            name: "COCO_V1",
            url: "https://download.pytorch.org/models/ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
            sha256_prefix: "a79551df",
            categories: &COCO_CATEGORIES,
            box_map: 21.3,
            num_params: 3_440_060,
        };
        match self {
            Self::CocoV1 => &COCO_V1,
        }
    }
}

impl SsdLite {
    /// torchvision's SSDLite320 with its COCO weights, downloaded into the
    /// [`WeightsCache::from_env`] cache on first use.
    ///
    /// # Errors
    ///
    /// As [`WeightsCache::fetch_url`] and [`SsdLite::load_torchvision`].
    pub fn pretrained(
        weights: SsdLite320MobileNetV3LargeWeights,
        device: &Device,
    ) -> Result<Self, Error> {
        let info = weights.info();
        // `fetch_url` verified the file's hash, on every path.
        let path = WeightsCache::from_env()?.fetch_url(info.url, info.sha256_prefix)?;
        Self::from_file_unverified(weights, path, device)
    }

    /// SSDLite320 configured for `weights` (MobileNetV3-Large with the reduced tail, 91
    /// classes), loaded from a local copy of its file (offline), which must be that file: its
    /// SHA-256 is checked against the entry's.
    ///
    /// # Errors
    ///
    /// [`Error::WrongFile`] for another file; otherwise as [`SsdLite::load_torchvision`].
    pub fn from_file(
        weights: SsdLite320MobileNetV3LargeWeights,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self, Error> {
        let info = weights.info();
        super::verify_file(path.as_ref(), info.file_name(), info.sha256_prefix)?;
        Self::from_file_unverified(weights, path, device)
    }

    /// As [`from_file`](Self::from_file) without the hash check: weights of one's own in the
    /// layout of `weights`.
    ///
    /// # Errors
    ///
    /// As [`SsdLite::load_torchvision`].
    pub fn from_file_unverified(
        weights: SsdLite320MobileNetV3LargeWeights,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self, Error> {
        SsdLiteConfig::mobilenet_v3_large(weights.info().num_classes())
            .try_init(device)?
            .load_torchvision(path)
    }
}
