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

    /// hwnas's kernels on the file's own weights (embedded: the lowering reads them).
    fn prepare_file(
        &mut self,
        path: &std::path::Path,
        input: Tensor,
    ) -> Result<Box<dyn Kernel>, BackendError> {
        let model =
            onnx::import::read_model(path).map_err(|e| BackendError::File(e.to_string()))?;
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

struct Timer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    period_ns: f64,
}

struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: (u32, u32, u32),
}

/// A model compiled for the device: buffers, pipelines and bind groups, built once.
pub struct GpuProgram {
    device: wgpu::Device,
    queue: wgpu::Queue,
    errors: ErrorLog,
    timeout: Duration,
    /// One per plan buffer; views share their root's.
    buffers: Vec<wgpu::Buffer>,
    output: (usize, usize),
    dispatches: Vec<Dispatch>,
    timer: Option<Timer>,
    /// Set when a run missed its deadline: the queue may still hold it.
    stalled: bool,
}

impl GpuProgram {
    fn new(rt: &GpuRuntime, plan: &Plan, inputs: &[Vec<f32>]) -> Result<GpuProgram, String> {
        if inputs.len() != plan.inputs.len() {
            return Err(format!(
                "{} inputs given, the model has {}",
                inputs.len(),
                plan.inputs.len()
            ));
        }
        let device = &rt.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let root = |id: usize| plan.buffers[id].alias.unwrap_or(id);
        let mut buffers: Vec<Option<wgpu::Buffer>> = vec![None; plan.buffers.len()];
        for (id, b) in plan.buffers.iter().enumerate() {
            if b.alias.is_some() {
                continue;
            }
            let size = (b.numel().max(1) * 4) as u64;
            let buf = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&b.name),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            if let Some(data) = &b.data {
                rt.queue.write_buffer(&buf, 0, bytemuck::cast_slice(data));
            }
            buffers[id] = Some(buf);
        }
        for (k, (&id, data)) in plan.inputs.iter().zip(inputs).enumerate() {
            if data.len() != plan.buffers[id].numel() {
                return Err(format!(
                    "input {k} has {} values, the model wants {:?}",
                    data.len(),
                    plan.buffers[id].dims
                ));
            }
            if let Some(buf) = &buffers[root(id)] {
                rt.queue.write_buffer(buf, 0, bytemuck::cast_slice(data));
            }
        }
        let buffers: Vec<wgpu::Buffer> = (0..plan.buffers.len())
            .map(|id| {
                buffers[root(id)]
                    .clone()
                    .expect("every root buffer was created")
            })
            .collect();
        let mut dispatches = Vec::with_capacity(plan.steps.len());
        for step in &plan.steps {
            let k = wgsl::kernel(step);
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(k.name),
                source: wgpu::ShaderSource::Wgsl(k.source.as_str().into()),
            };
            let pipeline = rt.pipeline(&desc, &k.source)?;
            let entries: Vec<wgpu::BindGroupEntry> = k
                .reads
                .iter()
                .chain(std::iter::once(&k.write))
                .enumerate()
                .map(|(i, &id)| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource: buffers[id].as_entire_binding(),
                })
                .collect();
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(k.name),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
            dispatches.push(Dispatch {
                pipeline,
                bind_group,
                workgroups: k.workgroups,
            });
        }
        let timer = rt.timestamps.then(|| Timer {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("hwnas timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps readback"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            period_ns: rt.queue.get_timestamp_period() as f64,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(format!("out of GPU memory: {e}"));
        }
        if let Some(e) = take_errors(&rt.errors) {
            return Err(e);
        }
        Ok(GpuProgram {
            device: device.clone(),
            queue: rt.queue.clone(),
            errors: rt.errors.clone(),
            timeout: Duration::from_secs_f64(rt.settings.timeout_ms / 1e3),
            output: (plan.output, plan.buffers[plan.output].numel()),
            buffers,
            dispatches,
            timer,
            stalled: false,
        })
    }

    /// Wait for `index` (or everything) with the program's deadline.
    fn wait(&mut self, index: Option<wgpu::SubmissionIndex>) -> Result<(), String> {
        let start = Instant::now();
        let r = self.device.poll(wgpu::PollType::Wait {
            submission_index: index,
            timeout: Some(self.timeout),
        });
        if let Some(e) = take_errors(&self.errors) {
            return Err(e);
        }
        let late = || {
            format!(
                "the GPU did not finish within {:.0} ms (the device profile's wgpu.timeout_ms); the op is recorded as failed",
                self.timeout.as_secs_f64() * 1e3
            )
        };
        match r {
            Ok(_) if start.elapsed() <= self.timeout => Ok(()),
            // wgpu's GL backend waits without a deadline: the run ended, but too late.
            Ok(_) => Err(late()),
            Err(wgpu::PollError::Timeout) => {
                self.stalled = true;
                Err(late())
            }
            // A submission the device refused: it is lost (reset, removed, destroyed) or
            // rejected the work; whatever it said on its own comes first.
            Err(e) => {
                std::thread::sleep(Duration::from_millis(1));
                let _ = self.device.poll(wgpu::PollType::Poll);
                Err(take_errors(&self.errors).unwrap_or_else(|| {
                    format!("the GPU refused the work (device lost or reset?): {e}")
                }))
            }
        }
    }

    /// Run every kernel once. Returns the wall time of submit + wait, and the GPU time between
    /// the pass's timestamps when the adapter has them (microseconds).
    pub fn run(&mut self) -> Result<(Duration, Option<f64>), String> {
        if self.stalled {
            return Err("an earlier run of this op did not finish in time".into());
        }
        let start = Instant::now();
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: self
                    .timer
                    .as_ref()
                    .map(|t| wgpu::ComputePassTimestampWrites {
                        query_set: &t.queries,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    }),
            });
            for d in &self.dispatches {
                pass.set_pipeline(&d.pipeline);
                pass.set_bind_group(0, &d.bind_group, &[]);
                let (x, y, z) = d.workgroups;
                pass.dispatch_workgroups(x, y, z);
            }
        }
        if let Some(t) = &self.timer {
            enc.resolve_query_set(&t.queries, 0..2, &t.resolve, 0);
            enc.copy_buffer_to_buffer(&t.resolve, 0, &t.readback, 0, 16);
        }
        let index = self.queue.submit([enc.finish()]);
        self.wait(Some(index))?;
        let wall = start.elapsed();
        let gpu_us = match self
            .timer
            .as_ref()
            .map(|t| (t.readback.clone(), t.period_ns))
        {
            None => None,
            Some((readback, period_ns)) => {
                let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&self.read(&readback, 16)?);
                let (t0, t1) = (ticks[0], ticks[1]);
                if t1 < t0 {
                    return Err(format!(
                        "the GPU's timestamps went backwards ({t0} then {t1})"
                    ));
                }
                Some((t1 - t0) as f64 * period_ns / 1e3)
            }
        };
        Ok((wall, gpu_us))
    }

    /// Map a MAP_READ buffer and copy out its first `len` bytes.
    fn read(&mut self, buf: &wgpu::Buffer, len: u64) -> Result<Vec<u8>, String> {
        let slice = buf.slice(..len);
        let mapped: Arc<Mutex<Option<Result<(), wgpu::BufferAsyncError>>>> = Arc::default();
        let done = mapped.clone();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            *done.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        });
        self.wait(None)?;
        match mapped.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(format!("reading back from the GPU: {e}")),
            None => return Err("reading back from the GPU: the map did not complete".into()),
        }
        let bytes = slice
            .get_mapped_range()
            .map_err(|e| format!("reading back from the GPU: {e}"))?
            .to_vec();
        buf.unmap();
        Ok(bytes)
    }

    /// The model's output after the last run.
    pub fn read_output(&mut self) -> Result<Vec<f32>, String> {
        let (id, numel) = self.output;
        let size = (numel * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("output readback"),
            size: size.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.copy_buffer_to_buffer(&self.buffers[id], 0, &staging, 0, size);
        self.queue.submit([enc.finish()]);
        let bytes = self.read(&staging, size)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

/// A program as a [`Kernel`] of the measurement loop.
struct GpuKernel {
    program: GpuProgram,
    gpu_us: Vec<f64>,
    timestamps: bool,
    provider: String,
}

impl Kernel for GpuKernel {
    fn run(&mut self) -> Result<Duration, KernelError> {
        let (wall, gpu) = self.program.run().map_err(KernelError)?;
        if let Some(us) = gpu {
            self.gpu_us.push(us);
        }
        Ok(wall)
    }

    fn finish(&mut self) -> Result<KernelReport, KernelError> {
        Ok(KernelReport {
            in_network_us: self.timestamps.then(|| std::mem::take(&mut self.gpu_us)),
            edge_reorder_us: None,
            providers: vec![self.provider.clone()],
        })
    }
}
