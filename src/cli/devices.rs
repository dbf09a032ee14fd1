//! `hwnas devices`: the host, the ONNX Runtime library and its execution providers, and the
//! wgpu adapters; with `--device`, what that device profile opens (on a remote device, the
//! remote side's inventory).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context;
use hwnas_core::host::{Machine, MachineState};
use hwnas_gpu::runtime::adapters;
use hwnas_profiler::backend::ort::{OrtRuntime, available_providers};
use hwnas_profiler::device::{DeviceProfile, OrtSettings, RemoteSettings};
use hwnas_profiler::worker::Hello;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX Runtime shared library to inspect (default: $ORT_DYLIB_PATH, else ./.venv's wheel).
    #[arg(long)]
    ort_library: Option<PathBuf>,
    /// Open this device profile as `profile` would (on its `[remote]` device, if it has one)
    /// and show what it reports.
    #[arg(long)]
    device: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.device {
        return device(path, args.ort_library.as_deref());
    }
    print_machine("host", &Machine::this(), MachineState::now());
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

fn print_machine(what: &str, machine: &Machine, state: MachineState) {
    println!("{what}");
    println!(
        "  cpu            {} ({} logical CPUs)",
        machine.cpu, machine.logical_cpus
    );
    println!("  os             {}", machine.os);
    if !machine.hostname.is_empty() {
        println!("  hostname       {}", machine.hostname);
    }
    if let Some(load) = state.load1 {
        println!("  load (1 min)   {load:.2}");
    }
}

/// The device a profile opens, through the worker `profile` would start; for a remote device,
/// followed by `hwnas devices` run there.
fn device(path: &Path, library: Option<&Path>) -> anyhow::Result<ExitCode> {
    let profile = DeviceProfile::load(path)?;
    let worker = super::e2e::start_worker(&profile, path, library)?;
    let ready = worker.ready();
    println!("device profile {} (`{}`)", path.display(), profile.name);
    if let Some(command) = worker.remote_command() {
        println!("  reached by     {command}");
    }
    println!("  worker         {}", Hello::this());
    print_machine(
        "measuring machine",
        &ready.machine,
        ready.state.unwrap_or_default(),
    );
    println!("backend");
    for (key, value) in &ready.provenance {
        println!("  {key:<14} {value}");
    }
    drop(worker);
    if let Some(remote) = &profile.remote {
        return remote_inventory(remote, library.or(profile.ort.library.as_deref()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `hwnas devices` on the remote device (with the profile's ONNX Runtime library, a path
/// there), its output passed through.
fn remote_inventory(remote: &RemoteSettings, library: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut line = format!("{} devices", remote.hwnas);
    if let Some(library) = library {
        // Quoted for the device's shell: a path with spaces stays one argument.
        let quoted = library.display().to_string().replace('\'', "'\\''");
        line += &format!(" --ort-library '{quoted}'");
    }
    println!("on the device: {line}");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{} {line}", remote.command))
        .status()
        .with_context(|| format!("running `{}`", remote.command))?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
