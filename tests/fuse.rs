//! Folding batch norm into convolutions changes nothing but speed: the fused model gives the
//! unfused model's outputs, has no batch norm left, and round-trips through burn's format.

mod common;

use common::{AnyModel, cases, cpu_devices, max_abs_diff};

/// The bound: fused and unfused outputs agree within 1e-5, relative to the output scale.
const RELATIVE_TOLERANCE: f32 = 1e-5;

#[test]
fn fused_models_give_the_unfused_outputs() {
    for (backend, device) in cpu_devices() {
        for case in cases() {
            let model = case.load(&device);
            let input = case.tensor::<4>("input", &device);
            let unfused = model.forward(input.clone());
            let fused = model.fuse();
            let (diff, scale) = max_abs_diff(fused.forward(input), unfused);
            println!(
                "{backend} {}: fused vs unfused {diff:.2e} (scale {scale:.2})",
                case.name
            );
            assert!(
                diff <= RELATIVE_TOLERANCE * scale,
                "{backend} {}: {diff}",
                case.name
            );

            let keys = fused.state_dict_keys();
            assert!(
                !keys.iter().any(|key| key.ends_with("running_mean")),
                "{}: a batch norm is left",
                case.name
            );
        }
    }
}

#[test]
fn fused_model_round_trips_through_burnpack() {
    let device = common::cpu_device();
    let case = common::case("v3l_w050_reduced_dilated");
    let AnyModel::V3(fused) = case.load(&device).fuse() else {
        unreachable!()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fused.bpk");
    fused.save_burnpack(&path).expect("save");
    let reloaded = case
        .v3_config()
        .init(&device)
        .fuse()
        .load_burnpack(&path)
        .expect("load into a fused skeleton");
    let input = case.tensor::<4>("input", &device);
    reloaded
        .forward(input.clone())
        .into_data()
        .assert_eq(&fused.forward(input).into_data(), true);

    // An unfused model has batch norms the fused file lacks, and no conv biases it has.
    let error = case
        .v3_config()
        .init(&device)
        .load_burnpack(&path)
        .expect_err("unfused skeleton");
    assert!(error.to_string().contains("running_mean"), "{error}");
}
