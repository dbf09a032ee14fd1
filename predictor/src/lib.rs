//! # hwnas-predictor
//!
//! Whole-network latency from per-op latencies.
//!
//! - [`lut::LutPredictor`] indexes a [`LatencyTable`](hwnas_profiler::table::LatencyTable) by op
//!   key and composes a network as the sum of its ops' measured latencies.
//! - [`features`] turns ops into numbers; [`gbdt::Gbdt`] (on linfa's traits) and the linfa
//!   linear model generalise the table to shapes it lacks ([`regress`] compares them).
//! - [`model::LatencyModel`] is what `hwnas fit` writes: the table, the op regressor and a
//!   [`calibrate::Calibration`] fitted on networks measured end to end, as versioned JSON.
//! - [`metrics`] scores predictions against measurements (±5/±10%, RMSPE, Kendall tau).

pub mod calibrate;
pub mod features;
pub mod gbdt;
pub mod lut;
pub mod metrics;
pub mod model;
pub mod regress;
pub mod svg;

pub use lut::{LutError, LutPredictor, NetworkLatency};
pub use model::{LatencyModel, ModelError, Prediction, Term};
