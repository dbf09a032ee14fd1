//! The one measurement loop, shared by every backend.
//!
//! A group of prepared [`Kernel`]s is measured in interleaved rounds: each round gives every
//! unfinished op a short batch of runs, so slow drift on a shared machine (another tenant, a
//! frequency change) spreads over all ops of the group instead of biasing one. An op stops once
//! it has `min_runs` samples and the 95% confidence interval of its median is within
//! `target_ci`, or when it hits `max_runs` or `max_ms` (then it is marked as capped and its
//! interval is reported as it is). The interval is the wider of the runs' and the batches'
//! ([`batch_ci_rel`]): the runs of one batch share the speed of their moment, so an op is
//! measured at [`MIN_BATCHES`] moments at least, and as many more as its batches disagree.
//!
//! Two corrections make the numbers hold on a machine whose speed moves (measured on a shared
//! VM: the speed flips between two levels 25% apart several times a second, see the README):
//! - **the reference probe**: a fixed kernel ([`PROBE_KEY`]) runs `probe_runs` times before
//!   and after every batch; each run of the batch is divided by the probe's median around it,
//!   so the stopping rule and the result see the op's time relative to the machine's speed at
//!   that moment ([`Drift`] keeps the raw numbers beside it);
//! - **the thread's CPU time**: where a kernel does its work on the calling thread it reports
//!   the CPU time of each run, which does not count time the OS gave another process.

use serde::{Deserialize, Serialize};

use hwnas_core::backend::{Drift, Energy, EnergyMeter, Kernel, KernelError, Measurement};
use hwnas_core::stats::{MIN_BATCHES, Stats, batch_ci_rel, quantile_sorted};

/// The reference probe: a small conv every backend runs, long enough (a few hundred
/// microseconds on a CPU core) to time reliably, short enough to run beside every batch.
pub const PROBE_KEY: &str = "conv-in:1x32x28x28-out:32-k:3-s:1-g:1-pre:none-act:relu";

/// Probe runs before each group that are not counted: after another op's batch the probe's
/// first run is 30-40% slower and its second 10% (caches, ORT's arena), from the third on it
/// is flat (measured on this VM's CPU EP, 33 groups of 10).
const PROBE_WARMUP_RUNS: u32 = 2;

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
    /// Length of one op's batch in a round. Short batches measure an op at more moments in
    /// the same time: on this VM's CPU, 5 ms batches left a 150 us op's median 2.0% off
    /// (sd, under a switching load) after 25 ms of runs, 25 ms batches 3.5%.
    pub round_ms: f64,
    /// How many ops are measured together in interleaved rounds.
    pub interleave: usize,
    /// Rows noisier than this (the median's 95% CI half-width, relative) are measured once
    /// more at the end of the run, and rejected if still noisy. Unset: every row is kept.
    /// (Left out of the table's provenance when unset, so older tables still resume.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_noise: Option<f64>,
    /// Whole networks (and ONNX files) whose median is still wider than `target_ci` after a
    /// pass are measured again in up to this many later passes, and each one's passes pooled
    /// (`Stats::pooled`): a network costs at most (1 + later_passes) x max_ms. 0: one pass.
    /// Single ops do not use it (`max_noise` is theirs). (Left out of a table's provenance
    /// when it is the default, so older tables still resume.)
    #[serde(skip_serializing_if = "is_default_later_passes")]
    pub later_passes: u32,
    /// Counted runs of the reference probe before and after every batch (after two uncounted
    /// warm-up runs); 0 measures without it.
    pub probe_runs: u32,
    /// Time a run by the CPU time of the thread that ran it, where the kernel runs on the
    /// calling thread (ONNX Runtime with one intra-op thread); false: always wall-clock time.
    pub cpu_clock: bool,
}

/// Later passes over networks not yet measured to `target_ci`, unless a profile says otherwise.
pub const DEFAULT_LATER_PASSES: u32 = 1;

fn is_default_later_passes(n: &u32) -> bool {
    *n == DEFAULT_LATER_PASSES
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
            later_passes: DEFAULT_LATER_PASSES,
            probe_runs: 3,
            cpu_clock: true,
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

    /// The same settings without either correction: wall-clock times, no probe.
    pub fn uncorrected(&self) -> MeasureConfig {
        MeasureConfig {
            probe_runs: 0,
            cpu_clock: false,
            ..self.clone()
        }
    }
}

/// One kernel's progress through the loop.
struct Progress {
    /// Per kept run: wall-clock time, the time the loop uses (CPU or wall), and the probe's
    /// median around the run's batch (empty without a probe), in microseconds.
    wall_us: Vec<f64>,
    run_us: Vec<f64>,
    probe_us: Vec<f64>,
    /// Where each batch's runs start in `run_us`: the moments the op was measured at.
    batch_starts: Vec<usize>,
    warmup_runs: usize,
    energy: Option<Energy>,
    spent_ms: f64,
    done: bool,
    capped: bool,
    error: Option<KernelError>,
}

impl Progress {
    /// The run times relative to the machine's speed (scale-free: only their spread counts).
    fn relative(&self) -> Vec<f64> {
        if self.probe_us.is_empty() {
            return self.run_us.clone();
        }
        self.run_us
            .iter()
            .zip(&self.probe_us)
            .map(|(t, p)| t / p)
            .collect()
    }

    /// The 95% interval the op's batches give ([`batch_ci_rel`]: runs of one batch share that
    /// moment's speed), of its speed-relative times.
    fn batch_ci_rel(&self) -> f64 {
        batch_ci_rel(&self.relative(), &self.batch_starts)
    }

    /// The 95% interval of the op's speed-relative time: the wider of what its runs give and
    /// what its batches give.
    fn ci_rel(&self) -> f64 {
        let runs = Stats::from_samples(&self.relative()).map_or(f64::INFINITY, |s| s.ci_rel);
        runs.max(self.batch_ci_rel())
    }
}

/// One run of `k`: its wall time and the time the loop counts (the thread's CPU time when the
/// kernel reports it and `cpu_clock` is on), in microseconds.
fn run_once(k: &mut dyn Kernel, cpu_clock: bool) -> Result<(f64, f64), KernelError> {
    let wall = k.run()?.as_secs_f64() * 1e6;
    let counted = match k.cpu_time_of_last_run().filter(|_| cpu_clock) {
        Some(cpu) => cpu.as_secs_f64() * 1e6,
        None => wall,
    };
    Ok((wall, counted))
}

/// The reference probe as the loop runs it: a few runs at a time, between batches.
struct ProbeRuns<'a, 'k> {
    kernel: &'a mut (dyn Kernel + 'k),
    runs: u32,
    cpu_clock: bool,
    /// The previous group's times: the probe just before the next batch.
    before: Vec<f64>,
}

impl ProbeRuns<'_, '_> {
    fn group(&mut self) -> Result<Vec<f64>, KernelError> {
        for _ in 0..PROBE_WARMUP_RUNS {
            self.kernel.run()?;
        }
        (0..self.runs.max(1))
            .map(|_| run_once(self.kernel, self.cpu_clock).map(|(_, t)| t))
            .collect()
    }

    /// Runs the probe after a batch: its median together with the group before the batch.
    fn around_batch(&mut self) -> Result<f64, KernelError> {
        let after = self.group()?;
        let mut both: Vec<f64> = self.before.iter().chain(&after).copied().collect();
        both.sort_by(f64::total_cmp);
        self.before = after;
        Ok(quantile_sorted(&both, 0.5))
    }
}

fn warm_up(k: &mut dyn Kernel, cfg: &MeasureConfig) -> Progress {
    let mut p = Progress {
        wall_us: Vec::new(),
        run_us: Vec::new(),
        probe_us: Vec::new(),
        batch_starts: Vec::new(),
        warmup_runs: 0,
        energy: None,
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
}

/// Measure a group of kernels in interleaved rounds. One result per kernel, in order; an error
/// in one kernel does not stop the others. With a `probe` kernel (and `cfg.probe_runs` > 0),
/// every batch is bracketed by probe runs and corrected by them; a probe that fails is every
/// kernel's error, since no time of the group could be corrected. With an `energy` meter,
/// each kernel's energy per run is measured once its latency is (a failure is its error: a
/// row without the energy asked for would pass for a whole one).
pub fn measure_group(
    kernels: &mut [Box<dyn Kernel + '_>],
    cfg: &MeasureConfig,
    probe: Option<&mut (dyn Kernel + '_)>,
    energy: Option<&mut dyn EnergyMeter>,
) -> Vec<Result<Measurement, KernelError>> {
    let mut probe = probe
        .filter(|_| cfg.probe_runs > 0)
        .map(|kernel| ProbeRuns {
            kernel,
            runs: cfg.probe_runs,
            cpu_clock: cfg.cpu_clock,
            before: Vec::new(),
        });
    let mut progress: Vec<Progress> = kernels
        .iter_mut()
        .map(|k| warm_up(k.as_mut(), cfg))
        .collect();
    let probe_error = probe.as_mut().and_then(|p| {
        let warm = warm_up(p.kernel, cfg);
        let first = warm.error.map_or_else(|| p.group(), Err);
        first.map(|times| p.before = times).err()
    });
    if let Some(e) = probe_error {
        return probe_failed(kernels, &e);
    }
    // A batch never takes more than its share of `max_runs`, so that an op of a microsecond
    // is still measured at several moments before it runs out of runs.
    let batch_runs = (cfg.max_runs as usize / (2 * MIN_BATCHES)).max(1);

    while progress.iter().any(|p| !p.done) {
        for (k, p) in kernels.iter_mut().zip(progress.iter_mut()) {
            if p.done {
                continue;
            }
            let mut batch_ms = 0.0;
            let batch_end = (p.run_us.len() + batch_runs).min(cfg.max_runs as usize);
            p.batch_starts.push(p.run_us.len());
            while batch_ms < cfg.round_ms && p.run_us.len() < batch_end {
                match run_once(k.as_mut(), cfg.cpu_clock) {
                    Ok((wall, counted)) => {
                        p.wall_us.push(wall);
                        p.run_us.push(counted);
                        batch_ms += wall / 1e3;
                    }
                    Err(e) => {
                        p.error = Some(e);
                        p.done = true;
                        break;
                    }
                }
            }
            p.spent_ms += batch_ms;
            match probe.as_mut().map(ProbeRuns::around_batch) {
                Some(Ok(us)) => p.probe_us.resize(p.run_us.len(), us),
                Some(Err(e)) => return probe_failed(kernels, &e),
                None => {}
            }
            if !p.done {
                stop_when_done(p, cfg);
            }
        }
    }
    if let Some(meter) = energy {
        measure_energy(kernels, &mut progress, meter);
    }

    kernels
        .iter_mut()
        .zip(progress)
        .map(|(k, p)| finish_one(k.as_mut(), p))
        .collect()
}

/// Each kernel's energy per run, after its latency; the runs it took are counted as extra.
fn measure_energy(
    kernels: &mut [Box<dyn Kernel + '_>],
    progress: &mut [Progress],
    meter: &mut dyn EnergyMeter,
) {
    for (k, p) in kernels.iter_mut().zip(progress.iter_mut()) {
        if p.error.is_some() {
            continue;
        }
        let run_us = Stats::from_samples(&p.wall_us).map_or(0.0, |s| s.median);
        match meter.per_run(k.as_mut(), run_us) {
            Ok(e) => p.energy = Some(e),
            Err(e) => p.error = Some(KernelError(format!("energy: {e}"))),
        }
    }
}

/// Every kernel's result when the probe failed (each is finished, to release what it holds).
fn probe_failed(
    kernels: &mut [Box<dyn Kernel + '_>],
    e: &KernelError,
) -> Vec<Result<Measurement, KernelError>> {
    kernels
        .iter_mut()
        .map(|k| {
            let _ = k.finish();
            Err(KernelError(format!(
                "the reference probe `{PROBE_KEY}` failed, so no time could be corrected: {e}"
            )))
        })
        .collect()
}

/// The stopping rule, after a batch: the interval of the speed-relative times.
fn stop_when_done(p: &mut Progress, cfg: &MeasureConfig) {
    let n = p.run_us.len();
    if n >= cfg.min_runs as usize {
        if p.ci_rel() <= cfg.target_ci {
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
        let expected = p.warmup_runs + p.run_us.len();
        if per_run.len() != expected {
            return Err(KernelError(format!(
                "the backend reported {} runs, the loop made {expected}",
                per_run.len()
            )));
        }
        Ok(per_run[p.warmup_runs..].to_vec())
    };
    let (samples, in_network) = match &report.in_network_us {
        Some(per_run) => (kept(per_run)?, true),
        None => (p.run_us.clone(), false),
    };
    let raw = Stats::from_samples(&samples).unwrap_or(wall);
    let edge_reorder_us = match &report.edge_reorder_us {
        Some(per_run) => Stats::from_samples(&kept(per_run)?).map(|s| s.median),
        None => None,
    };
    let (mut stats, drift) = match corrected(&samples, &p.probe_us, raw) {
        Some((stats, drift)) => (stats, Some(drift)),
        None => (raw, None),
    };
    stats.ci_rel = stats.ci_rel.max(p.batch_ci_rel());
    Ok(Measurement {
        stats,
        wall,
        edge_reorder_us,
        providers: report.providers,
        in_network,
        capped: p.capped,
        drift,
        energy: p.energy,
    })
}

/// `samples` divided by the probe's time around each and expressed at the probe's median;
/// `None` when no probe ran.
fn corrected(samples: &[f64], probe_us: &[f64], raw: Stats) -> Option<(Stats, Drift)> {
    let probe = Stats::from_samples(probe_us).filter(|s| s.median > 0.0)?;
    let fixed: Vec<f64> = samples
        .iter()
        .zip(probe_us)
        .map(|(t, p)| t * probe.median / p)
        .collect();
    let drift = Drift {
        probe_us: probe.median,
        probe_spread: (probe.p90 - probe.p10) / probe.median,
        raw,
    };
    Some((Stats::from_samples(&fixed)?, drift))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    /// A kernel of `base_us` on a machine whose speed the shared run counter sets: every
    /// 40 runs (of any kernel) it switches between full speed and 1.3x slower, slow two thirds
    /// of the time. Its CPU time is half its wall time (another process had the rest).
    struct Drifting {
        base_us: f64,
        runs: Rc<Cell<u64>>,
    }

    impl Drifting {
        /// The machine's slowdown at run `n`.
        fn slow(n: u64) -> f64 {
            if (n / 40).is_multiple_of(3) { 1.0 } else { 1.3 }
        }
    }

    impl Kernel for Drifting {
        fn run(&mut self) -> Result<Duration, KernelError> {
            let n = self.runs.get();
            self.runs.set(n + 1);
            Ok(Duration::from_secs_f64(self.base_us * Self::slow(n) * 2e-6))
        }

        fn cpu_time_of_last_run(&self) -> Option<Duration> {
            let n = self.runs.get() - 1;
            Some(Duration::from_secs_f64(self.base_us * Self::slow(n) * 1e-6))
        }
    }

    struct Failing;

    impl Kernel for Failing {
        fn run(&mut self) -> Result<Duration, KernelError> {
            Err(KernelError("device lost".into()))
        }
    }

    fn cfg() -> MeasureConfig {
        MeasureConfig {
            min_runs: 200,
            max_runs: 400,
            target_ci: 0.0,
            round_ms: 1.0,
            ..MeasureConfig::default()
        }
    }

    fn measure(cfg: &MeasureConfig, probed: bool) -> Measurement {
        let runs = Rc::new(Cell::new(0));
        let mut kernels: Vec<Box<dyn Kernel>> = vec![Box::new(Drifting {
            base_us: 1000.0,
            runs: Rc::clone(&runs),
        })];
        let mut probe = Drifting {
            base_us: 100.0,
            runs,
        };
        let probe = probed.then_some(&mut probe as &mut dyn Kernel);
        measure_group(&mut kernels, cfg, probe, None)
            .remove(0)
            .unwrap()
    }

    #[test]
    fn the_probe_cancels_a_machine_that_changes_speed() {
        let m = measure(&cfg(), true).at_probe_speed(100.0);
        let drift = m.drift.expect("the probe ran");
        // The probe ran slow most of the time, and the raw time shows it...
        assert!(drift.probe_us > 120.0, "{drift:?}");
        assert!(drift.raw.median > 1200.0, "{drift:?}");
        // ...the corrected time, at the probe's full-speed time, is the op's full-speed time.
        assert!(
            (m.stats.median / 1000.0 - 1.0).abs() < 0.02,
            "{}",
            m.stats.median
        );
        // Without the probe there is nothing to correct by.
        let plain = measure(&cfg(), false);
        assert!(plain.drift.is_none());
        assert_eq!(plain.clone().at_probe_speed(100.0).stats, plain.stats);
        assert!(plain.stats.median > 1200.0);
    }

    #[test]
    fn runs_count_the_threads_cpu_time_unless_told_otherwise() {
        let cfg = MeasureConfig {
            probe_runs: 0,
            ..cfg()
        };
        let cpu = measure(&cfg, false);
        let wall = measure(&cfg.uncorrected(), false);
        assert!((cpu.wall.median / cpu.stats.median - 2.0).abs() < 1e-9);
        assert_eq!(wall.stats.median, wall.wall.median);
    }

    #[test]
    fn a_failing_probe_is_every_kernels_error() {
        let mut kernels: Vec<Box<dyn Kernel>> = vec![
            Box::new(Drifting {
                base_us: 10.0,
                runs: Rc::default(),
            }),
            Box::new(Drifting {
                base_us: 20.0,
                runs: Rc::default(),
            }),
        ];
        let results = measure_group(&mut kernels, &cfg(), Some(&mut Failing), None);
        assert_eq!(results.len(), 2);
        for r in results {
            let e = r.unwrap_err().to_string();
            assert!(
                e.contains("reference probe") && e.contains("device lost"),
                "{e}"
            );
        }
    }
}
