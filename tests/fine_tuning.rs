//! Transfer learning and the training contract of the modules: a checkpoint of another class
//! count loads with the backbone kept and the head re-initialized (and reported); a frozen
//! backbone stays bit-identical through training steps; per-group learning rates reach the
//! right parameters; `save_torchvision` round-trips; the native kernels never run in training.

mod common;

use burn::lr_scheduler::module_lr_scheduler::{ModuleLrScheduler, ModuleLrSchedulerConfig};
use burn::module::{Module, ParamGroup};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor};
use common::training::{state_dict, train_case};
use mobilenet_burn::native;
use mobilenet_burn::training::{TransferReport, torch_sgd};
use mobilenet_burn::{Error, MobileNetV2, MobileNetV3, ShapeMismatch};

fn training_device() -> Device {
    common::cpu_device().autodiff()
}

fn v3s(device: &Device) -> MobileNetV3 {
    let case = train_case("v3s_w025");
    case.v3_config()
        .init(device)
        .load_torchvision(case.checkpoint_path())
        .expect("load")
}

/// One SGD step (momentum, so the second step differs from the first) on a random batch.
fn sgd_steps(mut model: MobileNetV3, steps: usize, device: &Device) -> MobileNetV3 {
    let mut optimizer = torch_sgd(0.9, 1e-4).init();
    let classes = model.num_classes();
    for step in 0..steps {
        let x = Tensor::<4>::random([4, 3, 48, 48], Distribution::Normal(0.0, 1.0), device);
        let y = Tensor::<1, Int>::from_ints([0, 1, 2, step as i32 % classes as i32], device);
        let loss = CrossEntropyLossConfig::new()
            .init(device)
            .forward(model.forward(x), y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(0.1, model, grads);
    }
    model
}

#[test]
fn another_class_count_keeps_the_backbone_and_reports_the_head() {
    let device = common::cpu_device();
    let case = train_case("v3s_w025"); // 3 classes
    let reference = state_dict(&v3s(&device));

    // Strict loading refuses, and says where to go.
    let strict = case
        .v3_config()
        .with_num_classes(7)
        .init(&device)
        .load_torchvision(case.checkpoint_path());
    let Err(Error::CheckpointMismatch { report, .. }) = strict else {
        panic!("a 3-class checkpoint must not load strictly into a 7-class model");
    };
    assert_eq!(report.shape_mismatches.len(), 2, "{report}");
    assert!(
        report.to_string().contains("load_torchvision_backbone"),
        "{report}"
    );

    let (model, report) = case
        .v3_config()
        .with_num_classes(7)
        .init(&device)
        .load_torchvision_backbone(case.checkpoint_path())
        .expect("transfer load");
    assert_eq!(model.num_classes(), 7);
    assert_eq!(
        report,
        TransferReport {
            reinitialized: vec![
                ShapeMismatch {
                    key: "classifier.3.weight".into(),
                    expected: vec![7, 256],
                    found: vec![3, 256],
                },
                ShapeMismatch {
                    key: "classifier.3.bias".into(),
                    expected: vec![7],
                    found: vec![3],
                },
            ]
        }
    );
    let loaded = state_dict(&model);
    for (key, values) in &reference {
        if key.starts_with("classifier.3.") {
            continue;
        }
        assert_eq!(&loaded[key], values, "{key} must come from the checkpoint");
    }
    // torchvision's head initialization: zero bias, normal(0, 0.01) weight.
    assert!(loaded["classifier.3.bias"].iter().all(|&b| b == 0.0));
    let weight = &loaded["classifier.3.weight"];
    let std = (weight.iter().map(|w| w * w).sum::<f32>() / weight.len() as f32).sqrt();
    assert!((0.007..0.013).contains(&std), "head weight std {std}");

    // The same class count loads everything and reports nothing.
    let (model, report) = case
        .v3_config()
        .init(&device)
        .load_torchvision_backbone(case.checkpoint_path())
        .expect("load");
    assert!(report.is_complete());
    assert_eq!(state_dict(&model), reference);
}

#[test]
fn v2_transfer_and_reset_classifier() {
    let device = common::cpu_device();
    let case = train_case("v2_w025"); // 5 classes
    let (model, report): (MobileNetV2, _) = case
        .v2_config()
        .with_num_classes(2)
        .init(&device)
        .load_torchvision_backbone(case.checkpoint_path())
        .expect("transfer load");
    assert_eq!(report.reinitialized[0].key, "classifier.1.weight");
    assert_eq!(model.num_classes(), 2);
    let model = model.reset_classifier(11, &device);
    assert_eq!(model.num_classes(), 11);
    let logits = model.forward(Tensor::zeros([1, 3, 32, 32], &device));
    assert_eq!(logits.dims(), [1, 11]);
}

#[test]
fn frozen_backbone_is_bit_identical_after_training_steps() {
    let device = training_device();
    let model = v3s(&device).freeze_backbone().train();
    let plain = common::cpu_device();
    let probe = Tensor::<4>::random([2, 3, 48, 48], Distribution::Normal(0.0, 1.0), &plain);
    let before_features = model.valid().forward_features(probe.clone()).into_data();
    let before = state_dict(&model);

    let model = sgd_steps(model, 2, &device);
    let after = state_dict(&model);
    for (key, values) in &before {
        if key.starts_with("features.") {
            assert_eq!(&after[key], values, "{key} changed in a frozen backbone");
        }
    }
    assert_ne!(
        after["classifier.3.weight"], before["classifier.3.weight"],
        "the head trains"
    );
    assert_eq!(
        model.valid().forward_features(probe).into_data(),
        before_features
    );
}

#[test]
fn per_group_learning_rates_reach_backbone_and_head() {
    let device = training_device();
    let mut model = v3s(&device).train();
    // Backbone learning rate 0, head 0.1: only the head may move.
    let mut lr: ModuleLrScheduler = ModuleLrSchedulerConfig::new(0.1.into())
        .with_group(MobileNetV3::backbone_params(), 0.0)
        .init()
        .expect("scheduler");
    let mut optimizer = torch_sgd(0.0, 0.0).init();
    let before = state_dict(&model);
    let x = Tensor::<4>::random([4, 3, 48, 48], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::<1, Int>::from_ints([0, 1, 2, 0], &device);
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(model.forward(x), y);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    model = optimizer.step(lr.step(), model, grads);
    let after = state_dict(&model);
    for (key, values) in &before {
        let is_statistic = key.ends_with("running_mean") || key.ends_with("running_var");
        if key.starts_with("features.") && !is_statistic {
            assert_eq!(&after[key], values, "{key} moved at learning rate 0");
        }
        if key.starts_with("classifier.") {
            assert_ne!(
                &after[key], values,
                "{key} did not move at learning rate 0.1"
            );
        }
    }
}

#[test]
fn freeze_group_by_path_freezes_that_part_only() {
    let device = training_device();
    let model = v3s(&device)
        .freeze_group(ParamGroup::from_predicate("features.0."))
        .train();
    let before = state_dict(&model);
    let after = state_dict(&sgd_steps(model, 1, &device));
    for (key, values) in &before {
        if key.starts_with("features.0.") {
            assert_eq!(&after[key], values, "{key} is frozen");
        } else if key.starts_with("features.1.") && !key.contains("running") {
            assert_ne!(&after[key], values, "{key} trains");
        }
    }
}

#[test]
fn save_torchvision_round_trips_and_refuses_fused_models() {
    let device = common::cpu_device();
    let model = v3s(&device);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.safetensors");
    model.save_torchvision(&path).expect("save");
    let case = train_case("v3s_w025");
    let reloaded = case
        .v3_config()
        .init(&device)
        .load_torchvision(&path)
        .expect("reload");
    assert_eq!(state_dict(&reloaded), state_dict(&model));

    let fused_path = dir.path().join("fused.safetensors");
    let fused = model.fuse().save_torchvision(&fused_path);
    assert!(matches!(fused, Err(Error::Save { .. })), "{fused:?}");
    assert!(!fused_path.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        1,
        "nothing half-written"
    );
}

/// The native kernels have no backward: a training forward, even of a fused model on
/// burn-flex, runs burn's operations (the kernels count every layer they compute).
#[cfg(feature = "flex")]
#[test]
fn a_training_forward_never_takes_the_native_kernels() {
    let device = Device::flex().autodiff();
    let model = v3s(&device).fuse().train();
    let x = Tensor::<4>::random([2, 3, 48, 48], Distribution::Normal(0.0, 1.0), &device);
    let (_, counts) = native::count_layers(|| {
        let _ = model.forward(x).sum().backward();
    });
    assert_eq!(counts.inference, 0);
}

/// An unfused model training on burn-flex runs its 1x1 and depthwise convolutions and its batch
/// norms on the training kernels (differentiable operations with their own backward), which
/// count separately: V3-Small has 34 convolutions with a batch norm after them (stem, 10
/// expansions, 11 depthwise, 11 projections, last conv); all but the stem are 1x1 or depthwise.
#[cfg(feature = "flex")]
#[test]
fn training_on_flex_takes_the_training_kernels() {
    let device = Device::flex().autodiff();
    let model = v3s(&device).train();
    let x = Tensor::<4>::random([2, 3, 48, 48], Distribution::Normal(0.0, 1.0), &device);
    let (_, counts) = native::count_layers(|| {
        let _ = model.forward(x).sum().backward();
    });
    // Counted per call: exactly this forward's 33 convolutions, 34 batch norms and the 9
    // squeeze-and-excitations of V3-Small's blocks.
    assert_eq!(
        counts.training,
        33 + 34 + 9,
        "layers on the training kernels"
    );
    assert_eq!(counts.inference, 0);
}

/// A model loaded on a plain device and forked (or moved) to an autodiff one trains every
/// parameter: the hand-written `Module` impls pass `fork`/`to_device` to every child.
#[test]
fn fork_and_to_device_keep_every_parameter_trainable() {
    let device = training_device();
    let loaded = v3s(&common::cpu_device());
    let learnable = state_dict(&loaded)
        .keys()
        .filter(|key| !key.ends_with("running_mean") && !key.ends_with("running_var"))
        .count();
    for model in [loaded.clone().fork(&device), loaded.to_device(&device)] {
        let model = model.train();
        let x = Tensor::<4>::random([2, 3, 48, 48], Distribution::Normal(0.0, 1.0), &device);
        let y = Tensor::<1, Int>::from_ints([0, 2], &device);
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(model.forward(x), y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        assert_eq!(grads.len(), learnable);
    }
}

/// Resuming from a checkpoint (the model's burnpack and the optimizer's state, both keyed so
/// that a freshly built model picks them up) gives exactly the step the uninterrupted run makes:
/// momentum, running statistics and weights all carry over.
#[test]
fn resuming_from_a_checkpoint_equals_the_uninterrupted_step() {
    let device = training_device();
    let inputs: Vec<Tensor<4>> = (0..3)
        .map(|_| Tensor::random([4, 3, 48, 48], Distribution::Normal(0.0, 1.0), &device))
        .collect();
    let labels = Tensor::<1, Int>::from_ints([0, 1, 2, 1], &device);
    let step = |model: MobileNetV3, optimizer: &mut burn::optim::ModuleOptimizer, x: &Tensor<4>| {
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(model.forward(x.clone()), labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optimizer.step(0.1, model, grads)
    };
    let mut optimizer = torch_sgd(0.9, 1e-4).init();
    let mut model = v3s(&device).train();
    for x in &inputs[..2] {
        model = step(model, &mut optimizer, x);
    }
    let dir = tempfile::tempdir().unwrap();
    let (model_path, optimizer_path) = (dir.path().join("model.bpk"), dir.path().join("optim.bpk"));
    model.save_burnpack(&model_path).unwrap();
    optimizer.save(&optimizer_path).unwrap();
    let uninterrupted = step(model, &mut optimizer, &inputs[2]);

    // A fresh model (other initial weights) and optimizer, from the files.
    let fresh = train_case("v3s_w025").v3_config().init(&device);
    let resumed = fresh.load_burnpack(&model_path).unwrap().train();
    let mut restored = torch_sgd(0.9, 1e-4).init().load(&optimizer_path).unwrap();
    let resumed = step(resumed, &mut restored, &inputs[2]);

    let plain = common::cpu_device();
    let probe = Tensor::<4>::random([2, 3, 48, 48], Distribution::Normal(0.0, 1.0), &plain);
    let logits = |model: &MobileNetV3| model.valid().forward(probe.clone()).into_data();
    assert_eq!(logits(&resumed), logits(&uninterrupted));
    // Without the optimizer's state (momentum lost) the step differs: the test can fail.
    let fresh = train_case("v3s_w025").v3_config().init(&device);
    let without_momentum = step(
        fresh.load_burnpack(&model_path).unwrap().train(),
        &mut torch_sgd(0.9, 1e-4).init(),
        &inputs[2],
    );
    assert_ne!(logits(&without_momentum), logits(&uninterrupted));
}

#[test]
fn batch_norm_momentum_sets_every_running_statistics_update() {
    // After one training forward, running = (1 - m) r0 + m batch. With m = 1 the running
    // mean is the batch mean; torchvision's m = 0.01 must imply the same batch mean.
    // Two separately loaded models: clones share burn's running state.
    let device = training_device();
    let base = v3s(&device).train();
    let quick = v3s(&device).with_batch_norm_momentum(1.0).train();
    let x = Tensor::<4>::random([2, 3, 48, 48], Distribution::Normal(0.0, 1.0), &device);
    let means = |model: &MobileNetV3| -> Vec<Vec<f32>> {
        let features = &model.features;
        let last = features.blocks.len() - 1;
        [
            features.stem.norm.as_ref(),
            features.blocks[last].depthwise.norm.as_ref(),
            features.blocks[last].project_norm.as_ref(),
            features.last_conv.norm.as_ref(),
        ]
        .into_iter()
        .map(|norm| {
            norm.unwrap()
                .running_mean
                .value_sync()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        })
        .collect()
    };
    let r0 = means(&base);
    let _ = base.forward(x.clone());
    let _ = quick.forward(x);
    let (slow, fast) = (means(&base), means(&quick));
    for layer in 0..r0.len() {
        for c in 0..r0[layer].len() {
            let implied = (slow[layer][c] - 0.99 * r0[layer][c]) / 0.01;
            assert!(
                (implied - fast[layer][c]).abs() <= 2e-3 * fast[layer][c].abs().max(1.0),
                "norm {layer} channel {c}: momentum 1 gives {}, momentum 0.01 implies {implied}",
                fast[layer][c]
            );
        }
        assert_ne!(fast[layer], r0[layer], "norm {layer} did not update");
    }
}

/// MobileNetV4's fine-tuning methods: an ImageNet-sized (1000-class) timm checkpoint loads into
/// a 3-class model with every other weight kept and the classifier reported; with the backbone
/// frozen, two SGD steps change the classifier and leave every other parameter, running
/// statistics included, bit-identical; the parameter groups split at the classifier.
#[test]
fn mobilenet_v4_transfer_freeze_and_parameter_groups() {
    use mobilenet_burn::{MobileNetV4, MobileNetV4Config};
    let device = training_device();
    let plain = common::cpu_device();
    // A small table (Conv-Small's first two stages and its last), 1000 classes, saved as timm
    // would save it.
    let table = MobileNetV4Config::conv_small().stages;
    let config = || {
        MobileNetV4Config::new(
            32,
            vec![table[0].clone(), table[1].clone(), table[4].clone()],
        )
        .with_head_channels(64)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("imagenet.safetensors");
    let source = config().init(&plain);
    source.save_timm(&path).expect("saved");
    let (model, report) = config()
        .with_num_classes(3)
        .init(&device)
        .load_timm_backbone(&path)
        .expect("backbone loads");
    assert_eq!(
        report
            .reinitialized
            .iter()
            .map(|m| m.key.as_str())
            .collect::<Vec<_>>(),
        ["classifier.weight", "classifier.bias"]
    );
    assert_eq!(report.reinitialized[0].found, [1000, 64]);
    let source_state = state_dict(&source);
    let loaded = state_dict(&model);
    for (key, values) in &loaded {
        if !key.starts_with("classifier.") {
            assert_eq!(
                &source_state[key], values,
                "{key} not loaded from the checkpoint"
            );
        }
    }

    let mut model = model.freeze_backbone().train();
    let mut optimizer = torch_sgd(0.9, 1e-4).init();
    for step in 0..2 {
        let x = Tensor::<4>::random([4, 3, 48, 48], Distribution::Normal(0.0, 1.0), &device);
        let y = Tensor::<1, Int>::from_ints([0, 1, 2, step], &device);
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(model.forward(x), y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(0.1, model, grads);
    }
    let after = state_dict(&model);
    for (key, values) in &loaded {
        if key.starts_with("classifier.") {
            assert_ne!(&after[key], values, "{key}: the head trains");
        } else {
            assert_eq!(&after[key], values, "{key} changed in a frozen backbone");
        }
    }

    let (backbone, head) = (MobileNetV4::backbone_params(), MobileNetV4::head_params());
    let id = burn::module::ParamId::new();
    for key in loaded.keys() {
        let in_head = key.starts_with("classifier.");
        assert_eq!(head.matches(&id, Some(key)), in_head, "{key}");
        assert_eq!(backbone.matches(&id, Some(key)), !in_head, "{key}");
    }
}
