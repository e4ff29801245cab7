//! The MobileNet models, their configs and architecture tables.

pub(crate) mod config_checks;
pub mod feature_info;
pub mod features;
pub mod mobilenet_v2;
pub mod mobilenet_v3;
pub mod mobilenet_v4;
pub mod tables;
