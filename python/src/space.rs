//! `hwnas.space()`: a search space by name or file, and `lut` for it.

use hwnas_core::rng::SplitMix64;
use hwnas_search::lut::Lut;
use hwnas_search::space::{SearchSpace, open};
use pyo3::prelude::*;

use crate::error;
use crate::model::Model;

#[pyclass(unsendable, module = "hwnas._hwnas", name = "Space")]
pub struct Space {
    /// What it was opened from: a built-in name or a file.
    #[pyo3(get)]
    pub spec: String,
    pub space: Box<dyn SearchSpace>,
}

/// Opens a built-in space (`nb201`, `mbv3`) or a space file.
#[pyfunction]
pub fn space(spec: &str) -> PyResult<Space> {
    Ok(Space {
        spec: spec.into(),
        space: open(spec).map_err(error)?,
    })
}

/// Checks genomes laid end to end against the space's genes; their number.
pub fn checked_genomes(space: &dyn SearchSpace, genomes: &[u8]) -> PyResult<usize> {
    let genes = space.genes();
    let width = genes.len();
    if width == 0 || !genomes.len().is_multiple_of(width) {
        return Err(error(format!(
            "a genome of {} has {width} genes; {} values are not whole genomes",
            space.name(),
            genomes.len()
        )));
    }
    for (row, genome) in genomes.chunks_exact(width).enumerate() {
        if let Some(i) = genome.iter().zip(&genes).position(|(v, g)| *v >= g.levels) {
            return Err(error(format!(
                "genome {row}: gene {i} is {}, not one of 0..{}",
                genome[i], genes[i].levels
            )));
        }
    }
    Ok(genomes.len() / width)
}

#[pymethods]
impl Space {
    #[getter]
    fn name(&self) -> String {
        self.space.name().into()
    }

    fn describe(&self) -> String {
        self.space.describe()
    }

    /// One `(name, levels, ordered, choices)` per gene, as `hwnas space genes` lists them.
    fn genes(&self) -> Vec<(String, u8, bool, Vec<String>)> {
        self.space
            .gene_labels()
            .into_iter()
            .zip(self.space.genes())
            .map(|((name, choices), g)| (name, g.levels, g.ordered, choices))
            .collect()
    }

    /// The genome of an encoding: one choice index per gene (a list: PyO3 would make a
    /// `Vec<u8>` into bytes).
    fn encode(&self, arch: &str) -> PyResult<Vec<u32>> {
        let genome = self.space.encode(arch).map_err(error)?;
        Ok(genome.into_iter().map(u32::from).collect())
    }

    fn decode(&self, genome: Vec<u32>) -> PyResult<String> {
        let bytes: Vec<u8> = genome
            .iter()
            .map(|v| u8::try_from(*v).unwrap_or(u8::MAX))
            .collect();
        checked_genomes(self.space.as_ref(), &bytes)?;
        Ok(self.space.decode(&bytes))
    }

    /// `n` architectures drawn uniformly with `seed`.
    #[pyo3(signature = (n, seed = 1))]
    fn sample(&self, n: usize, seed: u64) -> Vec<String> {
        let mut rng = SplitMix64::new(seed);
        (0..n).map(|_| self.space.sample(&mut rng)).collect()
    }

    /// `(mflops, mparams, peak_memory_mb)` of an architecture's network.
    fn sizes(&self, arch: &str) -> PyResult<(f64, f64, f64)> {
        let net = self.space.network(arch).map_err(error)?;
        Ok((
            net.flops() as f64 / 1e6,
            net.params() as f64 / 1e6,
            net.peak_activation_bytes() as f64 / 1e6,
        ))
    }

    fn __repr__(&self) -> String {
        format!("hwnas.space({:?})  # {}", self.spec, self.space.describe())
    }
}

/// `hwnas lut export`'s table of a model for a space, as its JSON.
#[pyfunction]
#[pyo3(signature = (model, space, resolution = None))]
pub fn lut_json(model: &Model, space: &str, resolution: Option<u32>) -> PyResult<String> {
    let lut = Lut::for_space(&model.model, space, resolution).map_err(error)?;
    serde_json::to_string(&lut).map_err(error)
}
