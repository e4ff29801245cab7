//! Pretrained ImageNet weights and the classification pipeline, as torchvision evaluates them
//! (cargo feature `pretrained`).
//!
//! ```no_run
//! use burn::tensor::Device;
//! use mobilenet_burn::MobileNetV3;
//! use mobilenet_burn::pretrained::{MobileNetV3LargeWeights, top_k};
//!
//! # fn main() -> Result<(), mobilenet_burn::Error> {
//! let device = Device::flex();
//! let weights = MobileNetV3LargeWeights::DEFAULT;
//! let model = MobileNetV3::pretrained(weights, &device)?;
//! let image = weights.info().transform.apply_file("assets/chelsea.png", &device)?;
//! for (class, probability) in &top_k(model.forward(image), 5)[0] {
//!     println!("{:>6.2}% {}", probability * 100.0, weights.info().categories[*class]);
//! }
//! # Ok(())
//! # }
//! ```

mod coco_categories;
mod detection_weights;
mod download;
mod imagenet_categories;
mod resize;
mod segmentation_weights;
mod timm_weights;
mod transform;
mod weights;

use std::path::Path;

use burn::tensor::Device;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

pub use coco_categories::COCO_CATEGORIES;
pub use detection_weights::{DetectionWeightsInfo, SsdLite320MobileNetV3LargeWeights};
pub use download::{CACHE_DIR_ENV, OFFLINE_ENV, WeightsCache, torch_hub_checkpoints};
/// The image type [`load_rgb_image`] returns and [`EvalTransform::apply`] takes, from the
/// `image` crate version this crate uses.
pub use image::RgbImage;
pub use imagenet_categories::IMAGENET_CATEGORIES;
pub(crate) use resize::resize_bilinear;
pub use segmentation_weights::{
    DeepLabV3MobileNetV3LargeWeights, LrAsppMobileNetV3LargeWeights, SegmentationTransform,
    SegmentationWeightsInfo,
};
pub use timm_weights::{INCEPTION_MEAN, INCEPTION_STD, MobileNetV4Weights, TimmWeightsInfo};
pub(crate) use transform::normalized;
pub use transform::{load_rgb_image, save_rgb_image};
pub use weights::{
    EvalTransform, IMAGENET_MEAN, IMAGENET_STD, MobileNetV2Weights, MobileNetV3LargeWeights,
    MobileNetV3SmallWeights, MobileNetV3Weights, ResizeInterpolation, WeightsInfo,
};

use crate::{Error, MobileNetV2, MobileNetV2Config, MobileNetV3, MobileNetV3Config};

/// The `k` most probable classes of each row of `logits`, most probable first, as
/// `(class index, softmax probability)`.
///
/// # Shapes
/// - logits: `[batch, num_classes]`
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::pretrained::top_k;
///
/// let logits = Tensor::<2>::from_floats([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]], &Device::flex());
/// let best = top_k(logits, 2);
/// assert_eq!((best[0][0].0, best[0][1].0), (1, 2));
/// assert_eq!(best[1][0].0, 0);
/// assert!(best[0][0].1 > 0.8); // softmax probability
/// ```
pub fn top_k(logits: Tensor<2>, k: usize) -> Vec<Vec<(usize, f32)>> {
    let [batch, num_classes] = logits.dims();
    let probabilities = softmax(logits, 1).into_data();
    let values = probabilities
        .try_into_vec_as::<f32>()
        .unwrap_or_else(|error| unreachable!("softmax gives floats, castable to f32: {error}"));
    values
        .chunks(num_classes.max(1))
        .take(batch)
        .map(|row| {
            let mut ranked: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            ranked.truncate(k);
            ranked
        })
        .collect()
}

/// Checks that `path` is the weights file `file`: its SHA-256 starts with `sha256_prefix`.
pub(crate) fn verify_file(path: &Path, file: &str, sha256_prefix: &str) -> Result<(), Error> {
    let found = download::file_sha256(path).map_err(crate::error::io_error(path))?;
    if found.starts_with(&sha256_prefix.to_ascii_lowercase()) {
        Ok(())
    } else {
        Err(Error::WrongFile {
            path: path.to_path_buf(),
            file: file.to_string(),
            expected: sha256_prefix.to_string(),
            found,
        })
    }
}

impl MobileNetV2 {
    /// MobileNetV2 with torchvision's ImageNet weights, downloaded into the
    /// [`WeightsCache::from_env`] cache on first use.
    ///
    /// # Errors
    ///
    /// As [`WeightsCache::fetch`] and [`MobileNetV2::load_torchvision`].
    ///
    /// ```no_run
    /// use burn::tensor::Device;
    /// use mobilenet_burn::pretrained::MobileNetV2Weights;
    /// use mobilenet_burn::MobileNetV2;
    ///
    /// let model = MobileNetV2::pretrained(MobileNetV2Weights::ImageNet1kV2, &Device::flex())?.fuse();
    /// # Ok::<(), mobilenet_burn::Error>(())
    /// ```
    pub fn pretrained(weights: MobileNetV2Weights, device: &Device) -> Result<Self, Error> {
        // `fetch` verified the file's hash, on every path.
        let path = WeightsCache::from_env()?.fetch(weights.info())?;
        Self::from_file_unverified(weights, path, device)
    }

    /// MobileNetV2 configured for `weights`, loaded from a local copy of its file (offline),
    /// which must be that file: its SHA-256 is checked against the entry's.
    ///
    /// # Errors
    ///
    /// [`Error::WrongFile`] for another file; otherwise as
    /// [`MobileNetV2::load_torchvision`].
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::pretrained::MobileNetV2Weights;
    /// use mobilenet_burn::{Error, MobileNetV2};
    ///
    /// // A file that is not the entry's: refused before anything is parsed.
    /// let path = std::env::temp_dir().join(format!("not-the-weights-{}.pth", std::process::id()));
    /// std::fs::write(&path, b"<html>404</html>").unwrap();
    /// let result = MobileNetV2::from_file(MobileNetV2Weights::ImageNet1kV2, &path, &Device::flex());
    /// assert!(matches!(result, Err(Error::WrongFile { .. })));
    /// # std::fs::remove_file(&path).ok();
    /// ```
    pub fn from_file(
        weights: MobileNetV2Weights,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self, Error> {
        let info = weights.info();
        verify_file(path.as_ref(), info.file_name(), info.sha256_prefix)?;
        Self::from_file_unverified(weights, path, device)
    }

    /// As [`from_file`](Self::from_file) without the hash check: weights of one's own
    /// (fine-tuned, converted) in the layout of `weights`.
    ///
    /// # Errors
    ///
    /// As [`MobileNetV2::load_torchvision`].
    ///
    /// ```no_run
    /// use burn::tensor::Device;
    /// use mobilenet_burn::pretrained::MobileNetV2Weights;
    /// use mobilenet_burn::MobileNetV2;
    ///
    /// // A state_dict saved from torchvision's model after fine-tuning, same classes.
    /// let model = MobileNetV2::from_file_unverified(MobileNetV2Weights::ImageNet1kV2, "finetuned.pth", &Device::flex())?;
    /// # Ok::<(), mobilenet_burn::Error>(())
    /// ```
    pub fn from_file_unverified(
        weights: MobileNetV2Weights,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self, Error> {
        MobileNetV2Config::new()
            .with_num_classes(weights.info().num_classes)
            .try_init(device)?
            .load_torchvision(path)
    }
}

impl MobileNetV3 {
    /// MobileNetV3-Large or -Small with torchvision's ImageNet weights, downloaded into the
    /// [`WeightsCache::from_env`] cache on first use.
    ///
    /// # Errors
    ///
    /// As [`WeightsCache::fetch`] and [`MobileNetV3::load_torchvision`].
    ///
    /// ```no_run
    /// use burn::tensor::Device;
    /// use mobilenet_burn::pretrained::MobileNetV3LargeWeights;
    /// use mobilenet_burn::MobileNetV3;
    ///
    /// let model = MobileNetV3::pretrained(MobileNetV3LargeWeights::ImageNet1kV1, &Device::flex())?.fuse();
    /// # Ok::<(), mobilenet_burn::Error>(())
    /// ```
    pub fn pretrained(
        weights: impl Into<MobileNetV3Weights>,
        device: &Device,
    ) -> Result<Self, Error> {
        let weights = weights.into();
        // `fetch` verified the file's hash, on every path.
        let path = WeightsCache::from_env()?.fetch(weights.info())?;
        Self::from_file_unverified(weights, path, device)
    }

    /// MobileNetV3 configured for `weights`, loaded from a local copy of its file (offline),
    /// which must be that file: its SHA-256 is checked against the entry's.
    ///
    /// # Errors
    ///
    /// [`Error::WrongFile`] for another file; otherwise as
    /// [`MobileNetV3::load_torchvision`].
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::pretrained::MobileNetV3LargeWeights;
    /// use mobilenet_burn::{Error, MobileNetV3};
    ///
    /// // A file that is not the entry's: refused before anything is parsed.
    /// let path = std::env::temp_dir().join(format!("not-the-weights-{}.pth", std::process::id()));
    /// std::fs::write(&path, b"<html>404</html>").unwrap();
    /// let result = MobileNetV3::from_file(MobileNetV3LargeWeights::ImageNet1kV1, &path, &Device::flex());
    /// assert!(matches!(result, Err(Error::WrongFile { .. })));
    /// # std::fs::remove_file(&path).ok();
    /// ```
    pub fn from_file(
        weights: impl Into<MobileNetV3Weights>,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self, Error> {
        let weights = weights.into();
        let info = weights.info();
        verify_file(path.as_ref(), info.file_name(), info.sha256_prefix)?;
        Self::from_file_unverified(weights, path, device)
    }

    /// As [`from_file`](Self::from_file) without the hash check: weights of one's own
    /// (fine-tuned, converted) in the layout of `weights`.
    ///
    /// # Errors
    ///
    /// As [`MobileNetV3::load_torchvision`].
    ///
    /// ```no_run
    /// use burn::tensor::Device;
    /// use mobilenet_burn::pretrained::MobileNetV3LargeWeights;
    /// use mobilenet_burn::MobileNetV3;
    ///
    /// // A state_dict saved from torchvision's model after fine-tuning, same classes.
    /// let model = MobileNetV3::from_file_unverified(MobileNetV3LargeWeights::ImageNet1kV1, "finetuned.pth", &Device::flex())?;
    /// # Ok::<(), mobilenet_burn::Error>(())
    /// ```
    pub fn from_file_unverified(
        weights: impl Into<MobileNetV3Weights>,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self, Error> {
        let weights = weights.into();
        let config = match weights {
            MobileNetV3Weights::Large(_) => MobileNetV3Config::large(),
            MobileNetV3Weights::Small(_) => MobileNetV3Config::small(),
        };
        config
            .with_num_classes(weights.info().num_classes)
            .try_init(device)?
            .load_torchvision(path)
    }
}
