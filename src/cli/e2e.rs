//! Measuring whole networks end to end, shared by `fit --calibrate`, `validate` and
//! `search --verify`.

use anyhow::Context;
use hwnas_profiler::backend::BackendError;
use hwnas_profiler::backend::ort::OrtRuntime;
use hwnas_profiler::device::{BackendKind, DeviceProfile};
use hwnas_profiler::gpu::runtime::GpuRuntime;
use hwnas_profiler::measure::{Kernel, MeasureConfig, measure_group};
use hwnas_profiler::network::Network;
use hwnas_profiler::op::{Precision, Tensor};
use hwnas_profiler::stats::Stats;
use indicatif::{ProgressBar, ProgressStyle};

/// A real device that runs whole networks.
pub enum Runtime {
    Ort(OrtRuntime),
    Gpu(Box<GpuRuntime>),
}

impl Runtime {
    fn prepare_network(&self, net: &Network) -> Result<Box<dyn Kernel>, BackendError> {
        match self {
            Runtime::Ort(rt) => rt.prepare_network(net),
            Runtime::Gpu(rt) => rt.prepare_network(net),
        }
    }

    /// A user's ONNX file with an input of `input`'s shape. ORT loads the file itself (external
    /// data included); the GPU runs hwnas's kernels on the file's own weights.
    fn prepare_file(
        &self,
        path: &std::path::Path,
        input: Tensor,
    ) -> anyhow::Result<Box<dyn Kernel>> {
        Ok(match self {
            Runtime::Ort(rt) => rt.prepare_file(path, input)?,
            Runtime::Gpu(rt) => {
                let model = hwnas_profiler::onnx::import::read_model(path)?;
                let data = hwnas_profiler::onnx::build::model_input(input);
                rt.prepare_model(&model, &path.display().to_string(), data)?
            }
        })
    }

    /// A network's latency as the device's table rows count an op's: ORT's wall time of a
    /// `Run` (what a deployment pays), a GPU's kernel time (timestamps, else wall).
    fn latency(&self, m: &hwnas_profiler::measure::Measurement) -> Stats {
        match self {
            Runtime::Ort(_) => m.wall,
            Runtime::Gpu(_) => m.stats,
        }
    }
}

/// The runtime of a device profile (end-to-end runs need a real device).
pub fn runtime(
    profile: &DeviceProfile,
    path: &std::path::Path,
    library: Option<&std::path::Path>,
) -> anyhow::Result<Runtime> {
    let context = || format!("device profile {}", path.display());
    match profile.backend {
        BackendKind::Ort => Ok(Runtime::Ort(
            OrtRuntime::new(&profile.ort, library)
                .with_context(context)?
                .with_precision(profile.precision),
        )),
        BackendKind::Wgpu => Ok(Runtime::Gpu(Box::new(
            GpuRuntime::new(&profile.wgpu).with_context(context)?,
        ))),
        BackendKind::Mock => anyhow::bail!(
            "device profile {} is the simulated device; networks are measured end to end on real devices only",
            path.display()
        ),
    }
}

/// A device profile and its runtime, for the commands that measure on it.
/// Networks hwnas builds are built at `precision` (the model's: what its table measured);
/// users' ONNX files run as they are.
pub fn open_device(
    path: &std::path::Path,
    library: Option<&std::path::Path>,
    precision: Precision,
) -> anyhow::Result<(DeviceProfile, Runtime)> {
    let profile = DeviceProfile::load(path)?
        .with_precision(precision)
        .map_err(|e| anyhow::anyhow!("device profile {}: {e}", path.display()))?;
    let rt = runtime(&profile, path, library)?;
    Ok((profile, rt))
}

/// Latency statistics of each ONNX file (one at a time: they are whole models).
pub fn measure_files(
    rt: &Runtime,
    files: &[(std::path::PathBuf, Tensor)],
    cfg: &MeasureConfig,
) -> anyhow::Result<Vec<Stats>> {
    let mut out = Vec::with_capacity(files.len());
    for (path, input) in files {
        let mut kernels = vec![rt.prepare_file(path, *input)?];
        let m = measure_group(&mut kernels, cfg)
            .remove(0)
            .map_err(|e| anyhow::anyhow!("measuring {}: {e}", path.display()))?;
        out.push(rt.latency(&m));
    }
    Ok(out)
}

/// Latency statistics of each network, measured in interleaved groups, with a progress bar
/// labelled `what`.
pub fn measure(
    rt: &Runtime,
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
            out.push(rt.latency(&m));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(out)
}
