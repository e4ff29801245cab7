//! Training and fine-tuning: what the models add to burn's own training API.
//!
//! The models are burn modules, so burn's training API works on them unchanged: on an autodiff
//! device (`Device::flex().autodiff()`), `model.train()` makes BatchNorm use batch statistics and
//! update its running statistics, and dropout active; `model.valid()` is the inference copy;
//! `freeze`, `freeze_group`, `no_grad`, `GradientsParams` and burn's optimizers see every
//! parameter under its torchvision key. Numerics equal PyTorch's, the running-variance rule
//! included (see `docs/training.md` for the evidence). The native CPU kernels never run in a
//! training forward: they have no backward.
//!
//! This module adds what torchvision and timm users reach for:
//!
//! - on [`MobileNetV2`](crate::MobileNetV2) and [`MobileNetV3`](crate::MobileNetV3):
//!   `num_classes()`, timm's `reset_classifier(num_classes, &device)`,
//!   `load_torchvision_backbone(path)` (a checkpoint of another class count: every backbone
//!   weight kept, the output layer re-initialized, and a [`TransferReport`] saying so),
//!   `freeze_backbone()`, `backbone_params()` / `head_params()` for per-group learning rates, and
//!   `save_torchvision(path)`, a `.safetensors` file PyTorch loads with `strict=True`;
//! - on [`MobileNetV4`](crate::MobileNetV4), the same with timm's names: `num_classes()`,
//!   `reset_classifier` (PyTorch's `nn.Linear` initialization, as timm's), `load_timm_backbone`,
//!   `freeze_backbone()` (all but the classifier), `backbone_params()` / `head_params()`, and
//!   `save_timm(path)`;
//! - [`torch_sgd`] and [`torchvision_rmsprop`]: burn's optimizers configured to compute what
//!   PyTorch's `SGD` and torchvision's MobileNetV3 recipe's `RMSprop` compute.
//!
//! Fine-tuning a pretrained MobileNetV3-Small on three classes:
//!
//! ```
//! use burn::nn::loss::CrossEntropyLossConfig;
//! use burn::optim::GradientsParams;
//! use burn::module::Module;
//! use burn::tensor::{Device, Int, Tensor};
//! use mobilenet_burn::{MobileNetV3Config, training};
//!
//! let device = Device::flex().autodiff();
//! // Real weights: `MobileNetV3Config::small().init(&device).load_torchvision(path)?`
//! let model = MobileNetV3Config::small().with_width_mult(0.5).init(&device);
//! let mut model = model.reset_classifier(3, &device).freeze_backbone().train();
//! let mut optimizer = training::torch_sgd(0.9, 1e-4).init();
//!
//! let images = Tensor::<4>::ones([2, 3, 64, 64], &device);
//! let labels = Tensor::<1, Int>::from_ints([0, 2], &device);
//! let loss = CrossEntropyLossConfig::new()
//!     .init(&device)
//!     .forward(model.forward(images), labels);
//! let grads = GradientsParams::from_grads(loss.backward(), &model);
//! model = optimizer.step(0.01, model, grads);
//! assert_eq!(model.valid().num_classes(), 3);
//! ```

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{RmsPropConfig, SgdConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

use crate::ShapeMismatch;

/// PyTorch's `nn.CrossEntropyLoss(label_smoothing=smoothing)` with class-probability targets
/// (`[batch, classes]`, such as MixUp and CutMix make): the batch mean of
/// `-Σ_c ((1 - smoothing) t_c + smoothing / classes) · log_softmax(logits)_c`. burn's
/// `CrossEntropyLoss` takes class indices only. Returns a one-element tensor.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::training::soft_cross_entropy;
///
/// let device = Device::flex();
/// let logits = Tensor::<2>::from_floats([[2.0, 0.0, 0.0]], &device);
/// let targets = Tensor::<2>::from_floats([[0.5, 0.5, 0.0]], &device);
/// let loss: f32 = soft_cross_entropy(logits, targets, 0.0).into_scalar();
/// let log_z = (2f32.exp() + 2.0).ln();
/// assert!((loss - (log_z - 1.0)).abs() < 1e-6);
/// ```
pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>, smoothing: f32) -> Tensor<1> {
    let [batch, classes] = logits.dims();
    let targets = if smoothing > 0.0 {
        targets
            .mul_scalar(1.0 - smoothing)
            .add_scalar(smoothing / classes as f32)
    } else {
        targets
    };
    let per_item = (log_softmax(logits, 1) * targets).sum_dim(1).neg();
    per_item.sum().div_scalar(batch.max(1) as f32)
}

/// What [`load_torchvision_backbone`](crate::MobileNetV3::load_torchvision_backbone) left out.
///
/// ```
/// use burn::tensor::Device;
/// use mobilenet_burn::MobileNetV3Config;
///
/// let device = Device::flex();
/// let path = std::env::temp_dir().join(format!("imagenet-{}.safetensors", std::process::id()));
/// MobileNetV3Config::small().init(&device).save_torchvision(&path)?;
/// // 1000 ImageNet classes in the file, 5 in the model: all but the output layer load.
/// let (model, report) = MobileNetV3Config::small()
///     .with_num_classes(5)
///     .init(&device)
///     .load_torchvision_backbone(&path)?;
/// assert!(!report.is_complete());
/// assert_eq!(report.reinitialized[0].key, "classifier.3.weight");
/// assert_eq!(report.reinitialized[0].found, [1000, 1024]);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), mobilenet_burn::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferReport {
    /// The output layer's parameters that were not loaded because the checkpoint has another
    /// number of classes, with the model's and the checkpoint's shapes (PyTorch layout). They
    /// hold torchvision's initialization (`normal(0, 0.01)` weight, zero bias). Empty when the
    /// class counts agree and everything was loaded.
    pub reinitialized: Vec<ShapeMismatch>,
}

impl TransferReport {
    /// Whether every parameter of the model came from the checkpoint; see [`TransferReport`]
    /// for an example.
    ///
    /// ```
    /// use mobilenet_burn::training::TransferReport;
    ///
    /// assert!(TransferReport::default().is_complete());
    /// ```
    pub fn is_complete(&self) -> bool {
        self.reinitialized.is_empty()
    }
}

/// burn's [`SgdConfig`] set up to compute PyTorch's `torch.optim.SGD(lr, momentum,
/// weight_decay=weight_decay)`.
///
/// burn's SGD applies weight decay as PyTorch does (`grad + weight_decay * param`) and its
/// momentum buffer starts from the first gradient as PyTorch's does, but burn's
/// `MomentumConfig` defaults to `dampening = 0.1` where PyTorch's default is 0: with burn's
/// default, every step after the first moves by 10% less gradient. Here dampening is 0 and
/// Nesterov off; `momentum = 0` gives plain SGD, `weight_decay = 0` none.
///
/// ```
/// use mobilenet_burn::training::torch_sgd;
///
/// // torchvision's classification recipe: SGD, momentum 0.9, weight decay 1e-4.
/// let optimizer = torch_sgd(0.9, 1e-4).init();
/// # let _ = optimizer;
/// // `tests/training_parity.rs` checks its steps against `torch.optim.SGD`.
/// ```
pub fn torch_sgd(momentum: f64, weight_decay: f32) -> SgdConfig {
    SgdConfig::new()
        .with_momentum((momentum != 0.0).then(|| {
            MomentumConfig::new()
                .with_momentum(momentum)
                .with_dampening(0.0)
                .with_nesterov(false)
        }))
        .with_weight_decay((weight_decay != 0.0).then(|| WeightDecayConfig::new(weight_decay)))
}

/// `alpha` of torchvision's MobileNetV3 recipe (`--opt rmsprop`: `torch.optim.RMSprop(...,
/// alpha=0.9, eps=0.0316)`, `references/classification/train.py`).
pub const TORCHVISION_RMSPROP_ALPHA: f32 = 0.9;
/// `eps` of torchvision's MobileNetV3 recipe.
pub const TORCHVISION_RMSPROP_EPS: f32 = 0.0316;

/// burn's [`RmsPropConfig`] set up as torchvision's MobileNetV3 recipe uses PyTorch's RMSprop:
/// `torch.optim.RMSprop(lr, momentum=momentum, weight_decay=weight_decay, alpha=0.9,
/// eps=0.0316)` (the recipe: `--lr 0.064 --momentum 0.9 --wd 0.00001`).
///
/// burn 0.22's RMSprop already follows PyTorch's definition (not TensorFlow's): the square
/// average starts at zero, `eps` is added *after* the square root (`grad / (sqrt(avg) + eps)`),
/// the momentum buffer accumulates that quotient without dampening, and weight decay is added to
/// the gradient first. Only burn's defaults differ (`alpha = 0.99`, `eps = 1e-5`, momentum 0.9);
/// they are set here. The parity tests check three steps against PyTorch.
///
/// ```
/// use mobilenet_burn::training::torchvision_rmsprop;
///
/// // torchvision's MobileNetV3 recipe: `--opt rmsprop --momentum 0.9 --wd 0.00001`.
/// let optimizer = torchvision_rmsprop(0.9, 1e-5).init();
/// # let _ = optimizer;
/// ```
pub fn torchvision_rmsprop(momentum: f32, weight_decay: f32) -> RmsPropConfig {
    RmsPropConfig::new()
        .with_alpha(TORCHVISION_RMSPROP_ALPHA)
        .with_epsilon(TORCHVISION_RMSPROP_EPS)
        .with_momentum(momentum)
        .with_centered(false)
        .with_weight_decay((weight_decay != 0.0).then(|| WeightDecayConfig::new(weight_decay)))
}

/// The fine-tuning methods of a classifier: `$head` is the torchvision key of its output layer.
macro_rules! transfer_methods {
    ($model:ident, $head:literal, import: $import:literal, config: $config:literal) => {
        impl $model {
            /// Number of classes: the width of the output layer.
            ///
            /// ```
            /// use burn::tensor::Device;
            #[doc = concat!("use ", $import, ";")]
            ///
            /// let device = Device::flex();
            #[doc = concat!("let model = ", $config, ".init(&device);")]
            /// assert_eq!(model.num_classes(), 1000);
            /// assert_eq!(model.reset_classifier(10, &device).num_classes(), 10);
            /// ```
            pub fn num_classes(&self) -> usize {
                self.classifier.weight.dims()[1]
            }

            /// Replaces the output layer by a new one for `num_classes` classes, initialized
            /// as torchvision initializes it (`normal(0, 0.01)` weight, zero bias), on
            /// `device`; everything else is kept. timm's `reset_classifier`.
            ///
            /// # Panics
            ///
            /// If `num_classes` is zero (as the config's `init` would).
            ///
            /// ```
            /// use burn::tensor::{Device, Tensor};
            #[doc = concat!("use ", $import, ";")]
            ///
            /// let device = Device::flex();
            #[doc = concat!("let model = ", $config, ".init(&device).reset_classifier(2, &device);")]
            /// assert_eq!(model.forward(Tensor::zeros([1, 3, 32, 32], &device)).dims(), [1, 2]);
            /// ```
            pub fn reset_classifier(self, num_classes: usize, device: &Device) -> Self {
                assert!(num_classes > 0, "reset_classifier: num_classes must be positive");
                let hidden = self.classifier.weight.dims()[0];
                Self {
                    classifier: crate::init::linear(hidden, num_classes, device),
                    ..self
                }
            }

            /// Loads a torchvision checkpoint whose number of classes may differ from this
            /// model's: every other parameter must match exactly (checked as strictly as
            #[doc = concat!("[`load_torchvision`](Self::load_torchvision)), while `", $head, "`, the")]
            /// output layer, is kept at its torchvision initialization when its shape differs;
            /// the report lists what was left out.
            ///
            /// # Errors
            ///
            /// As [`load_torchvision`](Self::load_torchvision), for every key but the output
            /// layer's.
            ///
            /// ```
            /// use burn::tensor::Device;
            #[doc = concat!("use ", $import, ";")]
            ///
            /// let device = Device::flex();
            /// let path = std::env::temp_dir().join(format!("backbone-{}.safetensors", std::process::id()));
            #[doc = concat!($config, ".init(&device).save_torchvision(&path)?;")]
            #[doc = concat!("let (model, report) = ", $config, ".with_num_classes(7).init(&device)")]
            ///     .load_torchvision_backbone(&path)?;
            /// assert_eq!((model.num_classes(), report.reinitialized.len()), (7, 2));
            /// # std::fs::remove_file(&path).ok();
            /// # Ok::<(), mobilenet_burn::Error>(())
            /// ```
            pub fn load_torchvision_backbone(
                self,
                path: impl AsRef<Path>,
            ) -> Result<(Self, TransferReport), Error> {
                let (num_classes, hidden) = (self.num_classes(), self.classifier.weight.dims()[0]);
                let device = self.classifier.weight.device();
                load_with_other_head(
                    self,
                    path.as_ref(),
                    ($head, num_classes, hidden),
                    |model, classes| model.reset_classifier(classes, &device),
                    |model, path| model.load_torchvision(path),
                )
            }

            /// Freezes `features` (stem, blocks, last convolution) as burn's
            /// [`freeze`](burn::module::Module::freeze) does: no gradients, and every
            /// BatchNorm in inference behaviour (running statistics used and left untouched),
            /// so the backbone computes the same function before and after training steps. The
            /// classifier stays trainable.
            ///
            /// ```
            /// use burn::module::Module;
            /// use burn::tensor::Device;
            #[doc = concat!("use ", $import, ";")]
            ///
            /// let device = Device::flex().autodiff();
            #[doc = concat!("let model = ", $config, ".init(&device)")]
            ///     .reset_classifier(3, &device)
            ///     .freeze_backbone()
            ///     .train();
            /// // Training steps now change the classifier only (`tests/fine_tuning.rs` checks
            /// // that the backbone stays bit-identical).
            /// assert_eq!(model.num_classes(), 3);
            /// ```
            pub fn freeze_backbone(self) -> Self {
                Self {
                    features: burn::module::Module::freeze(self.features),
                    ..self
                }
            }

            /// Sets the momentum of every batch normalization (timm's `--bn-momentum`); see
            /// [`Features::with_batch_norm_momentum`](crate::Features::with_batch_norm_momentum).
            ///
            /// ```
            /// use burn::tensor::Device;
            #[doc = concat!("use ", $import, ";")]
            ///
            #[doc = concat!("let model = ", $config, ".init(&Device::flex()).with_batch_norm_momentum(0.1);")]
            /// assert_eq!(model.features.last_conv.norm.as_ref().unwrap().momentum, 0.1);
            /// ```
            pub fn with_batch_norm_momentum(self, momentum: f64) -> Self {
                Self {
                    features: self.features.with_batch_norm_momentum(momentum),
                    ..self
                }
            }

            /// The backbone's parameters (keys under `features.`), for per-group learning
            /// rates with burn's `ModuleLrScheduler::with_group` or per-group optimizers with
            /// `ModuleOptimizer::with_group`, and for `freeze_group`; `tests/fine_tuning.rs`
            /// shows a backbone at a tenth of the head's learning rate.
            ///
            /// ```
            /// use burn::lr_scheduler::module_lr_scheduler::ModuleLrSchedulerConfig;
            #[doc = concat!("use mobilenet_burn::", stringify!($model), ";")]
            ///
            /// // The head at 0.01, the pretrained backbone at a tenth of it.
            /// let scheduler = ModuleLrSchedulerConfig::new(0.01.into())
            #[doc = concat!("    .with_group(", stringify!($model), "::backbone_params(), 0.001)")]
            ///     .init()
            ///     .unwrap();
            /// # let _ = scheduler;
            /// ```
            pub fn backbone_params() -> ParamGroup {
                ParamGroup::from_predicate("features.")
            }

            /// The classifier's parameters (keys under `classifier.`); see
            /// [`backbone_params`](Self::backbone_params) for an example.
            ///
            /// ```
            /// use burn::module::ParamId;
            #[doc = concat!("use mobilenet_burn::", stringify!($model), ";")]
            ///
            #[doc = concat!("let head = ", stringify!($model), "::head_params();")]
            #[doc = concat!("assert!(head.matches(&ParamId::new(), Some(\"", $head, ".weight\")));")]
            /// assert!(!head.matches(&ParamId::new(), Some("features.0.0.weight")));
            /// ```
            pub fn head_params() -> ParamGroup {
                ParamGroup::from_predicate("classifier.")
            }

            /// Saves the model as a torchvision `state_dict` in `.safetensors`, which PyTorch
            /// loads with `model.load_state_dict(safetensors.torch.load_file(path),
            /// strict=True)`. Running statistics are included; `num_batches_tracked` is not
            /// (PyTorch fills it in). The file appears only once complete.
            ///
            /// # Errors
            ///
            /// [`Error::Save`] if the file cannot be written, or if the model was
            /// [`fuse`](Self::fuse)d: a folded model has no BatchNorm, so no torchvision layout.
            ///
            /// ```
            /// use burn::tensor::Device;
            #[doc = concat!("use ", $import, ";")]
            ///
            /// let device = Device::flex();
            /// let path = std::env::temp_dir().join(format!("tv-{}.safetensors", std::process::id()));
            #[doc = concat!("let model = ", $config, ".init(&device);")]
            /// model.save_torchvision(&path)?;
            #[doc = concat!("let again = ", $config, ".init(&device).load_torchvision(&path)?;")]
            /// assert_eq!(again.num_classes(), model.num_classes());
            /// assert!(model.fuse().save_torchvision(&path).is_err()); // no BatchNorm to save
            /// # std::fs::remove_file(&path).ok();
            /// # Ok::<(), mobilenet_burn::Error>(())
            /// ```
            pub fn save_torchvision(&self, path: impl AsRef<Path>) -> Result<(), Error> {
                let path = path.as_ref();
                if self.features.is_fused() {
                    return Err(Error::Save {
                        path: path.to_path_buf(),
                        reason: "the model is fused (BatchNorm folded): save it before fuse()"
                            .to_string(),
                    });
                }
                save_torchvision(&synchronized(self), path)
            }
        }
    };
}

/// Loads `path` into `model`, whose output layer `head` (`num_classes` by `hidden`) may have
/// another number of classes in the checkpoint (PyTorch weight layout `[classes, hidden]`): then
/// the head is reset to the checkpoint's count for a strict `load`, and reset again to
/// `num_classes` after, and the report says so. Same count, or a `head` that cannot be this
/// model's: `load` alone, which loads or reports it.
fn load_with_other_head<M: burn::store::ModuleSnapshot>(
    model: M,
    path: &std::path::Path,
    (head, num_classes, hidden): (&str, usize, usize),
    reset: impl Fn(M, usize) -> M,
    load: impl Fn(M, &std::path::Path) -> Result<M, crate::Error>,
) -> Result<(M, TransferReport), crate::Error> {
    let shapes = crate::checkpoint::torchvision_checkpoint_shapes(&model, path)?;
    let found = match shapes.get(&format!("{head}.weight")).map(Vec::as_slice) {
        Some(&[classes, found_hidden])
            if classes > 0 && classes != num_classes && found_hidden == hidden =>
        {
            classes
        }
        _ => return Ok((load(model, path)?, TransferReport::default())),
    };
    let model = reset(load(reset(model, found), path)?, num_classes);
    let mismatch = |key: String, expected: Vec<usize>, found: Vec<usize>| ShapeMismatch {
        key,
        expected,
        found,
    };
    let reinitialized = vec![
        mismatch(
            format!("{head}.weight"),
            vec![num_classes, hidden],
            vec![found, hidden],
        ),
        mismatch(format!("{head}.bias"), vec![num_classes], vec![found]),
    ];
    Ok((model, TransferReport { reinitialized }))
}

mod methods {
    use std::path::Path;

    use burn::module::ParamGroup;
    use burn::tensor::Device;

    use super::{TransferReport, load_with_other_head};
    use crate::checkpoint::{save_torchvision, synchronized};
    use crate::{Error, MobileNetV2, MobileNetV3, MobileNetV4};

    transfer_methods!(
        MobileNetV2,
        "classifier.1",
        import: "mobilenet_burn::MobileNetV2Config",
        config: "MobileNetV2Config::new().with_width_mult(0.25)"
    );
    transfer_methods!(
        MobileNetV3,
        "classifier.3",
        import: "mobilenet_burn::MobileNetV3Config",
        config: "MobileNetV3Config::small().with_width_mult(0.25)"
    );

    impl MobileNetV4 {
        /// Number of classes: the width of the classifier.
        ///
        /// ```
        /// use burn::tensor::Device;
        /// use mobilenet_burn::MobileNetV4Config;
        ///
        /// let device = Device::flex();
        /// let model = MobileNetV4Config::conv_small().init(&device);
        /// assert_eq!(model.num_classes(), 1000);
        /// assert_eq!(model.reset_classifier(10, &device).num_classes(), 10);
        /// ```
        pub fn num_classes(&self) -> usize {
            self.classifier.weight.dims()[1]
        }

        /// timm's `reset_classifier(num_classes)`: a new classifier with PyTorch's `nn.Linear`
        /// initialization (weight and bias uniform in `±1/sqrt(in_features)`, which burn's
        /// default `Linear` initialization is), on `device`; everything else kept.
        ///
        /// # Panics
        ///
        /// If `num_classes` is zero (as the config's `init` would).
        ///
        /// ```
        /// use burn::tensor::{Device, Tensor};
        /// use mobilenet_burn::MobileNetV4Config;
        ///
        /// let device = Device::flex();
        /// let model = MobileNetV4Config::conv_small().init(&device).reset_classifier(2, &device);
        /// assert_eq!(model.forward(Tensor::zeros([1, 3, 32, 32], &device)).dims(), [1, 2]);
        /// ```
        pub fn reset_classifier(self, num_classes: usize, device: &Device) -> Self {
            assert!(
                num_classes > 0,
                "reset_classifier: num_classes must be positive"
            );
            let hidden = self.classifier.weight.dims()[0];
            Self {
                classifier: burn::nn::LinearConfig::new(hidden, num_classes).init(device),
                ..self
            }
        }

        /// Loads a timm checkpoint whose number of classes may differ from this model's (an
        /// ImageNet checkpoint for a 5-class task): every other parameter must match exactly,
        /// as strictly as [`load_timm`](Self::load_timm), while `classifier` keeps its
        /// [`reset_classifier`](Self::reset_classifier) initialization when its shape differs;
        /// the report lists what was left out.
        ///
        /// # Errors
        ///
        /// As [`load_timm`](Self::load_timm), for every key but the classifier's.
        ///
        /// ```
        /// use burn::tensor::Device;
        /// use mobilenet_burn::MobileNetV4Config;
        ///
        /// let device = Device::flex();
        /// let path = std::env::temp_dir().join(format!("v4-backbone-{}.safetensors", std::process::id()));
        /// MobileNetV4Config::conv_small().init(&device).save_timm(&path)?;
        /// let (model, report) = MobileNetV4Config::conv_small().with_num_classes(7).init(&device)
        ///     .load_timm_backbone(&path)?;
        /// assert_eq!((model.num_classes(), report.reinitialized.len()), (7, 2));
        /// assert_eq!(report.reinitialized[0].found, [1000, 1280]);
        /// # std::fs::remove_file(&path).ok();
        /// # Ok::<(), mobilenet_burn::Error>(())
        /// ```
        pub fn load_timm_backbone(
            self,
            path: impl AsRef<Path>,
        ) -> Result<(Self, TransferReport), Error> {
            let (num_classes, hidden) = (self.num_classes(), self.classifier.weight.dims()[0]);
            let device = self.classifier.weight.device();
            load_with_other_head(
                self,
                path.as_ref(),
                ("classifier", num_classes, hidden),
                |model, classes| model.reset_classifier(classes, &device),
                |model, path| model.load_timm(path),
            )
        }

        /// Freezes everything but the classifier (stem, stages, and the head's 1x1 convolution
        /// and batch norm) as burn's [`freeze`](burn::module::Module::freeze) does: no
        /// gradients, and every BatchNorm in inference behaviour.
        ///
        /// ```
        /// use burn::tensor::Device;
        /// use mobilenet_burn::MobileNetV4Config;
        ///
        /// let device = Device::flex().autodiff();
        /// let model = MobileNetV4Config::conv_small().init(&device)
        ///     .reset_classifier(3, &device)
        ///     .freeze_backbone();
        /// assert_eq!(model.num_classes(), 3);
        /// ```
        pub fn freeze_backbone(self) -> Self {
            use burn::module::Module;
            Self {
                stem_conv: self.stem_conv.freeze(),
                stem_norm: self.stem_norm.freeze(),
                stages: self.stages.freeze(),
                head_conv: self.head_conv.freeze(),
                head_norm: self.head_norm.freeze(),
                ..self
            }
        }

        /// Every parameter but the classifier's (timm's keys `conv_stem`, `bn1`, `blocks`,
        /// `conv_head`, `norm_head`), for per-group learning rates and optimizers.
        ///
        /// ```
        /// use burn::module::ParamId;
        /// use mobilenet_burn::MobileNetV4;
        ///
        /// let backbone = MobileNetV4::backbone_params();
        /// assert!(backbone.matches(&ParamId::new(), Some("blocks.2.0.dw_start.conv.weight")));
        /// assert!(!backbone.matches(&ParamId::new(), Some("classifier.weight")));
        /// ```
        pub fn backbone_params() -> ParamGroup {
            ParamGroup::from_any_predicates(vec![
                "conv_stem.",
                "bn1.",
                "blocks.",
                "conv_head.",
                "norm_head.",
            ])
        }

        /// The classifier's parameters (keys under `classifier.`).
        ///
        /// ```
        /// use burn::module::ParamId;
        /// use mobilenet_burn::MobileNetV4;
        ///
        /// assert!(MobileNetV4::head_params().matches(&ParamId::new(), Some("classifier.bias")));
        /// ```
        pub fn head_params() -> ParamGroup {
            ParamGroup::from_predicate("classifier.")
        }
    }
}
