//! `validate`'s ceiling: the best the model's form could do on the validated networks. The form
//! is the table's op latencies summed per kind and calibrated ([`Calibration::fit`]); fitted on
//! the very networks it is then scored on, it says how much of their order and spread any
//! calibration of this table could explain. A model close to its ceiling is limited by what
//! op-by-op composition can see (fusion, cache reuse between ops, how a cell is wired), not by
//! its calibration networks or by the noise of the day; a model far below it is.
//!
//! In-sample least squares on relative errors (with `fit`'s weak pull toward the table and no
//! negative term): it bounds RMSPE from below, nearly; Kendall tau only roughly, since the fit
//! does not aim at the order (under a load on 2026-12-05 an nb201 model scored 0.960 against
//! its ceiling's 0.949).

use hwnas_core::network::Network;
use hwnas_predictor::LatencyModel;
use hwnas_predictor::calibrate::{Calibration, Sample};
use hwnas_predictor::metrics::Accuracy;
use serde_json::json;

/// The ceiling's report: the form fitted on `nets` measured at `measured_us`, and how it
/// scores on them; `{"why": ...}` where it cannot be fitted (too few networks, an op the model
/// cannot time).
pub fn ceiling_json(
    model: &LatencyModel,
    nets: &[Network],
    measured_us: &[f64],
) -> serde_json::Value {
    let samples: Result<Vec<Sample>, _> = nets
        .iter()
        .zip(measured_us)
        .map(|(n, &us)| Ok((model.kind_sums(&model.terms(n))?, us)))
        .collect();
    let fitted = samples
        .map_err(|e: hwnas_predictor::ModelError| e.to_string())
        .and_then(|s| {
            Calibration::fit(&s)
                .map(|c| (c, s))
                .map_err(|e| e.to_string())
        });
    match fitted {
        Ok((cal, samples)) => {
            let best: Vec<f64> = samples.iter().map(|(sums, _)| cal.apply(sums)).collect();
            json!({
                "accuracy": Accuracy::of(&best, measured_us),
                "form": cal.form,
                "networks": samples.len(),
            })
        }
        Err(why) => json!({ "why": why }),
    }
}

/// The line a report prints for [`ceiling_json`].
pub fn ceiling_line(ceiling: &serde_json::Value) -> Option<String> {
    if let Some(why) = ceiling["why"].as_str() {
        return Some(format!("  ceiling           not fitted: {why}"));
    }
    let acc = &ceiling["accuracy"];
    Some(format!(
        "  ceiling           Kendall tau {:.3}, RMSPE {:.2}%: the model's form calibrated on these {} networks themselves, \
         about the most that calibrating this table can reach",
        acc["kendall_tau"].as_f64()?,
        100.0 * acc["rmspe"].as_f64()?,
        ceiling["networks"],
    ))
}
