//! Profiling a list of ops: prepare a group, measure it in interleaved rounds, append its rows.

use crate::backend::Backend;
use crate::measure::{MeasureConfig, measure_group};
use crate::op::Op;
use crate::table::{Row, TableError, TableWriter};

/// What happened to one op.
#[derive(Debug)]
pub enum OpOutcome {
    Measured(Box<Row>),
    Failed { key: String, error: String },
}

/// Measure `ops` on `backend`, `cfg.interleave` at a time, appending each group's rows to
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
    backend: &mut dyn Backend,
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
    let again = measure_pass(backend, ops, &pass, writer, true, &mut |o| {
        on_op(&o);
        outcomes.push(o);
    })?;
    measure_pass(backend, &again, &pass, writer, false, &mut |o| {
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
    backend: &mut dyn Backend,
    ops: &[Op],
    pass: &Pass<'_>,
    writer: &mut TableWriter,
    may_retry: bool,
    emit: &mut dyn FnMut(OpOutcome),
) -> Result<Vec<Op>, TableError> {
    let cfg = pass.cfg;
    let mut retry = Vec::new();
    for group in ops.chunks(cfg.interleave.max(1)) {
        let mut prepared = Vec::new();
        let mut kernels = Vec::new();
        let mut group_outcomes: Vec<Option<OpOutcome>> = Vec::new();
        for op in group {
            match backend.prepare(op) {
                Ok(k) => {
                    prepared.push((group_outcomes.len(), op));
                    kernels.push(k);
                    group_outcomes.push(None);
                }
                Err(e) => group_outcomes.push(Some(OpOutcome::Failed {
                    key: op.key(),
                    error: e.to_string(),
                })),
            }
        }
        let results = measure_group(&mut kernels, cfg);
        drop(kernels);
        for ((slot, op), result) in prepared.into_iter().zip(results) {
            group_outcomes[slot] = match result {
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
                            let row = Row::new(op, &m, pass.default_provider);
                            writer.append(&row)?;
                            Some(OpOutcome::Measured(Box::new(row)))
                        }
                    },
                },
                Err(e) => Some(OpOutcome::Failed {
                    key: op.key(),
                    error: e.to_string(),
                }),
            };
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
    use crate::table::LatencyTable;

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
                &mut MockDevice::default(),
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
