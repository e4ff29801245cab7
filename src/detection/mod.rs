//! Object detection with a MobileNetV3 backbone: torchvision's SSDLite320.

mod anchors;
mod postprocess;
mod ssdlite;
mod summary;
mod transform;

pub use anchors::DefaultBoxes;
pub use postprocess::{Detection, Detections, PostprocessOptions};
pub use ssdlite::{
    PredictionBlock, SSDLITE_NORM, SsdLite, SsdLiteBackbone, SsdLiteBackboneConfig, SsdLiteConfig,
    SsdLiteHeadOutput,
};

/// An 8-bit RGB image as [`SsdLite::detect`] takes it: `[3, height, width]`, values in
/// `[0, 1]` (torchvision's `to_tensor`). Feature `pretrained`.
///
/// ```
/// use burn::tensor::Device;
/// use mobilenet_burn::detection::image_to_tensor;
/// use mobilenet_burn::pretrained::RgbImage;
///
/// let image = RgbImage::from_pixel(4, 2, image::Rgb([255, 0, 51]));
/// let tensor = image_to_tensor(&image, &Device::flex());
/// assert_eq!(tensor.dims(), [3, 2, 4]);
/// let red: Vec<f32> = tensor.into_data().convert::<f32>().try_to_vec().unwrap();
/// assert_eq!((red[0], red[8], red[16]), (1.0, 0.0, 0.2));
/// ```
#[cfg(feature = "pretrained")]
pub fn image_to_tensor(
    image: &image::RgbImage,
    device: &burn::tensor::Device,
) -> burn::tensor::Tensor<3> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let mut values = vec![0.0f32; 3 * height * width];
    for (x, y, pixel) in image.enumerate_pixels() {
        for (channel, &value) in pixel.0.iter().enumerate() {
            values[(channel * height + y as usize) * width + x as usize] = f32::from(value) / 255.0;
        }
    }
    burn::tensor::Tensor::from_data(
        burn::tensor::TensorData::new(values, [3, height, width]),
        device,
    )
}
