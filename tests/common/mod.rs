//! Fixture loading and comparison shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

#[cfg(feature = "pretrained")]
pub mod replay;
pub mod training;
pub mod v4;

use burn::tensor::{Device, Tensor, TensorData};
use mobilenet_burn::{MobileNetV2, MobileNetV2Config, MobileNetV3, MobileNetV3Config};
use serde::Deserialize;

/// The fixtures directory, made by `scripts/make_fixtures.py`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// One case of `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub name: String,
    pub model: String,
    pub width_mult: f64,
    pub num_classes: usize,
    pub reduced_tail: bool,
    pub dilated: bool,
    pub checkpoint: String,
    pub format: String,
    pub input_shape: [usize; 4],
    pub params: usize,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    cases: Vec<Case>,
}

pub fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest.json");
    serde_json::from_str::<Manifest>(&text)
        .expect("valid manifest")
        .cases
}

pub fn case(name: &str) -> Case {
    cases()
        .into_iter()
        .find(|case| case.name == name)
        .unwrap_or_else(|| panic!("no fixture case {name}"))
}

/// A model of either family, so one test loop covers both.
pub enum AnyModel {
    V2(MobileNetV2),
    V3(MobileNetV3),
}

impl AnyModel {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            AnyModel::V2(model) => model.forward(x),
            AnyModel::V3(model) => model.forward(x),
        }
    }

    /// The trunk: stem, inverted residual blocks, last convolution.
    #[allow(dead_code)]
    pub fn features(&self) -> &mobilenet_burn::Features {
        match self {
            AnyModel::V2(model) => &model.features,
            AnyModel::V3(model) => &model.features,
        }
    }

    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            AnyModel::V2(model) => model.forward_features(x),
            AnyModel::V3(model) => model.forward_features(x),
        }
    }

    pub fn fuse(self) -> Self {
        match self {
            AnyModel::V2(model) => AnyModel::V2(model.fuse()),
            AnyModel::V3(model) => AnyModel::V3(model.fuse()),
        }
    }

    pub fn state_dict_keys(&self) -> Vec<String> {
        let shapes = match self {
            AnyModel::V2(model) => mobilenet_burn::torchvision_state_dict_shapes(model),
            AnyModel::V3(model) => mobilenet_burn::torchvision_state_dict_shapes(model),
        };
        shapes.into_iter().map(|(key, _)| key).collect()
    }

    pub fn num_learnable_params(&self) -> usize {
        match self {
            AnyModel::V2(model) => model.num_learnable_params(),
            AnyModel::V3(model) => model.num_learnable_params(),
        }
    }
}

impl Case {
    pub fn v3_config(&self) -> MobileNetV3Config {
        let config = match self.model.as_str() {
            "mobilenet_v3_large" => MobileNetV3Config::large(),
            "mobilenet_v3_small" => MobileNetV3Config::small(),
            other => panic!("{other} is not a MobileNetV3"),
        };
        config
            .with_width_mult(self.width_mult)
            .with_num_classes(self.num_classes)
            .with_reduced_tail(self.reduced_tail)
            .with_dilated(self.dilated)
    }

    /// The model with random weights, as configured by the case.
    pub fn init(&self, device: &Device) -> AnyModel {
        if self.model == "mobilenet_v2" {
            AnyModel::V2(
                MobileNetV2Config::new()
                    .with_width_mult(self.width_mult)
                    .with_num_classes(self.num_classes)
                    .init(device),
            )
        } else {
            AnyModel::V3(self.v3_config().init(device))
        }
    }

    /// The model with the case's torchvision checkpoint loaded.
    pub fn load(&self, device: &Device) -> AnyModel {
        let path = fixtures().join(&self.checkpoint);
        match self.init(device) {
            AnyModel::V2(model) => AnyModel::V2(model.load_torchvision(&path).expect("load")),
            AnyModel::V3(model) => AnyModel::V3(model.load_torchvision(&path).expect("load")),
        }
    }

    /// The named tensor of `<case>.io.safetensors`: `input`, `features` or `logits`.
    pub fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Tensor<D> {
        fixture_tensor(&format!("{}.io.safetensors", self.name), name, device)
    }
}

/// The f32 tensor `name` of the safetensors fixture `file`.
pub fn fixture_tensor<const D: usize>(file: &str, name: &str, device: &Device) -> Tensor<D> {
    let bytes = std::fs::read(fixtures().join(file)).expect("fixture file");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let view = tensors.tensor(name).expect("tensor in fixture");
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Tensor::from_data(TensorData::new(values, view.shape().to_vec()), device)
}

/// Largest absolute difference, and the tolerance `relative * max(1, max |reference|)`.
pub fn max_abs_diff<const D: usize>(actual: Tensor<D>, reference: Tensor<D>) -> (f32, f32) {
    assert_eq!(actual.dims(), reference.dims(), "shapes differ");
    let scale = reference.clone().abs().max().into_scalar::<f32>().max(1.0);
    let diff = (actual - reference).abs().max().into_scalar::<f32>();
    (diff, scale)
}

/// The CPU devices compiled in, by name. (Pushes, not `vec![]`: each is behind its feature.)
#[allow(clippy::vec_init_then_push)]
pub fn cpu_devices() -> Vec<(&'static str, Device)> {
    let mut devices = Vec::new();
    #[cfg(feature = "flex")]
    devices.push(("flex", Device::flex()));
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    devices.push(("ndarray", Device::ndarray()));
    devices
}

/// The first CPU device compiled in (flex, else ndarray), for tests of behaviour that does not
/// depend on the backend.
pub fn cpu_device() -> Device {
    cpu_devices()
        .into_iter()
        .next()
        .map(|(_, device)| device)
        .expect("the tests need the flex or ndarray feature")
}
