//! `hwnas search`

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context, bail};
use hwnas_core::Precision;
use hwnas_predictor::LatencyModel;
use hwnas_search::accuracy::AccuracySource;
use hwnas_search::objective::{
    ArchProblem, Constraint, LatencySource, Metric, Metrics, energy_indices, latency_index,
    name_apart, parse_objectives,
};
use hwnas_search::problem::Evaluation;
use hwnas_search::problem::Outcome;
use hwnas_search::space::{SearchSpace, genome_count, open};
use hwnas_search::strategy::{self, Config, Fitness, Strategy};
use indicatif::{ProgressBar, ProgressStyle};

use super::{search_report, search_state};
use hwnas_search::report::Report;

/// Spaces up to this many genomes may be enumerated.
const EXHAUSTIVE_LIMIT: f64 = 2e6;

#[derive(clap::Args)]
pub struct Args {
    /// Search space: nb201, mbv3, vit, or a space file (`*.toml`).
    #[arg(long, required_unless_present = "resume")]
    pub(super) space: Option<String>,
    /// Latency model of a device (from `hwnas fit`); repeat for several devices.
    #[arg(long)]
    model: Vec<PathBuf>,
    /// The precision the networks will run in (fp32, fp16, int8): every `--model` must have
    /// been measured at it.
    #[arg(long)]
    precision: Option<Precision>,
    /// Whole-architecture latencies measured on a device, `table:FILE.csv[#COLUMN]` (ms; a
    /// column ending in `_us` is µs); repeatable. The device is named after the file.
    #[arg(long)]
    latency: Vec<String>,
    /// Accuracy source: `table:FILE.csv[#COLUMN]` (measured), `fit:FILE.csv[#COLUMN]` (a
    /// regression fitted on those samples), `cmd:COMMAND` (archs on stdin, accuracies on
    /// stdout), `ask` (each generation written to ask.txt beside --state, answered in
    /// tell.csv), or `proxy` (MFLOPs, named as a proxy in every output).
    #[arg(long, default_value = "proxy")]
    pub(super) accuracy: String,
    /// Objectives, comma-separated, from accuracy, latency (every device), latency:DEVICE,
    /// energy (every device whose model has energy), energy:DEVICE, mflops, mparams, memory.
    #[arg(long, default_value = "accuracy,latency")]
    objectives: String,
    /// Latency bound in ms: one number for every device, or `DEVICE=MS,...`.
    #[arg(long)]
    max_latency_ms: Option<String>,
    /// Energy bound per inference in mJ (models fitted on tables profiled with `--energy`):
    /// one number for every device with energy, or `DEVICE=MJ,...`.
    #[arg(long)]
    max_energy_mj: Option<String>,
    /// Parameter bound, millions.
    #[arg(long)]
    max_mparams: Option<f64>,
    /// FLOPs bound, millions.
    #[arg(long)]
    max_mflops: Option<f64>,
    /// Peak activation memory bound, MB (batch 1, fp32).
    #[arg(long)]
    max_memory_mb: Option<f64>,
    /// Accuracy lower bound.
    #[arg(long)]
    min_accuracy: Option<f64>,
    /// Search strategy: nsga2 (the Pareto front), evolution (regularized evolution), reinforce
    /// (REINFORCE on a policy over the choices) or random. The single-objective ones maximise
    /// the MnasNet reward (see --reward-target-ms) and report the front of all they evaluated.
    #[arg(long, default_value = "nsga2")]
    strategy: String,
    /// The MnasNet reward `accuracy × (latency / T)^w` of evolution and reinforce: T in ms
    /// (default: the --max-latency-ms bound of the first latency objective's device).
    #[arg(long)]
    reward_target_ms: Option<f64>,
    /// The reward's exponent w (MnasNet's soft constraint: -0.07).
    #[arg(long, default_value_t = -0.07, allow_negative_numbers = true)]
    reward_weight: f64,
    /// Population size (default: a twentieth of --max-evaluations, within 20..100, so a run
    /// has about 20 generations).
    #[arg(long)]
    population: Option<usize>,
    /// NSGA-II without its Pareto local search (plain Deb et al. 2002), for comparisons. By
    /// default the search walks the one-gene neighbours of its best members once the front's
    /// unwalked neighbourhood fits in the remaining budget (small spaces such as nb201).
    #[arg(long)]
    no_local_search: bool,
    /// NSGA-II without surrogate screening, for comparisons. By default each generation breeds
    /// 40 candidates per child, a ridge model of the evaluations so far predicts them, and the
    /// share of children it picks grows while they survive better than plain children.
    #[arg(long)]
    no_screening: bool,
    /// Distinct architectures to evaluate, the initial population included.
    #[arg(long, default_value_t = 1000)]
    max_evaluations: usize,
    /// Seed of every random choice of the search (and of `fit:` cross-validation).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Evaluate every architecture of the space: the true front (small spaces only).
    #[arg(long, conflicts_with = "max_evaluations")]
    exhaustive: bool,
    /// A front.json from another run (e.g. `--exhaustive`) to compare with: the hypervolume
    /// ratio, and EvoXBench's normalised hypervolume and IGD+ against that front.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Re-measure the final front end to end on `--device`.
    #[arg(long, requires = "device")]
    verify: bool,
    /// Re-measure at most this many front members, spread evenly along the front's latency.
    #[arg(long, default_value_t = 30)]
    verify_max: usize,
    /// With --verify: how many of the model's calibration networks to measure again among the
    /// front's, to compare them at the calibration's sitting (0: not; see `validate --anchors`).
    #[arg(long, default_value_t = super::anchors::DEFAULT_ANCHORS)]
    anchors: usize,
    /// Device profile for `--verify`.
    #[arg(long)]
    device: Option<PathBuf>,
    /// The ONNX Runtime library for `--verify`, overriding the profile and $ORT_DYLIB_PATH.
    #[arg(long)]
    ort_library: Option<PathBuf>,
    /// Output directory: front.csv, front.json, front.svg, history.csv.
    #[arg(long, default_value = "runs/search")]
    out: PathBuf,
    /// Save the search's state here after every generation (these arguments and every
    /// accuracy obtained so far), so that `--resume` continues it after a kill.
    #[arg(long)]
    pub(super) state: Option<PathBuf>,
    /// Continue the search a `--state` file holds, with the arguments it was started with:
    /// the accuracies it holds are not evaluated again, and the result is the one an
    /// uninterrupted run gives.
    #[arg(long)]
    pub(super) resume: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (args, journal) = search_state::start(args)?;
    let space = open(args.space.as_deref().context("--space is required")?)?;
    let latency = latency_sources(&args, space.as_ref())?;
    let mut accuracy = AccuracySource::parse(&args.accuracy, space.as_ref(), args.seed)?;
    if let AccuracySource::Ask(dir) = &mut accuracy {
        *dir = search_state::ask_dir(journal.as_ref());
    }
    let objectives = parse_objectives(&args.objectives, &latency).map_err(anyhow::Error::msg)?;
    let constraints = parse_constraints(&args, &latency)?;
    let mut problem = ArchProblem {
        space: space.as_ref(),
        accuracy,
        latency,
        objectives,
        constraints,
        journal: journal.map(Mutex::new),
    };
    println!(
        "searching {} ({}); objectives: {}",
        space.name(),
        space.describe(),
        problem
            .objectives
            .iter()
            .map(|m| problem.metric_name(*m))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("accuracy: {}", problem.accuracy.describe());
    for l in &problem.latency {
        println!("latency `{}`: {}", l.name(), describe_latency(l));
    }
    if args.exhaustive {
        check_enumerable(space.as_ref())?;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let started = std::time::Instant::now();
    let mut outcome = if args.exhaustive {
        exhaustive(&mut problem, space.as_ref())?
    } else {
        search(&mut problem, &args)?
    };
    let seconds = started.elapsed().as_secs_f64();
    for i in outcome.front.clone() {
        problem.complete(&mut outcome.archive[i].info)?;
    }
    let strategy = if args.exhaustive {
        "exhaustive"
    } else {
        &args.strategy
    };
    let mut report = Report::new(
        &problem,
        &outcome,
        args.seed,
        strategy,
        args.exhaustive,
        seconds,
    );
    // A bad --compare file or a failed re-measurement must not lose the search: the front is
    // written first, and again with what came after.
    let comparison = args.compare.as_deref().map(|c| report.compare(c));
    let compared = comparison.as_ref().and_then(|c| c.as_ref().ok());
    report.save(&args.out, compared)?;
    let verification = match (&args.verify, &args.device) {
        (true, Some(device)) => Some(
            search_report::verify(
                &problem,
                &outcome,
                device,
                args.ort_library.as_deref(),
                args.verify_max,
                args.anchors,
            )
            .with_context(|| format!("--verify (the front is saved in {})", args.out.display()))?,
        ),
        _ => None,
    };
    if verification.is_some() {
        report.verification = verification.as_ref();
        report.save(&args.out, compared)?;
    }
    search_report::print(&report, compared, &args.out);
    match comparison {
        Some(Err(e)) => Err(anyhow::Error::from(e).context(format!(
            "--compare (the front is saved in {})",
            args.out.display()
        ))),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn describe_latency(l: &LatencySource) -> String {
    match l {
        LatencySource::Model { model, .. } => format!(
            "predicted by a model of device `{}` (table {}{})",
            model.device,
            model.table,
            if model.calibration.is_some() {
                ", calibrated end to end"
            } else {
                ", uncalibrated"
            }
        ),
        LatencySource::Table { table, .. } => format!(
            "measured, column `{}` of {} ({} architectures)",
            table.column,
            table.path.display(),
            table.len()
        ),
    }
}

fn latency_sources(args: &Args, space: &dyn SearchSpace) -> anyhow::Result<Vec<LatencySource>> {
    let mut sources = Vec::new();
    for path in &args.model {
        let model = LatencyModel::load(path)?;
        super::predict::check_precision(&model, path, args.precision)?;
        if let Some(s) = model.space.as_deref()
            && !hwnas_search::space::same(s, space)
        {
            eprintln!(
                "note: {} was profiled on space `{s}`; ops of {} it lacks come from its regressor",
                path.display(),
                space.name()
            );
        }
        sources.push(LatencySource::model(model.device.clone(), model, space));
    }
    for spec in &args.latency {
        let file = spec
            .strip_prefix("table:")
            .with_context(|| format!("--latency `{spec}`: expected table:FILE.csv[#COLUMN]"))?;
        sources.push(LatencySource::table(file, space)?);
    }
    name_apart(&mut sources);
    Ok(sources)
}

fn parse_constraints(args: &Args, latency: &[LatencySource]) -> anyhow::Result<Vec<Constraint>> {
    let mut out = Vec::new();
    let positive = |what: &str, v: f64| -> anyhow::Result<f64> {
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            bail!("{what} must be a positive number, got {v}")
        }
    };
    if let Some(spec) = &args.max_latency_ms {
        if latency.is_empty() {
            bail!("--max-latency-ms needs a --model or --latency table:FILE.csv");
        }
        let devices = |name: Option<&str>| match name {
            Some(name) => latency_index(latency, name).map(|i| vec![i]),
            None => Ok((0..latency.len()).collect()),
        };
        out.extend(per_device(
            "--max-latency-ms",
            spec,
            devices,
            Metric::Latency,
        )?);
    }
    if let Some(spec) = &args.max_energy_mj {
        let devices = |name: Option<&str>| energy_indices(latency, name);
        out.extend(per_device(
            "--max-energy-mj",
            spec,
            devices,
            Metric::Energy,
        )?);
    }
    for (flag, value, metric) in [
        ("--max-mparams", args.max_mparams, Metric::Mparams),
        ("--max-mflops", args.max_mflops, Metric::Mflops),
        ("--max-memory-mb", args.max_memory_mb, Metric::MemoryMb),
        ("--min-accuracy", args.min_accuracy, Metric::Accuracy),
    ] {
        if let Some(v) = value {
            out.push(Constraint {
                metric,
                bound: positive(flag, v)?,
            });
        }
    }
    Ok(out)
}

/// Bounds `N` (every device `devices(None)` gives) or `DEVICE=N,...` on `metric`.
fn per_device(
    flag: &str,
    spec: &str,
    devices: impl Fn(Option<&str>) -> Result<Vec<usize>, String>,
    metric: fn(usize) -> Metric,
) -> anyhow::Result<Vec<Constraint>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim) {
        let (targets, value) = match part.split_once('=') {
            Some((name, v)) => (devices(Some(name.trim())), v),
            None => (devices(None), part),
        };
        let targets = targets.map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
        let bound: f64 = value
            .trim()
            .parse()
            .ok()
            .with_context(|| format!("{flag} `{part}`: `{value}` is not a number"))?;
        if !(bound.is_finite() && bound > 0.0) {
            bail!("{flag} must be a positive number, got {bound}");
        }
        out.extend(targets.into_iter().map(|i| Constraint {
            metric: metric(i),
            bound,
        }));
    }
    Ok(out)
}

fn progress(len: u64, template: &str) -> ProgressBar {
    ProgressBar::new(len)
        .with_style(ProgressStyle::with_template(template).expect("valid template"))
}

fn search(problem: &mut ArchProblem, args: &Args) -> anyhow::Result<Outcome<Metrics>> {
    let cfg = Config {
        population: args
            .population
            .unwrap_or_else(|| Config::default_population(args.max_evaluations)),
        max_evaluations: args.max_evaluations,
        seed: args.seed,
        local_search: !args.no_local_search,
        screening: !args.no_screening,
        ..Config::default()
    };
    let bar = progress(
        cfg.max_evaluations as u64,
        "{bar:40} {pos}/{len} evaluated  {elapsed}  {msg}",
    );
    let strategy = Strategy::parse(&args.strategy).with_context(|| {
        format!(
            "--strategy `{}`: one of {}",
            args.strategy,
            Strategy::ALL.map(|s| s.name()).join(", ")
        )
    })?;
    let reward = MnasReward::new(problem, args)?;
    if strategy.needs_fitness() {
        reward.check()?;
        println!("{} maximises {}", strategy.name(), reward.describe(problem));
    }
    let outcome = strategy
        .run(problem, &cfg, &reward, |g| {
            bar.set_position(g.evaluations as u64);
            bar.set_message(format!(
                "generation {}  front {}  hypervolume {:.4}",
                g.index, g.front_size, g.hypervolume
            ));
        })
        .context("search")?;
    bar.finish_and_clear();
    Ok(outcome)
}

/// MnasNet's reward (Tan et al. 2019): `accuracy × (latency / T)^w`; accuracy alone when no
/// latency is an objective.
struct MnasReward {
    accuracy: Option<usize>,
    latency: Option<usize>,
    target_ms: f64,
    weight: f64,
}

impl MnasReward {
    fn new(problem: &ArchProblem, args: &Args) -> anyhow::Result<MnasReward> {
        let position = |want: &dyn Fn(&Metric) -> bool| problem.objectives.iter().position(want);
        let accuracy = position(&|m| *m == Metric::Accuracy);
        let latency = position(&|m| matches!(m, Metric::Latency(_)));
        let bound = latency.and_then(|i| {
            problem
                .constraints
                .iter()
                .find(|c| c.metric == problem.objectives[i])
                .map(|c| c.bound)
        });
        Ok(MnasReward {
            accuracy,
            latency,
            target_ms: args.reward_target_ms.or(bound).unwrap_or(f64::NAN),
            weight: args.reward_weight,
        })
    }

    /// Whether the reward can be computed, else what to give.
    fn check(&self) -> anyhow::Result<()> {
        if self.accuracy.is_none() {
            bail!(
                "evolution and reinforce maximise a reward of accuracy: add `accuracy` to --objectives"
            );
        }
        if self.latency.is_some() && (self.target_ms.is_nan() || self.target_ms <= 0.0) {
            bail!(
                "the reward needs its target latency: give --reward-target-ms (or --max-latency-ms)"
            );
        }
        Ok(())
    }

    fn describe(&self, problem: &ArchProblem) -> String {
        match self.latency {
            Some(l) => format!(
                "accuracy × ({} / {} ms)^{}",
                problem.metric_name(problem.objectives[l]),
                self.target_ms,
                self.weight
            ),
            None => "accuracy".into(),
        }
    }
}

impl Fitness for MnasReward {
    fn value(&self, e: &Evaluation) -> f64 {
        let accuracy = self.accuracy.map_or(0.0, |i| -e.objectives[i]);
        match self.latency {
            Some(l) => accuracy * (e.objectives[l] / self.target_ms).powf(self.weight),
            None => accuracy,
        }
    }
}

fn check_enumerable(space: &dyn SearchSpace) -> anyhow::Result<()> {
    let total = genome_count(&space.genes());
    if total > EXHAUSTIVE_LIMIT {
        bail!(
            "--exhaustive: {} has {total:.3e} architectures (at most {EXHAUSTIVE_LIMIT:.0e} can be enumerated); search it with --max-evaluations",
            space.name()
        );
    }
    Ok(())
}

fn exhaustive(
    problem: &mut ArchProblem,
    space: &dyn SearchSpace,
) -> anyhow::Result<Outcome<Metrics>> {
    let total = genome_count(&space.genes());
    let bar = progress(
        total as u64,
        "{bar:40} {pos}/{len} evaluated  {elapsed}, ETA {eta}",
    );
    let outcome = strategy::exhaustive(problem, 1000, |n| bar.set_position(n as u64))
        .context("exhaustive evaluation")?;
    bar.finish_and_clear();
    Ok(outcome)
}
