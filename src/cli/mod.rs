//! The command line: clap arguments (what the user typed), one module per subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod anchors;
mod devices;
mod e2e;
mod export_op;
mod fit;
mod fit_networks;
mod lut;
mod measure;
mod onnx_model;
mod predict;
mod predict_batch;
mod profile;
mod reference;
mod search;
mod search_report;
mod search_state;
mod shard;
mod space;
mod table;
mod validate;
mod validate_ceiling;
mod validate_networks;
mod validate_onnx;
mod validate_rounds;
mod worker;

#[derive(Parser)]
#[command(
    name = "hwnas",
    version,
    about = "Hardware-aware NAS: profile operators on real devices, build latency tables, predict network latency, search"
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
    /// Fit a latency model: from a table (a regressor for unseen shapes, a calibration on networks measured end to end), or from whole-network timings (--networks); --suggest says which networks to time.
    Fit(fit::Args),
    /// Latency of whole architectures, from a latency model or a latency table.
    Predict(predict::Args),
    /// Time architectures of a space end to end on a device: the `arch,latency_ms` file `fit --networks` reads.
    Measure(measure::Args),
    /// Measure sampled networks end to end and score the model's predictions of them.
    Validate(validate::Args),
    /// Latency tables: summarise one, or compare two.
    #[command(subcommand)]
    Table(table::Command),
    /// Multi-objective search (NSGA-II) for the Pareto front of accuracy vs latency, size, memory.
    Search(Box<search::Args>),
    /// Per-choice latency tables for differentiable search.
    #[command(subcommand)]
    Lut(lut::Command),
    /// Write one operator's ONNX model, as hwnas profiles it, to a file.
    ExportOp(export_op::Args),
    /// Write a whole architecture's ONNX model, as `validate` measures it, to a file.
    Export(export_op::NetArgs),
    /// The measuring process `profile` starts for ONNX Runtime devices.
    #[command(hide = true)]
    Worker(worker::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices(args) => devices::run(args),
        Command::Space(cmd) => space::run(cmd),
        Command::Profile(args) => profile::run(args),
        Command::Fit(args) => fit::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Measure(args) => measure::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Table(cmd) => table::run(cmd),
        Command::Search(args) => search::run(*args),
        Command::Lut(cmd) => lut::run(cmd),
        Command::ExportOp(args) => export_op::run(args),
        Command::Export(args) => export_op::run_network(args),
        Command::Worker(args) => worker::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks over every subcommand (conflicting flags, bad defaults).
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
