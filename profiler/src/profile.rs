//! Profiling a list of ops: prepare a group, measure it in interleaved rounds, append its rows.

use std::path::{Path, PathBuf};

use crate::backend::Backend;
use crate::measure::{MeasureConfig, PROBE_KEY, measure_group};
use crate::networks::{self, NetworkMeasureError, NetworkMeasurer, NetworkTime, Speed};
use hwnas_core::backend::{BackendError, Kernel, Measurement, NodeTime};
use hwnas_core::host::{Machine, MachineState};
use hwnas_core::network::Network;
use hwnas_core::op::{Op, Tensor};
use hwnas_core::table::{Row, TableError, TableWriter};

/// One result per op of a group, in order (an error in one op not stopping the others); or,
/// as the whole answer's error, why the device cannot be reached any more.
pub type GroupResult = Result<Vec<Result<Measurement, String>>, String>;

/// Something that measures a group of ops together, on some machine.
pub trait GroupMeasurer {
    fn measure(&mut self, ops: &[Op], cfg: &MeasureConfig) -> GroupResult;

    /// True for a simulated device, whose rows no machine's load and clock touch.
    fn simulated(&self) -> bool {
        false
    }

    /// The machine that measures (a remote device's own, for a remote worker).
    fn machine(&self) -> Machine;

    /// Its load and clock after the last group, for the rows (none for a simulated device).
    fn machine_state(&self) -> Option<MachineState>;

    /// How many times the measuring process was stopped (hung, died, connection lost).
    fn restarts(&self) -> usize {
        0
    }
}

/// Measuring in this process: prepare each op on the backend, then the one loop.
pub struct InProcess(pub Box<dyn Backend>);

impl GroupMeasurer for InProcess {
    fn measure(&mut self, ops: &[Op], cfg: &MeasureConfig) -> GroupResult {
        Ok(prepare_and_measure(self.0.as_mut(), ops, cfg, |k| k))
    }

    fn simulated(&self) -> bool {
        self.0.simulated()
    }

    fn machine(&self) -> Machine {
        Machine::this()
    }

    fn machine_state(&self) -> Option<MachineState> {
        state_of(self.0.as_ref())
    }
}

impl NetworkMeasurer for InProcess {
    fn measure_networks(
        &mut self,
        nets: &[Network],
        cfg: &MeasureConfig,
        speed: Speed,
        done: &mut dyn FnMut(),
    ) -> Result<Vec<NetworkTime>, NetworkMeasureError> {
        networks::measure_networks_wrapped(self.0.as_mut(), nets, cfg, speed, done, &mut |k| k)
    }

    fn measure_files(
        &mut self,
        files: &[(PathBuf, Tensor)],
        cfg: &MeasureConfig,
        speed: Speed,
        done: &mut dyn FnMut(),
    ) -> Result<Vec<NetworkTime>, NetworkMeasureError> {
        let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
        networks::measure_files_wrapped(
            self.0.as_mut(),
            files,
            &names,
            cfg,
            speed,
            done,
            &mut |k| k,
        )
    }

    fn profile_file_nodes(
        &mut self,
        path: &Path,
        input: Tensor,
        runs: usize,
    ) -> Result<Option<Vec<NodeTime>>, NetworkMeasureError> {
        Ok(self.0.profile_file_nodes(path, input, runs)?)
    }
}

/// The state of the machine a backend measures on, now: none for a simulated device, whose
/// times no machine's load or clock touches.
pub(crate) fn state_of(backend: &dyn Backend) -> Option<MachineState> {
    (!backend.simulated()).then(MachineState::now)
}

/// The reference probe's kernel on `backend`, when `cfg` asks for it; a simulated device has
/// no speed to track and gets none.
pub fn prepare_probe(
    backend: &mut dyn Backend,
    cfg: &MeasureConfig,
) -> Result<Option<Box<dyn Kernel>>, BackendError> {
    if cfg.probe_runs == 0 || backend.simulated() {
        return Ok(None);
    }
    let op = Op::from_key(PROBE_KEY).expect("the probe's key parses");
    backend.prepare_probe(&op).map(Some)
}

/// Prepare each op on `backend` (`wrap` sees every kernel prepared), then measure those that
/// prepared together; an op that did not prepare gets its error.
pub(crate) fn prepare_and_measure(
    backend: &mut dyn Backend,
    ops: &[Op],
    cfg: &MeasureConfig,
    mut wrap: impl FnMut(Box<dyn Kernel>) -> Box<dyn Kernel>,
) -> Vec<Result<Measurement, String>> {
    let mut probe = match prepare_probe(backend, cfg) {
        Ok(probe) => probe.map(&mut wrap),
        Err(e) => {
            let why = format!("the reference probe `{PROBE_KEY}` does not prepare: {e}");
            return ops.iter().map(|_| Err(why.clone())).collect();
        }
    };
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
    let measured = measure_group(
        &mut kernels,
        cfg,
        probe.as_deref_mut(),
        backend.energy_meter(),
    );
    for (slot, m) in slots.into_iter().zip(measured) {
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

/// How a profile run measures and records: the loop's settings, the provider to record when
/// the backend cannot tell, the one every node must run on (`--require-ep`), and the probe
/// time rows are expressed at (the table's `probe_nominal_us`).
pub struct Pass<'a> {
    pub cfg: &'a MeasureConfig,
    pub default_provider: &'a str,
    pub require_provider: Option<&'a str>,
    pub probe_nominal_us: Option<f64>,
}

/// Why a profile run stopped before its end (every row measured until then is in the table).
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("{0}")]
    Device(String),
}

/// Measure `ops` with `measurer`, `cfg.interleave` at a time, appending each group's rows to
/// `writer` as soon as the group is done. `on_op` sees every outcome (progress bars, logs).
/// A failed op is reported and skipped; the others go on. Only a table write error, or a
/// device that can no longer be reached, stops.
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
    pass: &Pass<'_>,
    writer: &mut TableWriter,
    mut on_op: impl FnMut(&OpOutcome),
) -> Result<Vec<OpOutcome>, ProfileError> {
    let mut outcomes = Vec::with_capacity(ops.len());
    let again = measure_pass(measurer, ops, pass, writer, true, &mut |o| {
        on_op(&o);
        outcomes.push(o);
    })?;
    measure_pass(measurer, &again, pass, writer, false, &mut |o| {
        on_op(&o);
        outcomes.push(o);
    })?;
    Ok(outcomes)
}

/// The probe time a new table is expressed at: the probe measured as an op, beside itself
/// (the median of its runs between batches, over about a second). `None` for a simulated
/// device or a loop without the probe.
pub fn probe_nominal_us(
    measurer: &mut dyn GroupMeasurer,
    cfg: &MeasureConfig,
) -> Result<Option<f64>, String> {
    if measurer.simulated() || cfg.probe_runs == 0 {
        return Ok(None);
    }
    let probe = Op::from_key(PROBE_KEY).expect("the probe's key parses");
    let m = measurer
        .measure(&[probe], cfg)?
        .pop()
        .unwrap_or_else(|| Err("no result".into()))
        .map_err(|e| format!("measuring the reference probe `{PROBE_KEY}`: {e}"))?;
    Ok(m.drift.map(|d| d.probe_us))
}

/// One pass over `ops`; returns the ops held back as too noisy (only when `may_retry`).
fn measure_pass(
    measurer: &mut dyn GroupMeasurer,
    ops: &[Op],
    pass: &Pass<'_>,
    writer: &mut TableWriter,
    may_retry: bool,
    emit: &mut dyn FnMut(OpOutcome),
) -> Result<Vec<Op>, ProfileError> {
    let cfg = pass.cfg;
    let mut retry = Vec::new();
    for group in ops.chunks(cfg.interleave.max(1)) {
        let results = measurer.measure(group, cfg).map_err(ProfileError::Device)?;
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
                            let m = match pass.probe_nominal_us {
                                Some(nominal) => m.at_probe_speed(nominal),
                                None => m,
                            };
                            let mut row = Row::new(op, &m, pass.default_provider);
                            if let Some(state) = measurer.machine_state() {
                                row = row.on_machine(state);
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
            let pass = Pass {
                cfg: &cfg,
                default_provider: "mock",
                require_provider: None,
                probe_nominal_us: None,
            };
            let out = profile_ops(
                &mut InProcess(Box::new(MockDevice::default())),
                &ops,
                &pass,
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
