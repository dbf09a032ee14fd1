//! `LatencyTable`: one row per op, as CSV with a provenance header.
//!
//! ```text
//! # hwnas-table: 1
//! # device: cpu
//! # cpu: AMD EPYC 7B13
//! # ...
//! key,kind,batch,cin,hin,win,cout,hout,wout,kernel,stride,groups,expand,se,act,residual,flops,...
//! conv-in:1x16x32x32-out:16-k:3-s:1-g:1-pre:relu-act:none,conv,1,16,32,32,16,32,32,3,1,1,,,none,,...
//! ```
//! The header lines start with `# ` and hold `name: value` pairs. Rows are appended and flushed
//! one at a time, so an interrupted run keeps every finished op; [`TableWriter::resume`] drops a
//! torn last line, checks that the provenance matches, and returns the keys already measured.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::Measurement;
use crate::op::{Op, OpError};

mod machine;
mod merge;
mod writer;

pub use machine::{CLOCK_TOLERANCE, MachineReport, machine_report};

/// Provenance: the reference probe's op key, and its time the table's latencies are expressed
/// at (measured alone when the table was started).
pub const PROBE_KEY_META: &str = "probe";
pub const PROBE_NOMINAL_META: &str = "probe_nominal_us";
pub use writer::TableWriter;

/// Provenance: the energy counter a table's `energy_uj` came from (absent: no energy).
pub const ENERGY_COUNTER_META: &str = "energy_counter";

/// Schema version written as `# hwnas-table: 1`.
pub const SCHEMA_VERSION: &str = "1";
const SCHEMA_KEY: &str = "hwnas-table";
/// Provenance fields that may differ between the start of a table and a resumed run.
const VOLATILE: [&str; 7] = [
    "created",
    "ort_library",
    "run_overhead_us",
    "load_average",
    "energy_period_ms",
    "energy_min_step_uj",
    "energy_idle_w",
];

/// Ordered `name: value` provenance pairs.
pub type Metadata = Vec<(String, String)>;

/// One measured op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub key: String,
    pub kind: String,
    pub batch: u32,
    pub cin: u32,
    pub hin: u32,
    pub win: u32,
    pub cout: u32,
    pub hout: u32,
    pub wout: u32,
    pub kernel: Option<u32>,
    pub stride: Option<u32>,
    pub groups: Option<u32>,
    pub expand: Option<u32>,
    pub se: Option<u8>,
    pub act: Option<String>,
    pub residual: Option<u8>,
    pub flops: u64,
    pub params: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub bytes_weights: u64,
    /// Median latency in microseconds (in-network time for ORT; see the table's latency_basis).
    pub median_us: f64,
    pub p10_us: f64,
    pub p90_us: f64,
    pub mad_us: f64,
    pub runs: usize,
    /// Half-width of the median's 95% CI relative to the median.
    pub ci_rel: f64,
    pub outliers: usize,
    /// 1 when the op hit the run or time cap before its CI reached the target.
    pub capped: u8,
    /// Median wall-clock time of the whole call for the lone op.
    pub wall_us: f64,
    /// Median layout conversions at the lone op's edges, excluded from `median_us`.
    pub reorder_us: Option<f64>,
    /// The execution providers that ran the op's nodes, `+`-separated.
    pub provider: String,
    /// The machine's 1-minute load average when the row was measured (absent on simulated
    /// devices and in tables from before it was recorded).
    pub load1: Option<f64>,
    /// The CPUs' mean clock in MHz when the row was measured, where readable.
    pub cpu_mhz: Option<f64>,
    /// The reference probe's median time next to this row's runs (the machine's speed then),
    /// in microseconds; absent when measured without the probe.
    pub probe_us: Option<f64>,
    /// The median before the probe's correction; `median_us` is at the table's
    /// `probe_nominal_us`: `median_us ≈ raw_us · probe_nominal_us / probe_us`.
    pub raw_us: Option<f64>,
    /// Energy per run above the device's idle power, in microjoules (median of the energy
    /// windows; see the table's `energy_*` provenance); absent unless profiled with `--energy`.
    pub energy_uj: Option<f64>,
    /// Spread of the energy windows: (max - min) / median.
    pub energy_spread: Option<f64>,
}

impl Row {
    /// A row for an op and its measurement; `default_provider` names the provider when the
    /// backend cannot tell (mock).
    pub fn new(op: &Op, m: &Measurement, default_provider: &str) -> Row {
        let (input, output) = (op.input(), op.output());
        let (mut kernel, mut stride, mut groups, mut expand, mut se, mut act, mut residual) =
            (None, None, None, None, None, None, None);
        match op {
            Op::Conv(c) => {
                (kernel, stride, groups) = (Some(c.k), Some(c.stride), Some(c.groups));
                act = Some(if c.pre_act == crate::op::Activation::None {
                    c.act.to_string()
                } else {
                    format!("{}>{}", c.pre_act, c.act)
                });
            }
            Op::MbConv(b) => {
                (kernel, stride, expand) = (Some(b.k), Some(b.stride), Some(b.expand));
                (se, residual, act) = (
                    Some(u8::from(b.se)),
                    Some(u8::from(b.residual)),
                    Some(b.act.to_string()),
                );
            }
            Op::Pool(p) => (kernel, stride) = (Some(p.k), Some(p.stride)),
            Op::Act(a) => act = Some(a.act.to_string()),
            _ => {}
        }
        let s = &m.stats;
        Row {
            key: op.key(),
            kind: op.kind().into(),
            batch: input.n,
            cin: input.c,
            hin: input.h,
            win: input.w,
            cout: output.c,
            hout: output.h,
            wout: output.w,
            kernel,
            stride,
            groups,
            expand,
            se,
            act,
            residual,
            flops: op.flops(),
            params: op.params(),
            bytes_in: op.bytes_in(),
            bytes_out: op.bytes_out(),
            bytes_weights: op.bytes_weights(),
            median_us: s.median,
            p10_us: s.p10,
            p90_us: s.p90,
            mad_us: s.mad,
            runs: s.n,
            ci_rel: s.ci_rel,
            outliers: s.outliers,
            capped: u8::from(m.capped),
            wall_us: m.wall.median,
            reorder_us: m.edge_reorder_us,
            provider: if m.providers.is_empty() {
                default_provider.to_string()
            } else {
                m.providers.join("+")
            },
            load1: None,
            cpu_mhz: None,
            probe_us: m.drift.map(|d| d.probe_us),
            raw_us: m.drift.map(|d| d.raw.median),
            energy_uj: m.energy.map(|e| e.per_run_uj),
            energy_spread: m.energy.map(|e| e.spread),
        }
    }

    /// The row with the state of the machine that measured it: its load and CPU clock.
    pub fn on_machine(self, state: crate::host::MachineState) -> Row {
        Row {
            load1: state.load1,
            cpu_mhz: state.cpu_mhz,
            ..self
        }
    }

    /// The row with its latencies multiplied by `factor` (moved to another probe speed); the
    /// raw median and the probe's time stay as measured.
    pub fn scaled(self, factor: f64) -> Row {
        Row {
            median_us: self.median_us * factor,
            p10_us: self.p10_us * factor,
            p90_us: self.p90_us * factor,
            mad_us: self.mad_us * factor,
            ..self
        }
    }

    /// The op this row measured.
    pub fn op(&self) -> Result<Op, OpError> {
        Op::from_key(&self.key)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {message}")]
    Malformed {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error(
        "{a} and {b} differ in {field} (`{found_a}` vs `{found_b}`): they were not measured \
         the same way, and merging them would mix devices; merge tables of one device (--force \
         to merge anyway)"
    )]
    MergeMismatch {
        a: PathBuf,
        b: PathBuf,
        field: String,
        found_a: String,
        found_b: String,
    },
    #[error("op `{key}` is in both {a} and {b}; shards do not overlap (--force keeps the first)")]
    MergeDuplicate { key: String, a: PathBuf, b: PathBuf },
    #[error(
        "{path} was measured with {field} = `{found}`, this run has `{expected}`; \
         profile into a new --out file instead of --resume"
    )]
    Mismatch {
        path: PathBuf,
        field: String,
        found: String,
        expected: String,
    },
}

/// A latency table read back from disk.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyTable {
    pub meta: Metadata,
    pub rows: Vec<Row>,
}

impl LatencyTable {
    pub fn read(path: &Path) -> Result<LatencyTable, TableError> {
        let io = |source| TableError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        Self::from_reader(BufReader::new(file), path)
    }

    /// Only the provenance header of a table file (its rows are not read: a torn last row,
    /// which `TableWriter::resume` drops, does not stop it).
    pub fn read_meta(path: &Path) -> Result<Metadata, TableError> {
        let text = std::fs::read_to_string(path).map_err(|source| TableError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        Ok(Self::from_reader(header.as_bytes(), path)?.meta)
    }

    /// A table from bytes already read; `path` names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<LatencyTable, TableError> {
        Self::from_reader(bytes, path)
    }

    fn from_reader(mut reader: impl BufRead, path: &Path) -> Result<LatencyTable, TableError> {
        let malformed = |line: u64, message: String| TableError::Malformed {
            path: path.to_path_buf(),
            line,
            message,
        };
        let mut text = String::new();
        reader
            .read_to_string(&mut text)
            .map_err(|source| TableError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let mut meta = Metadata::new();
        let mut header_lines = 0u64;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix('#') else {
                break;
            };
            header_lines += 1;
            let (k, v) = rest.trim().split_once(':').ok_or_else(|| {
                malformed(
                    header_lines,
                    format!("header line `{line}` is not `# name: value`"),
                )
            })?;
            meta.push((k.trim().to_string(), v.trim().to_string()));
        }
        match meta.first() {
            Some((k, v)) if k == SCHEMA_KEY && v == SCHEMA_VERSION => {}
            Some((k, v)) if k == SCHEMA_KEY => {
                return Err(malformed(
                    1,
                    format!("schema version {v}; this hwnas reads version {SCHEMA_VERSION}"),
                ));
            }
            _ => {
                return Err(malformed(
                    1,
                    format!(
                        "not an hwnas latency table (it must start with `# {SCHEMA_KEY}: {SCHEMA_VERSION}`)"
                    ),
                ));
            }
        }
        let mut csv = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let mut rows = Vec::new();
        for (i, rec) in csv.deserialize::<Row>().enumerate() {
            // Header comment lines, the column line, then rows (1-based).
            let line = header_lines + 2 + i as u64;
            let row = rec.map_err(|e| malformed(line, format!("bad row: {e}")))?;
            row.op().map_err(|e| malformed(line, e.to_string()))?;
            if !(row.median_us.is_finite() && row.median_us >= 0.0) {
                return Err(malformed(
                    line,
                    format!("median_us `{}` is not a latency", row.median_us),
                ));
            }
            rows.push(row);
        }
        Ok(LatencyTable { meta, rows })
    }

    /// The table's energy as a table of its own, for models that predict energy the way they
    /// predict latency: each row's energy inside a network where its latencies were
    /// (`p10`/`p90` from the windows' spread). `None` for a table profiled without `--energy`.
    ///
    /// `energy_uj` is a lone op's whole call, and the call's fixed overhead (the runtime's
    /// entry, its edge conversions) is paid once per network, not once per op, as the
    /// in-network latency leaves it out: the op's share is the call's energy times the share
    /// of the call its own kernels took (in-network over wall time, both uncorrected), i.e.
    /// the call's mean power above idle over the op's own time.
    pub fn energy(&self) -> Option<LatencyTable> {
        self.meta(ENERGY_COUNTER_META)?;
        let rows = self
            .rows
            .iter()
            .filter_map(|r| {
                let own = r.raw_us.unwrap_or(r.median_us);
                let share = if r.wall_us > 0.0 {
                    (own / r.wall_us).min(1.0)
                } else {
                    1.0
                };
                let uj = r.energy_uj? * share;
                let half = r.energy_spread.unwrap_or(0.0) / 2.0;
                Some(Row {
                    median_us: uj,
                    p10_us: uj * (1.0 - half),
                    p90_us: uj * (1.0 + half),
                    mad_us: uj * half / 2.0,
                    ..r.clone()
                })
            })
            .collect();
        Some(LatencyTable {
            meta: self.meta.clone(),
            rows,
        })
    }

    pub fn meta(&self, name: &str) -> Option<&str> {
        self.meta
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn get(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.key == key)
    }
}

#[cfg(test)]
mod tests;
