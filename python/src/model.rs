//! `hwnas.LatencyModel`: a fitted latency model (`hwnas fit`), predicting architectures of any
//! space as `hwnas predict` does.

use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use hwnas_core::Precision;
use hwnas_core::table::LatencyTable;
use hwnas_predictor::LatencyModel;
use hwnas_search::objective::LatencySource;
use hwnas_search::space::{SearchSpace, open};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBytes, PyList};

use crate::error;
use crate::space::checked_genomes;

#[pyclass(unsendable, module = "hwnas._hwnas", name = "LatencyModel")]
pub struct Model {
    pub model: LatencyModel,
    pub path: PathBuf,
    /// Per space spec: the space and the model as a latency source for it, compiled where
    /// the space is a sum of units (made once, on the first batch).
    prepared: HashMap<String, Rc<Prepared>>,
}

struct Prepared {
    space: Box<dyn SearchSpace>,
    source: LatencySource,
}

impl Model {
    fn prepared(&mut self, spec: &str) -> PyResult<Rc<Prepared>> {
        if let Some(p) = self.prepared.get(spec) {
            return Ok(p.clone());
        }
        let space = open(spec).map_err(error)?;
        let source = LatencySource::model(
            self.model.device.clone(),
            self.model.clone(),
            space.as_ref(),
        );
        let p = Rc::new(Prepared { space, source });
        self.prepared.insert(spec.into(), p.clone());
        Ok(p)
    }
}

/// Each prediction as little-endian f64 bytes, which the Python side views as a NumPy array.
fn as_bytes<'py>(py: Python<'py>, ms: &[f64]) -> Bound<'py, PyBytes> {
    let bytes: Vec<u8> = ms.iter().flat_map(|v| v.to_le_bytes()).collect();
    PyBytes::new(py, &bytes)
}

#[pymethods]
impl Model {
    /// Loads a model file written by `hwnas fit`.
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Model> {
        Ok(Model {
            model: LatencyModel::load(&path).map_err(error)?,
            path,
            prepared: HashMap::new(),
        })
    }

    /// A table as a model: the lookup-table sum, without regressor or calibration (as
    /// `hwnas predict --table`).
    #[staticmethod]
    fn from_table(path: PathBuf) -> PyResult<Model> {
        let table = LatencyTable::read(&path).map_err(error)?;
        Ok(Model {
            model: LatencyModel::from_table(&table, &path),
            path,
            prepared: HashMap::new(),
        })
    }

    /// The roofline as a model: no measurement, each op from its FLOPs and bytes at nominal
    /// rates; the basis of a fit to timings without a prior device.
    #[staticmethod]
    fn roofline(device: &str) -> Model {
        Model {
            model: LatencyModel::roofline(device),
            path: PathBuf::new(),
            prepared: HashMap::new(),
        }
    }

    /// A model of the device that ran `archs` in `latencies_ms` (whole networks), this model the
    /// prior (`hwnas fit --networks --prior`). Returns the model and each timing's held-out
    /// relative error, in the order given.
    fn fit_networks(
        &self,
        space: &str,
        archs: Vec<String>,
        latencies_ms: Vec<f64>,
        device: &str,
        precision: &str,
    ) -> PyResult<(Model, Vec<f64>)> {
        if archs.len() != latencies_ms.len() {
            return Err(error(format!(
                "{} architectures but {} latencies",
                archs.len(),
                latencies_ms.len()
            )));
        }
        let spec = open(space).map_err(error)?;
        let precision: Precision = precision.parse().map_err(error)?;
        let timed: Vec<(String, f64)> = archs.into_iter().zip(latencies_ms).collect();
        let fitted = hwnas_search::timed::fit(
            &self.model,
            spec.as_ref(),
            space,
            &timed,
            device,
            precision,
            "(python)",
        )
        .map_err(error)?;
        // The errors come in the fit's (sorted) order: give them back in the caller's.
        let error_of: HashMap<&str, f64> = fitted
            .model
            .calibration_archs
            .iter()
            .map(String::as_str)
            .zip(fitted.held_out_errors.iter().copied())
            .collect();
        let errors = timed
            .iter()
            .map(|(arch, _)| {
                let canonical = spec.decode(&spec.encode(arch).map_err(error)?);
                Ok(error_of
                    .get(canonical.as_str())
                    .copied()
                    .unwrap_or(f64::NAN))
            })
            .collect::<PyResult<Vec<f64>>>()?;
        let model = Model {
            model: fitted.model,
            path: PathBuf::new(),
            prepared: HashMap::new(),
        };
        Ok((model, errors))
    }

    /// Which `k` of `candidates` to time next (`hwnas fit --suggest K --candidates`).
    fn suggest(&self, space: &str, candidates: Vec<String>, k: usize) -> PyResult<Vec<String>> {
        let spec = open(space).map_err(error)?;
        hwnas_search::timed::suggest(&self.model, spec.as_ref(), &candidates, k).map_err(error)
    }

    /// Writes the model file (`hwnas fit`'s JSON).
    fn save(&mut self, path: PathBuf) -> PyResult<()> {
        self.model.save(&path).map_err(error)?;
        self.path = path;
        Ok(())
    }

    #[getter]
    fn device(&self) -> String {
        self.model.device.clone()
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// `(latency_ms, low_ms, high_ms)` of one architecture, as `hwnas predict --arch` gives it.
    fn predict(&mut self, space: &str, arch: &str) -> PyResult<(f64, f64, f64)> {
        let p = self.prepared(space)?;
        let net = p.space.network(arch).map_err(error)?;
        let r = self
            .model
            .predict(&self.model.terms(&net))
            .map_err(|e| error(format!("predicting `{arch}`: {e}")))?;
        Ok((r.latency_us / 1e3, r.low_us / 1e3, r.high_us / 1e3))
    }

    /// Latencies (ms) of encodings, as `hwnas predict --archs` gives them. The strings are
    /// read in place (no copy), as the list holds them.
    fn _predict_archs<'py>(
        &mut self,
        py: Python<'py>,
        space: &str,
        archs: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let p = self.prepared(space)?;
        let mut ms = Vec::with_capacity(archs.len());
        for (i, item) in archs.iter().enumerate() {
            let arch: PyBackedStr = item
                .extract()
                .map_err(|_| error(format!("architecture {i} is not a string")))?;
            let genome = p
                .space
                .encode(&arch)
                .map_err(|e| error(format!("architecture {i}: {e}")))?;
            ms.push(latency(&p, &genome).map_err(|e| error(format!("architecture {i}: {e}")))?);
        }
        Ok(as_bytes(py, &ms))
    }

    /// Latencies (ms) of genomes laid end to end (one byte a gene).
    fn _predict_genomes<'py>(
        &mut self,
        py: Python<'py>,
        space: &str,
        genomes: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        let p = self.prepared(space)?;
        let count = checked_genomes(p.space.as_ref(), genomes)?;
        let width = p.space.genes().len();
        let mut ms = Vec::with_capacity(count);
        if let LatencySource::Model {
            compiled: Some(c), ..
        } = &p.source
        {
            c.predict_batch(genomes, &mut ms);
        } else {
            for (i, g) in genomes.chunks_exact(width).enumerate() {
                ms.push(latency(&p, g).map_err(|e| error(format!("row {i}: {e}")))?);
            }
        }
        Ok(as_bytes(py, &ms))
    }

    fn __repr__(&self) -> String {
        format!(
            "hwnas.LatencyModel.load({:?})  # device `{}`",
            self.path.display().to_string(),
            self.model.device
        )
    }
}

/// One genome's latency as `predict --archs` computes it (a compiled model reads the genome
/// alone, so no encoding is written for it).
fn latency(p: &Prepared, genome: &[u8]) -> Result<f64, String> {
    if !p.source.needs_network() {
        return p.source.latency_ms("", genome, None);
    }
    let arch = p.space.decode(genome);
    let net = p.space.network(&arch).map_err(|e| e.to_string())?;
    p.source.latency_ms(&arch, genome, Some(&net))
}
