//! The evaluation transform of torchvision's classification weights (`weights.transforms()`,
//! an `ImageClassification`) on images decoded by the `image` crate: resize the shorter side
//! (Pillow's antialiased bilinear, bit for bit), center-crop, scale to `[0, 1]`, normalize.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;

use super::resize::resize;
use super::weights::EvalTransform;
use crate::error::io_error;
use crate::{Error, IMAGE_CHANNELS};

/// `Normalize(mean, std)(to_tensor(pixel))` for one 8-bit value, with torchvision's `f32`
/// operations: divide by 255, subtract, divide.
#[inline]
pub(crate) fn normalized(pixel: u8, mean: f32, std: f32) -> f32 {
    (f32::from(pixel) / 255.0 - mean) / std
}

/// Decodes an image file of any format the `image` crate reads (PNG, JPEG, GIF, BMP, TIFF,
/// WebP, ...) and converts it to 8-bit RGB: grayscale is replicated, alpha dropped.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read, [`Error::Image`] if it cannot be decoded.
pub fn load_rgb_image(path: impl AsRef<Path>) -> Result<RgbImage, Error> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let image = image::load_from_memory(&bytes).map_err(|error| Error::Image {
        path: path.to_path_buf(),
        reason: error.to_string(),
    })?;
    Ok(image.to_rgb8())
}

/// Writes an RGB image to `path` in the format its extension names (PNG, JPEG, ...), atomically:
/// the picture is written beside `path` and renamed over it once complete, so that `path` never
/// holds a half-written file (and an existing one stays as it was if writing fails).
///
/// # Errors
///
/// [`Error::Save`] naming `path`: an extension the `image` crate does not write, or a directory
/// that cannot be written.
///
/// ```
/// use mobilenet_burn::pretrained::{RgbImage, save_rgb_image};
///
/// let dir = std::env::temp_dir().join(format!("save-rgb-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let image = RgbImage::from_pixel(4, 3, [200, 10, 30].into());
/// save_rgb_image(&image, dir.join("red.png"))?;
/// assert!(save_rgb_image(&image, dir.join("red.unknown-format")).is_err());
/// // Nothing but the finished picture is left behind.
/// assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), mobilenet_burn::Error>(())
/// ```
pub fn save_rgb_image(image: &RgbImage, path: impl AsRef<Path>) -> Result<(), Error> {
    let path = path.as_ref();
    let format = image::ImageFormat::from_path(path).map_err(|error| Error::Save {
        path: path.to_path_buf(),
        reason: error.to_string(),
    })?;
    crate::checkpoint::write_atomically(path, |temporary| {
        image
            .save_with_format(temporary, format)
            .map_err(|error| error.to_string())
    })
}

/// Python's `int(size * long / short)`: the long side after resizing the short one to `size`.
fn scaled_long_side(size: u32, long: u32, short: u32) -> u32 {
    (f64::from(size) * f64::from(long) / f64::from(short)) as u32
}

impl EvalTransform {
    /// Output size `(width, height)` of the resize step for an image of `width x height`
    /// (torchvision's `_compute_resized_output_size` with one size).
    pub fn resized_size(&self, width: u32, height: u32) -> (u32, u32) {
        let size = self.resize_size;
        if width <= height {
            (size, scaled_long_side(size, height, width))
        } else {
            (scaled_long_side(size, width, height), size)
        }
    }

    /// Applies the transform to an RGB image.
    ///
    /// # Shapes
    /// - output: `[3, crop_size, crop_size]`
    pub fn apply(&self, image: &RgbImage, device: &Device) -> Tensor<3> {
        let crop = self.crop_size as usize;
        Tensor::from_data(
            TensorData::new(self.values(image), [IMAGE_CHANNELS, crop, crop]),
            device,
        )
    }

    /// [`apply`](Self::apply)'s values, `[3, crop_size, crop_size]` in row-major order.
    pub(crate) fn values(&self, image: &RgbImage) -> Vec<f32> {
        let (width, height) = self.resized_size(image.width(), image.height());
        let resized = resize(image, width.max(1), height.max(1), self.interpolation);
        let crop = self.crop_size as usize;
        // torchvision's `center_crop`: offset `round((size - crop) / 2)`, Python's round (half
        // to even); an image smaller than the crop is zero-padded, `(crop - size) // 2` before.
        let offset = |size: u32| -> i64 {
            if self.crop_size <= size {
                (f64::from(size - self.crop_size) / 2.0).round_ties_even() as i64
            } else {
                -(i64::from(self.crop_size - size) / 2)
            }
        };
        let (left, top) = (offset(resized.width()), offset(resized.height()));
        let mut values = vec![0f32; IMAGE_CHANNELS * crop * crop];
        for channel in 0..IMAGE_CHANNELS {
            let (mean, std) = (self.mean[channel], self.std[channel]);
            for y in 0..crop {
                for x in 0..crop {
                    let (source_x, source_y) = (x as i64 + left, y as i64 + top);
                    let inside = (0..i64::from(resized.width())).contains(&source_x)
                        && (0..i64::from(resized.height())).contains(&source_y);
                    let pixel = if inside {
                        resized.get_pixel(source_x as u32, source_y as u32).0[channel]
                    } else {
                        0
                    };
                    values[(channel * crop + y) * crop + x] = normalized(pixel, mean, std);
                }
            }
        }
        values
    }

    /// Reads an image file and applies the transform, as a batch of one.
    ///
    /// # Shapes
    /// - output: `[1, 3, crop_size, crop_size]`
    ///
    /// # Errors
    ///
    /// As [`load_rgb_image`].
    pub fn apply_file(&self, path: impl AsRef<Path>, device: &Device) -> Result<Tensor<4>, Error> {
        Ok(self.apply(&load_rgb_image(path)?, device).unsqueeze())
    }

    /// Reads image files and applies the transform to each, as one batch.
    ///
    /// # Shapes
    /// - output: `[paths.len(), 3, crop_size, crop_size]`
    ///
    /// # Errors
    ///
    /// As [`load_rgb_image`], for the first file that fails; [`Error::InvalidInput`] for an
    /// empty list.
    pub fn apply_files<P: AsRef<Path>>(
        &self,
        paths: &[P],
        device: &Device,
    ) -> Result<Tensor<4>, Error> {
        if paths.is_empty() {
            return Err(Error::InvalidInput {
                shape: vec![0],
                expected: "at least one image file".to_string(),
            });
        }
        let images = paths
            .iter()
            .map(|path| Ok(self.apply(&load_rgb_image(path)?, device)))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Tensor::stack(images, 0))
    }
}

#[cfg(test)]
mod tests {
    use crate::pretrained::MobileNetV2Weights;

    #[test]
    fn shorter_side_is_resized_and_long_side_truncated() {
        let transform = MobileNetV2Weights::ImageNet1kV1.info().transform;
        // 451 x 300: int(256 * 451 / 300) = int(384.85...) = 384.
        assert_eq!(transform.resized_size(451, 300), (384, 256));
        assert_eq!(transform.resized_size(300, 451), (256, 384));
        assert_eq!(transform.resized_size(500, 500), (256, 256));
    }
}
