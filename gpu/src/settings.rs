//! How a device profile chooses and times a GPU (its `[wgpu]` table).

use serde::{Deserialize, Serialize};

/// How a GPU is chosen and timed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuSettings {
    /// The graphics API: `vulkan`, `metal`, `dx12`, `gl`, or `any`.
    pub backend: String,
    /// A case-insensitive part of the adapter's name; empty takes the best adapter (discrete
    /// before integrated before software).
    pub adapter: String,
    pub timing: GpuTiming,
    /// A run of an op that has not finished after this long is stopped and reported failed.
    pub timeout_ms: f64,
    /// Direct convolutions with fewer output tiles than this split their input channels over
    /// more invocations. Unset: [`DEFAULT_MIN_INVOCATIONS`] on a GPU, no split on a software
    /// rasteriser (lavapipe's two threads ran split kernels 1.5-2x slower).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_invocations: Option<u32>,
}

/// Invocations a kernel aims to run at least on a GPU: enough to occupy a data-centre one (132
/// multiprocessors on an H200).
pub const DEFAULT_MIN_INVOCATIONS: u32 = 8192;

impl Default for GpuSettings {
    fn default() -> Self {
        GpuSettings {
            backend: "any".into(),
            adapter: String::new(),
            timing: GpuTiming::Auto,
            timeout_ms: 10_000.0,
            min_invocations: None,
        }
    }
}

/// Where GPU times come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuTiming {
    /// Timestamp queries when the adapter has them, else the wall clock.
    Auto,
    /// Timestamp queries around the op's kernels; an adapter without them is an error.
    Timestamp,
    /// The wall clock around submit and wait (includes the submission overhead).
    Wall,
}

/// The graphics APIs a profile may name.
pub const GPU_BACKENDS: [&str; 5] = ["vulkan", "metal", "dx12", "gl", "any"];
