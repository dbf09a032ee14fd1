//! `hwnas fit --networks`: a latency model of a device from whole-network timings, on top of
//! another device's model (`--prior`) or the roofline; `--suggest K` says which networks to
//! time next.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use hwnas_core::Precision;
use hwnas_predictor::LatencyModel;
use hwnas_predictor::calibrate::Calibration;
use hwnas_search::arch_table::{ArchTable, ValueKind};
use hwnas_search::space::{SearchSpace, open};
use hwnas_search::timed;

/// Candidates `--suggest` draws from when no `--candidates` file is given.
const CANDIDATES: usize = 2000;

/// A held-out RMS error above this says the timings were noisy: on this project's 2-vCPU VM,
/// 400 nb201 and mbv3 networks timed in one sitting gave 1-5% from 20 networks.
const NOISY: f64 = 0.08;

/// A timing is suspect when the others predict it this many times the median error off, and
/// at least [`SUSPECT_MIN`].
const SUSPECT_TIMES: f64 = 4.0;
const SUSPECT_MIN: f64 = 0.10;

/// The roofline is worth mentioning when its held-out error is below this share of the prior's.
const ROOFLINE_BETTER: f64 = 0.8;

#[derive(clap::Args)]
pub struct NetworksArgs {
    /// Learn the model from these whole-network timings (`arch,latency_ms` CSV, as
    /// `hwnas measure` writes; `FILE#COLUMN` names another latency column) instead of an op
    /// table: for devices timed only whole.
    #[arg(long, value_name = "FILE", conflicts_with = "table")]
    pub networks: Option<PathBuf>,
    /// With --networks or --suggest: another device's latency model (from `hwnas fit`) whose
    /// op latencies the fit scales per kind; without it, a roofline estimate of each op.
    #[arg(long, value_name = "MODEL")]
    pub prior: Option<PathBuf>,
    /// Which K networks to time next: those that would narrow the model's predictions most.
    #[arg(long, value_name = "K")]
    pub suggest: Option<usize>,
    /// With --suggest: choose among these architectures (one per line, such as a search's
    /// front) instead of 2000 sampled from the space.
    #[arg(long, value_name = "FILE", requires = "suggest")]
    pub candidates: Option<PathBuf>,
    /// With --suggest: write the suggested architectures to FILE (default: standard output).
    #[arg(long, value_name = "FILE", requires = "suggest")]
    pub suggest_out: Option<PathBuf>,
    /// With --networks: the precision the timed networks ran at.
    #[arg(long, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// With --networks: the device's name in the model (default: the file's stem).
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(
    n: &NetworksArgs,
    space_name: Option<&str>,
    out: Option<&Path>,
    seed: u64,
) -> anyhow::Result<ExitCode> {
    let prior = n
        .prior
        .as_ref()
        .map(|p| LatencyModel::load(p))
        .transpose()?;
    let space_name = space_name
        .map(str::to_string)
        .or_else(|| prior.as_ref().and_then(|p| p.space.clone()))
        .context("which space are the networks from? give --space")?;
    let space = open(&space_name)?;
    let name = n
        .name
        .clone()
        .or_else(|| {
            n.networks
                .as_ref()
                .and_then(|p| p.file_stem())
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "device".into());
    let basis = prior.unwrap_or_else(|| LatencyModel::roofline(&name));
    let model = match &n.networks {
        Some(path) => {
            let rows = read_timings(path, space.as_ref())?;
            let source = path.display().to_string();
            let fit = |basis: &LatencyModel| {
                let (space, precision) = (space.as_ref(), n.precision);
                timed::fit(basis, space, &space_name, &rows, &name, precision, &source)
            };
            let fitted = fit(&basis)
                .with_context(|| format!("fitting a model to the timings of {source}"))?;
            let model = fitted.model;
            // Suggestions on standard output keep it to themselves, for `> next.txt`.
            let mut log: Box<dyn Write> = if n.suggest.is_some() && n.suggest_out.is_none() {
                Box::new(std::io::stderr())
            } else {
                Box::new(std::io::stdout())
            };
            let cal = model.calibration.as_ref().expect("fitted");
            report(&mut log, cal, path, &basis, n.prior.as_deref())?;
            let archs = &model.calibration_archs;
            warn_of_suspects(cal, archs, &fitted.held_out_errors, path);
            if n.prior.is_some()
                && let Ok(plain) = fit(&LatencyModel::roofline(&name))
                && let Some(plain) = &plain.model.calibration
            {
                compare_with_roofline(cal, plain, path);
            }
            if let Some(out) = out {
                model.save(out)?;
                writeln!(log, "wrote {}", out.display())?;
            }
            model
        }
        None => basis,
    };
    if let Some(k) = n.suggest {
        suggest(&model, space.as_ref(), n, k, seed)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The timings of a `--networks` file: canonical architecture, latency in ms.
fn read_timings(path: &Path, space: &dyn SearchSpace) -> anyhow::Result<Vec<(String, f64)>> {
    let table = ArchTable::from_spec(&path.to_string_lossy(), ValueKind::LatencyMs, space)
        .context("reading the --networks timings")?;
    Ok(table.iter().map(|(a, ms)| (a.to_string(), ms)).collect())
}

/// On stderr, when the fit on the roofline (`plain`) predicts the timings clearly better than
/// the fit on the prior: a prior device unlike this one imposes its structure (mbv3 on this CPU
/// from the int8 table: 88% within ±10% from 20 networks, from the roofline 98%).
fn compare_with_roofline(cal: &Calibration, plain: &Calibration, path: &Path) {
    if plain.loo_rmspe < ROOFLINE_BETTER * cal.loo_rmspe {
        eprintln!(
            "note: without --prior (the roofline), the timings of {} are predicted {:.1}% off \
             held out, against {:.1}% with it: the prior device may be unlike this one; compare \
             both on held-out timings with `hwnas validate --networks`",
            path.display(),
            100.0 * plain.loo_rmspe,
            100.0 * cal.loo_rmspe
        );
    }
}

/// On stderr: a held-out error that says the timings were noisy, and the timings far off the
/// rest (a network timed while something else ran), so the user can time them again.
fn warn_of_suspects(cal: &Calibration, archs: &[String], errors: &[f64], path: &Path) {
    if cal.loo_rmspe > NOISY {
        eprintln!(
            "warning: predicting each network of {} from the others is {:.1}% off (RMS); \
             timings of a quiet machine gave 1-5% here: if some were taken while the device was \
             busy, time them again",
            path.display(),
            100.0 * cal.loo_rmspe
        );
    }
    let bar = (SUSPECT_TIMES * cal.loo_median).max(SUSPECT_MIN);
    let mut suspects: Vec<(f64, &str)> = errors
        .iter()
        .zip(archs)
        .filter(|(e, _)| e.abs() > bar)
        .map(|(e, a)| (*e, a.as_str()))
        .collect();
    suspects.sort_by(|a, b| b.0.abs().total_cmp(&a.0.abs()));
    if suspects.is_empty() {
        return;
    }
    eprintln!(
        "warning: {} timings of {} lie over {:.0}% from what the others predict: a timing \
         disturbed by other work, or a network unlike the rest; time them again, and leave out \
         those that stay off:",
        suspects.len(),
        path.display(),
        100.0 * bar
    );
    for (e, arch) in suspects.iter().take(5) {
        // The model predicted e off the timing: the timing is 1/(1+e) - 1 off the prediction.
        eprintln!(
            "  timed {:+5.1}% off  {arch}",
            100.0 * (1.0 / (1.0 + e) - 1.0)
        );
    }
}

fn report(
    log: &mut dyn Write,
    cal: &Calibration,
    path: &Path,
    basis: &LatencyModel,
    prior: Option<&Path>,
) -> std::io::Result<()> {
    let basis = match prior {
        Some(p) => format!(
            "{} ops of `{}` ({})",
            basis.ops.len(),
            basis.device,
            p.display()
        ),
        None => "the roofline (no --prior)".into(),
    };
    writeln!(
        log,
        "fitted to {} networks timed whole ({}), on {basis}:",
        cal.networks,
        path.display()
    )?;
    let coefficients: Vec<String> = cal
        .kinds
        .iter()
        .zip(&cal.coefficients)
        .filter(|(_, c)| **c != 0.0)
        .map(|(k, c)| format!("{k} {c:.3}"))
        .collect();
    writeln!(
        log,
        "  intercept {:.1} us; {}",
        cal.intercept_us,
        coefficients.join(", ")
    )?;
    let post = cal.posterior.as_ref();
    writeln!(
        log,
        "  held-out RMSPE {:.2}% (median {:.2}%), residual noise {:.2}%, prior pull {}",
        100.0 * cal.loo_rmspe,
        100.0 * cal.loo_median,
        100.0 * post.map_or(f64::NAN, |p| p.noise_rel),
        post.map_or(f64::NAN, |p| p.strength)
    )
}

/// The `k` architectures to time next, written one per line.
fn suggest(
    model: &LatencyModel,
    space: &dyn SearchSpace,
    n: &NetworksArgs,
    k: usize,
    seed: u64,
) -> anyhow::Result<()> {
    let pool = match &n.candidates {
        Some(path) => super::measure::read_archs(path, space)?,
        None => super::measure::sample(space, CANDIDATES, seed ^ 0x5_0667),
    };
    let picked = timed::suggest(model, space, &pool, k)?;
    let text: String = picked.iter().map(|a| format!("{a}\n")).collect();
    match &n.suggest_out {
        Some(path) => {
            hwnas_core::files::write_atomic(path, &text)
                .with_context(|| format!("writing {}", path.display()))?;
            println!(
                "the {} networks to time next (of {} candidates): {}",
                picked.len(),
                pool.len(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}
