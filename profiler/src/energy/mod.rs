//! Energy beside latency, where the device has a counter: RAPL (powercap files) on CPUs,
//! NVML's total-energy counter on NVIDIA GPUs.
//!
//! - [`EnergyConfig`] is a device profile's `[energy]` section (`hwnas profile --energy` turns
//!   it on); [`open_counter`] finds the counter it names.
//! - [`meter::Meter`] learns the counter's update period and the idle power, and measures a
//!   kernel's energy per run in windows aligned to the counter's updates.
//! - [`Metered`] puts a meter beside any backend ([`crate::backend::open`] does it when the
//!   profile asks), so the measurement loop measures energy after each op's latency.
//!
//! No counter, no energy: a machine without one gets an error that says so, never a number.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use hwnas_core::backend::{Backend, BackendError, EnergyMeter, Kernel, Measurement, NodeTime};
use hwnas_core::network::Network;
use hwnas_core::op::{Op, Tensor};
use hwnas_core::stats::Stats;

pub mod counter;
pub mod meter;
#[cfg(test)]
mod tests;

use counter::{Counter, Nvml, Powercap};
use meter::Meter;

/// Which counter measures energy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnergySource {
    /// The device's own: NVML first for a GPU (wgpu, ORT's CUDA or TensorRT EP), RAPL first
    /// for anything else; the other when the first is not there.
    Auto,
    Rapl,
    Nvml,
}

/// A device profile's `[energy]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnergyConfig {
    /// Measure energy beside latency (`hwnas profile --energy` sets it).
    pub enabled: bool,
    pub source: EnergySource,
    /// Where the powercap class is (another root only for a simulated counter).
    pub powercap: PathBuf,
    /// The GPU NVML reads.
    pub nvml_device: u32,
    /// Shortest window of an op's runs (longer when the counter's period asks for it).
    pub window_ms: f64,
    /// Windows per op; the median is kept.
    pub windows: u32,
    /// Length of each idle window.
    pub idle_ms: f64,
}

impl Default for EnergyConfig {
    fn default() -> Self {
        EnergyConfig {
            enabled: false,
            source: EnergySource::Auto,
            powercap: PathBuf::from("/sys/class/powercap"),
            nvml_device: 0,
            window_ms: 200.0,
            windows: 3,
            idle_ms: 500.0,
        }
    }
}

impl EnergyConfig {
    /// Check the numbers make sense; errors name the TOML key.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [("window_ms", self.window_ms), ("idle_ms", self.idle_ms)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("energy.{name} must be a positive number, got {v}"));
            }
        }
        if self.windows == 0 {
            return Err("energy.windows must be at least 1".into());
        }
        Ok(())
    }
}

/// The counter `cfg` names, for a device that is a GPU or not; the error says why none could
/// be opened (each source tried).
pub fn open_counter(cfg: &EnergyConfig, gpu: bool) -> Result<Box<dyn Counter>, String> {
    let rapl = || Powercap::open(&cfg.powercap).map(|c| Box::new(c) as Box<dyn Counter>);
    let nvml = || Nvml::open(cfg.nvml_device).map(|c| Box::new(c) as Box<dyn Counter>);
    let found = match (cfg.source, gpu) {
        (EnergySource::Rapl, _) => rapl(),
        (EnergySource::Nvml, _) => nvml(),
        (EnergySource::Auto, false) => {
            rapl().or_else(|r| nvml().map_err(|n| format!("RAPL: {r}; NVML: {n}")))
        }
        (EnergySource::Auto, true) => {
            nvml().or_else(|n| rapl().map_err(|r| format!("NVML: {n}; RAPL: {r}")))
        }
    };
    found.map_err(|why| {
        format!(
            "no energy counter on this machine, so energy cannot be measured (drop --energy, \
             or set [energy] source in the device profile): {why}"
        )
    })
}

/// Open the counter and learn it (update period, idle power): a few seconds.
fn open_meter(cfg: &EnergyConfig, gpu: bool) -> Result<(Meter, String), String> {
    let counter = open_counter(cfg, gpu)?;
    let name = counter.describe();
    Ok((Meter::open(counter, cfg)?, name))
}

/// Any backend with an energy meter beside it.
pub struct Metered {
    inner: Box<dyn Backend>,
    meter: Meter,
    counter_name: String,
}

impl Metered {
    /// `gpu`: the backend runs on a GPU, whose counter is NVML's rather than RAPL's.
    pub fn open(
        inner: Box<dyn Backend>,
        cfg: &EnergyConfig,
        gpu: bool,
    ) -> Result<Metered, BackendError> {
        if inner.simulated() {
            return Err(BackendError::Unavailable(
                "a simulated device has no energy to measure (drop --energy)".into(),
            ));
        }
        let (meter, counter_name) = open_meter(cfg, gpu).map_err(BackendError::Unavailable)?;
        Ok(Metered {
            inner,
            meter,
            counter_name,
        })
    }
}

impl Backend for Metered {
    fn provenance(&self) -> Vec<(String, String)> {
        let mut p = self.inner.provenance();
        p.extend(self.meter.provenance(&self.counter_name));
        p
    }

    fn prepare(&mut self, op: &Op) -> Result<Box<dyn Kernel>, BackendError> {
        self.inner.prepare(op)
    }

    fn prepare_probe(&mut self, op: &Op) -> Result<Box<dyn Kernel>, BackendError> {
        self.inner.prepare_probe(op)
    }

    fn prepare_network(&mut self, net: &Network) -> Result<Box<dyn Kernel>, BackendError> {
        self.inner.prepare_network(net)
    }

    fn prepare_file(
        &mut self,
        path: &Path,
        input: Tensor,
    ) -> Result<Box<dyn Kernel>, BackendError> {
        self.inner.prepare_file(path, input)
    }

    fn profile_file_nodes(
        &mut self,
        path: &Path,
        input: Tensor,
        runs: usize,
    ) -> Result<Option<Vec<NodeTime>>, BackendError> {
        self.inner.profile_file_nodes(path, input, runs)
    }

    fn network_latency(&self, m: &Measurement) -> Stats {
        self.inner.network_latency(m)
    }

    fn simulated(&self) -> bool {
        self.inner.simulated()
    }

    fn notes(&self) -> Vec<String> {
        self.inner.notes()
    }

    fn default_provider(&self) -> &str {
        self.inner.default_provider()
    }

    fn energy_meter(&mut self) -> Option<&mut dyn EnergyMeter> {
        Some(&mut self.meter)
    }
}
