//! `hwnas validate --networks FILE`: a model scored on whole-network timings held out, with no
//! device: ±5/±10%, RMSPE, Kendall and Spearman, interval coverage.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use hwnas_predictor::LatencyModel;
use hwnas_predictor::metrics::Accuracy;
use hwnas_search::arch_table::{ArchTable, ValueKind};
use hwnas_search::space::open;
use serde_json::json;

use super::validate::{
    Args, interval_coverage, print_accuracy, print_worst, worst_json, write_report,
};

pub fn run(args: &Args, model: &LatencyModel, path: &Path) -> anyhow::Result<ExitCode> {
    let space = open(&args.space_name(model)?)?;
    let table = ArchTable::from_spec(
        &path.to_string_lossy(),
        ValueKind::LatencyMs,
        space.as_ref(),
    )
    .context("reading the --networks timings")?;
    let fitted: std::collections::HashSet<&str> =
        model.calibration_archs.iter().map(String::as_str).collect();
    let mut timed: Vec<(String, f64)> = table
        .iter()
        .filter(|(a, _)| !fitted.contains(a))
        .map(|(a, ms)| (a.to_string(), ms * 1e3))
        .collect();
    timed.sort_by(|a, b| a.0.cmp(&b.0));
    let left_out = table.len() - timed.len();
    anyhow::ensure!(
        !timed.is_empty(),
        "{}: the model was fitted on all {} of its networks; validate on timings it has not seen",
        path.display(),
        table.len()
    );
    let nets = timed
        .iter()
        .map(|(a, _)| space.network(a))
        .collect::<Result<Vec<_>, _>>()?;
    let predictions = nets
        .iter()
        .map(|n| model.predict(&model.terms(n)))
        .collect::<Result<Vec<_>, _>>()?;
    let archs: Vec<String> = timed.iter().map(|(a, _)| a.clone()).collect();
    let meas: Vec<f64> = timed.iter().map(|(_, us)| *us).collect();
    let pred: Vec<f64> = predictions.iter().map(|p| p.latency_us).collect();
    let acc = Accuracy::of(&pred, &meas);
    let report = json!({
        "model": args.model.display().to_string(),
        "device": model.device,
        "networks": path.display().to_string(),
        "space": space.name(),
        "samples": timed.len(),
        "left_out_as_fitted": left_out,
        "calibrated": model.calibration.is_some(),
        "accuracy": acc,
        "ceiling": super::validate_ceiling::ceiling_json(model, &nets, &meas),
        "interval_coverage": interval_coverage(&predictions, &meas),
        "worst": worst_json(&archs, &pred, &meas),
        "predictions": archs.iter().enumerate().map(|(i, a)| json!({
            "arch": a, "predicted_us": pred[i], "low_us": predictions[i].low_us,
            "high_us": predictions[i].high_us, "measured_us": meas[i],
        })).collect::<Vec<_>>(),
    });
    let (json_path, svg_path) =
        write_report(args, space.name(), &model.device, &report, &meas, &pred)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_accuracy(&report, &args.model);
    if let Some(line) = super::validate_ceiling::ceiling_line(&report["ceiling"]) {
        println!("{line}");
    }
    println!(
        "  timings           {} ({} networks the model was fitted on left out)",
        path.display(),
        left_out
    );
    print_worst(&report);
    println!(
        "  report {} and plot {}",
        json_path.display(),
        svg_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
