//! `hwnas export-op`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hwnas_profiler::{Op, onnx};

#[derive(clap::Args)]
pub struct Args {
    /// The op's key, as in a latency table or `hwnas space ops`.
    key: String,
    /// Where to write the ONNX model.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let op = Op::from_key(&args.key).with_context(|| format!("cannot export `{}`", args.key))?;
    let model = onnx::op_model(&op)?;
    std::fs::write(&args.out, model.to_bytes())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let names = &onnx::INPUT_NAMES[..op.num_inputs()];
    println!(
        "wrote {} (opset {}, inputs {} of shape {:?}, output `{}`)",
        args.out.display(),
        onnx::build::OPSET,
        names.join(", "),
        op.input().dims(),
        onnx::OUTPUT_NAME
    );
    Ok(ExitCode::SUCCESS)
}

/// `hwnas export`: a whole architecture as one ONNX model.
#[derive(clap::Args)]
pub struct NetArgs {
    /// Search space: nb201 or mbv3.
    #[arg(long)]
    space: String,
    /// Architecture encoding.
    #[arg(long)]
    arch: String,
    /// Where to write the ONNX model.
    #[arg(long)]
    out: PathBuf,
}

pub fn run_network(args: NetArgs) -> anyhow::Result<ExitCode> {
    let space = hwnas_search::space::builtin(&args.space)?;
    let net = space.network(&args.arch)?;
    let model = net.to_onnx()?;
    std::fs::write(&args.out, model.to_bytes())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "wrote {} ({} ops, input x of shape {:?}, output `{}`)",
        args.out.display(),
        net.nodes.iter().filter(|n| !n.op.is_free()).count(),
        net.input.dims(),
        onnx::OUTPUT_NAME
    );
    Ok(ExitCode::SUCCESS)
}
