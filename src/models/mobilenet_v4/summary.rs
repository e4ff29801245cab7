//! [`MobileNetV4::summary`]: per-block parameters and multiply-adds from the module structure.

use burn::nn::conv::Conv2d;

use super::{KvDownsample, MobileNetV4, MobileNetV4Block};
use crate::summary::{self, LayerSummary, ModelSummary};
use crate::{IMAGE_CHANNELS, num_learnable_params};

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
        let (mut shape, macs) = summary::conv(&self.stem_conv, input_shape);
        row(
            "conv_stem".into(),
            "stem conv, norm, act",
            shape,
            num_learnable_params(&self.stem_conv) + num_learnable_params(&self.stem_norm),
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
                    num_learnable_params(block),
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
            num_learnable_params(&self.head_conv) + num_learnable_params(&self.head_norm),
            macs,
        );
        layers.push(summary::linear_row("classifier", &self.classifier, 1));
        ModelSummary {
            input_shape,
            layers,
        }
    }
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
