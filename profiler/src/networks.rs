//! Whole networks and users' ONNX files timed end to end, on any [`Backend`], with the same
//! measurement loop as single ops (`fit --calibrate`, `validate`, `search --verify`).

use std::path::PathBuf;

use hwnas_core::backend::{Backend, BackendError, KernelError};
use hwnas_core::network::Network;
use hwnas_core::op::Tensor;
use hwnas_core::stats::Stats;

use crate::measure::{MeasureConfig, measure_group};

#[derive(Debug, thiserror::Error)]
pub enum NetworkMeasureError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("measuring `{name}`: {error}")]
    Run { name: String, error: KernelError },
}

/// Latency statistics of each ONNX file, fed a seeded input of its shape (one at a time: they
/// are whole models).
pub fn measure_files(
    backend: &mut dyn Backend,
    files: &[(PathBuf, Tensor)],
    cfg: &MeasureConfig,
) -> Result<Vec<Stats>, NetworkMeasureError> {
    let mut out = Vec::with_capacity(files.len());
    for (path, input) in files {
        let mut kernels = vec![backend.prepare_file(path, *input)?];
        let m = measure_group(&mut kernels, cfg)
            .remove(0)
            .map_err(|error| NetworkMeasureError::Run {
                name: path.display().to_string(),
                error,
            })?;
        out.push(backend.network_latency(&m));
    }
    Ok(out)
}

/// Latency statistics of each network, measured `cfg.interleave` at a time in interleaved
/// rounds; `done` is called after each network.
pub fn measure_networks(
    backend: &mut dyn Backend,
    nets: &[Network],
    cfg: &MeasureConfig,
    done: &mut dyn FnMut(),
) -> Result<Vec<Stats>, NetworkMeasureError> {
    let mut out = Vec::with_capacity(nets.len());
    for group in nets.chunks(cfg.interleave.max(1)) {
        let mut kernels = group
            .iter()
            .map(|n| backend.prepare_network(n))
            .collect::<Result<Vec<_>, _>>()?;
        for (net, result) in group.iter().zip(measure_group(&mut kernels, cfg)) {
            let m = result.map_err(|error| NetworkMeasureError::Run {
                name: format!("`{}`", net.name),
                error,
            })?;
            out.push(backend.network_latency(&m));
            done();
        }
    }
    Ok(out)
}
