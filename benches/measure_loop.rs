//! The measurement loop's own cost per run: a kernel that does nothing, so everything timed is
//! the loop (round bookkeeping, the convergence check, the final statistics). Divide by the
//! runs per group to get the overhead added to each real measurement.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hwnas_core::backend::{Kernel, KernelError};
use hwnas_profiler::measure::{MeasureConfig, measure_group};

/// Reports a fixed 10 us per run without doing any work.
struct NoopKernel;

impl Kernel for NoopKernel {
    fn run(&mut self) -> Result<Duration, KernelError> {
        Ok(Duration::from_micros(10))
    }
}

fn bench(c: &mut Criterion) {
    const RUNS: u32 = 2000;
    const OPS: usize = 8;
    // Never converges (target 0), so every op makes exactly RUNS runs in 2.5 ms rounds.
    let cfg = MeasureConfig {
        warmup_runs: 0,
        warmup_ms: 0.0,
        min_runs: RUNS,
        max_runs: RUNS,
        target_ci: 0.0,
        max_ms: 1e9,
        round_ms: 2.5,
        interleave: OPS,
        max_noise: None,
        later_passes: 0,
        probe_runs: 3,
        cpu_clock: true,
    };
    let mut group = c.benchmark_group("measure_loop");
    group.throughput(Throughput::Elements(RUNS as u64 * OPS as u64));
    group.bench_function("8_ops_x_2000_runs", |b| {
        b.iter(|| {
            let mut kernels: Vec<Box<dyn Kernel>> = (0..OPS)
                .map(|_| Box::new(NoopKernel) as Box<dyn Kernel>)
                .collect();
            let results = measure_group(&mut kernels, &cfg, None, None);
            assert_eq!(results.len(), OPS);
            results
        })
    });
    // The same with the reference probe bracketing every batch (its runs are not counted).
    group.bench_function("8_ops_x_2000_runs_probed", |b| {
        b.iter(|| {
            let mut kernels: Vec<Box<dyn Kernel>> = (0..OPS)
                .map(|_| Box::new(NoopKernel) as Box<dyn Kernel>)
                .collect();
            let results = measure_group(&mut kernels, &cfg, Some(&mut NoopKernel), None);
            assert_eq!(results.len(), OPS);
            results
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
