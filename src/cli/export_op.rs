//! `hwnas export-op`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hwnas_core::files::write_atomic;
use hwnas_core::{Op, Precision};
use hwnas_onnx::{self as onnx, NetworkModel};

#[derive(clap::Args)]
pub struct Args {
    /// The op's key, as in a latency table or `hwnas space ops`.
    key: String,
    /// Build it at this precision: fp32, fp16, or int8 (QuantizeLinear/DequantizeLinear).
    #[arg(long, default_value_t = Precision::Fp32)]
    precision: Precision,
    /// Where to write the ONNX model.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let op = Op::from_key(&args.key).with_context(|| format!("cannot export `{}`", args.key))?;
    let model = onnx::precision::convert(&onnx::op_model(&op)?, args.precision);
    write_atomic(&args.out, model.to_bytes())
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

/// `hwnas export`: a whole architecture, or a common CNN, as one ONNX model.
#[derive(clap::Args)]
pub struct NetArgs {
    /// Search space: nb201, mbv3, vit, or a space file (`*.toml`).
    #[arg(long, required_unless_present = "family", requires = "arch")]
    space: Option<String>,
    /// Architecture encoding.
    #[arg(long)]
    arch: Option<String>,
    /// Or a common CNN written as torch.onnx.export writes it: resnet18, mobilenetv2,
    /// mobilenetv3, shufflenetv2, squeezenet (seeded weights).
    #[arg(long, conflicts_with = "space")]
    family: Option<String>,
    /// Input resolution of a --family model.
    #[arg(long, default_value_t = 224)]
    resolution: u32,
    /// ONNX opset of a --family model (13 to 21).
    #[arg(long, default_value_t = onnx::build::OPSET)]
    opset: i64,
    /// Build it at this precision: fp32, fp16, or int8 (QuantizeLinear/DequantizeLinear), as
    /// `validate` and `fit --calibrate` measure a model of that precision.
    #[arg(long, default_value_t = Precision::Fp32)]
    precision: Precision,
    /// Where to write the ONNX model.
    #[arg(long)]
    out: PathBuf,
}

pub fn run_network(args: NetArgs) -> anyhow::Result<ExitCode> {
    if let Some(family) = &args.family {
        if !(32..=4096).contains(&args.resolution) {
            anyhow::bail!(
                "--resolution {} must be between 32 and 4096",
                args.resolution
            );
        }
        let model = onnx::zoo::build_at_opset(family, args.resolution, args.opset)
            .map_err(anyhow::Error::msg)?;
        let model = onnx::precision::convert(&model, args.precision);
        write_atomic(&args.out, model.to_bytes())
            .with_context(|| format!("cannot write {}", args.out.display()))?;
        println!(
            "wrote {} ({family}, {} ONNX nodes, input `input` of shape [1, 3, {r}, {r}], opset {})",
            args.out.display(),
            model.graph.as_ref().map_or(0, |g| g.node.len()),
            args.opset,
            r = args.resolution
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(space), Some(arch)) = (&args.space, &args.arch) else {
        anyhow::bail!("give --space and --arch, or --family");
    };
    let space = hwnas_search::space::open(space)?;
    let net = space.network(arch)?;
    let model = onnx::precision::convert(&net.to_onnx()?, args.precision);
    write_atomic(&args.out, model.to_bytes())
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
