//! The interface every device implements: a [`Backend`] prepares an op or a whole network
//! into a [`Kernel`], which is run many times; what one kernel's runs gave is a
//! [`Measurement`]. The measurement loop that drives kernels lives in `hwnas-profiler`; the
//! backends in `hwnas-profiler` (ONNX Runtime, mock) and `hwnas-gpu` (wgpu).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::network::Network;
use crate::op::{Op, Tensor};
use crate::stats::Stats;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    Unavailable(String),
    #[error("cannot prepare `{key}`: {message}")]
    Prepare { key: String, message: String },
    /// A user's file that cannot be read; the message names it.
    #[error("{0}")]
    File(String),
}

/// One node of a runtime's profile: its name as the runtime reports it (the name of the file's
/// node, or of the fused node that absorbed it), its op type and its median kernel time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeTime {
    pub name: String,
    pub op_type: String,
    pub us: f64,
}

/// A device that can run ops and whole networks.
pub trait Backend {
    /// Where the timings come from, recorded in every table (device, library, versions...).
    fn provenance(&self) -> Vec<(String, String)>;

    /// Build everything needed to run `op` (session, weights, buffers) once.
    fn prepare(&mut self, op: &Op) -> Result<Box<dyn Kernel>, BackendError>;

    /// Build the reference probe's kernel: only its run time is read (never `finish`), so a
    /// backend that times ops with extra work beside each run (ORT's profiled twin) leaves
    /// that work out here. By default the op's kernel.
    fn prepare_probe(&mut self, op: &Op) -> Result<Box<dyn Kernel>, BackendError> {
        self.prepare(op)
    }

    /// Build a whole network once, to time it end to end (as one model, the way it deploys).
    fn prepare_network(&mut self, net: &Network) -> Result<Box<dyn Kernel>, BackendError>;

    /// Build a user's ONNX file once, fed a seeded input of `input`'s shape.
    fn prepare_file(&mut self, path: &Path, input: Tensor)
    -> Result<Box<dyn Kernel>, BackendError>;

    /// Where a user's ONNX file spends its time, node by node as the runtime ran it (after its
    /// own fusions: a node here may stand for several of the file's): the median over `runs`
    /// profiled runs. `Ok(None)` where the backend has no per-node profile.
    fn profile_file_nodes(
        &mut self,
        path: &Path,
        input: Tensor,
        runs: usize,
    ) -> Result<Option<Vec<NodeTime>>, BackendError> {
        let _ = (path, input, runs);
        Ok(None)
    }

    /// A network's latency from its measurement, counted as this device's table rows count an
    /// op's: by default the run's time as the loop recorded it (what a deployment pays on a
    /// quiet machine), corrected by the probe.
    fn network_latency(&self, m: &Measurement) -> Stats {
        m.stats
    }

    /// True for a simulated device (no hardware behind its times).
    fn simulated(&self) -> bool {
        false
    }

    /// What a user should know about this device before trusting its times.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// The provider a table row records when the backend cannot tell which one ran the op.
    fn default_provider(&self) -> &str {
        ""
    }

    /// The device's energy counter, when energy is measured beside latency.
    fn energy_meter(&mut self) -> Option<&mut dyn EnergyMeter> {
        None
    }
}

/// Energy per run of a kernel, read from a counter the device keeps (RAPL, NVML).
pub trait EnergyMeter {
    /// Run `kernel` for windows long enough for the counter to measure, and return the energy
    /// one run costs above the device's idle power. `run_us` is the run's time, as measured.
    fn per_run(&mut self, kernel: &mut dyn Kernel, run_us: f64) -> Result<Energy, KernelError>;
}

/// What an [`EnergyMeter`] measured for one kernel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Energy {
    /// Median over the windows of the energy per run above idle, in microjoules.
    pub per_run_uj: f64,
    /// Spread over the windows: (max - min) / median.
    pub spread: f64,
    /// Mean power while the kernel ran, idle included, in watts.
    pub power_w: f64,
    /// Windows measured and runs in them, all together.
    pub windows: u32,
    pub runs: u64,
}

/// Something that can run one op once. Prepared once (session, buffers, weights); run many times.
pub trait Kernel {
    /// Run the op once and return the wall-clock time of the call.
    fn run(&mut self) -> Result<Duration, KernelError>;

    /// One run as a deployment makes it, untimed and unrecorded: what an energy window
    /// repeats. A kernel whose `run` does more (a profiled twin run, per-run records) does
    /// only the deployed run here.
    fn run_untimed(&mut self) -> Result<(), KernelError> {
        self.run().map(drop)
    }

    /// The CPU time the calling thread spent in the last run, for a kernel that does all its
    /// work on the calling thread (ONNX Runtime with one intra-op thread): unlike wall time, it
    /// does not count the time the OS gave another process on this core. `None` where the work
    /// runs elsewhere (a thread pool, a GPU) and only wall time is the run's latency.
    fn cpu_time_of_last_run(&self) -> Option<Duration> {
        None
    }

    /// Called once after the last run. Backends that can see inside a run report here the time
    /// each run cost as part of a network (see [`KernelReport`]).
    fn finish(&mut self) -> Result<KernelReport, KernelError> {
        Ok(KernelReport::default())
    }
}

/// What a backend learned about the runs after they ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KernelReport {
    /// Per run, in order, warm-ups included: the time of the op's own kernels, without the
    /// per-call overhead and the layout conversions at the graph's edges that a lone op pays
    /// but an op inside a network does not. In microseconds.
    pub in_network_us: Option<Vec<f64>>,
    /// Per run, the edge layout conversions that were left out, in microseconds.
    pub edge_reorder_us: Option<Vec<f64>>,
    /// The execution providers that really ran the op's nodes.
    pub providers: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct KernelError(pub String);

/// The result of measuring one op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// The latency the table records: in-network times when the backend reports them,
    /// otherwise the run's time (thread CPU time where the kernel reports it, else wall-clock);
    /// with the reference probe, corrected for the machine's speed (see [`Drift`]).
    pub stats: Stats,
    /// Wall-clock time of the whole call, as a user timing the lone op would see it.
    pub wall: Stats,
    /// Median edge layout conversion time that was excluded, when the backend reports it.
    pub edge_reorder_us: Option<f64>,
    pub providers: Vec<String>,
    /// True when `stats` are in-network times, false when they are wall-clock times.
    pub in_network: bool,
    /// True when the op stopped at `max_runs` or `max_ms` before its CI reached `target_ci`.
    pub capped: bool,
    /// The machine's speed while this was measured, when the reference probe ran beside it.
    #[serde(default)]
    pub drift: Option<Drift>,
    /// Energy per run, when the backend measured it (see [`EnergyMeter`]).
    #[serde(default)]
    pub energy: Option<Energy>,
}

/// What the reference probe saw next to one measurement. The probe is a fixed kernel run
/// before and after every batch of runs; each run is divided by the probe's time around its
/// batch, so a machine that slows down for a while slows the probe too and the ratio holds.
/// `stats` are then expressed at `probe_us`, the probe's median over this measurement, until
/// [`Measurement::at_probe_speed`] puts them at a table's nominal probe time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// Median time of the probe's runs next to this measurement's batches, in microseconds.
    pub probe_us: f64,
    /// Spread of those probe times: (p90 - p10) / median.
    pub probe_spread: f64,
    /// The latency before the correction (same basis as `stats`).
    pub raw: Stats,
}

impl Measurement {
    /// The measurement with `stats` expressed at a probe time of `nominal_us` (the speed a
    /// table was measured at): scaled by `nominal_us / probe_us`. Without a probe, unchanged.
    pub fn at_probe_speed(mut self, nominal_us: f64) -> Measurement {
        if let Some(d) = self.drift.filter(|d| d.probe_us > 0.0 && nominal_us > 0.0) {
            self.stats = self.stats.scaled(nominal_us / d.probe_us);
        }
        self
    }

    /// The latency before the probe's correction.
    pub fn raw(&self) -> Stats {
        self.drift.map_or(self.stats, |d| d.raw)
    }
}
