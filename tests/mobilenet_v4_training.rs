//! One training step of a small MobileNetV4 Hybrid against PyTorch (fixture from
//! `scripts/make_v4_training_fixture.py`: timm's FusedIB, UIB and mobile MQA blocks with layer
//! scales, perturbed; references computed in float64): training-mode logits (BatchNorm on batch
//! statistics), the loss, every parameter's gradient (the layer scales' included), every
//! parameter and running statistic after one SGD step, and the eval logits after it, on every
//! CPU backend's autodiff, within 1e-4 relative (or twice PyTorch's own float32 error, where
//! that is larger).

mod common;

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::Tensor;
use common::cpu_devices;
use common::training::{Record, gradients, state_dict};
use mobilenet_burn::MobileNetV4Config;
use serde::Deserialize;

const RELATIVE_TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Meta {
    stem: usize,
    stages: Vec<Vec<String>>,
    head: usize,
    num_classes: usize,
    layer_scale: Option<f64>,
    lr: f64,
    torch_float32_error: BTreeMap<String, f32>,
}

/// `max |a - b|` and `max |b|`.
fn error(actual: &[f32], reference: &[f32]) -> (f32, f32) {
    assert_eq!(actual.len(), reference.len(), "lengths differ");
    let diff = actual
        .iter()
        .zip(reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    (diff, reference.iter().fold(0f32, |m, b| m.max(b.abs())))
}

/// timm's `layer_scale.gamma` comes out of the collectors (which name BatchNorm's gamma
/// `weight`) as `layer_scale.weight`.
fn timm_key(key: &str) -> String {
    match key.strip_suffix("layer_scale.weight") {
        Some(prefix) => format!("{prefix}layer_scale.gamma"),
        None => key.to_string(),
    }
}

fn to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32")
}

#[test]
fn one_training_step_matches_pytorch() {
    let dir = common::fixtures().join("v4");
    let meta: Meta = serde_json::from_str(
        &std::fs::read_to_string(dir.join("v4_train.json")).expect("v4_train.json"),
    )
    .expect("json");
    let record = Record::read(dir.join("v4_train.record.safetensors"));
    let stages: Vec<Vec<_>> = meta
        .stages
        .iter()
        .map(|stage| stage.iter().map(|row| common::v4::parse_row(row)).collect())
        .collect();
    let bound = |name: &str, scale: f32| {
        let torch = meta.torch_float32_error.get(name).copied().unwrap_or(0.0);
        (RELATIVE_TOLERANCE * scale).max(2.0 * torch)
    };
    let check = |what: &str, name: &str, actual: &[f32], scale: Option<f32>| {
        let (reference, _) = record.get(name);
        let (diff, own_scale) = error(actual, &reference);
        let scale = scale.unwrap_or(own_scale);
        assert!(
            diff <= bound(name, scale),
            "{what} {name}: {diff:e} at scale {scale:e}"
        );
        diff / scale.max(f32::MIN_POSITIVE)
    };
    for (backend, device) in cpu_devices() {
        let autodiff = device.clone().autodiff();
        let model = MobileNetV4Config::new(meta.stem, stages.clone())
            .with_head_channels(meta.head)
            .with_num_classes(meta.num_classes)
            .with_layer_scale(meta.layer_scale)
            .init(&autodiff)
            .load_timm(dir.join("v4_train.safetensors"))
            .expect("checkpoint loads")
            .train();
        let logits = model.forward(record.tensor("input", &autodiff));
        check(backend, "train_logits", &to_vec(logits.clone()), None);
        let loss = CrossEntropyLossConfig::new()
            .init(&autodiff)
            .forward(logits, record.labels("labels", &autodiff));
        check(backend, "loss", &to_vec(loss.clone()), None);

        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let ours: BTreeMap<String, Vec<f32>> = gradients(&model, &grads)
            .into_iter()
            .map(|(key, value)| (timm_key(&key), value))
            .collect();
        // A gradient's scale is its layer's (a zero-in-exact-arithmetic bias gradient is
        // rounding noise at that scale).
        let layer = |key: &str| {
            key.rsplit_once('.')
                .map_or("", |(layer, _)| layer)
                .to_string()
        };
        let mut layer_scale: BTreeMap<String, f32> = BTreeMap::new();
        for key in ours.keys() {
            let (reference, _) = record.get(&format!("grad.{key}"));
            let scale = reference.iter().fold(0f32, |m, b| m.max(b.abs()));
            let entry = layer_scale.entry(layer(key)).or_default();
            *entry = entry.max(scale);
        }
        let mut worst_grad = 0f32;
        for (key, values) in &ours {
            let relative = check(
                backend,
                &format!("grad.{key}"),
                values,
                Some(layer_scale[&layer(key)]),
            );
            worst_grad = worst_grad.max(relative);
        }
        // Every parameter PyTorch has a gradient for has one here (the layer scales included).
        let theirs: Vec<String> = record.group("grad").into_keys().collect();
        let keys: Vec<String> = ours.keys().cloned().collect();
        assert_eq!(keys, theirs, "{backend}: gradient keys");

        let model = SgdConfig::new().init().step(meta.lr, model, grads);
        let mut worst_sgd = 0f32;
        for (key, values) in state_dict(&model) {
            let relative = check(backend, &format!("sgd.{}", timm_key(&key)), &values, None);
            worst_sgd = worst_sgd.max(relative);
        }
        let eval_logits = model.valid().forward(record.tensor("eval_input", &device));
        check(backend, "eval_logits", &to_vec(eval_logits), None);
        println!(
            "{backend}: {} gradients, worst relative {worst_grad:.1e}; after SGD {worst_sgd:.1e}",
            ours.len()
        );
    }
}
