//! The architecture tables of the MobileNets, as typed constant data.
//!
//! Rows never store input channels: the builders thread each block's output into the next
//! block's input, so rows cannot disagree. Channel counts are before width scaling.

use serde::{Deserialize, Serialize};

use crate::Activation;
use crate::Activation::{HardSwish as HS, ReLU as RE};

/// One inverted-residual block of a MobileNetV3 table (torchvision's `bneck_conf`, less the
/// input channels and the width multiplier).
///
/// ```
/// use mobilenet_burn::tables::{BlockSpec, MOBILENET_V3_LARGE};
/// use mobilenet_burn::Activation;
///
/// // The paper's table 1, row "bneck, 5x5 | 72 | 40 | SE | RE | 2".
/// let row = BlockSpec { kernel_size: 5, expanded_channels: 72, out_channels: 40, use_se: true,
///                       activation: Activation::ReLU, stride: 2 };
/// assert_eq!(MOBILENET_V3_LARGE[3], row);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSpec {
    /// Depthwise kernel size.
    pub kernel_size: usize,
    /// Channels after expansion.
    pub expanded_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Whether the block has squeeze-and-excitation.
    pub use_se: bool,
    /// Activation of the expansion and depthwise layers.
    pub activation: Activation,
    /// Stride (1 or 2).
    pub stride: usize,
}

/// A [`BlockSpec`] row, in the paper's column order.
const fn bneck(
    kernel_size: usize,
    expanded_channels: usize,
    out_channels: usize,
    use_se: bool,
    activation: Activation,
    stride: usize,
) -> BlockSpec {
    BlockSpec {
        kernel_size,
        expanded_channels,
        out_channels,
        use_se,
        activation,
        stride,
    }
}

/// MobileNetV3-Large, Table 1 of <https://arxiv.org/abs/1905.02244>; torchvision's
/// `_mobilenet_v3_conf("mobilenet_v3_large")`. Stem: 16 channels; head: 1280.
#[rustfmt::skip]
pub const MOBILENET_V3_LARGE: [BlockSpec; 15] = [
    //    kernel expanded  out  SE     act stride
    bneck(3,     16,       16,  false, RE, 1),
    bneck(3,     64,       24,  false, RE, 2), // C1
    bneck(3,     72,       24,  false, RE, 1),
    bneck(5,     72,       40,  true,  RE, 2), // C2
    bneck(5,     120,      40,  true,  RE, 1),
    bneck(5,     120,      40,  true,  RE, 1),
    bneck(3,     240,      80,  false, HS, 2), // C3
    bneck(3,     200,      80,  false, HS, 1),
    bneck(3,     184,      80,  false, HS, 1),
    bneck(3,     184,      80,  false, HS, 1),
    bneck(3,     480,      112, true,  HS, 1),
    bneck(3,     672,      112, true,  HS, 1),
    bneck(5,     672,      160, true,  HS, 2), // C4
    bneck(5,     960,      160, true,  HS, 1),
    bneck(5,     960,      160, true,  HS, 1),
];

/// MobileNetV3-Small, Table 2 of <https://arxiv.org/abs/1905.02244>; torchvision's
/// `_mobilenet_v3_conf("mobilenet_v3_small")`. Stem: 16 channels; head: 1024.
#[rustfmt::skip]
pub const MOBILENET_V3_SMALL: [BlockSpec; 11] = [
    //    kernel expanded  out  SE     act stride
    bneck(3,     16,       16,  true,  RE, 2), // C1
    bneck(3,     72,       24,  false, RE, 2), // C2
    bneck(3,     88,       24,  false, RE, 1),
    bneck(5,     96,       40,  true,  HS, 2), // C3
    bneck(5,     240,      40,  true,  HS, 1),
    bneck(5,     240,      40,  true,  HS, 1),
    bneck(5,     120,      48,  true,  HS, 1),
    bneck(5,     144,      48,  true,  HS, 1),
    bneck(5,     288,      96,  true,  HS, 2), // C4
    bneck(5,     576,      96,  true,  HS, 1),
    bneck(5,     576,      96,  true,  HS, 1),
];

/// Stem width of both MobileNetV3s, before scaling.
pub const MOBILENET_V3_STEM_CHANNELS: usize = 16;
/// Classifier hidden width of MobileNetV3-Large, before scaling (C5).
pub const MOBILENET_V3_LARGE_HEAD_CHANNELS: usize = 1280;
/// Classifier hidden width of MobileNetV3-Small, before scaling (C5).
pub const MOBILENET_V3_SMALL_HEAD_CHANNELS: usize = 1024;
/// The last convolution widens the last block's output six-fold (torchvision's
/// `lastconv_output_channels = 6 * lastconv_input_channels`).
pub const MOBILENET_V3_LAST_CONV_EXPANSION: usize = 6;

/// The "minimalistic" form of a MobileNetV3 table (Keras' `minimalistic=True`, timm's
/// `tf_mobilenetv3_*_minimal_100`): every kernel 3x3, no squeeze-and-excitation, ReLU everywhere.
///
/// ```
/// use mobilenet_burn::tables::{minimal, MOBILENET_V3_SMALL};
///
/// let table = minimal(&MOBILENET_V3_SMALL);
/// assert_eq!(table.len(), MOBILENET_V3_SMALL.len());
/// assert!(table.iter().all(|row| row.kernel_size == 3 && !row.use_se));
/// ```
pub fn minimal(table: &[BlockSpec]) -> Vec<BlockSpec> {
    table
        .iter()
        .map(|row| BlockSpec {
            kernel_size: 3,
            use_se: false,
            activation: RE,
            ..*row
        })
        .collect()
}

/// One stage of the MobileNetV2 table: `repeats` blocks expanding by `expand_ratio` to
/// `channels` outputs, the first with `stride`.
///
/// ```
/// use mobilenet_burn::tables::{StageSpec, MOBILENET_V2_STAGES};
///
/// // The paper's table 2, row "bottleneck | t 6 | c 24 | n 2 | s 2".
/// let row = StageSpec { expand_ratio: 6, channels: 24, repeats: 2, stride: 2 };
/// assert_eq!(MOBILENET_V2_STAGES[1], row);
/// let blocks: usize = MOBILENET_V2_STAGES.iter().map(|stage| stage.repeats).sum();
/// assert_eq!(blocks, 17);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageSpec {
    /// Expansion factor `t` of each block (1 means no expansion layer).
    pub expand_ratio: usize,
    /// Output channels `c`.
    pub channels: usize,
    /// Number of blocks `n`.
    pub repeats: usize,
    /// Stride `s` of the first block; the others have stride 1.
    pub stride: usize,
}

/// A [`StageSpec`] row, in the paper's `t, c, n, s` order.
const fn stage(expand_ratio: usize, channels: usize, repeats: usize, stride: usize) -> StageSpec {
    StageSpec {
        expand_ratio,
        channels,
        repeats,
        stride,
    }
}

/// MobileNetV2, Table 2 of <https://arxiv.org/abs/1801.04381>; torchvision's
/// `inverted_residual_setting`. Stem: 32 channels; last convolution: 1280.
#[rustfmt::skip]
pub const MOBILENET_V2_STAGES: [StageSpec; 7] = [
    //    t  c    n  s
    stage(1, 16,  1, 1),
    stage(6, 24,  2, 2), // C1
    stage(6, 32,  3, 2), // C2
    stage(6, 64,  4, 2), // C3
    stage(6, 96,  3, 1),
    stage(6, 160, 3, 2), // C4
    stage(6, 320, 1, 1),
];

/// Stem width of MobileNetV2, before scaling.
pub const MOBILENET_V2_STEM_CHANNELS: usize = 32;
/// Last convolution width of MobileNetV2, before scaling (never scaled below 1.0).
pub const MOBILENET_V2_LAST_CHANNELS: usize = 1280;

/// One block of a MobileNetV4 table: timm's block strings (`mobilenetv3.py`,
/// `_gen_mobilenet_v4`) as typed data. Kernel sizes of 0 mean "no such layer".
///
/// ```
/// use mobilenet_burn::tables::{MOBILENET_V4_CONV_SMALL, V4Block};
///
/// // timm's 'uir_r1_a5_k5_s2_e3_c96': an ExtraDW block.
/// let row = V4Block::Uib { start_kernel: 5, mid_kernel: 5, stride: 2, expansion: 3.0, out_channels: 96 };
/// assert_eq!(MOBILENET_V4_CONV_SMALL[2][0].block, row);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum V4Block {
    /// Convolution, batch norm, activation (timm's `cn`, `ConvBnAct`).
    Conv {
        /// Square kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Output channels.
        out_channels: usize,
    },
    /// Fused inverted bottleneck: a full `kernel`x`kernel` expansion, then a 1x1 projection
    /// (timm's `er`, `EdgeResidual`).
    FusedIb {
        /// Kernel of the expansion.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Expansion ratio.
        expansion: f64,
        /// Output channels.
        out_channels: usize,
    },
    /// Universal inverted bottleneck (timm's `uir`): an optional depthwise convolution before
    /// the expansion (`start_kernel`, timm's `a`) and one after it (`mid_kernel`, `k`). Both:
    /// ExtraDW; only the middle one: the inverted residual; only the start one: ConvNeXt-like;
    /// neither: FFN.
    Uib {
        /// Depthwise kernel before the expansion, 0 for none.
        start_kernel: usize,
        /// Depthwise kernel after the expansion, 0 for none.
        mid_kernel: usize,
        /// Stride (taken by the middle depthwise convolution if any, else the start one).
        stride: usize,
        /// Expansion ratio.
        expansion: f64,
        /// Output channels.
        out_channels: usize,
    },
    /// Mobile multi-query attention (timm's `mqa`, `MobileAttention` with
    /// `MultiQueryAttention2d`): `heads` query heads sharing one key and one value head, keys
    /// and values downsampled by a strided depthwise convolution when `kv_stride > 1`.
    Mqa {
        /// Kernel of the keys' and values' downsampling convolution.
        kernel: usize,
        /// Query heads.
        heads: usize,
        /// Dimension of each key, query and value head.
        key_dim: usize,
        /// Stride of the keys' and values' downsampling (1: none).
        kv_stride: usize,
        /// Output channels.
        out_channels: usize,
    },
}

/// A [`V4Block`] repeated `repeats` times (timm's `r`; the stride applies to the first).
///
/// ```
/// use mobilenet_burn::tables::{MOBILENET_V4_CONV_SMALL, V4Block};
///
/// // timm's 'uir_r4_a0_k3_s1_e2_c96': four inverted residual blocks.
/// let row = MOBILENET_V4_CONV_SMALL[2][1];
/// assert_eq!(row.repeats, 4);
/// assert!(matches!(row.block, V4Block::Uib { start_kernel: 0, mid_kernel: 3, .. }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct V4Row {
    /// How many times the block repeats.
    pub repeats: usize,
    /// The block.
    pub block: V4Block,
}

const fn cn(repeats: usize, kernel: usize, stride: usize, out_channels: usize) -> V4Row {
    V4Row {
        repeats,
        block: V4Block::Conv {
            kernel,
            stride,
            out_channels,
        },
    }
}

const fn er(repeats: usize, kernel: usize, stride: usize, expansion: f64, out: usize) -> V4Row {
    V4Row {
        repeats,
        block: V4Block::FusedIb {
            kernel,
            stride,
            expansion,
            out_channels: out,
        },
    }
}

const fn uir(
    repeats: usize,
    start: usize,
    mid: usize,
    stride: usize,
    expansion: f64,
    out: usize,
) -> V4Row {
    V4Row {
        repeats,
        block: V4Block::Uib {
            start_kernel: start,
            mid_kernel: mid,
            stride,
            expansion,
            out_channels: out,
        },
    }
}

const fn mqa(kernel: usize, heads: usize, kv_stride: usize, key_dim: usize, out: usize) -> V4Row {
    V4Row {
        repeats: 1,
        block: V4Block::Mqa {
            kernel,
            heads,
            key_dim,
            kv_stride,
            out_channels: out,
        },
    }
}

/// MobileNetV4-Conv-Small (timm's `mobilenetv4_conv_small`), one slice per stage. Stem: 32
/// channels, stride 2; head: 1280.
#[rustfmt::skip]
pub const MOBILENET_V4_CONV_SMALL: [&[V4Row]; 5] = [
    &[cn(1, 3, 2, 32), cn(1, 1, 1, 32)],
    &[cn(1, 3, 2, 96), cn(1, 1, 1, 64)],
    &[uir(1, 5, 5, 2, 3.0, 96), uir(4, 0, 3, 1, 2.0, 96), uir(1, 3, 0, 1, 4.0, 96)],
    &[uir(1, 3, 3, 2, 6.0, 128), uir(1, 5, 5, 1, 4.0, 128), uir(1, 0, 5, 1, 4.0, 128),
      uir(1, 0, 5, 1, 3.0, 128), uir(2, 0, 3, 1, 4.0, 128)],
    &[cn(1, 1, 1, 960)],
];

/// MobileNetV4-Conv-Medium (timm's `mobilenetv4_conv_medium`). Stem: 32; head: 1280.
#[rustfmt::skip]
pub const MOBILENET_V4_CONV_MEDIUM: [&[V4Row]; 5] = [
    &[er(1, 3, 2, 4.0, 48)],
    &[uir(1, 3, 5, 2, 4.0, 80), uir(1, 3, 3, 1, 2.0, 80)],
    &[uir(1, 3, 5, 2, 6.0, 160), uir(2, 3, 3, 1, 4.0, 160), uir(1, 3, 5, 1, 4.0, 160),
      uir(1, 3, 3, 1, 4.0, 160), uir(1, 3, 0, 1, 4.0, 160), uir(1, 0, 0, 1, 2.0, 160),
      uir(1, 3, 0, 1, 4.0, 160)],
    &[uir(1, 5, 5, 2, 6.0, 256), uir(1, 5, 5, 1, 4.0, 256), uir(2, 3, 5, 1, 4.0, 256),
      uir(1, 0, 0, 1, 4.0, 256), uir(1, 3, 0, 1, 4.0, 256), uir(1, 3, 5, 1, 2.0, 256),
      uir(1, 5, 5, 1, 4.0, 256), uir(2, 0, 0, 1, 4.0, 256), uir(1, 5, 0, 1, 2.0, 256)],
    &[cn(1, 1, 1, 960)],
];

/// MobileNetV4-Hybrid-Medium (timm's `mobilenetv4_hybrid_medium`): Conv-Medium's stages with
/// mobile MQA blocks in the last two (keys and values downsampled by 2 at stride 16). Stem: 32;
/// head: 1280; layer scale on every UIB and MQA block.
#[rustfmt::skip]
pub const MOBILENET_V4_HYBRID_MEDIUM: [&[V4Row]; 5] = [
    &[er(1, 3, 2, 4.0, 48)],
    &[uir(1, 3, 5, 2, 4.0, 80), uir(1, 3, 3, 1, 2.0, 80)],
    &[uir(1, 3, 5, 2, 6.0, 160), uir(1, 0, 0, 1, 2.0, 160), uir(1, 3, 3, 1, 4.0, 160),
      uir(1, 3, 5, 1, 4.0, 160), mqa(3, 4, 2, 64, 160), uir(1, 3, 3, 1, 4.0, 160),
      mqa(3, 4, 2, 64, 160), uir(1, 3, 0, 1, 4.0, 160), mqa(3, 4, 2, 64, 160),
      uir(1, 3, 3, 1, 4.0, 160), mqa(3, 4, 2, 64, 160), uir(1, 3, 0, 1, 4.0, 160)],
    &[uir(1, 5, 5, 2, 6.0, 256), uir(1, 5, 5, 1, 4.0, 256), uir(2, 3, 5, 1, 4.0, 256),
      uir(1, 0, 0, 1, 2.0, 256), uir(1, 3, 5, 1, 2.0, 256), uir(1, 0, 0, 1, 2.0, 256),
      uir(1, 0, 0, 1, 4.0, 256), mqa(3, 4, 1, 64, 256), uir(1, 3, 0, 1, 4.0, 256),
      mqa(3, 4, 1, 64, 256), uir(1, 5, 5, 1, 4.0, 256), mqa(3, 4, 1, 64, 256),
      uir(1, 5, 0, 1, 4.0, 256), mqa(3, 4, 1, 64, 256), uir(1, 5, 0, 1, 4.0, 256)],
    &[cn(1, 1, 1, 960)],
];

/// MobileNetV4-Conv-Large (timm's `mobilenetv4_conv_large`). Stem: 24; head: 1280.
#[rustfmt::skip]
pub const MOBILENET_V4_CONV_LARGE: [&[V4Row]; 5] = [
    &[er(1, 3, 2, 4.0, 48)],
    &[uir(1, 3, 5, 2, 4.0, 96), uir(1, 3, 3, 1, 4.0, 96)],
    &[uir(1, 3, 5, 2, 4.0, 192), uir(3, 3, 3, 1, 4.0, 192), uir(1, 3, 5, 1, 4.0, 192),
      uir(5, 5, 3, 1, 4.0, 192), uir(1, 3, 0, 1, 4.0, 192)],
    &[uir(4, 5, 5, 2, 4.0, 512), uir(1, 5, 0, 1, 4.0, 512), uir(1, 5, 3, 1, 4.0, 512),
      uir(2, 5, 0, 1, 4.0, 512), uir(1, 5, 3, 1, 4.0, 512), uir(1, 5, 5, 1, 4.0, 512),
      uir(3, 5, 0, 1, 4.0, 512)],
    &[cn(1, 1, 1, 960)],
];

/// MobileNetV4-Hybrid-Large (timm's `mobilenetv4_hybrid_large`): Conv-Large's stages with
/// mobile MQA blocks in the last two (8 heads; key dimension 48 with keys and values downsampled
/// by 2 at stride 16, 64 at stride 32). Stem: 24; head: 1280; GELU activations; layer scale on
/// every UIB and MQA block.
#[rustfmt::skip]
pub const MOBILENET_V4_HYBRID_LARGE: [&[V4Row]; 5] = [
    &[er(1, 3, 2, 4.0, 48)],
    &[uir(1, 3, 5, 2, 4.0, 96), uir(1, 3, 3, 1, 4.0, 96)],
    &[uir(1, 3, 5, 2, 4.0, 192), uir(3, 3, 3, 1, 4.0, 192), uir(1, 3, 5, 1, 4.0, 192),
      uir(2, 5, 3, 1, 4.0, 192), mqa(3, 8, 2, 48, 192), uir(1, 5, 3, 1, 4.0, 192),
      mqa(3, 8, 2, 48, 192), uir(1, 5, 3, 1, 4.0, 192), mqa(3, 8, 2, 48, 192),
      uir(1, 5, 3, 1, 4.0, 192), mqa(3, 8, 2, 48, 192), uir(1, 3, 0, 1, 4.0, 192)],
    &[uir(4, 5, 5, 2, 4.0, 512), uir(1, 5, 0, 1, 4.0, 512), uir(1, 5, 3, 1, 4.0, 512),
      uir(2, 5, 0, 1, 4.0, 512), uir(1, 5, 3, 1, 4.0, 512), uir(1, 5, 5, 1, 4.0, 512),
      mqa(3, 8, 1, 64, 512), uir(1, 5, 0, 1, 4.0, 512), mqa(3, 8, 1, 64, 512),
      uir(1, 5, 0, 1, 4.0, 512), mqa(3, 8, 1, 64, 512), uir(1, 5, 0, 1, 4.0, 512),
      mqa(3, 8, 1, 64, 512), uir(1, 5, 0, 1, 4.0, 512)],
    &[cn(1, 1, 1, 960)],
];

/// Stem channels of MobileNetV4-Conv-Small, -Medium and -Hybrid-Medium.
pub const MOBILENET_V4_STEM_CHANNELS: usize = 32;
/// Stem channels of MobileNetV4-Conv-Large and -Hybrid-Large.
pub const MOBILENET_V4_LARGE_STEM_CHANNELS: usize = 24;
/// Width of MobileNetV4's head convolution (timm's `num_features`).
pub const MOBILENET_V4_HEAD_CHANNELS: usize = 1280;
