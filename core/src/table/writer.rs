//! Writing a table row by row, and resuming an interrupted one.

use super::*;

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
        // Rows without energy must not join a table whose rows have it, nor the other way.
        let energy = |m: Option<&str>| m.unwrap_or("(absent)").to_string();
        let (found, expected) = (
            energy(table.meta(ENERGY_COUNTER_META)),
            energy(
                meta.iter()
                    .find(|(k, _)| k == ENERGY_COUNTER_META)
                    .map(|(_, v)| v.as_str()),
            ),
        );
        if found != expected {
            return Err(TableError::Mismatch {
                path: path.to_path_buf(),
                field: ENERGY_COUNTER_META.into(),
                found,
                expected,
            });
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
            "probe_us",
            "raw_us",
            "energy_uj",
            "energy_spread",
        ]
    }
}
