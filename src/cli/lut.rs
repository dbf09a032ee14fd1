//! `hwnas lut export`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hwnas_core::files::write_atomic;
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
    /// Search space: mbv3 (a term per block), nb201 (one term over its six edges), or a space
    /// file: a layer-wise space gets a term per block slot over the genes that shape it (its
    /// choices, its stage's depth and widths), a small cell space one term over all its genes.
    #[arg(long)]
    space: String,
    /// Input resolution the table is for (mbv3: 160, 176, 192, 208 or 224, default 224;
    /// nb201: 32; a space file: one of its resolutions, default the largest).
    #[arg(long)]
    resolution: Option<u32>,
    /// Output JSON file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Export(args) = cmd;
    let model = LatencyModel::load(&args.model)?;
    let cut = || format!("cutting {} into a per-choice table", args.model.display());
    let lut = Lut::for_space(&model, &args.space, args.resolution).with_context(cut)?;
    let json = serde_json::to_string_pretty(&lut)?;
    write_atomic(&args.out, json).with_context(|| format!("writing {}", args.out.display()))?;
    // Terms are independent tables, so the extremes add (for mbv3 they include a `skip`
    // before a running block, which the space never builds).
    let (lo, hi) = lut.terms.iter().fold((0.0, 0.0), |(lo, hi), t| {
        let min = t.latency_ms.iter().copied().fold(f64::INFINITY, f64::min);
        let max = t.latency_ms.iter().copied().fold(0.0, f64::max);
        (lo + min, hi + max)
    });
    let entries: usize = lut.terms.iter().map(|t| t.latency_ms.len()).sum();
    println!(
        "{} decisions of {}{} on `{}`: {} term{}, {} entries; fixed {:.3} ms, terms add {:.3}-{:.3} ms; wrote {}",
        lut.decisions.len(),
        lut.space,
        // A space without a resolution choice (vit) has one input size.
        if lut.resolution == 0 {
            String::new()
        } else {
            format!(" at resolution {}", lut.resolution)
        },
        lut.device,
        lut.terms.len(),
        if lut.terms.len() == 1 { "" } else { "s" },
        entries,
        lut.fixed_ms,
        lo,
        hi,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
