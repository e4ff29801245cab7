//! The convolutional trunk shared by MobileNetV2 and V3: torchvision's `features`
//! `nn.Sequential` of stem, inverted residual blocks and last convolution.

use burn::tensor::Tensor;

use crate::native;
use crate::torch_paths::torchvision_module;
use crate::{BatchNormSpec, Conv2dNormActivation, Error, InvertedResidual};

/// Stem, blocks and last convolution, stored under torchvision's keys `0`, `1..=n`, `n + 1`.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::MobileNetV2Config;
///
/// let device = Device::flex();
/// let features = MobileNetV2Config::new().init(&device).features;
/// assert_eq!((features.in_channels(), features.blocks.len(), features.out_channels()), (3, 17, 1280));
/// let map = features.forward(Tensor::zeros([1, 3, 64, 64], &device));
/// assert_eq!(map.dims(), [1, 1280, 2, 2]);
/// ```
#[derive(Debug, Clone)]
pub struct Features {
    /// The stride-2 3x3 stem convolution (`features.0`).
    pub stem: Conv2dNormActivation,
    /// The inverted residual blocks (`features.1` to `features.n`).
    pub blocks: Vec<InvertedResidual>,
    /// The 1x1 convolution widening the last block's output (`features.{n + 1}`).
    pub last_conv: Conv2dNormActivation,
}

torchvision_module!(Features {
    children {
        stem: |_: &Self| "0".to_string(),
        last_conv: |features: &Self| (features.blocks.len() + 1).to_string(),
    }
    lists {
        blocks: |index: usize| (index + 1).to_string(),
    }
    state {}
});

impl Features {
    /// Sets the momentum of every batch normalization (the weight of each training batch in
    /// the running statistics: PyTorch's `momentum`; torchvision uses 0.1 for V2, 0.01 for V3).
    /// timm's `--bn-momentum`: a larger value lets the running statistics follow the weights
    /// in short runs from scratch. Parameters and statistics are unchanged; the momentum is
    /// configuration, not saved with the weights, so set it again after building a model to
    /// resume.
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// let features = MobileNetV3Config::small().init(&Device::flex()).features;
    /// let features = features.with_batch_norm_momentum(0.1);
    /// assert_eq!(features.stem.norm.as_ref().unwrap().momentum, 0.1);
    /// ```
    pub fn with_batch_norm_momentum(mut self, momentum: f64) -> Self {
        let mut norms = vec![self.stem.norm.as_mut(), self.last_conv.norm.as_mut()];
        for block in &mut self.blocks {
            norms.push(block.expand.as_mut().and_then(|layer| layer.norm.as_mut()));
            norms.push(block.depthwise.norm.as_mut());
            norms.push(block.project_norm.as_mut());
        }
        for norm in norms.into_iter().flatten() {
            norm.momentum = momentum;
        }
        self
    }

    /// Input channels the stem takes; see [`Features`] for an example.
    ///
    /// ```
    /// # use mobilenet_burn::MobileNetV3Config;
    /// let model = MobileNetV3Config::small().init(&burn::tensor::Device::flex());
    /// assert_eq!(model.features.in_channels(), 3);
    /// ```
    pub fn in_channels(&self) -> usize {
        self.stem.conv.weight.shape()[1] * self.stem.conv.groups
    }

    /// Output channels of the last convolution; see [`Features`] for an example.
    ///
    /// ```
    /// # use mobilenet_burn::MobileNetV3Config;
    /// let model = MobileNetV3Config::small().init(&burn::tensor::Device::flex());
    /// assert_eq!(model.features.out_channels(), 576);
    /// ```
    pub fn out_channels(&self) -> usize {
        self.last_conv.out_channels()
    }

    /// Checks that `shape` is an input the trunk takes: `[batch, in_channels, height, width]`
    /// with every dimension at least 1. Like torchvision, any height and width work: padding
    /// keeps every stage at least one pixel wide.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] naming the shape and what was expected.
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// let features = MobileNetV3Config::small().init(&Device::flex()).features;
    /// assert!(features.check_input([1, 3, 1, 10_000]).is_ok());
    /// let error = features.check_input([1, 4, 224, 224]).unwrap_err();
    /// assert!(error.to_string().contains("expected 3 channels"));
    /// ```
    pub fn check_input(&self, shape: [usize; 4]) -> Result<(), Error> {
        let [batch, channels, height, width] = shape;
        let in_channels = self.in_channels();
        let problem = if channels != in_channels {
            format!("expected {in_channels} channels (dimension 1), found {channels}")
        } else if batch == 0 || height == 0 || width == 0 {
            "batch, height and width must each be at least 1".to_string()
        } else {
            return Ok(());
        };
        Err(Error::InvalidInput {
            shape: shape.to_vec(),
            expected: format!("[batch, {in_channels}, height, width] image tensor: {problem}"),
        })
    }

    /// Sets epsilon and momentum of every batch norm (torchvision's SSDLite builds its
    /// backbone with `eps=0.001, momentum=0.03`).
    pub(crate) fn set_norm(&mut self, spec: BatchNormSpec) {
        let set = |norm: &mut burn::nn::BatchNorm| {
            norm.epsilon = spec.epsilon;
            norm.momentum = spec.momentum;
        };
        for layer in [&mut self.stem, &mut self.last_conv] {
            layer.norm.iter_mut().for_each(set);
        }
        for block in &mut self.blocks {
            if let Some(expand) = &mut block.expand {
                expand.norm.iter_mut().for_each(set);
            }
            block.depthwise.norm.iter_mut().for_each(set);
            block.project_norm.iter_mut().for_each(set);
        }
    }

    /// Folds every batch norm into the convolution before it, for inference.
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// let features = MobileNetV3Config::small().init(&Device::flex()).features;
    /// assert!(!features.is_fused());
    /// assert!(features.fuse().is_fused());
    /// ```
    pub fn fuse(self) -> Self {
        Self {
            stem: self.stem.fuse(),
            blocks: self
                .blocks
                .into_iter()
                .map(InvertedResidual::fuse)
                .collect(),
            last_conv: self.last_conv.fuse(),
        }
    }

    /// Whether [`fuse`](Self::fuse) folded the batch norms (the stem has none left; every
    /// MobileNet stem has one before); see [`fuse`](Self::fuse) for an example.
    ///
    /// ```
    /// # use mobilenet_burn::MobileNetV2Config;
    /// let model = MobileNetV2Config::new().init(&burn::tensor::Device::flex()).fuse();
    /// assert!(model.features.is_fused());
    /// ```
    pub fn is_fused(&self) -> bool {
        self.stem.norm.is_none()
    }

    /// Runs stem, blocks and last convolution.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels, height, width]`
    /// - output: `[batch, out_channels, ceil(height / s), ceil(width / s)]`, `s` the output
    ///   stride: 32, or 16 or 8 for a dilated MobileNetV3
    ///
    /// # Panics
    ///
    /// Panics with the message of [`Features::check_input`] on an input it rejects, as burn's
    /// own layers panic on bad shapes.
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// let device = Device::flex();
    /// let features = MobileNetV3Config::large().init(&device).features;
    /// let map = features.forward(Tensor::zeros([1, 3, 100, 60], &device));
    /// assert_eq!(map.dims(), [1, 960, 4, 2]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.assert_input(x.dims());
        native::forward_on_thread_pool(native::ForwardInput::of(&x), || self.forward_on_caller(x))
    }

    /// [`check_input`](Self::check_input) for the panicking forwards, as burn's own layers
    /// panic on bad shapes.
    pub(crate) fn assert_input(&self, shape: [usize; 4]) {
        if let Err(error) = self.check_input(shape) {
            panic!("{error}");
        }
    }

    /// [`forward`](Self::forward) without entering the thread pool or checking the input: for
    /// the public forwards that have done both already.
    pub(crate) fn forward_on_caller(&self, x: Tensor<4>) -> Tensor<4> {
        let x = InvertedResidual::forward_all_after_stem(&self.stem, &self.blocks, x);
        self.last_conv.forward(x)
    }

    /// [`forward_on_caller`](Self::forward_on_caller) that also returns the output of layer
    /// `tap` (torchvision's numbering: 0 the stem, `1..=n` the blocks, `n + 1` the last
    /// convolution), as torchvision's `IntermediateLayerGetter` taps a segmentation backbone.
    pub(crate) fn forward_with_tap_on_caller(
        &self,
        x: Tensor<4>,
        tap: usize,
    ) -> (Tensor<4>, Tensor<4>) {
        let tap_block = tap.min(self.blocks.len());
        let x = if tap_block == 0 {
            self.stem.forward(x)
        } else {
            InvertedResidual::forward_all_after_stem(&self.stem, &self.blocks[..tap_block], x)
        };
        let tapped = (tap <= self.blocks.len()).then(|| x.clone());
        let x = InvertedResidual::forward_all(&self.blocks[tap_block..], x);
        let out = self.last_conv.forward(x);
        (tapped.unwrap_or_else(|| out.clone()), out)
    }
}

/// Global average pooling to one value per channel, as both classifiers start
/// (torchvision's `adaptive_avg_pool2d(x, 1)` then `flatten(x, 1)`), on the native kernel
/// where it applies ([`native::global_average_pool`]).
///
/// # Shapes
/// - input: `[batch, channels, height, width]`
/// - output: `[batch, channels]`
pub(crate) fn global_average_pool(x: Tensor<4>) -> Tensor<2> {
    native::global_average_pool(x).flatten::<2>(1, 3)
}
