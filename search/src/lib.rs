//! # hwnas-search
//!
//! Search spaces and their architectures. A [`space::SearchSpace`] says which operators its
//! networks can run ([`space::SearchSpace::ops`], what the profiler measures); each space's
//! architecture type ([`space::nb201::Nb201Arch`], [`space::mbv3::Mbv3Arch`]) parses and prints
//! its encoding and lists the ops of its network in execution order (what the predictor composes).
//!
//! Built-in spaces: [`space::nb201`] (NAS-Bench-201 cells) and [`space::mbv3`] (the Once-for-All
//! MobileNetV3 space). The search algorithms come on top of these.

pub mod space;

pub use space::{SearchSpace, SpaceError, builtin};
