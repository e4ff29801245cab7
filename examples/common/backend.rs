//! The `--backend` choice shared by the examples. Devices are picked explicitly: burn's
//! `Device::default()` prefers any GPU backend compiled in, and lavapipe, Mesa's software
//! Vulkan driver, counts as one.

use burn::tensor::Device;

/// The device of backend `name` (`flex`, `ndarray` or `wgpu`), if that backend is compiled in.
pub fn device(name: &str) -> Result<Device, String> {
    let compiled: Option<Result<Device, String>> = match name {
        #[cfg(feature = "flex")]
        "flex" => Some(Ok(Device::flex())),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => Some(Ok(Device::ndarray())),
        #[cfg(feature = "wgpu")]
        "wgpu" => Some(
            Device::wgpu_options()
                .init()
                .map_err(|error| format!("no wgpu adapter: {error:?}")),
        ),
        _ => None,
    };
    compiled.unwrap_or_else(|| {
        if ["flex", "ndarray", "wgpu"].contains(&name) {
            Err(format!(
                "backend `{name}` is not compiled in; enable the cargo feature `{name}`"
            ))
        } else {
            Err(format!(
                "unknown backend `{name}`; use flex, ndarray or wgpu"
            ))
        }
    })
}
