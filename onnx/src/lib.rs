//! # hwnas-onnx
//!
//! ONNX for hwnas: the prost messages ([`proto`]), op and network models ([`build`],
//! [`network::NetworkModel`]), import of any ONNX CNN as a network ([`import`], with its node
//! [`patterns`]), the plain-Rust [`mod@reference`] evaluator every backend is checked against,
//! fp16/int8 conversion ([`precision`]), five CNN families written as torch exports them
//! ([`zoo`]), and seeded weights for structure-only files ([`weights`]).

pub mod build;
pub mod import;
pub mod network;
pub mod patterns;
pub mod precision;
pub mod proto;
pub mod reference;
pub mod weights;
pub mod zoo;

pub use build::{BuildError, INPUT_NAMES, OUTPUT_NAME, op_inputs, op_model};
pub use network::NetworkModel;
pub use proto::ModelProto;
