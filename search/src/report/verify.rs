//! The front re-measured end to end on a device: which latency source the device is, which
//! members to measure, and how the measurements compare with the predictions.

use hwnas_core::op::Precision;
use hwnas_core::stats::quantile_sorted;
use hwnas_predictor::anchors::Sitting;
use hwnas_predictor::metrics::Accuracy;
use serde_json::{Value, json};

use super::{Report, ReportError};
use crate::objective::{ArchProblem, LatencySource, Metrics};
use crate::problem::Outcome;

/// The front re-measured end to end on one device.
pub struct Verification {
    pub device: String,
    /// Which latency source the device is.
    pub source: usize,
    /// Measured ms, in the order of `Outcome::front`; `None` for members left unmeasured.
    pub measured_ms: Vec<Option<f64>>,
    /// Measured energy per inference in mJ, likewise, when the search used energy (else
    /// empty).
    pub measured_mj: Vec<Option<f64>>,
    /// How this sitting's networks compared with the calibration's, from the calibration
    /// networks measured again among them: `measured_ms` is divided by its factor. `Err` says
    /// why there were no anchors (the times are as the probe left them).
    pub sitting: Result<Sitting, String>,
    /// The same for energy (`measured_mj` is divided by it), where there was energy.
    pub energy_sitting: Option<Sitting>,
    /// How precise the measured medians are (the median 95% interval, the target, the passes),
    /// as the measuring side reports it.
    pub precision: Value,
}

impl Verification {
    /// (predicted, measured) of the measured members: `predicted` of a member's metrics
    /// against `measured`.
    fn pairs(
        outcome: &Outcome<Metrics>,
        measured: &[Option<f64>],
        predicted: impl Fn(&Metrics) -> f64,
    ) -> (Vec<f64>, Vec<f64>) {
        outcome
            .front
            .iter()
            .zip(measured)
            .filter_map(|(i, m)| Some((predicted(&outcome.archive[*i].info), (*m)?)))
            .unzip()
    }
}

/// Within ±5/±10%, the median and largest |error| and Kendall tau of predictions.
fn scores(predicted: &[f64], measured: &[f64]) -> Value {
    let acc = Accuracy::of(predicted, measured);
    let mut errors: Vec<f64> = predicted
        .iter()
        .zip(measured)
        .map(|(p, m)| (p / m - 1.0).abs())
        .collect();
    errors.sort_by(f64::total_cmp);
    json!({
        "networks": measured.len(),
        "within_10": acc.within_10, "within_5": acc.within_5,
        "median_abs_error": quantile_sorted(&errors, 0.5),
        "max_abs_error": errors.last().copied(),
        "kendall_tau": acc.kendall_tau,
    })
}

/// The latency source a device named `device` measures: the source of that name, else the only
/// model; and the precision its networks are built at (the model's, else `table_precision`).
pub fn verification_source(
    problem: &ArchProblem,
    device: &str,
    profile_path: &std::path::Path,
    table_precision: Precision,
) -> Result<(usize, Precision), ReportError> {
    let models: Vec<usize> = (0..problem.latency.len())
        .filter(|i| matches!(problem.latency[*i], LatencySource::Model { .. }))
        .collect();
    let source = match problem.latency.iter().position(|l| l.name() == device) {
        Some(i) => i,
        None if models.len() == 1 => models[0],
        None => {
            return Err(ReportError::Verify(format!(
                "--verify: device profile {} is `{device}`, which names none of the latency sources ({})",
                profile_path.display(),
                problem
                    .latency
                    .iter()
                    .map(|l| l.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    // The networks are built at the precision the source's model was measured in.
    let precision = match &problem.latency[source] {
        LatencySource::Model { model, .. } => model.precision(),
        LatencySource::Table { .. } => table_precision,
    };
    Ok((source, precision))
}

/// Which front members (positions in `Outcome::front`) to measure: all of them, or `max`
/// spread evenly along the front's latency on `source`.
pub fn members_to_verify(outcome: &Outcome<Metrics>, source: usize, max: usize) -> Vec<usize> {
    let mut by_latency: Vec<usize> = (0..outcome.front.len()).collect();
    by_latency.sort_by(|a, b| {
        let ms = |p: usize| outcome.archive[outcome.front[p]].info.latency_ms[source];
        ms(*a).total_cmp(&ms(*b))
    });
    let n = by_latency.len();
    if n <= max {
        return by_latency;
    }
    let mut picks: Vec<usize> = (0..max.max(1))
        .map(|k| by_latency[k * (n - 1) / (max.max(2) - 1)])
        .collect();
    picks.dedup();
    picks
}

impl Report<'_, '_> {
    pub fn verification_json(&self, v: &Verification) -> Value {
        let s = v.source;
        let (predicted, measured) =
            Verification::pairs(self.outcome, &v.measured_ms, |m| m.latency_ms[s]);
        let mut out = scores(&predicted, &measured);
        out["device"] = v.device.clone().into();
        out["latency_source"] = self.problem.latency[s].name().into();
        out["front"] = v.measured_ms.len().into();
        out["precision"] = v.precision.clone();
        out["sitting"] = match &v.sitting {
            Ok(sitting) => {
                let unanchored: Vec<f64> = measured.iter().map(|m| m * sitting.factor).collect();
                json!({"factor": sitting.factor, "p10": sitting.p10, "p90": sitting.p90,
                       "anchors": sitting.anchors, "probe_only": scores(&predicted, &unanchored)})
            }
            Err(why) => json!({"anchors": 0, "why_none": why}),
        };
        if !v.measured_mj.is_empty() {
            let (predicted, measured) =
                Verification::pairs(self.outcome, &v.measured_mj, |m| m.energy_mj[s]);
            out["energy"] = scores(&predicted, &measured);
            out["energy"]["sitting"] = serde_json::to_value(v.energy_sitting).unwrap_or_default();
        }
        out
    }
}
