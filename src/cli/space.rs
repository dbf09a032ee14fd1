//! `hwnas space list` and `hwnas space ops`

use std::process::ExitCode;

use hwnas_search::space::{builtin, count_by_kind};

#[derive(clap::Subcommand)]
pub enum Command {
    /// The built-in search spaces.
    List,
    /// The distinct operators a space can produce, with their cost, and how many of each kind.
    Ops(OpsArgs),
}

#[derive(clap::Args)]
pub struct OpsArgs {
    /// Search space: nb201 or mbv3.
    #[arg(long)]
    space: String,
    /// Print only the keys, one per line (to feed `hwnas profile --op`).
    #[arg(long)]
    keys: bool,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::List => {
            for name in ["nb201", "mbv3"] {
                let space = builtin(name)?;
                println!("{:<6} {}", space.name(), space.describe());
            }
        }
        Command::Ops(args) => {
            let space = builtin(&args.space)?;
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
