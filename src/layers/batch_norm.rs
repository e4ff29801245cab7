//! Batch normalization with PyTorch's training rule, for this crate's layers.
//!
//! burn 0.22.1's [`BatchNorm::forward`] updates `running_var` with the *biased* variance of the
//! batch (the one it normalizes with). PyTorch's `BatchNorm2d` (`torch.nn.functional.batch_norm`,
//! `aten/src/ATen/native/Normalization.cpp`) normalizes with the biased variance too, but updates
//! `running_var` with the *unbiased* one, `var * n / (n - 1)` for `n = batch * height * width`
//! values per channel. After one training step the two differ by `momentum * var / (n - 1)` per
//! channel; torchvision checkpoints fine-tuned here must evolve as they would in PyTorch, so every
//! batch norm of the crate's layers goes through [`batch_norm`] instead of `BatchNorm::forward`.
//!
//! The layer itself stays burn's [`BatchNorm`] (its fields, keys, `Param<Flag>` training switch
//! and running-state sharing): only the forward differs, and only in training.

use burn::nn::BatchNorm;
use burn::tensor::Tensor;
use burn::tensor::module::batch_norm_train;

use crate::Activation;
use crate::native;

/// `norm` applied to `x` as PyTorch's `BatchNorm2d` would.
///
/// In training (the input lives on an autodiff device and the layer's training flag is on, the
/// two conditions burn's own layer checks, so [`freeze`](burn::module::Module::freeze) and
/// [`valid`](burn::module::Module::valid) behave as documented by burn) it normalizes with the
/// batch statistics and updates the running statistics with PyTorch's rule:
///
/// ```text
/// running_mean = (1 - momentum) * running_mean + momentum * mean
/// running_var  = (1 - momentum) * running_var  + momentum * var * n / (n - 1)
/// ```
///
/// Otherwise it is burn's inference path (running statistics).
///
/// PyTorch refuses a training batch with a single value per channel (`n = 1`: "Expected more
/// than 1 value per channel when training"); here such a batch is normalized (to `beta`, as
/// its variance is 0) and leaves the running statistics untouched, since the unbiased variance
/// of one value is undefined.
///
/// # Shapes
/// - input: `[batch, channels, height, width]`
/// - output: the input's shape
pub(crate) fn batch_norm(norm: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    batch_norm_act(norm, Activation::Identity, x)
}

/// `activation(batch_norm(norm, x))`, in one differentiable operation on burn-flex's autodiff
/// when the training kernels apply (see [`LayerCounts::training`](crate::native::LayerCounts::training)), else as
/// burn's operations.
pub(crate) fn batch_norm_act(norm: &BatchNorm, activation: Activation, x: Tensor<4>) -> Tensor<4> {
    if !(x.device().is_autodiff() && norm.training.is_enabled()) {
        return activation.forward(norm.forward(x));
    }
    let [batch, _, height, width] = x.dims();
    let count = batch * height * width;
    let device = x.device();
    let (output, batch_mean, batch_var) = match native::training::norm_act(norm, activation, &x) {
        Some(result) => result,
        None => {
            let result = batch_norm_train(x, norm.gamma.val(), norm.beta.val(), norm.epsilon);
            (
                activation.forward(result.output),
                result.mean,
                result.variance,
            )
        }
    };
    if count > 1 {
        let momentum = norm.momentum;
        let unbiased = count as f64 / (count - 1) as f64;
        let mean = norm.running_mean.value_sync().to_device(&device);
        let var = norm.running_var.value_sync().to_device(&device);
        let mean = mean
            .mul_scalar(1.0 - momentum)
            .add(batch_mean.detach().mul_scalar(momentum));
        let var = var
            .mul_scalar(1.0 - momentum)
            .add(batch_var.detach().mul_scalar(momentum * unbiased));
        norm.running_mean.update(mean.detach());
        norm.running_var.update(var.detach());
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Device, TensorData};

    fn device() -> Device {
        #[cfg(feature = "flex")]
        return Device::flex();
        #[cfg(not(feature = "flex"))]
        #[allow(deprecated)]
        return Device::ndarray();
    }

    /// One channel, values 1, 2, 3, 6, as a `[2, 1, 1, 2]` batch.
    fn batch(device: &Device) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(vec![1.0f32, 2., 3., 6.], [2, 1, 1, 2]),
            device,
        )
    }

    fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Mean 3, biased variance 3.5, unbiased 14/3. With momentum 0.5 from (0, 1): mean 1.5,
    /// variance 0.5 + 0.5 * 14/3 = 17/6 (PyTorch gives these; burn's own layer gives 2.25).
    /// burn applies a running-state update when the same thread next reads it (`value_sync`).
    #[test]
    fn running_variance_is_updated_with_the_unbiased_batch_variance() {
        let device = device().autodiff();
        let norm = BatchNormConfig::new(1).with_momentum(0.5).init(&device);
        let y = values(batch_norm(&norm, batch(&device)));
        let mean = values(norm.running_mean.value_sync());
        let var = values(norm.running_var.value_sync());
        assert!((mean[0] - 1.5).abs() < 1e-6, "running mean {mean:?}");
        assert!(
            (var[0] - 17.0 / 6.0).abs() < 1e-6,
            "running variance {var:?}"
        );
        // Normalized with the biased variance, as PyTorch does.
        let expected = (1.0f32 - 3.0) / (3.5f32 + 1e-5).sqrt();
        assert!((y[0] - expected).abs() < 1e-5, "{y:?}");
    }

    #[test]
    fn frozen_and_inference_layers_keep_their_statistics() {
        let training = device().autodiff();
        let frozen = BatchNormConfig::new(1).init(&training).freeze();
        let _ = batch_norm(&frozen, batch(&training));
        let valid = BatchNormConfig::new(1).init(&training).valid();
        let _ = batch_norm(&valid, batch(&device()));
        for norm in [frozen, valid] {
            assert_eq!(values(norm.running_var.value_sync()), vec![1.0]);
        }
    }

    #[test]
    fn one_value_per_channel_leaves_the_statistics_alone() {
        let device = device().autodiff();
        let norm = BatchNormConfig::new(2).init(&device);
        let x = Tensor::<4>::from_data(TensorData::new(vec![4.0f32, -1.0], [1, 2, 1, 1]), &device);
        assert_eq!(values(batch_norm(&norm, x)), vec![0.0, 0.0]);
        assert_eq!(values(norm.running_mean.value_sync()), vec![0.0, 0.0]);
    }
}
