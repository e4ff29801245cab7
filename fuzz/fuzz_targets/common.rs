//! Shared by the fuzz targets: the loaders read paths, so each input goes to a file first.

use std::path::PathBuf;
use std::sync::LazyLock;

use burn::tensor::Device;
use mobilenet_burn::{MobileNetV3, MobileNetV3Config};

/// MobileNetV3-Small, width 0.25, 3 classes: the shapes of `tests/fixtures/training/v3s_w025`,
/// the seeds' model.
#[allow(dead_code)] // `load_image` shares this module without a model.
pub static V3S_W025: LazyLock<MobileNetV3> = LazyLock::new(|| {
    MobileNetV3Config::small()
        .with_width_mult(0.25)
        .with_num_classes(3)
        .init(&Device::flex())
});

/// A file of this process holding `data`.
pub fn write_input(data: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("mobilenet-burn-fuzz-{}.bin", std::process::id()));
    std::fs::write(&path, data).expect("the temporary directory is writable");
    path
}
