//! The one measurement loop, shared by every backend.
//!
//! A group of prepared [`Kernel`]s is measured in interleaved rounds: each round gives every
//! unfinished op a short batch of runs, so slow drift on a shared machine (another tenant, a
//! frequency change) spreads over all ops of the group instead of biasing one. An op stops once
//! it has `min_runs` samples and the 95% confidence interval of its median is within
//! `target_ci`, or when it hits `max_runs` or `max_ms` (then it is marked as capped and its
//! interval is reported as it is).

use serde::{Deserialize, Serialize};

use hwnas_core::backend::{Kernel, KernelError, Measurement};
use hwnas_core::stats::Stats;

/// Settings of the loop. All times are milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeasureConfig {
    /// Warm-up: at least this many runs...
    pub warmup_runs: u32,
    /// ...and at least this much time, before any sample is kept.
    pub warmup_ms: f64,
    /// Never fewer samples than this.
    pub min_runs: u32,
    /// Never more samples than this.
    pub max_runs: u32,
    /// Stop when the median's 95% CI half-width is within this fraction of the median.
    pub target_ci: f64,
    /// Stop after this much measured time per op, converged or not.
    pub max_ms: f64,
    /// Length of one op's batch in a round.
    pub round_ms: f64,
    /// How many ops are measured together in interleaved rounds.
    pub interleave: usize,
    /// Rows noisier than this (the median's 95% CI half-width, relative) are measured once
    /// more at the end of the run, and rejected if still noisy. Unset: every row is kept.
    /// (Left out of the table's provenance when unset, so older tables still resume.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_noise: Option<f64>,
}

impl Default for MeasureConfig {
    fn default() -> Self {
        MeasureConfig {
            warmup_runs: 5,
            warmup_ms: 20.0,
            min_runs: 30,
            max_runs: 2000,
            target_ci: 0.01,
            max_ms: 1500.0,
            round_ms: 25.0,
            interleave: 8,
            max_noise: None,
        }
    }
}

impl MeasureConfig {
    /// Check the numbers make sense; `field` errors name the TOML key to fix.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("warmup_ms", self.warmup_ms),
            ("target_ci", self.target_ci),
            ("max_ms", self.max_ms),
            ("round_ms", self.round_ms),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!(
                    "measure.{name} must be a non-negative number, got {v}"
                ));
            }
        }
        if self.min_runs == 0 || self.max_runs < self.min_runs {
            return Err(format!(
                "measure.min_runs ({}) must be at least 1 and at most measure.max_runs ({})",
                self.min_runs, self.max_runs
            ));
        }
        if self.interleave == 0 {
            return Err("measure.interleave must be at least 1".into());
        }
        if let Some(v) = self.max_noise
            && !(v.is_finite() && v > 0.0)
        {
            return Err(format!(
                "measure.max_noise must be a positive fraction, got {v}"
            ));
        }
        Ok(())
    }
}

struct Progress {
    wall_us: Vec<f64>,
    warmup_runs: usize,
    spent_ms: f64,
    done: bool,
    capped: bool,
    error: Option<KernelError>,
}

/// Measure a group of kernels in interleaved rounds. One result per kernel, in order; an error
/// in one kernel does not stop the others.
pub fn measure_group(
    kernels: &mut [Box<dyn Kernel + '_>],
    cfg: &MeasureConfig,
) -> Vec<Result<Measurement, KernelError>> {
    let mut progress: Vec<Progress> = kernels
        .iter_mut()
        .map(|k| {
            let mut p = Progress {
                wall_us: Vec::new(),
                warmup_runs: 0,
                spent_ms: 0.0,
                done: false,
                capped: false,
                error: None,
            };
            let mut warm_ms = 0.0;
            while p.warmup_runs < cfg.warmup_runs as usize || warm_ms < cfg.warmup_ms {
                match k.run() {
                    Ok(d) => warm_ms += d.as_secs_f64() * 1e3,
                    Err(e) => {
                        p.error = Some(e);
                        p.done = true;
                        break;
                    }
                }
                p.warmup_runs += 1;
                // A very slow op warms up with the minimum run count only.
                if warm_ms > cfg.max_ms {
                    break;
                }
            }
            p
        })
        .collect();

    while progress.iter().any(|p| !p.done) {
        for (k, p) in kernels.iter_mut().zip(progress.iter_mut()) {
            if p.done {
                continue;
            }
            let mut batch_ms = 0.0;
            while batch_ms < cfg.round_ms && p.wall_us.len() < cfg.max_runs as usize {
                match k.run() {
                    Ok(d) => {
                        let us = d.as_secs_f64() * 1e6;
                        p.wall_us.push(us);
                        batch_ms += us / 1e3;
                    }
                    Err(e) => {
                        p.error = Some(e);
                        p.done = true;
                        break;
                    }
                }
            }
            p.spent_ms += batch_ms;
            if p.done {
                continue;
            }
            let n = p.wall_us.len();
            if n >= cfg.min_runs as usize {
                let ci = Stats::from_samples(&p.wall_us).map_or(f64::INFINITY, |s| s.ci_rel);
                if ci <= cfg.target_ci {
                    p.done = true;
                } else if n >= cfg.max_runs as usize || p.spent_ms >= cfg.max_ms {
                    p.done = true;
                    p.capped = true;
                }
            } else if n >= cfg.max_runs as usize {
                p.done = true;
                p.capped = true;
            }
        }
    }

    kernels
        .iter_mut()
        .zip(progress)
        .map(|(k, p)| finish_one(k.as_mut(), p))
        .collect()
}

fn finish_one(k: &mut dyn Kernel, p: Progress) -> Result<Measurement, KernelError> {
    // Finish even after an error, so a backend can release what it holds.
    let report = k.finish();
    if let Some(e) = p.error {
        return Err(e);
    }
    let report = report?;
    let wall = Stats::from_samples(&p.wall_us)
        .ok_or_else(|| KernelError("no sample was measured".into()))?;
    let kept = |per_run: &Vec<f64>| -> Result<Vec<f64>, KernelError> {
        let expected = p.warmup_runs + p.wall_us.len();
        if per_run.len() != expected {
            return Err(KernelError(format!(
                "the backend reported {} runs, the loop made {expected}",
                per_run.len()
            )));
        }
        Ok(per_run[p.warmup_runs..].to_vec())
    };
    let (stats, in_network) = match &report.in_network_us {
        Some(per_run) => {
            let samples = kept(per_run)?;
            (Stats::from_samples(&samples).unwrap_or(wall), true)
        }
        None => (wall, false),
    };
    let edge_reorder_us = match &report.edge_reorder_us {
        Some(per_run) => Stats::from_samples(&kept(per_run)?).map(|s| s.median),
        None => None,
    };
    Ok(Measurement {
        stats,
        wall,
        edge_reorder_us,
        providers: report.providers,
        in_network,
        capped: p.capped,
    })
}
