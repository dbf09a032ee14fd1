//! Opening a device, and measuring whole networks on it with a progress bar; shared by
//! `fit --calibrate`, `validate` and `search --verify` (the measuring is
//! `hwnas_profiler::networks`). A `[remote]` device is measured by a worker on it, the same
//! one `profile` uses ([`start_worker`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hwnas_core::network::Network;
use hwnas_core::op::{Precision, Tensor};
use hwnas_core::stats::quantile_sorted;
use hwnas_profiler::device::{BackendKind, DeviceProfile};
use hwnas_profiler::measure::MeasureConfig;
use hwnas_profiler::networks::{NetworkMeasureError, NetworkMeasurer, NetworkTime, Speed};
use hwnas_profiler::passes::{Passes, in_passes};
use hwnas_profiler::profile::InProcess;
use hwnas_profiler::worker::{Launch, Worker};
use indicatif::{ProgressBar, ProgressStyle};

/// A worker measuring on `profile`'s device: through its `[remote] command`, or this
/// executable on this machine. The device's notes are printed.
pub fn start_worker(
    profile: &DeviceProfile,
    path: &Path,
    library: Option<&Path>,
) -> anyhow::Result<Worker> {
    let launch = match &profile.remote {
        Some(remote) => Launch::remote(remote),
        None => Launch::local(
            std::env::current_exe()
                .context("locating the hwnas executable to measure in a worker process")?,
        ),
    };
    let timeout = Duration::from_secs_f64(worker_timeout_ms(profile) / 1e3);
    let worker = Worker::start(launch, profile, library.map(Path::to_path_buf), timeout)
        .with_context(|| format!("device profile {}", path.display()))?;
    for note in &worker.ready().notes {
        eprintln!("note: {note}");
    }
    Ok(worker)
}

/// The longest one step may take in a worker: ONNX Runtime's `timeout_ms`; a GPU's own
/// deadline stops its kernels first, with a minute to spare for building pipelines.
fn worker_timeout_ms(profile: &DeviceProfile) -> f64 {
    match profile.backend {
        BackendKind::Ort => profile.ort.timeout_ms,
        _ => 2.0 * profile.wgpu.timeout_ms + 60_000.0,
    }
}

/// The device of a profile, for end-to-end runs (which need a real device): a worker on a
/// `[remote]` device, else the backend in this process.
pub fn open(
    profile: &DeviceProfile,
    path: &Path,
    library: Option<&Path>,
) -> anyhow::Result<Box<dyn NetworkMeasurer>> {
    let device: Box<dyn NetworkMeasurer> = match profile.remote {
        Some(_) => Box::new(start_worker(profile, path, library)?),
        None => Box::new(InProcess(super::profile::open_backend(
            profile, library, path,
        )?)),
    };
    if device.simulated() {
        anyhow::bail!(
            "device profile {} is the simulated device; networks are measured end to end on real devices only",
            path.display()
        );
    }
    Ok(device)
}

/// A device profile and its device, for the commands that measure on it.
/// Networks hwnas builds are built at `precision` (the model's: what its table measured);
/// users' ONNX files run as they are. With `energy` (a model that predicts it), networks'
/// energy is measured too.
pub fn open_device(
    path: &Path,
    library: Option<&Path>,
    precision: Precision,
    energy: bool,
) -> anyhow::Result<(DeviceProfile, Box<dyn NetworkMeasurer>)> {
    let mut profile = DeviceProfile::load(path)?
        .with_precision(precision)
        .map_err(|e| anyhow::anyhow!("device profile {}: {e}", path.display()))?;
    profile.energy.enabled |= energy;
    let device = open(&profile, path, library)?;
    Ok((profile, device))
}

/// Networks (or files) measured end to end: their times, and the passes it took.
pub struct Measured {
    pub times: Vec<NetworkTime>,
    pub passes: Passes,
}

/// [`measure`], then the first `repeat` networks (at most all) once more, labelled "noise
/// floor": how far a second timing of a network lands from its first.
pub fn measure_and_repeat(
    device: &mut dyn NetworkMeasurer,
    nets: &[Network],
    cfg: &MeasureConfig,
    speed: Speed,
    what: &str,
    repeat: usize,
) -> anyhow::Result<(Measured, Measured)> {
    let times = measure(device, nets, cfg, speed, what)?;
    let again = measure(
        device,
        &nets[..repeat.min(nets.len())],
        cfg,
        speed,
        "noise floor",
    )?;
    Ok((times, again))
}

/// Latency of each network, measured in interleaved groups at `speed` and again later where
/// its median is not yet within `cfg.target_ci` ([`in_passes`]), with a progress bar labelled
/// `what`.
pub fn measure(
    device: &mut dyn NetworkMeasurer,
    nets: &[Network],
    cfg: &MeasureConfig,
    speed: Speed,
    what: &str,
) -> anyhow::Result<Measured> {
    with_progress(nets, cfg, what, |subset, done| {
        device.measure_networks(subset, cfg, speed, done)
    })
}

/// [`measure`] for ONNX files, each fed a seeded input of its shape.
pub fn measure_files(
    device: &mut dyn NetworkMeasurer,
    files: &[(PathBuf, Tensor)],
    cfg: &MeasureConfig,
    speed: Speed,
    what: &str,
) -> anyhow::Result<Measured> {
    with_progress(files, cfg, what, |subset, done| {
        device.measure_files(subset, cfg, speed, done)
    })
}

fn with_progress<T: Clone>(
    items: &[T],
    cfg: &MeasureConfig,
    what: &str,
    mut run: impl FnMut(&[T], &mut dyn FnMut()) -> Result<Vec<NetworkTime>, NetworkMeasureError>,
) -> anyhow::Result<Measured> {
    let bar = ProgressBar::new(items.len() as u64).with_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} networks  {elapsed} elapsed, ETA {eta}  {msg}",
        )
        .expect("valid template"),
    );
    bar.set_message(what.to_string());
    let (times, passes) = in_passes(
        items,
        cfg,
        |subset| run(subset, &mut || bar.inc(1)),
        |pass, n| {
            bar.inc_length(n as u64);
            bar.set_message(format!(
                "{what}, pass {pass}: {n} not yet within ±{:.1}%",
                100.0 * cfg.target_ci
            ));
        },
    )?;
    bar.finish_and_clear();
    Ok(Measured { times, passes })
}

impl Measured {
    /// How precise the times are, for a report: the median interval, the target, the passes.
    pub fn precision_json(&self, cfg: &MeasureConfig) -> serde_json::Value {
        let mut ci: Vec<f64> = self.times.iter().map(|t| t.latency.ci_rel).collect();
        ci.sort_by(f64::total_cmp);
        serde_json::json!({
            "median_ci": (!ci.is_empty()).then(|| quantile_sorted(&ci, 0.5)),
            "target_ci": cfg.target_ci,
            "passes": self.passes.passes,
            "remeasured": self.passes.remeasured,
            "still_wide": self.passes.still_wide,
            "later_passes": cfg.later_passes,
        })
    }
}

/// The line a report prints for [`Measured::precision_json`].
pub fn precision_line(p: &serde_json::Value) -> Option<String> {
    let f = |k: &str| p[k].as_f64();
    let count = |k: &str| p[k].as_u64().unwrap_or(0);
    let later = count("passes").saturating_sub(1);
    let passes = match (later, count("still_wide")) {
        (0, 0) => "every one within it in one pass".to_string(),
        (0, wide) => format!("{wide} wider, not measured again (later_passes = 0)"),
        (_, wide) => format!(
            "{} measured again in {later} later pass(es), {wide} still wider",
            count("remeasured")
        ),
    };
    // No interval: fewer than 6 runs a network (a profile's `min_runs`).
    let median = f("median_ci").map_or("no interval".into(), |ci| format!("±{:.2}%", 100.0 * ci));
    Some(format!(
        "  precision  {median:>12}  median 95% interval of the medians (target ±{:.2}%); {passes}",
        100.0 * f("target_ci")?,
    ))
}
