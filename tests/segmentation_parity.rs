//! LR-ASPP and DeepLabV3 against torchvision 0.29.2 (fixtures from
//! `scripts/make_segmentation_fixtures.py`: random, perturbed weights and BatchNorm statistics on
//! dilated MobileNetV3-Large at width 0.35 and V3-Small at 0.5; DeepLabV3 with and without the
//! auxiliary head): torchvision's checkpoints load by its keys, and `model(x)["out"]` (and
//! `["aux"]`) equal torchvision's within 1e-4 relative on every CPU backend, unfused and fused,
//! for a random non-square input, a photo and inputs smaller than the output stride (1x1, 5x7);
//! the argmax masks equal. The full-size models' keys, shapes and parameter counts equal
//! torchvision's.

mod common;

use burn::tensor::{Device, Tensor};
use common::{cpu_device, cpu_devices, fixture_tensor, max_abs_diff};
use mobilenet_burn::MobileNetV3Config;
use mobilenet_burn::segmentation::{DeepLabV3, DeepLabV3Config, LrAspp, LrAsppConfig};
use mobilenet_burn::torchvision_state_dict_shapes;
use serde::Deserialize;

/// Relative tolerance on the logits (of `max(1, max |reference|)`).
const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Manifest {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    head: String,
    backbone: String,
    width_mult: f64,
    num_classes: usize,
    aux: bool,
    aspp_channels: Option<usize>,
    params: usize,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(common::fixtures().join("segmentation/manifest.json"))
        .expect("segmentation manifest");
    serde_json::from_str::<Manifest>(&text)
        .expect("valid manifest")
        .cases
}

/// The case's model, either head, as one type for the tests.
#[derive(Clone)]
enum Model {
    LrAspp(Box<LrAspp>),
    DeepLabV3(Box<DeepLabV3>),
}

impl Model {
    fn new(case: &Case, device: &Device) -> Self {
        let backbone = match case.backbone.as_str() {
            "mobilenet_v3_large" => MobileNetV3Config::large(),
            _ => MobileNetV3Config::small(),
        }
        .with_width_mult(case.width_mult)
        .with_dilated(true);
        if case.head == "lraspp" {
            Self::LrAspp(Box::new(
                LrAsppConfig::new(backbone, case.num_classes).init(device),
            ))
        } else {
            let config = DeepLabV3Config::new(backbone, case.num_classes)
                .with_aux_classifier(case.aux)
                .with_aspp_channels(case.aspp_channels.unwrap_or(256));
            Self::DeepLabV3(Box::new(config.init(device)))
        }
    }

    fn load(self, case: &Case) -> Self {
        let path = common::fixtures().join(format!("segmentation/{}.pth", case.name));
        match self {
            Self::LrAspp(model) => {
                Self::LrAspp(Box::new(model.load_torchvision(&path).expect("loads")))
            }
            Self::DeepLabV3(model) => {
                Self::DeepLabV3(Box::new(model.load_torchvision(&path).expect("loads")))
            }
        }
    }

    fn fuse(self) -> Self {
        match self {
            Self::LrAspp(model) => Self::LrAspp(Box::new(model.fuse())),
            Self::DeepLabV3(model) => Self::DeepLabV3(Box::new(model.fuse())),
        }
    }

    /// `(out, aux)`.
    fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Option<Tensor<4>>) {
        match self {
            Self::LrAspp(model) => (model.forward(x), None),
            Self::DeepLabV3(model) => {
                let out = model.forward(x.clone());
                let (again, aux) = model.forward_aux(x);
                let same = (out.clone() - again).abs().max().into_scalar::<f32>();
                assert_eq!(same, 0.0, "forward and forward_aux disagree on `out`");
                (out, aux)
            }
        }
    }

    fn num_learnable_params(&self) -> usize {
        match self {
            Self::LrAspp(model) => model.num_learnable_params(),
            Self::DeepLabV3(model) => model.num_learnable_params(),
        }
    }
}

fn assert_close(label: &str, actual: Tensor<4>, reference: Tensor<4>) {
    let (diff, scale) = max_abs_diff(actual, reference);
    eprintln!(
        "{label}: max |ours - torchvision| / max(1, max |torchvision|) = {:.1e}",
        diff / scale
    );
    assert!(
        diff <= TOLERANCE * scale,
        "{label}: max |ours - torchvision| = {diff:e}, over {:e}",
        TOLERANCE * scale
    );
}

/// The argmax masks agree on every pixel whose reference top-2 gap is above the tolerance (a
/// closer call may go either way within float rounding).
fn assert_same_mask(label: &str, actual: Tensor<4>, reference: Tensor<4>) {
    let [batch, classes, height, width] = reference.dims();
    let ours: Vec<i64> = actual
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec()
        .unwrap();
    let theirs: Vec<f32> = reference.into_data().convert::<f32>().try_to_vec().unwrap();
    let plane = height * width;
    let mut decided = 0;
    for b in 0..batch {
        for p in 0..plane {
            let mut values: Vec<(f32, usize)> = (0..classes)
                .map(|c| (theirs[(b * classes + c) * plane + p], c))
                .collect();
            values.sort_by(|x, y| y.0.total_cmp(&x.0));
            if classes > 1 && values[0].0 - values[1].0 <= TOLERANCE * values[0].0.abs().max(1.0) {
                continue;
            }
            decided += 1;
            assert_eq!(
                ours[b * plane + p] as usize,
                values[0].1,
                "{label}: pixel {p} of image {b} has another class"
            );
        }
    }
    assert!(
        decided > batch * plane * 9 / 10,
        "{label}: too many near-ties to compare"
    );
}

/// The inputs smaller than the output stride that each case was also run on
/// (`make_segmentation_fixtures.py`'s `SMALL_INPUTS`).
const SMALL_INPUTS: [&str; 2] = ["1x1", "5x7"];

#[test]
fn outputs_equal_torchvision_on_every_cpu_backend_unfused_and_fused() {
    let cases = cases();
    assert_eq!(cases.len(), 4);
    for (backend, device) in cpu_devices() {
        for case in &cases {
            let file = format!("segmentation/{}.io.safetensors", case.name);
            let loaded = Model::new(case, &device).load(case);
            assert_eq!(loaded.num_learnable_params(), case.params, "{}", case.name);
            for fused in [false, true] {
                let model = if fused {
                    loaded.clone().fuse()
                } else {
                    loaded.clone()
                };
                let label = format!(
                    "{} on {backend}{}",
                    case.name,
                    if fused { ", fused" } else { "" }
                );
                let (out, aux) = model.forward(fixture_tensor(&file, "input", &device));
                assert_close(
                    &format!("{label}, out"),
                    out,
                    fixture_tensor(&file, "out", &device),
                );
                assert_eq!(aux.is_some(), case.aux, "{label}: aux head");
                if let Some(aux) = aux {
                    assert_close(
                        &format!("{label}, aux"),
                        aux,
                        fixture_tensor(&file, "aux", &device),
                    );
                }
                let (out, _) = model.forward(fixture_tensor(&file, "photo_input", &device));
                let reference: Tensor<4> = fixture_tensor(&file, "photo_out", &device);
                assert_close(&format!("{label}, photo"), out.clone(), reference.clone());
                assert_same_mask(&format!("{label}, photo mask"), out, reference);
                // Inputs smaller than the output stride: the heads' maps (strides 8 and 16) are
                // 1x1, dilated taps read padding alone, resizes go from one pixel.
                for size in SMALL_INPUTS {
                    let tensor = |name: &str| {
                        fixture_tensor(&file, &format!("small_{size}_{name}"), &device)
                    };
                    let (out, aux) = model.forward(tensor("input"));
                    assert_close(&format!("{label}, {size}"), out, tensor("out"));
                    if let Some(aux) = aux {
                        assert_close(&format!("{label}, {size}, aux"), aux, tensor("aux"));
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct FullSize {
    params: usize,
    state_dict: Vec<(String, Vec<usize>)>,
}

fn full_size(name: &str) -> FullSize {
    let text = std::fs::read_to_string(common::fixtures().join("segmentation/full_size.json"))
        .expect("full_size.json");
    let mut all: std::collections::BTreeMap<String, FullSize> =
        serde_json::from_str(&text).expect("valid full_size.json");
    all.remove(name).expect("model in full_size.json")
}

#[test]
fn full_size_models_have_torchvisions_keys_shapes_and_parameter_counts() {
    let device = cpu_device();
    let lraspp = LrAsppConfig::mobilenet_v3_large(21).init(&device);
    let deeplab = DeepLabV3Config::mobilenet_v3_large(21).init(&device);
    let deeplab_aux = DeepLabV3Config::mobilenet_v3_large(21)
        .with_aux_classifier(true)
        .init(&device);
    let ours = [
        (
            "lraspp_mobilenet_v3_large",
            torchvision_state_dict_shapes(&lraspp),
            lraspp.num_learnable_params(),
        ),
        (
            "deeplabv3_mobilenet_v3_large",
            torchvision_state_dict_shapes(&deeplab),
            deeplab.num_learnable_params(),
        ),
        (
            "deeplabv3_mobilenet_v3_large_aux",
            torchvision_state_dict_shapes(&deeplab_aux),
            deeplab_aux.num_learnable_params(),
        ),
    ];
    for (name, shapes, params) in ours {
        let reference = full_size(name);
        let mut expected: Vec<(String, Vec<usize>)> = reference
            .state_dict
            .into_iter()
            .filter(|(key, _)| !key.ends_with("num_batches_tracked"))
            .collect();
        expected.sort();
        let mut shapes = shapes;
        shapes.sort();
        assert_eq!(shapes, expected, "{name}: state_dict keys and shapes");
        assert_eq!(params, reference.params, "{name}: parameters");
    }
}

/// The full-size models on random weights, from `make_segmentation_fixtures.py --full DIR`
/// (not committed: 13 and 44 MB): `MOBILENET_BURN_FULL_SEGMENTATION=DIR cargo test --release
/// --test segmentation_parity -- --ignored`.
#[test]
#[ignore = "needs MOBILENET_BURN_FULL_SEGMENTATION=DIR from make_segmentation_fixtures.py --full"]
fn full_size_models_equal_torchvision() {
    let dir = std::path::PathBuf::from(
        std::env::var("MOBILENET_BURN_FULL_SEGMENTATION")
            .expect("MOBILENET_BURN_FULL_SEGMENTATION=DIR"),
    );
    let device = Device::flex();
    let io = |name: &str, tensor: &str| -> Tensor<4> {
        let bytes = std::fs::read(dir.join(format!("{name}.io.safetensors"))).expect("io file");
        let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let view = tensors.tensor(tensor).expect("tensor");
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Tensor::from_data(
            burn::tensor::TensorData::new(values, view.shape().to_vec()),
            &device,
        )
    };
    let name = "lraspp_mobilenet_v3_large";
    let model = LrAsppConfig::mobilenet_v3_large(21)
        .init(&device)
        .load_torchvision(dir.join(format!("{name}.pth")))
        .expect("loads");
    assert_close(name, model.forward(io(name, "input")), io(name, "out"));
    let name = "deeplabv3_mobilenet_v3_large";
    let model = DeepLabV3Config::mobilenet_v3_large(21)
        .init(&device)
        .load_torchvision(dir.join(format!("{name}.pth")))
        .expect("loads");
    assert_close(name, model.forward(io(name, "input")), io(name, "out"));
}
