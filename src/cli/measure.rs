//! `hwnas measure`: architectures of a space timed end to end on a device, written as the
//! `arch,latency_ms` file `fit --networks` and `validate --networks` read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use hwnas_core::Precision;
use hwnas_core::rng::SplitMix64;
use hwnas_core::stats::quantile_sorted;
use hwnas_profiler::networks::{NetworkTime, Speed};
use hwnas_search::arch_table::ARCH_HEADERS;
use hwnas_search::space::{SearchSpace, open};

use super::e2e;

#[derive(clap::Args)]
pub struct Args {
    /// Device profile to time the networks on.
    #[arg(long)]
    device: PathBuf,
    /// Search space of the architectures.
    #[arg(long)]
    space: String,
    /// Time this many architectures sampled from the space (seeded), ...
    #[arg(long, default_value_t = 50, conflicts_with = "archs")]
    samples: usize,
    /// ... or those of this file, one per line (such as `fit --suggest` writes).
    #[arg(long, value_name = "FILE")]
    archs: Option<PathBuf>,
    /// Seed of the sample.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Precision the networks are built at.
    #[arg(long, default_value_t = Precision::Fp32)]
    precision: Precision,
    /// Express the times at the speed of an earlier `measure` file (its `# probe_us`), so that
    /// timings of two sittings compare; by default, at this run's median speed.
    #[arg(long, value_name = "FILE")]
    speed_of: Option<PathBuf>,
    /// Time the first N networks a second time, for the noise floor written in the file's header
    /// (0: none).
    #[arg(long, default_value_t = 10)]
    repeat: usize,
    /// Where to write `arch,latency_ms` (CSV).
    #[arg(long)]
    out: PathBuf,
    /// The ONNX Runtime library, overriding the profile and $ORT_DYLIB_PATH.
    #[arg(long)]
    ort_library: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let space = open(&args.space)?;
    let nominal = args.speed_of.as_deref().map(probe_of).transpose()?;
    let archs = match &args.archs {
        Some(path) => read_archs(path, space.as_ref())?,
        None => sample(space.as_ref(), args.samples, args.seed),
    };
    let nets = archs
        .iter()
        .map(|a| space.network(a))
        .collect::<Result<Vec<_>, _>>()?;
    let (profile, mut rt) = e2e::open_device(
        &args.device,
        args.ort_library.as_deref(),
        args.precision,
        false,
    )?;
    // The reference probe runs beside the networks (any nominal turns it on); each time is
    // then expressed at one speed, so that a slow spell of the machine does not make the
    // networks timed during it look slow.
    let speed = Speed {
        probe_nominal_us: Some(1.0),
    };
    let (times, again) = e2e::measure_and_repeat(
        rt.as_mut(),
        &nets,
        &profile.measure,
        speed,
        "networks",
        args.repeat,
    )?;
    let precision = super::e2e::precision_line(&times.precision_json(&profile.measure));
    let (times, again) = (times.times, again.times);
    let (probe_us, at_speed) = at_one_speed(&times, nominal);
    let repeat = again.len();
    let noise = (repeat > 0).then(|| {
        let first: Vec<f64> = at_speed[..repeat].iter().map(|t| t.0).collect();
        let (_, again) = at_one_speed(&again, probe_us);
        let again: Vec<f64> = again.iter().map(|t| t.0).collect();
        super::validate::noise_floor_of(&again, &first)
    });
    let mut text = format!(
        "# device: {}\n# precision: {}\n# space: {}\n# measured: {} by hwnas {}\n",
        profile.name,
        args.precision,
        space.name(),
        hwnas_core::host::utc_now(),
        env!("CARGO_PKG_VERSION")
    );
    if let Some(p) = probe_us {
        text += &format!(
            "# {PROBE_KEY}: {p:.3}\n# latency_ms: at this probe time (probe_speed: the machine's speed while the network ran, relative to it)\n"
        );
    }
    let noise_line = noise.map(|(median, p95, over_10)| {
        format!(
            "noise floor: median {:.2}%, p95 {:.2}%, {over_10} over 10% ({repeat} networks timed twice)",
            100.0 * median,
            100.0 * p95
        )
    });
    if let Some(line) = &noise_line {
        text += &format!("# {line}\n");
    }
    text += "arch,latency_ms,spread_pct,probe_speed\n";
    for ((arch, t), (ms, speed)) in archs.iter().zip(&times).zip(&at_speed) {
        let spread = 100.0 * (t.raw.p90 - t.raw.p10) / t.raw.median;
        let speed = speed.map_or(String::new(), |s| format!("{s:.4}"));
        text += &format!("\"{arch}\",{ms:.6},{spread:.2},{speed}\n");
    }
    hwnas_core::files::write_atomic(&args.out, text)
        .with_context(|| format!("writing {}", args.out.display()))?;
    writeln!(
        std::io::stdout(),
        "timed {} {} networks on `{}` into {}",
        archs.len(),
        space.name(),
        profile.name,
        args.out.display()
    )?;
    if let Some(line) = noise_line {
        writeln!(std::io::stdout(), "  {line}")?;
    }
    if let Some(line) = precision {
        writeln!(std::io::stdout(), "{line}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The header line of a `measure` file that holds the probe time its latencies are at.
const PROBE_KEY: &str = "probe_us";

/// Each network's time in ms at the probe time `nominal` (default: the run's median), and its
/// speed relative to it; `None` where the probe did not run (then the raw time). Returns the
/// probe time used too.
fn at_one_speed(
    times: &[NetworkTime],
    nominal: Option<f64>,
) -> (Option<f64>, Vec<(f64, Option<f64>)>) {
    let mut probes: Vec<f64> = times
        .iter()
        .filter_map(|t| t.drift.map(|d| d.probe_us))
        .collect();
    probes.sort_by(f64::total_cmp);
    let nominal = nominal.or_else(|| (!probes.is_empty()).then(|| quantile_sorted(&probes, 0.5)));
    let at = times
        .iter()
        .map(|t| match (t.drift, nominal) {
            (Some(d), Some(m)) if d.probe_us > 0.0 => {
                (t.raw.median / 1e3 * m / d.probe_us, Some(m / d.probe_us))
            }
            _ => (t.raw.median / 1e3, None),
        })
        .collect();
    (nominal, at)
}

/// The probe time an earlier `measure` file is expressed at.
fn probe_of(path: &Path) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --speed-of {}", path.display()))?;
    text.lines()
        .filter_map(|l| l.strip_prefix('#')?.trim().strip_prefix(PROBE_KEY)?.strip_prefix(':'))
        .find_map(|v| v.trim().parse::<f64>().ok().filter(|v| *v > 0.0))
        .with_context(|| {
            format!(
                "--speed-of {}: no `# {PROBE_KEY}: ...` line; give a file `hwnas measure` wrote with the probe on",
                path.display()
            )
        })
}

/// `n` distinct architectures sampled from the space, seeded.
pub(super) fn sample(space: &dyn SearchSpace, n: usize, seed: u64) -> Vec<String> {
    let mut rng = SplitMix64::new(seed ^ 0x0071_35ed);
    let mut archs: Vec<String> = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..100 * n.max(1) {
        if archs.len() == n {
            break;
        }
        let a = space.sample(&mut rng);
        if seen.insert(a.clone()) {
            archs.push(a);
        }
    }
    archs
}

/// Architectures one per line, as encodings or genomes (blank lines and `#` comments
/// skipped; quotes around a line dropped) — or a CSV's architecture column where the file has
/// a header naming one (a search's `front.csv`, a `--networks` file) — canonicalised.
pub(super) fn read_archs(path: &Path, space: &dyn SearchSpace) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<(usize, String)> = match arch_column(&text) {
        Some(column) => csv_column(&text, column)
            .with_context(|| format!("reading {} as CSV", path.display()))?,
        None => text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim().trim_matches('"').to_string()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .collect(),
    };
    let mut archs = Vec::with_capacity(lines.len());
    for (line, arch) in lines {
        let genome = super::predict_batch::genome_of(space, &arch)
            .with_context(|| format!("{} line {line}: `{arch}`", path.display()))?;
        archs.push(space.decode(&genome));
    }
    anyhow::ensure!(
        !archs.is_empty(),
        "{} lists no architectures",
        path.display()
    );
    Ok(archs)
}

/// The architecture column of a CSV header, if the first line that is not a comment is one.
fn arch_column(text: &str) -> Option<usize> {
    let header = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    header.split(',').position(|h| {
        ARCH_HEADERS.contains(&h.trim().trim_matches('"').to_ascii_lowercase().as_str())
    })
}

/// One column of a CSV, with each value's line number.
fn csv_column(text: &str, column: usize) -> anyhow::Result<Vec<(usize, String)>> {
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        if let Some(v) = record.get(column).filter(|v| !v.is_empty()) {
            out.push((line, v.to_string()));
        }
    }
    Ok(out)
}
