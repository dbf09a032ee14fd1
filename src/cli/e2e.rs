//! Opening a device for whole networks, and measuring them with a progress bar; shared by
//! `fit --calibrate`, `validate` and `search --verify` (the measuring is
//! `hwnas_profiler::networks`).

use std::path::Path;

use anyhow::Context;
use hwnas_core::backend::Backend;
use hwnas_core::network::Network;
use hwnas_core::op::Precision;
use hwnas_profiler::backend;
use hwnas_profiler::device::DeviceProfile;
use hwnas_profiler::measure::MeasureConfig;
use hwnas_profiler::networks::{self, NetworkTime, Speed};
use indicatif::{ProgressBar, ProgressStyle};

/// The backend of a device profile, for end-to-end runs (which need a real device).
pub fn runtime(
    profile: &DeviceProfile,
    path: &Path,
    library: Option<&Path>,
) -> anyhow::Result<Box<dyn Backend>> {
    let backend = backend::open(profile, library)
        .with_context(|| format!("device profile {}", path.display()))?;
    if backend.simulated() {
        anyhow::bail!(
            "device profile {} is the simulated device; networks are measured end to end on real devices only",
            path.display()
        );
    }
    Ok(backend)
}

/// A device profile and its backend, for the commands that measure on it.
/// Networks hwnas builds are built at `precision` (the model's: what its table measured);
/// users' ONNX files run as they are.
pub fn open_device(
    path: &Path,
    library: Option<&Path>,
    precision: Precision,
) -> anyhow::Result<(DeviceProfile, Box<dyn Backend>)> {
    let profile = DeviceProfile::load(path)?
        .with_precision(precision)
        .map_err(|e| anyhow::anyhow!("device profile {}: {e}", path.display()))?;
    let rt = runtime(&profile, path, library)?;
    Ok((profile, rt))
}

/// [`measure`], then the first `repeat` networks (at most all) once more, labelled "noise
/// floor": how far a second timing of a network lands from its first.
pub fn measure_and_repeat(
    rt: &mut dyn Backend,
    nets: &[Network],
    cfg: &MeasureConfig,
    speed: Speed,
    what: &str,
    repeat: usize,
) -> anyhow::Result<(Vec<NetworkTime>, Vec<NetworkTime>)> {
    let times = measure(rt, nets, cfg, speed, what)?;
    let again = measure(
        rt,
        &nets[..repeat.min(nets.len())],
        cfg,
        speed,
        "noise floor",
    )?;
    Ok((times, again))
}

/// Latency of each network, measured in interleaved groups at `speed`, with a progress bar
/// labelled `what`.
pub fn measure(
    rt: &mut dyn Backend,
    nets: &[Network],
    cfg: &MeasureConfig,
    speed: Speed,
    what: &str,
) -> anyhow::Result<Vec<NetworkTime>> {
    let bar = ProgressBar::new(nets.len() as u64).with_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} networks  {elapsed} elapsed, ETA {eta}  {msg}",
        )
        .expect("valid template"),
    );
    bar.set_message(what.to_string());
    let out = networks::measure_networks(rt, nets, cfg, speed, &mut || bar.inc(1));
    bar.finish_and_clear();
    Ok(out?)
}
