//! `hwnas profile`

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use hwnas_core::host::{Machine, MachineState};
use hwnas_core::table::{
    LatencyTable, Metadata, PROBE_KEY_META, PROBE_NOMINAL_META, Row, TableWriter,
};
use hwnas_core::{Op, Precision, host};
use hwnas_profiler::backend::{self, Backend};
use hwnas_profiler::device::{BackendKind, DeviceProfile};
use hwnas_profiler::measure::{MeasureConfig, PROBE_KEY};
use hwnas_profiler::profile::{
    GroupMeasurer, InProcess, OpOutcome, Pass, ProfileError, probe_nominal_us, profile_ops,
};
use hwnas_search::space::open;
use indicatif::{ProgressBar, ProgressStyle};

use super::onnx_model::OnnxArgs;
use super::shard::{Shard, ShardArg};

#[derive(clap::Args)]
pub struct Args {
    /// Device profile (TOML): backend, execution provider, threads, measurement settings.
    #[arg(long)]
    device: PathBuf,
    /// Profile every distinct op of this search space (nb201, mbv3, vit, or a space file).
    #[arg(long, required_unless_present_any = ["op", "onnx", "reference"])]
    space: Option<String>,
    /// Also profile every op of the built-in reference networks (five CNN families at four
    /// resolutions), which `fit --calibrate-reference` calibrates on.
    #[arg(long)]
    reference: bool,
    /// Profile this op key (repeatable), instead of or on top of a space.
    #[arg(long)]
    op: Vec<String>,
    /// Profile exactly the ops these ONNX models need (`--onnx` is repeatable).
    #[command(flatten)]
    onnx: OnnxArgs,
    /// The latency table to write (CSV).
    #[arg(long)]
    out: PathBuf,
    /// Measure only shard I of N (`3/8`): every N-th op of the sorted list, from the I-th, so
    /// N identical devices share one space; `hwnas table merge` joins the parts.
    /// `auto` reads it from the job array that started this task (Slurm, a Kubernetes Indexed
    /// Job with HWNAS_SHARDS, AWS Batch).
    #[arg(long, value_parser = super::shard::parse)]
    shard: Option<ShardArg>,
    /// Rows noisier than this (95% CI of the median, relative, e.g. 0.02) are measured once more
    /// at the end, and left out if still noisy (overrides `[measure] max_noise`).
    #[arg(long)]
    max_noise: Option<f64>,
    /// Build every op at this precision: fp32, fp16, or int8 as QuantizeLinear/DequantizeLinear
    /// graphs (overrides the profile's `precision`; ONNX Runtime devices only).
    #[arg(long)]
    precision: Option<Precision>,
    /// Measure each op's energy per run too (column `energy_uj`), from the device's counter:
    /// RAPL on CPUs, NVML on NVIDIA GPUs (the profile's `[energy]` section tunes it). An error
    /// where the device has none.
    #[arg(long)]
    energy: bool,
    /// Continue an interrupted table: keep its rows, measure only the missing ops.
    #[arg(long)]
    resume: bool,
    /// The ONNX Runtime library, overriding the profile's `ort.library` and $ORT_DYLIB_PATH.
    #[arg(long)]
    ort_library: Option<PathBuf>,
    /// An op whose nodes did not all run on the profile's execution provider (a fallback to
    /// the CPU) is an error and is not written; without it, such rows are kept and flagged.
    #[arg(long)]
    require_ep: bool,
    /// Print one line per measured op.
    #[arg(long, short)]
    verbose: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = device_profile(&args)?;
    let shard = args
        .shard
        .as_ref()
        .map(|s| s.resolve(|var| std::env::var(var).ok()))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let ops = ops_to_profile(&args, shard.as_ref())?;
    let (mut measurer, provenance, default_provider) = open_measurer(&args, &profile)?;
    let mut meta = metadata(
        &profile,
        &args,
        shard.as_ref(),
        &measurer.machine(),
        // A simulated device has no load of its own: the machine running it is recorded.
        measurer.machine_state().unwrap_or_else(MachineState::now),
        provenance,
    );
    let probe_nominal_us = probe_speed(&args, &profile, measurer.as_mut())?;
    if let Some(nominal) = probe_nominal_us {
        meta.push((PROBE_KEY_META.into(), PROBE_KEY.into()));
        meta.push((PROBE_NOMINAL_META.into(), format!("{nominal:.3}")));
    }

    let (mut writer, done) = if args.resume {
        TableWriter::resume(&args.out, &meta)?
    } else {
        (TableWriter::create(&args.out, &meta)?, Vec::new())
    };
    let done_keys: HashSet<&str> = done.iter().map(|r| r.key.as_str()).collect();
    let todo: Vec<Op> = ops
        .iter()
        .filter(|op| !done_keys.contains(op.key().as_str()))
        .copied()
        .collect();
    eprintln!(
        "profiling {} ops on `{}` into {}{}",
        todo.len(),
        profile.name,
        args.out.display(),
        if done.is_empty() {
            String::new()
        } else {
            format!(" ({} already there)", done.len())
        }
    );

    let start = Instant::now();
    // The provider every node must run on: the profile's EP (ORT devices only).
    let expected = (profile.backend == BackendKind::Ort)
        .then(|| hwnas_profiler::backend::ort::provider_name(&profile.ort.execution_provider));
    let pass = Pass {
        cfg: &profile.measure,
        default_provider: &default_provider,
        require_provider: expected.as_deref().filter(|_| args.require_ep),
        probe_nominal_us,
    };
    let outcomes = measure_ops(measurer.as_mut(), &todo, &pass, &mut writer, &args)?;

    let rows: Vec<&Row> = outcomes
        .iter()
        .filter_map(|o| match o {
            OpOutcome::Measured(r) => Some(r.as_ref()),
            OpOutcome::Failed { .. } => None,
        })
        .collect();
    let failed = outcomes.len() - rows.len();
    if failed == 0 || !rows.is_empty() {
        print_summary(
            &rows,
            start.elapsed().as_secs_f64(),
            &args.out,
            measurer.machine().logical_cpus,
        );
    }
    if let Some(ep) = &expected {
        let fell_back: Vec<&str> = rows
            .iter()
            .filter(|r| r.provider.split('+').any(|p| p != ep))
            .map(|r| r.key.as_str())
            .collect();
        if !fell_back.is_empty() {
            eprintln!(
                "warning: {} ops did not run on {ep} alone (their `provider` column says where they ran; --require-ep refuses them): {}",
                fell_back.len(),
                fell_back.join(", ")
            );
        }
    }
    if failed > 0 {
        eprintln!(
            "{failed} ops failed (listed above); the {} measured rows are in {}. Rerun with --resume to retry only the failed ops",
            rows.len(),
            args.out.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// [`profile_ops`] with a progress bar (and a line per op with `--verbose`); a device lost
/// midway is the error, naming what was kept.
fn measure_ops(
    measurer: &mut dyn GroupMeasurer,
    todo: &[Op],
    pass: &Pass<'_>,
    writer: &mut TableWriter,
    args: &Args,
) -> anyhow::Result<Vec<OpOutcome>> {
    let bar = ProgressBar::new(todo.len() as u64).with_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} ops  {elapsed} elapsed, ETA {eta}  {wide_msg}",
        )
        .expect("valid template"),
    );
    let say = |line: String| {
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    };
    let outcomes = profile_ops(measurer, todo, pass, writer, |o| {
        match o {
            OpOutcome::Measured(row) => {
                if args.verbose {
                    say(format!(
                        "{:>10.1} us  ±{:>4.1}%  n={:<5} {}",
                        row.median_us,
                        100.0 * row.ci_rel,
                        row.runs,
                        row.key
                    ));
                }
                bar.set_message(row.key.clone());
            }
            OpOutcome::Failed { key, error } => say(format!("FAILED {key}: {error}")),
        }
        bar.inc(1);
    });
    bar.finish_and_clear();
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(ProfileError::Device(why)) => {
            let kept = LatencyTable::read(&args.out).map_or(0, |t| t.rows.len());
            bail!(
                "{why}\n{kept} rows measured so far are kept in {}: rerun with --resume once the device is back",
                args.out.display()
            );
        }
        Err(e) => return Err(e.into()),
    };
    if measurer.restarts() > 0 {
        eprintln!(
            "note: the measuring process stopped {} times (a hung or crashed kernel, or a lost connection) and was started again; the ops it was measuring were measured again one at a time",
            measurer.restarts()
        );
    }
    Ok(outcomes)
}

/// The probe time the table is expressed at: a resumed table's own, else the probe measured
/// now, alone (see `hwnas_profiler::profile::probe_nominal_us`).
fn probe_speed(
    args: &Args,
    profile: &DeviceProfile,
    measurer: &mut dyn GroupMeasurer,
) -> anyhow::Result<Option<f64>> {
    if args.resume && args.out.exists() {
        let meta = LatencyTable::read_meta(&args.out)?;
        return Ok(meta
            .iter()
            .find(|(k, _)| k == PROBE_NOMINAL_META)
            .and_then(|(_, v)| v.parse().ok()));
    }
    let nominal = probe_nominal_us(measurer, &profile.measure).map_err(anyhow::Error::msg)?;
    if let Some(us) = nominal {
        eprintln!(
            "reference probe `{PROBE_KEY}`: {us:.1} us now; every row is expressed at this speed"
        );
    }
    Ok(nominal)
}

/// The device profile, with the command line's overrides.
fn device_profile(args: &Args) -> anyhow::Result<DeviceProfile> {
    let mut profile = DeviceProfile::load(&args.device)?;
    if let Some(p) = args.precision {
        profile = profile
            .with_precision(p)
            .map_err(|e| anyhow::anyhow!("--precision: {e}"))?;
    }
    profile.energy.enabled |= args.energy;
    if let Some(limit) = args.max_noise {
        profile.measure.max_noise = Some(limit);
        profile
            .measure
            .validate()
            .map_err(|e| anyhow::anyhow!("--max-noise: {e}"))?;
    }
    Ok(profile)
}

/// The distinct ops the command line asks for (a space, ONNX models, keys), this shard's share.
fn ops_to_profile(args: &Args, shard: Option<&Shard>) -> anyhow::Result<Vec<Op>> {
    let mut ops: Vec<Op> = Vec::new();
    if let Some(name) = &args.space {
        ops.extend(open(name)?.ops().into_iter().filter(|o| !o.is_free()));
    }
    for path in &args.onnx.onnx {
        let m = args.onnx.load(path)?;
        ops.extend(m.network.ops().filter(|o| !o.is_free()));
    }
    if args.reference {
        for (_, net) in super::reference::networks()? {
            ops.extend(net.ops().filter(|o| !o.is_free()));
        }
    }
    for key in &args.op {
        let op = Op::from_key(key).with_context(|| format!("--op `{key}`"))?;
        if op.is_free() {
            bail!("--op `{key}` runs no kernel (skip/zero ops cost nothing and are not profiled)");
        }
        ops.push(op);
    }
    let mut seen = HashSet::new();
    ops.retain(|op| seen.insert(op.key()));
    if let Some(Shard {
        index: i, count: n, ..
    }) = shard
    {
        ops = ops
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % n == i - 1)
            .map(|(_, op)| op)
            .collect();
    }
    Ok(ops)
}

/// Where ops are measured, what the table records of it, and the provider to record when the
/// backend cannot tell.
type Measurer = (Box<dyn GroupMeasurer>, Vec<(String, String)>, String);

/// The [`Measurer`] of a device profile: a worker process for ONNX Runtime and for remote
/// devices, else this process.
fn open_measurer(args: &Args, profile: &DeviceProfile) -> anyhow::Result<Measurer> {
    // ORT measures in a worker process, so a kernel that hangs can be killed (ORT cannot
    // stop a lone op from inside); wgpu has deadlines of its own.
    if profile.remote.is_some() || profile.backend == BackendKind::Ort {
        let worker = super::e2e::start_worker(profile, &args.device, args.ort_library.as_deref())?;
        let ready = worker.ready();
        let mut provenance = ready.provenance.clone();
        if let Some(command) = worker.remote_command() {
            provenance.push(("remote".into(), command.to_string()));
            provenance.push(("remote_hostname".into(), ready.machine.hostname.clone()));
        }
        let default_provider = ready.default_provider.clone();
        return Ok((Box::new(worker), provenance, default_provider));
    }
    let backend = open_backend(profile, args.ort_library.as_deref(), &args.device)?;
    let provenance = backend.provenance();
    let default_provider = backend.default_provider().to_string();
    Ok((Box::new(InProcess(backend)), provenance, default_provider))
}

/// The backend a device profile names, opened in this process, with its notes printed.
pub(super) fn open_backend(
    profile: &DeviceProfile,
    ort_library: Option<&Path>,
    device: &Path,
) -> anyhow::Result<Box<dyn Backend>> {
    let backend = backend::open(profile, ort_library)
        .with_context(|| format!("device profile {}", device.display()))?;
    for note in backend.notes() {
        eprintln!("note: {note}");
    }
    Ok(backend)
}

fn metadata(
    profile: &DeviceProfile,
    args: &Args,
    shard: Option<&Shard>,
    machine: &Machine,
    state: MachineState,
    provenance: Vec<(String, String)>,
) -> Metadata {
    let mut meta: Metadata = vec![
        ("device".into(), profile.name.clone()),
        ("device_description".into(), profile.description.clone()),
        ("cpu".into(), machine.cpu.clone()),
        ("logical_cpus".into(), machine.logical_cpus.to_string()),
        ("os".into(), machine.os.clone()),
        ("precision".into(), profile.precision.to_string()),
        (
            "space".into(),
            match (&args.space, args.onnx.onnx.is_empty()) {
                (Some(space), _) => space.clone(),
                (None, false) => format!(
                    "onnx:{}",
                    args.onnx
                        .onnx
                        .iter()
                        .map(|p| p.file_name().map_or(p.display().to_string(), |f| f
                            .to_string_lossy()
                            .into_owned()))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                (None, true) => "(ops given with --op)".into(),
            },
        ),
        (
            "tool_version".into(),
            format!("hwnas {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "measure".into(),
            // Which rows are kept is not how they were measured: a table resumes or merges
            // whatever the noise limit; later passes are for networks, not ops.
            serde_json::to_string(&MeasureConfig {
                max_noise: None,
                later_passes: hwnas_profiler::measure::DEFAULT_LATER_PASSES,
                ..profile.measure.clone()
            })
            .unwrap_or_default(),
        ),
    ];
    if let Some(shard) = shard {
        meta.push(("shard".into(), format!("{}/{}", shard.index, shard.count)));
        if let Some(from) = &shard.from {
            meta.push(("shard_from".into(), from.clone()));
        }
    }
    meta.extend(provenance);
    meta.push(("created".into(), host::utc_now()));
    if let Some(load) = state.load1 {
        meta.push(("load_average".into(), format!("{load:.2}")));
    }
    meta
}

fn print_summary(rows: &[&Row], seconds: f64, out: &std::path::Path, logical_cpus: usize) {
    if rows.is_empty() {
        println!("nothing to measure: {} already has every op", out.display());
        return;
    }
    println!(
        "measured {} ops in {seconds:.1} s -> {}",
        rows.len(),
        out.display()
    );
    super::table::print_summary(rows, 5);
    super::table::print_machine(rows, Some(logical_cpus));
}
