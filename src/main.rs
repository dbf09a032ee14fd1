//! `hwnas`: hardware-aware neural architecture search. See `hwnas --help` and the README.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
