//! Checkpoints as people save them (`scripts/make_wrapped_checkpoints.py`, all holding the
//! weights of `training/v3s_w025.pth`): torchvision's reference-script dictionary, Lightning's
//! `state_dict` with its `model.` prefix, `nn.DataParallel`'s `module.`, `torch.compile`'s
//! `_orig_mod.`, and half-precision state dicts, all load; a checkpoint of another network says
//! what it holds.

mod common;

use std::path::PathBuf;

use common::training::{state_dict, train_case};
use mobilenet_burn::{Error, MobileNetV3};

fn wrapped(name: &str) -> PathBuf {
    common::fixtures().join("wrapped").join(name)
}

fn load(path: &PathBuf) -> Result<MobileNetV3, Error> {
    let case = train_case("v3s_w025");
    case.v3_config()
        .init(&common::cpu_device())
        .load_torchvision(path)
}

fn reference() -> std::collections::BTreeMap<String, Vec<f32>> {
    state_dict(&load(&train_case("v3s_w025").checkpoint_path()).expect("the bare checkpoint"))
}

#[test]
fn wrapped_and_prefixed_state_dicts_load_exactly() {
    let expected = reference();
    for name in [
        "reference.pth",
        "lightning.pth",
        "dataparallel.pth",
        "dataparallel.safetensors",
        "compiled.safetensors",
    ] {
        let model = load(&wrapped(name)).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(state_dict(&model), expected, "{name}");
    }
}

#[test]
fn half_precision_checkpoints_load_converted() {
    let expected = reference();
    // bfloat16 has 8 significant bits, float16 11: unit roundoff 2^-8 and 2^-11.
    for (name, bound) in [
        ("bfloat16.pth", 2f32.powi(-8)),
        ("bfloat16.safetensors", 2f32.powi(-8)),
        ("float16.safetensors", 2f32.powi(-11)),
    ] {
        let model = load(&wrapped(name)).unwrap_or_else(|error| panic!("{name}: {error}"));
        // burn loads a checkpoint's dtype as is; the model must compute in float32 (before
        // the cast, flex panicked here on mixed dtypes).
        let stem = model.features.stem.conv.weight.val().dtype();
        assert_eq!(stem, burn::tensor::DType::F32, "{name}");
        let x = burn::tensor::Tensor::<4>::ones([1, 3, 32, 32], &common::cpu_device());
        assert_eq!(model.forward(x).dims(), [1, 3], "{name}");
        let found = state_dict(&model);
        assert_eq!(found.len(), expected.len());
        let mut rounded = 0;
        for (key, values) in &expected {
            for (a, b) in found[key].iter().zip(values) {
                // float16's subnormals below 2^-14 lose relative precision: an absolute floor.
                assert!(
                    (a - b).abs() <= bound * b.abs() + 6e-8,
                    "{name} {key}: {a} vs {b}"
                );
                rounded += usize::from(a != b);
            }
        }
        assert!(
            rounded > 0,
            "{name}: nothing was rounded, so nothing was converted"
        );
    }
}

#[test]
fn a_wrapped_checkpoint_of_another_class_count_transfers() {
    let case = train_case("v3s_w025");
    let model = case
        .v3_config()
        .with_num_classes(5)
        .init(&common::cpu_device());
    let (model, report) = model
        .load_torchvision_backbone(wrapped("reference.pth"))
        .expect("the backbone loads from the wrapped checkpoint");
    assert_eq!(model.num_classes(), 5);
    assert_eq!(report.reinitialized.len(), 2, "{report:?}");
}

#[test]
fn another_networks_checkpoint_says_what_it_holds() {
    let error = load(&wrapped("unrelated.pth")).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::CheckpointMismatch { .. }), "{text}");
    assert!(
        text.contains(r#"top-level keys are ["decoder", "encoder"]"#),
        "{text}"
    );
}
