//! Profiling a list of ops: prepare a group, measure it in interleaved rounds, append its rows.

use crate::backend::Backend;
use crate::measure::{MeasureConfig, measure_group};
use hwnas_core::backend::{Kernel, Measurement};
use hwnas_core::op::Op;
use hwnas_core::table::{Row, TableError, TableWriter};

/// Something that measures a group of ops together: one result per op, in order, an error in
/// one op not stopping the others.
pub trait GroupMeasurer {
    fn measure(&mut self, ops: &[Op], cfg: &MeasureConfig) -> Vec<Result<Measurement, String>>;

    /// True for a simulated device, whose rows this machine's load and clock do not touch.
    fn simulated(&self) -> bool {
        false
    }
}

/// Measuring in this process: prepare each op on the backend, then the one loop.
pub struct InProcess(pub Box<dyn Backend>);

impl GroupMeasurer for InProcess {
    fn measure(&mut self, ops: &[Op], cfg: &MeasureConfig) -> Vec<Result<Measurement, String>> {
        prepare_and_measure(self.0.as_mut(), ops, cfg, |k| k)
    }

    fn simulated(&self) -> bool {
        self.0.simulated()
    }
}

/// Prepare each op on `backend` (`wrap` sees every kernel prepared), then measure those that
/// prepared together; an op that did not prepare gets its error.
pub(crate) fn prepare_and_measure(
    backend: &mut dyn Backend,
    ops: &[Op],
    cfg: &MeasureConfig,
    mut wrap: impl FnMut(Box<dyn Kernel>) -> Box<dyn Kernel>,
) -> Vec<Result<Measurement, String>> {
    let mut results: Vec<Option<Result<Measurement, String>>> = Vec::new();
    let mut kernels: Vec<Box<dyn Kernel>> = Vec::new();
    let mut slots = Vec::new();
    for op in ops {
        match backend.prepare(op) {
            Ok(kernel) => {
                slots.push(results.len());
                results.push(None);
                kernels.push(wrap(kernel));
            }
            Err(e) => results.push(Some(Err(e.to_string()))),
        }
    }
    for (slot, m) in slots.into_iter().zip(measure_group(&mut kernels, cfg)) {
        results[slot] = Some(m.map_err(|e| e.to_string()));
    }
    results.into_iter().flatten().collect()
}

/// What happened to one op.
#[derive(Debug)]
pub enum OpOutcome {
    Measured(Box<Row>),
    Failed { key: String, error: String },
}

/// Measure `ops` with `measurer`, `cfg.interleave` at a time, appending each group's rows to
/// `writer` as soon as the group is done. `on_op` sees every outcome (progress bars, logs).
/// A failed op is reported and skipped; the others go on. Only a table write error stops.
///
/// With `cfg.max_noise`, a row noisier than that is held back and its op measured once more
/// after all the others (a passing disturbance is over by then); still noisy, it is reported
/// failed and left out of the table, so `--resume` measures it again later.
///
/// With `require_provider`, an op any of whose nodes ran on another execution provider (an
/// NPU's op that fell back to the CPU) is reported failed instead of written: its time is not
/// the device's.
pub fn profile_ops(
    measurer: &mut dyn GroupMeasurer,
    ops: &[Op],
    cfg: &MeasureConfig,
    default_provider: &str,
    require_provider: Option<&str>,
    writer: &mut TableWriter,
    mut on_op: impl FnMut(&OpOutcome),
) -> Result<Vec<OpOutcome>, TableError> {
    let mut outcomes = Vec::with_capacity(ops.len());
    let pass = Pass {
        cfg,
        default_provider,
        require_provider,
    };
    let again = measure_pass(measurer, ops, &pass, writer, true, &mut |o| {
        on_op(&o);
        outcomes.push(o);
    })?;
    measure_pass(measurer, &again, &pass, writer, false, &mut |o| {
        on_op(&o);
        outcomes.push(o);
    })?;
    Ok(outcomes)
}

/// What every pass measures with.
struct Pass<'a> {
    cfg: &'a MeasureConfig,
    default_provider: &'a str,
    require_provider: Option<&'a str>,
}

/// One pass over `ops`; returns the ops held back as too noisy (only when `may_retry`).
fn measure_pass(
    measurer: &mut dyn GroupMeasurer,
    ops: &[Op],
    pass: &Pass<'_>,
    writer: &mut TableWriter,
    may_retry: bool,
    emit: &mut dyn FnMut(OpOutcome),
) -> Result<Vec<Op>, TableError> {
    let cfg = pass.cfg;
    let mut retry = Vec::new();
    for group in ops.chunks(cfg.interleave.max(1)) {
        let results = measurer.measure(group, cfg);
        let mut group_outcomes = Vec::with_capacity(group.len());
        for (op, result) in group.iter().zip(results) {
            group_outcomes.push(match result {
                Ok(m) => match cfg.max_noise.filter(|limit| m.stats.ci_rel > *limit) {
                    Some(_) if may_retry => {
                        retry.push(*op);
                        None
                    }
                    Some(limit) => Some(OpOutcome::Failed {
                        key: op.key(),
                        error: format!(
                            "too noisy: median ±{:.1}% twice (limit ±{:.1}%); measure it again when the machine is quiet",
                            100.0 * m.stats.ci_rel,
                            100.0 * limit
                        ),
                    }),
                    None => match pass
                        .require_provider
                        .filter(|p| m.providers.iter().any(|q| q != p))
                    {
                        Some(required) => Some(OpOutcome::Failed {
                            key: op.key(),
                            error: format!(
                                "ran on {} instead of {required} alone (--require-ep); not recorded",
                                m.providers.join(" + ")
                            ),
                        }),
                        None => {
                            let mut row = Row::new(op, &m, pass.default_provider);
                            if !measurer.simulated() {
                                row = row.on_this_machine();
                            }
                            writer.append(&row)?;
                            Some(OpOutcome::Measured(Box::new(row)))
                        }
                    },
                },
                Err(error) => Some(OpOutcome::Failed {
                    key: op.key(),
                    error,
                }),
            });
        }
        for outcome in group_outcomes.into_iter().flatten() {
            emit(outcome);
        }
    }
    Ok(retry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mock::MockDevice;
    use hwnas_core::table::LatencyTable;

    #[test]
    fn noisy_rows_are_measured_again_then_rejected() {
        let ops: Vec<Op> = ["add-in:1x8x8x8", "gap-in:1x8x8x8", "add-in:1x16x8x8"]
            .iter()
            .map(|k| Op::from_key(k).unwrap())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let run = |max_noise: Option<f64>| {
            let path = dir.path().join("t.csv");
            let mut w = TableWriter::create(&path, &vec![]).unwrap();
            let cfg = MeasureConfig {
                min_runs: 10,
                max_noise,
                ..MeasureConfig::default()
            };
            let mut seen = 0;
            let out = profile_ops(
                &mut InProcess(Box::new(MockDevice::default())),
                &ops,
                &cfg,
                "mock",
                None,
                &mut w,
                |_| seen += 1,
            )
            .unwrap();
            assert_eq!(seen, ops.len(), "every op reported once");
            (out, LatencyTable::read(&path).unwrap().rows.len())
        };
        // The mock device's noise is a few percent: a limit of 1e-9 rejects every row...
        let (out, rows) = run(Some(1e-9));
        assert_eq!(rows, 0);
        assert!(
            out.iter().all(
                |o| matches!(o, OpOutcome::Failed { error, .. } if error.contains("too noisy"))
            )
        );
        // ...a loose one, or none, keeps them all.
        assert_eq!(run(Some(0.5)).1, 3);
        assert_eq!(run(None).1, 3);
    }
}
