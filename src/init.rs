//! torchvision's weight initialization for MobileNets (`models/mobilenetv2.py` and
//! `models/mobilenetv3.py`, the loop at the end of `__init__`):
//!
//! ```text
//! Conv2d:      kaiming_normal_(weight, mode="fan_out"); zeros_(bias)
//! BatchNorm2d: ones_(weight); zeros_(bias)          (burn's defaults already)
//! Linear:      normal_(weight, 0, 0.01); zeros_(bias)
//! ```
//!
//! PyTorch's `fan_out` for a convolution weight `[out, in / groups, kh, kw]` is
//! `out * kh * kw`, groups not divided out; burn's initializers divide by the groups, which for a
//! depthwise convolution would draw weights `sqrt(out)` times too large. So the standard
//! deviation is computed here and handed to burn as a plain normal.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

/// Standard deviation of torchvision's `Linear` weights.
pub(crate) const LINEAR_STD: f64 = 0.01;

/// A convolution initialized as torchvision initializes a MobileNet's: He-normal over the
/// fan-out (`std = sqrt(2 / (out_channels * kh * kw))`), zero bias.
pub(crate) fn conv2d(config: Conv2dConfig, device: &Device) -> Conv2d {
    let fan_out = config.channels[1] * config.kernel_size[0] * config.kernel_size[1];
    let std = (2.0 / fan_out.max(1) as f64).sqrt();
    let conv = config
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device);
    Conv2d {
        bias: conv.bias.map(zeroed),
        ..conv
    }
}

/// A linear layer initialized as torchvision's MobileNet classifiers: `normal(0, 0.01)` weights,
/// zero bias.
pub(crate) fn linear(d_input: usize, d_output: usize, device: &Device) -> Linear {
    let linear = LinearConfig::new(d_input, d_output)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: LINEAR_STD,
        })
        .init(device);
    Linear {
        bias: linear.bias.map(zeroed),
        ..linear
    }
}

/// The same parameter (id, gradient requirement) holding zeros.
fn zeroed(bias: Param<Tensor<1>>) -> Param<Tensor<1>> {
    bias.map(|bias| {
        Tensor::zeros(bias.dims(), &bias.device()).set_require_grad(bias.is_require_grad())
    })
}
