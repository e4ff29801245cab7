//! The inverted residual block with linear bottleneck of MobileNetV2
//! (<https://arxiv.org/abs/1801.04381>, section 3.3), with MobileNetV3's optional
//! squeeze-and-excitation (<https://arxiv.org/abs/1905.02244>, section 5.3).
//!
//! One type serves both networks: the computation is the same (expand, depthwise, optional SE,
//! linear projection, skip connection); only torchvision's parameter keys differ, which
//! [`BlockLayout`] records. Mirrors torchvision's `mobilenetv2.InvertedResidual` and
//! `mobilenetv3.InvertedResidual`.

use burn::config::Config;
use burn::nn::BatchNorm;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::batch_norm::batch_norm;
use super::conv_norm_act::expansion_then_depthwise;
use crate::fuse::fold_batch_norm;
use crate::init;
use crate::native::{self, Outcome};
use crate::torch_paths::torchvision_module;
use crate::{
    Activation, BatchNormSpec, Conv2dNormActivation, Conv2dNormActivationConfig, SqueezeExcitation,
    SqueezeExcitationConfig,
};

/// Which torchvision `state_dict` layout a block's parameters follow.
///
/// ```
/// use burn::tensor::Device;
/// use mobilenet_burn::{Activation, BlockLayout, InvertedResidualConfig};
///
/// // MobileNetV2's second block (`features.2` in torchvision), under V2's keys `conv.{i}`.
/// let block = InvertedResidualConfig::new(16, 3, 96, 24, false, Activation::ReLU6, 2)
///     .with_layout(BlockLayout::MobileNetV2)
///     .init(&Device::flex());
/// assert_eq!(block.layout, BlockLayout::MobileNetV2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlockLayout {
    /// `conv.{i}`: expansion and depthwise as `Conv2dNormActivation`s, then the projection
    /// convolution and its batch norm as two separate entries.
    MobileNetV2,
    /// `block.{i}`: expansion, depthwise, squeeze-excitation and projection, each one entry
    /// (the projection a `Conv2dNormActivation` without activation).
    MobileNetV3,
    /// What remains of a MobileNetV3 block in torchvision's SSDLite backbone after its
    /// expansion moved to the end of `features.0` (`backbone[c4_pos].block[1:]`, whose
    /// `nn.Sequential` slice keeps the original positions): depthwise `1`, squeeze-excitation
    /// `2`, projection `3`, with no `block.` prefix and no expansion.
    SsdLiteTailV3,
    /// The same for a MobileNetV2 block (`conv[1:]`): depthwise `1`, projection convolution `2`
    /// and its batch norm `3`.
    SsdLiteTailV2,
}

/// Configuration of [`InvertedResidual`]: one row of an architecture table, with its input
/// channels resolved.
///
/// ```
/// use mobilenet_burn::{Activation, BatchNormSpec, InvertedResidualConfig};
///
/// // MobileNetV3-Large's `features.4`: 24 -> 72 -> 40 channels, 5x5 depthwise, stride 2, SE.
/// let config = InvertedResidualConfig::new(24, 5, 72, 40, true, Activation::ReLU, 2)
///     .with_norm(BatchNormSpec::MOBILENET_V3);
/// assert_eq!(config.dilation, 1);
/// ```
#[derive(Config, Debug)]
pub struct InvertedResidualConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Kernel size of the depthwise convolution.
    pub kernel_size: usize,
    /// Channels after the 1x1 expansion; equal to `in_channels` for no expansion layer.
    pub expanded_channels: usize,
    /// Output channels of the linear projection.
    pub out_channels: usize,
    /// Whether squeeze-and-excitation follows the depthwise convolution.
    pub use_se: bool,
    /// Activation of the expansion and depthwise layers.
    pub activation: Activation,
    /// Stride of the depthwise convolution (1 or 2).
    pub stride: usize,
    /// Dilation of the depthwise convolution. Default: 1. Above 1, the depthwise convolution
    /// runs with stride 1 whatever `stride` says (torchvision's dilated MobileNetV3), and the
    /// block keeps no skip connection if `stride` is 2.
    #[config(default = 1)]
    pub dilation: usize,
    /// Batch normalization constants. Default: PyTorch's.
    #[config(default = "BatchNormSpec::PYTORCH_DEFAULT")]
    pub norm: BatchNormSpec,
    /// Parameter key layout. Default: MobileNetV3's.
    #[config(default = "BlockLayout::MobileNetV3")]
    pub layout: BlockLayout,
}

impl InvertedResidualConfig {
    /// Builds the block.
    ///
    /// # Panics
    ///
    /// Panics if `stride` is not 1 or 2 (as torchvision raises), or if a channel count,
    /// `kernel_size` or `dilation` is zero.
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::{Activation, InvertedResidualConfig};
    ///
    /// let device = Device::flex();
    /// let block = InvertedResidualConfig::new(24, 3, 72, 24, false, Activation::ReLU, 1).init(&device);
    /// assert!(block.use_residual); // stride 1, 24 channels in and out
    /// assert_eq!(block.forward(Tensor::zeros([1, 24, 8, 8], &device)).dims(), [1, 24, 8, 8]);
    /// ```
    pub fn init(&self, device: &Device) -> InvertedResidual {
        assert!(
            (1..=2).contains(&self.stride),
            "InvertedResidualConfig: stride is {}, but must be 1 or 2",
            self.stride
        );
        let layer = |in_channels, out_channels| {
            Conv2dNormActivationConfig::new(in_channels, out_channels)
                .with_norm(Some(self.norm))
                .with_activation(self.activation)
        };

        // expand
        let expand = (self.expanded_channels != self.in_channels).then(|| {
            layer(self.in_channels, self.expanded_channels)
                .with_kernel_size(1)
                .init(device)
        });
        // depthwise
        let depthwise_stride = if self.dilation > 1 { 1 } else { self.stride };
        let depthwise = layer(self.expanded_channels, self.expanded_channels)
            .with_kernel_size(self.kernel_size)
            .with_stride(depthwise_stride)
            .with_dilation(self.dilation)
            .with_groups(self.expanded_channels)
            .init(device);
        let squeeze_excitation = self
            .use_se
            .then(|| SqueezeExcitationConfig::mobilenet_v3(self.expanded_channels).init(device));
        // project (linear bottleneck: no activation)
        let project_conv = init::conv2d(
            Conv2dConfig::new([self.expanded_channels, self.out_channels], [1, 1]).with_bias(false),
            device,
        );
        let project_norm = Some(self.norm.init(self.out_channels, device));

        InvertedResidual {
            expand,
            depthwise,
            squeeze_excitation,
            project_conv,
            project_norm,
            use_residual: self.stride == 1 && self.in_channels == self.out_channels,
            layout: self.layout,
            packed: Default::default(),
        }
    }
}

/// Expand (1x1), depthwise (kxk), optional squeeze-and-excitation, project (1x1, no
/// activation), plus the input when shapes allow.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::{Activation, InvertedResidualConfig};
///
/// let device = Device::flex();
/// let block = InvertedResidualConfig::new(16, 5, 96, 40, true, Activation::HardSwish, 2).init(&device);
/// assert!(block.expand.is_some() && block.squeeze_excitation.is_some());
/// assert_eq!((block.expanded_channels(), block.stride()), (96, 2));
/// let y = block.forward(Tensor::ones([1, 16, 28, 28], &device));
/// assert_eq!(y.dims(), [1, 40, 14, 14]);
/// ```
#[derive(Debug, Clone)]
pub struct InvertedResidual {
    /// 1x1 expansion to `expanded_channels`; absent when the block does not expand.
    pub expand: Option<Conv2dNormActivation>,
    /// Depthwise convolution on `expanded_channels`.
    pub depthwise: Conv2dNormActivation,
    /// Squeeze-and-excitation on `expanded_channels`, if any.
    pub squeeze_excitation: Option<SqueezeExcitation>,
    /// 1x1 projection; weight `[out_channels, expanded_channels, 1, 1]`.
    pub project_conv: Conv2d,
    /// Batch norm of the projection; `None` once [folded](InvertedResidual::fuse) into
    /// `project_conv`.
    pub project_norm: Option<BatchNorm>,
    /// Whether the input is added to the output (stride 1 and equal channel counts).
    pub use_residual: bool,
    /// The torchvision key layout the parameters follow.
    pub layout: BlockLayout,
    /// The native kernels' packed weights for this block (inference on burn-flex), made by the
    /// first forward that needs them.
    pub(crate) packed: crate::native::KernelCache,
}

torchvision_module!(InvertedResidual {
    children {
        expand: |block: &Self| block.layer_path(0),
        depthwise: |block: &Self| block.layer_path(block.depthwise_index()),
        squeeze_excitation: |block: &Self| block.layer_path(block.depthwise_index() + 1),
        project_conv: |block: &Self| block.project_paths()[0].clone(),
        project_norm: |block: &Self| block.project_paths()[1].clone(),
    }
    lists {}
    state { use_residual, layout }
    caches { packed }
});

impl InvertedResidual {
    /// Position of the depthwise layer in torchvision's `nn.Sequential`.
    fn depthwise_index(&self) -> usize {
        match self.layout {
            BlockLayout::SsdLiteTailV2 | BlockLayout::SsdLiteTailV3 => 1,
            _ => usize::from(self.expand.is_some()),
        }
    }

    /// Key of the layer at `index` of torchvision's `nn.Sequential`.
    fn layer_path(&self, index: usize) -> String {
        match self.layout {
            BlockLayout::MobileNetV2 => format!("conv.{index}"),
            BlockLayout::MobileNetV3 => format!("block.{index}"),
            BlockLayout::SsdLiteTailV2 | BlockLayout::SsdLiteTailV3 => index.to_string(),
        }
    }

    /// Keys of the projection's convolution and batch norm.
    fn project_paths(&self) -> [String; 2] {
        let index = self.depthwise_index() + 1 + usize::from(self.squeeze_excitation.is_some());
        match self.layout {
            // `nn.Conv2d` and `norm_layer` appended directly.
            BlockLayout::MobileNetV2 | BlockLayout::SsdLiteTailV2 => {
                [self.layer_path(index), self.layer_path(index + 1)]
            }
            // One `Conv2dNormActivation` with `activation_layer=None`.
            BlockLayout::MobileNetV3 | BlockLayout::SsdLiteTailV3 => {
                let path = self.layer_path(index);
                [format!("{path}.0"), format!("{path}.1")]
            }
        }
    }

    /// Folds every batch norm into the convolution before it (for inference). The result
    /// computes the same function with fewer passes over the activations.
    ///
    /// ```
    /// use burn::tensor::{Device, Distribution, Tensor, Tolerance};
    /// use mobilenet_burn::{Activation, InvertedResidualConfig};
    ///
    /// let device = Device::flex();
    /// let block = InvertedResidualConfig::new(8, 3, 32, 8, true, Activation::HardSwish, 1).init(&device);
    /// let x = Tensor::random([1, 8, 12, 12], Distribution::Default, &device);
    /// let before = block.forward(x.clone());
    /// let fused = block.fuse();
    /// assert!(fused.project_norm.is_none());
    /// let after = fused.forward(x);
    /// after.into_data().assert_approx_eq::<f32>(&before.into_data(), Tolerance::default());
    /// ```
    pub fn fuse(self) -> Self {
        let project_conv = match &self.project_norm {
            Some(norm) => fold_batch_norm(self.project_conv, norm),
            None => self.project_conv,
        };
        Self {
            expand: self.expand.map(Conv2dNormActivation::fuse),
            depthwise: self.depthwise.fuse(),
            squeeze_excitation: self.squeeze_excitation,
            project_conv,
            project_norm: None,
            use_residual: self.use_residual,
            layout: self.layout,
            packed: Default::default(),
        }
    }

    /// Applies the block.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels, height, width]`
    /// - output: `[batch, out_channels, ceil(height / s), ceil(width / s)]`, where `s` is the
    ///   depthwise stride
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::{Activation, InvertedResidualConfig};
    ///
    /// let device = Device::flex();
    /// let block = InvertedResidualConfig::new(32, 3, 192, 64, false, Activation::ReLU6, 2).init(&device);
    /// assert_eq!(block.forward(Tensor::zeros([2, 32, 7, 9], &device)).dims(), [2, 64, 4, 5]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // Fused and without SE on burn-flex: the whole block in one pass per band of rows.
        let x = match native::inverted_residual(self, x) {
            Outcome::Computed(y) => return y,
            Outcome::Declined(x) => x,
        };
        let residual = self.use_residual.then(|| x.clone());
        self.project(self.hidden(x), residual)
    }

    /// `blocks` in turn on `x`, as `blocks.iter().fold(x, |x, block| block.forward(x))`; on
    /// burn-flex, runs of blocks that the blocked-layout kernel takes go through it together
    /// (one layout conversion per run instead of one per block; the same values).
    pub(crate) fn forward_all(blocks: &[Self], x: Tensor<4>) -> Tensor<4> {
        Self::forward_all_from(0, blocks, x)
    }

    /// `stem` then `blocks` on `x`, as `InvertedResidual::forward_all(blocks, stem.forward(x))`;
    /// on burn-flex, where the stem and a run of blocks at the start fit the blocked-layout
    /// kernel, the stem writes the run's input in that layout directly (the same values).
    pub(crate) fn forward_all_after_stem(
        stem: &Conv2dNormActivation,
        blocks: &[Self],
        x: Tensor<4>,
    ) -> Tensor<4> {
        match native::inverted_residual_run(Some(stem), blocks, x) {
            (x, 0) => Self::forward_all(blocks, stem.forward(x)),
            (y, run) => Self::forward_all_from(run, blocks, y),
        }
    }

    /// [`forward_all`](Self::forward_all) of `blocks[at..]`.
    fn forward_all_from(at: usize, blocks: &[Self], x: Tensor<4>) -> Tensor<4> {
        let mut x = x;
        let mut at = at;
        while at < blocks.len() {
            let (y, run) = native::inverted_residual_run(None, &blocks[at..], x);
            x = y;
            if run == 0 {
                x = blocks[at].forward(x);
                at += 1;
            } else {
                at += run;
            }
        }
        x
    }

    /// The block's output and the tensor its projection reads (after expansion, depthwise and
    /// squeeze-and-excitation): timm's `feature_location="expansion"` tap.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels, height, width]`
    /// - output: (`[batch, out_channels, h, w]`, `[batch, expanded_channels, h, w]`), `h` and `w`
    ///   as in [`forward`](Self::forward)
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::{Activation, InvertedResidualConfig};
    ///
    /// let device = Device::flex();
    /// let block = InvertedResidualConfig::new(40, 5, 240, 80, true, Activation::HardSwish, 2).init(&device);
    /// let (out, hidden) = block.forward_with_hidden(Tensor::zeros([1, 40, 14, 14], &device));
    /// assert_eq!((out.dims(), hidden.dims()), ([1, 80, 7, 7], [1, 240, 7, 7]));
    /// ```
    pub fn forward_with_hidden(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let residual = self.use_residual.then(|| x.clone());
        let hidden = self.hidden(x);
        (self.project(hidden.clone(), residual), hidden)
    }

    /// Expansion, depthwise and squeeze-and-excitation.
    fn hidden(&self, x: Tensor<4>) -> Tensor<4> {
        let depthwise = &self.depthwise;
        let y = match &self.expand {
            Some(expand) => expansion_then_depthwise(
                (&expand.conv, expand.norm.as_ref(), expand.activation),
                (
                    &depthwise.conv,
                    depthwise.norm.as_ref(),
                    depthwise.activation,
                ),
                x,
            ),
            None => depthwise.forward(x),
        };
        match &self.squeeze_excitation {
            Some(se) => se.forward(y),
            None => y,
        }
    }

    /// The linear projection, and the residual connection when the block has one.
    fn project(&self, y: Tensor<4>, residual: Option<Tensor<4>>) -> Tensor<4> {
        // Folded projection: a native kernel (burn-flex) may add the residual in the same pass.
        let y = match &self.project_norm {
            None => {
                match native::conv2d(
                    &self.project_conv,
                    Activation::Identity,
                    y,
                    residual.as_ref(),
                ) {
                    Outcome::Computed(y) => return y,
                    Outcome::Declined(y) => y,
                }
            }
            Some(_) => y,
        };
        let y = match native::training::conv(&self.project_conv, &y) {
            Some(y) => y,
            None => self.project_conv.forward(y),
        };
        let y = match &self.project_norm {
            Some(norm) => batch_norm(norm, y),
            None => y,
        };
        match residual {
            Some(x) => y + x,
            None => y,
        }
    }

    /// Channels after the expansion (the depthwise convolution's width); see
    /// [`InvertedResidual`] for an example.
    ///
    /// ```
    /// # use mobilenet_burn::{Activation, InvertedResidualConfig};
    /// let block = InvertedResidualConfig::new(16, 3, 64, 24, false, Activation::ReLU, 2)
    ///     .init(&burn::tensor::Device::flex());
    /// assert_eq!(block.expanded_channels(), 64);
    /// ```
    pub fn expanded_channels(&self) -> usize {
        self.depthwise.out_channels()
    }

    /// The block's spatial stride (its depthwise convolution's); see [`InvertedResidual`] for
    /// an example.
    ///
    /// ```
    /// # use mobilenet_burn::{Activation, InvertedResidualConfig};
    /// let block = InvertedResidualConfig::new(16, 3, 64, 24, false, Activation::ReLU, 2)
    ///     .init(&burn::tensor::Device::flex());
    /// assert_eq!(block.stride(), 2);
    /// ```
    pub fn stride(&self) -> usize {
        self.depthwise.conv.stride[0]
    }
}
