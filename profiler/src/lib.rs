//! # hwnas-profiler
//!
//! The foundation of hwnas: the operator vocabulary and how each operator is timed on a device.
//!
//! - [`op::Op`] names every operator a search space can produce, with its full shape, a canonical
//!   key, FLOPs, parameters and bytes moved.
//! - [`onnx::op_model`] turns an op into a small ONNX model, [`onnx::precision`] converts it
//!   to fp16 or int8 QDQ ([`op::Precision`]); [`onnx::reference`] evaluates such models in
//!   plain Rust, the reference every backend is checked against. [`onnx::import`]
//!   reads any ONNX CNN and maps it to ops ([`onnx::zoo`] writes five common ones).
//! - A [`backend::Backend`] (ONNX Runtime in [`backend::ort`], behind the `ort` feature; GPUs
//!   through wgpu in [`gpu::runtime`], behind the `gpu` feature; a simulated device in
//!   [`backend::mock`]) prepares an op into a [`measure::Kernel`]. [`gpu`] lowers ONNX models
//!   to hwnas's own WGSL kernels.
//! - [`measure::measure_group`] is the one measurement loop: warm-up, interleaved rounds,
//!   adaptive repetition until the median's confidence interval is tight, [`stats::Stats`].
//! - [`network::Network`] wires ops into a whole network and builds it as one ONNX model, for
//!   measuring networks end to end.
//! - [`profile::profile_ops`] runs it over a list of ops (in this process, or in a
//!   [`worker::Worker`] process that is killed when a kernel hangs) and appends [`table::Row`]s to a
//!   [`table::LatencyTable`] CSV, whose header records where the numbers came from
//!   ([`device::DeviceProfile`], [`host`]).
//!
//! Without the `ort` feature the crate is the vocabulary, the ONNX builder and the tables only,
//! which is all the predictor and the search need.

pub mod backend;
pub mod device;
pub mod files;
pub mod fuzzing;
pub mod gpu;
pub mod host;
pub mod measure;
pub mod network;
pub mod onnx;
pub mod op;
pub mod profile;
pub mod rng;
pub mod stats;
pub mod table;
pub mod worker;

pub use op::{Activation, Op, Precision, Tensor};
