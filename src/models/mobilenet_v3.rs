//! MobileNetV3-Large and -Small, "Searching for MobileNetV3" (Howard et al., 2019,
//! <https://arxiv.org/abs/1905.02244>). Mirrors torchvision's `models/mobilenetv3.py`: the same
//! tables, the same `width_mult`, `reduced_tail` and `dilated` knobs, the same parameter keys.

use burn::config::Config;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Tensor};

use super::config_checks::{check_dropout, check_num_classes, check_width_mult, invalid};
use super::features::global_average_pool;
use super::tables::{
    BlockSpec, MOBILENET_V3_LARGE, MOBILENET_V3_LARGE_HEAD_CHANNELS,
    MOBILENET_V3_LAST_CONV_EXPANSION, MOBILENET_V3_SMALL, MOBILENET_V3_SMALL_HEAD_CHANNELS,
    MOBILENET_V3_STEM_CHANNELS, minimal,
};
use crate::init;
use crate::make_divisible::{CHANNEL_DIVISOR, make_divisible};
use crate::native;
use crate::summary::{ModelSummary, linear_row, pool_row};
use crate::torch_paths::torchvision_module;
use crate::{
    Activation, BatchNormSpec, BlockLayout, Conv2dNormActivationConfig, Error, Features,
    IMAGE_CHANNELS, InvertedResidualConfig,
};

/// Stride of the stem convolution: the first stride the blocks build on.
const STEM_STRIDE: usize = 2;
/// The output strides a MobileNetV3 can be built for: 32 (none dilated), 16 (the last stage
/// dilated, torchvision's `dilated`), 8 (the last two).
const OUTPUT_STRIDES: [usize; 3] = [8, 16, 32];
/// `reduced_tail` divides the last stage's channels by this.
const TAIL_REDUCTION: usize = 2;

/// Configuration of [`MobileNetV3`]. Start from [`MobileNetV3Config::large`] or
/// [`MobileNetV3Config::small`]; a custom table goes through [`MobileNetV3Config::new`].
///
/// A table is data, so variants are edits of it. MobileNetV3-Large without squeeze-excitation,
/// and a two-block network of one's own:
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::tables::BlockSpec;
/// use mobilenet_burn::{Activation, MobileNetV3Config};
///
/// let device = Device::flex();
/// let mut no_se = MobileNetV3Config::large().with_width_mult(0.5);
/// no_se.blocks.iter_mut().for_each(|row| row.use_se = false);
/// let model = no_se.init(&device);
///
/// #[rustfmt::skip]
/// let blocks = vec![
///     BlockSpec { kernel_size: 3, expanded_channels: 16, out_channels: 16, use_se: true,
///                 activation: Activation::ReLU, stride: 2 },
///     BlockSpec { kernel_size: 5, expanded_channels: 64, out_channels: 24, use_se: false,
///                 activation: Activation::HardSwish, stride: 2 },
/// ];
/// // stem 16 channels, classifier hidden width 256
/// let tiny = MobileNetV3Config::new(16, blocks, 256).with_num_classes(10).init(&device);
/// let logits = tiny.forward(Tensor::zeros([1, 3, 64, 64], &device));
/// assert_eq!(logits.dims(), [1, 10]);
/// ```
#[derive(Config, Debug)]
pub struct MobileNetV3Config {
    /// Stem output channels, before width scaling.
    pub stem_channels: usize,
    /// The inverted residual blocks, one row each.
    pub blocks: Vec<BlockSpec>,
    /// Hidden width of the classifier, before width scaling.
    pub head_channels: usize,
    /// Activation of the stem. Default: h-swish.
    #[config(default = "Activation::HardSwish")]
    pub stem_activation: Activation,
    /// Activation of the last convolution and the classifier's hidden layer. Default: h-swish.
    #[config(default = "Activation::HardSwish")]
    pub head_activation: Activation,
    /// Width multiplier applied to every channel count (then rounded to a multiple of 8).
    /// Default: 1.0.
    #[config(default = 1.0)]
    pub width_mult: f64,
    /// Halve the channels of the last stage and of the head, as the paper does for detection.
    /// Default: false.
    #[config(default = false)]
    pub reduced_tail: bool,
    /// Dilate the last stage instead of striding it (output stride 16), as torchvision's
    /// `dilated`. Default: false.
    #[config(default = false)]
    pub dilated: bool,
    /// Output stride of the trunk: 32, 16 or 8. Stages that would stride past it are dilated
    /// instead (each dilated stage doubles the dilation, every block of it included, as
    /// torchvision dilates its last stage); `dilated` is output stride 16. Default: 32.
    #[config(default = 32)]
    pub output_stride: usize,
    /// Number of classes. Default: 1000.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Dropout probability before the last linear layer. Default: 0.2.
    #[config(default = 0.2)]
    pub dropout: f64,
}

impl MobileNetV3Config {
    /// MobileNetV3-Large (torchvision's `mobilenet_v3_large`).
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// let model = MobileNetV3Config::large().init(&Device::flex());
    /// assert_eq!(model.summary(224, 224).total_params(), 5_483_032); // torchvision's count
    /// ```
    pub fn large() -> Self {
        Self::new(
            MOBILENET_V3_STEM_CHANNELS,
            MOBILENET_V3_LARGE.to_vec(),
            MOBILENET_V3_LARGE_HEAD_CHANNELS,
        )
    }

    /// MobileNetV3-Small (torchvision's `mobilenet_v3_small`).
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// let model = MobileNetV3Config::small().init(&Device::flex());
    /// assert_eq!(model.summary(224, 224).total_params(), 2_542_856); // torchvision's count
    /// ```
    pub fn small() -> Self {
        Self::new(
            MOBILENET_V3_STEM_CHANNELS,
            MOBILENET_V3_SMALL.to_vec(),
            MOBILENET_V3_SMALL_HEAD_CHANNELS,
        )
    }

    /// MobileNetV3-Large-Minimal (timm's `tf_mobilenetv3_large_minimal_100`): 3x3 kernels, no SE,
    /// ReLU everywhere.
    ///
    /// ```
    /// use mobilenet_burn::{Activation, MobileNetV3Config};
    ///
    /// let config = MobileNetV3Config::large_minimal();
    /// assert!(config.blocks.iter().all(|row| row.kernel_size == 3 && !row.use_se));
    /// assert!(config.blocks.iter().all(|row| row.activation == Activation::ReLU));
    /// ```
    pub fn large_minimal() -> Self {
        Self::new(
            MOBILENET_V3_STEM_CHANNELS,
            minimal(&MOBILENET_V3_LARGE),
            MOBILENET_V3_LARGE_HEAD_CHANNELS,
        )
        .with_stem_activation(Activation::ReLU)
        .with_head_activation(Activation::ReLU)
    }

    /// MobileNetV3-Small-Minimal (timm's `tf_mobilenetv3_small_minimal_100`).
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV3Config::small_minimal().with_num_classes(10).init(&device);
    /// assert_eq!(model.forward(Tensor::zeros([1, 3, 64, 64], &device)).dims(), [1, 10]);
    /// ```
    pub fn small_minimal() -> Self {
        Self::new(
            MOBILENET_V3_STEM_CHANNELS,
            minimal(&MOBILENET_V3_SMALL),
            MOBILENET_V3_SMALL_HEAD_CHANNELS,
        )
        .with_stem_activation(Activation::ReLU)
        .with_head_activation(Activation::ReLU)
    }

    /// Index of the first block of the last stage (C4): the last block with stride 2.
    fn tail_start(&self) -> Option<usize> {
        self.blocks.iter().rposition(|row| row.stride == 2)
    }

    fn adjust(&self, channels: usize) -> usize {
        make_divisible(channels as f64 * self.width_mult, CHANNEL_DIVISOR)
    }

    /// Checks every field.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first invalid field: `width_mult` not positive and
    /// finite, `num_classes` zero, `dropout` outside `[0, 1)`, an empty or invalid block table,
    /// or `reduced_tail`/`dilated` on a table without a stride-2 block.
    ///
    /// ```
    /// use mobilenet_burn::{Error, MobileNetV3Config};
    ///
    /// assert!(MobileNetV3Config::large().with_dilated(true).validate().is_ok());
    /// let error = MobileNetV3Config::small().with_num_classes(0).validate().unwrap_err();
    /// assert!(matches!(error, Error::InvalidConfig { field: "num_classes", .. }));
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        check_width_mult(self.width_mult)?;
        check_num_classes(self.num_classes)?;
        check_dropout(self.dropout)?;
        if self.blocks.is_empty() {
            return Err(invalid("blocks", "[]", "it must hold at least one block"));
        }
        for (index, row) in self.blocks.iter().enumerate() {
            if !(1..=2).contains(&row.stride)
                || row.kernel_size == 0
                || row.expanded_channels == 0
                || row.out_channels == 0
            {
                return Err(invalid(
                    "blocks",
                    format!("{row:?} at row {index}"),
                    "every row needs stride 1 or 2 and a non-zero kernel size and channel counts",
                ));
            }
        }
        if self.stem_channels == 0 || self.head_channels == 0 {
            return Err(invalid(
                "stem_channels/head_channels",
                format!("{}/{}", self.stem_channels, self.head_channels),
                "both must be positive",
            ));
        }
        if !OUTPUT_STRIDES.contains(&self.output_stride) {
            return Err(invalid(
                "output_stride",
                self.output_stride.to_string(),
                "8, 16 or 32",
            ));
        }
        if (self.reduced_tail || self.dilated) && self.tail_start().is_none() {
            return Err(invalid(
                "reduced_tail/dilated",
                "true",
                "they need a table with a stride-2 block to mark the last stage",
            ));
        }
        Ok(())
    }

    /// The blocks with every structural rule applied: width scaling and rounding, the reduced
    /// tail, dilation, and each block's input channels threaded from the one before.
    ///
    /// ```
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// // torchvision's reduced_tail (for detection and segmentation) halves the last stage.
    /// let full = MobileNetV3Config::large().block_configs();
    /// let reduced = MobileNetV3Config::large().with_reduced_tail(true).block_configs();
    /// assert_eq!((full[14].out_channels, reduced[14].out_channels), (160, 80));
    /// // dilated=True: the last stage keeps stride 16 and dilates its depthwise convolutions.
    /// let dilated = MobileNetV3Config::large().with_dilated(true).block_configs();
    /// assert_eq!(dilated[14].dilation, 2);
    /// ```
    pub fn block_configs(&self) -> Vec<InvertedResidualConfig> {
        let tail_start = self.tail_start().unwrap_or(self.blocks.len());
        let tail_divider = |in_tail: bool| {
            if self.reduced_tail && in_tail {
                TAIL_REDUCTION
            } else {
                1
            }
        };
        let mut in_channels = self.adjust(self.stem_channels);
        let target_stride = if self.dilated {
            self.output_stride.min(16)
        } else {
            self.output_stride
        };
        let (mut reduction, mut dilation) = (STEM_STRIDE, 1);
        self.blocks
            .iter()
            .enumerate()
            .map(|(index, row)| {
                // The first tail block expands its (untouched) input; its output and everything
                // after it belong to the tail.
                let expanded = row.expanded_channels / tail_divider(index > tail_start);
                let out = row.out_channels / tail_divider(index >= tail_start);
                // Stride to dilation: a stage that would pass the output stride keeps its
                // resolution and doubles the dilation instead, from its first block on.
                if row.stride > 1 {
                    if reduction * row.stride > target_stride {
                        dilation *= row.stride;
                    } else {
                        reduction *= row.stride;
                    }
                }
                let config = InvertedResidualConfig::new(
                    in_channels,
                    row.kernel_size,
                    self.adjust(expanded),
                    self.adjust(out),
                    row.use_se,
                    row.activation,
                    row.stride,
                )
                .with_dilation(dilation)
                .with_norm(BatchNormSpec::MOBILENET_V3)
                .with_layout(BlockLayout::MobileNetV3);
                in_channels = config.out_channels;
                config
            })
            .collect()
    }

    /// Hidden width of the classifier after scaling and tail reduction.
    ///
    /// ```
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// assert_eq!(MobileNetV3Config::large().resolved_head_channels(), 1280);
    /// assert_eq!(MobileNetV3Config::large().with_reduced_tail(true).resolved_head_channels(), 640);
    /// ```
    pub fn resolved_head_channels(&self) -> usize {
        self.adjust(self.head_channels / if self.reduced_tail { TAIL_REDUCTION } else { 1 })
    }

    /// Builds the model, or says which field is invalid.
    ///
    /// # Errors
    ///
    /// As [`MobileNetV3Config::validate`].
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// let device = Device::flex();
    /// let error = MobileNetV3Config::small().with_width_mult(f64::NAN).try_init(&device).unwrap_err();
    /// assert!(error.to_string().contains("width_mult"));
    /// ```
    pub fn try_init(&self, device: &Device) -> Result<MobileNetV3, Error> {
        self.validate()?;
        let norm = Some(BatchNormSpec::MOBILENET_V3);
        let blocks = self.block_configs();
        let stem_channels = blocks[0].in_channels;
        let last_in = blocks[blocks.len() - 1].out_channels;
        let last_out = MOBILENET_V3_LAST_CONV_EXPANSION * last_in;
        let head_channels = self.resolved_head_channels();

        let stem = Conv2dNormActivationConfig::new(IMAGE_CHANNELS, stem_channels)
            .with_stride(STEM_STRIDE)
            .with_norm(norm)
            .with_activation(self.stem_activation)
            .init(device);
        let last_conv = Conv2dNormActivationConfig::new(last_in, last_out)
            .with_kernel_size(1)
            .with_norm(norm)
            .with_activation(self.head_activation)
            .init(device);
        Ok(MobileNetV3 {
            features: Features {
                stem,
                blocks: blocks.iter().map(|block| block.init(device)).collect(),
                last_conv,
            },
            head: init::linear(last_out, head_channels, device),
            head_activation: self.head_activation,
            dropout: DropoutConfig::new(self.dropout).init(),
            classifier: init::linear(head_channels, self.num_classes, device),
        })
    }

    /// Builds the model.
    ///
    /// # Panics
    ///
    /// Panics with the message of [`MobileNetV3Config::validate`] on an invalid config (burn's
    /// `init` convention); [`MobileNetV3Config::try_init`] returns it instead.
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// let model = MobileNetV3Config::small().with_num_classes(37).init(&Device::flex());
    /// assert_eq!(model.classifier.weight.dims(), [1024, 37]);
    /// ```
    pub fn init(&self, device: &Device) -> MobileNetV3 {
        self.try_init(device)
            .unwrap_or_else(|error| panic!("{error}"))
    }
}

/// MobileNetV3: [`Features`], global average pooling, and a two-layer classifier.
///
/// Parameters are stored under torchvision's keys (`features.*`, `classifier.0`,
/// `classifier.3`), so torchvision checkpoints load with
/// [`load_torchvision`](MobileNetV3::load_torchvision).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::MobileNetV3Config;
///
/// let device = Device::flex();
/// let model = MobileNetV3Config::small().with_width_mult(0.5).init(&device);
/// let logits = model.forward(Tensor::zeros([1, 3, 64, 64], &device));
/// assert_eq!(logits.dims(), [1, 1000]);
/// ```
#[derive(Debug, Clone)]
pub struct MobileNetV3 {
    /// Stem, inverted residual blocks and last convolution (`features`).
    pub features: Features,
    /// Classifier hidden layer (`classifier.0`): weight `[last_conv_channels, head_channels]`.
    pub head: Linear,
    /// Activation after `head` (`classifier.1`).
    pub head_activation: Activation,
    /// Dropout before the last layer (`classifier.2`).
    pub dropout: Dropout,
    /// Output layer (`classifier.3`): weight `[head_channels, num_classes]`.
    pub classifier: Linear,
}

torchvision_module!(MobileNetV3 {
    children {
        features: |_: &Self| "features".to_string(),
        head: |_: &Self| "classifier.0".to_string(),
        dropout: |_: &Self| "classifier.2".to_string(),
        classifier: |_: &Self| "classifier.3".to_string(),
    }
    lists {}
    state { head_activation }
});

impl MobileNetV3 {
    /// Class logits.
    ///
    /// # Shapes
    /// - input: `[batch, 3, height, width]`, normalized as the weights expect
    /// - output: `[batch, num_classes]`
    ///
    /// # Panics
    ///
    /// On an input [`Features::check_input`] rejects, with its message.
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV3Config::small().init(&device);
    /// let probabilities = burn::tensor::activation::softmax(
    ///     model.forward(Tensor::zeros([2, 3, 64, 64], &device)),
    ///     1,
    /// );
    /// assert_eq!(probabilities.dims(), [2, 1000]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.features.assert_input(x.dims());
        // The head too runs on the thread pool (see `native::run_on_thread_pool`): entered once.
        native::forward_on_thread_pool(native::ForwardInput::of(&x), || {
            self.forward_head(self.features.forward_on_caller(x))
        })
    }

    /// [`forward`](Self::forward) with the input checked first: an empty batch, a zero height
    /// or width, or another channel count is an [`Error::InvalidInput`] instead of a panic. Any
    /// other size works (1x1, 1x10000: padding keeps every stage at least one pixel wide).
    /// Non-finite inputs compute without error: an all-NaN or all-infinite image, or a single
    /// NaN pixel, makes every logit NaN, as in PyTorch (`tests/degenerate_inputs.rs`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] naming the shape and what was expected.
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::{Error, MobileNetV3Config};
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV3Config::small().init(&device);
    /// assert!(model.try_forward(Tensor::zeros([1, 3, 1, 300], &device)).is_ok());
    /// let rgba = model.try_forward(Tensor::zeros([1, 4, 32, 32], &device));
    /// assert!(matches!(rgba, Err(Error::InvalidInput { .. })));
    /// ```
    pub fn try_forward(&self, x: Tensor<4>) -> Result<Tensor<2>, Error> {
        self.features.check_input(x.dims())?;
        Ok(self.forward(x))
    }

    /// The inference form of the model: every batch norm folded into the convolution before
    /// it. Outputs equal the unfused model's to float rounding; the result saves and loads with
    /// [`save_burnpack`](Self::save_burnpack)/[`load_burnpack`](Self::load_burnpack) into a
    /// fused model of the same configuration. torchvision checkpoints load into the unfused
    /// model only: load first, then fuse.
    ///
    /// ```
    /// use burn::tensor::{Device, Distribution, Tensor, Tolerance};
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV3Config::small().init(&device);
    /// let x = Tensor::random([1, 3, 64, 64], Distribution::Default, &device);
    /// let before = model.forward(x.clone());
    /// let after = model.fuse().forward(x);
    /// after.into_data().assert_approx_eq::<f32>(&before.into_data(), Tolerance::absolute(1e-4));
    /// ```
    pub fn fuse(self) -> Self {
        Self {
            features: self.features.fuse(),
            ..self
        }
    }

    /// Per-layer output shapes, parameters and multiply-adds for an input of
    /// `[1, 3, height, width]`, with totals (torchvision's 0.217 and 0.057 GFLOPS for Large and
    /// Small at 224x224 are these multiply-adds).
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// let summary = MobileNetV3Config::small().init(&Device::flex()).summary(224, 224);
    /// assert_eq!((summary.total_macs() as f64 / 1e9 * 1000.0).round() / 1000.0, 0.057);
    /// ```
    pub fn summary(&self, height: usize, width: usize) -> ModelSummary {
        let input_shape = [1, IMAGE_CHANNELS, height, width];
        let (mut layers, features) = self.features.summary_rows(input_shape);
        layers.push(pool_row(features));
        layers.push(linear_row("classifier.0", &self.head, 1));
        layers.push(linear_row("classifier.3", &self.classifier, 1));
        ModelSummary {
            input_shape,
            layers,
        }
    }

    /// The last feature map, before pooling.
    ///
    /// # Shapes
    /// - input: `[batch, 3, height, width]`
    /// - output: `[batch, 6 * last_block_channels, ceil(height / 32), ceil(width / 32)]`
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV3Config::small().init(&device);
    /// let map = model.forward_features(Tensor::zeros([1, 3, 224, 224], &device));
    /// assert_eq!(map.dims(), [1, 576, 7, 7]);
    /// ```
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        self.features.forward(x)
    }

    /// Pooling and classifier, applied to the output of
    /// [`forward_features`](MobileNetV3::forward_features).
    ///
    /// # Shapes
    /// - input: `[batch, channels, height, width]`
    /// - output: `[batch, num_classes]`
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::MobileNetV3Config;
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV3Config::large().with_num_classes(3).init(&device);
    /// let logits = model.forward_head(Tensor::ones([2, 960, 7, 7], &device));
    /// assert_eq!(logits.dims(), [2, 3]);
    /// ```
    pub fn forward_head(&self, features: Tensor<4>) -> Tensor<2> {
        let x = global_average_pool(features);
        let x = native::linear_activation(&self.head, self.head_activation, x);
        native::linear_activation(
            &self.classifier,
            Activation::Identity,
            self.dropout.forward(x),
        )
    }
}
