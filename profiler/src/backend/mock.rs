//! A simulated device with a known cost law: `t = overhead + flops / rate + bytes / bandwidth`,
//! times seeded log-normal noise. Deterministic for a seed, instant (it does not sleep), so
//! whole profiling runs can be tested; and because its law is known, predictors can be checked
//! against it.

use std::path::Path;
use std::time::Duration;

use hwnas_core::backend::{Backend, BackendError, Kernel, KernelError};
use hwnas_core::network::Network;
use hwnas_core::op::{Op, Tensor};
use hwnas_core::rng::SplitMix64;

/// Why the simulated device runs no whole network: its law is per op, and a network's time is
/// what calibration and validation must learn from real hardware.
const NETWORKS_ON_REAL_DEVICES: &str = "the simulated device times single ops only; networks are measured end to end on real devices only";

#[derive(Debug, Clone, PartialEq)]
pub struct MockDevice {
    pub overhead_us: f64,
    /// FLOPs per microsecond.
    pub flops_per_us: f64,
    /// Bytes per microsecond.
    pub bytes_per_us: f64,
    /// Standard deviation of the log-normal noise (0.02 ≈ 2%).
    pub noise: f64,
    pub seed: u64,
}

impl Default for MockDevice {
    fn default() -> Self {
        // Roughly one core of a recent x86 CPU: 50 GFLOP/s, 10 GB/s, 3 us per op.
        MockDevice {
            overhead_us: 3.0,
            flops_per_us: 50_000.0,
            bytes_per_us: 10_000.0,
            noise: 0.02,
            seed: 0,
        }
    }
}

impl MockDevice {
    /// The noise-free latency of an op on this device, in microseconds.
    pub fn true_latency_us(&self, op: &Op) -> f64 {
        self.overhead_us
            + op.flops() as f64 / self.flops_per_us
            + op.bytes() as f64 / self.bytes_per_us
    }
}

impl Backend for MockDevice {
    fn simulated(&self) -> bool {
        true
    }

    fn default_provider(&self) -> &str {
        "mock"
    }

    fn prepare_network(&mut self, _net: &Network) -> Result<Box<dyn Kernel>, BackendError> {
        Err(BackendError::Unavailable(NETWORKS_ON_REAL_DEVICES.into()))
    }

    fn prepare_file(&mut self, _: &Path, _: Tensor) -> Result<Box<dyn Kernel>, BackendError> {
        Err(BackendError::Unavailable(NETWORKS_ON_REAL_DEVICES.into()))
    }

    fn provenance(&self) -> Vec<(String, String)> {
        vec![
            ("backend".into(), "mock".into()),
            (
                "mock_law".into(),
                format!(
                    "{} us + flops/{} + bytes/{}, noise {}, seed {}",
                    self.overhead_us, self.flops_per_us, self.bytes_per_us, self.noise, self.seed
                ),
            ),
        ]
    }

    fn prepare(&mut self, op: &Op) -> Result<Box<dyn Kernel>, BackendError> {
        if op.is_free() {
            return Err(BackendError::Prepare {
                key: op.key(),
                message: "the op runs no kernel".into(),
            });
        }
        Ok(Box::new(MockKernel {
            latency_us: self.true_latency_us(op),
            noise: self.noise,
            rng: SplitMix64::from_str_seed(&op.key(), self.seed),
        }))
    }
}

struct MockKernel {
    latency_us: f64,
    noise: f64,
    rng: SplitMix64,
}

impl Kernel for MockKernel {
    fn run(&mut self) -> Result<Duration, KernelError> {
        // Box-Muller: one standard normal draw.
        let (u1, u2) = (self.rng.next_f64().max(1e-12), self.rng.next_f64());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let us = self.latency_us * (self.noise * z).exp();
        Ok(Duration::from_secs_f64(us * 1e-6))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{MeasureConfig, measure_group};

    #[test]
    fn loop_recovers_the_mock_latency() {
        let op = Op::from_key("conv-in:1x16x32x32-out:16-k:3-s:1-g:1-pre:relu-act:none").unwrap();
        let mut dev = MockDevice::default();
        let truth = dev.true_latency_us(&op);
        let mut kernels = vec![dev.prepare(&op).unwrap()];
        let cfg = MeasureConfig::default();
        let m = measure_group(&mut kernels, &cfg, None, None)
            .remove(0)
            .unwrap();
        assert!(
            (m.stats.median / truth - 1.0).abs() < 0.01,
            "{} vs {truth}",
            m.stats.median
        );
        assert!(m.stats.ci_rel <= cfg.target_ci && !m.capped);
        assert!(m.stats.n >= cfg.min_runs as usize);
        assert!(!m.in_network);
    }

    #[test]
    fn noisy_ops_are_capped_and_say_so() {
        let op = Op::from_key("add-in:1x16x32x32").unwrap();
        let mut dev = MockDevice {
            noise: 0.5,
            ..Default::default()
        };
        let mut kernels = vec![dev.prepare(&op).unwrap()];
        let cfg = MeasureConfig {
            max_runs: 50,
            ..Default::default()
        };
        let m = measure_group(&mut kernels, &cfg, None, None)
            .remove(0)
            .unwrap();
        assert!(m.capped);
        assert_eq!(m.stats.n, 50);
        assert!(m.stats.ci_rel > cfg.target_ci);
    }

    #[test]
    fn same_seed_same_numbers() {
        let op = Op::from_key("gap-in:1x64x8x8").unwrap();
        let run = || {
            let mut dev = MockDevice::default();
            let mut k = vec![dev.prepare(&op).unwrap()];
            measure_group(&mut k, &MeasureConfig::default(), None, None)
                .remove(0)
                .unwrap()
        };
        assert_eq!(run(), run());
    }
}
