//! A compiled model on the device: its buffers, pipelines and bind groups, run and timed.

use super::*;

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
    pub(super) fn new(
        rt: &GpuRuntime,
        plan: &Plan,
        inputs: &[Vec<f32>],
    ) -> Result<GpuProgram, String> {
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
        let min_invocations = rt.min_invocations();
        for step in &plan.steps {
            let k = wgsl::kernel(step, min_invocations);
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
pub(super) struct GpuKernel {
    pub(super) program: GpuProgram,
    pub(super) gpu_us: Vec<f64>,
    pub(super) timestamps: bool,
    pub(super) provider: String,
}

impl Kernel for GpuKernel {
    fn run(&mut self) -> Result<Duration, KernelError> {
        let (wall, gpu) = self.program.run().map_err(KernelError)?;
        if let Some(us) = gpu {
            self.gpu_us.push(us);
        }
        Ok(wall)
    }

    /// Not recorded: the timestamps kept are the timed runs'.
    fn run_untimed(&mut self) -> Result<(), KernelError> {
        self.program.run().map(drop).map_err(KernelError)
    }

    fn finish(&mut self) -> Result<KernelReport, KernelError> {
        Ok(KernelReport {
            in_network_us: self.timestamps.then(|| std::mem::take(&mut self.gpu_us)),
            edge_reorder_us: None,
            providers: vec![self.provider.clone()],
        })
    }
}
