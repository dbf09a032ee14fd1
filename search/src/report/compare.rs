//! The hypervolume of this search's front against another run's `front.json`.

use std::path::Path;

use serde_json::{Value, json};

use super::{Report, ReportError, SCHEMA};
use crate::hypervolume::Normalizer;

impl Report<'_, '_> {
    /// Hypervolume of this front against another run's, both normalised by their union's box.
    pub fn compare(&self, other: &Path) -> Result<Value, ReportError> {
        let names = self.objective_names();
        let text = std::fs::read_to_string(other).map_err(|e| {
            ReportError::Compare(format!("reading --compare {}: {e}", other.display()))
        })?;
        let theirs: Value = serde_json::from_str(&text).map_err(|e| {
            ReportError::Compare(format!("--compare {}: not JSON: {e}", other.display()))
        })?;
        if theirs["schema"] != SCHEMA {
            return Err(ReportError::Compare(format!(
                "--compare {}: not a front.json of `hwnas search` (schema {SCHEMA})",
                other.display()
            )));
        }
        let space = self.problem.space.name();
        if theirs["space"] != space {
            return Err(ReportError::Compare(format!(
                "--compare {}: a front of space {} (this search is over {space})",
                other.display(),
                theirs["space"]
            )));
        }
        let their_names: Vec<String> = serde_json::from_value(theirs["objectives"].clone())
            .map_err(|e| {
                ReportError::Compare(format!("--compare {}: no objectives: {e}", other.display()))
            })?;
        if their_names != names {
            return Err(ReportError::Compare(format!(
                "--compare {}: objectives {their_names:?} differ from this search's {names:?}",
                other.display()
            )));
        }
        let reference: Vec<Vec<f64>> = theirs["front"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|m| serde_json::from_value(m["minimised"].clone()).ok())
                    .collect()
            })
            .unwrap_or_default();
        let their_archs: std::collections::HashSet<&str> = theirs["front"]
            .as_array()
            .map(|f| f.iter().filter_map(|m| m["arch"].as_str()).collect())
            .unwrap_or_default();
        let ours: Vec<Vec<f64>> = self
            .outcome
            .front
            .iter()
            .map(|i| self.outcome.archive[*i].eval.objectives.clone())
            .collect();
        let found = self
            .outcome
            .front
            .iter()
            .filter(|i| their_archs.contains(self.outcome.archive[**i].info.arch.as_str()))
            .count();
        let Some(norm) = Normalizer::of(ours.iter().chain(&reference)) else {
            return Err(ReportError::Compare(
                "--compare: both fronts are empty".into(),
            ));
        };
        let (hv_ours, hv_ref) = (norm.hypervolume(&ours), norm.hypervolume(&reference));
        let quality = crate::indicator::quality(&ours, &reference);
        Ok(json!({
            "reference": other.display().to_string(),
            "hypervolume": hv_ours, "reference_hypervolume": hv_ref,
            "ratio": if hv_ref > 0.0 { hv_ours / hv_ref } else { f64::NAN },
            "normalised_hypervolume": quality.map(|q| q.normalised_hv),
            "igd_plus": quality.map(|q| q.igd_plus),
            "reference_front": reference.len(), "found_in_reference_front": found,
        }))
    }
}
