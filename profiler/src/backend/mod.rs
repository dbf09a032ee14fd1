//! Backends: something that turns an [`Op`] into a prepared [`Kernel`] on a device.
//!
//! - [`ort`] (feature `ort`): ONNX Runtime through an execution provider.
//! - [`mock`]: a deterministic simulated device, for fast tests and the `--mock` flag.

use crate::measure::Kernel;
use crate::op::Op;

pub mod mock;
#[cfg(feature = "ort")]
pub mod ort;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    Unavailable(String),
    #[error("cannot prepare `{key}`: {message}")]
    Prepare { key: String, message: String },
}

/// A device that can run ops.
pub trait Backend {
    /// Where the timings come from, recorded in every table (device, library, versions...).
    fn provenance(&self) -> Vec<(String, String)>;

    /// Build everything needed to run `op` (session, weights, buffers) once.
    fn prepare(&mut self, op: &Op) -> Result<Box<dyn Kernel>, BackendError>;

    /// True for a simulated device (no hardware behind its times).
    fn simulated(&self) -> bool {
        false
    }
}
