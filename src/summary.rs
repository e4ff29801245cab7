//! A per-layer table of a model: output shape, learned parameters and multiply-adds, computed
//! from the module structure (no forward pass), like torchvision's published "GFLOPS" (which
//! count multiply-adds of convolutions and linear layers).

use std::fmt;

use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};

use crate::{Conv2dNormActivation, Features, InvertedResidual, num_learnable_params};

/// One row of a [`ModelSummary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSummary {
    /// Parameter path prefix in torchvision's naming (`features.3`, `classifier.0`).
    pub name: String,
    /// What the layer is, for example `InvertedResidual k5 e72 SE ReLU s2`.
    pub description: String,
    /// Output shape, `[batch, channels, height, width]` or `[batch, features]`.
    pub output_shape: Vec<usize>,
    /// Learned parameters (batch-norm running statistics excluded).
    pub params: usize,
    /// Multiply-adds of convolutions and linear layers for this input.
    pub macs: u64,
}

/// The layers of a model for one input shape, with totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSummary {
    /// The input shape summarized, `[batch, channels, height, width]`.
    pub input_shape: [usize; 4],
    /// The layers, in execution order.
    pub layers: Vec<LayerSummary>,
}

impl ModelSummary {
    /// Learned parameters of all layers.
    pub fn total_params(&self) -> usize {
        self.layers.iter().map(|layer| layer.params).sum()
    }

    /// Multiply-adds of all layers.
    pub fn total_macs(&self) -> u64 {
        self.layers.iter().map(|layer| layer.macs).sum()
    }
}

impl fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "input {:?}\n", self.input_shape)?;
        writeln!(f, "| layer | kind | output | params | MACs |")?;
        writeln!(f, "|---|---|---|---:|---:|")?;
        for layer in &self.layers {
            writeln!(
                f,
                "| {} | {} | {:?} | {} | {} |",
                layer.name, layer.description, layer.output_shape, layer.params, layer.macs
            )?;
        }
        writeln!(
            f,
            "| total | | | {} | {} ({:.3} G) |",
            self.total_params(),
            self.total_macs(),
            self.total_macs() as f64 / 1e9
        )
    }
}

/// Output length of a convolution along one axis; 0 when the kernel does not fit.
fn output_size(
    size: usize,
    padding: usize,
    dilation: usize,
    kernel: usize,
    stride: usize,
) -> usize {
    let span = dilation * (kernel - 1) + 1;
    (size + padding)
        .checked_sub(span)
        .map_or(0, |room| room / stride + 1)
}

/// Output shape and multiply-adds of a convolution on an input of `shape`.
pub(crate) fn conv(conv: &Conv2d, [batch, _, height, width]: [usize; 4]) -> ([usize; 4], u64) {
    let [out_channels, in_per_group, kernel_h, kernel_w] = conv.weight.shape().dims();
    let [stride_h, stride_w] = conv.stride;
    let [dilation_h, dilation_w] = conv.dilation;
    let (out_h, out_w) = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => (
            output_size(height, top + bottom, dilation_h, kernel_h, stride_h),
            output_size(width, left + right, dilation_w, kernel_w, stride_w),
        ),
        PaddingConfig2d::Valid => (
            output_size(height, 0, dilation_h, kernel_h, stride_h),
            output_size(width, 0, dilation_w, kernel_w, stride_w),
        ),
        // `Same` keeps `ceil(size / stride)`.
        PaddingConfig2d::Same => (height.div_ceil(stride_h), width.div_ceil(stride_w)),
    };
    let macs = (batch * out_channels * out_h * out_w * in_per_group * kernel_h * kernel_w) as u64;
    ([batch, out_channels, out_h, out_w], macs)
}

pub(crate) fn conv_norm_act(layer: &Conv2dNormActivation, shape: [usize; 4]) -> ([usize; 4], u64) {
    conv(&layer.conv, shape)
}

pub(crate) fn block(block: &InvertedResidual, shape: [usize; 4]) -> ([usize; 4], u64) {
    let (mut shape, mut macs) = (shape, 0);
    if let Some(expand) = &block.expand {
        let (out, m) = conv_norm_act(expand, shape);
        (shape, macs) = (out, macs + m);
    }
    let (out, m) = conv_norm_act(&block.depthwise, shape);
    (shape, macs) = (out, macs + m);
    if let Some(se) = &block.squeeze_excitation {
        // Both 1x1 convolutions run on the pooled `[batch, channels, 1, 1]`.
        let pooled = [shape[0], shape[1], 1, 1];
        let (squeezed, fc1) = conv(&se.fc1, pooled);
        let (_, fc2) = conv(&se.fc2, squeezed);
        macs += fc1 + fc2;
    }
    let (out, m) = conv(&block.project_conv, shape);
    (out, macs + m)
}

pub(crate) fn describe(block: &InvertedResidual) -> String {
    let depthwise = &block.depthwise.conv;
    let [channels, _, kernel, _] = depthwise.weight.shape().dims();
    format!(
        "InvertedResidual k{kernel} e{channels}{} {:?} s{}{}",
        if block.squeeze_excitation.is_some() {
            " SE"
        } else {
            ""
        },
        block.depthwise.activation,
        depthwise.stride[0],
        if depthwise.dilation[0] > 1 {
            format!(" d{}", depthwise.dilation[0])
        } else {
            String::new()
        },
    )
}

impl Features {
    /// Summary rows of the stem, each block and the last convolution for an input of `shape`,
    /// and the output shape.
    pub(crate) fn summary_rows(&self, shape: [usize; 4]) -> (Vec<LayerSummary>, [usize; 4]) {
        let mut rows = Vec::new();
        let mut row = |name: String, description: String, shape: [usize; 4], params, macs| {
            rows.push(LayerSummary {
                name,
                description,
                output_shape: shape.to_vec(),
                params,
                macs,
            });
        };
        let (mut shape, macs) = conv_norm_act(&self.stem, shape);
        row(
            "features.0".into(),
            "stem Conv2dNormActivation".into(),
            shape,
            num_learnable_params(&self.stem),
            macs,
        );
        for (index, layer) in self.blocks.iter().enumerate() {
            let (out, macs) = block(layer, shape);
            shape = out;
            row(
                format!("features.{}", index + 1),
                describe(layer),
                shape,
                num_learnable_params(layer),
                macs,
            );
        }
        let (out, macs) = conv_norm_act(&self.last_conv, shape);
        let name = format!("features.{}", self.blocks.len() + 1);
        row(
            name,
            "last Conv2dNormActivation".into(),
            out,
            num_learnable_params(&self.last_conv),
            macs,
        );
        (rows, out)
    }
}

/// A summary row for a linear layer on `[batch, in_features]`.
pub(crate) fn linear_row(name: &str, linear: &Linear, batch: usize) -> LayerSummary {
    let [in_features, out_features] = linear.weight.shape().dims();
    LayerSummary {
        name: name.to_string(),
        description: "Linear".to_string(),
        output_shape: vec![batch, out_features],
        params: num_learnable_params(linear),
        macs: (batch * in_features * out_features) as u64,
    }
}

/// The pooling row between features and classifier.
pub(crate) fn pool_row([batch, channels, _, _]: [usize; 4]) -> LayerSummary {
    LayerSummary {
        name: "avgpool".to_string(),
        description: "global average pool".to_string(),
        output_shape: vec![batch, channels],
        params: 0,
        macs: 0,
    }
}
