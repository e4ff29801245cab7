//! Shared by the fuzz targets: the loaders read paths, so each input goes to a file first.

use std::path::PathBuf;

/// A file of this process holding `data`.
pub fn write_input(data: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("mobilenet-burn-fuzz-{}.bin", std::process::id()));
    std::fs::write(&path, data).expect("the temporary directory is writable");
    path
}
