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
pub fn profile_ops(
    backend: &mut dyn Backend,
    ops: &[Op],
    cfg: &MeasureConfig,
    default_provider: &str,
    writer: &mut TableWriter,
    mut on_op: impl FnMut(&OpOutcome),
) -> Result<Vec<OpOutcome>, TableError> {
    let mut outcomes = Vec::with_capacity(ops.len());
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
            group_outcomes[slot] = Some(match result {
                Ok(m) => {
                    let row = Row::new(op, &m, default_provider);
                    writer.append(&row)?;
                    OpOutcome::Measured(Box::new(row))
                }
                Err(e) => OpOutcome::Failed {
                    key: op.key(),
                    error: e.to_string(),
                },
            });
        }
        for outcome in group_outcomes.into_iter().flatten() {
            on_op(&outcome);
            outcomes.push(outcome);
        }
    }
    Ok(outcomes)
}
