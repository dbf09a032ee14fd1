//! # hwnas-python
//!
//! The `hwnas._hwnas` extension module: hwnas's latency models, spaces, per-choice tables and
//! ask/tell search for Python code, on the same library code as the CLI (so the same numbers).
//! The `hwnas` Python package (`python/hwnas`) wraps it with NumPy arrays and docstrings.
//!
//! - [`model::Model`] (`LatencyModel`): a fitted model, predicting one architecture with its
//!   interval or a batch from encodings or a genome matrix (compiled per space, as `predict
//!   --archs`).
//! - [`space::Space`] (`space()`): a built-in space or a space file: genes, encode/decode,
//!   samples, sizes; `_lut` cuts a model into `lut export`'s table.
//! - [`table::read_table`]: a latency table's metadata and rows, for `hwnas.LatencyTable`.
//! - [`search::Search`]: `hwnas_search::ask_tell` with the CLI's objectives and bounds, and
//!   its state file.
//!
//! Every error is a `hwnas.HwnasError` with the CLI's message.

use pyo3::prelude::*;

mod model;
mod search;
mod space;
mod table;

pyo3::create_exception!(_hwnas, HwnasError, pyo3::exceptions::PyException);

/// A Python exception with an error's message (and its causes, as the CLI prints them).
pub(crate) fn error(e: impl std::fmt::Display) -> PyErr {
    HwnasError::new_err(e.to_string())
}

#[pymodule]
fn _hwnas(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("HwnasError", m.py().get_type::<HwnasError>())?;
    m.add_class::<model::Model>()?;
    m.add_class::<space::Space>()?;
    m.add_class::<search::Search>()?;
    m.add_function(wrap_pyfunction!(space::space, m)?)?;
    m.add_function(wrap_pyfunction!(space::lut_json, m)?)?;
    m.add_function(wrap_pyfunction!(table::read_table, m)?)?;
    Ok(())
}
