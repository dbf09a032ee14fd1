//! # hwnas-predictor
//!
//! Whole-network latency from per-op latencies.
//!
//! - [`features`] turns ops into numbers; [`gbdt::Gbdt`] (on linfa's traits) and the linfa
//!   linear model generalise the table to shapes it lacks ([`regress`] compares them).
//! - [`model::LatencyModel`] is what `hwnas fit` writes: the latency table (a lookup-table
//!   predictor on its own), the op regressor and a [`calibrate::Calibration`] fitted on networks
//!   measured end to end, as versioned JSON. It predicts a network from its [`model::Term`]s:
//!   its ops, each with whether the runtime fuses it into the op before.
//! - [`metrics`] scores predictions against measurements (±5/±10%, RMSPE, Kendall tau), and
//!   says how much of the networks' order a measurement's noise is expected to keep.
//! - [`anchors`] lets a later sitting's networks be compared at the calibration's: some
//!   calibration networks measured again beside them give the [`anchors::Sitting`].

pub mod anchors;
pub mod calibrate;
pub mod features;
pub mod few_shot;
pub mod gbdt;
pub mod lsq;
pub mod metrics;
pub mod model;
pub mod regress;

pub use model::{LatencyModel, ModelError, NetworksFit, Prediction, Term};
