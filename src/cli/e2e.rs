//! Measuring whole networks end to end, shared by `fit --calibrate` and `validate`.

use anyhow::Context;
use hwnas_profiler::backend::ort::OrtRuntime;
use hwnas_profiler::device::{BackendKind, DeviceProfile};
use hwnas_profiler::measure::{MeasureConfig, measure_group};
use hwnas_profiler::network::Network;
use hwnas_profiler::stats::Stats;
use indicatif::{ProgressBar, ProgressStyle};

/// The ORT runtime of a device profile (end-to-end runs need a real device).
pub fn runtime(
    profile: &DeviceProfile,
    path: &std::path::Path,
    library: Option<&std::path::Path>,
) -> anyhow::Result<OrtRuntime> {
    if profile.backend != BackendKind::Ort {
        anyhow::bail!(
            "device profile {} has backend `{:?}`; networks are measured end to end on ORT devices only",
            path.display(),
            profile.backend
        );
    }
    OrtRuntime::new(&profile.ort, library)
        .with_context(|| format!("device profile {}", path.display()))
}

/// A device profile and its ORT runtime, for the commands that measure on it.
pub fn open_device(
    path: &std::path::Path,
    library: Option<&std::path::Path>,
) -> anyhow::Result<(DeviceProfile, OrtRuntime)> {
    let profile = DeviceProfile::load(path)?;
    let rt = runtime(&profile, path, library)?;
    Ok((profile, rt))
}

/// Wall-clock statistics of each network's `Run`, measured in interleaved groups, with a
/// progress bar labelled `what`.
pub fn measure(
    rt: &OrtRuntime,
    nets: &[Network],
    cfg: &MeasureConfig,
    what: &str,
) -> anyhow::Result<Vec<Stats>> {
    let bar = ProgressBar::new(nets.len() as u64).with_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} networks  {elapsed} elapsed, ETA {eta}  {msg}",
        )
        .expect("valid template"),
    );
    bar.set_message(what.to_string());
    let mut out = Vec::with_capacity(nets.len());
    for group in nets.chunks(cfg.interleave.max(1)) {
        let mut kernels = group
            .iter()
            .map(|n| rt.prepare_network(n))
            .collect::<Result<Vec<_>, _>>()?;
        for (net, result) in group.iter().zip(measure_group(&mut kernels, cfg)) {
            let m = result.map_err(|e| anyhow::anyhow!("measuring `{}`: {e}", net.name))?;
            out.push(m.wall);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(out)
}
