//! `summary()` of the segmentation models: per-layer output shapes, parameters and
//! multiply-adds from the module structure, as on the classifiers. The multiply-add total is
//! torchvision's "GFLOPS" for the model (its `_ops`: convolutions only, so the bilinear
//! resizes and LR-ASPP's gating product count nothing).

use burn::nn::conv::Conv2d;

use super::{DeepLabV3, LrAspp};
use crate::summary::{self, LayerSummary, ModelSummary};
use crate::{Features, IMAGE_CHANNELS, num_learnable_params};

/// The backbone's rows under torchvision's `backbone.{i}` names, the output shape of layer
/// `tap` and of the last layer.
fn backbone_rows(
    backbone: &Features,
    input: [usize; 4],
    tap: usize,
) -> (Vec<LayerSummary>, [usize; 4], [usize; 4]) {
    let (mut rows, out) = backbone.summary_rows(input);
    let tapped = rows.get(tap).map_or(out, |row| {
        row.output_shape.clone().try_into().unwrap_or(out)
    });
    for row in &mut rows {
        row.name = row.name.replacen("features", "backbone", 1);
    }
    (rows, tapped, out)
}

/// A row for `conv` on an input of `shape`, and its output shape.
fn conv_row(
    name: &str,
    description: &str,
    conv: &Conv2d,
    shape: [usize; 4],
) -> (LayerSummary, [usize; 4]) {
    let (out, macs) = summary::conv(conv, shape);
    let row = LayerSummary {
        name: name.to_string(),
        description: description.to_string(),
        output_shape: out.to_vec(),
        params: num_learnable_params(conv),
        macs,
    };
    (row, out)
}

/// The resize of the logits to the input's size (no parameters, no multiply-adds counted).
fn resize_row([batch, classes, ..]: [usize; 4], [height, width]: [usize; 2]) -> LayerSummary {
    LayerSummary {
        name: "interpolate".into(),
        description: "bilinear resize to the input".into(),
        output_shape: vec![batch, classes, height, width],
        params: 0,
        macs: 0,
    }
}

impl LrAspp {
    /// Per-layer output shapes, parameters and multiply-adds for an input of
    /// `[1, 3, height, width]`, with totals (torchvision's 3,221,538 parameters and 2.086
    /// GFLOPS at 520x520 for `lraspp_mobilenet_v3_large`).
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::segmentation::LrAsppConfig;
    ///
    /// let summary = LrAsppConfig::mobilenet_v3_large(21).init(&Device::flex()).summary(520, 520);
    /// assert_eq!(summary.total_params(), 3_221_538);
    /// assert_eq!((summary.total_macs() as f64 / 1e6).round() / 1e3, 2.086);
    /// ```
    pub fn summary(&self, height: usize, width: usize) -> ModelSummary {
        let input_shape = [1, IMAGE_CHANNELS, height, width];
        let (mut layers, low, high) = backbone_rows(&self.backbone, input_shape, self.low_layer);
        let (row, gated) = conv_row(
            "classifier.cbr",
            "1x1 Conv2dNormActivation ReLU",
            &self.cbr.conv,
            high,
        );
        layers.push(LayerSummary {
            params: num_learnable_params(&self.cbr),
            ..row
        });
        let pooled = [high[0], high[1], 1, 1];
        layers.push(
            conv_row(
                "classifier.scale",
                "global average, 1x1 conv, sigmoid gate",
                &self.scale,
                pooled,
            )
            .0,
        );
        let upsampled = [gated[0], gated[1], low[2], low[3]];
        let (row, logits) = conv_row(
            "classifier.low_classifier",
            "1x1 conv",
            &self.low_classifier,
            low,
        );
        layers.push(row);
        layers.push(
            conv_row(
                "classifier.high_classifier",
                "1x1 conv of the upsampled gated map",
                &self.high_classifier,
                upsampled,
            )
            .0,
        );
        layers.push(resize_row(logits, [height, width]));
        ModelSummary {
            input_shape,
            layers,
        }
    }
}

impl DeepLabV3 {
    /// Per-layer output shapes, parameters and multiply-adds for an input of
    /// `[1, 3, height, width]`, with totals (torchvision's 11,029,328 parameters and 10.452
    /// GFLOPS at 520x520 for `deeplabv3_mobilenet_v3_large`, its auxiliary head included).
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::segmentation::DeepLabV3Config;
    ///
    /// let model = DeepLabV3Config::mobilenet_v3_large(21).with_aux_classifier(true).init(&Device::flex());
    /// let summary = model.summary(520, 520);
    /// assert_eq!(summary.total_params(), 11_029_328);
    /// assert_eq!((summary.total_macs() as f64 / 1e6).round() / 1e3, 10.452);
    /// ```
    pub fn summary(&self, height: usize, width: usize) -> ModelSummary {
        let input_shape = [1, IMAGE_CHANNELS, height, width];
        let (mut layers, aux_input, out) =
            backbone_rows(&self.backbone, input_shape, self.aux_layer);
        let head = &self.classifier;
        let mut branch_out = out;
        for (index, branch) in head.aspp.branches.iter().enumerate() {
            let kernel = branch.conv.weight.dims()[2];
            let description = format!("ASPP {kernel}x{kernel} d{} ReLU", branch.conv.dilation[0]);
            let (row, shape) = conv_row(
                &format!("classifier.0.convs.{index}"),
                &description,
                &branch.conv,
                out,
            );
            layers.push(LayerSummary {
                params: num_learnable_params(branch),
                ..row
            });
            branch_out = shape;
        }
        let pooled = [out[0], out[1], 1, 1];
        let (row, _) = conv_row(
            &format!("classifier.0.convs.{}", head.aspp.branches.len()),
            "ASPP image pooling, 1x1 ReLU, broadcast",
            &head.aspp.pooling.conv,
            pooled,
        );
        layers.push(LayerSummary {
            params: num_learnable_params(&head.aspp.pooling),
            output_shape: branch_out.to_vec(),
            ..row
        });
        let concatenated = [
            branch_out[0],
            head.aspp.project.conv.weight.dims()[1],
            branch_out[2],
            branch_out[3],
        ];
        let (row, projected) = conv_row(
            "classifier.0.project",
            "1x1 projection ReLU",
            &head.aspp.project.conv,
            concatenated,
        );
        layers.push(LayerSummary {
            params: num_learnable_params(&head.aspp.project),
            ..row
        });
        let (row, shape) = conv_row(
            "classifier.1",
            "3x3 conv, norm, ReLU",
            &head.conv,
            projected,
        );
        layers.push(LayerSummary {
            params: num_learnable_params(&head.conv) + num_learnable_params(&head.norm),
            ..row
        });
        let (row, logits) = conv_row("classifier.4", "1x1 classifier", &head.classifier, shape);
        layers.push(row);
        layers.push(resize_row(logits, [height, width]));
        if let Some(aux) = &self.aux_classifier {
            let (row, shape) = conv_row(
                "aux_classifier.0",
                "FCN 3x3 conv, norm, ReLU",
                &aux.conv,
                aux_input,
            );
            layers.push(LayerSummary {
                params: num_learnable_params(&aux.conv) + num_learnable_params(&aux.norm),
                ..row
            });
            let (row, logits) =
                conv_row("aux_classifier.4", "1x1 classifier", &aux.classifier, shape);
            layers.push(row);
            layers.push(LayerSummary {
                name: "aux interpolate".into(),
                ..resize_row(logits, [height, width])
            });
        }
        ModelSummary {
            input_shape,
            layers,
        }
    }
}
