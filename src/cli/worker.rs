//! `hwnas worker`: the measuring process that `profile`, `fit --calibrate`, `validate` and
//! `search --verify` start, here or on a remote device (not for users: see
//! `hwnas_profiler::worker`). Everything it needs comes over stdin.

use std::process::ExitCode;

use hwnas_profiler::worker;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    let stdin = std::io::BufReader::new(std::io::stdin());
    worker::serve(stdin, std::io::stdout(), orphaned)?;
    Ok(ExitCode::SUCCESS)
}

/// The host went away (killed, or the connection to this device lost) while a kernel ran:
/// exit, so a kernel that never returns does not keep the device busy.
fn orphaned() {
    eprintln!("hwnas worker: the host went away mid-measurement; exiting");
    std::process::exit(3);
}
