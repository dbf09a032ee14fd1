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

/// Schema version written as `# hwnas-table: 1`.
pub const SCHEMA_VERSION: &str = "1";
const SCHEMA_KEY: &str = "hwnas-table";
/// Provenance fields that may differ between the start of a table and a resumed run.
const VOLATILE: [&str; 4] = ["created", "ort_library", "run_overhead_us", "load_average"];

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
        }
    }

    /// The row with the state of this machine now: its load and CPU clock.
    pub fn on_this_machine(self) -> Row {
        Row {
            load1: crate::host::load_average(),
            cpu_mhz: crate::host::cpu_mhz().map(|mhz| mhz.round()),
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

/// Provenance fields that may differ between the shards of one table.
const SHARD_KEYS: [&str; 1] = ["shard"];

impl LatencyTable {
    /// One table from the shards of one: every provenance field (but the volatile ones and the
    /// shard) must agree and no op may appear twice, unless `force` (then the first row of an
    /// op is kept and the first table's provenance wins).
    pub fn merge(
        parts: &[(PathBuf, LatencyTable)],
        force: bool,
    ) -> Result<LatencyTable, TableError> {
        let Some((first_path, first)) = parts.first() else {
            return Ok(LatencyTable {
                meta: Metadata::new(),
                rows: Vec::new(),
            });
        };
        let compared = |k: &str| !VOLATILE.contains(&k) && !SHARD_KEYS.contains(&k);
        if !force {
            for (path, t) in &parts[1..] {
                let keys = first.meta.iter().chain(&t.meta).map(|(k, _)| k.as_str());
                for k in keys.filter(|k| compared(k)) {
                    let (a, b) = (
                        first.meta(k).unwrap_or("(absent)"),
                        t.meta(k).unwrap_or("(absent)"),
                    );
                    if a != b {
                        return Err(TableError::MergeMismatch {
                            a: first_path.clone(),
                            b: path.clone(),
                            field: k.into(),
                            found_a: a.into(),
                            found_b: b.into(),
                        });
                    }
                }
            }
        }
        let mut rows: Vec<Row> = Vec::new();
        let mut from: std::collections::HashMap<String, &Path> = std::collections::HashMap::new();
        for (path, t) in parts {
            for row in &t.rows {
                if let Some(earlier) = from.get(&row.key) {
                    if force {
                        continue;
                    }
                    return Err(TableError::MergeDuplicate {
                        key: row.key.clone(),
                        a: earlier.to_path_buf(),
                        b: path.clone(),
                    });
                }
                from.insert(row.key.clone(), path);
                rows.push(row.clone());
            }
        }
        let mut meta: Metadata = first
            .meta
            .iter()
            .filter(|(k, _)| k != SCHEMA_KEY && !SHARD_KEYS.contains(&k.as_str()))
            .cloned()
            .collect();
        let names: Vec<String> = parts.iter().map(|(p, _)| p.display().to_string()).collect();
        meta.push(("merged_from".into(), names.join(" ")));
        Ok(LatencyTable { meta, rows })
    }

    /// Writes the table atomically: a temporary file beside `path`, then a rename.
    pub fn write(&self, path: &Path) -> Result<(), TableError> {
        let tmp = crate::files::temporary(path);
        let mut w = TableWriter::create(&tmp, &self.meta)?;
        for row in &self.rows {
            w.append(row)?;
        }
        drop(w);
        std::fs::rename(&tmp, path).map_err(|source| TableError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// How far a row's CPU clock may stray from the table's median before the row is suspect.
pub const CLOCK_TOLERANCE: f64 = 0.10;

/// What a table's rows say of the machine they were measured on.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineReport {
    /// One line: the range of load and clock seen (absent when no row recorded them).
    pub summary: Option<String>,
    /// Rows measured while the machine was busy, or at a clock far from the others'.
    pub problems: Vec<String>,
}

/// Rows measured with a 1-minute load above the machine's `cpus` (other work was competing
/// for the cores), and rows whose CPU clock is more than [`CLOCK_TOLERANCE`] from the median
/// row's (frequency scaling, turbo or thermal throttling between rows).
pub fn machine_report(rows: &[&Row], cpus: Option<usize>) -> MachineReport {
    let loads: Vec<(f64, &Row)> = rows.iter().filter_map(|r| Some((r.load1?, *r))).collect();
    let clocks: Vec<(f64, &Row)> = rows.iter().filter_map(|r| Some((r.cpu_mhz?, *r))).collect();
    let range = |v: &[(f64, &Row)]| {
        v.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (x, _)| {
                (lo.min(*x), hi.max(*x))
            })
    };
    let mut parts = Vec::new();
    let mut problems = Vec::new();
    if !loads.is_empty() {
        let (lo, hi) = range(&loads);
        let on = cpus.map_or(String::new(), |c| format!(" on {c} CPUs"));
        parts.push(format!("1-min load {lo:.2}-{hi:.2}{on}"));
        if let Some(cpus) = cpus {
            let busy: Vec<&(f64, &Row)> = loads.iter().filter(|(l, _)| *l > cpus as f64).collect();
            if let Some((load, row)) = busy.first() {
                problems.push(format!(
                    "{} rows measured while the machine was busy (1-min load above its {cpus} CPUs), e.g. `{}` at load {load:.2}; measure them again when it is quiet",
                    busy.len(),
                    row.key
                ));
            }
        }
    }
    if !clocks.is_empty() {
        let (lo, hi) = range(&clocks);
        let mut sorted: Vec<f64> = clocks.iter().map(|(c, _)| *c).collect();
        sorted.sort_by(f64::total_cmp);
        let median = crate::stats::quantile_sorted(&sorted, 0.5);
        parts.push(format!("CPU clock {lo:.0}-{hi:.0} MHz"));
        let off: Vec<&(f64, &Row)> = clocks
            .iter()
            .filter(|(c, _)| (c - median).abs() > CLOCK_TOLERANCE * median)
            .collect();
        if let Some((mhz, row)) = off.first() {
            problems.push(format!(
                "{} rows measured at a CPU clock more than {:.0}% from the median row's {median:.0} MHz (frequency scaling or throttling), e.g. `{}` at {mhz:.0} MHz; fix the clock (performance governor) and measure them again",
                off.len(),
                100.0 * CLOCK_TOLERANCE,
                row.key
            ));
        }
    }
    MachineReport {
        summary: (!parts.is_empty()).then(|| parts.join(", ")),
        problems,
    }
}

/// Appends rows to a table file, flushing each one.
pub struct TableWriter {
    csv: csv::Writer<File>,
    path: PathBuf,
}

impl TableWriter {
    /// Start a new table (an existing file is replaced).
    pub fn create(path: &Path, meta: &Metadata) -> Result<TableWriter, TableError> {
        let io = |source| TableError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::create(path).map_err(io)?;
        let mut header = format!("# {SCHEMA_KEY}: {SCHEMA_VERSION}\n");
        for (k, v) in meta {
            // One line per pair: newlines in a value would end the header.
            header.push_str(&format!("# {k}: {}\n", v.replace(['\n', '\r'], " ")));
        }
        file.write_all(header.as_bytes()).map_err(io)?;
        let mut csv = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(file);
        csv.write_record(Self::columns())
            .map_err(|e| io(e.into()))?;
        csv.flush().map_err(io)?;
        Ok(TableWriter {
            csv,
            path: path.to_path_buf(),
        })
    }

    /// Continue a table: drop a torn last line, check provenance against `meta`, and return the
    /// writer with the rows already there. A missing file starts a new table.
    pub fn resume(path: &Path, meta: &Metadata) -> Result<(TableWriter, Vec<Row>), TableError> {
        if !path.exists() {
            return Ok((Self::create(path, meta)?, Vec::new()));
        }
        let io = |source| TableError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if keep < bytes.len() {
            file.set_len(keep as u64).map_err(io)?;
        }
        let table = LatencyTable::from_reader(&bytes[..keep], path)?;
        for (k, expected) in meta.iter().filter(|(k, _)| !VOLATILE.contains(&k.as_str())) {
            let found = table.meta(k).unwrap_or("(absent)");
            if found != expected.replace(['\n', '\r'], " ") {
                return Err(TableError::Mismatch {
                    path: path.to_path_buf(),
                    field: k.clone(),
                    found: found.into(),
                    expected: expected.clone(),
                });
            }
        }
        let columns = bytes[..keep]
            .split(|&b| b == b'\n')
            .find(|line| !line.starts_with(b"#"))
            .unwrap_or_default();
        if columns != Self::columns().join(",").as_bytes() {
            // A table from an hwnas with other columns: rewritten (atomically) in today's
            // columns, the columns it lacks left empty, before anything is appended.
            drop(file);
            LatencyTable {
                meta: table
                    .meta
                    .iter()
                    .filter(|(k, _)| k != SCHEMA_KEY)
                    .cloned()
                    .collect(),
                rows: table.rows.clone(),
            }
            .write(path)?;
            file = OpenOptions::new().append(true).open(path).map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let csv = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(file);
        Ok((
            TableWriter {
                csv,
                path: path.to_path_buf(),
            },
            table.rows,
        ))
    }

    pub fn append(&mut self, row: &Row) -> Result<(), TableError> {
        let io = |source| TableError::Io {
            path: self.path.clone(),
            source,
        };
        self.csv.serialize(row).map_err(|e| TableError::Io {
            path: self.path.clone(),
            source: e.into(),
        })?;
        self.csv.flush().map_err(io)
    }

    fn columns() -> Vec<&'static str> {
        vec![
            "key",
            "kind",
            "batch",
            "cin",
            "hin",
            "win",
            "cout",
            "hout",
            "wout",
            "kernel",
            "stride",
            "groups",
            "expand",
            "se",
            "act",
            "residual",
            "flops",
            "params",
            "bytes_in",
            "bytes_out",
            "bytes_weights",
            "median_us",
            "p10_us",
            "p90_us",
            "mad_us",
            "runs",
            "ci_rel",
            "outliers",
            "capped",
            "wall_us",
            "reorder_us",
            "provider",
            "load1",
            "cpu_mhz",
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(device: &str, keys: &[&str]) -> LatencyTable {
        let op = |k: &str| Op::from_key(k).unwrap();
        let m = |us: f64| Measurement {
            stats: crate::stats::Stats::from_samples(&[us]).unwrap(),
            wall: crate::stats::Stats::from_samples(&[us]).unwrap(),
            edge_reorder_us: None,
            providers: vec![],
            in_network: false,
            capped: false,
        };
        LatencyTable {
            meta: vec![
                (SCHEMA_KEY.into(), SCHEMA_VERSION.into()),
                ("device".into(), device.into()),
                ("created".into(), format!("{}", keys.len())),
                ("shard".into(), format!("{}/2", keys.len())),
            ],
            rows: keys
                .iter()
                .map(|k| Row::new(&op(k), &m(3.0), "mock"))
                .collect(),
        }
    }

    #[test]
    fn shards_of_one_device_merge_and_others_are_refused() {
        let (a, b) = ("add-in:1x8x8x8", "gap-in:1x8x8x8");
        let parts = vec![
            (PathBuf::from("p1.csv"), shard("cpu", &[a])),
            (
                PathBuf::from("p2.csv"),
                shard("cpu", &[b, "add-in:1x4x8x8"]),
            ),
        ];
        let merged = LatencyTable::merge(&parts, false).unwrap();
        assert_eq!(merged.rows.len(), 3);
        assert_eq!(merged.meta("shard"), None);
        assert_eq!(merged.meta("merged_from"), Some("p1.csv p2.csv"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.csv");
        merged.write(&path).unwrap();
        assert_eq!(LatencyTable::read(&path).unwrap().rows, merged.rows);

        let other = vec![
            parts[0].clone(),
            (PathBuf::from("gpu.csv"), shard("gpu", &[b])),
        ];
        let err = LatencyTable::merge(&other, false).unwrap_err().to_string();
        assert!(err.contains("device") && err.contains("gpu.csv"), "{err}");
        assert_eq!(LatencyTable::merge(&other, true).unwrap().rows.len(), 2);
        let twice = vec![parts[0].clone(), parts[0].clone()];
        let err = LatencyTable::merge(&twice, false).unwrap_err().to_string();
        assert!(err.contains(a) && err.contains("both"), "{err}");
    }
    /// Rows as a measurement gives them: a spread of seeded samples per op, so the round trips
    /// carry every statistic with its full precision.
    fn measured_rows(keys: &[&str]) -> Vec<Row> {
        let mut rng = crate::rng::SplitMix64::new(7);
        keys.iter()
            .map(|k| {
                let samples: Vec<f64> = (0..40).map(|_| 10.0 + 3.0 * rng.next_f64()).collect();
                let stats = crate::stats::Stats::from_samples(&samples).unwrap();
                let m = Measurement {
                    stats,
                    wall: stats,
                    edge_reorder_us: None,
                    providers: vec![],
                    in_network: false,
                    capped: false,
                };
                Row::new(&Op::from_key(k).unwrap(), &m, "mock")
            })
            .collect()
    }

    fn meta(device: &str) -> Metadata {
        vec![
            ("device".into(), device.into()),
            ("created".into(), crate::host::utc_now()),
        ]
    }

    const KEYS: [&str; 3] = [
        "conv-in:1x16x32x32-out:32-k:3-s:2-g:1-pre:relu-act:none",
        "mbconv-in:1x24x56x56-out:24-e:4-k:5-s:1-se:1-act:relu-res:1",
        "linear-in:1x64x1x1-out:10",
    ];

    #[test]
    fn round_trip_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let rows = measured_rows(&KEYS);
        let mut w = TableWriter::create(&path, &meta("cpu")).unwrap();
        w.append(&rows[0]).unwrap();
        w.append(&rows[1]).unwrap();
        drop(w);
        // A torn write: half of the third row, no newline.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"linear-in:1x64x1x1-out:10,linear,1,64")
            .unwrap();
        drop(f);

        let (mut w, done) = TableWriter::resume(&path, &meta("cpu")).unwrap();
        assert_eq!(done, rows[..2].to_vec());
        w.append(&rows[2]).unwrap();
        drop(w);
        let t = LatencyTable::read(&path).unwrap();
        assert_eq!(t.rows, rows);
        assert_eq!(t.meta("device"), Some("cpu"));
        assert_eq!(t.get(KEYS[2]).unwrap().cout, 10);
    }

    /// A table written before rows carried the machine's state (no `load1`, `cpu_mhz`)
    /// still reads, and a resume rewrites it in today's columns before appending.
    #[test]
    fn tables_from_before_machine_state_read_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.csv");
        let rows = measured_rows(&KEYS);
        let mut w = TableWriter::create(&path, &meta("cpu")).unwrap();
        w.append(&rows[0]).unwrap();
        w.append(&rows[1]).unwrap();
        drop(w);
        let text = std::fs::read_to_string(&path).unwrap();
        let old: String = text
            .lines()
            .map(|l| {
                let l = if l.starts_with('#') {
                    l
                } else {
                    l.strip_suffix(",,").unwrap_or(l)
                };
                let l = l.strip_suffix(",load1,cpu_mhz").unwrap_or(l);
                format!("{l}\n")
            })
            .collect();
        assert!(!old.contains("load1"));
        std::fs::write(&path, &old).unwrap();
        assert_eq!(LatencyTable::read(&path).unwrap().rows, rows[..2].to_vec());

        let (mut w, done) = TableWriter::resume(&path, &meta("cpu")).unwrap();
        assert_eq!(done, rows[..2].to_vec());
        let now = rows[2].clone().on_this_machine();
        w.append(&now).unwrap();
        drop(w);
        let t = LatencyTable::read(&path).unwrap();
        assert_eq!(t.rows, [&rows[..2], std::slice::from_ref(&now)].concat());
        assert_eq!(t.meta("device"), Some("cpu"));
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains(",load1,cpu_mhz\n")
        );
        // This machine (Linux) has a load average.
        assert!(now.load1.is_some());
    }

    #[test]
    fn busy_rows_and_a_moving_clock_are_reported() {
        let rows = measured_rows(&KEYS);
        let with = |r: &Row, load: f64, mhz: f64| Row {
            load1: Some(load),
            cpu_mhz: Some(mhz),
            ..r.clone()
        };
        let steady = [
            with(&rows[0], 0.9, 3000.0),
            with(&rows[1], 1.1, 3010.0),
            with(&rows[2], 1.0, 2990.0),
        ];
        let refs: Vec<&Row> = steady.iter().collect();
        let report = machine_report(&refs, Some(2));
        assert!(report.problems.is_empty(), "{report:?}");
        assert_eq!(
            report.summary.as_deref(),
            Some("1-min load 0.90-1.10 on 2 CPUs, CPU clock 2990-3010 MHz")
        );
        let disturbed = [
            with(&rows[0], 0.9, 3000.0),
            with(&rows[1], 3.5, 3010.0),
            with(&rows[2], 1.0, 2200.0),
        ];
        let refs: Vec<&Row> = disturbed.iter().collect();
        let report = machine_report(&refs, Some(2));
        assert_eq!(report.problems.len(), 2, "{report:?}");
        assert!(report.problems[0].contains(&format!("`{}` at load 3.50", KEYS[1])));
        assert!(report.problems[1].contains(&format!("`{}` at 2200 MHz", KEYS[2])));
        // Tables from before the machine state was recorded say nothing of it.
        let refs: Vec<&Row> = rows.iter().collect();
        let report = machine_report(&refs, Some(2));
        assert_eq!(report.summary, None);
        assert!(report.problems.is_empty());
    }

    #[test]
    fn resume_refuses_another_device() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        TableWriter::create(&path, &meta("cpu")).unwrap();
        let err = TableWriter::resume(&path, &meta("gpu"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("device") && err.contains("--resume"), "{err}");
    }

    #[test]
    fn malformed_tables_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "key,kind\nfoo,bar\n").unwrap();
        let err = LatencyTable::read(&path).unwrap_err().to_string();
        assert!(err.contains("not an hwnas latency table"), "{err}");

        let rows = measured_rows(&KEYS[..1]);
        let mut w = TableWriter::create(&path, &meta("cpu")).unwrap();
        w.append(&rows[0]).unwrap();
        drop(w);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("pre:relu", "pre:gelu")).unwrap();
        let err = LatencyTable::read(&path).unwrap_err().to_string();
        assert!(err.contains("line 5") && err.contains("gelu"), "{err}");
        std::fs::write(&path, text.replace(",conv,1,", ",conv,x,")).unwrap();
        let err = LatencyTable::read(&path).unwrap_err().to_string();
        assert!(err.contains("line 5") && err.contains("bad row"), "{err}");
        let missing = LatencyTable::read(&dir.path().join("nope.csv"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.csv"), "{missing}");
    }
}
