//! MobileNetV4 against timm 1.0.31 (fixtures from `scripts/make_v4_fixtures.py`: timm's own
//! `MobileNetV3` class built as `_gen_mobilenet_v4` builds MobileNetV4, on small tables of
//! every block kind, every weight, BatchNorm statistic and layer scale perturbed): timm's
//! `.safetensors` loads by its keys, and the logits and features equal timm's within 1e-4
//! relative on every CPU backend, unfused and fused, also on inputs smaller than the output
//! stride (1x1, 5x7). The full-size models' keys, shapes, parameter counts and multiply-adds
//! equal timm's.

mod common;

use burn::tensor::{Device, Tensor};
use common::{cpu_device, cpu_devices, fixture_tensor, max_abs_diff};
use mobilenet_burn::{Activation, MobileNetV4, MobileNetV4Config, torchvision_state_dict_shapes};
use serde::Deserialize;

const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Manifest {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    stem: usize,
    stages: Vec<Vec<String>>,
    head: usize,
    num_classes: usize,
    layer_scale: Option<f64>,
    activation: String,
    params: usize,
    taps: usize,
}

fn cases() -> Vec<Case> {
    let text =
        std::fs::read_to_string(common::fixtures().join("v4/manifest.json")).expect("v4 manifest");
    serde_json::from_str::<Manifest>(&text)
        .expect("valid manifest")
        .cases
}

fn load(case: &Case, device: &Device) -> MobileNetV4 {
    let stages = case
        .stages
        .iter()
        .map(|stage| stage.iter().map(|row| common::v4::parse_row(row)).collect())
        .collect();
    MobileNetV4Config::new(case.stem, stages)
        .with_head_channels(case.head)
        .with_num_classes(case.num_classes)
        .with_layer_scale(case.layer_scale)
        .with_activation(match case.activation.as_str() {
            "relu" => Activation::ReLU,
            "gelu" => Activation::GELU,
            other => panic!("activation {other}"),
        })
        .init(device)
        .load_timm(common::fixtures().join(format!("v4/{}.safetensors", case.name)))
        .expect("timm checkpoint loads")
}

fn assert_close<const D: usize>(label: &str, actual: Tensor<D>, reference: Tensor<D>) {
    let (diff, scale) = max_abs_diff(actual, reference);
    eprintln!(
        "{label}: max |ours - timm| / max(1, max |timm|) = {:.1e}",
        diff / scale
    );
    assert!(
        diff <= TOLERANCE * scale,
        "{label}: {diff:e} over {:e}",
        TOLERANCE * scale
    );
}

/// The inputs smaller than the output stride (32) that each case was also run on
/// (`make_v4_fixtures.py`'s `SMALL_INPUTS`).
const SMALL_INPUTS: [&str; 2] = ["1x1", "5x7"];

#[test]
fn logits_and_features_equal_timm_on_every_cpu_backend_unfused_and_fused() {
    let cases = cases();
    assert_eq!(cases.len(), 3);
    for (backend, device) in cpu_devices() {
        for case in &cases {
            let file = format!("v4/{}.io.safetensors", case.name);
            let model = load(case, &device);
            assert_eq!(model.num_learnable_params(), case.params, "{}", case.name);
            let input = || fixture_tensor::<4>(&file, "input", &device);
            assert_close(
                &format!("{} on {backend}, features", case.name),
                model.forward_features(input()),
                fixture_tensor(&file, "features", &device),
            );
            assert_close(
                &format!("{} on {backend}", case.name),
                model.forward(input()),
                fixture_tensor(&file, "logits", &device),
            );
            let fused = model.clone().fuse();
            assert_close(
                &format!("{} on {backend}, fused", case.name),
                fused.forward(input()),
                fixture_tensor(&file, "logits", &device),
            );
            // Inputs smaller than the output stride: every map from stride 8 on is 1x1, keys and
            // values downsampled from one pixel.
            for size in SMALL_INPUTS {
                let tensor = |name: &str| {
                    fixture_tensor::<4>(&file, &format!("small_{size}_{name}"), &device)
                };
                let label = format!("{} on {backend}, {size}", case.name);
                let reference =
                    || fixture_tensor::<2>(&file, &format!("small_{size}_logits"), &device);
                assert_close(&label, model.forward(tensor("input")), reference());
                let logits = fused.forward(tensor("input"));
                assert_close(&format!("{label}, fused"), logits, reference());
            }
            // Every `feature_info` tap: `forward_intermediates`, and `features_only` unfused and
            // fused, against timm's `forward_intermediates`.
            let all: Vec<usize> = (0..case.taps).collect();
            assert_eq!(model.feature_info().len(), case.taps, "{}", case.name);
            let intermediates = model.forward_intermediates(input(), &all).expect("taps");
            let extractor = model.features_only(&all).expect("taps");
            let extracted = extractor.forward(input()).expect("input");
            let fused = extractor.fuse().forward(input()).expect("input");
            for (tap, ((a, b), c)) in intermediates
                .into_iter()
                .zip(extracted)
                .zip(fused)
                .enumerate()
            {
                let reference = || fixture_tensor::<4>(&file, &format!("tap_{tap}"), &device);
                let label = format!("{} on {backend}, tap {tap}", case.name);
                assert_close(&label, a, reference());
                assert_close(&format!("{label}, features_only"), b, reference());
                assert_close(&format!("{label}, features_only fused"), c, reference());
            }
        }
    }
}

#[derive(Deserialize)]
struct FullSize {
    params: usize,
    macs_224: u64,
    feature_info: Vec<(String, usize, usize)>,
    state_dict: Vec<(String, Vec<usize>)>,
}

#[test]
fn full_size_models_have_timms_keys_shapes_and_parameter_counts() {
    let text = std::fs::read_to_string(common::fixtures().join("v4/full_size.json"))
        .expect("full_size.json");
    let mut reference: std::collections::BTreeMap<String, FullSize> =
        serde_json::from_str(&text).expect("json");
    let device = cpu_device();
    for (name, config) in [
        ("mobilenetv4_conv_small", MobileNetV4Config::conv_small()),
        ("mobilenetv4_conv_medium", MobileNetV4Config::conv_medium()),
        ("mobilenetv4_conv_large", MobileNetV4Config::conv_large()),
        (
            "mobilenetv4_hybrid_medium",
            MobileNetV4Config::hybrid_medium(),
        ),
        (
            "mobilenetv4_hybrid_large",
            MobileNetV4Config::hybrid_large(),
        ),
    ] {
        let model = config.init(&device);
        let theirs = reference.remove(name).expect("model in full_size.json");
        let mut expected: Vec<(String, Vec<usize>)> = theirs
            .state_dict
            .into_iter()
            .filter(|(key, _)| !key.ends_with("num_batches_tracked"))
            .collect();
        expected.sort();
        let mut ours = torchvision_state_dict_shapes(&model);
        ours.sort();
        assert_eq!(ours, expected, "{name}: state_dict keys and shapes");
        assert_eq!(
            model.num_learnable_params(),
            theirs.params,
            "{name}: parameters"
        );
        let summary = model.summary(224, 224);
        assert_eq!(
            summary.total_params(),
            theirs.params,
            "{name}: summary parameters"
        );
        assert_eq!(
            summary.total_macs(),
            theirs.macs_224,
            "{name}: multiply-adds at 224x224"
        );
        // timm's `feature_info`: `bn1` is our layer 0, `blocks.{s}` our layer s + 1.
        let taps: Vec<(String, usize, usize)> = model
            .feature_info()
            .iter()
            .map(|tap| {
                let module = match tap.layer {
                    0 => "bn1".to_string(),
                    layer => format!("blocks.{}", layer - 1),
                };
                (module, tap.channels, tap.reduction)
            })
            .collect();
        assert_eq!(taps, theirs.feature_info, "{name}: feature_info");
        let maps = model
            .forward_intermediates(Tensor::zeros([1, 3, 64, 64], &device), &[0, 1, 2, 3, 4])
            .expect("every tap");
        for (map, tap) in maps.iter().zip(&theirs.feature_info) {
            assert_eq!(
                map.dims(),
                [1, tap.1, 64 / tap.2, 64 / tap.2],
                "{name}: {}",
                tap.0
            );
        }
    }
}

/// The full-size Conv-Small, Hybrid-Medium and Hybrid-Large on timm's random initialization, from
/// `make_v4_fixtures.py --full DIR` (not committed):
/// `MOBILENET_BURN_FULL_V4=DIR cargo test --release --test mobilenet_v4_parity -- --ignored`.
#[test]
#[ignore = "needs MOBILENET_BURN_FULL_V4=DIR from make_v4_fixtures.py --full"]
fn full_size_models_equal_timm() {
    let dir = std::path::PathBuf::from(
        std::env::var("MOBILENET_BURN_FULL_V4").expect("MOBILENET_BURN_FULL_V4=DIR"),
    );
    let device = Device::flex();
    let io = |name: &str, tensor: &str| -> Vec<f32> {
        let bytes = std::fs::read(dir.join(format!("{name}.io.safetensors"))).expect("io file");
        let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let view = tensors.tensor(tensor).expect("tensor");
        view.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    for (name, config) in [
        ("mobilenetv4_conv_small", MobileNetV4Config::conv_small()),
        (
            "mobilenetv4_hybrid_medium",
            MobileNetV4Config::hybrid_medium(),
        ),
        (
            "mobilenetv4_hybrid_large",
            MobileNetV4Config::hybrid_large(),
        ),
    ] {
        let model = config
            .with_num_classes(17)
            .init(&device)
            .load_timm(dir.join(format!("{name}.safetensors")))
            .expect("loads");
        let input = Tensor::<4>::from_data(
            burn::tensor::TensorData::new(io(name, "input"), [1, 3, 224, 192]),
            &device,
        );
        let reference = Tensor::<2>::from_data(
            burn::tensor::TensorData::new(io(name, "logits"), [1, 17]),
            &device,
        );
        // Relative to the logits' own scale, without the floor of 1 (timm's initialization
        // leaves Hybrid-Medium's logits small).
        let scale = reference.clone().abs().max().into_scalar::<f32>();
        for (label, logits) in [
            ("unfused", model.clone().forward(input.clone())),
            ("fused", model.clone().fuse().forward(input.clone())),
        ] {
            let diff = (logits - reference.clone())
                .abs()
                .max()
                .into_scalar::<f32>();
            eprintln!(
                "{name}, {label}: max |ours - timm| / max |timm| = {:.1e} (max |timm| {scale:.2e})",
                diff / scale
            );
            assert!(
                diff <= TOLERANCE * scale,
                "{name}, {label}: {diff:e} of {scale:e}"
            );
        }
    }
}

/// `save_timm` writes what `load_timm` and `MobileNetV4::from_file` read back: a full-size
/// Conv-Small with 1000 classes (a weights entry's configuration, random weights) gives
/// bit-identical logits after the round trip.
#[cfg(feature = "pretrained")]
#[test]
fn save_timm_round_trips_through_a_weights_entry() {
    use mobilenet_burn::pretrained::MobileNetV4Weights;
    let device = cpu_device();
    let weights = MobileNetV4Weights::ConvSmallE2400R224In1k;
    let model = weights.config().init(&device);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(weights.info().file_name);
    model.save_timm(&path).expect("saved");
    let again = MobileNetV4::from_file(weights, &path, &device).expect("loads as the entry");
    let x = Tensor::<4>::random(
        [1, 3, 96, 80],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let (a, b) = (model.forward(x.clone()), again.forward(x));
    assert_eq!(a.into_data(), b.into_data());
    // Another entry's architecture does not load it: the mismatch is reported.
    let error = MobileNetV4::from_file(MobileNetV4Weights::ConvMediumE500R224In1k, &path, &device)
        .expect_err("Conv-Medium is not Conv-Small");
    assert!(
        matches!(error, mobilenet_burn::Error::CheckpointMismatch { .. }),
        "{error:?}"
    );
}
