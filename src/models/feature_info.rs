//! Feature taps as data: which layer outputs a detection or segmentation head can read, with
//! their channels and stride, the way timm's `feature_info` describes them
//! (`timm/models/_features.py`, `_efficientnet_builder.py`), and `forward_intermediates` to
//! compute them.
//!
//! A tap is the last layer of each output stride (reduction): C1 at 2, C2 at 4, ... C5 at 32.
//! With `FeatureLocation::Expansion` a tap inside an inverted residual block reads the tensor
//! its projection reads instead (expanded channels, after depthwise and squeeze-excitation),
//! timm's `feature_location="expansion"`. The candidates follow timm: for MobileNetV3 the last
//! 1x1 convolution counts (timm keeps it among its blocks), for MobileNetV2 it does not (timm's
//! C5 of `mobilenetv2_100` is the last block, 320 channels, not the 1280-channel head conv).

use burn::tensor::Tensor;

use crate::{Error, Features, MobileNetV2, MobileNetV3};

/// Where a tap reads, as timm's `feature_location`.
///
/// ```
/// use burn::tensor::Device;
/// use mobilenet_burn::{FeatureLocation, MobileNetV3Config};
///
/// let model = MobileNetV3Config::large().init(&Device::flex());
/// // C4 (stride 16) of V3-Large: the block's 112 output channels, or the 672 its projection reads.
/// let output = model.feature_info(FeatureLocation::BlockOutput)[3];
/// let expansion = model.feature_info(FeatureLocation::Expansion)[3];
/// assert_eq!((output.channels, expansion.channels), (112, 672));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureLocation {
    /// The output of the layer (timm's default, `""`).
    BlockOutput,
    /// Inside an inverted residual block, the input of its projection: the expanded tensor
    /// after depthwise and squeeze-excitation (timm's `"expansion"`). Taps on the stem or the
    /// last convolution read their output.
    Expansion,
}

/// One feature tap.
///
/// ```
/// use burn::tensor::Device;
/// use mobilenet_burn::{FeatureLocation, MobileNetV2Config};
///
/// let model = MobileNetV2Config::new().init(&Device::flex());
/// for tap in model.feature_info(FeatureLocation::BlockOutput) {
///     println!("features.{}: {} channels at stride {}", tap.layer, tap.channels, tap.reduction);
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureInfo {
    /// The layer, as torchvision numbers `features`: 0 is the stem, `1..=blocks` the inverted
    /// residual blocks, `blocks + 1` the last convolution.
    pub layer: usize,
    /// Channels of the tapped tensor.
    pub channels: usize,
    /// Its stride relative to the input (timm's `reduction`): 2, 4, 8, 16, 32; 16 for the last
    /// taps of a dilated MobileNetV3.
    pub reduction: usize,
    /// Where in the layer the tap reads.
    pub location: FeatureLocation,
}

impl Features {
    /// The taps, C1 first. `with_last_conv` says whether the last 1x1 convolution is a
    /// candidate (timm: yes for V3, no for V2).
    pub(crate) fn feature_info(
        &self,
        location: FeatureLocation,
        with_last_conv: bool,
    ) -> Vec<FeatureInfo> {
        // (layer, output channels, expanded channels, stride so far), in order.
        let mut reduction = self.stem.conv.stride[0];
        let mut layers = vec![(0, self.stem.out_channels(), None, reduction)];
        for (index, block) in self.blocks.iter().enumerate() {
            reduction *= block.stride();
            layers.push((
                index + 1,
                block.project_conv.weight.dims()[0],
                Some(block.expanded_channels()),
                reduction,
            ));
        }
        if with_last_conv {
            let layer = self.blocks.len() + 1;
            layers.push((layer, self.last_conv.out_channels(), None, reduction));
        }
        // The last layer of each stride; a dilated stage keeps its stride and so its own tap,
        // as timm's stages do: a stage starts where the stride would have changed.
        let mut taps: Vec<FeatureInfo> = Vec::new();
        for (position, &(layer, channels, expanded, reduction)) in layers.iter().enumerate() {
            let next_starts_stage = match layers.get(position + 1) {
                None => true,
                Some(&(next_layer, _, _, next_reduction)) => {
                    next_reduction != reduction || self.starts_dilated_stage(next_layer)
                }
            };
            if next_starts_stage {
                let channels = match (location, expanded) {
                    (FeatureLocation::Expansion, Some(expanded)) => expanded,
                    _ => channels,
                };
                taps.push(FeatureInfo {
                    layer,
                    channels,
                    reduction,
                    location,
                });
            }
        }
        taps
    }

    /// Whether block layer `layer` (torchvision numbering) is the first of a dilated stage: its
    /// dilation is larger than the previous block's.
    fn starts_dilated_stage(&self, layer: usize) -> bool {
        let dilation = |layer: usize| {
            layer
                .checked_sub(1)
                .and_then(|index| self.blocks.get(index))
                .map_or(1, |block| block.depthwise.conv.dilation[0])
        };
        layer >= 1 && layer <= self.blocks.len() && dilation(layer) > dilation(layer - 1)
    }

    /// The tensors of `taps[indices]`, in the order of `indices`; runs the trunk only as far as
    /// the deepest tap asked for.
    pub(crate) fn forward_intermediates(
        &self,
        x: Tensor<4>,
        taps: &[FeatureInfo],
        indices: &[usize],
    ) -> Result<Vec<Tensor<4>>, Error> {
        self.check_input(x.dims())?;
        if let Some(&index) = indices.iter().find(|&&index| index >= taps.len()) {
            return Err(Error::NoSuchFeatureTap {
                index,
                taps: taps.len(),
            });
        }
        let wanted: Vec<FeatureInfo> = indices.iter().map(|&index| taps[index]).collect();
        let deepest = wanted.iter().map(|tap| tap.layer).max();
        let mut found: Vec<Option<Tensor<4>>> = vec![None; wanted.len()];
        let mut record = |layer: usize, output: &Tensor<4>, hidden: Option<&Tensor<4>>| {
            for (slot, tap) in found.iter_mut().zip(&wanted) {
                if tap.layer == layer {
                    let tensor = match (tap.location, hidden) {
                        (FeatureLocation::Expansion, Some(hidden)) => hidden,
                        _ => output,
                    };
                    *slot = Some(tensor.clone());
                }
            }
        };
        let Some(deepest) = deepest else {
            return Ok(Vec::new());
        };
        crate::native::forward_on_thread_pool(crate::native::ForwardInput::of(&x), || {
            let mut x = self.stem.forward(x);
            record(0, &x, None);
            for (index, block) in self.blocks.iter().enumerate().take(deepest) {
                let (output, hidden) = block.forward_with_hidden(x);
                record(index + 1, &output, Some(&hidden));
                x = output;
            }
            if deepest > self.blocks.len() {
                let output = self.last_conv.forward(x);
                record(self.blocks.len() + 1, &output, None);
            }
        });
        Ok(found.into_iter().flatten().collect())
    }
}

/// Adds `feature_info` and `forward_intermediates` to a model whose trunk is `self.features`.
/// `with_last_conv` says whether the last 1x1 convolution is a tap candidate, `c5` what C5 is.
macro_rules! feature_tap_methods {
    ($model:ident, with_last_conv: $with_last_conv:expr, c5: $c5:literal, config: $config:literal) => {
        impl $model {
            /// The feature taps, C1 (stride 2) to C5 (stride 32): layer, channels, stride and
            /// location, equal to timm's `feature_info` for the same model.
            #[doc = concat!("C5 is ", $c5, ".")]
            ///
            /// ```
            /// use burn::tensor::Device;
            #[doc = concat!("use mobilenet_burn::{FeatureLocation, ", stringify!($model), "Config};")]
            ///
            #[doc = concat!("let model = ", stringify!($model), "Config::", $config, ".init(&Device::flex());")]
            /// let taps = model.feature_info(FeatureLocation::BlockOutput);
            /// let strides: Vec<usize> = taps.iter().map(|tap| tap.reduction).collect();
            /// assert_eq!(strides, [2, 4, 8, 16, 32]);
            /// ```
            pub fn feature_info(&self, location: FeatureLocation) -> Vec<FeatureInfo> {
                self.features.feature_info(location, $with_last_conv)
            }

            /// The tensors of the taps `indices` (positions in
            /// [`feature_info`](Self::feature_info)), in that order, computing the trunk only as
            /// far as the deepest one.
            ///
            /// # Shapes
            /// - input: `[batch, 3, height, width]`
            /// - output: one `[batch, channels, ceil(height / reduction), ceil(width /
            ///   reduction)]` per index, with the tap's channels and reduction
            ///
            /// # Errors
            ///
            /// [`Error::NoSuchFeatureTap`] for an index past the taps, [`Error::InvalidInput`]
            /// for an input the model does not take.
            ///
            /// ```
            /// use burn::tensor::{Device, Tensor};
            #[doc = concat!("use mobilenet_burn::{FeatureLocation, ", stringify!($model), "Config};")]
            ///
            /// let device = Device::flex();
            #[doc = concat!("let model = ", stringify!($model), "Config::", $config, ".init(&device);")]
            /// let x = Tensor::zeros([1, 3, 96, 128], &device);
            /// // C3 and C4, as an SSD or FPN head reads them.
            /// let maps = model.forward_intermediates(x, FeatureLocation::BlockOutput, &[2, 3]).unwrap();
            /// assert_eq!(maps[0].dims()[2..], [12, 16]);
            /// assert_eq!(maps[1].dims()[2..], [6, 8]);
            /// ```
            pub fn forward_intermediates(
                &self,
                x: Tensor<4>,
                location: FeatureLocation,
                indices: &[usize],
            ) -> Result<Vec<Tensor<4>>, Error> {
                let taps = self.feature_info(location);
                self.features.forward_intermediates(x, &taps, indices)
            }

            /// timm's `features_only=True`: the trunk without pooling or classifier, returning
            /// the taps `indices` (positions in [`feature_info`](Self::feature_info), timm's
            /// `out_indices`) on every forward. Load weights first, then convert.
            ///
            /// ```
            /// use burn::tensor::{Device, Tensor};
            #[doc = concat!("use mobilenet_burn::{FeatureLocation, ", stringify!($model), "Config};")]
            ///
            /// let device = Device::flex();
            #[doc = concat!("# let config = ", stringify!($model), "Config::", $config, ";")]
            /// let backbone = config
            ///     .init(&device)
            ///     .features_only(FeatureLocation::BlockOutput, &[2, 3, 4])
            ///     .unwrap();
            /// let maps = backbone.forward(Tensor::<4>::zeros([1, 3, 64, 64], &device)).unwrap();
            /// let strides: Vec<usize> = backbone.feature_info().iter().map(|t| t.reduction).collect();
            /// assert_eq!(strides, [8, 16, 32]);
            /// assert_eq!(maps[2].dims()[2..], [2, 2]);
            /// ```
            ///
            /// # Errors
            ///
            /// [`Error::NoSuchFeatureTap`] for an index past the taps.
            pub fn features_only(
                self,
                location: FeatureLocation,
                indices: &[usize],
            ) -> Result<FeatureExtractor, Error> {
                let taps = self.feature_info(location);
                if let Some(&index) = indices.iter().find(|&&index| index >= taps.len()) {
                    return Err(Error::NoSuchFeatureTap {
                        index,
                        taps: taps.len(),
                    });
                }
                Ok(FeatureExtractor {
                    taps: indices.iter().map(|&index| taps[index]).collect(),
                    features: self.features,
                })
            }
        }
    };
}

/// A classifier's trunk that returns feature maps (timm's `features_only=True`), made by
/// `MobileNetV2::features_only` or `MobileNetV3::features_only`.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::{FeatureLocation, MobileNetV3Config};
///
/// let device = Device::flex();
/// let backbone = MobileNetV3Config::small()
///     .init(&device)
///     .features_only(FeatureLocation::BlockOutput, &[3, 4])
///     .unwrap();
/// let channels: Vec<usize> = backbone.feature_info().iter().map(|tap| tap.channels).collect();
/// assert_eq!(channels, [48, 576]);
/// let maps = backbone.forward(Tensor::zeros([1, 3, 64, 64], &device)).unwrap();
/// assert_eq!(maps[1].dims(), [1, 576, 2, 2]);
/// ```
#[derive(Debug, Clone)]
pub struct FeatureExtractor {
    /// Stem, blocks and last convolution, under torchvision's `features` keys.
    pub features: Features,
    taps: Vec<FeatureInfo>,
}

impl FeatureExtractor {
    /// The taps returned, in order (timm's `feature_info` of a `features_only` model).
    ///
    /// ```
    /// # use burn::tensor::Device;
    /// # use mobilenet_burn::{FeatureLocation, MobileNetV2Config};
    /// let backbone = MobileNetV2Config::new()
    ///     .init(&Device::flex())
    ///     .features_only(FeatureLocation::Expansion, &[3])
    ///     .unwrap();
    /// assert_eq!(backbone.feature_info()[0].channels, 576); // timm's C4 of mobilenetv2_100
    /// ```
    pub fn feature_info(&self) -> &[FeatureInfo] {
        &self.taps
    }

    /// The feature maps of the taps, computing the trunk only as far as the deepest one.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an input the trunk does not take.
    ///
    /// ```
    /// # use burn::tensor::{Device, Tensor};
    /// # use mobilenet_burn::{Error, FeatureLocation, MobileNetV3Config};
    /// let device = Device::flex();
    /// let backbone = MobileNetV3Config::small()
    ///     .init(&device)
    ///     .features_only(FeatureLocation::BlockOutput, &[0, 1, 2])
    ///     .unwrap();
    /// let maps = backbone.forward(Tensor::zeros([2, 3, 32, 32], &device)).unwrap();
    /// assert_eq!(maps.len(), 3);
    /// // An input without three channels is an error, not a panic.
    /// let gray = backbone.forward(Tensor::zeros([1, 1, 32, 32], &device));
    /// assert!(matches!(gray, Err(Error::InvalidInput { .. })));
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Result<Vec<Tensor<4>>, Error> {
        let indices: Vec<usize> = (0..self.taps.len()).collect();
        self.features.forward_intermediates(x, &self.taps, &indices)
    }
}

feature_tap_methods!(
    MobileNetV2,
    with_last_conv: false,
    c5: "the last block (320 channels for V2 1.0), as timm's `mobilenetv2_100`",
    config: "new()"
);
feature_tap_methods!(
    MobileNetV3,
    with_last_conv: true,
    c5: "the last 1x1 convolution, as timm's `mobilenetv3_*`",
    config: "small()"
);
