//! ONNX: the prost messages, Op → model building, and a plain-Rust reference evaluator.

pub mod build;
pub mod proto;
pub mod reference;

pub use build::{BuildError, INPUT_NAMES, OUTPUT_NAME, op_inputs, op_model};
pub use proto::ModelProto;
