//! What ORT runs: a lone op (timed plain, split by a profiled twin) and a whole model.

use super::*;

/// Two sessions of the same model: the plain one is timed; the profiled one, run right after
/// it, tells how the kernel time splits between edge reorders and the rest.
pub(super) struct OrtKernel {
    pub(super) plain: Session,
    pub(super) profiled: Session,
    pub(super) inputs: Vec<Tensor<f32>>,
    pub(super) walls_us: Vec<f64>,
    pub(super) run_overhead_us: f64,
    pub(super) precision: Precision,
    pub(super) cpu: CpuClock,
    /// Whether `finish` took the profile; a kernel dropped before that still has one to end.
    pub(super) profile_ended: bool,
}

impl Drop for OrtKernel {
    /// A kernel dropped unfinished (its op failed, the run was interrupted) would leave ORT's
    /// trace of every run in a file in the temporary folder.
    fn drop(&mut self) {
        if !self.profile_ended
            && let Ok(file) = self.profiled.end_profiling()
        {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// The calling thread's CPU time around a session's run, for a session that runs on it alone
/// (the CPU EP with one intra-op thread).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CpuClock {
    pub(super) on_calling_thread: bool,
    pub(super) last: Option<Duration>,
}

impl CpuClock {
    fn start(&self) -> Option<Duration> {
        self.on_calling_thread
            .then(hwnas_core::host::thread_cpu_time)
            .flatten()
    }

    fn stop(&mut self, start: Option<Duration>) {
        self.last =
            start.and_then(|s| Some(hwnas_core::host::thread_cpu_time()?.saturating_sub(s)));
    }
}

/// An op's inputs by the names its graph gives them.
fn feed(inputs: &[Tensor<f32>]) -> Vec<(&str, &Tensor<f32>)> {
    onnx::INPUT_NAMES.iter().copied().zip(inputs).collect()
}

impl Kernel for OrtKernel {
    fn cpu_time_of_last_run(&self) -> Option<Duration> {
        self.cpu.last
    }

    fn run(&mut self) -> Result<Duration, KernelError> {
        let feed = feed(&self.inputs);
        let cpu = self.cpu.start();
        let start = Instant::now();
        let out = self
            .plain
            .run(feed.clone())
            .map_err(|e| KernelError(e.to_string()))?;
        let elapsed = start.elapsed();
        self.cpu.stop(cpu);
        drop(out);
        self.profiled
            .run(feed)
            .map_err(|e| KernelError(e.to_string()))?;
        self.walls_us.push(elapsed.as_secs_f64() * 1e6);
        Ok(elapsed)
    }

    /// The plain session alone: not the profiled twin, whose trace counts the timed runs.
    fn run_untimed(&mut self) -> Result<(), KernelError> {
        self.plain
            .run(feed(&self.inputs))
            .map(drop)
            .map_err(|e| KernelError(e.to_string()))
    }

    fn finish(&mut self) -> Result<KernelReport, KernelError> {
        self.profile_ended = true;
        let file = self
            .profiled
            .end_profiling()
            .map_err(|e| KernelError(format!("ORT profiling: {e}")))?;
        let text = std::fs::read_to_string(&file)
            .map_err(|e| KernelError(format!("cannot read ORT profile {file}: {e}")));
        let _ = std::fs::remove_file(&file);
        let runs = parse_profile(&text?, self.precision)
            .map_err(|e| KernelError(format!("ORT profile {file}: {e}")))?;
        if runs.len() != self.walls_us.len() {
            return Err(KernelError(format!(
                "ORT profile {file} has {} runs, {} were made",
                runs.len(),
                self.walls_us.len()
            )));
        }
        let (in_network, edges): (Vec<f64>, Vec<f64>) = runs
            .iter()
            .zip(&self.walls_us)
            .map(|(r, wall)| {
                let kernels = (wall - self.run_overhead_us).max(0.0);
                let total = r.inner_us + r.edge_reorder_us;
                let edge_share = if total > 0.0 {
                    r.edge_reorder_us / total
                } else {
                    0.0
                };
                (kernels * (1.0 - edge_share), kernels * edge_share)
            })
            .unzip();
        let mut providers: Vec<String> = runs
            .iter()
            .flat_map(|r| r.providers.iter().cloned())
            .collect();
        providers.sort();
        providers.dedup();
        Ok(KernelReport {
            in_network_us: Some(in_network),
            edge_reorder_us: Some(edges),
            providers,
        })
    }
}

/// A whole network in one plain session.
pub(super) struct NetworkKernel {
    pub(super) session: Session,
    pub(super) input_name: String,
    pub(super) inputs: Vec<Tensor<f32>>,
    pub(super) cpu: CpuClock,
}

/// Where a session's model comes from.
pub(super) enum ModelSource<'a> {
    Bytes(&'a [u8]),
    File(&'a std::path::Path),
}

impl Kernel for NetworkKernel {
    fn cpu_time_of_last_run(&self) -> Option<Duration> {
        self.cpu.last
    }

    fn run(&mut self) -> Result<Duration, KernelError> {
        let feed: Vec<(&str, &Tensor<f32>)> = vec![(self.input_name.as_str(), &self.inputs[0])];
        let cpu = self.cpu.start();
        let start = Instant::now();
        let out = self
            .session
            .run(feed)
            .map_err(|e| KernelError(e.to_string()))?;
        let elapsed = start.elapsed();
        self.cpu.stop(cpu);
        drop(out);
        Ok(elapsed)
    }
}
