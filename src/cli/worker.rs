//! `hwnas worker`: the measuring process `hwnas profile` starts for ONNX Runtime devices (not
//! for users: see `hwnas_profiler::worker`).

use std::path::PathBuf;
use std::process::ExitCode;

use hwnas_core::Precision;
use hwnas_profiler::device::DeviceProfile;
use hwnas_profiler::worker;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    device: PathBuf,
    #[arg(long)]
    ort_library: Option<PathBuf>,
    #[arg(long)]
    precision: Option<Precision>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opened = DeviceProfile::load(&args.device)
        .map_err(anyhow::Error::from)
        .and_then(|p| match args.precision {
            Some(precision) => p.with_precision(precision).map_err(anyhow::Error::msg),
            None => Ok(p),
        })
        .and_then(|p| super::profile::open_backend(&p, args.ort_library.as_deref(), &args.device));
    match opened {
        Ok(mut backend) => {
            worker::serve(backend.as_mut(), std::io::stdin().lock(), std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            worker::refuse(std::io::stdout(), &format!("{e:#}"))?;
            Ok(ExitCode::FAILURE)
        }
    }
}
