//! Measuring again later: a whole network is long (milliseconds to a second a run), so its
//! loop often stops at `max_ms` before the median's interval is within `target_ci`, and a
//! sitting's drift that the probe did not correct stays in it. Rather than keep a doubtful
//! number, [`in_passes`] measures the networks still wider than `target_ci` again in a later
//! pass (after every other network's, so at another moment of the machine), up to
//! `later_passes` times, and pools each network's passes ([`NetworkTime::pooled`]). Passes that
//! disagree widen the pooled interval, so a network that drifted is measured once more.
//!
//! The cost is stated, not open-ended: a network takes at most (1 + `later_passes`) × `max_ms`.

use hwnas_core::backend::{Drift, Energy};
use hwnas_core::stats::Stats;

use crate::measure::MeasureConfig;
use crate::networks::NetworkTime;

/// What the passes did, for the report beside the accuracy figures.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Passes {
    /// Passes made, the first included.
    pub passes: u32,
    /// Measurements made in later passes (a network measured twice more counts twice).
    pub remeasured: usize,
    /// Networks still wider than `target_ci` when the passes ran out.
    pub still_wide: usize,
}

/// Each item timed by `run` (which keeps their order), those wider than `cfg.target_ci`
/// again in up to `cfg.later_passes` later passes; `pass` hears each later pass's size before
/// it runs.
pub fn in_passes<T: Clone, E>(
    items: &[T],
    cfg: &MeasureConfig,
    mut run: impl FnMut(&[T]) -> Result<Vec<NetworkTime>, E>,
    mut pass: impl FnMut(u32, usize),
) -> Result<(Vec<NetworkTime>, Passes), E> {
    let first = run(items)?;
    let mut parts: Vec<Vec<NetworkTime>> = first.into_iter().map(|t| vec![t]).collect();
    let mut times: Vec<NetworkTime> = parts.iter().map(|p| p[0]).collect();
    let mut done = Passes {
        passes: 1,
        ..Passes::default()
    };
    let wide = |times: &[NetworkTime]| -> Vec<usize> {
        (0..times.len())
            .filter(|&i| times[i].latency.ci_rel > cfg.target_ci)
            .collect()
    };
    for later in 1..=cfg.later_passes {
        let again = wide(&times);
        if again.is_empty() {
            break;
        }
        pass(later + 1, again.len());
        let subset: Vec<T> = again.iter().map(|&i| items[i].clone()).collect();
        for (&i, t) in again.iter().zip(run(&subset)?) {
            parts[i].push(t);
            times[i] = NetworkTime::pooled(&parts[i]);
        }
        done.passes += 1;
        done.remeasured += again.len();
    }
    done.still_wide = wide(&times).len();
    Ok((times, done))
}

impl NetworkTime {
    /// One network's passes as one time: latencies pooled ([`Stats::pooled`]), the probe
    /// and energy averaged by the runs behind them. `parts` must not be empty.
    pub fn pooled(parts: &[NetworkTime]) -> NetworkTime {
        let pool = |f: fn(&NetworkTime) -> Stats| {
            let stats: Vec<Stats> = parts.iter().map(f).collect();
            Stats::pooled(&stats).expect("a network measured at least once")
        };
        NetworkTime {
            latency: pool(|t| t.latency),
            raw: pool(|t| t.raw),
            drift: pooled_drift(parts),
            energy: pooled_energy(parts),
        }
    }
}

/// The probe beside all passes, where every pass ran it.
fn pooled_drift(parts: &[NetworkTime]) -> Option<Drift> {
    let drifts: Vec<Drift> = parts.iter().map(|t| t.drift).collect::<Option<_>>()?;
    let runs: f64 = drifts.iter().map(|d| d.raw.n as f64).sum();
    let by_runs = |f: fn(&Drift) -> f64| -> f64 {
        drifts.iter().map(|d| f(d) * d.raw.n as f64).sum::<f64>() / runs
    };
    let raw: Vec<Stats> = drifts.iter().map(|d| d.raw).collect();
    Some(Drift {
        probe_us: by_runs(|d| d.probe_us),
        probe_spread: by_runs(|d| d.probe_spread),
        raw: Stats::pooled(&raw)?,
    })
}

/// Energy over all passes, where every pass measured it.
fn pooled_energy(parts: &[NetworkTime]) -> Option<Energy> {
    let energies: Vec<Energy> = parts.iter().map(|t| t.energy).collect::<Option<_>>()?;
    let runs: u64 = energies.iter().map(|e| e.runs).sum();
    let by_runs = |f: fn(&Energy) -> f64| -> f64 {
        let total = runs.max(1) as f64;
        energies.iter().map(|e| f(e) * e.runs as f64).sum::<f64>() / total
    };
    Some(Energy {
        per_run_uj: by_runs(|e| e.per_run_uj),
        spread: energies.iter().map(|e| e.spread).fold(0.0, f64::max),
        power_w: by_runs(|e| e.power_w),
        windows: energies.iter().map(|e| e.windows).sum(),
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(median: f64, ci_rel: f64) -> NetworkTime {
        let latency = Stats {
            median,
            p10: median,
            p90: median,
            mad: 0.0,
            min: median,
            n: 30,
            ci_rel,
            outliers: 0,
        };
        NetworkTime {
            latency,
            raw: latency,
            drift: None,
            energy: None,
        }
    }

    /// A device whose nth measurement of each item is given: (median, ci_rel) per pass.
    fn run_on(
        per_pass: Vec<Vec<(f64, f64)>>,
    ) -> impl FnMut(&[usize]) -> Result<Vec<NetworkTime>, String> {
        let mut seen = vec![0usize; per_pass.len()];
        move |items: &[usize]| {
            Ok(items
                .iter()
                .map(|&i| {
                    let (m, ci) = per_pass[i][seen[i]];
                    seen[i] += 1;
                    time(m, ci)
                })
                .collect())
        }
    }

    #[test]
    fn only_wide_networks_are_measured_again_until_the_passes_run_out() {
        let cfg = MeasureConfig {
            target_ci: 0.01,
            later_passes: 2,
            ..MeasureConfig::default()
        };
        // 0 is precise at once; 1 converges in its second pass (pooled 0.008); 2 never does.
        let device = run_on(vec![
            vec![(100.0, 0.005)],
            vec![(200.0, 0.02), (200.0, 0.008)],
            vec![(300.0, 0.05), (330.0, 15.0 / 330.0), (300.0, 0.05)],
        ]);
        let mut announced = Vec::new();
        let (times, passes) = in_passes(&[0, 1, 2], &cfg, device, |p, n| {
            announced.push((p, n));
        })
        .unwrap();
        assert_eq!(announced, [(2, 2), (3, 1)]);
        assert_eq!(
            passes,
            Passes {
                passes: 3,
                remeasured: 3,
                still_wide: 1
            }
        );
        assert_eq!(times[0].latency.median, 100.0);
        assert!(times[1].latency.ci_rel <= 0.01, "{:?}", times[1]);
        assert!((times[2].latency.median - 310.0).abs() < 1e-6);
        assert_eq!(times[2].latency.n, 90);
    }

    #[test]
    fn no_later_passes_is_one_measurement() {
        let cfg = MeasureConfig {
            later_passes: 0,
            ..MeasureConfig::default()
        };
        let device = run_on(vec![vec![(100.0, 0.5)]]);
        let (times, passes) = in_passes(&[0], &cfg, device, |_, _| panic!("no pass")).unwrap();
        assert_eq!((passes.passes, passes.still_wide), (1, 1));
        assert_eq!(times[0].latency.median, 100.0);
    }
}
