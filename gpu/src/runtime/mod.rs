//! The wgpu side: adapters, the device, compiled programs, timed runs.
//!
//! A [`GpuRuntime`] opens one adapter chosen by a device profile's `[wgpu]` section. A model
//! (one op's, or a whole network's) becomes a [`GpuProgram`]: its [`Plan`] lowered once into
//! buffers (weights uploaded once), pipelines (cached by kernel source, so a shape compiles
//! once) and bind groups; each run then encodes the dispatches into one compute pass, submits,
//! and waits with a deadline. Times come from timestamp queries at the start and end of the pass
//! when the adapter has them, else from the wall clock around submit + wait.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hwnas_core::backend::{Backend, BackendError, Kernel, KernelError, KernelReport, Measurement};
use hwnas_core::network::Network;
use hwnas_core::op::{Op, Tensor};
use hwnas_core::stats::Stats;
use hwnas_onnx::{self as onnx, ModelProto, NetworkModel};

use crate::plan::Plan;
use crate::settings::{GpuSettings, GpuTiming};
use crate::wgsl;

mod program;

use program::GpuKernel;
pub use program::GpuProgram;

/// What `hwnas devices` shows of an adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub timestamps: bool,
}

fn backend_name(b: wgpu::Backend) -> String {
    format!("{b:?}").to_lowercase()
}

fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu (software)",
        wgpu::DeviceType::Other => "other",
    }
}

fn summary(a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    AdapterSummary {
        name: info.name.clone(),
        backend: backend_name(info.backend),
        device_type: device_type_name(info.device_type).into(),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        timestamps: a.features().contains(wgpu::Features::TIMESTAMP_QUERY),
    }
}

fn backends(name: &str) -> Option<wgpu::Backends> {
    Some(match name {
        "vulkan" => wgpu::Backends::VULKAN,
        "metal" => wgpu::Backends::METAL,
        "dx12" => wgpu::Backends::DX12,
        "gl" => wgpu::Backends::GL,
        "any" => wgpu::Backends::all(),
        _ => return None,
    })
}

fn instance(api: &str) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    // A profile that names an API gets it, whatever WGPU_BACKEND says.
    if api != "any"
        && let Some(b) = backends(api)
    {
        desc.backends = b;
    }
    wgpu::Instance::new(desc)
}

/// Every adapter wgpu finds for `api` (`any`: all APIs, or those `WGPU_BACKEND` names).
pub fn adapters(api: &str) -> Vec<AdapterSummary> {
    let inst = instance(api);
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(summary)
        .collect()
}

/// Real GPUs first; software rasterisers last.
fn preference(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Errors the device reported on its own (validation errors, device loss), collected instead of
/// wgpu's default of panicking.
type ErrorLog = Arc<Mutex<Vec<String>>>;

fn take_errors(log: &ErrorLog) -> Option<String> {
    let mut v = log.lock().unwrap_or_else(|p| p.into_inner());
    (!v.is_empty()).then(|| std::mem::take(&mut *v).join("; "))
}

pub struct GpuRuntime {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    settings: GpuSettings,
    timestamps: bool,
    errors: ErrorLog,
    pipelines: Rc<RefCell<HashMap<String, wgpu::ComputePipeline>>>,
}

impl GpuRuntime {
    /// Open the adapter the settings choose.
    pub fn new(settings: &GpuSettings) -> Result<GpuRuntime, BackendError> {
        let unavailable = BackendError::Unavailable;
        if backends(&settings.backend).is_none() {
            return Err(unavailable(format!(
                "wgpu.backend `{}` is not one of vulkan, metal, dx12, gl, any",
                settings.backend
            )));
        }
        let inst = instance(&settings.backend);
        let all = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
        let wanted = settings.adapter.to_lowercase();
        let mut matching: Vec<&wgpu::Adapter> = all
            .iter()
            .filter(|a| a.get_info().name.to_lowercase().contains(&wanted))
            .collect();
        matching.sort_by_key(|a| preference(a.get_info().device_type));
        let Some(adapter) = matching.first() else {
            let found: Vec<String> = all
                .iter()
                .map(|a| {
                    let s = summary(a);
                    format!("{} ({}, {})", s.name, s.backend, s.device_type)
                })
                .collect();
            return Err(unavailable(format!(
                "no wgpu adapter matches backend `{}` and adapter `{}`; found: {}",
                settings.backend,
                settings.adapter,
                if found.is_empty() {
                    "none (install a GPU driver; without a GPU, Mesa's lavapipe: apt install mesa-vulkan-drivers)".into()
                } else {
                    found.join(", ")
                }
            )));
        };
        let info = adapter.get_info();
        let has_timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let timestamps = match settings.timing {
            GpuTiming::Wall => false,
            GpuTiming::Auto => has_timestamps,
            GpuTiming::Timestamp if has_timestamps => true,
            GpuTiming::Timestamp => {
                return Err(unavailable(format!(
                    "adapter `{}` has no timestamp queries; set wgpu.timing = \"wall\" or \"auto\"",
                    info.name
                )));
            }
        };
        let required_features = if timestamps {
            wgpu::Features::TIMESTAMP_QUERY
        } else {
            wgpu::Features::empty()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("hwnas"),
            required_features,
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| unavailable(format!("cannot open adapter `{}`: {e}", info.name)))?;
        let errors: ErrorLog = Arc::default();
        let log = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e.to_string());
        }));
        let log = errors.clone();
        device.set_device_lost_callback(move |reason, message| {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("GPU device lost ({reason:?}): {message}"));
        });
        Ok(GpuRuntime {
            device,
            queue,
            info,
            settings: settings.clone(),
            timestamps,
            errors,
            pipelines: Rc::default(),
        })
    }

    pub fn adapter(&self) -> AdapterSummary {
        AdapterSummary {
            name: self.info.name.clone(),
            backend: backend_name(self.info.backend),
            device_type: device_type_name(self.info.device_type).into(),
            driver: format!("{} {}", self.info.driver, self.info.driver_info)
                .trim()
                .to_string(),
            timestamps: self.timestamps,
        }
    }

    /// Destroy the device, as a driver reset or an unplugged GPU does: every later run of its
    /// programs fails with the loss reason (tests use it to check that path).
    pub fn destroy(&self) {
        self.device.destroy();
    }

    /// True for software rasterisers (lavapipe, llvmpipe, WARP): their times are not GPU data.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// How many invocations the kernels aim to occupy (see [`GpuSettings::min_invocations`]).
    pub fn min_invocations(&self) -> u32 {
        match self.settings.min_invocations {
            Some(n) => n,
            None if self.is_software() => 1,
            None => crate::settings::DEFAULT_MIN_INVOCATIONS,
        }
    }

    /// The provider name recorded per row, e.g. `wgpu-vulkan`.
    pub fn provider(&self) -> String {
        format!("wgpu-{}", backend_name(self.info.backend))
    }

    /// Compile a model into a program with its inputs filled.
    pub fn program(&self, model: &ModelProto, inputs: &[Vec<f32>]) -> Result<GpuProgram, String> {
        let plan = Plan::lower(model).map_err(|e| e.to_string())?;
        GpuProgram::new(self, &plan, inputs)
    }

    /// Run `model` once on `inputs` and return its output (for the conformance checks).
    pub fn infer(&self, model: &ModelProto, inputs: &[Vec<f32>]) -> Result<Vec<f32>, String> {
        let mut program = self.program(model, inputs)?;
        program.run()?;
        program.read_output()
    }

    /// Any model hwnas can lower (one input), timed like a network: all its kernels in one pass.
    pub fn prepare_model(
        &self,
        model: &ModelProto,
        name: &str,
        input: Vec<f32>,
    ) -> Result<Box<dyn Kernel>, BackendError> {
        let program = self
            .program(model, &[input])
            .map_err(|message| BackendError::Prepare {
                key: name.into(),
                message,
            })?;
        Ok(Box::new(self.kernel(program)))
    }

    fn kernel(&self, program: GpuProgram) -> GpuKernel {
        GpuKernel {
            program,
            gpu_us: Vec::new(),
            timestamps: self.timestamps,
            provider: self.provider(),
        }
    }

    fn pipeline(
        &self,
        k: &wgpu::ShaderModuleDescriptor<'_>,
        source: &str,
    ) -> Result<wgpu::ComputePipeline, String> {
        if let Some(p) = self.pipelines.borrow().get(source) {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(k.clone());
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: k.label,
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(format!(
                "kernel `{}` does not compile: {e}",
                k.label.unwrap_or("?")
            ));
        }
        self.pipelines
            .borrow_mut()
            .insert(source.to_string(), pipeline.clone());
        Ok(pipeline)
    }
}

impl Backend for GpuRuntime {
    fn provenance(&self) -> Vec<(String, String)> {
        let a = self.adapter();
        let mut p = vec![
            ("backend".into(), "wgpu".into()),
            ("wgpu_version".into(), "30".into()),
            ("adapter".into(), a.name),
            ("graphics_api".into(), a.backend),
            ("adapter_type".into(), a.device_type),
            ("driver".into(), a.driver),
            (
                "timing".into(),
                if self.timestamps { "timestamp" } else { "wall" }.into(),
            ),
            (
                "latency_basis".into(),
                if self.timestamps {
                    "GPU timestamps at the start and end of the compute pass that runs the op's kernels"
                } else {
                    "wall clock around submit + wait (includes the submission overhead)"
                }
                .into(),
            ),
        ];
        if self.is_software() {
            p.push((
                "note".into(),
                "software rasteriser on the CPU (e.g. lavapipe): these times check that the kernels run; they are ~100-200x slower than ONNX Runtime on the same CPU and are not predictor data".into(),
            ));
        }
        p
    }

    fn prepare(&mut self, op: &Op) -> Result<Box<dyn Kernel>, BackendError> {
        let err = |message: String| BackendError::Prepare {
            key: op.key(),
            message,
        };
        let model = onnx::op_model(op).map_err(|e| err(e.to_string()))?;
        let program = self.program(&model, &onnx::op_inputs(op, 0)).map_err(err)?;
        Ok(Box::new(self.kernel(program)))
    }

    /// A whole network as one program: its ops' kernels in order, one command buffer per run.
    fn prepare_network(&mut self, net: &Network) -> Result<Box<dyn Kernel>, BackendError> {
        let err = |message: String| BackendError::Prepare {
            key: net.name.clone(),
            message,
        };
        let model = net.to_onnx().map_err(|e| err(e.to_string()))?;
        let first = net
            .nodes
            .first()
            .map(|n| n.op)
            .ok_or_else(|| err("the network is empty".into()))?;
        // The same seeded input ORT's end-to-end runs use.
        let input = onnx::op_inputs(&first, 1).swap_remove(0);
        self.prepare_model(&model, &net.name, input)
    }

    /// hwnas's kernels on the file's own weights (embedded: the lowering reads them), or on
    /// seeded ones for a structure-only file, as the ONNX Runtime backend runs it.
    fn prepare_file(
        &mut self,
        path: &std::path::Path,
        input: Tensor,
    ) -> Result<Box<dyn Kernel>, BackendError> {
        let mut model =
            onnx::import::read_model(path).map_err(|e| BackendError::File(e.to_string()))?;
        onnx::weights::seed_missing(&mut model, 0);
        let data = onnx::build::model_input(input);
        self.prepare_model(&model, &path.display().to_string(), data)
    }

    /// A GPU's network time is its kernels' time (timestamps, else wall), as its rows count.
    fn network_latency(&self, m: &Measurement) -> Stats {
        m.stats
    }

    fn notes(&self) -> Vec<String> {
        if self.is_software() {
            vec![format!(
                "`{}` is a software rasteriser on the CPU: its times check the kernels, they are not GPU predictor data",
                self.adapter().name
            )]
        } else {
            Vec::new()
        }
    }
}
