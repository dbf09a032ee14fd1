//! `hwnas space list`, `hwnas space ops`, `hwnas space check` and `hwnas space genes`

use std::process::ExitCode;

use hwnas_search::space::{SearchSpace, builtin, count_by_kind, genome_count, open};

#[derive(clap::Subcommand)]
pub enum Command {
    /// The built-in search spaces.
    List,
    /// The distinct operators a space can produce, with their cost, and how many of each kind.
    Ops(OpsArgs),
    /// Check a space file: errors name the line and the key; prints the space's size.
    Check(CheckArgs),
    /// The space's genome, one gene per line as CSV (`gene,levels,ordered,choices`): what
    /// `predict --archs` takes as comma-separated values, and what an outside optimiser varies.
    Genes(GenesArgs),
}

#[derive(clap::Args)]
pub struct GenesArgs {
    /// Search space: nb201, mbv3, vit, or a space file (`*.toml`).
    #[arg(long)]
    space: String,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The space file (or a built-in name).
    file: String,
}

#[derive(clap::Args)]
pub struct OpsArgs {
    /// Search space: nb201, mbv3, vit, or a space file (`*.toml`).
    #[arg(long)]
    space: String,
    /// Print only the keys, one per line (to feed `hwnas profile --op`).
    #[arg(long)]
    keys: bool,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::List => {
            for name in ["nb201", "mbv3", "vit"] {
                let space = builtin(name)?;
                println!("{:<6} {}", space.name(), space.describe());
            }
            println!("or any space file: `--space spaces/fbnet.toml` (see `hwnas space check`)");
        }
        Command::Check(args) => return check(open(&args.file)?.as_ref()),
        Command::Genes(args) => {
            let space = open(&args.space)?;
            println!("gene,levels,ordered,choices");
            for ((name, choices), gene) in space.gene_labels().iter().zip(space.genes()) {
                println!(
                    "{name},{},{},{}",
                    gene.levels,
                    gene.ordered,
                    choices.join(" ")
                );
            }
        }
        Command::Ops(args) => {
            let space = open(&args.space)?;
            let ops = space.ops();
            if args.keys {
                for op in &ops {
                    println!("{}", op.key());
                }
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:>10} {:>10}  key", "MFLOPs", "params");
            for op in &ops {
                let note = if op.is_free() {
                    "   (no kernel: not profiled)"
                } else {
                    ""
                };
                println!(
                    "{:>10.3} {:>10}  {}{note}",
                    op.flops() as f64 / 1e6,
                    op.params(),
                    op.key()
                );
            }
            let free = ops.iter().filter(|o| o.is_free()).count();
            let kinds: Vec<String> = count_by_kind(&ops)
                .into_iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            println!(
                "{}: {} distinct ops ({}); {} to profile",
                space.name(),
                ops.len(),
                kinds.join(", "),
                ops.len() - free
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a user wants to know of a space they wrote: that it loads, how big it is, what it
/// runs, and one network of it.
fn check(space: &dyn SearchSpace) -> anyhow::Result<ExitCode> {
    let genes = space.genes();
    let ops = space.ops();
    let free = ops.iter().filter(|o| o.is_free()).count();
    let mut rng = hwnas_core::rng::SplitMix64::new(0);
    let example = space.sample(&mut rng);
    let net = space.network(&example)?;
    println!("{}: {}", space.name(), space.describe());
    println!(
        "{} genes, {:.4e} architectures; {} distinct ops ({} to profile); {}",
        genes.len(),
        genome_count(&genes),
        ops.len(),
        ops.len() - free,
        if space.additive().is_some() {
            "additive: `lut export` writes a term per block"
        } else if genome_count(&genes) <= hwnas_search::lut::ENUMERABLE as f64 {
            "not additive: `lut export` writes one term over every architecture"
        } else {
            "not additive and too large for `lut export`"
        }
    );
    println!(
        "example: {example}\n  {} ops, {:.1} MFLOPs, {:.2} M parameters",
        net.nodes.len(),
        net.flops() as f64 / 1e6,
        net.params() as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}
