//! Activations of the MobileNets, numerically equal to PyTorch's: `ReLU`, `ReLU6`, `Hardswish`
//! and `Hardsigmoid` (torch.nn), as the Searching for MobileNetV3 paper
//! (<https://arxiv.org/abs/1905.02244>, section 5.2) defines h-swish and h-sigmoid.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::{hard_sigmoid, hard_swish, relu};
use serde::{Deserialize, Serialize};

/// PyTorch's hard-sigmoid slope: `relu6(x + 3) / 6` is `clamp(x / 6 + 1/2, 0, 1)`.
const HARD_SIGMOID_SLOPE: f64 = 1.0 / 6.0;
/// PyTorch's hard-sigmoid offset.
const HARD_SIGMOID_OFFSET: f64 = 0.5;

/// Which nonlinearity a layer applies. An enum rather than torchvision's `"RE"`/`"HS"` strings,
/// so that a typo is a compile error rather than a silent ReLU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Activation {
    /// `max(x, 0)`.
    ReLU,
    /// `min(max(x, 0), 6)`, MobileNetV2's activation.
    ReLU6,
    /// `x * relu6(x + 3) / 6`, MobileNetV3's h-swish.
    HardSwish,
    /// No activation (the linear bottleneck after a projection).
    Identity,
}

impl Activation {
    /// Applies the activation.
    ///
    /// # Shapes
    /// Any shape; the output has the input's shape.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::ReLU => relu(x),
            // `relu(x).clamp_max(6)` rather than `clamp(0, 6)`: the same values, and on burn-flex
            // a two-sided clamp is about ten times slower than relu.
            Activation::ReLU6 => relu(x).clamp_max(6.0),
            Activation::HardSwish => hard_swish(x),
            Activation::Identity => x,
        }
    }
}

/// Configuration of [`HardSwish`]. It has no parameters; it exists so that every layer of this
/// crate is built the same way (`Config::new().init()`).
#[derive(Config, Debug)]
pub struct HardSwishConfig {}

impl HardSwishConfig {
    /// Builds the layer.
    pub fn init(&self) -> HardSwish {
        HardSwish
    }
}

/// PyTorch's `nn.Hardswish`: `x * relu6(x + 3) / 6`.
#[derive(Module, Debug, Default)]
pub struct HardSwish;

impl HardSwish {
    /// Applies h-swish.
    ///
    /// # Shapes
    /// Any shape; the output has the input's shape.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        Activation::HardSwish.forward(x)
    }
}

/// Configuration of [`HardSigmoid`].
///
/// The defaults are PyTorch's `nn.Hardsigmoid`, `relu6(x + 3) / 6`. burn's own
/// `HardSigmoidConfig` defaults to ONNX's slope of 0.2, which is not what torchvision's weights
/// were trained with.
#[derive(Config, Debug)]
pub struct HardSigmoidConfig {
    /// Slope of the linear part. Default: `1/6` (PyTorch).
    #[config(default = "HARD_SIGMOID_SLOPE")]
    pub slope: f64,
    /// Value at zero. Default: `0.5` (PyTorch).
    #[config(default = "HARD_SIGMOID_OFFSET")]
    pub offset: f64,
}

impl HardSigmoidConfig {
    /// Builds the layer.
    pub fn init(&self) -> HardSigmoid {
        HardSigmoid {
            slope: self.slope,
            offset: self.offset,
        }
    }
}

/// Hard-sigmoid, `clamp(slope * x + offset, 0, 1)`; with the default config, PyTorch's
/// `nn.Hardsigmoid`.
#[derive(Module, Debug)]
pub struct HardSigmoid {
    /// Slope of the linear part.
    pub slope: f64,
    /// Value at zero.
    pub offset: f64,
}

impl Default for HardSigmoid {
    fn default() -> Self {
        HardSigmoidConfig::new().init()
    }
}

impl HardSigmoid {
    /// Applies hard-sigmoid.
    ///
    /// # Shapes
    /// Any shape; the output has the input's shape.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        hard_sigmoid(x, self.slope, self.offset)
    }
}
