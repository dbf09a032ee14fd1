//! `hwnas devices`

use std::path::PathBuf;
use std::process::ExitCode;

use hwnas_profiler::backend::ort::{OrtRuntime, available_providers};
use hwnas_profiler::device::OrtSettings;
use hwnas_profiler::host;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX Runtime shared library to inspect (default: $ORT_DYLIB_PATH, else ./.venv's wheel).
    #[arg(long)]
    ort_library: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    println!("host");
    println!(
        "  cpu            {} ({} logical CPUs)",
        host::cpu_model(),
        host::cpu_count()
    );
    println!("  os             {}", host::os());
    if let Some(load) = host::load_average() {
        println!("  load (1 min)   {load:.2}");
    }
    println!("onnx runtime");
    match OrtRuntime::new(&OrtSettings::default(), args.ort_library.as_deref()) {
        Ok(rt) => {
            println!("  library        {}", rt.library().display());
            println!("  version        {}", rt.version());
            println!("  providers      {}", available_providers()?.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("  not available: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
