//! Training data as torchvision's reference recipes prepare it (cargo feature `pretrained`, for
//! image decoding): an [`ImageFolder`] dataset, the training transforms with torchvision's
//! sampling rules ([`TrainTransform`]: `RandomResizedCrop`, `RandomHorizontalFlip`,
//! [`TrivialAugmentWide`] or [`AutoAugment`] with Pillow's arithmetic, `RandomErasing`,
//! normalization), seeded per image so that an epoch is reproducible whatever the number of
//! threads, batches decoded in parallel ([`ImageFolder::batch`]), and MixUp / CutMix on batches
//! ([`MixUpCutMix`]).
//!
//! ```no_run
//! use burn::tensor::Device;
//! use mobilenet_burn::data::{ImageFolder, TrainTransform};
//!
//! # fn main() -> Result<(), mobilenet_burn::Error> {
//! let device = Device::flex();
//! let dataset = ImageFolder::new("imagenette2/train")?;
//! let (train, _validation) = dataset.split(0.1, 0);
//! let transform = TrainTransform::imagenet(224);
//! let (images, labels) = dataset.batch(&train[..32], &transform, 0, 0, &device)?;
//! assert_eq!(images.dims(), [32, 3, 224, 224]);
//! # Ok(())
//! # }
//! ```

mod augment;
mod image_folder;
mod mix;
mod transforms;

use burn::tensor::{Device, Int, Tensor, TensorData};
use image::RgbImage;
use rayon::prelude::*;

pub use augment::{
    AugmentOp, AutoAugment, AutoAugmentPolicy, AutoAugmentation, Interpolation, TrivialAugmentWide,
};
pub use image_folder::{IMAGE_EXTENSIONS, ImageFolder, MAX_DEPTH};
pub use mix::{BatchMix, MixParams, MixUpCutMix};
pub use transforms::{
    CropBox, Draws, RandomErasing, RandomHorizontalFlip, RandomResizedCrop, SeededDraws,
    resized_crop, shuffle,
};

use crate::pretrained::{EvalTransform, IMAGENET_MEAN, IMAGENET_STD, load_rgb_image, normalized};
use crate::{Error, IMAGE_CHANNELS};

/// torchvision's `ClassificationPresetTrain`: `RandomResizedCrop`, `RandomHorizontalFlip`,
/// optional `TrivialAugmentWide` / `AutoAugment`, to `[0, 1]`, `Normalize`, optional
/// `RandomErasing`, drawing in that order.
///
/// ```
/// use mobilenet_burn::data::{
///     AutoAugmentation, Interpolation, SeededDraws, TrainTransform, TrivialAugmentWide,
/// };
/// use mobilenet_burn::pretrained::RgbImage;
///
/// // The reference recipe's `--auto-augment ta_wide --random-erase 0.1`.
/// let transform = TrainTransform::imagenet(64)
///     .with_auto_augment(AutoAugmentation::TrivialAugmentWide(TrivialAugmentWide {
///         interpolation: Interpolation::Bilinear,
///         ..TrivialAugmentWide::default()
///     }))
///     .with_random_erasing(0.1);
/// let image = RgbImage::from_fn(120, 90, |x, y| image::Rgb([x as u8, y as u8, 7]));
/// // Image 5 of epoch 2 under seed 0: the same values on every run and thread.
/// let values = transform.apply(&image, &mut SeededDraws::for_item(0, 2, 5));
/// assert_eq!(values.len(), 3 * 64 * 64);
/// assert_eq!(values, transform.apply(&image, &mut SeededDraws::for_item(0, 2, 5)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TrainTransform {
    /// The random crop and its output size.
    pub crop: RandomResizedCrop,
    /// The random mirror, if any.
    pub flip: Option<RandomHorizontalFlip>,
    /// `TrivialAugmentWide` or `AutoAugment`, if any (after the flip, on 8-bit pixels).
    pub auto_augment: Option<AutoAugmentation>,
    /// Random erasing after normalization, if any.
    pub erasing: Option<RandomErasing>,
    /// Per-channel mean subtracted after scaling to `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
}

impl TrainTransform {
    /// The reference recipe's defaults at `crop_size`: flip with probability 0.5, ImageNet's
    /// normalization, no erasing.
    ///
    /// ```
    /// use mobilenet_burn::data::TrainTransform;
    ///
    /// let transform = TrainTransform::imagenet(224);
    /// assert!(transform.flip.is_some() && transform.erasing.is_none());
    /// ```
    pub fn imagenet(crop_size: u32) -> Self {
        Self {
            crop: RandomResizedCrop::new(crop_size),
            flip: Some(RandomHorizontalFlip::default()),
            auto_augment: None,
            erasing: None,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// Adds `RandomErasing` with probability `p` (torchvision's `--random-erase`).
    ///
    /// ```
    /// use mobilenet_burn::data::TrainTransform;
    ///
    /// let transform = TrainTransform::imagenet(224).with_random_erasing(0.1);
    /// assert_eq!(transform.erasing.unwrap().p, 0.1);
    /// ```
    pub fn with_random_erasing(mut self, p: f32) -> Self {
        self.erasing = Some(RandomErasing {
            p,
            ..RandomErasing::default()
        });
        self
    }

    /// Adds an automatic augmentation (torchvision's `--auto-augment ta_wide` or `imagenet`).
    /// The reference recipe samples its geometric operations bilinearly
    /// (`interpolation=BILINEAR`).
    ///
    /// ```
    /// use mobilenet_burn::data::{AutoAugmentation, TrainTransform, TrivialAugmentWide};
    ///
    /// // torchvision's MobileNetV3 recipe: `--auto-augment ta_wide --random-erase 0.1`.
    /// let transform = TrainTransform::imagenet(224)
    ///     .with_auto_augment(AutoAugmentation::TrivialAugmentWide(TrivialAugmentWide::default()))
    ///     .with_random_erasing(0.1);
    /// assert!(transform.auto_augment.is_some());
    /// ```
    pub fn with_auto_augment(mut self, augmentation: AutoAugmentation) -> Self {
        self.auto_augment = Some(augmentation);
        self
    }

    /// The transformed image, `[3, size, size]` values in row-major order.
    ///
    /// ```
    /// use mobilenet_burn::data::{SeededDraws, TrainTransform};
    /// use mobilenet_burn::pretrained::RgbImage;
    ///
    /// let image = RgbImage::from_pixel(320, 240, [200, 30, 90].into());
    /// let mut draws = SeededDraws::for_item(0, 0, 17); // seed, epoch, image index
    /// let values = TrainTransform::imagenet(96).apply(&image, &mut draws);
    /// assert_eq!(values.len(), 3 * 96 * 96);
    /// ```
    pub fn apply(&self, image: &RgbImage, draws: &mut impl Draws) -> Vec<f32> {
        let image = self.crop.apply(image, draws);
        let image = match &self.flip {
            Some(flip) => flip.apply(image, draws),
            None => image,
        };
        let image = match &self.auto_augment {
            Some(augmentation) => augmentation.apply(&image, draws),
            None => image,
        };
        let [height, width] = [image.height() as usize, image.width() as usize];
        let mut values = normalize(&image, self.mean, self.std);
        if let Some(erasing) = &self.erasing {
            erasing.apply(&mut values, [IMAGE_CHANNELS, height, width], draws);
        }
        values
    }
}

/// `Normalize(mean, std)(to_tensor(image))`: `[3, height, width]`.
fn normalize(image: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let pixels = (image.width() * image.height()) as usize;
    let mut values = vec![0f32; IMAGE_CHANNELS * pixels];
    for (index, pixel) in image.pixels().enumerate() {
        for channel in 0..IMAGE_CHANNELS {
            values[channel * pixels + index] =
                normalized(pixel.0[channel], mean[channel], std[channel]);
        }
    }
    values
}

impl ImageFolder {
    /// Decodes and transforms the images at `indices` in parallel: a batch of images
    /// `[n, 3, size, size]` and their labels `[n]`. Image `i`'s random draws come from
    /// [`SeededDraws::for_item`]`(seed, epoch, i)`: the same batch, seed and epoch give the
    /// same tensors whatever the thread count.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] or [`Error::Image`] for the first image that cannot be read or decoded.
    pub fn batch(
        &self,
        indices: &[usize],
        transform: &TrainTransform,
        seed: u64,
        epoch: u64,
        device: &Device,
    ) -> Result<(Tensor<4>, Tensor<1, Int>), Error> {
        let [height, width] = transform.crop.size;
        let images = indices
            .par_iter()
            .map(|&index| {
                let (path, _) = &self.samples()[index];
                let image = load_rgb_image(path)?;
                let mut draws = SeededDraws::for_item(seed, epoch, index as u64);
                Ok(transform.apply(&image, &mut draws))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let shape = [
            indices.len(),
            IMAGE_CHANNELS,
            height as usize,
            width as usize,
        ];
        Ok((
            Tensor::from_data(TensorData::new(images.concat(), shape), device),
            self.labels(indices, device),
        ))
    }

    /// Decodes `indices` with torchvision's evaluation transform (resize, center crop,
    /// normalize), in parallel: `[n, 3, crop, crop]` and the labels `[n]`.
    ///
    /// # Errors
    ///
    /// As [`batch`](Self::batch).
    pub fn eval_batch(
        &self,
        indices: &[usize],
        transform: &EvalTransform,
        device: &Device,
    ) -> Result<(Tensor<4>, Tensor<1, Int>), Error> {
        let images = indices
            .par_iter()
            .map(|&index| {
                let image = load_rgb_image(&self.samples()[index].0)?;
                Ok(transform.values(&image))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let crop = transform.crop_size as usize;
        let shape = [indices.len(), IMAGE_CHANNELS, crop, crop];
        Ok((
            Tensor::from_data(TensorData::new(images.concat(), shape), device),
            self.labels(indices, device),
        ))
    }

    fn labels(&self, indices: &[usize], device: &Device) -> Tensor<1, Int> {
        let labels: Vec<i64> = indices
            .iter()
            .map(|&index| self.samples()[index].1 as i64)
            .collect();
        Tensor::from_data(TensorData::new(labels, [indices.len()]), device)
    }
}
