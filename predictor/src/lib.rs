//! # hwnas-predictor
//!
//! Whole-network latency from per-op latencies. [`lut::LutPredictor`] indexes a
//! [`LatencyTable`](hwnas_profiler::table::LatencyTable) by op key and composes a network's
//! latency as the sum of its ops' measured latencies, with the breakdown per op, and says
//! exactly which ops the table lacks. Free ops (skip, zero) cost nothing.
//!
//! This is the lookup-table predictor of the OFA/ProxylessNAS line of work, uncalibrated; the
//! regression model for unseen shapes and the calibration against networks measured end to end
//! build on it.

pub mod lut;

pub use lut::{LutError, LutPredictor, NetworkLatency};
