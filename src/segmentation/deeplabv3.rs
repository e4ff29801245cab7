//! DeepLabV3 on a dilated MobileNetV3, as torchvision's `models/segmentation/deeplabv3.py`
//! (`deeplabv3_mobilenet_v3_large`): atrous spatial pyramid pooling (a 1x1 branch, three
//! dilated 3x3 branches and an image-pooling branch, concatenated and projected), a 3x3
//! convolution and a 1x1 classifier, and optionally torchvision's auxiliary FCN head on the
//! stride-8 features.

use burn::config::Config;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, Dropout, DropoutConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::{conv_norm_relu, layer_channels, resize_bilinear, taps};
use crate::fuse::fold_optional_batch_norm as fold;
use crate::layers::conv_norm_act::conv_only;
use crate::models::config_checks::{check_num_classes, invalid};
use crate::native;
use crate::torch_paths::torchvision_module;
use crate::{
    Activation, BatchNormSpec, Conv2dNormActivation, Conv2dNormActivationConfig, Error, Features,
    MobileNetV3Config,
};

/// Dropout of ASPP's projection (torchvision's `nn.Dropout(0.5)`).
const ASPP_DROPOUT: f64 = 0.5;
/// Dropout of the auxiliary FCN head (torchvision's `nn.Dropout(0.1)`).
const FCN_DROPOUT: f64 = 0.1;
/// The FCN head's hidden channels are its input's divided by this.
const FCN_REDUCTION: usize = 4;

/// Configuration of [`DeepLabV3`].
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::MobileNetV3Config;
/// use mobilenet_burn::segmentation::DeepLabV3Config;
///
/// let device = Device::flex();
/// // torchvision's `deeplabv3_mobilenet_v3_large(num_classes=21)` is
/// // `DeepLabV3Config::mobilenet_v3_large(21)`; the same design, narrower:
/// let backbone = MobileNetV3Config::large().with_dilated(true).with_width_mult(0.25);
/// let model = DeepLabV3Config::new(backbone, 21).with_aspp_channels(16).init(&device);
/// assert_eq!(model.forward(Tensor::zeros([1, 3, 40, 56], &device)).dims(), [1, 21, 40, 56]);
/// ```
#[derive(Config, Debug)]
pub struct DeepLabV3Config {
    /// The backbone; only its `features` are built. torchvision's builder uses
    /// `MobileNetV3Config::large().with_dilated(true)`.
    pub backbone: MobileNetV3Config,
    /// Classes, the background included (21 for torchvision's VOC-labelled weights).
    pub num_classes: usize,
    /// Build torchvision's auxiliary FCN head on the stride-8 features (`aux_classifier`, its
    /// `aux_loss=True`; the pretrained checkpoint has one). Default: false, as torchvision's
    /// builder called without weights.
    #[config(default = false)]
    pub aux_classifier: bool,
    /// Channels of every ASPP branch, its projection and the 3x3 convolution after it.
    /// Default: 256 (torchvision's).
    #[config(default = 256)]
    pub aspp_channels: usize,
    /// Dilations of ASPP's three 3x3 branches. Default: 12, 24, 36 (torchvision's).
    #[config(default = "[12, 24, 36]")]
    pub atrous_rates: [usize; 3],
}

impl DeepLabV3Config {
    /// torchvision's `deeplabv3_mobilenet_v3_large(num_classes=...)`: MobileNetV3-Large with
    /// its last stage dilated (output stride 16), ASPP on its last convolution (960 channels),
    /// no auxiliary head (add one with `.with_aux_classifier(true)`; tapped at block 4, 40
    /// channels, stride 8).
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::segmentation::DeepLabV3Config;
    ///
    /// let device = Device::flex();
    /// let model = DeepLabV3Config::mobilenet_v3_large(21).with_aux_classifier(true).init(&device);
    /// assert_eq!(model.num_learnable_params(), 11_029_328); // torchvision's count, aux head included
    /// ```
    pub fn mobilenet_v3_large(num_classes: usize) -> Self {
        Self::new(MobileNetV3Config::large().with_dilated(true), num_classes)
    }

    /// Builds the model, or says which field is invalid.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an invalid backbone, no class, no ASPP channel, a zero
    /// atrous rate, or a backbone table with fewer than two strided blocks.
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use mobilenet_burn::segmentation::DeepLabV3Config;
    ///
    /// let config = DeepLabV3Config::mobilenet_v3_large(21).with_atrous_rates([6, 0, 18]);
    /// assert!(config.try_init(&Device::flex()).unwrap_err().to_string().contains("atrous_rates"));
    /// ```
    pub fn try_init(&self, device: &Device) -> Result<DeepLabV3, Error> {
        check_num_classes(self.num_classes)?;
        if self.aspp_channels == 0 {
            return Err(invalid("aspp_channels", 0, "it must be at least 1"));
        }
        if self.atrous_rates.contains(&0) {
            return Err(invalid(
                "atrous_rates",
                format!("{:?}", self.atrous_rates),
                "every rate must be at least 1",
            ));
        }
        let (aux_layer, _) = taps(&self.backbone)?;
        let backbone = self.backbone.try_init(device)?.features;
        let aux_channels = layer_channels(&backbone, aux_layer);
        let (channels, classes) = (self.aspp_channels, self.num_classes);
        let aux_classifier = self
            .aux_classifier
            .then(|| FcnHead::new(aux_channels, classes, device));
        Ok(DeepLabV3 {
            classifier: DeepLabHead::new(
                backbone.out_channels(),
                channels,
                self.atrous_rates,
                classes,
                device,
            ),
            backbone,
            aux_classifier,
            aux_layer,
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
    /// use mobilenet_burn::segmentation::DeepLabV3Config;
    ///
    /// let model = DeepLabV3Config::mobilenet_v3_large(21).init(&Device::flex());
    /// assert!(model.aux_classifier.is_none());
    /// ```
    pub fn init(&self, device: &Device) -> DeepLabV3 {
        self.try_init(device)
            .unwrap_or_else(|error| panic!("{error}"))
    }
}

/// A convolution as torchvision's heads build theirs (PyTorch's default initialization).
fn head_conv(
    [in_channels, out_channels]: [usize; 2],
    kernel: usize,
    dilation: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    let padding = (kernel - 1) / 2 * dilation;
    Conv2dConfig::new([in_channels, out_channels], [kernel, kernel])
        .with_dilation([dilation, dilation])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_bias(bias)
        .init(device)
}

/// A `Conv2dNormActivation` with PyTorch's default batch norm and ReLU, as ASPP's branches.
fn conv_bn_relu(
    channels: [usize; 2],
    kernel: usize,
    dilation: usize,
    device: &Device,
) -> Conv2dNormActivation {
    Conv2dNormActivationConfig::new(channels[0], channels[1])
        .with_kernel_size(kernel)
        .with_dilation(dilation)
        .with_norm(Some(BatchNormSpec::PYTORCH_DEFAULT))
        .with_activation(Activation::ReLU)
        .init(device)
}

/// DeepLabV3 on a MobileNetV3 backbone, with torchvision's keys: `backbone.{i}`,
/// `classifier.{0,1,2,4}` ([`DeepLabHead`]) and, if built, `aux_classifier.{0,1,4}`
/// ([`FcnHead`]).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::MobileNetV3Config;
/// use mobilenet_burn::segmentation::DeepLabV3Config;
///
/// let device = Device::flex();
/// let backbone = MobileNetV3Config::small().with_dilated(true).with_width_mult(0.5);
/// let model = DeepLabV3Config::new(backbone, 3).with_aspp_channels(32).init(&device);
/// let mask = model.forward(Tensor::zeros([1, 3, 48, 48], &device)).argmax(1);
/// assert_eq!(mask.dims(), [1, 1, 48, 48]);
/// ```
#[derive(Debug, Clone)]
pub struct DeepLabV3 {
    /// The dilated MobileNetV3 trunk (`backbone`).
    pub backbone: Features,
    /// ASPP and the classifier (`classifier`).
    pub classifier: DeepLabHead,
    /// The auxiliary head on the stride-8 features (`aux_classifier`), if built.
    pub aux_classifier: Option<FcnHead>,
    /// The backbone layer the auxiliary head reads (torchvision's numbering of `features`).
    pub aux_layer: usize,
}

torchvision_module!(DeepLabV3 {
    children {
        backbone: |_: &Self| "backbone".to_string(),
        classifier: |_: &Self| "classifier".to_string(),
        aux_classifier: |_: &Self| "aux_classifier".to_string(),
    }
    lists {}
    state { aux_layer }
});

impl DeepLabV3 {
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
    /// use mobilenet_burn::MobileNetV3Config;
    /// use mobilenet_burn::segmentation::DeepLabV3Config;
    ///
    /// let device = Device::flex();
    /// let backbone = MobileNetV3Config::small().with_dilated(true).with_width_mult(0.5);
    /// let model = DeepLabV3Config::new(backbone, 4).with_aspp_channels(16).init(&device);
    /// assert_eq!(model.forward(Tensor::zeros([2, 3, 17, 31], &device)).dims(), [2, 4, 17, 31]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.backbone.assert_input(x.dims());
        let [_, _, height, width] = x.dims();
        native::forward_on_thread_pool(native::ForwardInput::of(&x), || {
            let out = self.backbone.forward_on_caller(x);
            resize_bilinear(self.classifier.forward(out), [height, width])
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
    /// use mobilenet_burn::MobileNetV3Config;
    /// use mobilenet_burn::segmentation::DeepLabV3Config;
    ///
    /// let device = Device::flex();
    /// let backbone = MobileNetV3Config::small().with_dilated(true).with_width_mult(0.5);
    /// let model = DeepLabV3Config::new(backbone, 4).with_aspp_channels(16).init(&device);
    /// assert!(model.try_forward(Tensor::zeros([0, 3, 17, 31], &device)).is_err());
    /// ```
    pub fn try_forward(&self, x: Tensor<4>) -> Result<Tensor<4>, Error> {
        self.backbone.check_input(x.dims())?;
        Ok(self.forward(x))
    }

    /// Both outputs of torchvision's model with `aux_loss=True`: `(out, aux)`, each at the
    /// input's size; `aux` is `None` without an auxiliary head.
    ///
    /// # Shapes
    /// - input: `[batch, 3, height, width]`
    /// - outputs: `[batch, num_classes, height, width]` each
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::MobileNetV3Config;
    /// use mobilenet_burn::segmentation::DeepLabV3Config;
    ///
    /// let device = Device::flex();
    /// let backbone = MobileNetV3Config::small().with_dilated(true).with_width_mult(0.5);
    /// let model = DeepLabV3Config::new(backbone, 4)
    ///     .with_aspp_channels(16)
    ///     .with_aux_classifier(true)
    ///     .init(&device);
    /// let (out, aux) = model.forward_aux(Tensor::zeros([1, 3, 32, 32], &device));
    /// assert_eq!((out.dims(), aux.unwrap().dims()), ([1, 4, 32, 32], [1, 4, 32, 32]));
    /// ```
    pub fn forward_aux(&self, x: Tensor<4>) -> (Tensor<4>, Option<Tensor<4>>) {
        self.backbone.assert_input(x.dims());
        let [_, _, height, width] = x.dims();
        native::forward_on_thread_pool(native::ForwardInput::of(&x), || {
            let (aux, out) = self.backbone.forward_with_tap_on_caller(x, self.aux_layer);
            let out = resize_bilinear(self.classifier.forward(out), [height, width]);
            let aux = self
                .aux_classifier
                .as_ref()
                .map(|head| resize_bilinear(head.forward(aux), [height, width]));
            (out, aux)
        })
    }

    /// The inference form: every batch norm folded into the convolution before it, and the
    /// backbone on the native CPU kernels where they apply. Load a torchvision checkpoint
    /// first, then fuse.
    ///
    /// ```
    /// use burn::tensor::{Device, Distribution, Tensor, Tolerance};
    /// use mobilenet_burn::MobileNetV3Config;
    /// use mobilenet_burn::segmentation::DeepLabV3Config;
    ///
    /// let device = Device::flex();
    /// let backbone = MobileNetV3Config::small().with_dilated(true).with_width_mult(0.5);
    /// let model = DeepLabV3Config::new(backbone, 4).with_aspp_channels(16).init(&device);
    /// let x = Tensor::random([1, 3, 40, 40], Distribution::Default, &device);
    /// let before = model.forward(x.clone());
    /// let after = model.fuse().forward(x);
    /// after.into_data().assert_approx_eq::<f32>(&before.into_data(), Tolerance::absolute(1e-3));
    /// ```
    pub fn fuse(self) -> Self {
        Self {
            backbone: self.backbone.fuse(),
            classifier: self.classifier.fuse(),
            aux_classifier: self.aux_classifier.map(FcnHead::fuse),
            aux_layer: self.aux_layer,
        }
    }
}

/// torchvision's `DeepLabHead` (an `nn.Sequential`): [`Aspp`] (`0`), a 3x3 convolution (`1`)
/// with batch norm (`2`) and ReLU, and a 1x1 classifier with bias (`4`).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::segmentation::DeepLabV3Config;
///
/// let device = Device::flex();
/// let head = DeepLabV3Config::mobilenet_v3_large(21).init(&device).classifier;
/// assert_eq!(head.forward(Tensor::zeros([1, 960, 5, 7], &device)).dims(), [1, 21, 5, 7]);
/// ```
#[derive(Debug, Clone)]
pub struct DeepLabHead {
    /// `0`
    pub aspp: Aspp,
    /// `1`: weight `[channels, channels, 3, 3]`, no bias until fused.
    pub conv: Conv2d,
    /// `2`; `None` once fused.
    pub norm: Option<BatchNorm>,
    /// `4`: weight `[num_classes, channels, 1, 1]` and bias.
    pub classifier: Conv2d,
}

torchvision_module!(DeepLabHead {
    children {
        aspp: |_: &Self| "0".to_string(),
        conv: |_: &Self| "1".to_string(),
        norm: |_: &Self| "2".to_string(),
        classifier: |_: &Self| "4".to_string(),
    }
    lists {}
    state {}
});

impl DeepLabHead {
    fn new(
        in_channels: usize,
        channels: usize,
        rates: [usize; 3],
        classes: usize,
        device: &Device,
    ) -> Self {
        Self {
            aspp: Aspp::new(in_channels, channels, rates, device),
            conv: head_conv([channels, channels], 3, 1, false, device),
            norm: Some(BatchNormSpec::PYTORCH_DEFAULT.init(channels, device)),
            classifier: head_conv([channels, classes], 1, 1, true, device),
        }
    }

    /// Logits at the features' resolution.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels, height, width]`
    /// - output: `[batch, num_classes, height, width]`
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::segmentation::DeepLabV3Config;
    ///
    /// let device = Device::flex();
    /// let head = DeepLabV3Config::mobilenet_v3_large(3).init(&device).classifier;
    /// assert_eq!(head.forward(Tensor::zeros([2, 960, 1, 1], &device)).dims(), [2, 3, 1, 1]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.aspp.forward(x);
        let x = conv_norm_relu(&self.conv, self.norm.as_ref(), x);
        conv_only(&self.classifier, x)
    }

    fn fuse(self) -> Self {
        let (conv, norm) = fold(self.conv, self.norm);
        Self {
            aspp: self.aspp.fuse(),
            conv,
            norm,
            classifier: self.classifier,
        }
    }
}

/// Atrous spatial pyramid pooling (torchvision's `ASPP`): a 1x1 branch and one dilated 3x3
/// branch per rate (`convs.0` to `convs.3`, each a `Conv2dNormActivation` with ReLU), an
/// image-pooling branch (`convs.4`), their concatenation projected by a 1x1
/// `Conv2dNormActivation` (`project.{0,1}`), then dropout 0.5.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::segmentation::DeepLabV3Config;
///
/// let device = Device::flex();
/// let aspp = DeepLabV3Config::mobilenet_v3_large(21).init(&device).classifier.aspp;
/// assert_eq!(aspp.branches.len(), 4);
/// assert_eq!(aspp.branches[3].conv.dilation, [36, 36]);
/// ```
#[derive(Debug, Clone)]
pub struct Aspp {
    /// `convs.0` (1x1) and `convs.1..=3` (3x3, dilated by each rate).
    pub branches: Vec<Conv2dNormActivation>,
    /// `convs.4`
    pub pooling: AsppPooling,
    /// `project.{0,1}`: 1x1 from every branch's channels to `channels`, ReLU.
    pub project: Conv2dNormActivation,
    /// `project.3`
    pub dropout: Dropout,
}

torchvision_module!(Aspp {
    children {
        pooling: |aspp: &Self| format!("convs.{}", aspp.branches.len()),
        project: |_: &Self| "project".to_string(),
        dropout: |_: &Self| "project.3".to_string(),
    }
    lists {
        branches: |index: usize| format!("convs.{index}"),
    }
    state {}
});

impl Aspp {
    fn new(in_channels: usize, channels: usize, rates: [usize; 3], device: &Device) -> Self {
        let branches = std::iter::once(conv_bn_relu([in_channels, channels], 1, 1, device))
            .chain(
                rates
                    .iter()
                    .map(|&rate| conv_bn_relu([in_channels, channels], 3, rate, device)),
            )
            .collect::<Vec<_>>();
        let concatenated = (branches.len() + 1) * channels;
        Self {
            branches,
            pooling: AsppPooling {
                conv: head_conv([in_channels, channels], 1, 1, false, device),
                norm: Some(BatchNormSpec::PYTORCH_DEFAULT.init(channels, device)),
            },
            project: conv_bn_relu([concatenated, channels], 1, 1, device),
            dropout: DropoutConfig::new(ASPP_DROPOUT).init(),
        }
    }

    /// Every branch, concatenated and projected.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels, height, width]`
    /// - output: `[batch, channels, height, width]`
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::segmentation::DeepLabV3Config;
    ///
    /// let device = Device::flex();
    /// let aspp = DeepLabV3Config::mobilenet_v3_large(21).init(&device).classifier.aspp;
    /// assert_eq!(aspp.forward(Tensor::zeros([1, 960, 3, 4], &device)).dims(), [1, 256, 3, 4]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut outputs: Vec<Tensor<4>> = self
            .branches
            .iter()
            .map(|branch| branch.forward(x.clone()))
            .collect();
        outputs.push(self.pooling.forward(x));
        self.dropout
            .forward(self.project.forward(Tensor::cat(outputs, 1)))
    }

    fn fuse(self) -> Self {
        Self {
            branches: self
                .branches
                .into_iter()
                .map(Conv2dNormActivation::fuse)
                .collect(),
            pooling: self.pooling.fuse(),
            project: self.project.fuse(),
            dropout: self.dropout,
        }
    }
}

/// ASPP's image-pooling branch (torchvision's `ASPPPooling`, an `nn.Sequential`): global
/// average (`0`), 1x1 convolution (`1`), batch norm (`2`), ReLU, then broadcast back to the
/// input's size.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::segmentation::DeepLabV3Config;
///
/// let device = Device::flex();
/// let pooling = DeepLabV3Config::mobilenet_v3_large(21).init(&device).classifier.aspp.pooling;
/// assert_eq!(pooling.forward(Tensor::ones([1, 960, 3, 4], &device)).dims(), [1, 256, 3, 4]);
/// ```
#[derive(Debug, Clone)]
pub struct AsppPooling {
    /// `1`: weight `[channels, in_channels, 1, 1]`, no bias until fused.
    pub conv: Conv2d,
    /// `2`; `None` once fused.
    pub norm: Option<BatchNorm>,
}

torchvision_module!(AsppPooling {
    children {
        conv: |_: &Self| "1".to_string(),
        norm: |_: &Self| "2".to_string(),
    }
    lists {}
    state {}
});

impl AsppPooling {
    /// The branch's output, constant over each channel.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels, height, width]`
    /// - output: `[batch, channels, height, width]`
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::segmentation::DeepLabV3Config;
    ///
    /// let device = Device::flex();
    /// let pooling = DeepLabV3Config::mobilenet_v3_large(21).init(&device).classifier.aspp.pooling;
    /// assert_eq!(pooling.forward(Tensor::ones([2, 960, 1, 9], &device)).dims(), [2, 256, 1, 9]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, height, width] = x.dims();
        let pooled = native::global_average_pool(x);
        let y = conv_norm_relu(&self.conv, self.norm.as_ref(), pooled);
        resize_bilinear(y, [height, width])
    }

    fn fuse(self) -> Self {
        let (conv, norm) = fold(self.conv, self.norm);
        Self { conv, norm }
    }
}

/// torchvision's `FCNHead` (an `nn.Sequential`), DeepLabV3's auxiliary classifier: a 3x3
/// convolution to a quarter of the channels (`0`), batch norm (`1`), ReLU, dropout 0.1 and a
/// 1x1 classifier with bias (`4`).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::segmentation::DeepLabV3Config;
///
/// let device = Device::flex();
/// let model = DeepLabV3Config::mobilenet_v3_large(21).with_aux_classifier(true).init(&device);
/// let aux = model.aux_classifier.unwrap();
/// assert_eq!(aux.conv.weight.dims(), [10, 40, 3, 3]);
/// assert_eq!(aux.forward(Tensor::zeros([1, 40, 8, 8], &device)).dims(), [1, 21, 8, 8]);
/// ```
#[derive(Debug, Clone)]
pub struct FcnHead {
    /// `0`: weight `[in_channels / 4, in_channels, 3, 3]`, no bias until fused.
    pub conv: Conv2d,
    /// `1`; `None` once fused.
    pub norm: Option<BatchNorm>,
    /// `3`
    pub dropout: Dropout,
    /// `4`: weight `[num_classes, in_channels / 4, 1, 1]` and bias.
    pub classifier: Conv2d,
}

torchvision_module!(FcnHead {
    children {
        conv: |_: &Self| "0".to_string(),
        norm: |_: &Self| "1".to_string(),
        dropout: |_: &Self| "3".to_string(),
        classifier: |_: &Self| "4".to_string(),
    }
    lists {}
    state {}
});

impl FcnHead {
    fn new(in_channels: usize, classes: usize, device: &Device) -> Self {
        let hidden = in_channels / FCN_REDUCTION;
        Self {
            conv: head_conv([in_channels, hidden], 3, 1, false, device),
            norm: Some(BatchNormSpec::PYTORCH_DEFAULT.init(hidden, device)),
            dropout: DropoutConfig::new(FCN_DROPOUT).init(),
            classifier: head_conv([hidden, classes], 1, 1, true, device),
        }
    }

    /// Logits at the features' resolution.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels, height, width]`
    /// - output: `[batch, num_classes, height, width]`
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mobilenet_burn::segmentation::DeepLabV3Config;
    ///
    /// let device = Device::flex();
    /// let model = DeepLabV3Config::mobilenet_v3_large(4).with_aux_classifier(true).init(&device);
    /// let logits = model.aux_classifier.unwrap().forward(Tensor::zeros([1, 40, 5, 5], &device));
    /// assert_eq!(logits.dims(), [1, 4, 5, 5]);
    /// ```
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = conv_norm_relu(&self.conv, self.norm.as_ref(), x);
        conv_only(&self.classifier, self.dropout.forward(x))
    }

    fn fuse(self) -> Self {
        let (conv, norm) = fold(self.conv, self.norm);
        Self { conv, norm, ..self }
    }
}
