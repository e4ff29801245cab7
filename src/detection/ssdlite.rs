//! SSDLite320 with a MobileNetV3 backbone, as torchvision's `ssdlite320_mobilenet_v3_large`
//! (`torchvision/models/detection/ssdlite.py`, `ssd.py`): the backbone split at the C4
//! expansion (MobileNetV3 paper, section 6.3), four extra blocks (512, 256, 256, 128), the
//! SSDLite classification and regression heads (a 3x3 depthwise convolution and a 1x1
//! projection per feature map), six default boxes per cell, and torchvision's post-processing.
//! Parameter paths equal torchvision's `state_dict` keys, so its checkpoints load.

use burn::config::Config;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor, TensorData};

use super::anchors::DefaultBoxes;
use super::postprocess::{Detections, PostprocessOptions, postprocess};
use super::transform::normalize_and_resize;
use crate::native::Outcome;
use crate::torch_paths::torchvision_module;
use crate::{
    Activation, BatchNormSpec, BlockLayout, Conv2dNormActivation, Conv2dNormActivationConfig,
    Error, InvertedResidual, MobileNetV2Config, MobileNetV3Config,
};
use serde::{Deserialize, Serialize};

/// torchvision's SSDLite BatchNorm: `partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)`, in
/// the backbone (whatever the classification network uses), the extra blocks and the heads.
pub const SSDLITE_NORM: BatchNormSpec = BatchNormSpec {
    epsilon: 1e-3,
    momentum: 0.03,
};

/// Output channels of the four extra blocks (torchvision's `get_depth(512)`, ... at width 1).
const EXTRA_CHANNELS: [usize; 4] = [512, 256, 256, 128];

/// The classification network whose trunk becomes the detector's backbone (its classifier is
/// not built).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SsdLiteBackboneConfig {
    /// MobileNetV2. torchvision has no SSDLite builder for it (its `_mobilenet_extractor`
    /// expects V3's `block` attribute); the keys follow the same scheme, the tail of the C4
    /// block at `features.1.0.{1,2,3}` as V2 numbers it.
    MobileNetV2(MobileNetV2Config),
    /// MobileNetV3, Large or Small. torchvision's COCO model uses
    /// `MobileNetV3Config::large().with_reduced_tail(true)`.
    MobileNetV3(MobileNetV3Config),
}

/// Configuration of [`SsdLite`].
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::detection::SsdLiteConfig;
///
/// let device = Device::flex();
/// // Real weights: `SsdLite::from_file(SsdLite320MobileNetV3LargeWeights::CocoV1, path, &device)`
/// let detector = SsdLiteConfig::mobilenet_v3_small(3).init(&device).fuse();
/// let image = Tensor::<3>::ones([3, 120, 160], &device); // RGB in [0, 1], any size
/// let detections = detector.detect(&[image])?;
/// assert!(detections[0].len() <= 300);
/// assert!(detections[0].labels.iter().all(|&label| (1..3).contains(&label)));
/// # Ok::<(), mobilenet_burn::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct SsdLiteConfig {
    /// The backbone.
    pub backbone: SsdLiteBackboneConfig,
    /// Classes, the background (index 0) included. Default: 91 (COCO's, as torchvision).
    #[config(default = 91)]
    pub num_classes: usize,
    /// Side of the square network input. Default: 320.
    #[config(default = 320)]
    pub size: usize,
    /// Minimum class probability kept. Default: 0.001.
    #[config(default = 0.001)]
    pub score_threshold: f64,
    /// IoU above which non-maximum suppression drops a box. Default: 0.55.
    #[config(default = 0.55)]
    pub nms_threshold: f64,
    /// Detections kept per image. Default: 300.
    #[config(default = 300)]
    pub detections_per_image: usize,
    /// Candidates kept per class before suppression. Default: 300.
    #[config(default = 300)]
    pub topk_candidates: usize,
}

impl SsdLiteConfig {
    /// torchvision's `ssdlite320_mobilenet_v3_large`: MobileNetV3-Large with the reduced tail.
    pub fn mobilenet_v3_large(num_classes: usize) -> Self {
        Self::new(SsdLiteBackboneConfig::MobileNetV3(
            MobileNetV3Config::large().with_reduced_tail(true),
        ))
        .with_num_classes(num_classes)
    }

    /// The same detector on MobileNetV3-Small (the paper's other row; torchvision builds it
    /// with the same code, only the backbone differs).
    pub fn mobilenet_v3_small(num_classes: usize) -> Self {
        Self::new(SsdLiteBackboneConfig::MobileNetV3(
            MobileNetV3Config::small().with_reduced_tail(true),
        ))
        .with_num_classes(num_classes)
    }

    /// The same detector on MobileNetV2 (the MobileNetV2 paper's SSDLite).
    pub fn mobilenet_v2(num_classes: usize) -> Self {
        Self::new(SsdLiteBackboneConfig::MobileNetV2(MobileNetV2Config::new()))
            .with_num_classes(num_classes)
    }

    /// Builds the detector.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an invalid backbone configuration, fewer than 2 classes, or
    /// a backbone without a strided block to split at.
    pub fn try_init(&self, device: &Device) -> Result<SsdLite, Error> {
        if self.num_classes < 2 {
            return Err(Error::InvalidConfig {
                field: "num_classes",
                value: self.num_classes.to_string(),
                expected: "at least 2 (the background and one class)".into(),
            });
        }
        let (mut features, tail_layout) = match &self.backbone {
            SsdLiteBackboneConfig::MobileNetV2(config) => (
                config.try_init(device)?.features,
                BlockLayout::SsdLiteTailV2,
            ),
            SsdLiteBackboneConfig::MobileNetV3(config) => (
                config.try_init(device)?.features,
                BlockLayout::SsdLiteTailV3,
            ),
        };
        features.set_norm(SSDLITE_NORM);
        // C4: the last block that halves the resolution (torchvision's `stage_indices[-2]`).
        let c4 = features
            .blocks
            .iter()
            .rposition(|block| block.stride() > 1)
            .filter(|&index| features.blocks[index].expand.is_some())
            .ok_or_else(|| Error::InvalidConfig {
                field: "backbone",
                value: "no strided block with an expansion".into(),
                expected: "a MobileNetV3 table whose last stride-2 block expands".into(),
            })?;
        let mut blocks_after = features.blocks.split_off(c4);
        let mut c4_block = blocks_after.remove(0);
        let c4_expansion = c4_block.expand.take().ok_or_else(|| Error::InvalidConfig {
            field: "backbone",
            value: "C4 block without expansion".into(),
            expected: "an expanding C4 block".into(),
        })?;
        c4_block.layout = tail_layout;
        let c4_channels = c4_expansion.out_channels();
        let last_channels = features.last_conv.out_channels();

        let layer = |in_channels, out_channels, kernel, stride, groups| {
            Conv2dNormActivationConfig::new(in_channels, out_channels)
                .with_kernel_size(kernel)
                .with_stride(stride)
                .with_groups(groups)
                .with_norm(Some(SSDLITE_NORM))
                .with_activation(Activation::ReLU6)
                .init(device)
        };
        let mut extra = Vec::new();
        let mut in_channels = last_channels;
        for out_channels in EXTRA_CHANNELS {
            let middle = out_channels / 2;
            extra.push(vec![
                layer(in_channels, middle, 1, 1, 1),
                layer(middle, middle, 3, 2, middle),
                layer(middle, out_channels, 1, 1, 1),
            ]);
            in_channels = out_channels;
        }
        let map_channels: Vec<usize> = [c4_channels, last_channels]
            .into_iter()
            .chain(EXTRA_CHANNELS)
            .collect();
        let default_boxes = DefaultBoxes::ssdlite(map_channels.len());
        let prediction = |outputs_per_box: usize| -> Vec<PredictionBlock> {
            map_channels
                .iter()
                .zip(default_boxes.boxes_per_location())
                .map(|(&channels, boxes)| PredictionBlock {
                    depthwise: layer(channels, channels, 3, 1, channels),
                    conv: Conv2dConfig::new([channels, outputs_per_box * boxes], [1, 1])
                        .init(device),
                })
                .collect()
        };
        Ok(SsdLite {
            backbone: SsdLiteBackbone {
                stem: features.stem,
                blocks_before_c4: features.blocks,
                c4_expansion,
                c4_tail: c4_block,
                blocks_after_c4: blocks_after,
                last_conv: features.last_conv,
                extra,
            },
            classification: prediction(self.num_classes),
            regression: prediction(4),
            num_classes: self.num_classes,
            size: self.size,
            postprocess: PostprocessOptions {
                score_threshold: self.score_threshold,
                nms_threshold: self.nms_threshold,
                detections_per_image: self.detections_per_image,
                topk_candidates: self.topk_candidates,
            },
        })
    }

    /// Builds the detector.
    ///
    /// # Panics
    ///
    /// With the message of [`try_init`](Self::try_init)'s error.
    pub fn init(&self, device: &Device) -> SsdLite {
        self.try_init(device)
            .unwrap_or_else(|error| panic!("{error}"))
    }
}

/// One head branch per feature map: a 3x3 depthwise `Conv2dNormActivation` (ReLU6) and a 1x1
/// convolution with bias to `outputs x boxes` channels (torchvision's `_prediction_block`).
#[derive(Debug, Clone)]
pub struct PredictionBlock {
    /// `.0`
    pub depthwise: Conv2dNormActivation,
    /// `.1`: weight `[outputs x boxes, channels, 1, 1]`.
    pub conv: Conv2d,
}

impl PredictionBlock {
    /// The block's predictions for one feature map.
    ///
    /// # Shapes
    /// - input: `[batch, channels, height, width]`
    /// - output: `[batch, outputs x boxes, height, width]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.depthwise.forward(x);
        // The 1x1 projection with its bias: a native kernel on burn-flex, else burn's.
        match crate::native::conv2d(&self.conv, Activation::Identity, x, None) {
            Outcome::Computed(y) => y,
            Outcome::Declined(x) => self.conv.forward(x),
        }
    }
}

torchvision_module!(PredictionBlock {
    children {
        depthwise: |_: &Self| "0".to_string(),
        conv: |_: &Self| "1".to_string(),
    }
    lists {}
    state {}
});

/// torchvision's `SSDLiteFeatureExtractorMobileNet`: `features.0` runs the backbone up to
/// and including the C4 block's expansion, `features.1` the rest of it, `extra` four blocks
/// that halve the resolution each.
#[derive(Debug, Clone)]
pub struct SsdLiteBackbone {
    /// `features.0.0`
    pub stem: Conv2dNormActivation,
    /// `features.0.1` ...
    pub blocks_before_c4: Vec<InvertedResidual>,
    /// `features.0.{c4}`: the first feature map (stride 16).
    pub c4_expansion: Conv2dNormActivation,
    /// `features.1.0`: the C4 block's depthwise, squeeze-excitation and projection.
    pub c4_tail: InvertedResidual,
    /// `features.1.1` ...
    pub blocks_after_c4: Vec<InvertedResidual>,
    /// The last 1x1 convolution: the second feature map (stride 32).
    pub last_conv: Conv2dNormActivation,
    /// `extra.{i}.{0,1,2}`: 1x1 to half width, 3x3 depthwise stride 2, 1x1 to full width.
    pub extra: Vec<Vec<Conv2dNormActivation>>,
}

torchvision_module!(SsdLiteBackbone {
    children {
        stem: |_: &Self| "features.0.0".to_string(),
        c4_expansion: |b: &Self| format!("features.0.{}", b.blocks_before_c4.len() + 1),
        c4_tail: |_: &Self| "features.1.0".to_string(),
        last_conv: |b: &Self| format!("features.1.{}", b.blocks_after_c4.len() + 1),
    }
    lists {
        blocks_before_c4: |index: usize| format!("features.0.{}", index + 1),
        blocks_after_c4: |index: usize| format!("features.1.{}", index + 1),
        extra: |index: usize| format!("extra.{index}"),
    }
    state {}
});

impl SsdLiteBackbone {
    /// The six feature maps, stride 16 first.
    pub fn forward(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let x = InvertedResidual::forward_all_after_stem(&self.stem, &self.blocks_before_c4, x);
        let c4 = self.c4_expansion.forward(x);
        let x = self.c4_tail.forward(c4.clone());
        let x = InvertedResidual::forward_all(&self.blocks_after_c4, x);
        let mut x = self.last_conv.forward(x);
        let mut maps = vec![c4, x.clone()];
        for block in &self.extra {
            x = block.iter().fold(x, |x, layer| layer.forward(x));
            maps.push(x.clone());
        }
        maps
    }

    /// Folds every batch norm into the convolution before it.
    pub fn fuse(self) -> Self {
        Self {
            stem: self.stem.fuse(),
            blocks_before_c4: self
                .blocks_before_c4
                .into_iter()
                .map(InvertedResidual::fuse)
                .collect(),
            c4_expansion: self.c4_expansion.fuse(),
            c4_tail: self.c4_tail.fuse(),
            blocks_after_c4: self
                .blocks_after_c4
                .into_iter()
                .map(InvertedResidual::fuse)
                .collect(),
            last_conv: self.last_conv.fuse(),
            extra: self
                .extra
                .into_iter()
                .map(|block| block.into_iter().map(Conv2dNormActivation::fuse).collect())
                .collect(),
        }
    }
}

/// The raw outputs of the heads for a batch, in the order of the default boxes.
#[derive(Debug, Clone)]
pub struct SsdLiteHeadOutput {
    /// `[batch, boxes, num_classes]`
    pub cls_logits: Tensor<3>,
    /// `[batch, boxes, 4]`: `(dx, dy, dw, dh)` against each default box.
    pub bbox_regression: Tensor<3>,
    /// `[height, width]` of each feature map.
    pub grid_sizes: Vec<[usize; 2]>,
}

/// SSDLite320: a MobileNetV3 backbone and SSDLite heads, with torchvision's keys.
#[derive(Debug, Clone)]
pub struct SsdLite {
    /// `backbone`
    pub backbone: SsdLiteBackbone,
    /// `head.classification_head.module_list.{i}`
    pub classification: Vec<PredictionBlock>,
    /// `head.regression_head.module_list.{i}`
    pub regression: Vec<PredictionBlock>,
    /// Classes, background included.
    pub num_classes: usize,
    /// Side of the square network input.
    pub size: usize,
    /// Post-processing thresholds.
    pub postprocess: PostprocessOptions,
}

torchvision_module!(SsdLite {
    children {
        backbone: |_: &Self| "backbone".to_string(),
    }
    lists {
        classification: |index: usize| format!("head.classification_head.module_list.{index}"),
        regression: |index: usize| format!("head.regression_head.module_list.{index}"),
    }
    state { num_classes, size, postprocess }
});

/// `(N, A * K, H, W)` to `(N, H * W * A, K)`, as torchvision's `SSDScoringHead`.
fn flatten_predictions(x: Tensor<4>, columns: usize) -> Tensor<3> {
    let [batch, channels, height, width] = x.dims();
    let boxes = channels / columns;
    x.reshape([batch, boxes, columns, height, width])
        .permute([0, 3, 4, 1, 2])
        .reshape([batch, height * width * boxes, columns])
}

impl SsdLite {
    /// The heads' raw outputs for a batch of transformed images (see
    /// [`preprocess`](Self::preprocess)).
    ///
    /// # Shapes
    /// - input: `[batch, 3, size, size]`, values in [-1, 1]
    pub fn forward(&self, x: Tensor<4>) -> SsdLiteHeadOutput {
        crate::native::forward_on_thread_pool(crate::native::ForwardInput::of(&x), || {
            let maps = self.backbone.forward(x);
            let grid_sizes = maps.iter().map(|m| [m.dims()[2], m.dims()[3]]).collect();
            let head = |blocks: &[PredictionBlock], columns: usize| {
                let outputs: Vec<Tensor<4>> = blocks
                    .iter()
                    .zip(&maps)
                    .map(|(block, map)| block.forward(map.clone()))
                    .collect();
                crate::native::predictions(&outputs, columns).unwrap_or_else(|| {
                    let rows = outputs
                        .into_iter()
                        .map(|y| flatten_predictions(y, columns))
                        .collect();
                    Tensor::cat(rows, 1)
                })
            };
            SsdLiteHeadOutput {
                cls_logits: head(&self.classification, self.num_classes),
                bbox_regression: head(&self.regression, 4),
                grid_sizes,
            }
        })
    }

    /// The default boxes (`[x1, y1, x2, y2]` in pixels of the network input) for feature maps
    /// of `grid_sizes`, in the order of the head outputs.
    pub fn default_boxes(&self, grid_sizes: &[[usize; 2]]) -> Vec<[f32; 4]> {
        DefaultBoxes::ssdlite(grid_sizes.len()).boxes(grid_sizes, [self.size, self.size])
    }

    /// torchvision's transform of one image: `[3, height, width]` with values in [0, 1] to the
    /// network input `[3, size, size]` in [-1, 1] (normalize, then bilinear resize).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] unless the image has 3 channels and a nonzero size.
    pub fn preprocess(&self, image: &Tensor<3>) -> Result<Tensor<3>, Error> {
        let [channels, height, width] = image.dims();
        if channels != 3 || height == 0 || width == 0 {
            return Err(Error::InvalidInput {
                shape: image.dims().to_vec(),
                expected: "[3, height, width] RGB image, values in [0, 1], height and width \
                           at least 1"
                    .into(),
            });
        }
        let values = image
            .to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|error| Error::InvalidInput {
                shape: image.dims().to_vec(),
                expected: format!("a float image ({error:?})"),
            })?;
        let resized =
            normalize_and_resize(&values, [height, width], [0.5; 3], [0.5; 3], [self.size; 2]);
        Ok(Tensor::from_data(
            TensorData::new(resized, [3, self.size, self.size]),
            &image.device(),
        ))
    }

    /// Keeps only detections with a class probability above `score_threshold` (torchvision's
    /// `score_thresh`; 0.001 by default, which keeps many weak boxes: 0.5 is a common choice
    /// for display).
    pub fn with_score_threshold(mut self, score_threshold: f64) -> Self {
        self.postprocess.score_threshold = score_threshold;
        self
    }

    /// Decodes image files (any format the `image` crate reads) and detects in each, boxes in
    /// each file's pixels (feature `pretrained`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] or [`Error::Image`] for the first file that cannot be read or decoded;
    /// otherwise as [`detect`](Self::detect).
    #[cfg(feature = "pretrained")]
    pub fn detect_files(
        &self,
        paths: &[impl AsRef<std::path::Path>],
    ) -> Result<Vec<Detections>, Error> {
        let device = self.backbone.stem.conv.weight.device();
        let images = paths
            .iter()
            .map(|path| {
                let image = crate::pretrained::load_rgb_image(path)?;
                Ok(super::image_to_tensor(&image, &device))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        self.detect(&images)
    }

    /// Detections for each image (`[3, height, width]`, values in [0, 1], any size, as
    /// [`image_to_tensor`](super::image_to_tensor) makes), with boxes in each image's pixels:
    /// transform, network, decoding, non-maximum suppression.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an image [`preprocess`](Self::preprocess) rejects.
    pub fn detect(&self, images: &[Tensor<3>]) -> Result<Vec<Detections>, Error> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let batch = images
            .iter()
            .map(|image| self.preprocess(image))
            .collect::<Result<Vec<_>, _>>()?;
        let output = self.forward(Tensor::stack(batch, 0));
        Ok(self.postprocess(
            &output,
            &images
                .iter()
                .map(|i| [i.dims()[1], i.dims()[2]])
                .collect::<Vec<_>>(),
        ))
    }

    /// torchvision's post-processing of [`forward`](Self::forward)'s outputs, for images of
    /// `image_sizes` (`[height, width]` each, one per batch entry).
    pub fn postprocess(
        &self,
        output: &SsdLiteHeadOutput,
        image_sizes: &[[usize; 2]],
    ) -> Vec<Detections> {
        let anchors = self.default_boxes(&output.grid_sizes);
        let logits = host_values(output.cls_logits.clone());
        let regressions = host_values(output.bbox_regression.clone());
        let per_image_logits = anchors.len() * self.num_classes;
        image_sizes
            .iter()
            .enumerate()
            .map(|(index, &image_size)| {
                postprocess(
                    &logits[index * per_image_logits..(index + 1) * per_image_logits],
                    &regressions[index * anchors.len() * 4..(index + 1) * anchors.len() * 4],
                    &anchors,
                    self.num_classes,
                    [self.size, self.size],
                    image_size,
                    &self.postprocess,
                )
            })
            .collect()
    }

    /// Folds every batch norm into the convolution before it (inference form).
    pub fn fuse(self) -> Self {
        let fuse_blocks = |blocks: Vec<PredictionBlock>| {
            blocks
                .into_iter()
                .map(|block| PredictionBlock {
                    depthwise: block.depthwise.fuse(),
                    conv: block.conv,
                })
                .collect()
        };
        Self {
            backbone: self.backbone.fuse(),
            classification: fuse_blocks(self.classification),
            regression: fuse_blocks(self.regression),
            ..self
        }
    }
}

/// A tensor's values on the host, as f32.
fn host_values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}
