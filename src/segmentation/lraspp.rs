//! LR-ASPP, the segmentation head of "Searching for MobileNetV3" (section 6.4), as
//! torchvision's `models/segmentation/lraspp.py`: a 1x1 convolution of the stride-16 features
//! gated by their global average (a squeeze-excitation-like branch), upsampled to stride 8 and
//! added to a linear classifier of the stride-8 features.

use burn::config::Config;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

use super::{layer_channels, resize_bilinear, taps};
use crate::layers::conv_norm_act::conv_only;
use crate::models::config_checks::check_num_classes;
use crate::native;
use crate::torch_paths::torchvision_module;
use crate::{
    Activation, BatchNormSpec, Conv2dNormActivation, Conv2dNormActivationConfig, Error, Features,
    MobileNetV3Config,
};

/// Configuration of [`LrAspp`].
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::segmentation::LrAsppConfig;
///
/// let device = Device::flex();
/// // torchvision's `lraspp_mobilenet_v3_large(num_classes=21)`; load its checkpoint with
/// // `.load_torchvision(path)?`.
/// let model = LrAsppConfig::mobilenet_v3_small(4).init(&device);
/// let logits = model.forward(Tensor::zeros([2, 3, 64, 48], &device));
/// assert_eq!(logits.dims(), [2, 4, 64, 48]);
/// ```
#[derive(Config, Debug)]
pub struct LrAsppConfig {
    /// The backbone; only its `features` are built. torchvision's builder uses
    /// `MobileNetV3Config::large().with_dilated(true)`.
    pub backbone: MobileNetV3Config,
    /// Classes, the background included (21 for torchvision's VOC-labelled weights).
    pub num_classes: usize,
    /// Channels of the head's high-resolution branch. Default: 128 (torchvision's).
    #[config(default = 128)]
    pub inter_channels: usize,
}

impl LrAsppConfig {
    /// torchvision's `lraspp_mobilenet_v3_large(num_classes=...)`: MobileNetV3-Large with its
    /// last stage dilated (output stride 16), tapped at block 4 (40 channels, stride 8) and at
    /// the last convolution (960 channels).
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::segmentation::LrAsppConfig;
    ///
    /// let model = LrAsppConfig::mobilenet_v3_large(21).init(&Device::flex());
    /// assert_eq!(model.num_learnable_params(), 3_221_538); // torchvision's count
    /// assert_eq!(model.low_layer, 4);
    /// ```
    pub fn mobilenet_v3_large(num_classes: usize) -> Self {
        Self::new(MobileNetV3Config::large().with_dilated(true), num_classes)
    }

    /// The same head on a dilated MobileNetV3-Small (the paper's other row), tapped at block 2
    /// (24 channels, stride 8) and at the last convolution (576 channels), as torchvision's
    /// `_lraspp_mobilenetv3` taps any MobileNetV3.
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::segmentation::LrAsppConfig;
    ///
    /// let model = LrAsppConfig::mobilenet_v3_small(21).init(&Device::flex());
    /// assert_eq!((model.low_layer, model.backbone.out_channels()), (2, 576));
    /// ```
    pub fn mobilenet_v3_small(num_classes: usize) -> Self {
        Self::new(MobileNetV3Config::small().with_dilated(true), num_classes)
    }

    /// Builds the model, or says which field is invalid.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an invalid backbone, no class, no head channel, or a
    /// backbone table with fewer than two strided blocks (no stride-8 tap).
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::segmentation::LrAsppConfig;
    ///
    /// let error = LrAsppConfig::mobilenet_v3_large(0).try_init(&Device::flex()).unwrap_err();
    /// assert!(error.to_string().contains("num_classes"));
    /// ```
    pub fn try_init(&self, device: &Device) -> Result<LrAspp, Error> {
        check_num_classes(self.num_classes)?;
        if self.inter_channels == 0 {
            return Err(crate::models::config_checks::invalid(
                "inter_channels",
                0,
                "it must be at least 1",
            ));
        }
        let (low_layer, _) = taps(&self.backbone)?;
        let backbone = self.backbone.try_init(device)?.features;
        let low_channels = layer_channels(&backbone, low_layer);
        let high_channels = backbone.out_channels();
        let (inter, classes) = (self.inter_channels, self.num_classes);
        let conv = |channels: [usize; 2], bias: bool| {
            Conv2dConfig::new(channels, [1, 1])
                .with_bias(bias)
                .init(device)
        };
        Ok(LrAspp {
            backbone,
            cbr: Conv2dNormActivationConfig::new(high_channels, inter)
                .with_kernel_size(1)
                .with_norm(Some(BatchNormSpec::PYTORCH_DEFAULT))
                .with_activation(Activation::ReLU)
                .init(device),
            scale: conv([high_channels, inter], false),
            low_classifier: conv([low_channels, classes], true),
            high_classifier: conv([inter, classes], true),
            low_layer,
        })
    }

    /// Builds the model.
    ///
    /// # Panics
    ///
    /// With the message of [`try_init`](Self::try_init)'s error.
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::segmentation::LrAsppConfig;
    ///
    /// let model = LrAsppConfig::mobilenet_v3_large(2).init(&Device::flex());
    /// assert_eq!(model.high_classifier.weight.dims(), [2, 128, 1, 1]);
    /// ```
    pub fn init(&self, device: &Device) -> LrAspp {
        self.try_init(device)
            .unwrap_or_else(|error| panic!("{error}"))
    }
}

/// LR-ASPP on a MobileNetV3 backbone, with torchvision's keys: `backbone.{i}` (the
/// classifier's `features`), `classifier.cbr.{0,1}`, `classifier.scale.1`,
/// `classifier.low_classifier`, `classifier.high_classifier`.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::segmentation::LrAsppConfig;
///
/// let device = Device::flex();
/// let model = LrAsppConfig::mobilenet_v3_small(3).init(&device);
/// let logits = model.forward(Tensor::zeros([1, 3, 33, 65], &device));
/// let mask = logits.argmax(1); // [1, 1, 33, 65]: each pixel's class
/// assert_eq!(mask.dims(), [1, 1, 33, 65]);
/// ```
#[derive(Debug, Clone)]
pub struct LrAspp {
    /// The dilated MobileNetV3 trunk (`backbone`).
    pub backbone: Features,
    /// 1x1 convolution, batch norm, ReLU on the last feature map (`classifier.cbr`).
    pub cbr: Conv2dNormActivation,
    /// The gate: global average, 1x1 convolution without bias, sigmoid
    /// (`classifier.scale.1`).
    pub scale: Conv2d,
    /// Linear classifier of the stride-8 features (`classifier.low_classifier`).
    pub low_classifier: Conv2d,
    /// Linear classifier of the gated high-level features (`classifier.high_classifier`).
    pub high_classifier: Conv2d,
    /// The backbone layer whose output is the stride-8 input of `low_classifier`
    /// (torchvision's numbering of `features`).
    pub low_layer: usize,
}

torchvision_module!(LrAspp {
    children {
        backbone: |_: &Self| "backbone".to_string(),
        cbr: |_: &Self| "classifier.cbr".to_string(),
        scale: |_: &Self| "classifier.scale.1".to_string(),
        low_classifier: |_: &Self| "classifier.low_classifier".to_string(),
        high_classifier: |_: &Self| "classifier.high_classifier".to_string(),
    }
    lists {}
    state { low_layer }
});

impl LrAspp {
    /// Per-pixel class logits at the input's size: torchvision's `model(x)["out"]`.
    ///
    /// # Shapes
    /// - input: `[batch, 3, height, width]`, normalized with ImageNet's mean and std
    /// - output: `[batch, num_classes, height, width]`
    ///
    /// # Panics
    ///
    /// On an input [`Features::check_input`] rejects, with its message;
    /// [`try_forward`](Self::try_forward) returns it instead.
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::segmentation::LrAsppConfig;
    ///
    /// let device = Device::flex();
    /// let model = LrAsppConfig::mobilenet_v3_small(5).init(&device);
    /// assert_eq!(model.forward(Tensor::zeros([1, 3, 20, 30], &device)).dims(), [1, 5, 20, 30]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.backbone.assert_input(x.dims());
        let [_, _, height, width] = x.dims();
        native::forward_on_thread_pool(native::ForwardInput::of(&x), || {
            let (low, high) = self.backbone.forward_with_tap_on_caller(x, self.low_layer);
            resize_bilinear(self.forward_head(low, high), [height, width])
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
    /// use mobilenet_burn::segmentation::LrAsppConfig;
    ///
    /// let device = Device::flex();
    /// let model = LrAsppConfig::mobilenet_v3_small(5).init(&device);
    /// assert!(model.try_forward(Tensor::zeros([1, 1, 20, 30], &device)).is_err());
    /// ```
    pub fn try_forward(&self, x: Tensor<4>) -> Result<Tensor<4>, Error> {
        self.backbone.check_input(x.dims())?;
        Ok(self.forward(x))
    }

    /// The head (torchvision's `LRASPPHead`) on the two feature maps: logits at the low map's
    /// resolution (stride 8).
    ///
    /// # Shapes
    /// - low: `[batch, low_channels, h8, w8]`; high: `[batch, high_channels, h16, w16]`
    /// - output: `[batch, num_classes, h8, w8]`
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::segmentation::LrAsppConfig;
    ///
    /// let device = Device::flex();
    /// let model = LrAsppConfig::mobilenet_v3_large(21).init(&device);
    /// let logits = model.forward_head(Tensor::zeros([1, 40, 8, 8], &device), Tensor::zeros([1, 960, 4, 4], &device));
    /// assert_eq!(logits.dims(), [1, 21, 8, 8]);
    /// ```
    pub fn forward_head(&self, low: Tensor<4>, high: Tensor<4>) -> Tensor<4> {
        let [_, _, low_height, low_width] = low.dims();
        let gate = sigmoid(
            self.scale
                .forward(native::global_average_pool(high.clone())),
        );
        let x = self.cbr.forward(high) * gate;
        let x = resize_bilinear(x, [low_height, low_width]);
        conv_only(&self.low_classifier, low) + conv_only(&self.high_classifier, x)
    }

    /// The inference form: every batch norm folded into the convolution before it, and the
    /// backbone on the native CPU kernels where they apply. Outputs equal the unfused model's
    /// to float rounding. Load a torchvision checkpoint first, then fuse.
    ///
    /// ```
    /// use burn::tensor::{Device, Distribution, Tensor, Tolerance};
    /// use mobilenet_burn::segmentation::LrAsppConfig;
    ///
    /// let device = Device::flex();
    /// let model = LrAsppConfig::mobilenet_v3_small(3).init(&device);
    /// let x = Tensor::random([1, 3, 40, 40], Distribution::Default, &device);
    /// let before = model.forward(x.clone());
    /// let after = model.fuse().forward(x);
    /// after.into_data().assert_approx_eq::<f32>(&before.into_data(), Tolerance::absolute(1e-3));
    /// ```
    pub fn fuse(self) -> Self {
        Self {
            backbone: self.backbone.fuse(),
            cbr: self.cbr.fuse(),
            ..self
        }
    }
}
