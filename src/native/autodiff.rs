//! The training kernels (`train.rs`) as differentiable operations of burn's autodiff on
//! burn-flex, through burn's backend-extension point: a [`backend_extension`] trait implemented
//! for `Flex` (the forward) and for `Autodiff<Flex, C>` (the forward, recording a hand-written
//! backward step), called through burn's `Dispatch`.
//!
//! [`conv`] and [`norm_act`] apply to a tensor that records a graph on burn-flex (`Device::flex()
//! .autodiff()`) when the native kernels are on; the layers fall back to burn's operations
//! everywhere else (ndarray, wgpu, the kernels turned off), which the tests compare them with.

use crate::SqueezeExcitation;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension,
};
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, Device, Tensor, TensorData};

use super::flex::{contiguous, geometry, values};
use crate::kernels::conv::{ConvGeometry, Epilogue, pointwise};
use crate::kernels::direct::{self, depthwise};
use crate::kernels::elementwise::{Nonlinearity, SqueezeExcitationWeights};
use crate::kernels::train::{self, MapDims, NormStatistics, SqueezeSaved};

/// Which training kernel a convolution takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum TrainConv {
    /// 1x1, stride 1, `groups == 1`.
    Pointwise(ConvGeometry),
    /// `groups == in_channels == out_channels`, a geometry `direct::supports`.
    Depthwise(ConvGeometry),
}

impl TrainConv {
    fn geometry(&self) -> &ConvGeometry {
        match self {
            TrainConv::Pointwise(geometry) | TrainConv::Depthwise(geometry) => geometry,
        }
    }
}

#[backend_extension(Flex, Autodiff)]
pub(crate) trait TrainingOps: Backend {
    /// `conv(x, weight)` without bias.
    fn mobilenet_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        conv: TrainConv,
    ) -> FloatTensor<Self>;

    /// `activation(batch_norm(z))` with batch statistics: `(output, mean, biased variance)`.
    fn mobilenet_norm_act(
        z: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        activation: Nonlinearity,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Squeeze-and-excitation: `x * clamp(fc2(relu(fc1(mean(x)))) * gate[0] + gate[1], 0, 1)`.
    fn mobilenet_squeeze_excitation(
        x: FloatTensor<Self>,
        fc1_weight: FloatTensor<Self>,
        fc1_bias: FloatTensor<Self>,
        fc2_weight: FloatTensor<Self>,
        fc2_bias: FloatTensor<Self>,
        gate: [f32; 2],
    ) -> FloatTensor<Self>;
}

fn flex_tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn map_dims(z: &FlexTensor) -> MapDims {
    let shape = z.shape();
    [shape[0], shape[1], shape[2] * shape[3]]
}

fn conv_forward(x: &FlexTensor, weight: &FlexTensor, conv: &TrainConv) -> FlexTensor {
    let geometry = conv.geometry();
    let batch = x.shape()[0];
    let epilogue = Epilogue {
        bias: None,
        residual: None,
        activation: Nonlinearity::Identity,
    };
    let output = match conv {
        TrainConv::Pointwise(_) => pointwise(values(x), batch, geometry, values(weight), epilogue),
        TrainConv::Depthwise(_) => depthwise(values(x), batch, geometry, values(weight), epilogue),
    };
    flex_tensor(
        output,
        vec![
            batch,
            geometry.out_channels,
            geometry.out_height,
            geometry.out_width,
        ],
    )
}

fn norm_act_forward(
    z: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
    activation: Nonlinearity,
) -> (FlexTensor, NormStatistics) {
    let dims = map_dims(z);
    let statistics = train::norm_statistics(values(z), dims, values(gamma), values(beta), epsilon);
    let y = train::norm_act_apply(values(z), dims, &statistics, activation);
    (flex_tensor(y, z.shape().to_vec()), statistics)
}

fn statistics_tensors(statistics: &NormStatistics) -> (FlexTensor, FlexTensor) {
    let channels = statistics.mean.len();
    (
        flex_tensor(statistics.mean.clone(), vec![channels]),
        flex_tensor(statistics.variance.clone(), vec![channels]),
    )
}

impl TrainingOps for Flex {
    fn mobilenet_conv(x: FlexTensor, weight: FlexTensor, conv: TrainConv) -> FlexTensor {
        conv_forward(&contiguous(x), &contiguous(weight), &conv)
    }

    fn mobilenet_norm_act(
        z: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        activation: Nonlinearity,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (z, gamma, beta) = (contiguous(z), contiguous(gamma), contiguous(beta));
        let (y, statistics) = norm_act_forward(&z, &gamma, &beta, epsilon, activation);
        let (mean, variance) = statistics_tensors(&statistics);
        (y, mean, variance)
    }

    fn mobilenet_squeeze_excitation(
        x: FlexTensor,
        fc1_weight: FlexTensor,
        fc1_bias: FlexTensor,
        fc2_weight: FlexTensor,
        fc2_bias: FlexTensor,
        gate: [f32; 2],
    ) -> FlexTensor {
        let weights = [fc1_weight, fc1_bias, fc2_weight, fc2_bias].map(contiguous);
        squeeze_forward(&contiguous(x), &weights, gate).0
    }
}

fn squeeze_weights<'a>(
    weights: &'a [FlexTensor; 4],
    [slope, offset]: [f32; 2],
) -> SqueezeExcitationWeights<'a> {
    SqueezeExcitationWeights {
        fc1_weight: values(&weights[0]),
        fc1_bias: values(&weights[1]),
        fc2_weight: values(&weights[2]),
        fc2_bias: values(&weights[3]),
        slope,
        offset,
    }
}

fn squeeze_forward(
    x: &FlexTensor,
    weights: &[FlexTensor; 4],
    gate: [f32; 2],
) -> (FlexTensor, SqueezeSaved) {
    let (y, saved) =
        train::squeeze_excitation_forward(values(x), map_dims(x), squeeze_weights(weights, gate));
    (flex_tensor(y, x.shape().to_vec()), saved)
}

/// The backward step of [`TrainingOps::mobilenet_squeeze_excitation`]: gradients of the input
/// and of both layers' weights and biases.
#[derive(Debug)]
struct SqueezeBackward;

impl Backward<Flex, 5> for SqueezeBackward {
    type State = (FlexTensor, [FlexTensor; 4], SqueezeSaved, [f32; 2]);

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (x, weights, saved, gate) = ops.state;
        let gradients = train::squeeze_excitation_backward(
            values(&x),
            values(&grad),
            map_dims(&x),
            squeeze_weights(&weights, gate),
            &saved,
        );
        let shapes = [
            x.shape().to_vec(),
            weights[0].shape().to_vec(),
            weights[1].shape().to_vec(),
            weights[2].shape().to_vec(),
            weights[3].shape().to_vec(),
        ];
        for ((node, gradient), shape) in ops.parents.into_iter().zip(gradients).zip(shapes) {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, flex_tensor(gradient, shape));
            }
        }
    }
}

/// The backward step of [`TrainingOps::mobilenet_conv`]: input and weight gradients.
#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 2> for ConvBackward {
    type State = (FlexTensor, FlexTensor, TrainConv);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (x, weight, conv) = ops.state;
        let geometry = conv.geometry();
        let batch = x.shape()[0];
        let (dx, dweight) = match conv {
            TrainConv::Pointwise(_) => train::pointwise_backward(
                values(&x),
                values(&weight),
                values(&grad),
                batch,
                geometry,
            ),
            TrainConv::Depthwise(_) => train::depthwise_backward(
                values(&x),
                values(&weight),
                values(&grad),
                batch,
                geometry,
            ),
        };
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex_tensor(dx, x.shape().to_vec()));
        }
        if let Some(node) = node_weight {
            grads.register::<Flex>(node.id, flex_tensor(dweight, weight.shape().to_vec()));
        }
    }
}

/// The backward step of [`TrainingOps::mobilenet_norm_act`]: gradients of the input, `gamma`
/// and `beta` (the statistics it returns are constants, as burn's and PyTorch's are).
#[derive(Debug)]
struct NormActBackward;

impl Backward<Flex, 3> for NormActBackward {
    type State = (FlexTensor, FlexTensor, NormStatistics, Nonlinearity);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_z, node_gamma, node_beta] = ops.parents;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (z, gamma, statistics, activation) = ops.state;
        let (dz, dgamma, dbeta) = train::norm_act_backward(
            values(&z),
            values(&grad),
            map_dims(&z),
            values(&gamma),
            &statistics,
            activation,
        );
        let channels = dgamma.len();
        if let Some(node) = node_z {
            grads.register::<Flex>(node.id, flex_tensor(dz, z.shape().to_vec()));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex_tensor(dgamma, vec![channels]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex_tensor(dbeta, vec![channels]));
        }
    }
}

impl<C: CheckpointStrategy> TrainingOps for Autodiff<Flex, C> {
    fn mobilenet_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        conv: TrainConv,
    ) -> FloatTensor<Self> {
        match ConvBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = contiguous(x.into_primitive());
                let weight = contiguous(weight.into_primitive());
                let output = conv_forward(&x, &weight, &conv);
                prep.finish((x, weight, conv), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::mobilenet_conv(
                x.into_primitive(),
                weight.into_primitive(),
                conv,
            )),
        }
    }

    fn mobilenet_norm_act(
        z: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        activation: Nonlinearity,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prepared = NormActBackward
            .prepare::<C>([z.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let z = contiguous(z.into_primitive());
        let gamma = contiguous(gamma.into_primitive());
        let beta = contiguous(beta.into_primitive());
        let (y, statistics) = norm_act_forward(&z, &gamma, &beta, epsilon, activation);
        let (mean, variance) = statistics_tensors(&statistics);
        let y = match prepared {
            OpsKind::Tracked(prep) => prep.finish((z, gamma, statistics, activation), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Self::from_inner(mean), Self::from_inner(variance))
    }

    fn mobilenet_squeeze_excitation(
        x: FloatTensor<Self>,
        fc1_weight: FloatTensor<Self>,
        fc1_bias: FloatTensor<Self>,
        fc2_weight: FloatTensor<Self>,
        fc2_bias: FloatTensor<Self>,
        gate: [f32; 2],
    ) -> FloatTensor<Self> {
        let prepared = SqueezeBackward
            .prepare::<C>([
                x.node(),
                fc1_weight.node(),
                fc1_bias.node(),
                fc2_weight.node(),
                fc2_bias.node(),
            ])
            .compute_bound()
            .stateful();
        let x = contiguous(x.into_primitive());
        let weights = [fc1_weight, fc1_bias, fc2_weight, fc2_bias]
            .map(|tensor| contiguous(tensor.into_primitive()));
        let (y, saved) = squeeze_forward(&x, &weights, gate);
        match prepared {
            OpsKind::Tracked(prep) => prep.finish((x, weights, saved, gate), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

/// Whether the training kernels take a layer's input `x`: it records a graph on burn-flex as
/// `f32`, and the native kernels are on.
fn applies(x: &Tensor<4>) -> bool {
    super::enabled()
        && x.is_autodiff()
        && x.dtype() == DType::F32
        && x.device().inner() == Device::flex()
}

/// `conv(x)` on the training kernels, or `None` when they do not apply (see [`applies`]; also a
/// convolution that is neither 1x1 stride 1 nor depthwise, has a bias, or `Same` padding).
pub(crate) fn conv(conv: &Conv2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    if !applies(x) || conv.bias.is_some() {
        return None;
    }
    let geometry = geometry(conv, x.dims())?;
    let weight = conv.weight.val();
    let [out_channels, group_channels, _, _] = weight.dims();
    let kind = if geometry.kernel == [1, 1]
        && geometry.stride == [1, 1]
        && geometry.padding == [0, 0]
        && conv.groups == 1
    {
        TrainConv::Pointwise(geometry)
    } else if conv.groups == geometry.in_channels
        && out_channels == geometry.in_channels
        && group_channels == 1
        && direct::supports(&geometry)
    {
        TrainConv::Depthwise(geometry)
    } else {
        return None;
    };
    if geometry.out_pixels() == 0 {
        return None;
    }
    super::count_training_layer();
    Some(Tensor::from_dispatch(
        <Dispatch as TrainingOps>::mobilenet_conv(
            x.clone().into_dispatch(),
            weight.into_dispatch(),
            kind,
        ),
    ))
}

/// `se(x)` on the training kernels, or `None` when they do not apply.
pub(crate) fn squeeze_excitation(se: &SqueezeExcitation, x: &Tensor<4>) -> Option<Tensor<4>> {
    let (fc1_bias, fc2_bias) = (se.fc1.bias.as_ref()?, se.fc2.bias.as_ref()?);
    if !applies(x) || se.fc1.kernel_size != [1, 1] || se.fc2.kernel_size != [1, 1] {
        return None;
    }
    super::count_training_layer();
    let gate = [
        se.scale_activation.slope as f32,
        se.scale_activation.offset as f32,
    ];
    Some(Tensor::from_dispatch(
        <Dispatch as TrainingOps>::mobilenet_squeeze_excitation(
            x.clone().into_dispatch(),
            se.fc1.weight.val().into_dispatch(),
            fc1_bias.val().into_dispatch(),
            se.fc2.weight.val().into_dispatch(),
            fc2_bias.val().into_dispatch(),
            gate,
        ),
    ))
}

/// `activation(norm(z))` with batch statistics on the training kernels: `(output, mean, biased
/// variance)`, or `None` when they do not apply.
pub(crate) fn norm_act(
    norm: &BatchNorm,
    activation: crate::Activation,
    z: &Tensor<4>,
) -> Option<(Tensor<4>, Tensor<1>, Tensor<1>)> {
    if !applies(z) {
        return None;
    }
    super::count_training_layer();
    let (y, mean, variance) = <Dispatch as TrainingOps>::mobilenet_norm_act(
        z.clone().into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        norm.epsilon,
        activation.into(),
    );
    Some((
        Tensor::from_dispatch(y),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(variance),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Activation;
    use burn::module::Param;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::{BatchNormConfig, PaddingConfig2d};
    use burn::tensor::module::batch_norm_train;

    fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
    }

    /// `len` numbers in [-2, 2) from a fixed linear congruential sequence.
    fn numbers(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    fn tensor<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
        let len = shape.iter().product();
        Tensor::from_data(TensorData::new(numbers(len, seed), shape), device)
    }

    /// Largest difference relative to the largest magnitude of `expected`, at most `2e-6`.
    fn assert_close(actual: Vec<f32>, expected: Vec<f32>, what: &str) {
        assert_eq!(actual.len(), expected.len(), "{what}");
        let scale = expected
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()))
            .max(1e-12);
        let worst = actual
            .iter()
            .zip(&expected)
            .fold(0.0f32, |m, (a, e)| m.max((a - e).abs()));
        assert!(
            worst <= 2e-6 * scale,
            "{what}: max difference {worst} at scale {scale}"
        );
    }

    #[derive(Debug)]
    struct Case {
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        dilation: usize,
        depthwise: bool,
        size: [usize; 2],
        activation: Activation,
    }

    /// The output of conv, batch norm and activation, and the gradients of the input, the
    /// convolution's weight, gamma and beta under a fixed linear loss, on the training kernels
    /// (`native`) or on burn's operations. Also whether the kernels ran.
    fn run(case: &Case, native: bool) -> (Vec<Vec<f32>>, bool) {
        let device = Device::flex().autodiff();
        let [cin, cout] = case.channels;
        let padding = (case.kernel - 1) / 2 * case.dilation;
        let mut conv = Conv2dConfig::new([cin, cout], [case.kernel, case.kernel])
            .with_stride([case.stride, case.stride])
            .with_dilation([case.dilation, case.dilation])
            .with_groups(if case.depthwise { cin } else { 1 })
            .with_padding(PaddingConfig2d::Explicit(
                padding, padding, padding, padding,
            ))
            .with_bias(false)
            .init(&device);
        let weight_shape = conv.weight.dims();
        conv.weight = Param::from_tensor(tensor(weight_shape, 1, &device));
        let mut norm = BatchNormConfig::new(cout).init(&device);
        norm.gamma = Param::from_tensor(tensor([cout], 2, &device));
        norm.beta = Param::from_tensor(tensor([cout], 3, &device));
        let [height, width] = case.size;
        let x = tensor([3, cin, height, width], 4, &device).require_grad();

        let (y, took_kernels) = if native {
            let z = super::conv(&conv, &x);
            let ran = z.is_some();
            let z = z.unwrap_or_else(|| conv.forward(x.clone()));
            let y = norm_act(&norm, case.activation, &z).map(|(y, _, _)| y);
            (y.expect("norm_act applies on flex autodiff"), ran)
        } else {
            let z = conv.forward(x.clone());
            let result = batch_norm_train(z, norm.gamma.val(), norm.beta.val(), norm.epsilon);
            (case.activation.forward(result.output), false)
        };
        let probe = tensor(y.dims(), 5, &device);
        let grads = (y.clone() * probe).sum().backward();
        let gradient = |t: Tensor<4>| values(t.grad(&grads).expect("a gradient"));
        let outputs = vec![
            values(y),
            gradient(x),
            gradient(conv.weight.val()),
            values(norm.gamma.val().grad(&grads).expect("gamma gradient")),
            values(norm.beta.val().grad(&grads).expect("beta gradient")),
        ];
        (outputs, took_kernels)
    }

    #[test]
    fn training_kernels_match_burns_operations() {
        use Activation::*;
        let cases = [
            ([5, 7], 1, 1, 1, false, [6, 5], ReLU6),
            ([8, 4], 1, 1, 1, false, [7, 9], Identity),
            ([6, 6], 3, 1, 1, true, [7, 6], ReLU),
            ([6, 6], 3, 2, 1, true, [9, 8], HardSwish),
            ([4, 4], 5, 2, 1, true, [11, 10], ReLU6),
            ([4, 4], 5, 1, 1, true, [6, 7], HardSwish),
            ([3, 3], 3, 1, 2, true, [9, 9], ReLU),
            ([6, 5], 1, 1, 1, false, [5, 6], GELU),
            ([5, 5], 3, 2, 1, true, [8, 7], GELU),
        ];
        for (channels, kernel, stride, dilation, depthwise, size, activation) in cases {
            let case = Case {
                channels,
                kernel,
                stride,
                dilation,
                depthwise,
                size,
                activation,
            };
            let (native, ran) = run(&case, true);
            assert!(ran, "the training kernel took {case:?}");
            let (reference, _) = run(&case, false);
            for (what, (a, e)) in ["output", "dx", "dweight", "dgamma", "dbeta"]
                .iter()
                .zip(native.into_iter().zip(reference))
            {
                assert_close(a, e, &format!("{what} of {case:?}"));
            }
        }
    }

    /// Squeeze-and-excitation's output and the gradients of its input, weights and biases
    /// under a fixed linear loss, on the training kernel or on burn's operations (the layer's
    /// own path, written out).
    fn squeeze_run(native: bool) -> Vec<Vec<f32>> {
        use crate::SqueezeExcitationConfig;
        use burn::tensor::activation::relu;
        use burn::tensor::module::adaptive_avg_pool2d;
        let device = Device::flex().autodiff();
        let (channels, squeeze) = (12, 4);
        let mut se = SqueezeExcitationConfig::new(channels, squeeze).init(&device);
        let half = |t: Tensor<4>| t.mul_scalar(0.5);
        se.fc1.weight = Param::from_tensor(half(tensor([squeeze, channels, 1, 1], 6, &device)));
        se.fc2.weight = Param::from_tensor(half(tensor([channels, squeeze, 1, 1], 7, &device)));
        se.fc1.bias = Some(Param::from_tensor(tensor([squeeze], 8, &device)));
        se.fc2.bias = Some(Param::from_tensor(tensor([channels], 9, &device)));
        let x = tensor([3, channels, 5, 7], 10, &device).require_grad();
        let y = if native {
            super::squeeze_excitation(&se, &x).expect("applies on flex autodiff")
        } else {
            let scale = adaptive_avg_pool2d(x.clone(), [1, 1]);
            let scale = se.fc2.forward(relu(se.fc1.forward(scale)));
            x.clone() * se.scale_activation.forward(scale)
        };
        let probe = tensor(y.dims(), 11, &device);
        let grads = (y.clone() * probe).sum().backward();
        let bias_grad = |bias: &Option<Param<Tensor<1>>>| {
            values(
                bias.as_ref()
                    .unwrap()
                    .val()
                    .grad(&grads)
                    .expect("bias gradient"),
            )
        };
        vec![
            values(y),
            values(x.grad(&grads).expect("dx")),
            values(se.fc1.weight.val().grad(&grads).expect("dfc1")),
            bias_grad(&se.fc1.bias),
            values(se.fc2.weight.val().grad(&grads).expect("dfc2")),
            bias_grad(&se.fc2.bias),
        ]
    }

    #[test]
    fn squeeze_excitation_kernel_matches_burns_operations() {
        let (native, reference) = (squeeze_run(true), squeeze_run(false));
        let what = [
            "output",
            "dx",
            "dfc1_weight",
            "dfc1_bias",
            "dfc2_weight",
            "dfc2_bias",
        ];
        for (what, (a, e)) in what.iter().zip(native.into_iter().zip(reference)) {
            assert!(
                e.iter().any(|&v| v != 0.0),
                "{what} is all zeros: a weak case"
            );
            assert_close(a, e, what);
        }
    }
}
