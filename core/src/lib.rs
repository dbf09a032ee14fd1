//! # hwnas-core
//!
//! The foundation every other hwnas crate stands on; it runs nothing on a device.
//!
//! - [`op::Op`] names every operator a search space can produce, with its full shape
//!   ([`op::Tensor`]), a canonical key, FLOPs, parameters and bytes moved, and the
//!   [`op::Precision`] it is built at.
//! - [`network::Network`] wires ops into a whole network (what a search space builds and what
//!   the ONNX importer reads back); it knows its FLOPs, parameters, peak memory and which ops a
//!   runtime fuses or runs once.
//! - [`table::LatencyTable`] is the latency table CSV: [`table::Row`]s of measured ops under a
//!   provenance header, written row by row by [`table::TableWriter`], merged and checked.
//! - [`backend::Backend`] is the interface every device implements: it prepares an op or a
//!   network into a [`backend::Kernel`]; a kernel's runs become a [`backend::Measurement`] of
//!   [`stats::Stats`].
//! - Utilities: [`rng`] (seeded SplitMix64), [`files`] (atomic writes), [`host`] (machine
//!   facts for provenance).

pub mod backend;
pub mod files;
pub mod host;
pub mod network;
pub mod op;
pub mod rng;
pub mod stats;
pub mod table;

pub use op::{Activation, Op, Precision, Tensor};
