//! The building blocks of MobileNetV2 and V3, public so that custom networks can reuse them.

pub mod activation;
pub(crate) mod batch_norm;
pub mod conv_norm_act;
pub mod inverted_residual;
pub mod squeeze_excitation;
