//! Energy per run from a cumulative counter, with the counter's limits respected.
//!
//! A counter changes in steps: RAPL about every millisecond, NVML's every few to a hundred
//! milliseconds. [`Meter::open`] watches it to learn that update period, then measures the
//! idle power (the device doing nothing for a few windows). A window of a kernel's runs starts
//! and ends at a counter update (the kernel runs until the value changes, so both ends are
//! known within one run), lasts many update periods and many runs, and its energy less the
//! idle power over its duration, divided by its runs, is the energy of one run.

use std::time::{Duration, Instant};

use super::EnergyConfig;
use super::counter::{Counter, energy_between};
use hwnas_core::backend::{Energy, EnergyMeter, Kernel, KernelError};
use hwnas_core::stats::quantile_sorted;

/// How often the counter is polled while nothing runs.
const POLL: Duration = Duration::from_micros(200);
/// Updates watched to learn the period, and the longest the watch may take.
const WATCHED_UPDATES: usize = 20;
const WATCH_LIMIT: Duration = Duration::from_secs(5);

/// A counter with its update period and the device's idle power.
pub struct Meter {
    counter: Box<dyn Counter>,
    wraps: Vec<Option<u64>>,
    /// Median time between two updates of the counter.
    pub period: Duration,
    /// The smallest change of the counter seen while watching it, in µJ.
    pub min_step_uj: u64,
    /// The device's power while nothing ran, in watts (subtracted from every window).
    pub idle_w: f64,
    window_ms: f64,
    windows: u32,
}

/// A reading and when it was taken.
#[derive(Clone)]
struct Reading {
    at: Instant,
    values: Vec<u64>,
}

impl Meter {
    /// Learn `counter`'s update period, then the idle power, as `cfg` says.
    pub fn open(mut counter: Box<dyn Counter>, cfg: &EnergyConfig) -> Result<Meter, String> {
        let wraps = counter.wraps();
        let (period, min_step_uj) = watch(counter.as_mut(), &wraps)?;
        let mut meter = Meter {
            counter,
            wraps,
            period,
            min_step_uj,
            idle_w: 0.0,
            window_ms: cfg.window_ms,
            windows: cfg.windows.max(1),
        };
        let idle_window = Duration::from_secs_f64(cfg.idle_ms / 1e3).max(period * 10);
        let mut idle = || {
            std::thread::sleep(POLL);
            Ok(())
        };
        let mut watts = Vec::new();
        for _ in 0..meter.windows {
            let start = meter.next_update(&mut idle)?;
            std::thread::sleep(idle_window.saturating_sub(start.at.elapsed()));
            let end = meter.next_update(&mut idle)?;
            watts.push(meter.joules(&start, &end) / (end.at - start.at).as_secs_f64());
        }
        watts.sort_by(f64::total_cmp);
        meter.idle_w = quantile_sorted(&watts, 0.5);
        Ok(meter)
    }

    /// What the table's provenance records of the method.
    pub fn provenance(&self, counter_name: &str) -> Vec<(String, String)> {
        vec![
            ("energy_counter".into(), counter_name.to_string()),
            (
                "energy_method".into(),
                format!(
                    "windows of >= {} ms and >= 10 counter updates, aligned to updates; \
                     idle power subtracted; median of {} windows",
                    self.window_ms, self.windows
                ),
            ),
            (
                "energy_period_ms".into(),
                format!("{:.3}", self.period.as_secs_f64() * 1e3),
            ),
            ("energy_min_step_uj".into(), self.min_step_uj.to_string()),
            ("energy_idle_w".into(), format!("{:.3}", self.idle_w)),
        ]
    }

    fn read(&mut self) -> Result<Reading, String> {
        let values = self.counter.read()?;
        Ok(Reading {
            at: Instant::now(),
            values,
        })
    }

    fn joules(&self, a: &Reading, b: &Reading) -> f64 {
        energy_between(&a.values, &b.values, &self.wraps) as f64 * 1e-6
    }

    /// Calls `between` until the counter changes; the reading just after the change. A
    /// counter that stops changing (many periods and a second) is an error.
    fn next_update(
        &mut self,
        between: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<Reading, String> {
        let first = self.read()?;
        let limit = self.period * 20 + Duration::from_secs(1);
        loop {
            between()?;
            let now = self.read()?;
            if now.values != first.values {
                return Ok(now);
            }
            if first.at.elapsed() > limit {
                return Err(format!(
                    "the energy counter {} stopped changing ({:.1} s without an update)",
                    self.counter.describe(),
                    limit.as_secs_f64()
                ));
            }
        }
    }

    /// One window of `kernel`'s runs: its energy per run above idle (µJ), its mean power (W)
    /// and its runs.
    fn window(
        &mut self,
        kernel: &mut dyn Kernel,
        length: Duration,
    ) -> Result<(f64, f64, u64), String> {
        let mut run = || kernel.run_untimed().map_err(|e| e.0);
        let start = self.next_update(&mut run)?;
        let mut runs = 0u64;
        while start.at.elapsed() < length {
            run()?;
            runs += 1;
        }
        let end = self.next_update(&mut || {
            runs += 1;
            run()
        })?;
        let seconds = (end.at - start.at).as_secs_f64();
        let joules = self.joules(&start, &end);
        let above_idle_uj = (joules - self.idle_w * seconds) * 1e6;
        Ok((above_idle_uj / runs as f64, joules / seconds, runs))
    }
}

impl EnergyMeter for Meter {
    fn per_run(&mut self, kernel: &mut dyn Kernel, run_us: f64) -> Result<Energy, KernelError> {
        // Long enough that the update at either end (known within one run) and the counter's
        // steps are small against the whole: >= 10 updates and >= 30 runs.
        let length = Duration::from_secs_f64(self.window_ms / 1e3)
            .max(self.period * 10)
            .max(Duration::from_secs_f64(run_us.max(0.0) * 30e-6));
        let mut per_run = Vec::new();
        let (mut power, mut runs) = (0.0, 0);
        for _ in 0..self.windows {
            let (uj, w, n) = self.window(kernel, length).map_err(KernelError)?;
            per_run.push(uj);
            power += w / self.windows as f64;
            runs += n;
        }
        per_run.sort_by(f64::total_cmp);
        let median = quantile_sorted(&per_run, 0.5);
        let spread =
            (per_run[per_run.len() - 1] - per_run[0]) / median.abs().max(f64::MIN_POSITIVE);
        Ok(Energy {
            per_run_uj: median,
            spread,
            power_w: power,
            windows: self.windows,
            runs,
        })
    }
}

/// Watch the counter while nothing runs: the median time between its updates and the
/// smallest step it took.
fn watch(counter: &mut dyn Counter, wraps: &[Option<u64>]) -> Result<(Duration, u64), String> {
    let started = Instant::now();
    let mut last = counter.read()?;
    let mut last_change: Option<Instant> = None;
    let (mut periods, mut min_step) = (Vec::new(), u64::MAX);
    while periods.len() < WATCHED_UPDATES && started.elapsed() < WATCH_LIMIT {
        std::thread::sleep(POLL);
        let now = counter.read()?;
        if now != last {
            let at = Instant::now();
            min_step = min_step.min(energy_between(&last, &now, wraps));
            if let Some(previous) = last_change {
                periods.push((at - previous).as_secs_f64());
            }
            last_change = Some(at);
            last = now;
        }
    }
    if periods.len() < 2 {
        return Err(format!(
            "the energy counter {} changed {} times in {} s: it is not counting",
            counter.describe(),
            periods.len() + usize::from(last_change.is_some()),
            WATCH_LIMIT.as_secs()
        ));
    }
    periods.sort_by(f64::total_cmp);
    Ok((
        Duration::from_secs_f64(quantile_sorted(&periods, 0.5)),
        min_step,
    ))
}
