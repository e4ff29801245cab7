//! Loading is strict and never panics: mismatched, truncated and garbage files give typed
//! errors that name the problem; saving in burn's format round-trips and is atomic.

mod common;

use std::path::Path;

use burn::tensor::Device;
use common::{case, fixtures};
use mobilenet_burn::{Error, MobileNetV2Config, MobileNetV3Config};

fn device() -> Device {
    common::cpu_device()
}

#[test]
fn other_width_lists_every_shape_mismatch() {
    let case = case("v3s_w050_reduced");
    let model = case.v3_config().with_width_mult(1.0).init(&device());
    let error = model
        .load_torchvision(fixtures().join(&case.checkpoint))
        .expect_err("a width 0.5 checkpoint must not load into a width 1.0 model");
    let Error::CheckpointMismatch { report, .. } = &error else {
        panic!("expected CheckpointMismatch, got {error:?}");
    };
    assert!(
        report.missing.is_empty() && report.unused.is_empty(),
        "{report}"
    );
    // The stem alone: 16 output channels at width 1.0, 8 at width 0.5.
    let stem = report
        .shape_mismatches
        .iter()
        .find(|mismatch| mismatch.key == "features.0.0.weight")
        .expect("stem weight listed");
    assert_eq!(
        (stem.expected.as_slice(), stem.found.as_slice()),
        (&[16, 3, 3, 3][..], &[8, 3, 3, 3][..])
    );
    // Every convolution of every block differs, not just the first problem.
    assert!(report.shape_mismatches.len() > 40, "{report}");
    let message = error.to_string();
    assert!(message.contains("features.0.0.weight") && message.contains("[16, 3, 3, 3]"));
}

#[test]
fn other_architecture_lists_missing_and_unused_keys() {
    let case = case("v2_w035");
    let model = MobileNetV3Config::small()
        .with_num_classes(case.num_classes)
        .init(&device());
    let error = model
        .load_torchvision(fixtures().join(&case.checkpoint))
        .expect_err("a V2 checkpoint must not load into a V3");
    let Error::CheckpointMismatch { report, .. } = &error else {
        panic!("expected CheckpointMismatch, got {error:?}");
    };
    assert!(
        report
            .missing
            .iter()
            .any(|key| key == "classifier.3.weight"),
        "{report}"
    );
    assert!(
        report.unused.iter().any(|key| key == "classifier.1.weight"),
        "{report}"
    );
    assert!(
        !report
            .unused
            .iter()
            .any(|key| key.ends_with("num_batches_tracked"))
    );
}

/// Writes the first half of `source` to a file in `dir`.
fn truncated_copy(source: &Path, dir: &Path) -> std::path::PathBuf {
    let bytes = std::fs::read(source).expect("fixture");
    let path = dir.join(source.file_name().expect("file name"));
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("write");
    path
}

#[test]
fn truncated_checkpoints_are_errors_in_every_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["v2_w035", "v2_w025_legacy", "v3s_w125_reduced"] {
        let case = case(name);
        let path = truncated_copy(&fixtures().join(&case.checkpoint), dir.path());
        let result = match case.init(&device()) {
            common::AnyModel::V2(model) => model.load_torchvision(&path).map(|_| ()),
            common::AnyModel::V3(model) => model.load_torchvision(&path).map(|_| ()),
        };
        let error = result.expect_err("a truncated checkpoint must not load");
        assert!(
            matches!(
                error,
                Error::UnreadableCheckpoint { .. } | Error::CheckpointMismatch { .. }
            ),
            "{name}: {error:?}"
        );
        assert!(
            error.to_string().contains(&case.checkpoint),
            "{name}: {error}"
        );
    }
}

#[test]
fn garbage_empty_and_missing_files_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.pth");
    std::fs::write(
        &garbage,
        (0..4096u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .expect("write");
    let empty = dir.path().join("empty.pth");
    std::fs::write(&empty, b"").expect("write");
    let model = || {
        MobileNetV2Config::new()
            .with_width_mult(0.25)
            .init(&device())
    };

    let error = model().load_torchvision(&garbage).expect_err("garbage");
    assert!(
        matches!(error, Error::UnreadableCheckpoint { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("garbage.pth"));

    let error = model().load_torchvision(&empty).expect_err("empty");
    assert!(
        matches!(error, Error::UnreadableCheckpoint { .. }),
        "{error:?}"
    );

    let error = model()
        .load_torchvision(dir.path().join("absent.pth"))
        .expect_err("missing");
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("absent.pth"));
}

#[test]
fn burnpack_round_trip_is_exact_and_leaves_no_temporary() {
    let device = device();
    let case = case("v3l_w050_reduced_dilated");
    let common::AnyModel::V3(model) = case.load(&device) else {
        unreachable!()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.bpk");
    model.save_burnpack(&path).expect("save");
    let entries: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
    assert_eq!(entries.len(), 1, "only the saved file remains");

    let reloaded = case
        .v3_config()
        .init(&device)
        .load_burnpack(&path)
        .expect("load");
    let input = case.tensor::<4>("input", &device);
    let expected = model.forward(input.clone()).into_data();
    reloaded
        .forward(input)
        .into_data()
        .assert_eq(&expected, true);

    // The same file refuses a model of another width, naming the mismatch.
    let error = case
        .v3_config()
        .with_width_mult(0.75)
        .init(&device)
        .load_burnpack(&path)
        .expect_err("other width");
    assert!(
        matches!(error, Error::CheckpointMismatch { .. }),
        "{error:?}"
    );
}

#[test]
fn failed_save_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing-dir").join("model.bpk");
    let model = MobileNetV3Config::small()
        .with_width_mult(0.25)
        .init(&device());
    let error = model.save_burnpack(&path).expect_err("no such directory");
    assert!(matches!(error, Error::Save { .. }), "{error:?}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}
