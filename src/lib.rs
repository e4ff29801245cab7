//! MobileNetV2 and MobileNetV3 (Large and Small) for [burn](https://burn.dev), exact to
//! torchvision.
//!
//! - Models: [`MobileNetV2`] ([Sandler et al., 2018](https://arxiv.org/abs/1801.04381)) and
//!   [`MobileNetV3`] Large, Small and their minimal forms
//!   ([Howard et al., 2019](https://arxiv.org/abs/1905.02244)), built from configs that mirror
//!   torchvision's `mobilenet_v2`, `mobilenet_v3_large` and `mobilenet_v3_small` arguments.
//! - Blocks: [`Conv2dNormActivation`], [`InvertedResidual`], [`SqueezeExcitation`],
//!   [`HardSwish`], [`HardSigmoid`], each with its config, and [`make_divisible`]. The
//!   architecture tables are typed constant data in [`tables`]; a custom table builds a custom
//!   network.
//! - Weights: parameter paths equal torchvision's `state_dict` keys, so
//!   [`MobileNetV3::load_torchvision`] reads a torchvision `.pth` or `.safetensors` file and gives
//!   the same logits. Loading is strict and every mismatch is reported.
//!
//! One model definition serves every backend: the [`Device`](burn::tensor::Device) a tensor
//! lives on picks it (`flex`, `ndarray` or `wgpu`, as enabled by this crate's features).
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use mobilenet_burn::MobileNetV3Config;
//!
//! let device = Device::flex();
//! let model = MobileNetV3Config::large().with_width_mult(0.5).init(&device);
//! let image = Tensor::zeros([1, 3, 96, 96], &device);
//! let logits = model.forward(image);
//! assert_eq!(logits.dims(), [1, 1000]);
//! ```
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod checkpoint;
#[cfg(feature = "pretrained")]
pub mod data;
pub mod detection;
mod error;
mod fuse;
mod init;
#[cfg(feature = "flex")]
mod kernels;
pub mod layers;
mod make_divisible;
pub mod models;
pub mod native;
#[cfg(feature = "pretrained")]
pub mod pretrained;
pub mod segmentation;
mod summary;
mod torch_paths;
pub mod training;

pub use checkpoint::{num_learnable_params, torchvision_state_dict_shapes};
pub use error::{Error, MismatchReport, ShapeMismatch};
pub use layers::activation::{
    Activation, HardSigmoid, HardSigmoidConfig, HardSwish, HardSwishConfig,
};
pub use layers::conv_norm_act::{BatchNormSpec, Conv2dNormActivation, Conv2dNormActivationConfig};
pub use layers::inverted_residual::{BlockLayout, InvertedResidual, InvertedResidualConfig};
pub use layers::squeeze_excitation::{SqueezeExcitation, SqueezeExcitationConfig};
pub use make_divisible::{CHANNEL_DIVISOR, make_divisible};
pub use models::feature_info::{FeatureExtractor, FeatureInfo, FeatureLocation};
pub use models::features::Features;
pub use models::mobilenet_v2::{MobileNetV2, MobileNetV2Config};
pub use models::mobilenet_v3::{MobileNetV3, MobileNetV3Config};
pub use models::mobilenet_v4::{MobileNetV4, MobileNetV4Config, MobileNetV4FeatureExtractor};
pub use models::tables;
pub use summary::{LayerSummary, ModelSummary};

/// Channels of the images every model takes (RGB).
pub const IMAGE_CHANNELS: usize = 3;

/// The README's code runs as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
