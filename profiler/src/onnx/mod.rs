//! ONNX: the prost messages, Op → model building, and a plain-Rust reference evaluator.

pub mod build;
pub mod import;
pub mod patterns;
pub mod precision;
pub mod proto;
pub mod reference;
pub mod zoo;

pub use build::{BuildError, INPUT_NAMES, OUTPUT_NAME, op_inputs, op_model};
pub use proto::ModelProto;
