//! MobileNetV4, "MobileNetV4 - Universal Models for the Mobile Ecosystem" (Qin et al., 2024,
//! <https://arxiv.org/abs/2404.10518>), as timm implements it (`timm/models/mobilenetv3.py`,
//! `_gen_mobilenet_v4`, and the blocks of `_efficientnet_blocks.py`): the same tables, the same
//! parameter keys (`conv_stem`, `bn1`, `blocks.{stage}.{block}...`, `conv_head`, `norm_head`,
//! `classifier`), the same numerics, so timm's checkpoints load with
//! [`load_timm`](MobileNetV4::load_timm).

mod blocks;
mod summary;

pub use blocks::{
    ConvNormAct, EdgeResidual, KvDownsample, MobileMultiQueryAttention, MobileNetV4Block, NormKey,
    UniversalInvertedBottleneck,
};

use burn::config::Config;
use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::config_checks::{check_dropout, check_num_classes, invalid};
use super::tables::{
    MOBILENET_V4_CONV_LARGE, MOBILENET_V4_CONV_MEDIUM, MOBILENET_V4_CONV_SMALL,
    MOBILENET_V4_HEAD_CHANNELS, MOBILENET_V4_HYBRID_LARGE, MOBILENET_V4_HYBRID_MEDIUM,
    MOBILENET_V4_LARGE_STEM_CHANNELS, MOBILENET_V4_STEM_CHANNELS, V4Block, V4Row,
};
use crate::fuse::fold_optional_batch_norm as fold;
use crate::layers::conv_norm_act::conv_norm_activation;
use crate::torch_paths::torchvision_module;
use crate::{
    Activation, BatchNormSpec, CHANNEL_DIVISOR, Error, FeatureInfo, FeatureLocation,
    IMAGE_CHANNELS, init, make_divisible, native,
};

/// Stride of the stem convolution.
const STEM_STRIDE: usize = 2;
/// timm's layer-scale initial value for the hybrid models.
const HYBRID_LAYER_SCALE: f64 = 1e-5;

/// Configuration of [`MobileNetV4`]: a table of stages and the width of stem and head. Start
/// from [`conv_small`](Self::conv_small), [`conv_medium`](Self::conv_medium),
/// [`conv_large`](Self::conv_large), [`hybrid_medium`](Self::hybrid_medium) or
/// [`hybrid_large`](Self::hybrid_large).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::MobileNetV4Config;
///
/// let device = Device::flex();
/// let model = MobileNetV4Config::conv_small().with_num_classes(10).init(&device);
/// let logits = model.forward(Tensor::zeros([1, 3, 96, 96], &device));
/// assert_eq!(logits.dims(), [1, 10]);
/// ```
#[derive(Config, Debug)]
pub struct MobileNetV4Config {
    /// Stem output channels.
    pub stem_channels: usize,
    /// The stages, each a list of rows.
    pub stages: Vec<Vec<V4Row>>,
    /// Channels of the head's 1x1 convolution (timm's `num_features`). Default: 1280.
    #[config(default = "MOBILENET_V4_HEAD_CHANNELS")]
    pub head_channels: usize,
    /// The activation of every layer that has one. Default: ReLU (every MobileNetV4 but
    /// Hybrid-Large).
    #[config(default = "Activation::ReLU")]
    pub activation: Activation,
    /// Initial value of the per-channel layer scale of the UIB and attention blocks; `None` for
    /// none (the conv models). Default: none.
    #[config(default = "None")]
    pub layer_scale: Option<f64>,
    /// Number of classes. Default: 1000.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Dropout probability before the classifier (timm's `drop_rate`). Default: 0.
    #[config(default = 0.0)]
    pub dropout: f64,
}

fn stages(table: &[&[V4Row]]) -> Vec<Vec<V4Row>> {
    table.iter().map(|stage| stage.to_vec()).collect()
}

impl MobileNetV4Config {
    /// MobileNetV4-Conv-Small (timm's `mobilenetv4_conv_small`: 3.77 M parameters, 73.8% top-1).
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// let model = MobileNetV4Config::conv_small().init(&Device::flex());
    /// assert_eq!(model.num_learnable_params(), 3_774_024); // timm's count
    /// ```
    pub fn conv_small() -> Self {
        Self::new(MOBILENET_V4_STEM_CHANNELS, stages(&MOBILENET_V4_CONV_SMALL))
    }

    /// MobileNetV4-Conv-Medium (timm's `mobilenetv4_conv_medium`).
    ///
    /// ```
    /// # use mobilenet_burn::MobileNetV4Config;
    /// assert_eq!(MobileNetV4Config::conv_medium().stages.len(), 5);
    /// ```
    pub fn conv_medium() -> Self {
        Self::new(
            MOBILENET_V4_STEM_CHANNELS,
            stages(&MOBILENET_V4_CONV_MEDIUM),
        )
    }

    /// MobileNetV4-Conv-Large (timm's `mobilenetv4_conv_large`).
    ///
    /// ```
    /// # use mobilenet_burn::MobileNetV4Config;
    /// assert_eq!(MobileNetV4Config::conv_large().stem_channels, 24);
    /// ```
    pub fn conv_large() -> Self {
        Self::new(
            MOBILENET_V4_LARGE_STEM_CHANNELS,
            stages(&MOBILENET_V4_CONV_LARGE),
        )
    }

    /// MobileNetV4-Hybrid-Medium (timm's `mobilenetv4_hybrid_medium`): mobile multi-query
    /// attention in the last two stages, layer scale on every UIB and attention block.
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// let model = MobileNetV4Config::hybrid_medium().init(&Device::flex());
    /// assert_eq!(model.num_learnable_params(), 11_074_648); // timm's count
    /// ```
    pub fn hybrid_medium() -> Self {
        Self::new(
            MOBILENET_V4_STEM_CHANNELS,
            stages(&MOBILENET_V4_HYBRID_MEDIUM),
        )
        .with_layer_scale(Some(HYBRID_LAYER_SCALE))
    }

    /// MobileNetV4-Hybrid-Large (timm's `mobilenetv4_hybrid_large`): Conv-Large's stages with
    /// mobile multi-query attention in the last two, layer scale on every UIB and attention
    /// block, and GELU (exact, erf) as every layer's activation.
    ///
    /// ```
    /// use mobilenet_burn::{Activation, MobileNetV4Config};
    ///
    /// let config = MobileNetV4Config::hybrid_large();
    /// assert_eq!(config.activation, Activation::GELU);
    /// assert_eq!(config.stem_channels, 24);
    /// ```
    pub fn hybrid_large() -> Self {
        Self::new(
            MOBILENET_V4_LARGE_STEM_CHANNELS,
            stages(&MOBILENET_V4_HYBRID_LARGE),
        )
        .with_layer_scale(Some(HYBRID_LAYER_SCALE))
        .with_activation(Activation::GELU)
    }

    /// Checks every field, naming the first invalid one.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for no classes, a dropout outside `[0, 1)`, an empty table, a
    /// zero channel count, stride, kernel, repeat count or head, or a UIB block that strides
    /// without a depthwise convolution.
    ///
    /// ```
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// assert!(MobileNetV4Config::conv_small().validate().is_ok());
    /// let error = MobileNetV4Config::conv_small().with_num_classes(0).validate().unwrap_err();
    /// assert!(error.to_string().contains("num_classes"));
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        check_num_classes(self.num_classes)?;
        check_dropout(self.dropout)?;
        if self.stem_channels == 0 || self.head_channels == 0 {
            return Err(invalid(
                "stem_channels/head_channels",
                format!("{} / {}", self.stem_channels, self.head_channels),
                "both must be at least 1",
            ));
        }
        if self.stages.iter().all(|stage| stage.is_empty()) {
            return Err(invalid("stages", "an empty table", "at least one block"));
        }
        for row in self.stages.iter().flatten() {
            let bad = |what: &str| Err(invalid("stages", format!("{row:?}"), what));
            let (out, stride) = match row.block {
                V4Block::Conv {
                    kernel,
                    stride,
                    out_channels,
                } => {
                    if kernel == 0 {
                        return bad("a kernel of at least 1");
                    }
                    (out_channels, stride)
                }
                V4Block::FusedIb {
                    kernel,
                    stride,
                    expansion,
                    out_channels,
                } => {
                    if kernel == 0 || !(expansion.is_finite() && expansion > 0.0) {
                        return bad("a kernel of at least 1 and a positive expansion");
                    }
                    (out_channels, stride)
                }
                V4Block::Uib {
                    start_kernel,
                    mid_kernel,
                    stride,
                    expansion,
                    out_channels,
                } => {
                    if stride > 1 && start_kernel == 0 && mid_kernel == 0 {
                        return bad("a depthwise convolution to take the stride");
                    }
                    if !(expansion.is_finite() && expansion > 0.0) {
                        return bad("a positive expansion");
                    }
                    (out_channels, stride)
                }
                V4Block::Mqa {
                    kernel,
                    heads,
                    key_dim,
                    kv_stride,
                    out_channels,
                } => {
                    if heads == 0 || key_dim == 0 || kv_stride == 0 || kernel == 0 {
                        return bad("at least one head, key dimension, kernel and kv stride");
                    }
                    (out_channels, 1)
                }
            };
            if out == 0 || stride == 0 || row.repeats == 0 {
                return bad("output channels, stride and repeats of at least 1");
            }
        }
        Ok(())
    }

    /// Builds the model, or says which field is invalid.
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// assert!(MobileNetV4Config::conv_small().with_dropout(1.5).try_init(&Device::flex()).is_err());
    /// ```
    pub fn try_init(&self, device: &Device) -> Result<MobileNetV4, Error> {
        self.validate()?;
        let act = self.activation;
        let mut in_channels = self.stem_channels;
        let stages = self
            .stages
            .iter()
            .map(|stage| {
                let mut blocks = Vec::new();
                for row in stage {
                    for repeat in 0..row.repeats {
                        let block = build_block(
                            row.block,
                            repeat == 0,
                            in_channels,
                            act,
                            self.layer_scale,
                            device,
                        );
                        in_channels = block.out_channels();
                        blocks.push(block);
                    }
                }
                blocks
            })
            .collect();
        Ok(MobileNetV4 {
            stem_conv: conv(
                IMAGE_CHANNELS,
                self.stem_channels,
                3,
                STEM_STRIDE,
                1,
                device,
            ),
            stem_norm: Some(norm(self.stem_channels, device)),
            stages,
            head_conv: conv(in_channels, self.head_channels, 1, 1, 1, device),
            head_norm: Some(norm(self.head_channels, device)),
            activation: act,
            dropout: DropoutConfig::new(self.dropout).init(),
            classifier: init::linear(self.head_channels, self.num_classes, device),
        })
    }

    /// Builds the model.
    ///
    /// # Panics
    ///
    /// With the message of [`validate`](Self::validate)'s error.
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// let model = MobileNetV4Config::conv_small().with_num_classes(5).init(&Device::flex());
    /// assert_eq!(model.classifier.weight.dims(), [1280, 5]);
    /// ```
    pub fn init(&self, device: &Device) -> MobileNetV4 {
        self.try_init(device)
            .unwrap_or_else(|error| panic!("{error}"))
    }
}

/// A convolution with timm's padding, `((stride - 1) + dilation * (kernel - 1)) / 2`, no bias.
fn conv(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    let padding = ((stride - 1) + (kernel - 1)) / 2;
    init::conv2d(
        Conv2dConfig::new([in_channels, out_channels], [kernel, kernel])
            .with_stride([stride, stride])
            .with_groups(groups)
            .with_padding(PaddingConfig2d::Explicit(
                padding, padding, padding, padding,
            ))
            .with_bias(false),
        device,
    )
}

/// timm's default BatchNorm (PyTorch's: eps 1e-5, momentum 0.1).
fn norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormSpec::PYTORCH_DEFAULT.init(channels, device)
}

fn layer_scale(channels: usize, value: Option<f64>, device: &Device) -> Option<Param<Tensor<1>>> {
    value.map(|value| Param::from_tensor(Tensor::full([channels], value, device)))
}

fn build_block(
    spec: V4Block,
    first: bool,
    in_channels: usize,
    act: Activation,
    scale: Option<f64>,
    device: &Device,
) -> MobileNetV4Block {
    let stride_of = |stride: usize| if first { stride } else { 1 };
    let layer = |channels: [usize; 2],
                 kernel: usize,
                 stride: usize,
                 depthwise: bool,
                 activation: Activation| ConvNormAct {
        conv: conv(
            channels[0],
            channels[1],
            kernel,
            stride,
            if depthwise { channels[0] } else { 1 },
            device,
        ),
        norm: Some(norm(channels[1], device)),
        activation,
        norm_key: NormKey::Bn,
    };
    match spec {
        V4Block::Conv {
            kernel,
            stride,
            out_channels,
        } => MobileNetV4Block::Conv(ConvNormAct {
            conv: conv(
                in_channels,
                out_channels,
                kernel,
                stride_of(stride),
                1,
                device,
            ),
            norm: Some(norm(out_channels, device)),
            activation: act,
            norm_key: NormKey::Bn1,
        }),
        V4Block::FusedIb {
            kernel,
            stride,
            expansion,
            out_channels,
        } => {
            let stride = stride_of(stride);
            let mid = make_divisible(in_channels as f64 * expansion, CHANNEL_DIVISOR);
            MobileNetV4Block::FusedIb(EdgeResidual {
                expand_conv: conv(in_channels, mid, kernel, stride, 1, device),
                expand_norm: Some(norm(mid, device)),
                activation: act,
                project_conv: conv(mid, out_channels, 1, 1, 1, device),
                project_norm: Some(norm(out_channels, device)),
                has_skip: in_channels == out_channels && stride == 1,
            })
        }
        V4Block::Uib {
            start_kernel,
            mid_kernel,
            stride,
            expansion,
            out_channels,
        } => {
            let stride = stride_of(stride);
            let mid = make_divisible(in_channels as f64 * expansion, CHANNEL_DIVISOR);
            let start_stride = if mid_kernel > 0 { 1 } else { stride };
            MobileNetV4Block::Uib(UniversalInvertedBottleneck {
                dw_start: (start_kernel > 0).then(|| {
                    layer(
                        [in_channels; 2],
                        start_kernel,
                        start_stride,
                        true,
                        Activation::Identity,
                    )
                }),
                pw_exp: layer([in_channels, mid], 1, 1, false, act),
                dw_mid: (mid_kernel > 0).then(|| layer([mid; 2], mid_kernel, stride, true, act)),
                pw_proj: layer([mid, out_channels], 1, 1, false, Activation::Identity),
                layer_scale: layer_scale(out_channels, scale, device),
                has_skip: in_channels == out_channels && stride == 1,
            })
        }
        V4Block::Mqa {
            kernel,
            heads,
            key_dim,
            kv_stride,
            out_channels,
        } => {
            let downsample = |_: ()| {
                (kv_stride > 1).then(|| KvDownsample {
                    conv: conv(
                        in_channels,
                        in_channels,
                        kernel,
                        kv_stride,
                        in_channels,
                        device,
                    ),
                    norm: Some(norm(in_channels, device)),
                })
            };
            MobileNetV4Block::Attention(MobileMultiQueryAttention {
                norm: norm(in_channels, device),
                query: conv(in_channels, heads * key_dim, 1, 1, 1, device),
                key_down: downsample(()),
                key: conv(in_channels, key_dim, 1, 1, 1, device),
                value_down: downsample(()),
                value: conv(in_channels, key_dim, 1, 1, 1, device),
                output: conv(heads * key_dim, out_channels, 1, 1, 1, device),
                layer_scale: layer_scale(out_channels, scale, device),
                heads,
                key_dim,
                has_skip: in_channels == out_channels,
            })
        }
    }
}

/// MobileNetV4: the stem, the stages, and timm's head (global average, a 1x1 convolution with
/// batch norm and activation, dropout, the classifier), under timm's keys.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::MobileNetV4Config;
///
/// let device = Device::flex();
/// let model = MobileNetV4Config::conv_small().init(&device);
/// assert_eq!(model.forward(Tensor::zeros([2, 3, 64, 64], &device)).dims(), [2, 1000]);
/// ```
#[derive(Debug, Clone)]
pub struct MobileNetV4 {
    /// `conv_stem`: the stride-2 3x3 stem convolution.
    pub stem_conv: Conv2d,
    /// `bn1`; `None` once fused.
    pub stem_norm: Option<BatchNorm>,
    /// `blocks.{stage}.{index}`.
    pub stages: Vec<Vec<MobileNetV4Block>>,
    /// `conv_head`: the 1x1 convolution on the pooled features.
    pub head_conv: Conv2d,
    /// `norm_head`; `None` once fused.
    pub head_norm: Option<BatchNorm>,
    /// The activation of the stem and the head.
    pub activation: Activation,
    /// Dropout before the classifier (timm's `drop_rate`).
    pub dropout: Dropout,
    /// `classifier`: weight `[head_channels, num_classes]`.
    pub classifier: Linear,
}

torchvision_module!(MobileNetV4 {
    children {
        stem_conv: |_: &Self| "conv_stem".to_string(),
        stem_norm: |_: &Self| "bn1".to_string(),
        head_conv: |_: &Self| "conv_head".to_string(),
        head_norm: |_: &Self| "norm_head".to_string(),
        dropout: |_: &Self| "dropout".to_string(),
        classifier: |_: &Self| "classifier".to_string(),
    }
    lists {
        stages: |index: usize| format!("blocks.{index}"),
    }
    state { activation }
});

impl MobileNetV4 {
    /// Class logits.
    ///
    /// # Shapes
    /// - input: `[batch, 3, height, width]`, normalized as the weights expect
    /// - output: `[batch, num_classes]`
    ///
    /// # Panics
    ///
    /// On an input [`try_forward`](Self::try_forward) rejects.
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV4Config::hybrid_medium().with_num_classes(3).init(&device);
    /// assert_eq!(model.forward(Tensor::zeros([1, 3, 64, 48], &device)).dims(), [1, 3]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        if let Err(error) = self.check_input(x.dims()) {
            panic!("{error}");
        }
        native::forward_on_thread_pool(native::ForwardInput::of(&x), || {
            self.forward_head_on_caller(self.forward_features_on_caller(x))
        })
    }

    /// [`forward`](Self::forward) with the input checked first.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty batch, a zero height or width, or another channel
    /// count than 3.
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV4Config::conv_small().init(&device);
    /// assert!(model.try_forward(Tensor::zeros([1, 4, 32, 32], &device)).is_err());
    /// ```
    pub fn try_forward(&self, x: Tensor<4>) -> Result<Tensor<2>, Error> {
        self.check_input(x.dims())?;
        Ok(self.forward(x))
    }

    fn check_input(&self, shape: [usize; 4]) -> Result<(), Error> {
        check_image_input(shape)
    }

    /// The last feature map (the output of the last stage), before pooling.
    ///
    /// # Shapes
    /// - input: `[batch, 3, height, width]`
    /// - output: `[batch, 960, ceil(height / 32), ceil(width / 32)]`
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV4Config::conv_small().init(&device);
    /// assert_eq!(model.forward_features(Tensor::zeros([1, 3, 224, 224], &device)).dims(), [1, 960, 7, 7]);
    /// ```
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        if let Err(error) = self.check_input(x.dims()) {
            panic!("{error}");
        }
        native::forward_on_thread_pool(native::ForwardInput::of(&x), || {
            self.forward_features_on_caller(x)
        })
    }

    fn forward_features_on_caller(&self, x: Tensor<4>) -> Tensor<4> {
        let x = conv_norm_activation(&self.stem_conv, self.stem_norm.as_ref(), self.activation, x);
        self.stages
            .iter()
            .flatten()
            .fold(x, |x, block| block.forward(x))
    }

    /// timm's head on [`forward_features`](Self::forward_features)'s output: global average,
    /// `conv_head`, `norm_head` with the activation, dropout, the classifier.
    ///
    /// # Shapes
    /// - input: `[batch, channels, height, width]`
    /// - output: `[batch, num_classes]`
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV4Config::conv_small().with_num_classes(7).init(&device);
    /// assert_eq!(model.forward_head(Tensor::ones([2, 960, 3, 3], &device)).dims(), [2, 7]);
    /// ```
    pub fn forward_head(&self, features: Tensor<4>) -> Tensor<2> {
        native::forward_on_thread_pool(native::ForwardInput::of(&features), || {
            self.forward_head_on_caller(features)
        })
    }

    fn forward_head_on_caller(&self, features: Tensor<4>) -> Tensor<2> {
        let pooled = native::global_average_pool(features);
        let x = conv_norm_activation(
            &self.head_conv,
            self.head_norm.as_ref(),
            self.activation,
            pooled,
        );
        let x: Tensor<2> = x.flatten(1, 3);
        native::linear_activation(
            &self.classifier,
            Activation::Identity,
            self.dropout.forward(x),
        )
    }

    /// Loads a timm checkpoint (`.safetensors`, as timm publishes them on the Hugging Face hub,
    /// or a `.pth` of `model.state_dict()`), strictly: keys exactly timm's, every missing key,
    /// unused key and shape mismatch reported in one error.
    ///
    /// # Errors
    ///
    /// As [`load_torchvision`](Self::load_torchvision): [`Error::Io`],
    /// [`Error::UnreadableCheckpoint`], [`Error::CheckpointMismatch`].
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// let model = MobileNetV4Config::conv_small().init(&Device::flex());
    /// let error = model.load_timm("no-such-model.safetensors").unwrap_err();
    /// assert!(error.to_string().contains("no-such-model.safetensors"));
    /// ```
    pub fn load_timm(self, path: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        self.load_torchvision(path)
    }

    /// Saves the model as timm's `state_dict` in `.safetensors` (timm's keys), which timm loads
    /// with `model.load_state_dict(safetensors.torch.load_file(path), strict=True)` and
    /// [`load_timm`](Self::load_timm) reads back. Running statistics are included;
    /// `num_batches_tracked` is not (PyTorch fills it in). The file appears only once complete.
    ///
    /// # Errors
    ///
    /// [`Error::Save`] if the file cannot be written, or if the model was [`fuse`](Self::fuse)d
    /// (its BatchNorms are folded away: there is no timm layout left to save).
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// let device = Device::flex();
    /// let path = std::env::temp_dir().join(format!("v4-{}.safetensors", std::process::id()));
    /// let model = MobileNetV4Config::conv_small().with_num_classes(3).init(&device);
    /// model.save_timm(&path)?;
    /// let again = MobileNetV4Config::conv_small().with_num_classes(3).init(&device).load_timm(&path)?;
    /// assert_eq!(again.classifier.weight.dims(), [1280, 3]);
    /// assert!(model.fuse().save_timm(&path).is_err()); // no BatchNorm to save
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), mobilenet_burn::Error>(())
    /// ```
    pub fn save_timm(&self, path: impl AsRef<std::path::Path>) -> Result<(), Error> {
        let path = path.as_ref();
        if self.stem_norm.is_none() {
            return Err(Error::Save {
                path: path.to_path_buf(),
                reason: "the model is fused (BatchNorm folded): save it before fuse()".to_string(),
            });
        }
        crate::checkpoint::save_torchvision(&crate::checkpoint::synchronized(self), path)
    }

    /// The inference form: every batch norm that follows a convolution folded into it (the
    /// attention blocks' pre-norm stays). Outputs equal the unfused model's to float rounding.
    ///
    /// ```
    /// use burn::tensor::{Device, Distribution, Tensor, Tolerance};
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV4Config::hybrid_medium().init(&device);
    /// let x = Tensor::random([1, 3, 64, 64], Distribution::Default, &device);
    /// let before = model.forward(x.clone());
    /// let after = model.fuse().forward(x);
    /// after.into_data().assert_approx_eq::<f32>(&before.into_data(), Tolerance::absolute(1e-4));
    /// ```
    pub fn fuse(self) -> Self {
        let (stem_conv, stem_norm) = fold(self.stem_conv, self.stem_norm);
        let (head_conv, head_norm) = fold(self.head_conv, self.head_norm);
        Self {
            stem_conv,
            stem_norm,
            stages: fuse_stages(self.stages),
            head_conv,
            head_norm,
            ..self
        }
    }
}

/// Every block of `stages` in its inference form ([`MobileNetV4Block::fuse`]).
fn fuse_stages(stages: Vec<Vec<MobileNetV4Block>>) -> Vec<Vec<MobileNetV4Block>> {
    stages
        .into_iter()
        .map(|stage| stage.into_iter().map(MobileNetV4Block::fuse).collect())
        .collect()
}

impl MobileNetV4Block {
    /// The block's stride.
    fn stride(&self) -> usize {
        match self {
            Self::Conv(block) => block.conv.stride[0],
            Self::FusedIb(block) => block.expand_conv.stride[0],
            Self::Uib(block) => [&block.dw_start, &block.dw_mid]
                .into_iter()
                .flatten()
                .map(|layer| layer.conv.stride[0])
                .max()
                .unwrap_or(1),
            Self::Attention(_) => 1,
        }
    }
}

impl MobileNetV4 {
    /// The feature taps, equal to timm's `feature_info`: the stem (`layer` 0, timm's `bn1`) and
    /// the last stage of each stride (`layer` `s + 1` for `blocks.{s}`), C1 (stride 2) to C5
    /// (stride 32), with their channels.
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// let model = MobileNetV4Config::conv_small().init(&Device::flex());
    /// let taps: Vec<(usize, usize, usize)> =
    ///     model.feature_info().iter().map(|t| (t.layer, t.channels, t.reduction)).collect();
    /// // timm: bn1, blocks.0, blocks.1, blocks.2, blocks.4
    /// assert_eq!(taps, [(0, 32, 2), (1, 32, 4), (2, 64, 8), (3, 96, 16), (5, 960, 32)]);
    /// ```
    pub fn feature_info(&self) -> Vec<FeatureInfo> {
        let mut reduction = self.stem_conv.stride[0];
        let mut taps = vec![FeatureInfo {
            layer: 0,
            channels: self.stem_conv.weight.dims()[0],
            reduction,
            location: FeatureLocation::BlockOutput,
        }];
        let outputs: Vec<(usize, usize)> = self
            .stages
            .iter()
            .map(|stage| {
                reduction *= stage
                    .iter()
                    .map(MobileNetV4Block::stride)
                    .product::<usize>();
                let channels = stage.last().map_or(0, MobileNetV4Block::out_channels);
                (reduction, channels)
            })
            .collect();
        for (index, &(reduction, channels)) in outputs.iter().enumerate() {
            let last_of_its_stride = outputs
                .get(index + 1)
                .is_none_or(|&(next, _)| next != reduction);
            if last_of_its_stride && channels > 0 {
                taps.push(FeatureInfo {
                    layer: index + 1,
                    channels,
                    reduction,
                    location: FeatureLocation::BlockOutput,
                });
            }
        }
        taps
    }

    /// The tensors of the taps `indices` (positions in [`feature_info`](Self::feature_info),
    /// timm's `out_indices`), in that order, computing the network only as far as the deepest.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchFeatureTap`] for an index past the taps, [`Error::InvalidInput`] for an
    /// input the model does not take.
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// let device = Device::flex();
    /// let model = MobileNetV4Config::hybrid_medium().init(&device);
    /// let maps = model.forward_intermediates(Tensor::zeros([1, 3, 224, 224], &device), &[2, 4])?;
    /// assert_eq!((maps[0].dims(), maps[1].dims()), ([1, 80, 28, 28], [1, 960, 7, 7]));
    /// # Ok::<(), mobilenet_burn::Error>(())
    /// ```
    pub fn forward_intermediates(
        &self,
        x: Tensor<4>,
        indices: &[usize],
    ) -> Result<Vec<Tensor<4>>, Error> {
        self.check_input(x.dims())?;
        let taps = self.feature_info();
        let layers = indices
            .iter()
            .map(|&index| {
                taps.get(index)
                    .map(|tap| tap.layer)
                    .ok_or(Error::NoSuchFeatureTap {
                        index,
                        taps: taps.len(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(trunk_taps(
            &self.stem_conv,
            self.stem_norm.as_ref(),
            self.activation,
            &self.stages,
            &layers,
            x,
        ))
    }

    /// timm's `features_only=True` (`out_indices`): the trunk without head or classifier,
    /// returning the taps `indices` (positions in [`feature_info`](Self::feature_info)) on every
    /// forward. The stages past the deepest tap are dropped. Load weights first (or load a
    /// `features_only` checkpoint into the extractor: its keys are timm's, `conv_stem`, `bn1`,
    /// `blocks.*`), then convert.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchFeatureTap`] for an index past the taps.
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// let device = Device::flex();
    /// let backbone = MobileNetV4Config::conv_small().init(&device).features_only(&[2, 3, 4])?;
    /// let strides: Vec<usize> = backbone.feature_info().iter().map(|t| t.reduction).collect();
    /// assert_eq!(strides, [8, 16, 32]);
    /// let maps = backbone.forward(Tensor::zeros([1, 3, 64, 64], &device))?;
    /// assert_eq!(maps[2].dims(), [1, 960, 2, 2]);
    /// # Ok::<(), mobilenet_burn::Error>(())
    /// ```
    pub fn features_only(self, indices: &[usize]) -> Result<MobileNetV4FeatureExtractor, Error> {
        let taps = self.feature_info();
        let taps = indices
            .iter()
            .map(|&index| {
                taps.get(index).copied().ok_or(Error::NoSuchFeatureTap {
                    index,
                    taps: taps.len(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let deepest = taps.iter().map(|tap| tap.layer).max().unwrap_or(0);
        let mut stages = self.stages;
        stages.truncate(deepest);
        Ok(MobileNetV4FeatureExtractor {
            stem_conv: self.stem_conv,
            stem_norm: self.stem_norm,
            stages,
            activation: self.activation,
            taps,
        })
    }
}

/// An image batch: `[batch >= 1, 3, height >= 1, width >= 1]`.
fn check_image_input(shape: [usize; 4]) -> Result<(), Error> {
    let [batch, channels, height, width] = shape;
    if batch == 0 || channels != IMAGE_CHANNELS || height == 0 || width == 0 {
        return Err(Error::InvalidInput {
            shape: shape.to_vec(),
            expected: "[batch >= 1, 3, height >= 1, width >= 1]".into(),
        });
    }
    Ok(())
}

/// The outputs of trunk layers `layers` (0 the stem, `s + 1` stage `s`), computing only as far
/// as the deepest, on the crate's thread pool.
fn trunk_taps(
    stem_conv: &Conv2d,
    stem_norm: Option<&BatchNorm>,
    activation: Activation,
    stages: &[Vec<MobileNetV4Block>],
    layers: &[usize],
    x: Tensor<4>,
) -> Vec<Tensor<4>> {
    let deepest = layers.iter().copied().max().unwrap_or(0);
    native::forward_on_thread_pool(native::ForwardInput::of(&x), || {
        let mut outputs = vec![conv_norm_activation(stem_conv, stem_norm, activation, x)];
        for stage in stages.iter().take(deepest) {
            let x = outputs[outputs.len() - 1].clone();
            outputs.push(stage.iter().fold(x, |x, block| block.forward(x)));
        }
        layers.iter().map(|&layer| outputs[layer].clone()).collect()
    })
}

/// MobileNetV4's trunk returning feature maps (timm's `features_only=True`), made by
/// [`MobileNetV4::features_only`]: stem and stages under timm's keys, no head.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::MobileNetV4Config;
///
/// let device = Device::flex();
/// let backbone = MobileNetV4Config::hybrid_medium().init(&device).features_only(&[3, 4])?;
/// let channels: Vec<usize> = backbone.feature_info().iter().map(|tap| tap.channels).collect();
/// assert_eq!(channels, [160, 960]);
/// # Ok::<(), mobilenet_burn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MobileNetV4FeatureExtractor {
    /// `conv_stem`.
    pub stem_conv: Conv2d,
    /// `bn1`; `None` once fused.
    pub stem_norm: Option<BatchNorm>,
    /// `blocks.{stage}.{index}`, up to the deepest tap's stage.
    pub stages: Vec<Vec<MobileNetV4Block>>,
    /// The stem's activation.
    pub activation: Activation,
    taps: Vec<FeatureInfo>,
}

torchvision_module!(MobileNetV4FeatureExtractor {
    children {
        stem_conv: |_: &Self| "conv_stem".to_string(),
        stem_norm: |_: &Self| "bn1".to_string(),
    }
    lists {
        stages: |index: usize| format!("blocks.{index}"),
    }
    state { activation, taps }
});

impl MobileNetV4FeatureExtractor {
    /// The taps returned, in order (timm's `feature_info` of a `features_only` model).
    ///
    /// ```
    /// # use burn::tensor::Device;
    /// # use mobilenet_burn::MobileNetV4Config;
    /// let backbone = MobileNetV4Config::conv_medium().init(&Device::flex()).features_only(&[1])?;
    /// assert_eq!(backbone.feature_info()[0].channels, 48);
    /// # Ok::<(), mobilenet_burn::Error>(())
    /// ```
    pub fn feature_info(&self) -> &[FeatureInfo] {
        &self.taps
    }

    /// The feature maps of the taps.
    ///
    /// # Shapes
    /// - input: `[batch, 3, height, width]`
    /// - output: one `[batch, channels, ceil(height / reduction), ceil(width / reduction)]` per
    ///   tap
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an input the trunk does not take.
    ///
    /// ```
    /// # use burn::tensor::{Device, Tensor};
    /// # use mobilenet_burn::{Error, MobileNetV4Config};
    /// let device = Device::flex();
    /// let backbone = MobileNetV4Config::conv_small().init(&device).features_only(&[0, 1])?;
    /// assert_eq!(backbone.forward(Tensor::zeros([2, 3, 32, 32], &device))?.len(), 2);
    /// let gray = backbone.forward(Tensor::zeros([1, 1, 32, 32], &device));
    /// assert!(matches!(gray, Err(Error::InvalidInput { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Result<Vec<Tensor<4>>, Error> {
        check_image_input(x.dims())?;
        let layers: Vec<usize> = self.taps.iter().map(|tap| tap.layer).collect();
        Ok(trunk_taps(
            &self.stem_conv,
            self.stem_norm.as_ref(),
            self.activation,
            &self.stages,
            &layers,
            x,
        ))
    }

    /// Folds every batch norm that follows a convolution into it, as [`MobileNetV4::fuse`]; the
    /// maps are the unfused ones to float rounding.
    ///
    /// ```
    /// use burn::tensor::{Device, Distribution, Tensor, Tolerance};
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// let device = Device::flex();
    /// let backbone = MobileNetV4Config::conv_small().init(&device).features_only(&[2])?;
    /// let x = Tensor::random([1, 3, 64, 64], Distribution::Default, &device);
    /// let before = backbone.forward(x.clone())?.remove(0);
    /// let after = backbone.fuse().forward(x)?.remove(0);
    /// after.into_data().assert_approx_eq::<f32>(&before.into_data(), Tolerance::absolute(1e-4));
    /// # Ok::<(), mobilenet_burn::Error>(())
    /// ```
    pub fn fuse(self) -> Self {
        let (stem_conv, stem_norm) = fold(self.stem_conv, self.stem_norm);
        Self {
            stem_conv,
            stem_norm,
            stages: fuse_stages(self.stages),
            ..self
        }
    }
}
