//! # hwnas-gpu
//!
//! GPUs through wgpu: hwnas's own WGSL kernels for every op of the vocabulary.
//!
//! - [`plan::Plan`] lowers an ONNX model (one op's, or a whole network's, the same models the
//!   ONNX Runtime backend runs) into kernel launches, fusing activations, batch norms and
//!   residual adds the way GPU runtimes do.
//! - [`wgsl::kernel`] writes a tiled WGSL compute kernel for each launch.
//! - [`runtime::GpuRuntime`] (feature `runtime`) opens an adapter, compiles programs once per shape
//!   and times them with GPU timestamp queries or the wall clock; it is a
//!   [`hwnas_core::backend::Backend`].
//!
//! Every kernel is checked against ONNX Runtime's CPU output on the same inputs and weights
//! (`profiler/tests/gpu_conformance.rs`). [`settings::GpuSettings`] is the `[wgpu]` table of a
//! device profile.

pub mod plan;

#[cfg(feature = "runtime")]
pub mod runtime;
pub mod settings;
pub mod wgsl;

pub use settings::{GpuSettings, GpuTiming};
