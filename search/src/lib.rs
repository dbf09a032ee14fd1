//! # hwnas-search
//!
//! Search spaces and the search over them.
//!
//! - A [`space::SearchSpace`] says which operators its networks can run
//!   ([`space::SearchSpace::ops`], what the profiler measures), builds the network of an
//!   architecture encoding, and exposes the encoding as a genome of [`space::Gene`]s. Built in:
//!   [`space::nb201`] (NAS-Bench-201 cells) and [`space::mbv3`] (Once-for-All MobileNetV3);
//!   any other is declared in a TOML file ([`space::file`]: layer-wise or cell-based), and
//!   [`space::open`] takes a name or a file.
//! - A [`problem::Problem`] evaluates genomes into objectives and constraint violations. A
//!   [`strategy::Strategy`] searches it: [`nsga2`] (NSGA-II with constraint domination, a
//!   surrogate that screens its children while it earns it, and a Pareto local search for
//!   small spaces, for the Pareto front; [`pareto`] sorts), [`evolution`] (regularized
//!   evolution), [`reinforce`] (REINFORCE on a factorised policy) or random search; the
//!   single-objective ones maximise a [`strategy::Fitness`]. All keep every evaluation and
//!   return the feasible non-dominated set of them all ([`problem::Outcome`]); [`variation`] holds the genome operators,
//!   [`hypervolume`] scores fronts and [`indicator`] compares one with a reference front.
//! - [`objective::ArchProblem`] is architecture search as an NSGA-II problem: [`objective::Metrics`]
//!   of each network (accuracy from an [`accuracy::AccuracySource`], latency per device from a
//!   [`objective::LatencySource`], MFLOPs, parameters, peak activation memory), some of them
//!   objectives, some bounded by [`objective::Constraint`]s. [`arch_table::ArchTable`] reads
//!   tables keyed by architecture (accuracies, measured latencies).
//! - A search can stop and go on: [`journal::Journal`] records its settings and every accuracy
//!   obtained (the state file of `--state`/`--resume`), and a resumed strategy replays from
//!   its seed with those answers. [`ask_tell::AskTell`] drives a search one batch at a time on
//!   the same record (the Python `Search`); [`ask_file`] is `--accuracy ask`'s two files.
//! - [`report::Report`] writes what a search leaves behind: the front as CSV, JSON and SVG
//!   (drawn by `hwnas-plot`), the history, `--verify`'s and `--compare`'s results.
//! - [`lut::Lut`] cuts a latency model into tables of terms for differentiable search: for the
//!   built-ins, and for any space that is a sum of [`space::Unit`]s ([`space::Additive`]) or
//!   small enough to enumerate; [`compiled::CompiledLatency`] turns those tables into
//!   predictions looked up straight from a genome, which the search and `predict` use.

pub mod accuracy;
pub mod arch_table;
mod archive;
pub mod ask_file;
pub mod ask_tell;
pub mod compiled;
pub mod evolution;
pub mod hypervolume;
pub mod indicator;
pub mod journal;
mod local_search;
pub mod lut;
pub mod nsga2;
pub mod objective;
pub mod pareto;
pub mod problem;
pub mod reinforce;
pub mod report;
mod screening;
pub mod space;
pub mod strategy;
mod surrogate;
pub mod timed;
pub mod variation;

pub use space::{SearchSpace, SpaceError, builtin};
