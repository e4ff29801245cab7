//! MobileNetV4's blocks, as timm's `_efficientnet_blocks.py` defines them, with timm's keys.

use burn::module::Param;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use crate::Activation;
use crate::fuse::{fold_optional_batch_norm as fold, scale_output_channels};
use crate::layers::conv_norm_act::{conv_norm_activation, conv_only, expansion_then_depthwise};
use crate::native::{self, Outcome};
use crate::torch_paths::{enum_module, torchvision_module};

/// `activation(norm(conv(x)))`: timm's `ConvNormAct` (stored as `conv` and `bn`) and
/// `ConvBnAct` (`conv` and `bn1`, the `cn` rows).
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
    /// `bn` or `bn1` (see `norm_key`); `None` once fused.
    pub norm: Option<BatchNorm>,
    /// The activation (timm's `BatchNormAct2d` applies it).
    pub activation: Activation,
    /// The batch norm's key: timm's `ConvNormAct` (inside the UIB blocks) names it `bn`, its
    /// `ConvBnAct` (the `cn` rows) `bn1`.
    pub norm_key: NormKey,
}

/// The key of a [`ConvNormAct`]'s batch norm.
///
/// ```
/// use mobilenet_burn::MobileNetV4Config;
/// use mobilenet_burn::models::mobilenet_v4::{MobileNetV4Block, NormKey};
///
/// let model = MobileNetV4Config::conv_small().init(&burn::tensor::Device::flex());
/// let MobileNetV4Block::Conv(block) = &model.stages[0][0] else { panic!() };
/// assert_eq!(block.norm_key, NormKey::Bn1); // blocks.0.0.bn1.weight
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKey {
    /// `bn` (timm's `ConvNormAct`).
    Bn,
    /// `bn1` (timm's `ConvBnAct`).
    Bn1,
}

torchvision_module!(ConvNormAct {
    children {
        conv: |_: &Self| "conv".to_string(),
        norm: |layer: &Self| match layer.norm_key {
            NormKey::Bn => "bn".to_string(),
            NormKey::Bn1 => "bn1".to_string(),
        },
    }
    lists {}
    state { activation, norm_key }
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

    pub(super) fn fuse(self) -> Self {
        let (conv, norm) = fold(self.conv, self.norm);
        Self { conv, norm, ..self }
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
        let pw_exp = &self.pw_exp;
        y = match &self.dw_mid {
            Some(dw_mid) => expansion_then_depthwise(
                (&pw_exp.conv, pw_exp.norm.as_ref(), pw_exp.activation),
                (&dw_mid.conv, dw_mid.norm.as_ref(), dw_mid.activation),
                y,
            ),
            None => pw_exp.forward(y),
        };
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
    /// timm's `ConvBnAct` (a [`ConvNormAct`] with [`NormKey::Bn1`]).
    Conv(ConvNormAct),
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

    pub(super) fn fuse(self) -> Self {
        match self {
            Self::Conv(block) => Self::Conv(block.fuse()),
            Self::FusedIb(block) => Self::FusedIb(block.fuse()),
            Self::Uib(block) => Self::Uib(block.fuse()),
            Self::Attention(block) => Self::Attention(block.fuse()),
        }
    }
}
