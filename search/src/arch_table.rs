//! Tables keyed by architecture: a CSV with an architecture column and a value column, such as
//! NAS-Bench-201's accuracies or HW-NAS-Bench-style latencies measured on a device.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::space::SearchSpace;

/// Headers taken as the architecture column (compared case-insensitively).
pub const ARCH_HEADERS: [&str; 5] = [
    "arch",
    "arch_string",
    "arch_str",
    "architecture",
    "encoding",
];

#[derive(Debug, thiserror::Error)]
pub enum ArchTableError {
    #[error("{path}: {why}")]
    Bad { path: PathBuf, why: String },
    #[error(
        "{path}: `{arch}` is not in the table ({rows} architectures); use a table that covers the space, or fit:{path} to generalise from it"
    )]
    Missing {
        path: PathBuf,
        arch: String,
        rows: usize,
    },
}

/// What a column holds, to pick it when the user did not name one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A header containing `acc`.
    Accuracy,
    /// A header containing `latency` or `ms`; a header ending in `_us` is in microseconds.
    LatencyMs,
}

#[derive(Debug, Clone)]
pub struct ArchTable {
    pub path: PathBuf,
    pub column: String,
    /// Keyed by the space's canonical encoding.
    values: HashMap<String, f64>,
}

impl ArchTable {
    /// Reads `path`; `column` names the value column, or `None` to pick it by `kind`.
    pub fn read(
        path: &Path,
        column: Option<&str>,
        kind: ValueKind,
        space: &dyn SearchSpace,
    ) -> Result<ArchTable, ArchTableError> {
        let bad = |why: String| ArchTableError::Bad {
            path: path.to_path_buf(),
            why,
        };
        let mut reader = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|e| bad(format!("cannot read: {e}")))?;
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| bad(format!("no header row: {e}")))?
            .iter()
            .map(str::to_string)
            .collect();
        let arch_col = headers
            .iter()
            .position(|h| ARCH_HEADERS.contains(&h.to_ascii_lowercase().as_str()))
            .ok_or_else(|| {
                bad(format!(
                    "no architecture column: headers are {headers:?}, expected one of {ARCH_HEADERS:?}"
                ))
            })?;
        let value_col = match column {
            Some(c) => headers
                .iter()
                .position(|h| h == c)
                .ok_or_else(|| bad(format!("no column `{c}`; headers are {headers:?}")))?,
            None => {
                let matches: Vec<usize> = (0..headers.len())
                    .filter(|i| *i != arch_col && kind.matches(&headers[*i]))
                    .collect();
                match matches[..] {
                    [one] => one,
                    _ => {
                        return Err(bad(format!(
                            "which column holds the {}? headers are {headers:?}; name it as FILE.csv#COLUMN",
                            kind.describe()
                        )));
                    }
                }
            }
        };
        let scale = if kind == ValueKind::LatencyMs && headers[value_col].ends_with("_us") {
            1e-3
        } else {
            1.0
        };
        let mut values = HashMap::new();
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let record = record.map_err(|e| bad(format!("row {line}: {e}")))?;
            let field = |c: usize| record.get(c).unwrap_or("");
            let arch = field(arch_col);
            let genome = space
                .encode(arch)
                .map_err(|e| bad(format!("row {line}: {e}")))?;
            let value: f64 = field(value_col).parse().map_err(|_| {
                bad(format!(
                    "row {line}: `{}` in column `{}` is not a number",
                    field(value_col),
                    headers[value_col]
                ))
            })?;
            if !value.is_finite() {
                return Err(bad(format!("row {line}: value {value} is not finite")));
            }
            if values
                .insert(space.decode(&genome), value * scale)
                .is_some()
            {
                return Err(bad(format!("row {line}: `{arch}` appears twice")));
            }
        }
        if values.is_empty() {
            return Err(bad("no rows".into()));
        }
        Ok(ArchTable {
            path: path.to_path_buf(),
            column: headers[value_col].clone(),
            values,
        })
    }

    /// Reads `FILE.csv[#COLUMN]`, the way the command line names a table and its column.
    pub fn from_spec(
        spec: &str,
        kind: ValueKind,
        space: &dyn SearchSpace,
    ) -> Result<ArchTable, ArchTableError> {
        let (path, column) = match spec.rsplit_once('#') {
            Some((path, column)) => (path, Some(column)),
            None => (spec, None),
        };
        ArchTable::read(Path::new(path), column, kind, space)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value of a canonical encoding (as [`SearchSpace::decode`] writes it).
    pub fn get(&self, arch: &str) -> Result<f64, ArchTableError> {
        self.values
            .get(arch)
            .copied()
            .ok_or_else(|| ArchTableError::Missing {
                path: self.path.clone(),
                arch: arch.into(),
                rows: self.values.len(),
            })
    }

    /// Every (canonical encoding, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.values.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

impl ValueKind {
    fn matches(self, header: &str) -> bool {
        let h = header.to_ascii_lowercase();
        match self {
            ValueKind::Accuracy => h.contains("acc"),
            ValueKind::LatencyMs => h.contains("latency") || h.contains("ms") || h.ends_with("_us"),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ValueKind::Accuracy => "accuracy (a header containing `acc`)",
            ValueKind::LatencyMs => "latency (a header containing `latency` or `ms`)",
        }
    }
}

/// A temporary file holding `text`, for the tests that read tables.
#[cfg(test)]
pub(crate) fn temp_file(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::nb201::Nb201;

    const A: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";

    #[test]
    fn reads_the_nb201_layout_and_picks_the_accuracy_column() {
        let f = temp_file(&format!("arch_index,arch_string,test_acc\n1,{A},93.66\n"));
        let t = ArchTable::read(f.path(), None, ValueKind::Accuracy, &Nb201).unwrap();
        assert_eq!((t.len(), t.column.as_str()), (1, "test_acc"));
        assert_eq!(t.get(A).unwrap(), 93.66);
        let missing = t.get(&A.replace("avg_pool_3x3~1", "none~1")).unwrap_err();
        assert!(
            missing.to_string().contains("is not in the table"),
            "{missing}"
        );
    }

    #[test]
    fn microsecond_columns_convert_and_errors_name_the_row() {
        let f = temp_file(&format!("arch,latency_us\n{A},1500\n"));
        let t = ArchTable::read(f.path(), None, ValueKind::LatencyMs, &Nb201).unwrap();
        assert_eq!(t.get(A).unwrap(), 1.5);
        let f = temp_file(&format!("arch,latency_ms\n{A},fast\n"));
        let e = ArchTable::read(f.path(), None, ValueKind::LatencyMs, &Nb201).unwrap_err();
        assert!(e.to_string().contains("row 2: `fast`"), "{e}");
        let f = temp_file(&format!("arch,a_ms,b_ms\n{A},1,2\n"));
        let e = ArchTable::read(f.path(), None, ValueKind::LatencyMs, &Nb201).unwrap_err();
        assert!(e.to_string().contains("FILE.csv#COLUMN"), "{e}");
        let t = ArchTable::read(f.path(), Some("b_ms"), ValueKind::LatencyMs, &Nb201).unwrap();
        assert_eq!(t.get(A).unwrap(), 2.0);
        let f = temp_file("net,acc\nx,1\n");
        let e = ArchTable::read(f.path(), None, ValueKind::Accuracy, &Nb201).unwrap_err();
        assert!(e.to_string().contains("no architecture column"), "{e}");
        let f = temp_file(&format!("arch,acc\n{A},1\n{A},2\n"));
        let e = ArchTable::read(f.path(), None, ValueKind::Accuracy, &Nb201).unwrap_err();
        assert!(e.to_string().contains("appears twice"), "{e}");
    }
}
