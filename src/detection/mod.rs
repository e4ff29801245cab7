//! Object detection with a MobileNetV3 backbone: torchvision's SSDLite320.

mod anchors;
mod postprocess;
mod ssdlite;
mod summary;
mod transform;

pub use anchors::DefaultBoxes;
pub use postprocess::{Detections, PostprocessOptions};
pub use ssdlite::{
    PredictionBlock, SSDLITE_NORM, SsdLite, SsdLiteBackbone, SsdLiteBackboneConfig, SsdLiteConfig,
    SsdLiteHeadOutput,
};
