//! Activations of the MobileNets, numerically equal to PyTorch's: `ReLU`, `ReLU6`, `Hardswish`
//! and `Hardsigmoid` (torch.nn), as the Searching for MobileNetV3 paper
//! (<https://arxiv.org/abs/1905.02244>, section 5.2) defines h-swish and h-sigmoid, and the
//! exact (erf) `GELU` of MobileNetV4-Hybrid-Large.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, hard_swish, relu};
use serde::{Deserialize, Serialize};

/// PyTorch's hard-sigmoid slope: `relu6(x + 3) / 6` is `clamp(x / 6 + 1/2, 0, 1)`.
const HARD_SIGMOID_SLOPE: f64 = 1.0 / 6.0;
/// Where ReLU6 saturates.
const RELU6_MAX: f32 = 6.0;
/// PyTorch's hard-sigmoid offset.
const HARD_SIGMOID_OFFSET: f64 = 0.5;

/// Which nonlinearity a layer applies. An enum rather than torchvision's `"RE"`/`"HS"` strings,
/// so that a typo is a compile error rather than a silent ReLU.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::Activation;
///
/// let x = Tensor::<1>::from_floats([-4.0, -1.0, 0.0, 2.0, 7.0], &Device::flex());
/// let relu6 = Activation::ReLU6.forward(x.clone()).into_data();
/// assert_eq!(relu6.to_vec::<f32>().unwrap(), [0.0, 0.0, 0.0, 2.0, 6.0]);
/// // h-swish: x * relu6(x + 3) / 6
/// let hswish = Activation::HardSwish.forward(x).into_data();
/// assert!((hswish.to_vec::<f32>().unwrap()[3] - 2.0 * 5.0 / 6.0).abs() < 1e-6);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Activation {
    /// `max(x, 0)`.
    ReLU,
    /// `min(max(x, 0), 6)`, MobileNetV2's activation.
    ReLU6,
    /// `x * relu6(x + 3) / 6`, MobileNetV3's h-swish.
    HardSwish,
    /// `x * Φ(x)` with the exact normal CDF, `0.5 * x * (1 + erf(x / √2))`: PyTorch's
    /// `nn.GELU()` (`approximate='none'`), timm's activation for MobileNetV4-Hybrid-Large.
    GELU,
    /// No activation (the linear bottleneck after a projection).
    Identity,
}

impl Activation {
    /// Applies the activation.
    ///
    /// # Shapes
    /// Any shape; the output has the input's shape.
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::Activation;
    ///
    /// let x = Tensor::<4>::ones([1, 8, 4, 4], &Device::flex()).mul_scalar(-2.0);
    /// let y = Activation::ReLU.forward(x);
    /// assert_eq!(y.dims(), [1, 8, 4, 4]);
    /// assert_eq!(y.sum().into_scalar::<f32>(), 0.0);
    /// ```
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::ReLU => relu(x),
            // `relu` then saturation rather than `clamp(0, 6)`: the same values, and on burn-flex
            // a two-sided clamp is about ten times slower than relu. The saturation is a mask
            // fill at `x >= 6` (what `clamp_max` does at `x > 6`), so that the gradient at
            // exactly 6 is 0, as PyTorch's `hardtanh_backward` makes it.
            Activation::ReLU6 => {
                let saturated = x.clone().greater_equal_elem(RELU6_MAX);
                relu(x).mask_fill(saturated, RELU6_MAX)
            }
            Activation::HardSwish => hard_swish(x),
            Activation::GELU => gelu(x),
            Activation::Identity => x,
        }
    }
}

/// Configuration of [`HardSwish`]. It has no parameters; it exists so that every layer of this
/// crate is built the same way (`Config::new().init()`).
///
/// ```
/// use mobilenet_burn::{HardSwish, HardSwishConfig};
///
/// let layer: HardSwish = HardSwishConfig::new().init();
/// # let _ = layer;
/// ```
#[derive(Config, Debug)]
pub struct HardSwishConfig {}

impl HardSwishConfig {
    /// Builds the layer; see [`HardSwishConfig`] for an example.
    ///
    /// ```
    /// # use mobilenet_burn::HardSwishConfig;
    /// let h_swish = HardSwishConfig::new().init();
    /// # let _ = h_swish;
    /// ```
    pub fn init(&self) -> HardSwish {
        HardSwish
    }
}

/// PyTorch's `nn.Hardswish`: `x * relu6(x + 3) / 6`.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::HardSwish;
///
/// let x = Tensor::<1>::from_floats([-3.0, 0.0, 3.0], &Device::flex());
/// let y = HardSwish.forward(x).into_data().to_vec::<f32>().unwrap();
/// assert_eq!(y, [0.0, 0.0, 3.0]);
/// ```
#[derive(Module, Debug, Default)]
pub struct HardSwish;

impl HardSwish {
    /// Applies h-swish.
    ///
    /// # Shapes
    /// Any shape; the output has the input's shape.
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::HardSwish;
    ///
    /// let x = Tensor::<4>::zeros([2, 16, 7, 7], &Device::flex());
    /// assert_eq!(HardSwish.forward(x).dims(), [2, 16, 7, 7]);
    /// ```
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        Activation::HardSwish.forward(x)
    }
}

/// Configuration of [`HardSigmoid`].
///
/// The defaults are PyTorch's `nn.Hardsigmoid`, `relu6(x + 3) / 6`. burn's own
/// `HardSigmoidConfig` defaults to ONNX's slope of 0.2, which is not what torchvision's weights
/// were trained with.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::HardSigmoidConfig;
///
/// let x = Tensor::<1>::from_floats([-5.0, 0.0, 1.5, 5.0], &Device::flex());
/// let pytorch = HardSigmoidConfig::new().init();
/// let onnx = HardSigmoidConfig::new().with_slope(0.2).init();
/// assert_eq!(pytorch.forward(x.clone()).into_data().to_vec::<f32>().unwrap(), [0.0, 0.5, 0.75, 1.0]);
/// let onnx = onnx.forward(x).into_data().to_vec::<f32>().unwrap();
/// assert!((onnx[2] - 0.8).abs() < 1e-6); // 0.2 * 1.5 + 0.5
/// ```
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
    /// Builds the layer; see [`HardSigmoidConfig`] for an example.
    ///
    /// ```
    /// # use mobilenet_burn::HardSigmoidConfig;
    /// let gate = HardSigmoidConfig::new().init();
    /// assert_eq!(gate.slope, 1.0 / 6.0);
    /// ```
    pub fn init(&self) -> HardSigmoid {
        HardSigmoid {
            slope: self.slope,
            offset: self.offset,
        }
    }
}

/// Hard-sigmoid, `clamp(slope * x + offset, 0, 1)`; with the default config, PyTorch's
/// `nn.Hardsigmoid`.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::HardSigmoid;
///
/// let x = Tensor::<1>::from_floats([-3.0, 0.0, 3.0], &Device::flex());
/// let y = HardSigmoid::default().forward(x).into_data().to_vec::<f32>().unwrap();
/// assert_eq!(y, [0.0, 0.5, 1.0]);
/// ```
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
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::HardSigmoid;
    ///
    /// let gate = HardSigmoid::default().forward(Tensor::<4>::zeros([1, 24, 1, 1], &Device::flex()));
    /// assert_eq!(gate.dims(), [1, 24, 1, 1]);
    /// ```
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        // `clamp(y, 0, 1)` as `relu` and a mask fill at `y >= 1`, so that the gradient is 0 at
        // both ends of the ramp, as PyTorch's `hardsigmoid_backward` makes it (burn's clamp
        // passes it at the ends). The gate acts on `[batch, channels, 1, 1]`: nothing to speed.
        let y = x.mul_scalar(self.slope).add_scalar(self.offset);
        let saturated = y.clone().greater_equal_elem(1.0);
        relu(y).mask_fill(saturated, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// Inputs on both sides of every kink and on the kinks themselves.
    const INPUTS: [f32; 9] = [-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.5, 6.0, 7.0];

    /// The gradient of `f(x).sum()` at [`INPUTS`], by burn's autodiff.
    fn gradient(f: impl Fn(Tensor<1>) -> Tensor<1>) -> Vec<f32> {
        #[cfg(feature = "flex")]
        let device = Device::flex().autodiff();
        #[cfg(not(feature = "flex"))]
        #[allow(deprecated)]
        let device = Device::ndarray().autodiff();
        let x = Tensor::<1>::from_data(TensorData::new(INPUTS.to_vec(), [INPUTS.len()]), &device)
            .require_grad();
        let grads = f(x.clone()).sum().backward();
        x.grad(&grads)
            .expect("a gradient")
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32")
    }

    /// The gradients PyTorch defines (ATen's `threshold_backward`, `hardtanh_backward`,
    /// `hardswish_backward` and `hardsigmoid_backward`), kinks included: ReLU passes where
    /// `x > 0`; ReLU6 where `0 < x < 6`; h-swish is 0 below -3, `x / 3 + 1/2` on [-3, 3] and 1
    /// above; hard-sigmoid `1/6` on the open (-3, 3), 0 elsewhere. The training parity fixtures
    /// keep activation inputs away from kinks, so these masks are checked here.
    #[test]
    fn gradients_are_pytorchs_on_both_sides_of_every_kink() {
        let relu = gradient(|x| Activation::ReLU.forward(x));
        assert_eq!(relu, [0., 0., 0., 0., 1., 1., 1., 1., 1.]);
        let relu6 = gradient(|x| Activation::ReLU6.forward(x));
        assert_eq!(relu6, [0., 0., 0., 0., 1., 1., 1., 0., 0.]);
        let hard_swish = gradient(|x| Activation::HardSwish.forward(x));
        let expected = [0., -0.5, 0., 0.5, 1., 1.5, 1., 1., 1.];
        for (got, want) in hard_swish.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "h-swish: {hard_swish:?}");
        }
        let hard_sigmoid = gradient(|x| HardSigmoid::default().forward(x));
        let sixth = 1.0 / 6.0;
        let expected = [0., 0., sixth, sixth, sixth, 0., 0., 0., 0.];
        for (got, want) in hard_sigmoid.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "hard-sigmoid: {hard_sigmoid:?}");
        }
    }
}
