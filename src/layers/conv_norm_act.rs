//! Convolution, batch normalization and activation in one block: torchvision's
//! `ops.misc.Conv2dNormActivation`, the stem, expansion, depthwise and head layer of every
//! MobileNet.

use burn::config::Config;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::batch_norm::batch_norm_act;
use crate::Activation;
use crate::fuse::fold_optional_batch_norm;
use crate::init;
use crate::native::{self, Outcome};
use crate::torch_paths::torchvision_module;

/// The two constants of a batch normalization layer that differ between the MobileNets.
///
/// ```
/// use mobilenet_burn::{BatchNormSpec, Conv2dNormActivationConfig};
///
/// // A V3-style block: eps 1e-3, but the faster running statistics of PyTorch's default.
/// let spec = BatchNormSpec { momentum: 0.1, ..BatchNormSpec::MOBILENET_V3 };
/// let config = Conv2dNormActivationConfig::new(16, 32).with_norm(Some(spec));
/// assert_eq!(config.norm.unwrap().epsilon, 1e-3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchNormSpec {
    /// Added to the variance before its square root.
    pub epsilon: f64,
    /// Weight of the newest batch in the running statistics (PyTorch's convention).
    pub momentum: f64,
}

impl BatchNormSpec {
    /// PyTorch's `BatchNorm2d` defaults, used by MobileNetV2: `eps = 1e-5`, `momentum = 0.1`.
    pub const PYTORCH_DEFAULT: Self = Self {
        epsilon: 1e-5,
        momentum: 0.1,
    };
    /// MobileNetV3's `eps = 1e-3`, `momentum = 0.01` (torchvision's
    /// `partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)`).
    pub const MOBILENET_V3: Self = Self {
        epsilon: 1e-3,
        momentum: 0.01,
    };

    pub(crate) fn init(&self, channels: usize, device: &Device) -> BatchNorm {
        BatchNormConfig::new(channels)
            .with_epsilon(self.epsilon)
            .with_momentum(self.momentum)
            .init(device)
    }
}

/// Configuration of [`Conv2dNormActivation`].
///
/// ```
/// use mobilenet_burn::{Activation, BatchNormSpec, Conv2dNormActivationConfig};
///
/// // MobileNetV3's stem: 3 -> 16 channels, 3x3, stride 2, h-swish.
/// let stem = Conv2dNormActivationConfig::new(3, 16)
///     .with_stride(2)
///     .with_norm(Some(BatchNormSpec::MOBILENET_V3))
///     .with_activation(Activation::HardSwish);
/// // A depthwise 5x5 convolution over 72 channels.
/// let depthwise = Conv2dNormActivationConfig::new(72, 72).with_kernel_size(5).with_groups(72);
/// # let _ = (stem, depthwise);
/// ```
#[derive(Config, Debug)]
pub struct Conv2dNormActivationConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel size. Default: 3.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Stride. Default: 1.
    #[config(default = 1)]
    pub stride: usize,
    /// Dilation. Default: 1.
    #[config(default = 1)]
    pub dilation: usize,
    /// Groups: 1 for a full convolution, `in_channels` for a depthwise one. Default: 1.
    #[config(default = 1)]
    pub groups: usize,
    /// Batch normalization after the convolution; `None` for none, in which case the
    /// convolution gets a bias (torchvision's rule: a bias only where no norm follows).
    /// Default: PyTorch's defaults.
    #[config(default = "Some(BatchNormSpec::PYTORCH_DEFAULT)")]
    pub norm: Option<BatchNormSpec>,
    /// Activation after the normalization. Default: ReLU.
    #[config(default = "Activation::ReLU")]
    pub activation: Activation,
}

impl Conv2dNormActivationConfig {
    /// Builds the block with torchvision's padding, `(kernel_size - 1) / 2 * dilation` on every
    /// side, which keeps `ceil(size / stride)` pixels.
    ///
    /// # Panics
    ///
    /// Panics, as burn's `Conv2dConfig::init` does, if a channel count is zero or not divisible
    /// by `groups`, or if `kernel_size`, `stride` or `dilation` is zero.
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::Conv2dNormActivationConfig;
    ///
    /// let device = Device::flex();
    /// let block = Conv2dNormActivationConfig::new(3, 16).with_stride(2).init(&device);
    /// // Padding 1 on every side: ceil(15 / 2) = 8.
    /// assert_eq!(block.forward(Tensor::zeros([1, 3, 15, 15], &device)).dims(), [1, 16, 8, 8]);
    /// ```
    pub fn init(&self, device: &Device) -> Conv2dNormActivation {
        assert!(
            self.kernel_size > 0 && self.stride > 0 && self.dilation > 0,
            "Conv2dNormActivationConfig: kernel_size ({}), stride ({}) and dilation ({}) must be positive",
            self.kernel_size,
            self.stride,
            self.dilation
        );
        let padding = (self.kernel_size - 1) / 2 * self.dilation;
        let conv = Conv2dConfig::new(
            [self.in_channels, self.out_channels],
            [self.kernel_size, self.kernel_size],
        )
        .with_stride([self.stride, self.stride])
        .with_dilation([self.dilation, self.dilation])
        .with_groups(self.groups)
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_bias(self.norm.is_none());
        let conv = init::conv2d(conv, device);
        Conv2dNormActivation {
            conv,
            norm: self.norm.map(|spec| spec.init(self.out_channels, device)),
            activation: self.activation,
        }
    }
}

/// Convolution, optional batch normalization, activation.
///
/// Parameters are stored under torchvision's keys: the convolution at `0`, the norm at `1`.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::{Activation, Conv2dNormActivationConfig};
///
/// let device = Device::flex();
/// let pointwise = Conv2dNormActivationConfig::new(24, 96)
///     .with_kernel_size(1)
///     .with_activation(Activation::ReLU6)
///     .init(&device);
/// assert_eq!(pointwise.out_channels(), 96);
/// let y = pointwise.forward(Tensor::ones([2, 24, 14, 14], &device));
/// assert_eq!(y.dims(), [2, 96, 14, 14]);
/// ```
#[derive(Debug, Clone)]
pub struct Conv2dNormActivation {
    /// The convolution; weight `[out_channels, in_channels / groups, kernel_size, kernel_size]`.
    pub conv: Conv2d,
    /// Batch normalization over `out_channels`, if any.
    pub norm: Option<BatchNorm>,
    /// The activation.
    pub activation: Activation,
}

torchvision_module!(Conv2dNormActivation {
    children {
        conv: |_: &Self| "0".to_string(),
        norm: |_: &Self| "1".to_string(),
    }
    lists {}
    state { activation }
});

impl Conv2dNormActivation {
    /// Applies convolution, normalization and activation.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels, height, width]`
    /// - output: `[batch, out_channels, ceil(height / stride), ceil(width / stride)]`
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::Conv2dNormActivationConfig;
    ///
    /// let device = Device::flex();
    /// let block = Conv2dNormActivationConfig::new(8, 8).with_groups(8).init(&device);
    /// let y = block.forward(Tensor::ones([1, 8, 10, 6], &device));
    /// assert_eq!(y.dims(), [1, 8, 10, 6]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_norm_activation(&self.conv, self.norm.as_ref(), self.activation, x)
    }

    /// Folds the batch norm into the convolution (for inference): the result has no norm and
    /// a convolution with bias, and computes the same function. A block without norm is
    /// returned unchanged.
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor, Tolerance};
    /// use mobilenet_burn::Conv2dNormActivationConfig;
    ///
    /// let device = Device::flex();
    /// let block = Conv2dNormActivationConfig::new(4, 8).init(&device);
    /// let x = Tensor::random([1, 4, 9, 9], burn::tensor::Distribution::Default, &device);
    /// let before = block.forward(x.clone());
    /// let fused = block.fuse();
    /// assert!(fused.norm.is_none() && fused.conv.bias.is_some());
    /// fused.forward(x).into_data().assert_approx_eq::<f32>(&before.into_data(), Tolerance::default());
    /// ```
    pub fn fuse(self) -> Self {
        let (conv, norm) = fold_optional_batch_norm(self.conv, self.norm);
        Self { conv, norm, ..self }
    }

    /// Output channels; see [`Conv2dNormActivation`] for an example.
    ///
    /// ```
    /// # use mobilenet_burn::Conv2dNormActivationConfig;
    /// let block = Conv2dNormActivationConfig::new(3, 32).init(&burn::tensor::Device::flex());
    /// assert_eq!(block.out_channels(), 32);
    /// ```
    pub fn out_channels(&self) -> usize {
        self.conv.weight.shape()[0]
    }
}

/// A 1x1 expansion and the depthwise convolution that reads it, each as
/// [`conv_norm_activation`]: once both have their BatchNorm folded, a native kernel (burn-flex)
/// may run the two together, applying the expansion's bias and activation as the depthwise
/// convolution copies its input in (the same values, one pass over the expanded map fewer).
pub(crate) fn expansion_then_depthwise(
    (expand, expand_norm, expand_activation): (&Conv2d, Option<&BatchNorm>, Activation),
    (depthwise, depthwise_norm, depthwise_activation): (&Conv2d, Option<&BatchNorm>, Activation),
    x: Tensor<4>,
) -> Tensor<4> {
    let x = if expand_norm.is_none() && depthwise_norm.is_none() {
        match native::pointwise_depthwise(
            (expand, expand_activation),
            (depthwise, depthwise_activation),
            x,
        ) {
            Outcome::Computed(y) => return y,
            Outcome::Declined(x) => x,
        }
    } else {
        x
    };
    let y = conv_norm_activation(expand, expand_norm, expand_activation, x);
    conv_norm_activation(depthwise, depthwise_norm, depthwise_activation, y)
}

/// `activation(norm(conv(x)))`: [`Conv2dNormActivation::forward`] on its parts, for the heads
/// that torchvision stores as entries of a larger `nn.Sequential` (so under other keys).
pub(crate) fn conv_norm_activation(
    conv: &Conv2d,
    norm: Option<&BatchNorm>,
    activation: Activation,
    x: Tensor<4>,
) -> Tensor<4> {
    // Once BatchNorm is folded, a native kernel (burn-flex) may do all of it in one pass.
    let x = match norm {
        None => match native::conv2d(conv, activation, x, None) {
            Outcome::Computed(y) => return y,
            Outcome::Declined(x) => x,
        },
        Some(_) => x,
    };
    // In training on burn-flex, the convolution and the batch norm with its activation are
    // differentiable operations of the training kernels.
    let x = match native::training::conv(conv, &x) {
        Some(y) => y,
        None => conv.forward(x),
    };
    match norm {
        Some(norm) => batch_norm_act(norm, activation, x),
        None => activation.forward(x),
    }
}

/// A convolution with its bias and nothing after it (a classifier, a projection), on a native
/// kernel where one applies: [`conv_norm_activation`] without norm or activation.
pub(crate) fn conv_only(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    conv_norm_activation(conv, None, Activation::Identity, x)
}
