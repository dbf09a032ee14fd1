//! `hwnas lut export`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hwnas_predictor::LatencyModel;
use hwnas_search::lut::Lut;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write, for every decision of the space, each choice's predicted latency and the fixed
    /// part: the expected latency of a differentiable (DARTS/ProxylessNAS/FBNet) search.
    Export(ExportArgs),
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Latency model of the device (from `hwnas fit`).
    #[arg(long)]
    model: PathBuf,
    /// Search space: mbv3 (nb201's latency is not a sum over its edges' choices).
    #[arg(long)]
    space: String,
    /// Input resolution the table is for (mbv3: 160, 176, 192, 208 or 224).
    #[arg(long, default_value_t = 224)]
    resolution: u32,
    /// Output JSON file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Export(args) = cmd;
    let model = LatencyModel::load(&args.model)?;
    let lut = Lut::export(&model, &args.space, args.resolution)
        .with_context(|| format!("cutting {} into a per-choice table", args.model.display()))?;
    let json = serde_json::to_string_pretty(&lut)?;
    std::fs::write(&args.out, json).with_context(|| format!("writing {}", args.out.display()))?;
    let (lo, hi): (f64, f64) = lut.decisions.iter().fold((0.0, 0.0), |(lo, hi), d| {
        let min = d.latency_ms.iter().copied().fold(f64::INFINITY, f64::min);
        let max = d.latency_ms.iter().copied().fold(0.0, f64::max);
        (lo + min, hi + max)
    });
    println!(
        "{} decisions of {} at resolution {} on `{}`: fixed {:.3} ms, choices add {:.3}-{:.3} ms; wrote {}",
        lut.decisions.len(),
        lut.space,
        lut.resolution,
        lut.device,
        lut.fixed_ms,
        lo,
        hi,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
