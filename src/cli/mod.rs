//! The command line: clap arguments (what the user typed), one module per subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod devices;
mod export_op;
mod predict;
mod profile;
mod space;
mod table;

#[derive(Parser)]
#[command(
    name = "hwnas",
    version,
    about = "Hardware-aware NAS: profile operators on real devices, build latency tables, predict network latency"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// What this machine can run: the ONNX Runtime library, its version and execution providers.
    Devices(devices::Args),
    /// Search spaces: list them, or the distinct operators a space can produce.
    #[command(subcommand)]
    Space(space::Command),
    /// Measure every operator of a search space (or given op keys) on a device; write a latency table.
    Profile(profile::Args),
    /// Latency of whole architectures, composed from a latency table.
    Predict(predict::Args),
    /// Latency tables: summarise one.
    #[command(subcommand)]
    Table(table::Command),
    /// Write one operator's ONNX model, as hwnas profiles it, to a file.
    ExportOp(export_op::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices(args) => devices::run(args),
        Command::Space(cmd) => space::run(cmd),
        Command::Profile(args) => profile::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Table(cmd) => table::run(cmd),
        Command::ExportOp(args) => export_op::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
