//! The lookup-table predictor: a network's latency is the sum of its ops' table latencies.

use std::collections::HashMap;

use hwnas_profiler::Op;
use hwnas_profiler::table::LatencyTable;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LutError {
    #[error(
        "{} of the network's ops are not in the latency table (first: {}); profile them with \
         `hwnas profile --op KEY ... --resume` or profile the whole space",
        .missing.len(),
        .missing.first().map_or("", String::as_str)
    )]
    Missing { missing: Vec<String> },
}

/// A latency table indexed by op key.
#[derive(Debug, Clone)]
pub struct LutPredictor {
    /// key → (median, p10, p90) in microseconds.
    latency: HashMap<String, (f64, f64, f64)>,
}

/// A network's composed latency and where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkLatency {
    /// Sum of the ops' median latencies, in microseconds.
    pub total_us: f64,
    /// Sums of the ops' 10th and 90th percentiles: the spread the measurements saw, not a
    /// prediction interval (ops' noise is not independent).
    pub p10_us: f64,
    pub p90_us: f64,
    /// Per op, in execution order: the key and its median latency (0 for free ops).
    pub per_op: Vec<(String, f64)>,
}

impl LutPredictor {
    pub fn new(table: &LatencyTable) -> LutPredictor {
        LutPredictor {
            latency: table
                .rows
                .iter()
                .map(|r| (r.key.clone(), (r.median_us, r.p10_us, r.p90_us)))
                .collect(),
        }
    }

    /// The measured latency of one op, if the table has it (free ops: zero).
    pub fn op_us(&self, op: &Op) -> Option<f64> {
        if op.is_free() {
            return Some(0.0);
        }
        self.latency.get(&op.key()).map(|l| l.0)
    }

    /// Compose a network from its ops; every missing op is listed in the error.
    pub fn network(&self, ops: &[Op]) -> Result<NetworkLatency, LutError> {
        let mut out = NetworkLatency {
            total_us: 0.0,
            p10_us: 0.0,
            p90_us: 0.0,
            per_op: Vec::with_capacity(ops.len()),
        };
        let mut missing = Vec::new();
        for op in ops {
            let key = op.key();
            let (median, p10, p90) = if op.is_free() {
                (0.0, 0.0, 0.0)
            } else if let Some(&l) = self.latency.get(&key) {
                l
            } else {
                if !missing.contains(&key) {
                    missing.push(key);
                }
                continue;
            };
            out.total_us += median;
            out.p10_us += p10;
            out.p90_us += p90;
            out.per_op.push((key, median));
        }
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(LutError::Missing { missing })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwnas_profiler::backend::Backend;
    use hwnas_profiler::backend::mock::MockDevice;
    use hwnas_profiler::measure::{MeasureConfig, measure_group};
    use hwnas_profiler::table::Row;

    fn table(keys: &[&str], dev: &mut MockDevice) -> LatencyTable {
        let ops: Vec<Op> = keys.iter().map(|k| Op::from_key(k).unwrap()).collect();
        let mut kernels: Vec<_> = ops.iter().map(|op| dev.prepare(op).unwrap()).collect();
        let rows = measure_group(&mut kernels, &MeasureConfig::default())
            .into_iter()
            .zip(&ops)
            .map(|(m, op)| Row::new(op, &m.unwrap(), "mock"))
            .collect();
        LatencyTable { meta: vec![], rows }
    }

    const CONV: &str = "conv-in:1x16x32x32-out:16-k:3-s:1-g:1-pre:relu-act:none";
    const ADD: &str = "add-in:1x16x32x32";

    #[test]
    fn sums_the_table_and_frees_skips() {
        let mut dev = MockDevice {
            noise: 0.0,
            ..Default::default()
        };
        let lut = LutPredictor::new(&table(&[CONV, ADD], &mut dev));
        let conv = Op::from_key(CONV).unwrap();
        let add = Op::from_key(ADD).unwrap();
        let skip = Op::from_key("skip-in:1x16x32x32").unwrap();
        let net = lut.network(&[conv, conv, skip, add]).unwrap();
        // Noise-free mock: the table holds the device's true law (to the nanosecond of a Duration).
        let want = 2.0 * dev.true_latency_us(&conv) + dev.true_latency_us(&add);
        assert!(
            (net.total_us - want).abs() < 1e-5 * want,
            "{} vs {want}",
            net.total_us
        );
        assert_eq!(net.per_op.len(), 4);
        assert_eq!(net.per_op[2].1, 0.0);
        assert!(net.p10_us <= net.total_us && net.total_us <= net.p90_us);
    }

    #[test]
    fn lists_every_missing_op_once() {
        let mut dev = MockDevice::default();
        let lut = LutPredictor::new(&table(&[CONV], &mut dev));
        let add = Op::from_key(ADD).unwrap();
        let gap = Op::from_key("gap-in:1x16x32x32").unwrap();
        let err = lut
            .network(&[add, Op::from_key(CONV).unwrap(), gap, add])
            .unwrap_err();
        assert_eq!(
            err,
            LutError::Missing {
                missing: vec![ADD.into(), gap.key()]
            }
        );
        assert!(err.to_string().contains("hwnas profile --op"));
    }
}
