//! `hwnas devices`: the host, the ONNX Runtime library and its execution providers, and the
//! wgpu adapters.

use std::path::PathBuf;
use std::process::ExitCode;

use hwnas_core::host;
use hwnas_gpu::runtime::adapters;
use hwnas_profiler::backend::ort::{OrtRuntime, available_providers};
use hwnas_profiler::device::OrtSettings;

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
    let ort_ok = match OrtRuntime::new(&OrtSettings::default(), args.ort_library.as_deref()) {
        Ok(rt) => {
            println!("  library        {}", rt.library().display());
            println!("  version        {}", rt.version());
            println!("  providers      {}", available_providers()?.join(", "));
            true
        }
        Err(e) => {
            println!("  not available: {e}");
            false
        }
    };
    // WGPU_BACKEND, when set, limits the APIs wgpu looks at.
    let found = adapters("any");
    println!("wgpu adapters ({})", found.len());
    if found.is_empty() {
        println!(
            "  none: install a GPU driver (without a GPU, Mesa's lavapipe: apt install mesa-vulkan-drivers)"
        );
    }
    for a in &found {
        println!(
            "  {:<40} {:<7} {:<15} timestamps: {:<3}  {}",
            a.name,
            a.backend,
            a.device_type,
            if a.timestamps { "yes" } else { "no" },
            a.driver
        );
    }
    Ok(if ort_ok && !found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
