//! Semantic segmentation on a dilated MobileNetV3: torchvision's LR-ASPP
//! (`lraspp_mobilenet_v3_large`, the MobileNetV3 paper's head) and DeepLabV3
//! (`deeplabv3_mobilenet_v3_large`), with torchvision's keys, taps and interpolation.
//!
//! Both take a normalized image batch of any size and return per-pixel class logits at the
//! input's size (torchvision's `model(x)["out"]`): the backbone runs at output stride 16 (its
//! last stage dilated instead of strided), the head predicts at stride 16 (and 8 for LR-ASPP's
//! low-level branch), and the logits are resized bilinearly with `align_corners=False`.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use mobilenet_burn::segmentation::LrAsppConfig;
//!
//! let device = Device::flex();
//! let model = LrAsppConfig::mobilenet_v3_large(21).init(&device).fuse();
//! let logits = model.forward(Tensor::zeros([1, 3, 97, 130], &device));
//! assert_eq!(logits.dims(), [1, 21, 97, 130]);
//! ```

mod deeplabv3;
mod lraspp;
mod summary;

pub use deeplabv3::{Aspp, AsppPooling, DeepLabHead, DeepLabV3, DeepLabV3Config, FcnHead};
pub use lraspp::{LrAspp, LrAsppConfig};

use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use crate::layers::conv_norm_act::conv_norm_activation;
use crate::models::config_checks::invalid;
use crate::native::{self, Outcome};
use crate::{Activation, Error, Features, MobileNetV3Config};

/// The 21 classes of torchvision's segmentation weights (Pascal VOC's 20 and the background),
/// in the order of the logits' channels (torchvision's `_VOC_CATEGORIES`).
///
/// ```
/// use mobilenet_burn::segmentation::VOC_CATEGORIES;
///
/// assert_eq!((VOC_CATEGORIES.len(), VOC_CATEGORIES[0], VOC_CATEGORIES[15]), (21, "__background__", "person"));
/// ```
pub const VOC_CATEGORIES: [&str; 21] = [
    "__background__",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// The layers torchvision's segmentation builders tap, in its numbering of `features` (0 the
/// stem, `1..=n` the blocks, `n + 1` the last convolution): `stage_indices[-4]` (C2, output
/// stride 8: LR-ASPP's `low`, DeepLabV3's `aux`) and the last layer (C5: `high` / `out`).
/// `stage_indices` is the stem, every block whose table row strides, and the last layer, as
/// torchvision's `_is_cn` marks them (by the row's stride, dilated or not).
fn taps(backbone: &MobileNetV3Config) -> Result<(usize, usize), Error> {
    let last = backbone.blocks.len() + 1;
    let stage_indices: Vec<usize> = std::iter::once(0)
        .chain(
            backbone
                .blocks
                .iter()
                .enumerate()
                .filter(|(_, row)| row.stride > 1)
                .map(|(index, _)| index + 1),
        )
        .chain(std::iter::once(last))
        .collect();
    if stage_indices.len() < 4 {
        return Err(invalid(
            "backbone",
            format!("a table with {} strided blocks", stage_indices.len() - 2),
            "at least 2 strided blocks, for the stride-8 tap (torchvision's stage_indices[-4])",
        ));
    }
    Ok((stage_indices[stage_indices.len() - 4], last))
}

/// Output channels of backbone layer `layer` (torchvision's numbering).
fn layer_channels(features: &Features, layer: usize) -> usize {
    match layer {
        0 => features.stem.out_channels(),
        layer if layer <= features.blocks.len() => {
            features.blocks[layer - 1].project_conv.weight.dims()[0]
        }
        _ => features.out_channels(),
    }
}

/// torchvision's `F.interpolate(x, size, mode="bilinear", align_corners=False)`. A 1x1 map is
/// broadcast (every output is its value, as bilinear interpolation gives).
fn resize_bilinear(x: Tensor<4>, [height, width]: [usize; 2]) -> Tensor<4> {
    let [batch, channels, in_height, in_width] = x.dims();
    if [in_height, in_width] == [height, width] {
        return x;
    }
    if [in_height, in_width] == [1, 1] {
        return x.expand([batch, channels, height, width]);
    }
    let x = match native::resize_bilinear(x, [height, width]) {
        Outcome::Computed(y) => return y,
        Outcome::Declined(x) => x,
    };
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(false)
            .with_output_size([height, width]),
    )
}

/// A convolution, its optional batch norm and ReLU, stored as two entries of a larger
/// `nn.Sequential` (DeepLabHead's `1`, `2`; ASPPPooling's `1`, `2`; FCNHead's `0`, `1`).
fn conv_norm_relu(conv: &Conv2d, norm: Option<&BatchNorm>, x: Tensor<4>) -> Tensor<4> {
    conv_norm_activation(conv, norm, Activation::ReLU, x)
}
