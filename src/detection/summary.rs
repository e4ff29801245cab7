//! [`SsdLite::summary`]: the detector's per-layer parameters and multiply-adds, from the module
//! structure, as `summary()` on the classifiers.

use super::SsdLite;
use crate::summary::{self, LayerSummary, ModelSummary};
use crate::{InvertedResidual, num_learnable_params};

impl SsdLite {
    /// A per-layer table for one `size x size` image: output shape, parameters and
    /// multiply-adds of the backbone (split at C4 as torchvision splits it), the extra blocks
    /// and each head branch. Its multiply-add total is torchvision's "GFLOPS" for the model.
    pub fn summary(&self) -> ModelSummary {
        let input_shape = [1, 3, self.size, self.size];
        let mut layers = Vec::new();
        let mut row = |name: String, description: String, shape: [usize; 4], params, macs| {
            layers.push(LayerSummary {
                name,
                description,
                output_shape: shape.to_vec(),
                params,
                macs,
            });
        };
        let backbone = &self.backbone;
        let (mut shape, macs) = summary::conv_norm_act(&backbone.stem, input_shape);
        row(
            "backbone.features.0.0".into(),
            "stem Conv2dNormActivation".into(),
            shape,
            num_learnable_params(&backbone.stem),
            macs,
        );
        let blocks =
            |prefix: &str,
             first: usize,
             list: &[InvertedResidual],
             shape: &mut [usize; 4],
             row: &mut dyn FnMut(String, String, [usize; 4], usize, u64)| {
                for (index, layer) in list.iter().enumerate() {
                    let (out, macs) = summary::block(layer, *shape);
                    *shape = out;
                    row(
                        format!("{prefix}.{}", first + index),
                        summary::describe(layer),
                        out,
                        num_learnable_params(layer),
                        macs,
                    );
                }
            };
        blocks(
            "backbone.features.0",
            1,
            &backbone.blocks_before_c4,
            &mut shape,
            &mut row,
        );
        let (c4, macs) = summary::conv_norm_act(&backbone.c4_expansion, shape);
        row(
            format!(
                "backbone.features.0.{}",
                backbone.blocks_before_c4.len() + 1
            ),
            "C4 expansion: feature map 0".into(),
            c4,
            num_learnable_params(&backbone.c4_expansion),
            macs,
        );
        shape = c4;
        blocks(
            "backbone.features.1",
            0,
            std::slice::from_ref(&backbone.c4_tail),
            &mut shape,
            &mut row,
        );
        blocks(
            "backbone.features.1",
            1,
            &backbone.blocks_after_c4,
            &mut shape,
            &mut row,
        );
        let (last, macs) = summary::conv_norm_act(&backbone.last_conv, shape);
        row(
            format!("backbone.features.1.{}", backbone.blocks_after_c4.len() + 1),
            "last Conv2dNormActivation: feature map 1".into(),
            last,
            num_learnable_params(&backbone.last_conv),
            macs,
        );
        let mut maps = vec![c4, last];
        let mut shape = last;
        for (index, block) in backbone.extra.iter().enumerate() {
            let mut macs = 0;
            for layer in block {
                let (out, m) = summary::conv_norm_act(layer, shape);
                (shape, macs) = (out, macs + m);
            }
            row(
                format!("backbone.extra.{index}"),
                format!("extra block: feature map {}", index + 2),
                shape,
                block.iter().map(num_learnable_params).sum(),
                macs,
            );
            maps.push(shape);
        }
        for (name, branches) in [
            ("classification_head", &self.classification),
            ("regression_head", &self.regression),
        ] {
            for (index, (branch, &map)) in branches.iter().zip(&maps).enumerate() {
                let (shape, depthwise) = summary::conv_norm_act(&branch.depthwise, map);
                let (out, projection) = summary::conv(&branch.conv, shape);
                row(
                    format!("head.{name}.module_list.{index}"),
                    "depthwise 3x3 + 1x1 prediction".into(),
                    out,
                    num_learnable_params(branch),
                    depthwise + projection,
                );
            }
        }
        ModelSummary {
            input_shape,
            layers,
        }
    }
}
