//! `hwnas.Search`: an ask/tell search ([`hwnas_search::ask_tell`]) set up as `hwnas search`
//! sets one up, with an optional state file to resume from.

use std::path::PathBuf;

use hwnas_search::accuracy::AccuracySource;
use hwnas_search::ask_tell::{AskTell, Setup};
use hwnas_search::journal::Journal;
use hwnas_search::objective::{
    Constraint, LatencySource, Metric, energy_indices, name_apart, parse_objectives,
};
use hwnas_search::space::open;
use hwnas_search::strategy::{Config, Strategy};
use pyo3::prelude::*;
use serde_json::json;

use crate::error;
use crate::model::Model;

#[pyclass(unsendable, module = "hwnas._hwnas", name = "Search")]
pub struct Search {
    inner: AskTell,
}

/// The bounds `hwnas search`'s `--max-*`/`--min-accuracy` flags give.
fn constraints(
    latency: &[LatencySource],
    bounds: [(&str, Option<f64>); 6],
) -> PyResult<Vec<Constraint>> {
    let mut out = Vec::new();
    for (name, value) in bounds {
        let Some(bound) = value else { continue };
        if !(bound.is_finite() && bound > 0.0) {
            return Err(error(format!(
                "{name} must be a positive number, got {bound}"
            )));
        }
        let metrics = match name {
            "max_latency_ms" if latency.is_empty() => {
                return Err(error("max_latency_ms needs a latency model"));
            }
            "max_latency_ms" => (0..latency.len()).map(Metric::Latency).collect(),
            "max_energy_mj" => energy_indices(latency, None)
                .map_err(error)?
                .into_iter()
                .map(Metric::Energy)
                .collect(),
            "max_mparams" => vec![Metric::Mparams],
            "max_mflops" => vec![Metric::Mflops],
            "max_memory_mb" => vec![Metric::MemoryMb],
            _ => vec![Metric::Accuracy],
        };
        out.extend(
            metrics
                .into_iter()
                .map(|metric| Constraint { metric, bound }),
        );
    }
    Ok(out)
}

#[pymethods]
impl Search {
    #[new]
    #[pyo3(signature = (space, models = Vec::new(), objectives = "accuracy,latency".to_string(),
        seed = 1, max_evaluations = 1000, population = None, strategy = "nsga2".to_string(),
        accuracy = None, max_latency_ms = None, max_mparams = None, max_mflops = None,
        max_memory_mb = None, min_accuracy = None, local_search = true, screening = true,
        state = None, max_energy_mj = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        space: String,
        models: Vec<PyRef<'_, Model>>,
        objectives: String,
        seed: u64,
        max_evaluations: usize,
        population: Option<usize>,
        strategy: String,
        accuracy: Option<String>,
        max_latency_ms: Option<f64>,
        max_mparams: Option<f64>,
        max_mflops: Option<f64>,
        max_memory_mb: Option<f64>,
        min_accuracy: Option<f64>,
        local_search: bool,
        screening: bool,
        state: Option<PathBuf>,
        max_energy_mj: Option<f64>,
    ) -> PyResult<Search> {
        let paths: Vec<&PathBuf> = models.iter().map(|m| &m.path).collect();
        let mut settings = json!({
            "space": space, "models": paths, "objectives": objectives, "seed": seed,
            "max_evaluations": max_evaluations, "population": population, "strategy": strategy,
            "accuracy": accuracy, "max_latency_ms": max_latency_ms, "max_mparams": max_mparams,
            "max_mflops": max_mflops, "max_memory_mb": max_memory_mb, "min_accuracy": min_accuracy,
            "local_search": local_search, "screening": screening,
        });
        // Only when given, so that state files from before the bound existed still resume.
        if let Some(mj) = max_energy_mj {
            settings["max_energy_mj"] = mj.into();
        }
        let opened = open(&space).map_err(error)?;
        let mut latency = Vec::new();
        for m in &models {
            let model = m.model.clone();
            latency.push(LatencySource::model(
                model.device.clone(),
                model,
                opened.as_ref(),
            ));
        }
        name_apart(&mut latency);
        let accuracy = match accuracy.as_deref() {
            Some("ask") => {
                return Err(error(
                    "accuracy=\"ask\" is the CLI's; here leave accuracy out and use ask()/tell()",
                ));
            }
            Some(spec) => Some(AccuracySource::parse(spec, opened.as_ref(), seed).map_err(error)?),
            None => None,
        };
        let strategy = Strategy::parse(&strategy)
            .ok_or_else(|| error(format!("strategy `{strategy}`: nsga2 or random")))?;
        let setup = Setup {
            objectives: parse_objectives(&objectives, &latency).map_err(error)?,
            constraints: constraints(
                &latency,
                [
                    ("max_latency_ms", max_latency_ms),
                    ("max_energy_mj", max_energy_mj),
                    ("max_mparams", max_mparams),
                    ("max_mflops", max_mflops),
                    ("max_memory_mb", max_memory_mb),
                    ("min_accuracy", min_accuracy),
                ],
            )?,
            space: opened,
            accuracy,
            latency,
            strategy,
            config: Config {
                population: population
                    .unwrap_or_else(|| Config::default_population(max_evaluations)),
                max_evaluations,
                seed,
                local_search,
                screening,
                ..Config::default()
            },
        };
        let journal = match &state {
            Some(path) if path.exists() => {
                let journal = Journal::load(path).map_err(error)?;
                if journal.settings() != &settings {
                    return Err(error(format!(
                        "{} holds another search ({}); give the same settings to resume it, or another state file",
                        path.display(),
                        journal.settings()
                    )));
                }
                journal
            }
            _ => {
                if let Some(dir) = state.as_deref().and_then(std::path::Path::parent) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| error(format!("creating {}: {e}", dir.display())))?;
                }
                let journal = Journal::new(settings, state.clone());
                journal.save().map_err(error)?;
                journal
            }
        };
        Ok(Search {
            inner: AskTell::new(setup, journal).map_err(error)?,
        })
    }

    /// The architectures to evaluate next; empty when the search is done.
    fn ask(&mut self) -> PyResult<Vec<String>> {
        self.inner.ask().map_err(error)
    }

    /// Answers the last `ask()`: every architecture once, in any order.
    fn tell(&mut self, archs: Vec<String>, accuracies: Vec<f64>) -> PyResult<()> {
        self.inner.tell(&archs, &accuracies).map_err(error)
    }

    fn done(&mut self) -> PyResult<bool> {
        self.inner.done().map_err(error)
    }

    /// Every `(arch, accuracy)` told so far, in order.
    fn told(&self) -> Vec<(String, f64)> {
        self.inner
            .journal()
            .told()
            .iter()
            .map(|t| (t.arch.clone(), t.accuracy))
            .collect()
    }

    /// The front as `front.json`'s `front` list (JSON text); `None` until done.
    fn _front_json(&mut self) -> PyResult<Option<String>> {
        Ok(self
            .inner
            .front_json()
            .map(|f| serde_json::Value::Array(f).to_string()))
    }

    /// Writes front.csv, front.json, front.svg and history.csv into `out`, as the CLI does.
    fn save(&mut self, out: PathBuf) -> PyResult<()> {
        std::fs::create_dir_all(&out).map_err(|e| error(format!("{}: {e}", out.display())))?;
        match self.inner.save(&out) {
            Some(r) => r.map_err(error),
            None => Err(error(
                "the search is not done: ask() until it gives nothing",
            )),
        }
    }
}
