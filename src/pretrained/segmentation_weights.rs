//! torchvision's segmentation weights (`LRASPP_MobileNet_V3_Large_Weights`,
//! `DeepLabV3_MobileNet_V3_Large_Weights`), their evaluation transform
//! (`SemanticSegmentation(resize_size=520)`), and loading them into [`LrAspp`] and
//! [`DeepLabV3`].
//!
//! Every value here is checked against torchvision 0.29.2's own by
//! `tests/pretrained_tables.rs`, from the fixture `scripts/make_segmentation_meta.py` writes.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;

use super::resize::resize_bilinear;
use super::transform::normalized;
use super::weights::{IMAGENET_MEAN, IMAGENET_STD};
use super::{WeightsCache, load_rgb_image, verify_file};
use crate::segmentation::{DeepLabV3, DeepLabV3Config, LrAspp, LrAsppConfig, VOC_CATEGORIES};
use crate::{Error, IMAGE_CHANNELS};

/// The evaluation transform of torchvision's segmentation weights (`SemanticSegmentation`):
/// resize the shorter side with Pillow's antialiased bilinear interpolation (bit for bit), no
/// crop, scale to `[0, 1]`, normalize. The logits come out at the resized image's size.
///
/// ```
/// use mobilenet_burn::pretrained::{LrAsppMobileNetV3LargeWeights, RgbImage};
///
/// let transform = LrAsppMobileNetV3LargeWeights::DEFAULT.info().transform;
/// assert_eq!(transform.resized_size(451, 300), (781, 520));
/// let image = RgbImage::from_pixel(40, 20, image::Rgb([255, 128, 0]));
/// let x = transform.apply(&image, &burn::tensor::Device::flex());
/// assert_eq!(x.dims(), [3, 520, 1040]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentationTransform {
    /// Target length of the shorter side.
    pub resize_size: u32,
    /// Per-channel mean subtracted after scaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
}

impl SegmentationTransform {
    /// Output size `(width, height)` of the resize for an image of `width x height`
    /// (torchvision's `_compute_resized_output_size` with one size: the long side truncated);
    /// see [`SegmentationTransform`] for an example.
    ///
    /// ```
    /// # use mobilenet_burn::pretrained::DeepLabV3MobileNetV3LargeWeights;
    /// let transform = DeepLabV3MobileNetV3LargeWeights::DEFAULT.info().transform;
    /// assert_eq!(transform.resized_size(300, 451), (520, 781));
    /// ```
    pub fn resized_size(&self, width: u32, height: u32) -> (u32, u32) {
        let size = self.resize_size;
        let long =
            |long: u32, short: u32| (f64::from(size) * f64::from(long) / f64::from(short)) as u32;
        if width <= height {
            (size, long(height, width).max(1))
        } else {
            (long(width, height).max(1), size)
        }
    }

    /// Applies the transform to an RGB image.
    ///
    /// # Shapes
    /// - output: `[3, height, width]` of [`resized_size`](Self::resized_size)
    ///
    /// ```
    /// use mobilenet_burn::pretrained::{LrAsppMobileNetV3LargeWeights, RgbImage};
    ///
    /// let transform = LrAsppMobileNetV3LargeWeights::DEFAULT.info().transform;
    /// let x = transform.apply(&RgbImage::new(520, 520), &burn::tensor::Device::flex());
    /// assert_eq!(x.dims(), [3, 520, 520]);
    /// ```
    pub fn apply(&self, image: &RgbImage, device: &Device) -> Tensor<3> {
        let (width, height) = self.resized_size(image.width().max(1), image.height().max(1));
        let resized = resize_bilinear(image, width, height);
        let plane = (width * height) as usize;
        let mut values = vec![0f32; IMAGE_CHANNELS * plane];
        for (index, pixel) in resized.pixels().enumerate() {
            for channel in 0..IMAGE_CHANNELS {
                values[channel * plane + index] =
                    normalized(pixel.0[channel], self.mean[channel], self.std[channel]);
            }
        }
        Tensor::from_data(
            TensorData::new(values, [IMAGE_CHANNELS, height as usize, width as usize]),
            device,
        )
    }

    /// Reads an image file and applies the transform, as a batch of one.
    ///
    /// # Shapes
    /// - output: `[1, 3, height, width]`
    ///
    /// # Errors
    ///
    /// As [`load_rgb_image`].
    ///
    /// ```
    /// use mobilenet_burn::pretrained::LrAsppMobileNetV3LargeWeights;
    ///
    /// let transform = LrAsppMobileNetV3LargeWeights::DEFAULT.info().transform;
    /// let x = transform.apply_file("assets/chelsea.png", &burn::tensor::Device::flex())?;
    /// assert_eq!(x.dims(), [1, 3, 520, 781]);
    /// # Ok::<(), mobilenet_burn::Error>(())
    /// ```
    pub fn apply_file(&self, path: impl AsRef<Path>, device: &Device) -> Result<Tensor<4>, Error> {
        Ok(self.apply(&load_rgb_image(path)?, device).unsqueeze())
    }
}

/// Everything known about one published segmentation checkpoint.
///
/// ```
/// use mobilenet_burn::pretrained::LrAsppMobileNetV3LargeWeights;
///
/// let info = LrAsppMobileNetV3LargeWeights::CocoWithVocLabelsV1.info();
/// assert_eq!((info.miou, info.num_classes()), (57.9, 21));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentationWeightsInfo {
    /// torchvision's name of the entry, for example `COCO_WITH_VOC_LABELS_V1`.
    pub name: &'static str,
    /// Download URL.
    pub url: &'static str,
    /// The first hex digits of the file's SHA-256, as torchvision puts them in the file name.
    pub sha256_prefix: &'static str,
    /// Class names, the background first, index for index with the logits' channels.
    pub categories: &'static [&'static str],
    /// Mean IoU on COCO val2017 with VOC labels, percent, as torchvision reports it.
    pub miou: f64,
    /// Pixel accuracy on the same data, percent.
    pub pixel_acc: f64,
    /// Number of learned parameters (DeepLabV3's include its auxiliary head).
    pub num_params: usize,
    /// torchvision's "GFLOPS": billions of multiply-adds for one 520x520 image.
    pub gflops: f64,
    /// The transform the metrics were measured with.
    pub transform: SegmentationTransform,
}

impl SegmentationWeightsInfo {
    /// Classes, the background included.
    ///
    /// ```
    /// # use mobilenet_burn::pretrained::DeepLabV3MobileNetV3LargeWeights;
    /// assert_eq!(DeepLabV3MobileNetV3LargeWeights::DEFAULT.info().num_classes(), 21);
    /// ```
    pub fn num_classes(&self) -> usize {
        self.categories.len()
    }

    /// The file name the weights are cached under: the last segment of the URL.
    ///
    /// ```
    /// # use mobilenet_burn::pretrained::LrAsppMobileNetV3LargeWeights;
    /// let info = LrAsppMobileNetV3LargeWeights::DEFAULT.info();
    /// assert_eq!(info.file_name(), "lraspp_mobilenet_v3_large-d234d4ea.pth");
    /// ```
    pub fn file_name(&self) -> &'static str {
        super::weights::url_file_name(self.url)
    }
}

/// `SemanticSegmentation(resize_size=520)` with ImageNet's mean and std.
const VOC_TRANSFORM: SegmentationTransform = SegmentationTransform {
    resize_size: 520,
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
};

/// torchvision's `LRASPP_MobileNet_V3_Large_Weights`.
///
/// ```
/// use mobilenet_burn::pretrained::LrAsppMobileNetV3LargeWeights;
///
/// assert_eq!(LrAsppMobileNetV3LargeWeights::DEFAULT.info().num_params, 3_221_538);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LrAsppMobileNetV3LargeWeights {
    /// Trained on the COCO 2017 images of the 20 Pascal VOC categories: mIoU 57.9, pixel
    /// accuracy 91.2 on val2017.
    CocoWithVocLabelsV1,
}

impl LrAsppMobileNetV3LargeWeights {
    /// torchvision's `DEFAULT`.
    pub const DEFAULT: Self = Self::CocoWithVocLabelsV1;

    /// The entry's metadata.
    ///
    /// ```
    /// # use mobilenet_burn::pretrained::LrAsppMobileNetV3LargeWeights;
    /// assert_eq!(LrAsppMobileNetV3LargeWeights::DEFAULT.info().gflops, 2.086);
    /// ```
    pub fn info(self) -> &'static SegmentationWeightsInfo {
        const COCO_WITH_VOC_LABELS_V1: SegmentationWeightsInfo = SegmentationWeightsInfo {
            name: "COCO_WITH_VOC_LABELS_V1",
            url: "https://download.pytorch.org/models/lraspp_mobilenet_v3_large-d234d4ea.pth",
            sha256_prefix: "d234d4ea",
            categories: &VOC_CATEGORIES,
            miou: 57.9,
            pixel_acc: 91.2,
            num_params: 3_221_538,
            gflops: 2.086,
            transform: VOC_TRANSFORM,
        };
        match self {
            Self::CocoWithVocLabelsV1 => &COCO_WITH_VOC_LABELS_V1,
        }
    }
}

/// torchvision's `DeepLabV3_MobileNet_V3_Large_Weights`.
///
/// ```
/// use mobilenet_burn::pretrained::DeepLabV3MobileNetV3LargeWeights;
///
/// assert_eq!(DeepLabV3MobileNetV3LargeWeights::DEFAULT.info().num_params, 11_029_328);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeepLabV3MobileNetV3LargeWeights {
    /// Trained on the COCO 2017 images of the 20 Pascal VOC categories: mIoU 60.3, pixel
    /// accuracy 91.2 on val2017. The checkpoint includes the auxiliary head.
    CocoWithVocLabelsV1,
}

impl DeepLabV3MobileNetV3LargeWeights {
    /// torchvision's `DEFAULT`.
    pub const DEFAULT: Self = Self::CocoWithVocLabelsV1;

    /// The entry's metadata.
    ///
    /// ```
    /// # use mobilenet_burn::pretrained::DeepLabV3MobileNetV3LargeWeights;
    /// assert_eq!(DeepLabV3MobileNetV3LargeWeights::DEFAULT.info().miou, 60.3);
    /// ```
    pub fn info(self) -> &'static SegmentationWeightsInfo {
        const COCO_WITH_VOC_LABELS_V1: SegmentationWeightsInfo = SegmentationWeightsInfo {
            name: "COCO_WITH_VOC_LABELS_V1",
            url: "https://download.pytorch.org/models/deeplabv3_mobilenet_v3_large-fc3c493d.pth",
            sha256_prefix: "fc3c493d",
            categories: &VOC_CATEGORIES,
            miou: 60.3,
            pixel_acc: 91.2,
            num_params: 11_029_328,
            gflops: 10.452,
            transform: VOC_TRANSFORM,
        };
        match self {
            Self::CocoWithVocLabelsV1 => &COCO_WITH_VOC_LABELS_V1,
        }
    }
}

/// `pretrained`, `from_file` and `from_file_unverified` for a segmentation model.
macro_rules! segmentation_loaders {
    ($model:ident, $weights:ident, $name:literal, $build:expr) => {
        impl $model {
            #[doc = concat!("torchvision's ", $name, " with its COCO-with-VOC-labels weights, downloaded into the")]
            /// [`WeightsCache::from_env`] cache on first use.
            ///
            /// # Errors
            ///
            #[doc = concat!("As [`WeightsCache::fetch_url`] and [`", stringify!($model), "::load_torchvision`].")]
            ///
            /// ```no_run
            /// use burn::tensor::Device;
            #[doc = concat!("use mobilenet_burn::pretrained::", stringify!($weights), ";")]
            #[doc = concat!("use mobilenet_burn::segmentation::", stringify!($model), ";")]
            ///
            /// let device = Device::flex();
            #[doc = concat!("let weights = ", stringify!($weights), "::DEFAULT;")]
            #[doc = concat!("let model = ", stringify!($model), "::pretrained(weights, &device)?.fuse();")]
            /// let x = weights.info().transform.apply_file("assets/chelsea.png", &device)?;
            /// let mask = model.forward(x).argmax(1); // [1, 1, 520, 781]: VOC class per pixel
            /// # Ok::<(), mobilenet_burn::Error>(())
            /// ```
            pub fn pretrained(weights: $weights, device: &Device) -> Result<Self, Error> {
                let info = weights.info();
                // `fetch_url` verified the file's hash, on every path.
                let path = WeightsCache::from_env()?.fetch_url(info.url, info.sha256_prefix)?;
                Self::from_file_unverified(weights, path, device)
            }

            /// The model configured for `weights`, loaded from a local copy of its file
            /// (offline), which must be that file: its SHA-256 is checked against the entry's.
            ///
            /// # Errors
            ///
            #[doc = concat!("[`Error::WrongFile`] for another file; otherwise as [`", stringify!($model), "::load_torchvision`].")]
            ///
            /// ```
            /// use burn::tensor::Device;
            #[doc = concat!("use mobilenet_burn::pretrained::", stringify!($weights), ";")]
            #[doc = concat!("use mobilenet_burn::segmentation::", stringify!($model), ";")]
            ///
            #[doc = concat!("let error = ", stringify!($model), "::from_file(", stringify!($weights), "::DEFAULT, \"no-such.pth\", &Device::flex());")]
            /// assert!(error.unwrap_err().to_string().contains("no-such.pth"));
            /// ```
            pub fn from_file(
                weights: $weights,
                path: impl AsRef<Path>,
                device: &Device,
            ) -> Result<Self, Error> {
                let info = weights.info();
                verify_file(path.as_ref(), info.file_name(), info.sha256_prefix)?;
                Self::from_file_unverified(weights, path, device)
            }

            /// As [`from_file`](Self::from_file) without the hash check: weights of one's own
            /// in the layout of `weights`.
            ///
            /// # Errors
            ///
            #[doc = concat!("As [`", stringify!($model), "::load_torchvision`].")]
            ///
            /// ```
            /// use burn::tensor::Device;
            #[doc = concat!("use mobilenet_burn::pretrained::", stringify!($weights), ";")]
            #[doc = concat!("use mobilenet_burn::segmentation::", stringify!($model), ";")]
            ///
            #[doc = concat!("let result = ", stringify!($model), "::from_file_unverified(", stringify!($weights), "::DEFAULT, \"Cargo.toml\", &Device::flex());")]
            /// assert!(matches!(result, Err(mobilenet_burn::Error::UnreadableCheckpoint { .. })));
            /// ```
            pub fn from_file_unverified(
                weights: $weights,
                path: impl AsRef<Path>,
                device: &Device,
            ) -> Result<Self, Error> {
                let build: fn(usize) -> _ = $build;
                build(weights.info().num_classes())
                    .try_init(device)?
                    .load_torchvision(path)
            }
        }
    };
}

segmentation_loaders!(
    LrAspp,
    LrAsppMobileNetV3LargeWeights,
    "LR-ASPP MobileNetV3-Large",
    LrAsppConfig::mobilenet_v3_large
);
segmentation_loaders!(
    DeepLabV3,
    DeepLabV3MobileNetV3LargeWeights,
    "DeepLabV3 MobileNetV3-Large (with its auxiliary head, as the checkpoint has it)",
    |classes| DeepLabV3Config::mobilenet_v3_large(classes).with_aux_classifier(true)
);
