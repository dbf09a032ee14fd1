//! `validate --onnx`: users' ONNX models predicted from their mapped layers and measured end to
//! end as the files stand, the noise floor from measuring some of them twice, and, where a
//! prediction and its measurement disagree, where the time went layer by layer: the runtime's
//! own profile of the file, node by node, beside the table's op.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use hwnas_core::backend::NodeTime;
use hwnas_core::op::{Precision, Tensor};
use hwnas_core::stats::Stats;
use hwnas_onnx::NetworkModel;
use hwnas_onnx::import::Imported;
use hwnas_predictor::LatencyModel;
use hwnas_predictor::metrics::Accuracy;
use hwnas_profiler::networks::Speed;
use hwnas_search::space::SearchSpace;
use serde_json::json;

use super::anchors::{self, Anchors};
use super::e2e;
use super::onnx_model::{self, LayerPrediction};
use super::predict::merge;
use super::validate::{
    Args, drift_json, energy_json, noise_floor, print_drift_json, print_energy, print_sitting_json,
    sitting_json,
};

/// A prediction this far off gets its layer-by-layer breakdown without `--per-layer`.
const EXPLAIN_ABOVE: f64 = 0.10;
/// Profiled runs per breakdown.
const PROFILED_RUNS: usize = 20;
/// Layers shown per breakdown, the most different first.
const SHOWN_LAYERS: usize = 8;

pub(super) fn run(args: &Args, model: &LatencyModel) -> anyhow::Result<ExitCode> {
    let (profile, mut rt) = e2e::open_device(
        args.device_path()?,
        args.ort_library.as_deref(),
        model.precision(),
        model.energy.is_some(),
    )?;
    let mut models = Vec::new();
    for file in &args.onnx.onnx {
        let m = args.onnx.load(file)?;
        models.push((file.clone(), m));
    }
    let files: Vec<(PathBuf, Tensor)> = models
        .iter()
        .map(|(f, m)| (f.clone(), m.network.input))
        .collect();
    let speed = Speed {
        probe_nominal_us: model.probe_nominal_us(),
    };
    let reference = tempfile::tempdir().context("a folder for the reference networks")?;
    let space = model
        .space
        .as_deref()
        .and_then(|s| hwnas_search::space::open(s).ok());
    let anchors = Anchors::of(model, args.anchors, |name| {
        calibration_file(name, reference.path(), space.as_deref(), model.precision())
    });
    let anchored = anchors::measure_with(&files, anchors, |all| {
        e2e::measure_files(rt.as_mut(), all, &profile.measure, speed, "models")
    })?;
    let times = &anchored.times;
    let repeat = args.repeat.min(files.len());
    let again = anchored.at_calibration(
        e2e::measure_files(
            rt.as_mut(),
            &files[..repeat],
            &profile.measure,
            speed,
            "noise floor",
        )?
        .times,
    );
    let measured: Vec<Stats> = times.iter().map(|t| t.latency).collect();
    let again: Vec<Stats> = again.iter().map(|t| t.latency).collect();
    let (noise_median, noise_p95, noise_over_10) = noise_floor(&again, &measured[..repeat]);

    let mut rows = Vec::new();
    let (mut pred, mut meas) = (Vec::new(), Vec::new());
    for ((file, m), measured) in models.iter().zip(&measured) {
        let (p, layers) = onnx_model::predict(model, m, file)?;
        let error = p.latency_us / measured.median - 1.0;
        let regressed = layers
            .iter()
            .filter(|l| l.source == hwnas_predictor::model::Source::Regressed)
            .count();
        let mut row = json!({
            "onnx": file, "input": m.network.input.to_string(), "ops": layers.len(),
            "ops_from_regressor": regressed,
            "predicted_us": p.latency_us, "low_us": p.low_us, "high_us": p.high_us, "sum_us": p.sum_us,
            "measured_us": measured.median, "measured_p10_us": measured.p10, "measured_p90_us": measured.p90,
            "error": error,
        });
        merge(&mut row, onnx_model::unmapped_fields(m));
        if args.per_layer || error.abs() > EXPLAIN_ABOVE {
            let nodes = rt.profile_file_nodes(file, m.network.input, PROFILED_RUNS)?;
            if let Some(nodes) = nodes {
                row["per_layer"] = per_layer(m, &layers, &nodes);
            }
        }
        pred.push(p.latency_us);
        meas.push(measured.median);
        rows.push(row);
    }
    let accuracy = Accuracy::of(&pred, &meas);
    let nets: Vec<_> = models.iter().map(|(_, m)| m.network.clone()).collect();
    let report = json!({
        "model": args.model.display().to_string(), "device": profile.name,
        "calibrated": model.calibration.is_some(), "accuracy": accuracy,
        "precision": anchored.measured.precision_json(&profile.measure),
        "noise_floor": {"repeated": repeat, "median_rel_diff": noise_median, "p95_rel_diff": noise_p95, "over_10_percent": noise_over_10},
        "drift": drift_json(times, &pred, speed),
        "sitting": sitting_json(&anchored, &pred),
        "energy": energy_json(model, &nets, times)?,
        "models": rows,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(args, &profile.name, &report);
    }
    Ok(ExitCode::SUCCESS)
}

/// A calibration model to measure again, by the name `fit` kept: a file that is still there,
/// a reference network (`--calibrate-reference`), or a network of the model's space (`fit
/// --calibrate N`, built at the model's precision as `fit` measured it), written into
/// `reference` the first time.
fn calibration_file(
    name: &str,
    reference: &Path,
    space: Option<&dyn SearchSpace>,
    precision: Precision,
) -> Result<(PathBuf, Tensor), String> {
    let mut path = PathBuf::from(name);
    if !path.is_file() {
        let written = reference.join(format!("{name}.onnx"));
        if !written.is_file() && super::reference::networks_named(name) {
            super::reference::write(reference).map_err(|e| e.to_string())?;
        }
        if !written.is_file()
            && let Some(net) = space.and_then(|s| s.network(name).ok())
        {
            let model = net.to_onnx().map_err(|e| e.to_string())?;
            let model = hwnas_onnx::precision::convert(&model, precision);
            std::fs::write(&written, model.to_bytes())
                .map_err(|e| format!("writing {}: {e}", written.display()))?;
        }
        if !written.is_file() {
            return Err(format!(
                "calibration model `{name}` is no longer there (give --anchors 0, or fit again)"
            ));
        }
        path = written;
    }
    let m = onnx_model::load(&path, Default::default(), false)
        .map_err(|e| format!("calibration model {}: {e:#}", path.display()))?;
    Ok((path, m.network.input))
}

/// The runtime's nodes attributed to the model's layers: a runtime node belongs to the layer
/// holding the file node of the same name, or of the longest name it starts with (ONNX
/// Runtime names a fused node after the node it grew from), or of the output tensor its name
/// starts with, then `_` (ONNX Runtime's NCHWc rewrite names a node after its output:
/// `r8_bn_nchwc`). Nodes of no layer (layout reorders the runtime inserted) are reported as
/// the runtime's own.
fn per_layer(
    m: &Imported,
    layers: &[LayerPrediction<'_>],
    nodes: &[NodeTime],
) -> serde_json::Value {
    let mut owner: HashMap<&str, usize> = HashMap::new();
    let mut output_owner: HashMap<&str, usize> = HashMap::new();
    for (i, names) in m.layers.iter().enumerate() {
        for n in names {
            owner.insert(n.as_str(), i);
            for output in m.outputs.get(n).into_iter().flatten() {
                output_owner.insert(output.as_str(), i);
            }
        }
    }
    let longest_prefix = |map: &HashMap<&str, usize>, name: &str, boundary: bool| {
        map.iter()
            .filter(|(prefix, _)| {
                name.strip_prefix(**prefix)
                    .is_some_and(|rest| !boundary || rest.starts_with('_'))
            })
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, &i)| i)
    };
    let mut profiled = vec![0.0; layers.len()];
    let mut runtime_own: HashMap<String, f64> = HashMap::new();
    for n in nodes {
        let layer = owner
            .get(n.name.as_str())
            .copied()
            .or_else(|| longest_prefix(&owner, &n.name, false))
            .or_else(|| longest_prefix(&output_owner, &n.name, true));
        match layer {
            Some(i) => profiled[i] += n.us,
            None => *runtime_own.entry(n.op_type.clone()).or_default() += n.us,
        }
    }
    let table_sum: f64 = layers.iter().map(|l| l.us).sum();
    let profiled_sum: f64 = profiled.iter().sum::<f64>() + runtime_own.values().sum::<f64>();
    let mut out: Vec<serde_json::Value> = layers
        .iter()
        .zip(&profiled)
        .map(|(l, &p)| {
            json!({"op": l.key, "table_us": l.us, "profiled_us": p, "onnx_nodes": l.nodes,
                   "table_share": l.us / table_sum.max(1e-9), "profiled_share": p / profiled_sum.max(1e-9)})
        })
        .collect();
    // The layers whose share of the time differs most first: where the prediction went wrong.
    out.sort_by(|a, b| {
        let gap = |v: &serde_json::Value| {
            (v["profiled_share"].as_f64().unwrap_or(0.0) - v["table_share"].as_f64().unwrap_or(0.0))
                .abs()
        };
        gap(b).total_cmp(&gap(a))
    });
    json!({"profiled_runs": PROFILED_RUNS, "layers": out, "runtime_own_us": runtime_own})
}

fn print_report(args: &Args, device: &str, report: &serde_json::Value) {
    println!(
        "ONNX models on `{device}`, predicted by {}:",
        args.model.display()
    );
    println!(
        "  {:>12} {:>12} {:>8}  {:>6} {:>9} {:>8}  model",
        "predicted ms", "measured ms", "error", "ops", "regressed", "unmapped"
    );
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let rows = report["models"].as_array().map_or(&[][..], Vec::as_slice);
    for r in rows {
        println!(
            "  {:>12.3} {:>12.3} {:>+7.1}%  {:>6} {:>9} {:>8}  {}",
            num(&r["predicted_us"]) / 1e3,
            num(&r["measured_us"]) / 1e3,
            100.0 * num(&r["error"]),
            r["ops"].as_u64().unwrap_or(0),
            r["ops_from_regressor"].as_u64().unwrap_or(0),
            r["unmapped_nodes"].as_u64().unwrap_or(0),
            r["onnx"].as_str().unwrap_or("?")
        );
    }
    let (acc, noise) = (&report["accuracy"], &report["noise_floor"]);
    println!(
        "  within ±10%: {:.0}% of {} models (RMSPE {:.1}%, bias {:+.1}%); noise floor: the same \
         model measured twice differs by {:.1}% (median), {:.1}% (p95) over {} models",
        100.0 * num(&acc["within_10"]),
        rows.len(),
        100.0 * num(&acc["rmspe"]),
        100.0 * num(&acc["bias"]),
        100.0 * num(&noise["median_rel_diff"]),
        100.0 * num(&noise["p95_rel_diff"]),
        noise["repeated"]
    );
    if let Some(line) = e2e::precision_line(&report["precision"]) {
        println!("{line}");
    }
    print_drift_json(&report["drift"]);
    print_sitting_json(&report["sitting"]);
    print_energy(&report["energy"]);
    for r in rows.iter().filter(|r| !r["per_layer"].is_null()) {
        println!(
            "\n{} ({:+.1}%): time per layer, ONNX Runtime's profile ({} runs) beside the table",
            r["onnx"].as_str().unwrap_or("?"),
            100.0 * num(&r["error"]),
            r["per_layer"]["profiled_runs"]
        );
        println!(
            "  {:>11} {:>7} {:>11} {:>7}  op",
            "table us", "share", "profiled us", "share"
        );
        let layers = r["per_layer"]["layers"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        for l in layers.iter().take(SHOWN_LAYERS) {
            println!(
                "  {:>11.1} {:>6.1}% {:>11.1} {:>6.1}%  {}",
                num(&l["table_us"]),
                100.0 * num(&l["table_share"]),
                num(&l["profiled_us"]),
                100.0 * num(&l["profiled_share"]),
                l["op"].as_str().unwrap_or("?")
            );
        }
        if let Some(own) = r["per_layer"]["runtime_own_us"]
            .as_object()
            .filter(|o| !o.is_empty())
        {
            let list: Vec<String> = own
                .iter()
                .map(|(k, v)| format!("{k} {:.1} us", num(v)))
                .collect();
            println!("  the runtime's own nodes: {}", list.join(", "));
        }
    }
}
