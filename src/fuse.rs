//! Folding batch normalization into the convolution before it, for inference.
//!
//! In inference mode BatchNorm is an affine map per channel, `y = (x - mean) * s + beta` with
//! `s = gamma / sqrt(var + eps)`; after a convolution it folds into the convolution's weights
//! (`W * s`) and bias (`(b - mean) * s + beta`), which removes one pass over every activation.

use burn::module::Param;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

/// `conv` followed by `norm` (inference mode), as one convolution with a bias.
pub(crate) fn fold_batch_norm(conv: Conv2d, norm: &BatchNorm) -> Conv2d {
    let weight = conv.weight.val();
    let device = weight.device();
    let [out_channels, ..] = weight.dims();
    let mean = norm.running_mean.value().to_device(&device);
    let variance = norm.running_var.value().to_device(&device);
    let scale = norm.gamma.val() / (variance + norm.epsilon).sqrt();
    let bias = match &conv.bias {
        Some(bias) => bias.val(),
        None => Tensor::zeros([out_channels], &device),
    };
    let bias = (bias - mean) * scale.clone() + norm.beta.val();
    let weight = weight * scale.reshape([out_channels, 1, 1, 1]);
    // Detached: the folded values are new leaves, so a model on an autodiff device fuses too
    // (a parameter cannot be made from an intermediate of a recorded graph).
    Conv2d {
        weight: Param::from_tensor(weight.detach()),
        bias: Some(Param::from_tensor(bias.detach())),
        ..conv
    }
}

/// `conv` and its optional batch norm (taken) as one convolution and no norm: the norm folded
/// in when there is one, as every layer's `fuse` does.
pub(crate) fn fold_optional_batch_norm(
    conv: Conv2d,
    norm: Option<BatchNorm>,
) -> (Conv2d, Option<BatchNorm>) {
    match norm {
        Some(norm) => (fold_batch_norm(conv, &norm), None),
        None => (conv, None),
    }
}

/// `conv` followed by a per-output-channel scale (a layer scale's `gamma`), as one
/// convolution: each output channel's weights and bias multiplied by its scale.
pub(crate) fn scale_output_channels(conv: Conv2d, scale: &Tensor<1>) -> Conv2d {
    let weight = conv.weight.val();
    let [out_channels, ..] = weight.dims();
    let scale = scale.clone().to_device(&weight.device());
    let weight = weight * scale.clone().reshape([out_channels, 1, 1, 1]);
    let bias = conv.bias.as_ref().map(|bias| bias.val() * scale);
    // Detached, as in `fold_batch_norm`.
    Conv2d {
        weight: Param::from_tensor(weight.detach()),
        bias: bias.map(|bias| Param::from_tensor(bias.detach())),
        ..conv
    }
}
