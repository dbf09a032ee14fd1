//! ONNX Runtime backend: each op becomes a small ONNX model in memory, run in a session with the
//! device profile's execution provider, threads and optimisation level.
//!
//! **What a table entry means.** A lone op pays costs that the same op inside a network does not:
//! the per-`Run` overhead, and at optimisation level `all` on the CPU the conversions between
//! NCHW and the blocked NCHWc layout (`ReorderInput` / `ReorderOutput`) at the graph's edges —
//! inside a network the tensor stays blocked from one conv to the next. So every op runs in two
//! sessions, one right after the other:
//! - a plain one, timed by the wall clock: `W`, what a user timing the lone op sees;
//! - one with ORT's profiler on, whose node events give the share of kernel time spent in a
//!   leading `ReorderInput` or a trailing `ReorderOutput`: `edge`. Conversions in the middle of
//!   a block (around an SE multiply) are not edges: a network pays them too.
//!
//! The in-network latency of a run is `(W - overhead) * (1 - edge)`, where `overhead` is the
//! wall time of a `Run` of a one-element `Add`, measured once per runtime. The profiler's own
//! times are not used directly: it inflates each node by one to several microseconds (on this
//! machine a one-element `Add` reads 4 us in the profile), which would bias every multi-node
//! block upward.
//!
//! The profile also says which execution provider really ran each node; the table records it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::ep;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::Tensor;

use super::{Backend, BackendError};
use crate::device::{OptLevel, OrtSettings};
use hwnas_core::backend::NodeTime;
use hwnas_core::backend::{Kernel, KernelError, KernelReport};
use hwnas_core::network::Network;
use hwnas_core::op::{Op, Precision};
use hwnas_onnx::{self as onnx, NetworkModel};

mod kernels;
mod library;
mod optimized;
mod trace;

use kernels::{ModelSource, NetworkKernel, OrtKernel};
pub use library::{available_providers, find_library, library_candidates, provider_name};
use library::{library_version, load};
use trace::latency_basis;
pub use trace::{ProfiledRun, edge_conversions, node_times, parse_profile};

/// A loaded ONNX Runtime library and the settings sessions are created with.
pub struct OrtRuntime {
    env: Environment,
    settings: OrtSettings,
    library: PathBuf,
    version: String,
    profile_dir: PathBuf,
    run_overhead_us: f64,
    precision: Precision,
}

impl OrtRuntime {
    /// Sessions of ORT's CPU EP with one intra-op thread run every kernel on the calling
    /// thread, so that thread's CPU time is the run's time without the OS's other tenants.
    fn cpu_clock(&self) -> kernels::CpuClock {
        kernels::CpuClock {
            on_calling_thread: self.settings.intra_threads == 1
                && provider_name(&self.settings.execution_provider) == "CPUExecutionProvider",
            last: None,
        }
    }

    /// Load ONNX Runtime and check that the requested execution provider is there.
    /// `library` overrides the profile's `ort.library`.
    pub fn new(settings: &OrtSettings, library: Option<&Path>) -> Result<OrtRuntime, BackendError> {
        let path = find_library(library.or(settings.library.as_deref()))?;
        let env = load(&path)?;
        let version = library_version(&path);
        let wanted = provider_name(&settings.execution_provider);
        let available = available_providers()?;
        if !available.contains(&wanted) {
            return Err(BackendError::Unavailable(format!(
                "execution provider `{}` ({wanted}) is not in the ONNX Runtime library at {} \
                 (version {version}); it has: {}. Fix `ort.execution_provider` in the device \
                 profile, or point `ort.library` / --ort-library at a build that has it",
                settings.execution_provider,
                path.display(),
                available.join(", ")
            )));
        }
        // Fail now, naming the profile's keys, rather than on the first op.
        Self::execution_provider(settings).map_err(BackendError::Unavailable)?;
        static RUNTIMES: AtomicUsize = AtomicUsize::new(0);
        remove_dead_processes_dirs(&std::env::temp_dir());
        let profile_dir = std::env::temp_dir().join(format!(
            "{PROFILE_DIR_PREFIX}{}-{}",
            std::process::id(),
            RUNTIMES.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&profile_dir).map_err(|e| {
            BackendError::Unavailable(format!("cannot create {}: {e}", profile_dir.display()))
        })?;
        let mut rt = OrtRuntime {
            env,
            settings: settings.clone(),
            library: path,
            version,
            profile_dir,
            run_overhead_us: 0.0,
            precision: Precision::Fp32,
        };
        rt.run_overhead_us = rt.measure_run_overhead()?;
        Ok(rt)
    }

    /// Build ops and networks at `precision` (fp32 unless told).
    pub fn with_precision(mut self, precision: Precision) -> OrtRuntime {
        self.precision = precision;
        self
    }

    /// An op's model at this runtime's precision.
    fn op_model(&self, op: &Op) -> Result<hwnas_onnx::ModelProto, String> {
        let model = onnx::op_model(op).map_err(|e| e.to_string())?;
        Ok(onnx::precision::convert(&model, self.precision))
    }

    /// A network's model at this runtime's precision.
    fn network_model(&self, net: &Network) -> Result<hwnas_onnx::ModelProto, String> {
        let model = net.to_onnx().map_err(|e| e.to_string())?;
        Ok(onnx::precision::convert(&model, self.precision))
    }

    /// The wall time of a `Run` whose kernel does (almost) nothing: a one-element `Add`.
    fn measure_run_overhead(&self) -> Result<f64, BackendError> {
        let null = Op::Add(hwnas_core::op::Tensor::new(1, 1, 1, 1));
        let model = onnx::op_model(&null).map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let fail =
            |m: String| BackendError::Unavailable(format!("measuring the ORT run overhead: {m}"));
        let mut session = self
            .session(ModelSource::Bytes(&model.to_bytes()), None)
            .map_err(fail)?;
        let inputs = input_tensors(&null, &onnx::op_inputs(&null, 0)).map_err(fail)?;
        let mut samples = Vec::with_capacity(500);
        for i in 0..600 {
            let feed: Vec<(&str, &Tensor<f32>)> = onnx::INPUT_NAMES
                .iter()
                .copied()
                .zip(inputs.iter())
                .collect();
            let start = Instant::now();
            drop(session.run(feed).map_err(|e| fail(e.to_string()))?);
            if i >= 100 {
                samples.push(start.elapsed().as_secs_f64() * 1e6);
            }
        }
        Ok(hwnas_core::stats::Stats::from_samples(&samples).map_or(0.0, |s| s.median))
    }

    /// The per-`Run` overhead subtracted from every op's wall time, in microseconds.
    pub fn run_overhead_us(&self) -> f64 {
        self.run_overhead_us
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The execution provider a profile names, with its `ort.options` passed through as key/values.
    /// Registration failing is an error (`error_on_failure`): ORT would otherwise run every node
    /// on the CPU under the EP's name. Nodes the EP does not take still fall back to the CPU EP;
    /// the placement check in the profile finds them.
    fn execution_provider(settings: &OrtSettings) -> Result<ep::ExecutionProviderDispatch, String> {
        use ep::ArbitrarilyConfigurableExecutionProvider;
        fn configured<E: ArbitrarilyConfigurableExecutionProvider>(
            mut ep: E,
            options: &std::collections::BTreeMap<String, String>,
        ) -> E {
            for (k, v) in options {
                ep = ep.with_arbitrary_config(k, v);
            }
            ep
        }
        let options = &settings.options;
        let no_options = |name: &str| {
            if options.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "the {name} execution provider takes no `ort.options` here (got: {})",
                    options.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
        };
        let dispatch = match settings.execution_provider.to_ascii_lowercase().as_str() {
            "cpu" => {
                no_options("CPU")?;
                // ORT's own default is the arena allocator; `ort`'s CPU EP turns it off unless
                // asked, and without it every run page-faults fresh output buffers.
                ep::CPU::default().with_arena_allocator(true).build()
            }
            "openvino" => configured(ep::OpenVINO::default(), options).build(),
            "cuda" => configured(ep::CUDA::default(), options).build(),
            "tensorrt" => configured(ep::TensorRT::default(), options).build(),
            "qnn" => configured(ep::QNN::default(), options).build(),
            "rocm" => configured(ep::ROCm::default(), options).build(),
            "xnnpack" => configured(ep::XNNPACK::default(), options).build(),
            "cann" => configured(ep::CANN::default(), options).build(),
            "coreml" => configured(ep::CoreML::default(), options).build(),
            "webgpu" => configured(ep::WebGPU::default(), options).build(),
            "migraphx" => {
                no_options("MIGraphX")?;
                ep::MIGraphX::default().build()
            }
            "directml" | "dml" => {
                no_options("DirectML")?;
                ep::DirectML::default().build()
            }
            "nnapi" => {
                no_options("NNAPI")?;
                ep::NNAPI::default().build()
            }
            other => {
                return Err(format!(
                    "execution provider `{other}` is not one hwnas registers (cpu, openvino, cuda, \
                 tensorrt, qnn, rocm, migraphx, xnnpack, cann, coreml, directml, nnapi, webgpu)"
                ));
            }
        };
        Ok(dispatch.error_on_failure())
    }

    /// A session for a user's file (profiling to `profile` if given), its input's name, and a
    /// seeded input of `input`'s shape. A structure-only file (weights dropped to share it)
    /// runs with seeded weights; any other from its path, so that ORT finds external data.
    fn file_session(
        &self,
        path: &Path,
        input: hwnas_core::op::Tensor,
        profile: Option<&Path>,
    ) -> Result<(Session, String, Tensor<f32>), BackendError> {
        let err = |message: String| file_error(path, message);
        let mut model = onnx::import::read_model(path).map_err(|e| err(e.to_string()))?;
        let session = if onnx::weights::seed_missing(&mut model, 0) > 0 {
            self.session(ModelSource::Bytes(&model.to_bytes()), profile)
        } else {
            self.session(ModelSource::File(path), profile)
        }
        .map_err(err)?;
        let name = session
            .inputs()
            .first()
            .map(|i| i.name().to_string())
            .ok_or_else(|| err("the model has no input".into()))?;
        let x = Tensor::from_array((input.shape(), onnx::build::model_input(input)))
            .map_err(|e| err(e.to_string()))?;
        Ok((session, name, x))
    }

    /// A session for `model` with this runtime's settings; profiling to `profile` if given.
    fn session(&self, model: ModelSource<'_>, profile: Option<&Path>) -> Result<Session, String> {
        let mut builder = self.builder()?;
        if let Some(p) = profile {
            builder = builder.with_profiling(p).map_err(|e| e.to_string())?;
        }
        match model {
            ModelSource::Bytes(bytes) => builder.commit_from_memory(bytes),
            ModelSource::File(path) => builder.commit_from_file(path),
        }
        .map_err(|e| e.to_string())
    }

    /// A session builder with this runtime's provider, optimisation level and threads.
    fn builder(&self) -> Result<SessionBuilder, String> {
        let level = match self.settings.optimization {
            OptLevel::Disable => GraphOptimizationLevel::Disable,
            OptLevel::Basic => GraphOptimizationLevel::Level1,
            OptLevel::Extended => GraphOptimizationLevel::Level2,
            OptLevel::All => GraphOptimizationLevel::All,
        };
        let e = |e: ort::Error<_>| e.to_string();
        Session::builder(&self.env)
            .map_err(|e| e.to_string())?
            // ORT's own default is the arena allocator; `ort`'s CPU EP turns it off unless asked,
            // and without it every run page-faults fresh output buffers.
            .with_execution_providers([Self::execution_provider(&self.settings)?])
            .map_err(e)?
            .with_optimization_level(level)
            .map_err(e)?
            .with_intra_threads(self.settings.intra_threads)
            .map_err(e)?
            .with_inter_threads(self.settings.inter_threads)
            .map_err(e)
    }

    /// Run a whole network once and return its output (conformance checks).
    pub fn infer_network(
        &self,
        net: &Network,
        input: &[f32],
    ) -> Result<(Vec<i64>, Vec<f32>), BackendError> {
        let err = |message: String| BackendError::Prepare {
            key: net.name.clone(),
            message,
        };
        let model = self.network_model(net).map_err(err)?;
        let mut session = self
            .session(ModelSource::Bytes(&model.to_bytes()), None)
            .map_err(err)?;
        let dims = net.input.shape();
        let x = Tensor::from_array((dims, input.to_vec())).map_err(|e| err(e.to_string()))?;
        let out = session
            .run(vec![(onnx::INPUT_NAMES[0], &x)])
            .map_err(|e| err(e.to_string()))?;
        let (shape, data) = out[onnx::OUTPUT_NAME]
            .try_extract_tensor::<f32>()
            .map_err(|e| err(e.to_string()))?;
        Ok((shape.to_vec(), data.to_vec()))
    }

    /// Run any one-input model once and return its first output (conformance checks).
    pub fn infer_model(
        &self,
        model: &hwnas_onnx::ModelProto,
        input: hwnas_core::op::Tensor,
        data: &[f32],
    ) -> Result<Vec<f32>, BackendError> {
        let err = |message: String| BackendError::Prepare {
            key: model.doc_string.clone(),
            message,
        };
        let mut session = self
            .session(ModelSource::Bytes(&model.to_bytes()), None)
            .map_err(err)?;
        let name = session
            .inputs()
            .first()
            .map(|i| i.name().to_string())
            .ok_or_else(|| err("the model has no input".into()))?;
        let x =
            Tensor::from_array((input.shape(), data.to_vec())).map_err(|e| err(e.to_string()))?;
        let out = session
            .run(vec![(name.as_str(), &x)])
            .map_err(|e| err(e.to_string()))?;
        let (_, values) = out[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| err(e.to_string()))?;
        Ok(values.to_vec())
    }

    /// Run an op's model once on the given inputs and return its output (conformance checks).
    pub fn infer(
        &self,
        op: &Op,
        inputs: &[Vec<f32>],
    ) -> Result<(Vec<i64>, Vec<f32>), BackendError> {
        let err = |message: String| BackendError::Prepare {
            key: op.key(),
            message,
        };
        let model = self.op_model(op).map_err(err)?;
        let mut session = self
            .session(ModelSource::Bytes(&model.to_bytes()), None)
            .map_err(err)?;
        let tensors = input_tensors(op, inputs).map_err(err)?;
        let feed: Vec<(&str, &Tensor<f32>)> = onnx::INPUT_NAMES
            .iter()
            .copied()
            .zip(tensors.iter())
            .collect();
        let out = session.run(feed).map_err(|e| err(e.to_string()))?;
        let (shape, data) = out[onnx::OUTPUT_NAME]
            .try_extract_tensor::<f32>()
            .map_err(|e| err(e.to_string()))?;
        Ok((shape.to_vec(), data.to_vec()))
    }
}

/// `{temp}/hwnas-ort-{pid}-{n}`: where a runtime's ORT profiles go while it reads them.
const PROFILE_DIR_PREFIX: &str = "hwnas-ort-";

/// The profile folders of hwnas processes that no longer run. A runtime removes its own when
/// dropped, but a worker killed for a hung kernel cannot; its successor cleans up after it.
/// Only where `/proc` tells which processes run (Linux).
fn remove_dead_processes_dirs(temp: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    for entry in std::fs::read_dir(temp).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(PROFILE_DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for OrtRuntime {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile_dir);
    }
}

fn input_tensors(op: &Op, inputs: &[Vec<f32>]) -> Result<Vec<Tensor<f32>>, String> {
    op.input_shapes()
        .iter()
        .zip(inputs)
        .map(|(t, v)| Tensor::from_array((t.shape(), v.clone())).map_err(|e| e.to_string()))
        .collect()
}

impl Backend for OrtRuntime {
    fn provenance(&self) -> Vec<(String, String)> {
        let s = &self.settings;
        vec![
            ("backend".into(), "ort".into()),
            ("ort_version".into(), self.version.clone()),
            ("ort_library".into(), self.library.display().to_string()),
            (
                "execution_provider".into(),
                provider_name(&s.execution_provider),
            ),
            (
                "ep_options".into(),
                s.options
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(";"),
            ),
            ("intra_threads".into(), s.intra_threads.to_string()),
            ("inter_threads".into(), s.inter_threads.to_string()),
            ("optimization".into(), s.optimization.name().into()),
            ("latency_basis".into(), latency_basis(self.precision)),
            (
                "run_overhead_us".into(),
                format!("{:.2}", self.run_overhead_us),
            ),
        ]
    }

    fn prepare(&mut self, op: &Op) -> Result<Box<dyn Kernel>, BackendError> {
        let err = |message: String| BackendError::Prepare {
            key: op.key(),
            message,
        };
        let model = self.op_model(op).map_err(err)?;
        static SESSIONS: AtomicUsize = AtomicUsize::new(0);
        let prefix = self
            .profile_dir
            .join(format!("op{}", SESSIONS.fetch_add(1, Ordering::Relaxed)));
        let bytes = model.to_bytes();
        let plain = self
            .session(ModelSource::Bytes(&bytes), None)
            .map_err(err)?;
        let profiled = self
            .session(ModelSource::Bytes(&bytes), Some(&prefix))
            .map_err(err)?;
        let inputs = input_tensors(op, &onnx::op_inputs(op, 0)).map_err(err)?;
        Ok(Box::new(OrtKernel {
            plain,
            profiled,
            inputs,
            walls_us: Vec::new(),
            run_overhead_us: self.run_overhead_us,
            precision: self.precision,
            cpu: self.cpu_clock(),
            profile_ended: false,
        }))
    }

    /// One plain session, timed like a network: the probe's time is all that is read, and a
    /// profiled twin run after each probe run would cost as much again and change what the
    /// next op's batch finds in the caches.
    fn prepare_probe(&mut self, op: &Op) -> Result<Box<dyn Kernel>, BackendError> {
        let err = |message: String| BackendError::Prepare {
            key: op.key(),
            message,
        };
        let model = self.op_model(op).map_err(err)?;
        let session = self
            .session(ModelSource::Bytes(&model.to_bytes()), None)
            .map_err(err)?;
        let inputs = input_tensors(op, &onnx::op_inputs(op, 0)).map_err(err)?;
        if inputs.len() != 1 {
            return Err(err(format!(
                "the probe must take one input, this op takes {}",
                inputs.len()
            )));
        }
        Ok(Box::new(NetworkKernel {
            session,
            input_name: onnx::INPUT_NAMES[0].into(),
            inputs,
            cpu: self.cpu_clock(),
        }))
    }

    /// The file run `runs` times with ORT's profiler on: each node's median kernel time.
    fn profile_file_nodes(
        &mut self,
        path: &std::path::Path,
        input: hwnas_core::op::Tensor,
        runs: usize,
    ) -> Result<Option<Vec<NodeTime>>, BackendError> {
        let err = |message: String| file_error(path, message);
        let prefix = self.profile_dir.join("file");
        let (mut session, name, x) = self.file_session(path, input, Some(&prefix))?;
        for _ in 0..runs.max(1) {
            session
                .run(vec![(name.as_str(), &x)])
                .map_err(|e| err(e.to_string()))?;
        }
        let file = session.end_profiling().map_err(|e| err(e.to_string()))?;
        let text = std::fs::read_to_string(&file).map_err(|e| err(format!("{file}: {e}")));
        let _ = std::fs::remove_file(&file);
        node_times(&text?).map(Some).map_err(err)
    }

    /// An ONNX file (external data beside it is found by ORT), timed end to end like a network:
    /// the wall time of a `Run` on a seeded input of `input`'s shape.
    fn prepare_file(
        &mut self,
        path: &std::path::Path,
        input: hwnas_core::op::Tensor,
    ) -> Result<Box<dyn Kernel>, BackendError> {
        let (session, input_name, x) = self.file_session(path, input, None)?;
        Ok(Box::new(NetworkKernel {
            session,
            input_name,
            inputs: vec![x],
            cpu: self.cpu_clock(),
        }))
    }

    /// A whole network, timed end to end: the wall time of a `Run`, as a deployment pays it.
    fn prepare_network(&mut self, net: &Network) -> Result<Box<dyn Kernel>, BackendError> {
        let err = |message: String| BackendError::Prepare {
            key: net.name.clone(),
            message,
        };
        let model = self.network_model(net).map_err(err)?;
        let session = self
            .session(ModelSource::Bytes(&model.to_bytes()), None)
            .map_err(err)?;
        let first = net
            .nodes
            .first()
            .map(|n| n.op)
            .ok_or_else(|| err("the network is empty".into()))?;
        let inputs = input_tensors(&first, &onnx::op_inputs(&first, 1)[..1]).map_err(err)?;
        Ok(Box::new(NetworkKernel {
            session,
            input_name: onnx::INPUT_NAMES[0].into(),
            inputs,
            cpu: self.cpu_clock(),
        }))
    }
}

/// An error preparing a user's file, named by its path.
fn file_error(path: &Path, message: String) -> BackendError {
    BackendError::Prepare {
        key: path.display().to_string(),
        message,
    }
}
