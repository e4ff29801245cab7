//! MobileNetV4, "MobileNetV4 - Universal Models for the Mobile Ecosystem" (Qin et al., 2024,
//! <https://arxiv.org/abs/2404.10518>), as timm implements it (`timm/models/mobilenetv3.py`,
//! `_gen_mobilenet_v4`, and the blocks of `_efficientnet_blocks.py`): the same tables, the same
//! parameter keys (`conv_stem`, `bn1`, `blocks.{stage}.{block}...`, `conv_head`, `norm_head`,
//! `classifier`), the same numerics, so timm's checkpoints load with
//! [`load_timm`](MobileNetV4::load_timm).

use burn::config::Config;
use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear, PaddingConfig2d};
use burn::tensor::activation::softmax;
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};

use super::config_checks::{check_dropout, check_num_classes, invalid};
use super::tables::{
    MOBILENET_V4_CONV_LARGE, MOBILENET_V4_CONV_MEDIUM, MOBILENET_V4_CONV_SMALL,
    MOBILENET_V4_HEAD_CHANNELS, MOBILENET_V4_HYBRID_MEDIUM, MOBILENET_V4_LARGE_STEM_CHANNELS,
    MOBILENET_V4_STEM_CHANNELS, V4Block, V4Row,
};
use crate::fuse::{fold_batch_norm, scale_output_channels};
use crate::layers::conv_norm_act::conv_norm_activation;
use crate::native::Outcome;
use crate::num_learnable_params;
use crate::summary::{self, LayerSummary, ModelSummary};
use crate::torch_paths::{enum_module, torchvision_module};
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
/// [`conv_large`](Self::conv_large) or [`hybrid_medium`](Self::hybrid_medium).
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
    };
    match spec {
        V4Block::Conv {
            kernel,
            stride,
            out_channels,
        } => MobileNetV4Block::Conv(ConvBnAct {
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

/// `activation(norm(conv(x)))`: timm's `ConvNormAct`, stored as `conv` and `bn`.
///
/// ```
/// use mobilenet_burn::MobileNetV4Config;
/// use mobilenet_burn::models::mobilenet_v4::MobileNetV4Block;
///
/// let model = MobileNetV4Config::conv_small().init(&burn::tensor::Device::flex());
/// let MobileNetV4Block::Uib(block) = &model.stages[2][0] else { panic!() };
/// assert_eq!(block.pw_exp.conv.weight.dims(), [192, 64, 1, 1]);
/// ```
#[derive(Debug, Clone)]
pub struct ConvNormAct {
    /// `conv`
    pub conv: Conv2d,
    /// `bn`; `None` once fused.
    pub norm: Option<BatchNorm>,
    /// The activation (timm's `BatchNormAct2d` applies it).
    pub activation: Activation,
}

torchvision_module!(ConvNormAct {
    children {
        conv: |_: &Self| "conv".to_string(),
        norm: |_: &Self| "bn".to_string(),
    }
    lists {}
    state { activation }
});

impl ConvNormAct {
    /// The layer's output.
    ///
    /// ```
    /// # use mobilenet_burn::MobileNetV4Config;
    /// # use mobilenet_burn::models::mobilenet_v4::MobileNetV4Block;
    /// # let device = burn::tensor::Device::flex();
    /// let model = MobileNetV4Config::conv_small().init(&device);
    /// let MobileNetV4Block::Uib(block) = &model.stages[2][0] else { panic!() };
    /// let y = block.pw_exp.forward(burn::tensor::Tensor::zeros([1, 64, 7, 7], &device));
    /// assert_eq!(y.dims(), [1, 192, 7, 7]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_norm_activation(&self.conv, self.norm.as_ref(), self.activation, x)
    }

    fn fuse(self) -> Self {
        match &self.norm {
            Some(norm) => Self {
                conv: fold_batch_norm(self.conv, norm),
                norm: None,
                ..self
            },
            None => self,
        }
    }
}

/// timm's `ConvBnAct` (the `cn` rows, the stem and the head), stored as `conv` and `bn1`.
///
/// ```
/// use mobilenet_burn::MobileNetV4Config;
///
/// use mobilenet_burn::models::mobilenet_v4::MobileNetV4Block;
///
/// let model = MobileNetV4Config::conv_small().init(&burn::tensor::Device::flex());
/// let MobileNetV4Block::Conv(block) = &model.stages[0][0] else { panic!() };
/// assert_eq!(block.conv.weight.dims(), [32, 32, 3, 3]);
/// ```
#[derive(Debug, Clone)]
pub struct ConvBnAct {
    /// `conv`
    pub conv: Conv2d,
    /// `bn1`; `None` once fused.
    pub norm: Option<BatchNorm>,
    /// The activation.
    pub activation: Activation,
}

torchvision_module!(ConvBnAct {
    children {
        conv: |_: &Self| "conv".to_string(),
        norm: |_: &Self| "bn1".to_string(),
    }
    lists {}
    state { activation }
});

impl ConvBnAct {
    /// The layer's output.
    ///
    /// ```
    /// # use mobilenet_burn::MobileNetV4Config;
    /// # let device = burn::tensor::Device::flex();
    /// let model = MobileNetV4Config::conv_small().init(&device);
    /// let y = model.stages[4][0].forward(burn::tensor::Tensor::zeros([1, 128, 2, 2], &device));
    /// assert_eq!(y.dims(), [1, 960, 2, 2]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_norm_activation(&self.conv, self.norm.as_ref(), self.activation, x)
    }

    fn fuse(self) -> Self {
        match &self.norm {
            Some(norm) => Self {
                conv: fold_batch_norm(self.conv, norm),
                norm: None,
                ..self
            },
            None => self,
        }
    }
}

/// The fused inverted bottleneck (timm's `EdgeResidual`, the `er` rows): a full convolution
/// that expands (`conv_exp`, `bn1`, activation), then a 1x1 projection (`conv_pwl`, `bn2`).
///
/// ```
/// use mobilenet_burn::MobileNetV4Config;
/// use mobilenet_burn::models::mobilenet_v4::MobileNetV4Block;
///
/// let model = MobileNetV4Config::hybrid_medium().init(&burn::tensor::Device::flex());
/// let MobileNetV4Block::FusedIb(block) = &model.stages[0][0] else { panic!() };
/// assert_eq!(block.expand_conv.weight.dims(), [128, 32, 3, 3]);
/// ```
#[derive(Debug, Clone)]
pub struct EdgeResidual {
    /// `conv_exp`
    pub expand_conv: Conv2d,
    /// `bn1`; `None` once fused.
    pub expand_norm: Option<BatchNorm>,
    /// The expansion's activation.
    pub activation: Activation,
    /// `conv_pwl`
    pub project_conv: Conv2d,
    /// `bn2`; `None` once fused.
    pub project_norm: Option<BatchNorm>,
    /// Whether the input is added to the output (same channels, stride 1).
    pub has_skip: bool,
}

torchvision_module!(EdgeResidual {
    children {
        expand_conv: |_: &Self| "conv_exp".to_string(),
        expand_norm: |_: &Self| "bn1".to_string(),
        project_conv: |_: &Self| "conv_pwl".to_string(),
        project_norm: |_: &Self| "bn2".to_string(),
    }
    lists {}
    state { activation, has_skip }
});

impl EdgeResidual {
    /// The block's output.
    ///
    /// ```
    /// # use mobilenet_burn::MobileNetV4Config;
    /// # use mobilenet_burn::models::mobilenet_v4::MobileNetV4Block;
    /// # let device = burn::tensor::Device::flex();
    /// let model = MobileNetV4Config::hybrid_medium().init(&device);
    /// let MobileNetV4Block::FusedIb(block) = &model.stages[0][0] else { panic!() };
    /// assert_eq!(block.forward(burn::tensor::Tensor::zeros([1, 32, 8, 8], &device)).dims(), [1, 48, 4, 4]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = self.has_skip.then(|| x.clone());
        let y = conv_norm_activation(
            &self.expand_conv,
            self.expand_norm.as_ref(),
            self.activation,
            x,
        );
        project_and_add(
            &self.project_conv,
            self.project_norm.as_ref(),
            &None,
            y,
            shortcut,
        )
    }

    fn fuse(self) -> Self {
        let (expand_conv, expand_norm) = fold(self.expand_conv, self.expand_norm);
        let (project_conv, project_norm) = fold(self.project_conv, self.project_norm);
        Self {
            expand_conv,
            expand_norm,
            project_conv,
            project_norm,
            ..self
        }
    }
}

/// Folds `norm` (taken) into `conv`.
fn fold(conv: Conv2d, norm: Option<BatchNorm>) -> (Conv2d, Option<BatchNorm>) {
    match norm {
        Some(norm) => (fold_batch_norm(conv, &norm), None),
        None => (conv, None),
    }
}

/// `scale(norm(conv(x))) + shortcut`: a block's last projection (no activation), its layer
/// scale and its residual. Once fused (no norm, no separate scale) a native kernel adds the
/// residual in the pass that writes the projection.
fn project_and_add(
    conv: &Conv2d,
    norm: Option<&BatchNorm>,
    gamma: &Option<Param<Tensor<1>>>,
    x: Tensor<4>,
    shortcut: Option<Tensor<4>>,
) -> Tensor<4> {
    let x = match (&shortcut, norm, gamma) {
        (Some(shortcut), None, None) => {
            match native::conv2d(conv, Activation::Identity, x, Some(shortcut)) {
                Outcome::Computed(y) => return y,
                Outcome::Declined(x) => x,
            }
        }
        _ => x,
    };
    let y = scaled(
        conv_norm_activation(conv, norm, Activation::Identity, x),
        gamma,
    );
    match shortcut {
        Some(shortcut) => y + shortcut,
        None => y,
    }
}

/// `x * gamma` per channel (timm's `LayerScale2d`).
fn scaled(x: Tensor<4>, gamma: &Option<Param<Tensor<1>>>) -> Tensor<4> {
    match gamma {
        Some(gamma) => {
            let channels = gamma.dims()[0];
            x * gamma.val().reshape([1, channels, 1, 1])
        }
        None => x,
    }
}

/// The universal inverted bottleneck (timm's `UniversalInvertedResidual`, the `uir` rows): an
/// optional depthwise convolution (`dw_start`, no activation), the 1x1 expansion (`pw_exp`), an
/// optional depthwise convolution (`dw_mid`), the 1x1 projection (`pw_proj`), the optional
/// layer scale (`layer_scale.gamma`) and the residual when the shape allows it.
///
/// ```
/// use mobilenet_burn::MobileNetV4Config;
/// use mobilenet_burn::models::mobilenet_v4::MobileNetV4Block;
///
/// let model = MobileNetV4Config::conv_small().init(&burn::tensor::Device::flex());
/// // 'uir_r1_a5_k5_s2_e3_c96': ExtraDW, both depthwise convolutions.
/// let MobileNetV4Block::Uib(block) = &model.stages[2][0] else { panic!() };
/// assert!(block.dw_start.is_some() && block.dw_mid.is_some() && !block.has_skip);
/// ```
#[derive(Debug, Clone)]
pub struct UniversalInvertedBottleneck {
    /// `dw_start`
    pub dw_start: Option<ConvNormAct>,
    /// `pw_exp`
    pub pw_exp: ConvNormAct,
    /// `dw_mid`
    pub dw_mid: Option<ConvNormAct>,
    /// `pw_proj`
    pub pw_proj: ConvNormAct,
    /// `layer_scale.gamma`: `[out_channels]`.
    pub layer_scale: Option<Param<Tensor<1>>>,
    /// Whether the input is added to the output (same channels, stride 1).
    pub has_skip: bool,
}

torchvision_module!(UniversalInvertedBottleneck {
    children {
        dw_start: |_: &Self| "dw_start".to_string(),
        pw_exp: |_: &Self| "pw_exp".to_string(),
        dw_mid: |_: &Self| "dw_mid".to_string(),
        pw_proj: |_: &Self| "pw_proj".to_string(),
        layer_scale: |_: &Self| "layer_scale.gamma".to_string(),
    }
    lists {}
    state { has_skip }
});

impl UniversalInvertedBottleneck {
    /// The block's output.
    ///
    /// ```
    /// # use mobilenet_burn::MobileNetV4Config;
    /// # use mobilenet_burn::models::mobilenet_v4::MobileNetV4Block;
    /// # let device = burn::tensor::Device::flex();
    /// let model = MobileNetV4Config::conv_small().init(&device);
    /// let MobileNetV4Block::Uib(block) = &model.stages[2][1] else { panic!() };
    /// assert_eq!(block.forward(burn::tensor::Tensor::zeros([1, 96, 7, 7], &device)).dims(), [1, 96, 7, 7]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = self.has_skip.then(|| x.clone());
        let mut y = x;
        if let Some(layer) = &self.dw_start {
            y = layer.forward(y);
        }
        y = self.pw_exp.forward(y);
        if let Some(layer) = &self.dw_mid {
            y = layer.forward(y);
        }
        project_and_add(
            &self.pw_proj.conv,
            self.pw_proj.norm.as_ref(),
            &self.layer_scale,
            y,
            shortcut,
        )
    }

    fn fuse(self) -> Self {
        let pw_proj = self.pw_proj.fuse();
        // The layer scale folds into the projection, which has no activation.
        let pw_proj = match &self.layer_scale {
            Some(gamma) => ConvNormAct {
                conv: scale_output_channels(pw_proj.conv, &gamma.val()),
                ..pw_proj
            },
            None => pw_proj,
        };
        Self {
            dw_start: self.dw_start.map(ConvNormAct::fuse),
            pw_exp: self.pw_exp.fuse(),
            dw_mid: self.dw_mid.map(ConvNormAct::fuse),
            pw_proj,
            layer_scale: None,
            ..self
        }
    }
}

/// The keys' or values' downsampling (timm's `down_conv` and `norm` of `attn.key` /
/// `attn.value`): a strided depthwise convolution and a batch norm, no activation.
///
/// ```
/// use mobilenet_burn::MobileNetV4Config;
/// use mobilenet_burn::models::mobilenet_v4::MobileNetV4Block;
///
/// let model = MobileNetV4Config::hybrid_medium().init(&burn::tensor::Device::flex());
/// let MobileNetV4Block::Attention(block) = &model.stages[2][4] else { panic!() };
/// assert_eq!(block.key_down.as_ref().unwrap().conv.stride, [2, 2]);
/// ```
#[derive(Debug, Clone)]
pub struct KvDownsample {
    /// `down_conv`
    pub conv: Conv2d,
    /// `norm`; `None` once fused.
    pub norm: Option<BatchNorm>,
}

torchvision_module!(KvDownsample {
    children {
        conv: |_: &Self| "down_conv".to_string(),
        norm: |_: &Self| "norm".to_string(),
    }
    lists {}
    state {}
});

/// Mobile multi-query attention (timm's `MobileAttention` with `MultiQueryAttention2d`, the
/// `mqa` rows): a batch norm (`norm`), `heads` query projections (`attn.query.proj`) over every
/// pixel, one key and one value projection (`attn.key.proj`, `attn.value.proj`) over a map
/// optionally downsampled by a strided depthwise convolution ([`KvDownsample`]), softmax
/// attention with scale `1 / sqrt(key_dim)`, the output projection (`attn.output.proj`), the
/// layer scale and the residual.
///
/// ```
/// use mobilenet_burn::MobileNetV4Config;
/// use mobilenet_burn::models::mobilenet_v4::MobileNetV4Block;
///
/// let model = MobileNetV4Config::hybrid_medium().init(&burn::tensor::Device::flex());
/// let MobileNetV4Block::Attention(block) = &model.stages[3][8] else { panic!() };
/// assert_eq!((block.heads, block.key_dim, block.key_down.is_none()), (4, 64, true));
/// ```
#[derive(Debug, Clone)]
pub struct MobileMultiQueryAttention {
    /// `norm`
    pub norm: BatchNorm,
    /// `attn.query.proj`: `[heads * key_dim, channels, 1, 1]`.
    pub query: Conv2d,
    /// `attn.key.{down_conv, norm}`, when keys are downsampled.
    pub key_down: Option<KvDownsample>,
    /// `attn.key.proj`: `[key_dim, channels, 1, 1]`.
    pub key: Conv2d,
    /// `attn.value.{down_conv, norm}`, when values are downsampled.
    pub value_down: Option<KvDownsample>,
    /// `attn.value.proj`: `[key_dim, channels, 1, 1]`.
    pub value: Conv2d,
    /// `attn.output.proj`: `[out_channels, heads * key_dim, 1, 1]`.
    pub output: Conv2d,
    /// `layer_scale.gamma`: `[out_channels]`.
    pub layer_scale: Option<Param<Tensor<1>>>,
    /// Query heads.
    pub heads: usize,
    /// Dimension of each query, key and value head.
    pub key_dim: usize,
    /// Whether the input is added to the output (same channels).
    pub has_skip: bool,
}

torchvision_module!(MobileMultiQueryAttention {
    children {
        norm: |_: &Self| "norm".to_string(),
        query: |_: &Self| "attn.query.proj".to_string(),
        key_down: |_: &Self| "attn.key".to_string(),
        key: |_: &Self| "attn.key.proj".to_string(),
        value_down: |_: &Self| "attn.value".to_string(),
        value: |_: &Self| "attn.value.proj".to_string(),
        output: |_: &Self| "attn.output.proj".to_string(),
        layer_scale: |_: &Self| "layer_scale.gamma".to_string(),
    }
    lists {}
    state { heads, key_dim, has_skip }
});

impl MobileMultiQueryAttention {
    /// The block's output.
    ///
    /// # Shapes
    /// - input: `[batch, channels, height, width]`
    /// - output: `[batch, out_channels, height, width]`
    ///
    /// ```
    /// # use mobilenet_burn::MobileNetV4Config;
    /// # use mobilenet_burn::models::mobilenet_v4::MobileNetV4Block;
    /// # let device = burn::tensor::Device::flex();
    /// let model = MobileNetV4Config::hybrid_medium().init(&device);
    /// let MobileNetV4Block::Attention(block) = &model.stages[2][4] else { panic!() };
    /// let y = block.forward(burn::tensor::Tensor::zeros([2, 160, 5, 7], &device));
    /// assert_eq!(y.dims(), [2, 160, 5, 7]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, _, height, width] = x.dims();
        let shortcut = self.has_skip.then(|| x.clone());
        let x = crate::layers::batch_norm::batch_norm(&self.norm, x);
        let (heads, key_dim) = (self.heads, self.key_dim);
        // [b, h * k, H, W] -> [b, h, H * W, k]
        let query = conv_only(&self.query, x.clone())
            .reshape([batch, heads, key_dim, height * width])
            .swap_dims(2, 3);
        // [b, k, h', w'] -> [b, 1, h' * w', k], shared by every head.
        let shared = |down: &Option<KvDownsample>, projection: &Conv2d| {
            let mut y = x.clone();
            if let Some(down) = down {
                y = conv_norm_activation(&down.conv, down.norm.as_ref(), Activation::Identity, y);
            }
            let y = conv_only(projection, y);
            let [_, channels, h, w] = y.dims();
            y.reshape([batch, 1, channels, h * w]).swap_dims(2, 3)
        };
        let keys = shared(&self.key_down, &self.key);
        let values = shared(&self.value_down, &self.value);
        let pixels = keys.dims()[2];
        let keys = keys.expand([batch, heads, pixels, key_dim]);
        let values = values.expand([batch, heads, pixels, key_dim]);
        let scale = (key_dim as f64).powf(-0.5);
        let attention = softmax((query * scale).matmul(keys.swap_dims(2, 3)), 3);
        // [b, h, H * W, k] -> [b, H * W, h, k] -> [b, H, W, h * k] -> [b, h * k, H, W]
        let out = attention
            .matmul(values)
            .swap_dims(1, 2)
            .reshape([batch, height, width, heads * key_dim])
            .permute([0, 3, 1, 2]);
        project_and_add(&self.output, None, &self.layer_scale, out, shortcut)
    }

    fn fuse(self) -> Self {
        let fuse_down = |down: Option<KvDownsample>| {
            down.map(|down| {
                let (conv, norm) = fold(down.conv, down.norm);
                KvDownsample { conv, norm }
            })
        };
        // The layer scale folds into the output projection.
        let output = match &self.layer_scale {
            Some(gamma) => scale_output_channels(self.output, &gamma.val()),
            None => self.output,
        };
        Self {
            key_down: fuse_down(self.key_down),
            value_down: fuse_down(self.value_down),
            output,
            layer_scale: None,
            ..self
        }
    }
}

/// A 1x1 (or any) convolution with nothing after it.
fn conv_only(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    conv_norm_activation(conv, None, Activation::Identity, x)
}

/// One block of a MobileNetV4 stage, under timm's key `blocks.{stage}.{index}`.
///
/// ```
/// use mobilenet_burn::MobileNetV4Config;
/// use mobilenet_burn::models::mobilenet_v4::MobileNetV4Block;
///
/// let model = MobileNetV4Config::hybrid_medium().init(&burn::tensor::Device::flex());
/// assert!(matches!(model.stages[2][4], MobileNetV4Block::Attention(_)));
/// assert_eq!(model.stages[2][4].out_channels(), 160);
/// ```
#[derive(Debug, Clone)]
pub enum MobileNetV4Block {
    /// timm's `ConvBnAct`.
    Conv(ConvBnAct),
    /// timm's `EdgeResidual`.
    FusedIb(EdgeResidual),
    /// timm's `UniversalInvertedResidual`.
    Uib(UniversalInvertedBottleneck),
    /// timm's `MobileAttention`.
    Attention(MobileMultiQueryAttention),
}

enum_module!(MobileNetV4Block {
    Conv,
    FusedIb,
    Uib,
    Attention
});

impl MobileNetV4Block {
    /// The block's output.
    ///
    /// ```
    /// # use mobilenet_burn::MobileNetV4Config;
    /// # let device = burn::tensor::Device::flex();
    /// let model = MobileNetV4Config::conv_small().init(&device);
    /// let y = model.stages[0][0].forward(burn::tensor::Tensor::zeros([1, 32, 8, 8], &device));
    /// assert_eq!(y.dims(), [1, 32, 4, 4]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Conv(block) => block.forward(x),
            Self::FusedIb(block) => block.forward(x),
            Self::Uib(block) => block.forward(x),
            Self::Attention(block) => block.forward(x),
        }
    }

    /// Output channels.
    ///
    /// ```
    /// # use mobilenet_burn::MobileNetV4Config;
    /// let model = MobileNetV4Config::conv_small().init(&burn::tensor::Device::flex());
    /// assert_eq!(model.stages[4][0].out_channels(), 960);
    /// ```
    pub fn out_channels(&self) -> usize {
        match self {
            Self::Conv(block) => block.conv.weight.dims()[0],
            Self::FusedIb(block) => block.project_conv.weight.dims()[0],
            Self::Uib(block) => block.pw_proj.conv.weight.dims()[0],
            Self::Attention(block) => block.output.weight.dims()[0],
        }
    }

    fn fuse(self) -> Self {
        match self {
            Self::Conv(block) => Self::Conv(block.fuse()),
            Self::FusedIb(block) => Self::FusedIb(block.fuse()),
            Self::Uib(block) => Self::Uib(block.fuse()),
            Self::Attention(block) => Self::Attention(block.fuse()),
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
        native::forward_on_thread_pool(x.is_autodiff(), || {
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
        let [batch, channels, height, width] = shape;
        if batch == 0 || channels != IMAGE_CHANNELS || height == 0 || width == 0 {
            return Err(Error::InvalidInput {
                shape: shape.to_vec(),
                expected: "[batch >= 1, 3, height >= 1, width >= 1]".into(),
            });
        }
        Ok(())
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
        native::forward_on_thread_pool(x.is_autodiff(), || self.forward_features_on_caller(x))
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
        native::forward_on_thread_pool(features.is_autodiff(), || {
            self.forward_head_on_caller(features)
        })
    }

    fn forward_head_on_caller(&self, features: Tensor<4>) -> Tensor<2> {
        let pooled = adaptive_avg_pool2d(features, [1, 1]);
        let x = conv_norm_activation(
            &self.head_conv,
            self.head_norm.as_ref(),
            self.activation,
            pooled,
        );
        let x: Tensor<2> = x.flatten(1, 3);
        self.classifier.forward(self.dropout.forward(x))
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
            stages: self
                .stages
                .into_iter()
                .map(|stage| stage.into_iter().map(MobileNetV4Block::fuse).collect())
                .collect(),
            head_conv,
            head_norm,
            ..self
        }
    }
}

impl MobileNetV4 {
    /// Per-block output shapes, parameters and multiply-adds for an input of
    /// `[1, 3, height, width]`, with totals. The attention blocks count their two matrix
    /// products (`q · kᵀ` and the weights times `v`) beside their convolutions, as torch's
    /// `FlopCounterMode` does; at 224x224 the totals equal its count for timm's models
    /// (Conv-Small 0.186 G, Hybrid-Medium 0.966 G).
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::MobileNetV4Config;
    ///
    /// let summary = MobileNetV4Config::conv_small().init(&Device::flex()).summary(224, 224);
    /// assert_eq!(summary.total_macs(), 186_005_568);
    /// assert_eq!(summary.total_params(), 3_774_024);
    /// ```
    pub fn summary(&self, height: usize, width: usize) -> ModelSummary {
        let input_shape = [1, IMAGE_CHANNELS, height, width];
        let mut layers = Vec::new();
        let mut row = |name: String, description: &str, shape: [usize; 4], params, macs| {
            layers.push(LayerSummary {
                name,
                description: description.to_string(),
                output_shape: shape.to_vec(),
                params,
                macs,
            });
        };
        let norm_params =
            |norm: &Option<BatchNorm>| norm.as_ref().map_or(0, |n| 2 * n.gamma.dims()[0]);
        let (mut shape, macs) = summary::conv(&self.stem_conv, input_shape);
        row(
            "conv_stem".into(),
            "stem conv, norm, act",
            shape,
            num_learnable_params(&self.stem_conv) + norm_params(&self.stem_norm),
            macs,
        );
        for (stage, blocks) in self.stages.iter().enumerate() {
            for (index, block) in blocks.iter().enumerate() {
                let (out, macs, description) = block_summary(block, shape);
                shape = out;
                row(
                    format!("blocks.{stage}.{index}"),
                    description,
                    shape,
                    learnable(block),
                    macs,
                );
            }
        }
        let pooled = [shape[0], shape[1], 1, 1];
        row("global_pool".into(), "global average pool", pooled, 0, 0);
        let (out, macs) = summary::conv(&self.head_conv, pooled);
        row(
            "conv_head".into(),
            "1x1 conv, norm, act",
            out,
            num_learnable_params(&self.head_conv) + norm_params(&self.head_norm),
            macs,
        );
        layers.push(summary::linear_row("classifier", &self.classifier, 1));
        ModelSummary {
            input_shape,
            layers,
        }
    }
}

/// Learned parameters of a block: its state dict less the BatchNorm running statistics.
fn learnable(block: &MobileNetV4Block) -> usize {
    crate::checkpoint::torchvision_state_dict_shapes(block)
        .iter()
        .filter(|(key, _)| !key.ends_with("running_mean") && !key.ends_with("running_var"))
        .map(|(_, shape)| shape.iter().product::<usize>())
        .sum()
}

/// Output shape, multiply-adds and a description of one block on an input of `shape`.
fn block_summary(block: &MobileNetV4Block, shape: [usize; 4]) -> ([usize; 4], u64, &'static str) {
    let chain = |layers: &[&Conv2d], shape: [usize; 4]| {
        layers.iter().fold((shape, 0u64), |(shape, macs), conv| {
            let (out, m) = summary::conv(conv, shape);
            (out, macs + m)
        })
    };
    match block {
        MobileNetV4Block::Conv(b) => {
            let (out, macs) = chain(&[&b.conv], shape);
            (out, macs, "ConvBnAct")
        }
        MobileNetV4Block::FusedIb(b) => {
            let (out, macs) = chain(&[&b.expand_conv, &b.project_conv], shape);
            (out, macs, "FusedIB (EdgeResidual)")
        }
        MobileNetV4Block::Uib(b) => {
            let mut convs: Vec<&Conv2d> = Vec::new();
            convs.extend(b.dw_start.as_ref().map(|l| &l.conv));
            convs.push(&b.pw_exp.conv);
            convs.extend(b.dw_mid.as_ref().map(|l| &l.conv));
            convs.push(&b.pw_proj.conv);
            let (out, macs) = chain(&convs, shape);
            let description = match (b.dw_start.is_some(), b.dw_mid.is_some()) {
                (true, true) => "UIB ExtraDW",
                (false, true) => "UIB IB",
                (true, false) => "UIB ConvNext",
                (false, false) => "UIB FFN",
            };
            (out, macs, description)
        }
        MobileNetV4Block::Attention(b) => {
            let (query, q_macs) = summary::conv(&b.query, shape);
            let kv = |down: &Option<KvDownsample>, projection: &Conv2d| match down {
                Some(down) => chain(&[&down.conv, projection], shape),
                None => chain(&[projection], shape),
            };
            let ((keys, k_macs), (_, v_macs)) =
                (kv(&b.key_down, &b.key), kv(&b.value_down, &b.value));
            let (pixels, kv_pixels) = (query[2] * query[3], keys[2] * keys[3]);
            // q · kᵀ and the weights times v: [heads, pixels, key_dim] by [kv_pixels, key_dim].
            let attention = 2 * query[0] * b.heads * pixels * kv_pixels * b.key_dim;
            let (out, o_macs) = summary::conv(
                &b.output,
                [query[0], b.heads * b.key_dim, query[2], query[3]],
            );
            (
                out,
                q_macs + k_macs + v_macs + attention as u64 + o_macs,
                "mobile MQA",
            )
        }
    }
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
        let deepest = layers.iter().copied().max().unwrap_or(0);
        Ok(native::forward_on_thread_pool(x.is_autodiff(), || {
            let mut outputs = vec![conv_norm_activation(
                &self.stem_conv,
                self.stem_norm.as_ref(),
                self.activation,
                x,
            )];
            for stage in self.stages.iter().take(deepest) {
                let x = outputs[outputs.len() - 1].clone();
                outputs.push(stage.iter().fold(x, |x, block| block.forward(x)));
            }
            layers.iter().map(|&layer| outputs[layer].clone()).collect()
        }))
    }
}
