//! The bridge between burn tensors and the kernels: borrow burn-flex's `f32` buffers, check that
//! a layer fits a kernel, wrap the result back into a tensor. Every check happens before the
//! input is given up, so a layer that does not fit gets its input back unchanged
//! ([`Outcome::Declined`]).

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::{DType, Tensor, TensorData};

use super::Outcome;
use crate::kernels::conv::{ConvGeometry, Epilogue, Prologue, dense, pointwise};
use crate::kernels::direct::{self, depthwise};
use crate::kernels::elementwise::{
    Nonlinearity, SqueezeExcitationWeights, squeeze_excitation_images as se_images,
};
use crate::kernels::fused::{self, InvertedResidualWeights, Pointwise};
use crate::kernels::{self, resize, tapwise};
use crate::{Activation, Conv2dNormActivation, InvertedResidual, SqueezeExcitation};

impl From<Activation> for Nonlinearity {
    fn from(activation: Activation) -> Self {
        match activation {
            Activation::ReLU => Nonlinearity::ReLU,
            Activation::ReLU6 => Nonlinearity::ReLU6,
            Activation::HardSwish => Nonlinearity::HardSwish,
            Activation::GELU => Nonlinearity::Gelu,
            Activation::Identity => Nonlinearity::Identity,
        }
    }
}

/// The tensor's burn-flex buffer, contiguous, if it lives on burn-flex as `f32` without autodiff.
fn flex_f32<const D: usize>(tensor: &Tensor<D>) -> Option<FlexTensor> {
    let primitive = tensor.clone().try_into_primitive::<Flex>().ok()?;
    if primitive.dtype() != DType::F32 {
        return None;
    }
    Some(contiguous(primitive))
}

/// `tensor`, or a contiguous copy of it if it is strided.
pub(crate) fn contiguous(tensor: FlexTensor) -> FlexTensor {
    if tensor.as_slice::<f32>().is_some() {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

/// The values of a contiguous `f32` tensor (what [`contiguous`] returns for `f32`).
pub(crate) fn values(tensor: &FlexTensor) -> &[f32] {
    tensor.as_slice::<f32>().unwrap_or(&[])
}

/// The buffer of an optional tensor (a bias, a residual): `Some(None)` when there is none, `None`
/// when there is one but it is not on burn-flex as `f32` (the layer then takes burn's path).
fn optional_f32<const D: usize>(tensor: Option<&Tensor<D>>) -> Option<Option<FlexTensor>> {
    match tensor {
        None => Some(None),
        Some(tensor) => flex_f32(tensor).map(Some),
    }
}

/// A convolution's bias buffer, as [`optional_f32`].
fn conv_bias(conv: &Conv2d) -> Option<Option<FlexTensor>> {
    optional_f32(conv.bias.as_ref().map(|bias| bias.val()).as_ref())
}

/// Whether `conv` is 1x1, stride 1, unpadded and ungrouped over `in_channels`: one matrix
/// multiply per image.
fn is_pointwise(conv: &Conv2d, in_channels: usize) -> bool {
    conv.groups == 1
        && conv.kernel_size == [1, 1]
        && conv.stride == [1, 1]
        && conv.weight.dims()[1] == in_channels
        && matches!(
            conv.padding,
            PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
        )
}

/// Whether `conv` is depthwise over `channels`: one filter per channel (`groups == channels`,
/// weight `[channels, 1, kh, kw]`).
fn is_depthwise(conv: &Conv2d, channels: usize) -> bool {
    let weight_dims = conv.weight.dims();
    conv.groups == channels && weight_dims[0] == channels && weight_dims[1] == 1
}

fn into_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(FlexTensor::from_data(TensorData::new(values, shape)))
}

/// The geometry of `conv` on an input of `dims`, if its padding is explicit or none.
pub(crate) fn geometry(conv: &Conv2d, dims: [usize; 4]) -> Option<ConvGeometry> {
    let [_, in_channels, in_height, in_width] = dims;
    let weight_dims = conv.weight.dims();
    let (top, left, bottom, right) = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => (top, left, bottom, right),
        PaddingConfig2d::Valid => (0, 0, 0, 0),
        PaddingConfig2d::Same => return None,
    };
    let out_size = |size: usize, before: usize, after: usize, axis: usize| {
        let span = conv.dilation[axis] * (conv.kernel_size[axis] - 1) + 1;
        (size + before + after)
            .checked_sub(span)
            .map(|room| room / conv.stride[axis] + 1)
    };
    Some(ConvGeometry {
        in_channels,
        out_channels: weight_dims[0],
        in_height,
        in_width,
        kernel: conv.kernel_size,
        stride: conv.stride,
        padding: [top, left],
        dilation: conv.dilation,
        out_height: out_size(in_height, top, bottom, 0)?,
        out_width: out_size(in_width, left, right, 1)?,
    })
}

/// `activation(conv(x) + residual)` with a native kernel, or [`Outcome::Declined`] when one does
/// not apply (not on burn-flex, kernels off, a grouped convolution that is not depthwise, `Same`
/// padding, a shape burn itself would reject).
pub(crate) fn conv2d(
    conv: &Conv2d,
    activation: Activation,
    x: Tensor<4>,
    residual: Option<&Tensor<4>>,
) -> Outcome {
    // The kernels have no backward: a tensor that records a graph stays on burn's path.
    if !super::enabled() || x.is_autodiff() {
        return Outcome::Declined(x);
    }
    let dims = x.dims();
    let Some(geometry) = geometry(conv, dims) else {
        return Outcome::Declined(x);
    };
    let weight_dims = conv.weight.dims();
    let is_depthwise = is_depthwise(conv, geometry.in_channels);
    let is_dense = conv.groups == 1 && weight_dims[1] == geometry.in_channels;
    let out_shape = [
        dims[0],
        geometry.out_channels,
        geometry.out_height,
        geometry.out_width,
    ];
    // Only the pointwise kernel adds a residual.
    let single_pixel = geometry.out_height * geometry.out_width == 1;
    let kernel = if is_pointwise(conv, geometry.in_channels) {
        if single_pixel && residual.is_none() && dims[0] <= LINEAR_MAX_BATCH {
            kernels::linear::pointwise_single_pixel
        } else {
            pointwise
        }
    } else if residual.is_some() {
        return Outcome::Declined(x);
    } else if is_depthwise {
        if !direct::supports(&geometry) {
            return Outcome::Declined(x);
        }
        depthwise
    } else if !is_dense {
        return Outcome::Declined(x);
    } else if stem_takes(&geometry, activation) {
        #[cfg(target_arch = "x86_64")]
        {
            kernels::stem::conv
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("stem_takes is false off x86-64")
    } else if tapwise::worth_it(&geometry) {
        tapwise::tapwise
    } else if direct::supports(&geometry) {
        // im2col goes through the direct kernels' phase planes: their stride limit holds.
        dense
    } else {
        return Outcome::Declined(x);
    };
    if residual.is_some_and(|residual| residual.dims() != out_shape) {
        return Outcome::Declined(x);
    }
    // A bias or residual that is not on burn-flex as f32 sends the layer to burn's path too.
    let buffers = (
        flex_f32(&x),
        flex_f32(&conv.weight.val()),
        conv_bias(conv),
        optional_f32(residual),
    );
    let (Some(input), Some(weight), Some(bias), Some(residual)) = buffers else {
        return Outcome::Declined(x);
    };
    let epilogue = Epilogue {
        bias: bias.as_ref().map(values),
        residual: residual.as_ref().map(values),
        activation: activation.into(),
    };
    let output = kernel(
        values(&input),
        dims[0],
        &geometry,
        values(&weight),
        epilogue,
    );
    super::count_layer();
    Outcome::Computed(into_tensor(output, out_shape))
}

/// Whether `kernels::stem` takes this dense convolution (a stem: 3x3 at stride 2 on a few
/// input channels, on a CPU with AVX-512F; no residual, which `conv2d` checks first).
fn stem_takes(geometry: &ConvGeometry, activation: Activation) -> bool {
    #[cfg(target_arch = "x86_64")]
    return kernels::stem::supports(geometry, activation.into());
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (geometry, activation);
        false
    }
}

/// A 1x1 convolution (BatchNorm folded) and the depthwise convolution (folded) that reads it,
/// as the native kernel `pointwise_then_depthwise`: the 1x1's bias and activation are applied as
/// the depthwise convolution copies its input in, so the expanded map is written and read once.
/// [`Outcome::Declined`] (input given back) when either layer does not fit its kernel, as
/// [`conv2d`] declines; the caller then runs the two layers in turn.
pub(crate) fn pointwise_depthwise(
    (expand, expand_activation): (&Conv2d, Activation),
    (depthwise, depthwise_activation): (&Conv2d, Activation),
    x: Tensor<4>,
) -> Outcome {
    if !super::enabled() || x.is_autodiff() {
        return Outcome::Declined(x);
    }
    let dims = x.dims();
    let Some(expand_geometry) = geometry(expand, dims) else {
        return Outcome::Declined(x);
    };
    let channels = expand_geometry.out_channels;
    let dw_dims = [
        dims[0],
        channels,
        expand_geometry.out_height,
        expand_geometry.out_width,
    ];
    let Some(dw_geometry) = geometry(depthwise, dw_dims) else {
        return Outcome::Declined(x);
    };
    // A single pixel's expansion takes the fully connected kernel in `conv2d`: left to it.
    if !is_pointwise(expand, dims[1])
        || expand_geometry.out_pixels() == 1
        || !is_depthwise(depthwise, channels)
        || !direct::supports(&dw_geometry)
    {
        return Outcome::Declined(x);
    }
    let buffers = (
        flex_f32(&x),
        flex_f32(&expand.weight.val()),
        conv_bias(expand),
        flex_f32(&depthwise.weight.val()),
        conv_bias(depthwise),
    );
    let (Some(input), Some(expand_weight), Some(expand_bias), Some(dw_weight), Some(dw_bias)) =
        buffers
    else {
        return Outcome::Declined(x);
    };
    let output = direct::pointwise_then_depthwise(
        values(&input),
        dims[0],
        (
            &expand_geometry,
            values(&expand_weight),
            Prologue {
                bias: expand_bias.as_ref().map(values),
                activation: expand_activation.into(),
            },
        ),
        &dw_geometry,
        values(&dw_weight),
        Epilogue {
            bias: dw_bias.as_ref().map(values),
            residual: None,
            activation: depthwise_activation.into(),
        },
    );
    super::count_layer();
    super::count_layer();
    Outcome::Computed(into_tensor(
        output,
        [
            dims[0],
            channels,
            dw_geometry.out_height,
            dw_geometry.out_width,
        ],
    ))
}

/// Batches above this take burn's matrix multiply for a fully connected layer: there the
/// weights are reused across images in registers, which the row stream does not do.
const LINEAR_MAX_BATCH: usize = 16;

/// `activation(layer(x))` on the native row-stream kernel, or [`Outcome::Declined`] (kernels off,
/// autodiff, a batch above [`LINEAR_MAX_BATCH`], not on burn-flex as `f32`).
pub(crate) fn linear(layer: &Linear, activation: Activation, x: Tensor<2>) -> Outcome<2> {
    // The kernels have no backward: a tensor that records a graph stays on burn's path.
    if !super::enabled() || x.is_autodiff() {
        return Outcome::Declined(x);
    }
    let [batch, in_features] = x.dims();
    let [weight_in, out_features] = layer.weight.dims();
    if batch == 0 || batch > LINEAR_MAX_BATCH || weight_in != in_features {
        return Outcome::Declined(x);
    }
    let buffers = (
        flex_f32(&x),
        flex_f32(&layer.weight.val()),
        optional_f32(layer.bias.as_ref().map(|bias| bias.val()).as_ref()),
    );
    let (Some(input), Some(weight), Some(bias)) = buffers else {
        return Outcome::Declined(x);
    };
    let output = kernels::linear::linear(
        values(&input),
        batch,
        values(&weight),
        [in_features, out_features],
        bias.as_ref().map(values),
        activation.into(),
    );
    super::count_layer();
    Outcome::Computed(into_tensor(output, [batch, out_features]))
}

/// Global average pooling of `x` (`[batch, channels, h, w]`) to `[batch, channels, 1, 1]` with
/// the native kernel, or `None` (not on burn-flex as `f32`, kernels off, autodiff, an empty
/// plane).
pub(crate) fn global_average_pool(x: &Tensor<4>) -> Option<Tensor<4>> {
    // The kernels have no backward: a tensor that records a graph stays on burn's path.
    if !super::enabled() || x.is_autodiff() {
        return None;
    }
    let [batch, channels, height, width] = x.dims();
    if height * width == 0 {
        return None;
    }
    let input = flex_f32(x)?;
    let means = kernels::elementwise::plane_means(values(&input), height * width);
    super::count_layer();
    Some(into_tensor(means, [batch, channels, 1, 1]))
}

/// SSDLite's head outputs `maps` (`[batch, boxes * columns, h, w]` each) as torchvision
/// flattens and concatenates them: `[batch, Σ h * w * boxes, columns]`, rows by pixel then box
/// ([`kernels::elementwise::pixels_by_channels`]), or `None` (not on burn-flex as `f32`,
/// kernels off, autodiff, channels not whole boxes, images of other batches).
pub(crate) fn predictions(maps: &[Tensor<4>], columns: usize) -> Option<Tensor<3>> {
    let batch = maps.first()?.dims()[0];
    if !super::enabled() || columns == 0 || maps.iter().any(|map| map.is_autodiff()) {
        return None;
    }
    let mut buffers = Vec::with_capacity(maps.len());
    for map in maps {
        let [n, channels, height, width] = map.dims();
        if n != batch || !channels.is_multiple_of(columns) {
            return None;
        }
        buffers.push((flex_f32(map)?, [channels, height * width]));
    }
    let shapes: Vec<(&[f32], [usize; 2])> = buffers
        .iter()
        .map(|(buffer, shape)| (values(buffer), *shape))
        .collect();
    let rows: usize = shapes.iter().map(|(_, [c, p])| c * p / columns).sum();
    let out = kernels::elementwise::pixels_by_channels(&shapes, batch);
    Some(into_tensor(out, [batch, rows, columns]))
}

/// PyTorch's bilinear resize (`align_corners=False`) to `[height, width]` with the native
/// kernel, or [`Outcome::Declined`] (not on burn-flex as `f32`, kernels off, autodiff, an
/// empty input plane).
pub(crate) fn resize_bilinear(x: Tensor<4>, [height, width]: [usize; 2]) -> Outcome {
    // The kernels have no backward: a tensor that records a graph stays on burn's path.
    if !super::enabled() || x.is_autodiff() {
        return Outcome::Declined(x);
    }
    let [batch, channels, in_height, in_width] = x.dims();
    if in_height == 0 || in_width == 0 {
        return Outcome::Declined(x);
    }
    let Some(input) = flex_f32(&x) else {
        return Outcome::Declined(x);
    };
    let output = resize::resize_bilinear(
        values(&input),
        batch * channels,
        [in_height, in_width],
        [height, width],
    );
    super::count_layer();
    Outcome::Computed(into_tensor(output, [batch, channels, height, width]))
}

/// Squeeze-and-excitation with the native kernel, in place when `x` is not shared, or
/// [`Outcome::Declined`].
pub(crate) fn squeeze_excitation(se: &SqueezeExcitation, x: Tensor<4>) -> Outcome {
    // The kernels have no backward: a tensor that records a graph stays on burn's path.
    if !super::enabled() || x.is_autodiff() {
        return Outcome::Declined(x);
    }
    let dims = x.dims();
    let channels = dims[1];
    if dims[2] * dims[3] == 0 {
        return Outcome::Declined(x);
    }
    let Some(buffers) = se_buffers(se, channels) else {
        return Outcome::Declined(x);
    };
    let Some(mut input) = flex_f32(&x) else {
        return Outcome::Declined(x);
    };
    // Drop our handle so that, unless the caller kept a clone, the buffer is ours to scale.
    drop(x);
    let weights = se_weights(&buffers, se_gate(se));
    let image_len = channels * dims[2] * dims[3];
    let (start, end) = input
        .layout()
        .contiguous_offsets()
        .unwrap_or((0, dims[0] * image_len));
    // Copy-on-write: copies only when the buffer is shared.
    let buffer = &mut input.storage_mut::<f32>()[start..end];
    se_images(buffer, image_len, channels, &weights);
    super::count_layer();
    Outcome::Computed(Tensor::from_primitive::<Flex>(input))
}

/// The buffers of a squeeze-and-excitation layer on `channels` channels (`fc1`'s weight and
/// bias, `fc2`'s), or `None` where the native kernels do not take it (other shapes, grouped or
/// larger convolutions, no biases, not f32 on burn-flex).
fn se_buffers(se: &SqueezeExcitation, channels: usize) -> Option<[FlexTensor; 4]> {
    let [squeeze, fc1_in, ..] = se.fc1.weight.dims();
    let [fc2_out, fc2_in, ..] = se.fc2.weight.dims();
    let is_linear = |conv: &Conv2d| conv.kernel_size == [1, 1] && conv.groups == 1;
    if fc1_in != channels || fc2_out != channels || fc2_in != squeeze {
        return None;
    }
    if !is_linear(&se.fc1) || !is_linear(&se.fc2) {
        return None;
    }
    Some([
        flex_f32(&se.fc1.weight.val())?,
        flex_f32(&se.fc1.bias.as_ref()?.val())?,
        flex_f32(&se.fc2.weight.val())?,
        flex_f32(&se.fc2.bias.as_ref()?.val())?,
    ])
}

/// A squeeze-and-excitation layer's gate, its hard-sigmoid's `[slope, offset]`.
fn se_gate(se: &SqueezeExcitation) -> [f32; 2] {
    [
        se.scale_activation.slope as f32,
        se.scale_activation.offset as f32,
    ]
}

/// The kernels' view of a squeeze-and-excitation layer whose buffers [`se_buffers`] gathered,
/// with its [`se_gate`].
fn se_weights(
    [fc1_weight, fc1_bias, fc2_weight, fc2_bias]: &[FlexTensor; 4],
    [slope, offset]: [f32; 2],
) -> SqueezeExcitationWeights<'_> {
    SqueezeExcitationWeights {
        fc1_weight: values(fc1_weight),
        fc1_bias: values(fc1_bias),
        fc2_weight: values(fc2_weight),
        fc2_bias: values(fc2_bias),
        slope,
        offset,
    }
}

/// Environment variable that turns the blocked-layout block kernel off when set to `0`, to
/// measure the layers one at a time against it (`scripts/ab_latency.py --b-env
/// MOBILENET_BURN_BLOCKED=0`).
const BLOCKED_ENV: &str = "MOBILENET_BURN_BLOCKED";

/// Whether `kernels::blocked` takes this block: x86-64 with AVX2 and FMA, the shapes it
/// supports, and not turned off by [`BLOCKED_ENV`].
fn blocked_takes(
    g: &ConvGeometry,
    expands: bool,
    residual: bool,
    channels: [usize; 2],
    activations: [Nonlinearity; 2],
) -> bool {
    use std::sync::OnceLock;
    static ENABLED: OnceLock<bool> = OnceLock::new();
    let enabled = *ENABLED.get_or_init(|| std::env::var(BLOCKED_ENV).map_or(true, |v| v != "0"));
    #[cfg(target_arch = "x86_64")]
    return enabled && kernels::blocked::supports(g, expands, residual, channels, activations);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (enabled, g, expands, residual, channels, activations);
        false
    }
}

/// The shape of one fused block on an input of shape `dims`, checked for the block kernels:
/// all that decides which kernel (if any) takes it, before any weight buffer is gathered.
struct BlockShape {
    depthwise: ConvGeometry,
    /// `[in_channels, out_channels]`.
    channels: [usize; 2],
    expands: bool,
    squeezes: bool,
    residual: bool,
    /// The expansion's (identity without one) and the depthwise layer's.
    activations: [Nonlinearity; 2],
}

impl BlockShape {
    /// The shape of `block` on an input of `dims`, or `None` where neither block kernel takes
    /// it: BatchNorm left, or shapes `fused::supports` declines.
    fn of(
        block: &InvertedResidual,
        [batch, in_channels, height, width]: [usize; 4],
    ) -> Option<Self> {
        let expand_norm = block
            .expand
            .as_ref()
            .is_some_and(|expand| expand.norm.is_some());
        if batch == 0
            || expand_norm
            || block.depthwise.norm.is_some()
            || block.project_norm.is_some()
        {
            return None;
        }
        let channels = block.depthwise.conv.weight.dims()[0];
        if let Some(expand) = &block.expand
            && (!is_pointwise(&expand.conv, in_channels)
                || expand.conv.weight.dims()[0] != channels)
        {
            return None;
        }
        let depthwise = geometry(&block.depthwise.conv, [batch, channels, height, width])?;
        let out_channels = block.project_conv.weight.dims()[0];
        let expands = block.expand.is_some();
        if !is_depthwise(&block.depthwise.conv, channels)
            || !is_pointwise(&block.project_conv, channels)
            || !fused::supports(
                &depthwise,
                expands,
                block.use_residual,
                [in_channels, out_channels],
            )
        {
            return None;
        }
        let expand_activation = block
            .expand
            .as_ref()
            .map_or(Nonlinearity::Identity, |expand| expand.activation.into());
        Some(Self {
            depthwise,
            channels: [in_channels, out_channels],
            expands,
            squeezes: block.squeeze_excitation.is_some(),
            residual: block.use_residual,
            activations: [expand_activation, block.depthwise.activation.into()],
        })
    }

    /// The output's shape for a batch of `batch`.
    fn out_dims(&self, batch: usize) -> [usize; 4] {
        let g = &self.depthwise;
        [batch, self.channels[1], g.out_height, g.out_width]
    }

    /// Whether the band kernel (`kernels::fused`) computes the block on a batch of `batch`:
    /// where every thread has whole images, and the block has no squeeze-and-excitation (which
    /// needs the whole map).
    fn banded(&self, batch: usize) -> bool {
        !self.squeezes && self.images_keep_threads_busy(batch)
    }

    /// Whether a batch of `batch` keeps every thread busy with whole images (the band kernel's
    /// condition).
    fn images_keep_threads_busy(&self, batch: usize) -> bool {
        fused::worth_it(&self.depthwise, batch, rayon::current_num_threads())
    }

    /// Whether `kernels::blocked` takes the block on a batch of `batch`: where the band kernel
    /// does not, and where whole images would not keep the threads busy (else a block with
    /// squeeze-and-excitation takes its layers one at a time, on the whole batch together: the
    /// blocked kernel, an image at a time with the threads inside each layer, measured 1.39x
    /// slower on MobileNetV3-Large at batch 8 on two threads).
    fn blocked(&self, batch: usize) -> bool {
        !self.images_keep_threads_busy(batch) && self.blocked_shape()
    }

    /// Whether the block can join a run of blocks through `kernels::blocked` on a batch of
    /// `batch`: as [`blocked`](Self::blocked), and also where the run gives each thread whole
    /// images (`kernels::blocked::images_in_parallel`), in place of the band kernel or the
    /// layers.
    fn joins_run(&self, batch: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        let images = kernels::blocked::images_in_parallel(batch, rayon::current_num_threads());
        #[cfg(not(target_arch = "x86_64"))]
        let images = false;
        (images || !self.images_keep_threads_busy(batch)) && self.blocked_shape()
    }

    /// Whether `kernels::blocked` takes the block's shapes and activations.
    fn blocked_shape(&self) -> bool {
        blocked_takes(
            &self.depthwise,
            self.expands,
            self.residual,
            self.channels,
            self.activations,
        )
    }

    /// The block's layers: expansion (if any), depthwise, squeeze-and-excitation (if any),
    /// projection.
    fn layers(&self) -> u64 {
        2 + u64::from(self.expands) + u64::from(self.squeezes)
    }
}

/// One fused block whose [`BlockShape`] a kernel takes, with its weight buffers (burn-flex
/// f32, held).
struct BlockPlan {
    shape: BlockShape,
    /// The expansion's weight and bias.
    expand: Option<(FlexTensor, Option<FlexTensor>)>,
    depthwise_weight: FlexTensor,
    depthwise_bias: Option<FlexTensor>,
    /// The buffers ([`se_buffers`]) and the gate ([`se_gate`]).
    squeeze_excitation: Option<([FlexTensor; 4], [f32; 2])>,
    project_weight: FlexTensor,
    project_bias: Option<FlexTensor>,
}

impl BlockPlan {
    /// `block`'s buffers for its `shape` ([`BlockShape::of`] it), or `None` where a parameter
    /// is not on burn-flex as f32.
    fn gather(block: &InvertedResidual, shape: BlockShape) -> Option<Self> {
        let expand = match &block.expand {
            None => None,
            Some(expand) => Some((
                flex_f32(&expand.conv.weight.val())?,
                conv_bias(&expand.conv)?,
            )),
        };
        let squeeze_excitation = match &block.squeeze_excitation {
            None => None,
            Some(se) => Some((se_buffers(se, shape.depthwise.in_channels)?, se_gate(se))),
        };
        Some(Self {
            expand,
            depthwise_weight: flex_f32(&block.depthwise.conv.weight.val())?,
            depthwise_bias: conv_bias(&block.depthwise.conv)?,
            squeeze_excitation,
            project_weight: flex_f32(&block.project_conv.weight.val())?,
            project_bias: conv_bias(&block.project_conv)?,
            shape,
        })
    }

    /// The kernels' view of the weights.
    fn weights(&self) -> InvertedResidualWeights<'_> {
        let [expand_activation, depthwise_activation] = self.shape.activations;
        InvertedResidualWeights {
            expand: self.expand.as_ref().map(|(weight, bias)| Pointwise {
                weight: values(weight),
                bias: bias.as_ref().map(values),
                activation: expand_activation,
            }),
            depthwise: self.shape.depthwise,
            depthwise_weight: values(&self.depthwise_weight),
            depthwise_bias: self.depthwise_bias.as_ref().map(values),
            depthwise_activation,
            squeeze_excitation: self
                .squeeze_excitation
                .as_ref()
                .map(|(buffers, gate)| se_weights(buffers, *gate)),
            project_weight: values(&self.project_weight),
            project_bias: self.project_bias.as_ref().map(values),
            residual: self.shape.residual,
        }
    }

    /// The weight tensors the packed weights are made from: expansion, depthwise, projection.
    fn sources(&self) -> [Option<&FlexTensor>; 3] {
        [
            self.expand.as_ref().map(|(weight, _)| weight),
            Some(&self.depthwise_weight),
            Some(&self.project_weight),
        ]
    }
}

/// A whole inverted residual block, fused (BatchNorm folded): without squeeze-and-excitation
/// with the band kernel (`kernels::fused`) when every thread has whole images (expansion,
/// depthwise, projection and residual in one parallel region, the expanded map never in memory
/// in full), else, on x86-64 with AVX2, in the channel-blocked layout (`kernels::blocked`).
/// [`Outcome::Declined`] for a block that has BatchNorm left, or a shape neither kernel takes.
pub(crate) fn inverted_residual(block: &InvertedResidual, x: Tensor<4>) -> Outcome {
    if !super::enabled() || x.is_autodiff() {
        return Outcome::Declined(x);
    }
    let batch = x.dims()[0];
    // The shape decides first (the band kernel's or the blocked layout's), then the weights.
    let Some(shape) = BlockShape::of(block, x.dims()) else {
        return Outcome::Declined(x);
    };
    let banded = shape.banded(batch);
    if !banded && !shape.blocked(batch) {
        return Outcome::Declined(x);
    }
    // Any parameter not on burn-flex as f32 sends the block to the per-layer path.
    let (Some(plan), Some(input)) = (BlockPlan::gather(block, shape), flex_f32(&x)) else {
        return Outcome::Declined(x);
    };
    let output = if banded {
        super::count_fused_block(plan.shape.layers());
        let [in_channels, out_channels] = plan.shape.channels;
        let weights = plan.weights();
        fused::inverted_residual(values(&input), batch, in_channels, out_channels, &weights)
    } else {
        let Some(output) = blocked_run(values(&input), batch, None, &[(block, &plan)]) else {
            return Outcome::Declined(x);
        };
        output
    };
    Outcome::Computed(into_tensor(output, plan.shape.out_dims(batch)))
}

/// The blocks at the start of `blocks` that `kernels::blocked` takes in turn (fused, at a batch
/// where it is chosen over the band kernel and the layers: [`BlockShape::joins_run`]), run in
/// the blocked layout from the first to the last with one layout conversion in and one out per
/// image: the output and how many blocks it covers. `(x, 0)` where fewer than two blocks
/// qualify (each block's own forward then decides).
///
/// With a `stem` (a network's first layer, fused, that `kernels::stem` takes), `x` is the
/// stem's input: the stem writes the first block's input in the blocked layout (no conversion
/// in), and one block suffices. `(x, 0)` (the stem not applied) where the stem or its first
/// block does not qualify.
pub(crate) fn inverted_residual_run(
    stem: Option<&Conv2dNormActivation>,
    blocks: &[InvertedResidual],
    x: Tensor<4>,
) -> (Tensor<4>, usize) {
    if !super::enabled() || x.is_autodiff() {
        return (x, 0);
    }
    let batch = x.dims()[0];
    let mut dims = x.dims();
    // The stem's shape decides first, then the blocks' shapes decide the run, then the
    // weights are gathered.
    let stem_geometry = match stem {
        None => None,
        Some(stem) => match stem_plan_geometry(stem, dims) {
            Some(g) => {
                dims = [batch, g.out_channels, g.out_height, g.out_width];
                Some(g)
            }
            None => return (x, 0),
        },
    };
    let mut shapes = Vec::new();
    for block in blocks {
        let Some(shape) = BlockShape::of(block, dims).filter(|shape| shape.joins_run(batch)) else {
            break;
        };
        dims = shape.out_dims(batch);
        shapes.push((block, shape));
    }
    let fewest = if stem.is_some() { 1 } else { 2 };
    if shapes.len() < fewest {
        return (x, 0);
    }
    // The run ends before a block with a parameter not on burn-flex as f32.
    let plans: Vec<_> = shapes
        .into_iter()
        .map_while(|(block, shape)| Some((block, BlockPlan::gather(block, shape)?)))
        .collect();
    if plans.len() < fewest {
        return (x, 0);
    }
    let stem_buffers = match stem {
        None => None,
        Some(stem) => match (flex_f32(&stem.conv.weight.val()), conv_bias(&stem.conv)) {
            (Some(weight), Some(bias)) => Some((weight, bias, stem.activation)),
            _ => return (x, 0),
        },
    };
    let dims = plans[plans.len() - 1].1.shape.out_dims(batch);
    let Some(input) = flex_f32(&x) else {
        return (x, 0);
    };
    #[cfg(target_arch = "x86_64")]
    let stem_layer =
        stem_geometry
            .zip(stem_buffers.as_ref())
            .map(
                |(geometry, (weight, bias, activation))| kernels::blocked::StemLayer {
                    geometry,
                    weight: values(weight),
                    epilogue: Epilogue {
                        bias: bias.as_ref().map(values),
                        residual: None,
                        activation: (*activation).into(),
                    },
                },
            );
    #[cfg(not(target_arch = "x86_64"))]
    let stem_layer = {
        let _ = (stem_geometry, &stem_buffers);
        None
    };
    let run: Vec<(&InvertedResidual, &BlockPlan)> =
        plans.iter().map(|(block, plan)| (*block, plan)).collect();
    match blocked_run(values(&input), batch, stem_layer, &run) {
        Some(output) => {
            if stem.is_some() {
                super::count_layer();
            }
            (into_tensor(output, dims), plans.len())
        }
        None => (x, 0),
    }
}

/// The geometry of `stem` on an input of `dims` where `kernels::stem` can write a run's first
/// map from it: fused (no BatchNorm), a dense convolution the stem kernel takes.
fn stem_plan_geometry(stem: &Conv2dNormActivation, dims: [usize; 4]) -> Option<ConvGeometry> {
    let g = geometry(&stem.conv, dims)?;
    let weight_dims = stem.conv.weight.dims();
    let dense = stem.conv.groups == 1 && weight_dims[1] == g.in_channels;
    (stem.norm.is_none() && dense && stem_takes(&g, stem.activation)).then_some(g)
}

/// `blocks` (planned for the blocked kernel, each one's output the next one's input) through
/// `kernels::blocked::inverted_residuals`, with each block's weights packed once and kept in
/// its `packed` cache while the weight tensors they were packed from stay the layer's; counts
/// their layers. `None` off x86-64, where the kernel does not exist.
fn blocked_run(
    x: &[f32],
    batch: usize,
    #[cfg(target_arch = "x86_64")] stem: Option<kernels::blocked::StemLayer>,
    #[cfg(not(target_arch = "x86_64"))] stem: Option<std::convert::Infallible>,
    blocks: &[(&InvertedResidual, &BlockPlan)],
) -> Option<Vec<f32>> {
    #[cfg(target_arch = "x86_64")]
    {
        /// Packed weights and the buffers they were packed from, held so that no other tensor
        /// can reuse or (burn-flex copies on write when shared) change them.
        struct Packed {
            sources: [Option<FlexTensor>; 3],
            block: kernels::blocked::PackedBlock,
        }
        let same = |held: &Option<FlexTensor>, current: Option<&FlexTensor>| match (held, current) {
            (Some(held), Some(current)) => {
                let (a, b) = (values(held), values(current));
                a.as_ptr() == b.as_ptr()
                    && a.len() == b.len()
                    && held.layout().shape() == current.layout().shape()
            }
            (None, None) => true,
            _ => false,
        };
        let weights: Vec<InvertedResidualWeights> =
            blocks.iter().map(|(_, plan)| plan.weights()).collect();
        let mut packed = Vec::with_capacity(blocks.len());
        for ((block, plan), weights) in blocks.iter().zip(&weights) {
            let sources = plan.sources();
            let [in_channels, out_channels] = plan.shape.channels;
            packed.push(block.packed.get_or_make(
                |packed: &Packed| packed.sources.iter().zip(sources).all(|(a, b)| same(a, b)),
                || {
                    Some(Packed {
                        sources: sources.map(|source| source.cloned()),
                        block: kernels::blocked::pack(weights, in_channels, out_channels),
                    })
                },
            )?);
        }
        let stages: Vec<kernels::blocked::Stage> = blocks
            .iter()
            .zip(&weights)
            .zip(&packed)
            .map(|(((_, plan), block), packed)| kernels::blocked::Stage {
                block,
                packed: &packed.block,
                channels: plan.shape.channels,
            })
            .collect();
        let output = kernels::blocked::inverted_residuals(x, batch, stem, &stages);
        for (_, plan) in blocks {
            super::count_layers_run(plan.shape.layers());
        }
        Some(output)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, batch, stem, blocks);
        None
    }
}
