//! Latency tables (`hwnas profile`'s CSV) for Python: read as the CLI reads them.

use std::path::PathBuf;

use hwnas_core::table::LatencyTable;
use pyo3::prelude::*;

use crate::error;

/// A table's metadata (`# name: value` lines, in order) and its rows as JSON objects with the
/// CSV's column names.
#[pyfunction]
pub fn read_table(path: PathBuf) -> PyResult<(Vec<(String, String)>, String)> {
    let table = LatencyTable::read(&path).map_err(error)?;
    let rows = serde_json::to_string(&table.rows).map_err(error)?;
    Ok((table.meta, rows))
}
