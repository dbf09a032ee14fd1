//! `hwnas validate`

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use hwnas_core::files::write_atomic;
use hwnas_core::network::Network;
use hwnas_core::rng::SplitMix64;
use hwnas_core::stats::{Stats, quantile_sorted};
use hwnas_predictor::metrics::{Accuracy, kendall_tau};
use hwnas_predictor::{LatencyModel, Prediction};
use hwnas_profiler::networks::{NetworkTime, Speed};
use hwnas_search::space::{SearchSpace, open};
use serde_json::json;

use super::anchors::{self, Anchored, Anchors};
use super::e2e;
use super::onnx_model::OnnxArgs;

#[derive(clap::Args)]
pub struct Args {
    /// The latency model (from `hwnas fit`).
    #[arg(long)]
    pub(super) model: PathBuf,
    /// Device profile to measure the networks on.
    #[arg(long, required_unless_present = "networks")]
    pub(super) device: Option<PathBuf>,
    /// Score the model on these timings instead of measuring (`arch,latency_ms` CSV, as
    /// `hwnas measure` writes; `FILE#COLUMN` names another latency column): no device needed.
    /// Networks the model was fitted on are left out.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["device", "onnx"])]
    pub(super) networks: Option<PathBuf>,
    /// Search space to sample from (default: the model's).
    #[arg(long)]
    space: Option<String>,
    /// How many networks to sample, measure and predict.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// How many of them (or of the --onnx models) to measure a second time, for the noise floor.
    #[arg(long, default_value_t = 20)]
    pub(super) repeat: usize,
    /// Measure every sampled network again, pooling the rounds, while one round's noise (from
    /// the networks measured twice) would still reorder them, up to this many rounds in all
    /// (1: one measurement). A narrow space needs it; a wide one stops at one.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) max_rounds: u32,
    /// Seed of the network sample.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many of the model's calibration networks (or models, for --onnx) to measure again
    /// among the validated ones: those are compared at the calibration's sitting, divided by
    /// how much slower these run now than when `fit` measured them (0: not, as the probe
    /// leaves them).
    #[arg(long, default_value_t = super::anchors::DEFAULT_ANCHORS)]
    pub(super) anchors: usize,
    /// Path prefix of the report (`PREFIX.json`) and the plot (`PREFIX.svg`); default: beside
    /// the model, `MODEL.validate-SPACE`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub(super) json: bool,
    /// The ONNX Runtime library, overriding the profile and $ORT_DYLIB_PATH.
    #[arg(long)]
    pub(super) ort_library: Option<PathBuf>,
    /// Validate on these ONNX models instead of sampled networks: each is measured end to end
    /// as the file stands and compared with the prediction from its mapped layers.
    #[command(flatten)]
    pub(super) onnx: OnnxArgs,
    /// With --onnx: show every model's time layer by layer (the runtime's own profile of the
    /// file beside the table's op), not only for models predicted more than 10% off.
    #[arg(long)]
    pub(super) per_layer: bool,
}

impl Args {
    pub(super) fn device_path(&self) -> anyhow::Result<&Path> {
        self.device
            .as_deref()
            .context("which device measures the networks? give --device")
    }

    /// The model's space, or --space.
    pub(super) fn space_name(&self, model: &LatencyModel) -> anyhow::Result<String> {
        self.space
            .clone()
            .or_else(|| model.space.clone())
            .context("which space? give --space")
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let model = LatencyModel::load(&args.model)?;
    if !args.onnx.onnx.is_empty() {
        return super::validate_onnx::run(&args, &model);
    }
    if let Some(networks) = &args.networks {
        return super::validate_networks::run(&args, &model, networks);
    }
    let space = open(&args.space_name(&model)?)?;
    let (profile, mut rt) = e2e::open_device(
        args.device_path()?,
        args.ort_library.as_deref(),
        model.precision(),
        model.energy.is_some(),
    )?;

    let archs = held_out(space.as_ref(), &model, args.samples, args.seed);
    let nets = archs
        .iter()
        .map(|a| space.network(a))
        .collect::<Result<Vec<_>, _>>()?;
    let predictions = nets
        .iter()
        .map(|n| model.predict(&model.terms(n)))
        .collect::<Result<Vec<_>, _>>()?;
    let speed = Speed {
        probe_nominal_us: model.probe_nominal_us(),
    };
    let mut anchored = anchors::measure(
        rt.as_mut(),
        &nets,
        Anchors::in_space(&model, space.as_ref(), args.anchors),
        &profile.measure,
        speed,
        "validation",
    )?;
    let again = anchored.at_calibration(
        e2e::measure(
            rt.as_mut(),
            &nets[..args.repeat.min(nets.len())],
            &profile.measure,
            speed,
            "noise floor",
        )?
        .times,
    );
    let repeat = again.len();
    let first_round: Vec<Stats> = anchored.times.iter().map(|t| t.latency).collect();
    let first_all_us: Vec<f64> = first_round.iter().map(|s| s.median).collect();
    let first_us = &first_all_us[..repeat];
    let again: Vec<Stats> = again.iter().map(|t| t.latency).collect();
    let again_us: Vec<f64> = again.iter().map(|s| s.median).collect();
    let rounds = super::validate_rounds::measure_more(
        rt.as_mut(),
        &nets,
        &anchored,
        (first_us, &again_us),
        &profile.measure,
        speed,
        args.max_rounds,
    )?;
    let pred: Vec<f64> = predictions.iter().map(|p| p.latency_us).collect();
    // Every score below, the probe-only one too, is against the rounds pooled; the first
    // round's own score says what the rounds changed.
    let mut rounds_report = rounds.report;
    rounds_report["accuracy_one_round"] = json!(Accuracy::of(&pred, &first_all_us));
    anchored.times = rounds.times;
    let times = &anchored.times;
    let measured: Vec<Stats> = times.iter().map(|t| t.latency).collect();

    let meas: Vec<f64> = measured.iter().map(|s| s.median).collect();
    let acc = Accuracy::of(&pred, &meas);
    // The noise floor and the order kept are one round's (the rounds pool less noise).
    let (noise_median, noise_p95, noise_over_10) = noise_floor(&again, &first_round);
    // How well a second measurement ranks the repeated networks like the first: what the
    // noise alone leaves of their order (in a narrow space, tau is bounded by it).
    let order_kept = kendall_tau(&again_us, first_us);
    let coverage = interval_coverage(&predictions, &meas);
    let worst = worst_json(&archs, &pred, &meas);

    let report = json!({
        "model": args.model.display().to_string(),
        "device": profile.name,
        "space": space.name(),
        "samples": nets.len(),
        "seed": args.seed,
        "calibrated": model.calibration.is_some(),
        "accuracy": acc,
        "interval_coverage": coverage,
        "precision": anchored.measured.precision_json(&profile.measure),
        "noise_floor": {"repeated": repeat, "median_rel_diff": noise_median, "p95_rel_diff": noise_p95, "over_10_percent": noise_over_10, "kendall_tau": order_kept},
        "rounds": rounds_report,
        "ceiling": super::validate_ceiling::ceiling_json(&model, &nets, &meas),
        "drift": drift_json(times, &pred, speed),
        "sitting": sitting_json(&anchored, &pred),
        "worst": worst,
        "energy": energy_json(&model, &nets, times)?,
        "networks": archs.iter().enumerate().map(|(i, a)| json!({
            "arch": a, "predicted_us": pred[i], "low_us": predictions[i].low_us, "high_us": predictions[i].high_us,
            "measured_us": meas[i], "measured_p10_us": measured[i].p10, "measured_p90_us": measured[i].p90,
            "measured_raw_us": times[i].raw.median, "probe_us": times[i].drift.map(|d| d.probe_us),
        })).collect::<Vec<_>>(),
    });
    let (json_path, svg_path) =
        write_report(&args, space.name(), &profile.name, &report, &meas, &pred)?;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_scores(&report, &args.model);
    println!(
        "  report {} and plot {}",
        json_path.display(),
        svg_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes the report as `PREFIX.json` and predicted against measured as `PREFIX.svg`; returns
/// their paths.
pub(super) fn write_report(
    args: &Args,
    space: &str,
    device: &str,
    report: &serde_json::Value,
    measured_us: &[f64],
    predicted_us: &[f64],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let json_path = output_path(args, space, ".json");
    write_atomic(&json_path, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let svg_path = output_path(args, space, ".svg");
    let title = format!(
        "{space} on {device}: {:.0}% within ±10% (n = {})",
        100.0 * Accuracy::of(predicted_us, measured_us).within_10,
        measured_us.len()
    );
    write_plot(&svg_path, &title, measured_us, predicted_us)?;
    Ok((json_path, svg_path))
}

/// The scores as text, read back from the report (the JSON has every number the text shows).
fn print_scores(report: &serde_json::Value, model: &Path) {
    print_accuracy(report, model);
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let noise = &report["noise_floor"];
    println!(
        "  noise floor       {:>6.2}%  median difference of two measurements of {} networks (p95 {:.2}%, {} over 10%)",
        100.0 * f(&noise["median_rel_diff"]),
        noise["repeated"],
        100.0 * f(&noise["p95_rel_diff"]),
        noise["over_10_percent"]
    );
    if noise["repeated"].as_u64().unwrap_or(0) >= 2 {
        println!(
            "  ranked twice      tau {:.3}  between the two measurements of those networks: the order the noise alone keeps",
            f(&noise["kendall_tau"])
        );
    }
    if let Some(line) = e2e::precision_line(&report["precision"]) {
        println!("{line}");
    }
    if let Some(line) = super::validate_rounds::rounds_line(&report["rounds"]) {
        println!("{line}");
    }
    if let Some(line) = super::validate_ceiling::ceiling_line(&report["ceiling"]) {
        println!("{line}");
    }
    print_drift_json(&report["drift"]);
    print_sitting_json(&report["sitting"]);
    print_worst(report);
    print_energy(&report["energy"]);
}

/// Predicted energy against the measured, for a model that has energy (else null).
pub(super) fn energy_json(
    model: &LatencyModel,
    nets: &[Network],
    times: &[NetworkTime],
) -> anyhow::Result<serde_json::Value> {
    if model.energy.is_none() {
        return Ok(serde_json::Value::Null);
    }
    let mut predicted = Vec::new();
    let mut measured = Vec::new();
    for (net, t) in nets.iter().zip(times) {
        let e = t
            .energy
            .with_context(|| format!("`{}` was measured without its energy", net.name))?;
        let p = model
            .predict_energy_uj(&model.terms(net))
            .context("the model has energy")??;
        predicted.push(p);
        measured.push(e.per_run_uj);
    }
    let mut spread: Vec<f64> = times
        .iter()
        .filter_map(|t| Some(t.energy?.spread))
        .collect();
    spread.sort_by(f64::total_cmp);
    Ok(json!({
        "accuracy": Accuracy::of(&predicted, &measured),
        "windows_spread_median": quantile_sorted(&spread, 0.5),
        "predicted_uj": predicted,
        "measured_uj": measured,
    }))
}

pub(super) fn print_energy(energy: &serde_json::Value) {
    if energy.is_null() {
        return;
    }
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let acc = &energy["accuracy"];
    println!(
        "  energy            {:>6.1}% within ±10% ({:.1}% ±5%), RMSPE {:.2}%, bias {:+.2}%, Kendall tau {:.3}; \
         the measurements' windows spread {:.1}% (median)",
        100.0 * f(&acc["within_10"]),
        100.0 * f(&acc["within_5"]),
        100.0 * f(&acc["rmspe"]),
        100.0 * f(&acc["bias"]),
        f(&acc["kendall_tau"]),
        100.0 * f(&energy["windows_spread_median"]),
    );
}

/// The accuracy lines of a report, headed by what was predicted by what.
pub(super) fn print_accuracy(report: &serde_json::Value, model: &Path) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let acc = &report["accuracy"];
    println!(
        "{} held-out {} networks on `{}`, predicted by {} ({}):",
        report["samples"],
        report["space"].as_str().unwrap_or(""),
        report["device"].as_str().unwrap_or(""),
        model.display(),
        if report["calibrated"] == true {
            "calibrated"
        } else {
            "uncalibrated sum"
        }
    );
    println!("  within ±5%        {:>6.1}%", 100.0 * f(&acc["within_5"]));
    println!("  within ±10%       {:>6.1}%", 100.0 * f(&acc["within_10"]));
    println!("  RMSPE             {:>6.2}%", 100.0 * f(&acc["rmspe"]));
    println!("  bias              {:>+6.2}%", 100.0 * f(&acc["bias"]));
    println!("  Kendall tau       {:>7.3}", f(&acc["kendall_tau"]));
    println!("  Spearman rho      {:>7.3}", f(&acc["spearman_rho"]));
    println!(
        "  interval coverage {:>6.1}%  (measured inside the predicted interval)",
        100.0 * f(&report["interval_coverage"])
    );
}

/// The five worst predictions of a report.
pub(super) fn print_worst(report: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    println!("  worst:");
    for w in report["worst"].as_array().into_iter().flatten() {
        println!(
            "    {:+6.1}%  predicted {:.3} ms, measured {:.3} ms  {}",
            100.0 * f(&w["error"]),
            f(&w["predicted_ms"]),
            f(&w["measured_ms"]),
            w["arch"].as_str().unwrap_or("")
        );
    }
}

/// The share of measurements inside their prediction's interval.
pub(super) fn interval_coverage(predictions: &[Prediction], measured_us: &[f64]) -> f64 {
    let inside = predictions
        .iter()
        .zip(measured_us)
        .filter(|(p, m)| p.low_us <= **m && **m <= p.high_us)
        .count();
    inside as f64 / predictions.len().max(1) as f64
}

/// The five predictions furthest off, as JSON.
pub(super) fn worst_json(archs: &[String], pred: &[f64], meas: &[f64]) -> Vec<serde_json::Value> {
    let mut order: Vec<usize> = (0..pred.len()).collect();
    order.sort_by(|&a, &b| {
        (pred[b] / meas[b] - 1.0)
            .abs()
            .total_cmp(&(pred[a] / meas[a] - 1.0).abs())
    });
    order
        .iter()
        .take(5)
        .map(|&i| json!({"arch": archs[i], "predicted_ms": pred[i] / 1e3, "measured_ms": meas[i] / 1e3, "error": pred[i] / meas[i] - 1.0}))
        .collect()
}

/// `samples` networks of the space that the calibration never saw, seeded.
fn held_out(
    space: &dyn SearchSpace,
    model: &LatencyModel,
    samples: usize,
    seed: u64,
) -> Vec<String> {
    let seen: HashSet<&str> = model.calibration_archs.iter().map(String::as_str).collect();
    let mut rng = SplitMix64::new(seed ^ 0x0da7_a5e7);
    let mut archs = Vec::with_capacity(samples);
    let mut tries = 0;
    while archs.len() < samples && tries < 100 * samples.max(1) {
        tries += 1;
        let a = space.sample(&mut rng);
        if !seen.contains(a.as_str()) && !archs.contains(&a) {
            archs.push(a);
        }
    }
    archs
}

/// The machine's speed while networks were measured, as the probe saw it relative to the
/// table's (`speed` > 1: faster), and, for `predicted` networks, the accuracy the same
/// predictions would have scored against the uncorrected times. Null without a probe.
pub(super) fn drift_json(
    times: &[NetworkTime],
    predicted: &[f64],
    speed: Speed,
) -> serde_json::Value {
    let Some(nominal) = speed.probe_nominal_us else {
        return serde_json::Value::Null;
    };
    let mut speeds: Vec<f64> = times
        .iter()
        .filter_map(|t| Some(nominal / t.drift?.probe_us))
        .collect();
    if speeds.is_empty() {
        return serde_json::Value::Null;
    }
    speeds.sort_by(f64::total_cmp);
    let mut spreads: Vec<f64> = times
        .iter()
        .filter_map(|t| Some(t.drift?.probe_spread))
        .collect();
    spreads.sort_by(f64::total_cmp);
    let raw: Vec<f64> = times.iter().map(|t| t.raw.median).collect();
    let uncorrected = (predicted.len() == raw.len()).then(|| Accuracy::of(predicted, &raw));
    json!({
        "probe_nominal_us": nominal,
        "speed_p5": quantile_sorted(&speeds, 0.05),
        "speed_median": quantile_sorted(&speeds, 0.5),
        "speed_p95": quantile_sorted(&speeds, 0.95),
        "probe_spread_median": quantile_sorted(&spreads, 0.5),
        "uncorrected_accuracy": uncorrected,
    })
}

/// The sitting the anchors measured, and the accuracy of the same predictions against the
/// times the probe alone left (not divided by the sitting's shift).
pub(super) fn sitting_json(anchored: &Anchored, predicted: &[f64]) -> serde_json::Value {
    match &anchored.sitting {
        Ok(s) => json!({
            "factor": s.factor, "p10": s.p10, "p90": s.p90, "anchors": s.anchors,
            "probe_only_accuracy": Accuracy::of(predicted, &anchored.unanchored_us()),
            "description": anchored.describe(),
            "energy": anchored.energy_sitting,
        }),
        Err(_) => json!({"anchors": 0, "description": anchored.describe()}),
    }
}

pub(super) fn print_sitting_json(sitting: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "  sitting           {}",
        sitting["description"].as_str().unwrap_or("")
    );
    let energy = &sitting["energy"];
    if !energy.is_null() {
        println!(
            "                    energy {:.3}x the calibration's (p10-p90 {:.3}-{:.3}x); divided by it too",
            f(&energy["factor"]),
            f(&energy["p10"]),
            f(&energy["p90"])
        );
    }
    print_accuracy_against(
        "probe only",
        &sitting["probe_only_accuracy"],
        "the times not divided by it",
    );
}

/// One line: the accuracy of the same predictions against other times (nothing for null).
fn print_accuracy_against(label: &str, acc: &serde_json::Value, times: &str) {
    if acc.is_null() {
        return;
    }
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "  {label:<18}{:>6.1}% within ±10%, bias {:+.2}%, tau {:.3} (the same predictions against {times})",
        100.0 * f(&acc["within_10"]),
        100.0 * f(&acc["bias"]),
        f(&acc["kendall_tau"])
    );
}

/// One line of [`drift_json`], where there is one.
pub(super) fn print_drift_json(drift: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    if drift.is_null() {
        println!("  machine speed     not tracked (the table was measured without the probe)");
        return;
    }
    println!(
        "  machine speed     {:.2}x the table's (p5-p95 {:.2}-{:.2}x; probe spread within a network {:.1}%), corrected by the probe",
        f(&drift["speed_median"]),
        f(&drift["speed_p5"]),
        f(&drift["speed_p95"]),
        100.0 * f(&drift["probe_spread_median"])
    );
    print_accuracy_against(
        "uncorrected",
        &drift["uncorrected_accuracy"],
        "the raw times",
    );
}

/// After measuring `what`: the machine's speed the probe saw, on stderr.
pub(super) fn print_drift(times: &[NetworkTime], what: &str) {
    let mut probe: Vec<f64> = times
        .iter()
        .filter_map(|t| Some(t.drift?.probe_us))
        .collect();
    if probe.is_empty() {
        return;
    }
    probe.sort_by(f64::total_cmp);
    let median = quantile_sorted(&probe, 0.5);
    eprintln!(
        "{what}: the reference probe ran at {:.1} us (p5-p95 {:.1}-{:.1} us); each network's time is corrected by it",
        median,
        quantile_sorted(&probe, 0.05),
        quantile_sorted(&probe, 0.95)
    );
}

/// How far two measurements of the same networks lie apart: median and p95 relative
/// difference, and how many differ by over 10%.
pub(super) fn noise_floor(again: &[Stats], first: &[Stats]) -> (f64, f64, usize) {
    let medians = |s: &[Stats]| s.iter().map(|x| x.median).collect::<Vec<f64>>();
    noise_floor_of(&medians(again), &medians(first))
}

/// [`noise_floor`] of two lists of times.
pub(super) fn noise_floor_of(again: &[f64], first: &[f64]) -> (f64, f64, usize) {
    let mut noise: Vec<f64> = again
        .iter()
        .zip(first)
        .map(|(b, a)| (b - a).abs() / ((a + b) / 2.0))
        .collect();
    noise.sort_by(f64::total_cmp);
    let over_10 = noise.iter().filter(|d| **d > 0.10).count();
    (
        quantile_sorted(&noise, 0.5),
        quantile_sorted(&noise, 0.95),
        over_10,
    )
}

/// `--out` (default: `MODEL.validate-SPACE` beside the model) with `ext` appended, not set
/// with `with_extension`: the prefix may contain dots.
fn output_path(args: &Args, space: &str, ext: &str) -> PathBuf {
    let base = args.out.clone().unwrap_or_else(|| {
        let stem = args
            .model
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model");
        args.model
            .with_file_name(format!("{stem}.validate-{space}"))
    });
    let mut p = base.into_os_string();
    p.push(ext);
    PathBuf::from(p)
}

/// Predicted against measured, in milliseconds.
fn write_plot(
    path: &Path,
    title: &str,
    measured_us: &[f64],
    predicted_us: &[f64],
) -> anyhow::Result<()> {
    let points: Vec<(f64, f64)> = measured_us
        .iter()
        .zip(predicted_us)
        .map(|(m, p)| (m / 1e3, p / 1e3))
        .collect();
    let svg = hwnas_plot::predicted_vs_measured(title, &points)?;
    write_atomic(path, svg).with_context(|| format!("writing {}", path.display()))
}
