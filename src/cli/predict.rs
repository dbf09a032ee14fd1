//! `hwnas predict`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hwnas_core::Precision;
use hwnas_core::table::LatencyTable;
use hwnas_predictor::LatencyModel;
use hwnas_search::space::open;

use super::onnx_model::{self, OnnxArgs};
use super::predict_batch::{self, Input};

#[derive(clap::Args)]
pub struct Args {
    /// Latency model of the target device (from `hwnas fit`): calibrated, with uncertainty.
    #[arg(long, required_unless_present = "table", conflicts_with = "table")]
    model: Option<PathBuf>,
    /// Or a latency table (from `hwnas profile`): the plain sum of the ops' latencies.
    #[arg(long)]
    table: Option<PathBuf>,
    /// Search space the architectures belong to: nb201, mbv3, vit or a space file.
    #[arg(long, required_unless_present = "onnx")]
    space: Option<String>,
    /// Architecture encoding (repeatable): an nb201 arch string, or `r224-d...-k...-e...` for mbv3.
    #[arg(long, requires = "space", required_unless_present_any = ["onnx", "archs", "all"])]
    arch: Vec<String>,
    /// Predict many architectures, one per line of FILE (`-`: standard input, answered line
    /// by line): an encoding, or a genome as comma-separated gene values (`hwnas space
    /// genes`). Writes CSV `arch,latency_ms` to standard output, through the model compiled
    /// for the space where it is a sum of units.
    #[arg(long, requires = "space", conflicts_with_all = ["arch", "all"])]
    archs: Option<PathBuf>,
    /// Predict every architecture of the space (up to 100,000), as --archs writes them.
    #[arg(long, requires = "space", conflicts_with = "arch")]
    all: bool,
    /// With --archs or --all: also each network's MFLOPs, millions of parameters and peak
    /// activation memory (MB), which builds every network.
    #[arg(long)]
    sizes: bool,
    #[command(flatten)]
    onnx: OnnxArgs,
    /// The precision the latencies must be of (fp32, fp16, int8): a model or table measured
    /// at another is refused.
    #[arg(long)]
    precision: Option<Precision>,
    /// Also list every op with its latency and where it came from (always, with --onnx).
    #[arg(long)]
    per_op: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // A table is a model without regressor or calibration: the lookup-table sum.
    let (model, path) = match (&args.model, &args.table) {
        (Some(path), _) => (LatencyModel::load(path)?, path),
        (None, Some(path)) => (
            LatencyModel::from_table(&LatencyTable::read(path)?, path),
            path,
        ),
        (None, None) => unreachable!("clap requires --model or --table"),
    };
    check_precision(&model, path, args.precision)?;
    if !args.onnx.onnx.is_empty() {
        return predict_onnx(&args, &model, path);
    }
    let space = open(
        args.space
            .as_deref()
            .context("give --space and --arch, or --onnx")?,
    )?;
    if let Some(s) = model.space.as_deref()
        && !hwnas_search::space::same(s, space.as_ref())
    {
        eprintln!("note: {} comes from space `{s}`", path.display());
    }
    let input = match (&args.archs, args.all) {
        (Some(path), _) => Some(Input::Lines(path)),
        (None, true) => Some(Input::All),
        (None, false) => None,
    };
    if let Some(input) = input {
        return predict_batch::run(&model, space.as_ref(), input, args.sizes);
    }
    let mut results = Vec::new();
    for arch in &args.arch {
        let net = space.network(arch)?;
        let terms = model.terms(&net);
        let p = model
            .predict(&terms)
            .with_context(|| format!("predicting `{arch}` with {}", path.display()))?;
        let energy = model.predict_energy_uj(&terms).transpose()?;
        results.push((arch, p, energy));
    }
    let basis = if model
        .calibration
        .as_ref()
        .is_some_and(|c| c.posterior.is_some())
    {
        "learned from networks timed whole (fit --networks); interval: 95% from the fit's posterior"
    } else if model.calibration.is_some() {
        "calibrated on networks measured end to end"
    } else {
        "lookup-table sum of measured op latencies (uncalibrated); interval: the ops' p10-p90 summed"
    };
    if args.json {
        let json: Vec<serde_json::Value> = results
            .iter()
            .map(|(arch, p, energy)| {
                let mut entry = serde_json::json!({
                    "space": space.name(), "arch": arch, "device": model.device, "basis": basis,
                    "latency_us": p.latency_us, "low_us": p.low_us, "high_us": p.high_us, "sum_us": p.sum_us,
                    "regressed_ops": p.regressed().collect::<Vec<_>>(),
                    "per_op": p.per_op.iter().map(|(k, us, src)| serde_json::json!({"key": k, "us": us, "source": src})).collect::<Vec<_>>(),
                });
                if let Some(uj) = energy {
                    entry["energy_uj"] = (*uj).into();
                }
                entry
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "device `{}` at {} ({}); {basis}",
        model.device,
        model.precision(),
        path.display()
    );
    for (arch, p, energy) in results {
        let energy = energy.map_or(String::new(), |uj| format!("  {:.3} mJ", uj / 1e3));
        println!(
            "{:>9.3} ms  [{:.3}, {:.3}]  (ops sum {:.3} ms){energy}  {arch}",
            p.latency_us / 1e3,
            p.low_us / 1e3,
            p.high_us / 1e3,
            p.sum_us / 1e3
        );
        let mut by_kind: BTreeMap<&str, f64> = BTreeMap::new();
        for (key, us, _) in &p.per_op {
            *by_kind
                .entry(key.split('-').next().unwrap_or(""))
                .or_default() += us;
        }
        let shares: Vec<String> = by_kind
            .iter()
            .filter(|(_, us)| **us > 0.0)
            .map(|(kind, us)| format!("{kind} {:.0}%", 100.0 * us / p.sum_us.max(1e-9)))
            .collect();
        println!("             ops sum by kind: {}", shares.join(", "));
        let regressed: Vec<&str> = p.regressed().collect();
        if !regressed.is_empty() {
            println!(
                "             {} ops not in the table, predicted by the regressor: {}",
                regressed.len(),
                regressed.join(", ")
            );
        }
        if args.per_op {
            for (key, us, source) in &p.per_op {
                println!("    {us:>10.1} us  {source:?}  {key}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `predict --onnx`: each model's total, and its layers one by one.
fn predict_onnx(
    args: &Args,
    model: &LatencyModel,
    path: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let mut json = Vec::new();
    for file in &args.onnx.onnx {
        let m = args.onnx.load(file)?;
        let (p, layers) = onnx_model::predict(model, &m, file)?;
        if args.json {
            let mut entry = serde_json::json!({
                "onnx": file, "device": model.device, "input": m.network.input.to_string(),
                "latency_us": p.latency_us, "low_us": p.low_us, "high_us": p.high_us, "sum_us": p.sum_us,
                "calibrated": p.calibrated, "layers": onnx_model::layers_json(&layers),
                "notes": m.notes,
            });
            merge(&mut entry, onnx_model::unmapped_fields(&m));
            json.push(entry);
            continue;
        }
        if let Some(line) = onnx_model::partial_line(file, &m) {
            println!("{line}");
        }
        println!("{}", onnx_model::summary_line(file, &m));
        println!(
            "  predicted {:.3} ms [{:.3}, {:.3}] on `{}` ({}; ops sum {:.3} ms)",
            p.latency_us / 1e3,
            p.low_us / 1e3,
            p.high_us / 1e3,
            model.device,
            if let Some(c) = &model.calibration {
                format!("calibrated on {} networks measured end to end", c.networks)
            } else {
                "lookup-table sum".into()
            },
            p.sum_us / 1e3
        );
        let predicted = layers
            .iter()
            .filter(|l| l.source == hwnas_predictor::model::Source::Regressed)
            .count();
        println!(
            "  {} of {} layers measured in {}, {predicted} predicted by the regressor",
            layers.len() - predicted,
            layers.len(),
            path.display()
        );
        onnx_model::print_layers(&layers, p.sum_us);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--precision`: a model (or table) measured at another precision is refused.
pub(super) fn check_precision(
    model: &LatencyModel,
    path: &std::path::Path,
    wanted: Option<Precision>,
) -> anyhow::Result<()> {
    match wanted {
        Some(p) if model.precision() != p => anyhow::bail!(
            "{} holds {} latencies, not {p}: profile at {p} (`hwnas profile --precision {p}`) and fit that table",
            path.display(),
            model.precision()
        ),
        _ => Ok(()),
    }
}

/// Add `extra`'s fields to the JSON object `into`.
pub(super) fn merge(into: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
}
