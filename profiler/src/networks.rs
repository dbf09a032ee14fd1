//! Whole networks and users' ONNX files timed end to end, on any [`Backend`], with the same
//! measurement loop as single ops (`fit --calibrate`, `validate`, `search --verify`).
//! A [`NetworkMeasurer`] is where that happens: a backend in this process
//! ([`crate::profile::InProcess`]), or a worker on a remote device ([`crate::worker::Worker`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use hwnas_core::backend::{
    Backend, BackendError, Drift, Energy, Kernel, KernelError, Measurement, NodeTime,
};
use hwnas_core::network::Network;
use hwnas_core::op::Tensor;
use hwnas_core::stats::Stats;

use crate::measure::{MeasureConfig, measure_group};
use crate::profile::{GroupMeasurer, prepare_probe};

#[derive(Debug, thiserror::Error)]
pub enum NetworkMeasureError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("measuring `{name}`: {error}")]
    Run { name: String, error: KernelError },
    /// The worker measuring them failed: lost, hung, refused, or the device said why.
    #[error("{0}")]
    Worker(String),
}

/// Where whole networks and users' files are timed end to end.
pub trait NetworkMeasurer: GroupMeasurer {
    /// Latency of each network, in interleaved rounds at `speed`; `done` after each.
    fn measure_networks(
        &mut self,
        nets: &[Network],
        cfg: &MeasureConfig,
        speed: Speed,
        done: &mut dyn FnMut(),
    ) -> Result<Vec<NetworkTime>, NetworkMeasureError>;

    /// Latency of each ONNX file, fed a seeded input of its shape, as `measure_networks`.
    fn measure_files(
        &mut self,
        files: &[(PathBuf, Tensor)],
        cfg: &MeasureConfig,
        speed: Speed,
        done: &mut dyn FnMut(),
    ) -> Result<Vec<NetworkTime>, NetworkMeasureError>;

    /// The runtime's node-by-node profile of a file (see [`Backend::profile_file_nodes`]).
    fn profile_file_nodes(
        &mut self,
        path: &Path,
        input: Tensor,
        runs: usize,
    ) -> Result<Option<Vec<NodeTime>>, NetworkMeasureError>;
}

/// The speed networks are measured at: the probe time of the table their predictions come
/// from (`None`: the table was measured without the probe, and so are they).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Speed {
    pub probe_nominal_us: Option<f64>,
}

/// One network's latency, raw and at the table's speed, and the probe beside it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NetworkTime {
    /// At the table's probe speed (what predictions are compared with).
    pub latency: Stats,
    /// Before the probe's correction.
    pub raw: Stats,
    /// The probe's median and spread beside it, when it ran.
    pub drift: Option<Drift>,
    /// Energy per inference, when the device measured it (not corrected by the probe).
    #[serde(default)]
    pub energy: Option<Energy>,
}

/// Latency of each ONNX file (named `names[i]` in errors), fed a seeded input of its shape, all
/// in interleaved rounds; `wrap` sees every kernel prepared, `done` is called after each file.
pub fn measure_files_wrapped(
    backend: &mut dyn Backend,
    files: &[(PathBuf, Tensor)],
    names: &[String],
    cfg: &MeasureConfig,
    speed: Speed,
    done: &mut dyn FnMut(),
    wrap: &mut dyn FnMut(Box<dyn Kernel>) -> Box<dyn Kernel>,
) -> Result<Vec<NetworkTime>, NetworkMeasureError> {
    measure_kernels(backend, names, cfg, speed, done, wrap, |b, i| {
        b.prepare_file(&files[i].0, files[i].1)
    })
}

/// Latency of each network, measured `cfg.interleave` at a time in interleaved rounds; `wrap`
/// sees every kernel prepared, `done` is called after each network.
pub fn measure_networks_wrapped(
    backend: &mut dyn Backend,
    nets: &[Network],
    cfg: &MeasureConfig,
    speed: Speed,
    done: &mut dyn FnMut(),
    wrap: &mut dyn FnMut(Box<dyn Kernel>) -> Box<dyn Kernel>,
) -> Result<Vec<NetworkTime>, NetworkMeasureError> {
    let names: Vec<String> = nets.iter().map(|n| format!("`{}`", n.name)).collect();
    measure_kernels(backend, &names, cfg, speed, done, wrap, |b, i| {
        b.prepare_network(&nets[i])
    })
}

/// Without a nominal speed the probe is not run: the table it is compared with had none.
fn measure_kernels(
    backend: &mut dyn Backend,
    names: &[String],
    cfg: &MeasureConfig,
    speed: Speed,
    done: &mut dyn FnMut(),
    wrap: &mut dyn FnMut(Box<dyn Kernel>) -> Box<dyn Kernel>,
    prepare: impl Fn(&mut dyn Backend, usize) -> Result<Box<dyn Kernel>, BackendError>,
) -> Result<Vec<NetworkTime>, NetworkMeasureError> {
    let cfg = match speed.probe_nominal_us {
        Some(_) => cfg.clone(),
        None => MeasureConfig {
            probe_runs: 0,
            ..cfg.clone()
        },
    };
    let mut probe = prepare_probe(backend, &cfg)?.map(&mut *wrap);
    let mut out = Vec::with_capacity(names.len());
    let indices: Vec<usize> = (0..names.len()).collect();
    for group in indices.chunks(cfg.interleave.max(1)) {
        let mut kernels = group
            .iter()
            .map(|&i| prepare(backend, i).map(&mut *wrap))
            .collect::<Result<Vec<_>, _>>()?;
        let measured = measure_group(
            &mut kernels,
            &cfg,
            probe.as_deref_mut(),
            backend.energy_meter(),
        );
        for (&i, result) in group.iter().zip(measured) {
            let m = result.map_err(|error| NetworkMeasureError::Run {
                name: names[i].clone(),
                error,
            })?;
            let raw = backend.network_latency(&Measurement {
                stats: m.raw(),
                ..m.clone()
            });
            let (drift, energy) = (m.drift, m.energy);
            let m = match speed.probe_nominal_us {
                Some(nominal) => m.at_probe_speed(nominal),
                None => m,
            };
            out.push(NetworkTime {
                latency: backend.network_latency(&m),
                raw,
                drift,
                energy,
            });
            done();
        }
    }
    Ok(out)
}
