//! # hwnas-search
//!
//! Search spaces and the search over them.
//!
//! - A [`space::SearchSpace`] says which operators its networks can run
//!   ([`space::SearchSpace::ops`], what the profiler measures), builds the network of an
//!   architecture encoding, and exposes the encoding as a genome of [`space::Gene`]s. Built in:
//!   [`space::nb201`] (NAS-Bench-201 cells) and [`space::mbv3`] (Once-for-All MobileNetV3).
//! - [`nsga2`] is NSGA-II over genomes with constraint domination; it keeps every evaluation
//!   and returns the feasible non-dominated set of them all. [`hypervolume`] scores fronts.
//! - [`objective::ArchProblem`] is architecture search as an NSGA-II problem: [`objective::Metrics`]
//!   of each network (accuracy from an [`accuracy::AccuracySource`], latency per device from a
//!   [`objective::LatencySource`], MFLOPs, parameters, peak activation memory), some of them
//!   objectives, some bounded by [`objective::Constraint`]s. [`arch_table::ArchTable`] reads
//!   tables keyed by architecture (accuracies, measured latencies); [`plot`] draws the front.

pub mod accuracy;
pub mod arch_table;
pub mod hypervolume;
pub mod nsga2;
pub mod objective;
pub mod plot;
pub mod space;

pub use space::{SearchSpace, SpaceError, builtin};
