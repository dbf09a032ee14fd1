//! `hwnas predict`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hwnas_predictor::{LatencyModel, LutPredictor, Term};
use hwnas_profiler::table::LatencyTable;
use hwnas_search::space::builtin;

#[derive(clap::Args)]
pub struct Args {
    /// Latency model of the target device (from `hwnas fit`): calibrated, with uncertainty.
    #[arg(long, required_unless_present = "table", conflicts_with = "table")]
    model: Option<PathBuf>,
    /// Or a latency table (from `hwnas profile`): the plain sum of the ops' latencies.
    #[arg(long)]
    table: Option<PathBuf>,
    /// Search space the architectures belong to: nb201 or mbv3.
    #[arg(long)]
    space: String,
    /// Architecture encoding (repeatable): an nb201 arch string, or `r224-d...-k...-e...` for mbv3.
    #[arg(long, required = true)]
    arch: Vec<String>,
    /// Also list every op with its latency.
    #[arg(long)]
    per_op: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

const BASIS: &str = "lookup-table sum of measured op latencies (uncalibrated)";

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(table_path) = args.table.clone() else {
        return run_model(args);
    };
    let table = LatencyTable::read(&table_path)?;
    let space = builtin(&args.space)?;
    if let Some(t) = table.meta("space")
        && t != space.name()
    {
        eprintln!(
            "note: {} was profiled for space `{t}`",
            table_path.display()
        );
    }
    let lut = LutPredictor::new(&table);
    let mut results = Vec::new();
    for arch in &args.arch {
        let ops = space.network_ops(arch)?;
        let net = lut
            .network(&ops)
            .with_context(|| format!("predicting `{arch}` from {}", table_path.display()))?;
        results.push((arch, net));
    }
    if args.json {
        let json: Vec<serde_json::Value> = results
            .iter()
            .map(|(arch, net)| {
                serde_json::json!({
                    "space": space.name(),
                    "arch": arch,
                    "device": table.meta("device"),
                    "basis": BASIS,
                    "latency_us": net.total_us,
                    "p10_us": net.p10_us,
                    "p90_us": net.p90_us,
                    "per_op": net.per_op.iter().map(|(k, us)| serde_json::json!({"key": k, "us": us})).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "device `{}` ({}); {BASIS}",
        table.meta("device").unwrap_or("?"),
        table_path.display()
    );
    for (arch, net) in results {
        println!(
            "{:>9.3} ms  (ops' p10-p90 summed: {:.3}-{:.3} ms)  {arch}",
            net.total_us / 1e3,
            net.p10_us / 1e3,
            net.p90_us / 1e3
        );
        let mut by_kind: BTreeMap<&str, f64> = BTreeMap::new();
        for (key, us) in &net.per_op {
            *by_kind
                .entry(key.split('-').next().unwrap_or(""))
                .or_default() += us;
        }
        let shares: Vec<String> = by_kind
            .iter()
            .filter(|(_, us)| **us > 0.0)
            .map(|(kind, us)| format!("{kind} {:.0}%", 100.0 * us / net.total_us.max(1e-9)))
            .collect();
        println!("             by kind: {}", shares.join(", "));
        if args.per_op {
            for (key, us) in &net.per_op {
                println!("    {us:>10.1} us  {key}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_model(args: Args) -> anyhow::Result<ExitCode> {
    let path = args.model.clone().expect("clap: --model or --table");
    let model = LatencyModel::load(&path)?;
    let space = builtin(&args.space)?;
    let mut results = Vec::new();
    for arch in &args.arch {
        let net = space.network(arch)?;
        let p = model
            .predict(&Term::of_network(&net))
            .with_context(|| format!("predicting `{arch}` with {}", path.display()))?;
        results.push((arch, p));
    }
    let basis = if model.calibration.is_some() {
        "calibrated on networks measured end to end"
    } else {
        "uncalibrated sum of op latencies"
    };
    if args.json {
        let json: Vec<serde_json::Value> = results
            .iter()
            .map(|(arch, p)| {
                serde_json::json!({
                    "space": space.name(), "arch": arch, "device": model.device, "basis": basis,
                    "latency_us": p.latency_us, "low_us": p.low_us, "high_us": p.high_us, "sum_us": p.sum_us,
                    "regressed_ops": p.regressed().collect::<Vec<_>>(),
                    "per_op": p.per_op.iter().map(|(k, us, src)| serde_json::json!({"key": k, "us": us, "source": src})).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("device `{}` ({}); {basis}", model.device, path.display());
    for (arch, p) in results {
        println!(
            "{:>9.3} ms  [{:.3}, {:.3}]  (ops sum {:.3} ms)  {arch}",
            p.latency_us / 1e3,
            p.low_us / 1e3,
            p.high_us / 1e3,
            p.sum_us / 1e3
        );
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
