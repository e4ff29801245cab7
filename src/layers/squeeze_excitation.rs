//! Squeeze-and-excitation, as MobileNetV3 uses it: torchvision's `ops.misc.SqueezeExcitation`
//! with ReLU inside and hard-sigmoid gating (Hu et al., <https://arxiv.org/abs/1709.01507>;
//! Howard et al., <https://arxiv.org/abs/1905.02244>, section 5.3).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};

use crate::init;
use crate::make_divisible::{CHANNEL_DIVISOR, make_divisible};
use crate::native::{self, Outcome};
use crate::{Activation, HardSigmoid};

/// MobileNetV3 squeezes to a quarter of the expanded channels (rounded to a multiple of 8).
pub const SQUEEZE_FACTOR: usize = 4;

/// Configuration of [`SqueezeExcitation`].
///
/// ```
/// use mobilenet_burn::SqueezeExcitationConfig;
///
/// // A squeeze to a quarter, as MobileNetV3 does, and one of one's own.
/// assert_eq!(SqueezeExcitationConfig::mobilenet_v3(72).squeeze_channels, 24);
/// let own = SqueezeExcitationConfig::new(64, 16);
/// # let _ = own;
/// ```
#[derive(Config, Debug)]
pub struct SqueezeExcitationConfig {
    /// Channels of the input, and of the gate.
    pub channels: usize,
    /// Channels of the bottleneck between the two 1x1 convolutions.
    pub squeeze_channels: usize,
}

impl SqueezeExcitationConfig {
    /// MobileNetV3's squeeze width for `channels`: `make_divisible(channels / 4, 8)`.
    ///
    /// ```
    /// use mobilenet_burn::SqueezeExcitationConfig;
    ///
    /// // torchvision's V3-Large: 72 -> 24, 120 -> 32, 960 -> 240.
    /// for (channels, squeeze) in [(72, 24), (120, 32), (960, 240)] {
    ///     assert_eq!(SqueezeExcitationConfig::mobilenet_v3(channels).squeeze_channels, squeeze);
    /// }
    /// ```
    pub fn mobilenet_v3(channels: usize) -> Self {
        Self::new(
            channels,
            make_divisible((channels / SQUEEZE_FACTOR) as f64, CHANNEL_DIVISOR),
        )
    }

    /// Builds the layer.
    ///
    /// # Panics
    ///
    /// Panics if a channel count is zero (burn's convolution check).
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::SqueezeExcitationConfig;
    ///
    /// let se = SqueezeExcitationConfig::mobilenet_v3(96).init(&Device::flex());
    /// assert_eq!(se.fc1.weight.dims(), [24, 96, 1, 1]);
    /// ```
    pub fn init(&self, device: &Device) -> SqueezeExcitation {
        let conv_1x1 = |channels_in, channels_out| {
            init::conv2d(
                Conv2dConfig::new([channels_in, channels_out], [1, 1]),
                device,
            )
        };
        SqueezeExcitation {
            fc1: conv_1x1(self.channels, self.squeeze_channels),
            fc2: conv_1x1(self.squeeze_channels, self.channels),
            scale_activation: HardSigmoid::default(),
        }
    }
}

/// Channel attention: average-pool to one value per channel, two 1x1 convolutions (ReLU
/// between), hard-sigmoid, and scale the input by the result.
///
/// Parameters are stored under torchvision's keys `fc1` and `fc2`.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::SqueezeExcitationConfig;
///
/// let device = Device::flex();
/// let se = SqueezeExcitationConfig::mobilenet_v3(40).init(&device);
/// let y = se.forward(Tensor::ones([1, 40, 7, 7], &device));
/// assert_eq!(y.dims(), [1, 40, 7, 7]);
/// ```
#[derive(Module, Debug)]
pub struct SqueezeExcitation {
    /// Squeeze: weight `[squeeze_channels, channels, 1, 1]`, bias `[squeeze_channels]`.
    pub fc1: Conv2d,
    /// Excite: weight `[channels, squeeze_channels, 1, 1]`, bias `[channels]`.
    pub fc2: Conv2d,
    /// The gate, PyTorch's hard-sigmoid.
    pub scale_activation: HardSigmoid,
}

impl SqueezeExcitation {
    /// Scales each channel of `x` by its learned gate.
    ///
    /// # Shapes
    /// - input: `[batch, channels, height, width]`
    /// - output: the input's shape
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::SqueezeExcitationConfig;
    ///
    /// let device = Device::flex();
    /// let se = SqueezeExcitationConfig::new(16, 8).init(&device);
    /// // The gate lies in [0, 1]: an input of zeros stays zeros.
    /// let y = se.forward(Tensor::zeros([2, 16, 5, 5], &device));
    /// assert_eq!(y.abs().sum().into_scalar::<f32>(), 0.0);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // On burn-flex, a native kernel scales the feature map in place.
        let x = match native::squeeze_excitation(self, x) {
            Outcome::Computed(y) => return y,
            Outcome::Declined(x) => x,
        };
        // In training on burn-flex, one differentiable operation of the training kernels.
        if let Some(y) = native::training::squeeze_excitation(self, &x) {
            return y;
        }
        let scale = adaptive_avg_pool2d(x.clone(), [1, 1]);
        let scale = self.fc1.forward(scale);
        let scale = Activation::ReLU.forward(scale);
        let scale = self.fc2.forward(scale);
        let scale = self.scale_activation.forward(scale);
        x * scale
    }
}
