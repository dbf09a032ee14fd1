//! The measurement loop times an op at several moments and does not call it precise while
//! those moments disagree, however well the runs of one moment agree.

use std::time::Duration;

use hwnas_core::backend::{Kernel, KernelError};
use hwnas_core::stats::MIN_BATCHES;
use hwnas_profiler::measure::{MeasureConfig, measure_group};

/// Runs of 20 us whose machine changes speed every 50 runs (one batch of `cfg()`), cycling
/// through `speeds`: the runs of a batch agree exactly, batches do not.
struct Moments {
    speeds: &'static [f64],
    runs: usize,
}

impl Kernel for Moments {
    fn run(&mut self) -> Result<Duration, KernelError> {
        let speed = self.speeds[(self.runs / 50) % self.speeds.len()];
        self.runs += 1;
        Ok(Duration::from_secs_f64(20e-6 * speed))
    }
}

fn cfg() -> MeasureConfig {
    MeasureConfig {
        warmup_runs: 0,
        warmup_ms: 0.0,
        min_runs: 30,
        target_ci: 0.01,
        max_ms: 20.0,
        round_ms: 1.0,
        probe_runs: 0,
        cpu_clock: false,
        ..MeasureConfig::default()
    }
}

fn measure(speeds: &'static [f64]) -> hwnas_core::backend::Measurement {
    let mut kernels: Vec<Box<dyn Kernel>> = vec![Box::new(Moments { speeds, runs: 0 })];
    measure_group(&mut kernels, &cfg(), None, None)
        .remove(0)
        .unwrap()
}

#[test]
fn a_steady_op_is_timed_at_the_fewest_moments_allowed() {
    let m = measure(&[1.0]);
    assert_eq!(m.stats.n, 50 * MIN_BATCHES, "{m:?}");
    assert!(!m.capped && m.stats.ci_rel < 1e-9, "{m:?}");
}

#[test]
fn moments_that_disagree_keep_an_op_measuring_until_its_time_cap() {
    // Six batches in ten at one speed, so the runs' own interval is nil; the others 5-10% slower.
    let m = measure(&[1.0, 1.1, 1.0, 1.0, 1.05, 1.0, 1.08, 1.0, 1.0, 1.1]);
    assert!(m.capped, "{m:?}");
    assert!(m.stats.n >= 50 * 10, "measured until max_ms: {m:?}");
    assert!(
        m.stats.ci_rel > 0.01,
        "the interval says how the moments disagree: {m:?}"
    );
}
