//! MobileNetV2, "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (Sandler et al., 2018,
//! <https://arxiv.org/abs/1801.04381>). Mirrors torchvision's `models/mobilenetv2.py`: the same
//! table, `width_mult` and `round_nearest`, the same parameter keys.

use burn::config::Config;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Tensor};

use super::config_checks::{check_dropout, check_num_classes, check_width_mult, invalid};
use super::features::global_average_pool;
use super::tables::{
    MOBILENET_V2_LAST_CHANNELS, MOBILENET_V2_STAGES, MOBILENET_V2_STEM_CHANNELS, StageSpec,
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

/// Kernel size of every MobileNetV2 depthwise convolution.
const DEPTHWISE_KERNEL_SIZE: usize = 3;

/// Configuration of [`MobileNetV2`].
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::MobileNetV2Config;
///
/// let device = Device::flex();
/// // torchvision's mobilenet_v2(width_mult=0.5, num_classes=10).
/// let model = MobileNetV2Config::new().with_width_mult(0.5).with_num_classes(10).init(&device);
/// assert_eq!(model.forward(Tensor::zeros([2, 3, 96, 96], &device)).dims(), [2, 10]);
/// ```
#[derive(Config, Debug)]
pub struct MobileNetV2Config {
    /// Number of classes. Default: 1000.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Width multiplier applied to every channel count (the last convolution is never made
    /// narrower than 1280). Default: 1.0.
    #[config(default = 1.0)]
    pub width_mult: f64,
    /// Dropout probability before the classifier. Default: 0.2.
    #[config(default = 0.2)]
    pub dropout: f64,
    /// Channel counts are rounded to a multiple of this; 1 turns rounding off. Default: 8.
    #[config(default = "CHANNEL_DIVISOR")]
    pub round_nearest: usize,
    /// The stages, `t, c, n, s` rows. Default: the paper's table.
    #[config(default = "MOBILENET_V2_STAGES.to_vec()")]
    pub stages: Vec<StageSpec>,
}

impl MobileNetV2Config {
    fn adjust(&self, channels: f64) -> usize {
        make_divisible(channels * self.width_mult, self.round_nearest)
    }

    /// Checks every field.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first invalid field: `width_mult` not positive and
    /// finite, `num_classes` zero, `dropout` outside `[0, 1)`, `round_nearest` zero, or an
    /// empty or invalid stage table.
    ///
    /// ```
    /// use mobilenet_burn::{Error, MobileNetV2Config};
    ///
    /// assert!(MobileNetV2Config::new().validate().is_ok());
    /// let error = MobileNetV2Config::new().with_dropout(1.0).validate().unwrap_err();
    /// assert!(matches!(error, Error::InvalidConfig { field: "dropout", .. }));
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        check_width_mult(self.width_mult)?;
        check_num_classes(self.num_classes)?;
        check_dropout(self.dropout)?;
        if self.round_nearest == 0 {
            return Err(invalid("round_nearest", 0, "it must be at least 1"));
        }
        if self.stages.iter().all(|stage| stage.repeats == 0) {
            return Err(invalid(
                "stages",
                format!("{:?}", self.stages),
                "they need one block at least",
            ));
        }
        for (index, stage) in self.stages.iter().enumerate() {
            if !(1..=2).contains(&stage.stride) || stage.expand_ratio == 0 || stage.channels == 0 {
                return Err(invalid(
                    "stages",
                    format!("{stage:?} at row {index}"),
                    "every row needs stride 1 or 2 and a non-zero expansion ratio and channel count",
                ));
            }
        }
        Ok(())
    }

    /// The blocks with every structural rule applied: width scaling and rounding, only the
    /// first block of a stage strides, expansion `round(in * t)`, and input channels threaded.
    ///
    /// ```
    /// use mobilenet_burn::MobileNetV2Config;
    ///
    /// let blocks = MobileNetV2Config::new().block_configs();
    /// assert_eq!(blocks.len(), 17);
    /// // features.2: the first block of the second stage, 16 -> 96 -> 24 channels, stride 2.
    /// let block = &blocks[1];
    /// assert_eq!((block.in_channels, block.expanded_channels, block.out_channels), (16, 96, 24));
    /// assert_eq!(block.stride, 2);
    /// ```
    pub fn block_configs(&self) -> Vec<InvertedResidualConfig> {
        let mut in_channels = self.adjust(MOBILENET_V2_STEM_CHANNELS as f64);
        let mut blocks = Vec::new();
        for stage in &self.stages {
            let out_channels = self.adjust(stage.channels as f64);
            for repeat in 0..stage.repeats {
                let stride = if repeat == 0 { stage.stride } else { 1 };
                let config = InvertedResidualConfig::new(
                    in_channels,
                    DEPTHWISE_KERNEL_SIZE,
                    in_channels * stage.expand_ratio,
                    out_channels,
                    false,
                    Activation::ReLU6,
                    stride,
                )
                .with_norm(BatchNormSpec::PYTORCH_DEFAULT)
                .with_layout(BlockLayout::MobileNetV2);
                blocks.push(config);
                in_channels = out_channels;
            }
        }
        blocks
    }

    /// Width of the last convolution: 1280, scaled only by multipliers above 1.
    ///
    /// ```
    /// use mobilenet_burn::MobileNetV2Config;
    ///
    /// assert_eq!(MobileNetV2Config::new().with_width_mult(0.5).last_channels(), 1280);
    /// assert_eq!(MobileNetV2Config::new().with_width_mult(1.4).last_channels(), 1792);
    /// ```
    pub fn last_channels(&self) -> usize {
        make_divisible(
            MOBILENET_V2_LAST_CHANNELS as f64 * self.width_mult.max(1.0),
            self.round_nearest,
        )
    }

    /// Builds the model, or says which field is invalid.
    ///
    /// # Errors
    ///
    /// As [`MobileNetV2Config::validate`].
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV2Config;
    ///
    /// let device = Device::flex();
    /// assert!(MobileNetV2Config::new().with_width_mult(0.35).try_init(&device).is_ok());
    /// let error = MobileNetV2Config::new().with_width_mult(-1.0).try_init(&device).unwrap_err();
    /// assert!(error.to_string().contains("width_mult"));
    /// ```
    pub fn try_init(&self, device: &Device) -> Result<MobileNetV2, Error> {
        self.validate()?;
        let blocks = self.block_configs();
        let last_in = blocks[blocks.len() - 1].out_channels;
        let last_channels = self.last_channels();
        let layer = |in_channels, out_channels| {
            Conv2dNormActivationConfig::new(in_channels, out_channels)
                .with_norm(Some(BatchNormSpec::PYTORCH_DEFAULT))
                .with_activation(Activation::ReLU6)
        };
        Ok(MobileNetV2 {
            features: Features {
                stem: layer(IMAGE_CHANNELS, blocks[0].in_channels)
                    .with_stride(2)
                    .init(device),
                blocks: blocks.iter().map(|block| block.init(device)).collect(),
                last_conv: layer(last_in, last_channels)
                    .with_kernel_size(1)
                    .init(device),
            },
            dropout: DropoutConfig::new(self.dropout).init(),
            classifier: init::linear(last_channels, self.num_classes, device),
        })
    }

    /// Builds the model.
    ///
    /// # Panics
    ///
    /// Panics with the message of [`MobileNetV2Config::validate`] on an invalid config (burn's
    /// `init` convention); [`MobileNetV2Config::try_init`] returns it instead.
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV2Config;
    ///
    /// let model = MobileNetV2Config::new().init(&Device::flex());
    /// assert_eq!(model.summary(224, 224).total_params(), 3_504_872); // torchvision's count
    /// ```
    pub fn init(&self, device: &Device) -> MobileNetV2 {
        self.try_init(device)
            .unwrap_or_else(|error| panic!("{error}"))
    }
}

/// MobileNetV2: [`Features`], global average pooling, dropout and a linear classifier.
///
/// Parameters are stored under torchvision's keys (`features.*`, `classifier.1`), so
/// torchvision checkpoints load with [`load_torchvision`](MobileNetV2::load_torchvision).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::MobileNetV2Config;
///
/// let device = Device::flex();
/// let model = MobileNetV2Config::new().with_width_mult(0.35).init(&device);
/// let logits = model.forward(Tensor::zeros([1, 3, 64, 64], &device));
/// assert_eq!(logits.dims(), [1, 1000]);
/// ```
#[derive(Debug, Clone)]
pub struct MobileNetV2 {
    /// Stem, inverted residual blocks and last convolution (`features`).
    pub features: Features,
    /// Dropout before the classifier (`classifier.0`).
    pub dropout: Dropout,
    /// Output layer (`classifier.1`): weight `[last_channels, num_classes]`.
    pub classifier: Linear,
}

torchvision_module!(MobileNetV2 {
    children {
        features: |_: &Self| "features".to_string(),
        dropout: |_: &Self| "classifier.0".to_string(),
        classifier: |_: &Self| "classifier.1".to_string(),
    }
    lists {}
    state {}
});

impl MobileNetV2 {
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
    /// use mobilenet_burn::MobileNetV2Config;
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV2Config::new().with_width_mult(0.35).init(&device);
    /// let logits = model.forward(Tensor::zeros([4, 3, 64, 48], &device));
    /// assert_eq!(logits.dims(), [4, 1000]);
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
    /// use mobilenet_burn::{Error, MobileNetV2Config};
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV2Config::new().with_width_mult(0.35).init(&device);
    /// assert!(model.try_forward(Tensor::zeros([1, 3, 1, 1], &device)).is_ok());
    /// let empty = model.try_forward(Tensor::zeros([0, 3, 32, 32], &device));
    /// assert!(matches!(empty, Err(Error::InvalidInput { .. })));
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
    /// use mobilenet_burn::MobileNetV2Config;
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV2Config::new().with_width_mult(0.35).init(&device);
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
    /// `[1, 3, height, width]`, with totals (torchvision's 0.301 GFLOPS at 224x224 are these
    /// multiply-adds).
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV2Config;
    ///
    /// let summary = MobileNetV2Config::new().init(&Device::flex()).summary(224, 224);
    /// assert_eq!(summary.total_params(), 3_504_872);
    /// println!("{summary}"); // a Markdown table, one row per layer
    /// ```
    pub fn summary(&self, height: usize, width: usize) -> ModelSummary {
        let input_shape = [1, IMAGE_CHANNELS, height, width];
        let (mut layers, features) = self.features.summary_rows(input_shape);
        layers.push(pool_row(features));
        layers.push(linear_row("classifier.1", &self.classifier, 1));
        ModelSummary {
            input_shape,
            layers,
        }
    }

    /// The last feature map, before pooling.
    ///
    /// # Shapes
    /// - input: `[batch, 3, height, width]`
    /// - output: `[batch, last_channels, ceil(height / 32), ceil(width / 32)]`
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::MobileNetV2Config;
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV2Config::new().init(&device);
    /// let map = model.forward_features(Tensor::zeros([1, 3, 224, 224], &device));
    /// assert_eq!(map.dims(), [1, 1280, 7, 7]);
    /// ```
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        self.features.forward(x)
    }

    /// Pooling, dropout and classifier, applied to the output of
    /// [`forward_features`](MobileNetV2::forward_features).
    ///
    /// # Shapes
    /// - input: `[batch, channels, height, width]`
    /// - output: `[batch, num_classes]`
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::MobileNetV2Config;
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV2Config::new().with_num_classes(5).init(&device);
    /// let logits = model.forward_head(Tensor::ones([3, 1280, 7, 7], &device));
    /// assert_eq!(logits.dims(), [3, 5]);
    /// ```
    pub fn forward_head(&self, features: Tensor<4>) -> Tensor<2> {
        let x = global_average_pool(features);
        native::linear_activation(
            &self.classifier,
            Activation::Identity,
            self.dropout.forward(x),
        )
    }
}
