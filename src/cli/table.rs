//! `hwnas table show|compare|merge|check`

use std::path::PathBuf;
use std::process::ExitCode;

use hwnas_core::stats::quantile_sorted;
use hwnas_core::table::{ENERGY_COUNTER_META, LatencyTable, Row, machine_report};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Provenance, noise and the slowest ops of a latency table.
    Show(ShowArgs),
    /// How much two tables of the same ops differ: the run-to-run spread of a device.
    Compare(CompareArgs),
    /// Join the shards of one table (`hwnas profile --shard I/N` on identical devices).
    Merge(MergeArgs),
    /// Check a table: it reads, its provenance is complete, no op twice, and how many rows are
    /// noisy or capped. Exits non-zero when something needs a look.
    Check(CheckArgs),
}

#[derive(clap::Args)]
pub struct MergeArgs {
    /// The parts.
    #[arg(required = true)]
    parts: Vec<PathBuf>,
    /// The merged table.
    #[arg(long)]
    out: PathBuf,
    /// Merge even when the parts' provenance differs or an op repeats (the first wins).
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The latency table.
    table: PathBuf,
    /// A row whose median's 95% confidence interval is wider than this (relative) is noisy.
    #[arg(long, default_value_t = 0.05)]
    max_ci: f64,
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The first latency table.
    a: PathBuf,
    /// The second, with (some of) the same ops.
    b: PathBuf,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// The latency table (CSV written by `hwnas profile`).
    table: PathBuf,
    /// How many of the slowest ops to list.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Show(args) => show(args),
        Command::Compare(args) => compare(args),
        Command::Merge(args) => merge(args),
        Command::Check(args) => check(args),
    }
}

fn merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let parts = args
        .parts
        .iter()
        .map(|p| Ok((p.clone(), LatencyTable::read(p)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let merged = LatencyTable::merge(&parts, args.force)?;
    // Which shards came, and which are missing.
    let shards: Vec<(usize, usize)> = parts
        .iter()
        .filter_map(|(_, t)| match super::shard::parse(t.meta("shard")?) {
            Ok(super::shard::ShardArg::Given(i, n)) => Some((i, n)),
            _ => None,
        })
        .collect();
    merged.write(&args.out)?;
    println!(
        "merged {} rows from {} tables into {}",
        merged.rows.len(),
        parts.len(),
        args.out.display()
    );
    if let Some(&(_, n)) = shards.first() {
        let missing: Vec<String> = (1..=n)
            .filter(|i| !shards.contains(&(*i, n)))
            .map(|i| format!("{i}/{n}"))
            .collect();
        if !missing.is_empty() {
            eprintln!("warning: shards {} are missing", missing.join(", "));
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Provenance a table must carry to be used and compared.
const REQUIRED_META: [&str; 5] = ["device", "precision", "tool_version", "measure", "created"];

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let t = LatencyTable::read(&args.table)?;
    let mut problems: Vec<String> = REQUIRED_META
        .iter()
        .filter(|k| t.meta(k).is_none())
        .map(|k| format!("provenance lacks `{k}`"))
        .collect();
    let mut seen = std::collections::HashSet::new();
    for r in &t.rows {
        if !seen.insert(r.key.as_str()) {
            problems.push(format!("`{}` appears twice", r.key));
        }
    }
    let noisy: Vec<&Row> = t.rows.iter().filter(|r| r.ci_rel > args.max_ci).collect();
    let capped = t.rows.iter().filter(|r| r.capped == 1).count();
    if !noisy.is_empty() {
        problems.push(format!(
            "{} rows noisier than ±{:.1}% (95% CI of the median), e.g. `{}` ±{:.1}%; measure them again (`hwnas profile --op KEY`)",
            noisy.len(),
            100.0 * args.max_ci,
            noisy[0].key,
            100.0 * noisy[0].ci_rel
        ));
    }
    let rows: Vec<&Row> = t.rows.iter().collect();
    let machine = machine_report(&rows, logical_cpus(&t));
    problems.extend(machine.problems);
    if let Some(shard) = t.meta("shard") {
        problems.push(format!(
            "this is shard {shard} of a table: merge it with the others (`hwnas table merge`)"
        ));
    }
    println!(
        "{}: {} rows, device `{}`, {} capped at the run or time limit",
        args.table.display(),
        t.rows.len(),
        t.meta("device").unwrap_or("?"),
        capped
    );
    if let Some(summary) = machine.summary {
        println!("  machine: {summary}");
    }
    if problems.is_empty() {
        println!("ok");
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        println!("  - {p}");
    }
    Ok(ExitCode::FAILURE)
}

fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let a = LatencyTable::read(&args.a)?;
    let b = LatencyTable::read(&args.b)?;
    // |a - b| / mean of the two, per op present in both.
    let mut diffs: Vec<(f64, &str)> = a
        .rows
        .iter()
        .filter_map(|ra| {
            let rb = b.get(&ra.key)?;
            let mean = (ra.median_us + rb.median_us) / 2.0;
            (mean > 0.0).then(|| ((ra.median_us - rb.median_us).abs() / mean, ra.key.as_str()))
        })
        .collect();
    if diffs.is_empty() {
        anyhow::bail!(
            "{} and {} have no op in common",
            args.a.display(),
            args.b.display()
        );
    }
    diffs.sort_by(|x, y| x.0.total_cmp(&y.0));
    let rel: Vec<f64> = diffs.iter().map(|d| d.0).collect();
    let total = |t: &LatencyTable| -> f64 {
        t.rows
            .iter()
            .filter(|r| diffs.iter().any(|d| d.1 == r.key))
            .map(|r| r.median_us)
            .sum()
    };
    let (ta, tb) = (total(&a), total(&b));
    println!("{} ops in both tables", diffs.len());
    println!(
        "relative difference of the medians: median {:.2}%, p90 {:.2}%, max {:.2}% ({})",
        100.0 * quantile_sorted(&rel, 0.5),
        100.0 * quantile_sorted(&rel, 0.9),
        100.0 * rel[rel.len() - 1],
        diffs[diffs.len() - 1].1
    );
    println!(
        "sum of the medians: {:.1} us vs {:.1} us ({:+.2}%)",
        ta,
        tb,
        100.0 * (tb / ta - 1.0)
    );
    Ok(ExitCode::SUCCESS)
}

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let table = LatencyTable::read(&args.table)?;
    println!("{}: {} ops", args.table.display(), table.rows.len());
    for field in [
        "device",
        "cpu",
        "backend",
        "ort_version",
        "execution_provider",
        "intra_threads",
        "optimization",
        "adapter",
        "graphics_api",
        "adapter_type",
        "timing",
        "space",
        "created",
        "probe",
        "probe_nominal_us",
        "note",
    ] {
        if let Some(v) = table.meta(field) {
            println!("  {field:<19} {v}");
        }
    }
    let rows: Vec<&Row> = table.rows.iter().collect();
    print_summary(&rows, args.top);
    print_machine(&rows, logical_cpus(&table));
    print_energy(&table);
    Ok(ExitCode::SUCCESS)
}

/// The rows' energy: how many have it, from which counter, and how steady its windows were.
fn print_energy(table: &LatencyTable) {
    let Some(counter) = table.meta(ENERGY_COUNTER_META) else {
        return;
    };
    let with: Vec<&Row> = table
        .rows
        .iter()
        .filter(|r| r.energy_uj.is_some())
        .collect();
    let mut spread: Vec<f64> = with.iter().filter_map(|r| r.energy_spread).collect();
    spread.sort_by(f64::total_cmp);
    let total_mj: f64 = with.iter().filter_map(|r| r.energy_uj).sum::<f64>() / 1e3;
    println!(
        "  energy:  {} rows of {} from {counter}, idle {} W subtracted (counter updates every {} ms); \
         {total_mj:.3} mJ for one run of each; windows' spread median {:.1}% (p95 {:.1}%)",
        with.len(),
        table.rows.len(),
        table.meta("energy_idle_w").unwrap_or("?"),
        table.meta("energy_period_ms").unwrap_or("?"),
        100.0 * quantile_sorted(&spread, 0.5),
        100.0 * quantile_sorted(&spread, 0.95),
    );
}

/// The op kind for throughput reports, with convolutions split by what their kernels do.
fn throughput_kind(r: &Row) -> String {
    match (r.kind.as_str(), r.groups, r.kernel) {
        ("conv", Some(g), _) if g > 1 && g == r.cin => "conv depthwise".into(),
        ("conv", Some(g), _) if g > 1 => "conv grouped".into(),
        ("conv", _, Some(1)) => "conv 1x1".into(),
        ("conv", _, Some(k)) => format!("conv {k}x{k}"),
        (kind, _, _) => kind.into(),
    }
}

/// Achieved GFLOP/s per op kind: all of a kind's FLOPs over all its time, and the median op's.
fn print_throughput(rows: &[&Row]) {
    let mut kinds: std::collections::BTreeMap<String, Vec<&Row>> = Default::default();
    for r in rows.iter().filter(|r| r.flops > 0 && r.median_us > 0.0) {
        kinds.entry(throughput_kind(r)).or_default().push(r);
    }
    if kinds.is_empty() {
        return;
    }
    println!("  throughput:   kind            ops   GFLOP/s (all)   GFLOP/s (median op)");
    for (kind, rs) in &kinds {
        let flops: f64 = rs.iter().map(|r| r.flops as f64).sum();
        let us: f64 = rs.iter().map(|r| r.median_us).sum();
        let mut each: Vec<f64> = rs
            .iter()
            .map(|r| r.flops as f64 / r.median_us / 1e3)
            .collect();
        each.sort_by(f64::total_cmp);
        println!(
            "                {kind:<15} {:>4}   {:>13.2}   {:>19.2}",
            rs.len(),
            flops / us / 1e3,
            quantile_sorted(&each, 0.5)
        );
    }
}

/// Noise, totals and the slowest ops of some rows (shared with `hwnas profile`).
/// The CPUs of the machine a table was measured on, from its provenance.
pub(super) fn logical_cpus(t: &LatencyTable) -> Option<usize> {
    t.meta("logical_cpus")?.parse().ok()
}

/// The machine's load and clock while the rows were measured, and rows to distrust.
pub(super) fn print_machine(rows: &[&Row], cpus: Option<usize>) {
    let report = machine_report(rows, cpus);
    if let Some(summary) = report.summary {
        println!("  machine: {summary}");
    }
    if let Some(drift) = report.drift {
        println!("  drift:   {drift}");
    }
    for p in report.problems {
        println!("  warning: {p}");
    }
}

pub fn print_summary(rows: &[&Row], top: usize) {
    if rows.is_empty() {
        return;
    }
    let rel_mad = |r: &Row| r.mad_us / r.median_us.max(1e-9);
    let mut ci: Vec<f64> = rows.iter().map(|r| r.ci_rel).collect();
    ci.sort_by(f64::total_cmp);
    let mut mad: Vec<f64> = rows.iter().map(|r| rel_mad(r)).collect();
    mad.sort_by(f64::total_cmp);
    let capped = rows.iter().filter(|r| r.capped == 1).count();
    println!(
        "  noise: median CI of the median ±{:.2}% (worst ±{:.2}%); median MAD {:.2}% of the median; \
         {capped} ops hit the run/time cap before reaching the target CI",
        100.0 * quantile_sorted(&ci, 0.5),
        100.0 * ci.last().copied().unwrap_or(0.0),
        100.0 * quantile_sorted(&mad, 0.5),
    );
    if let Some(noisiest) = rows.iter().max_by(|a, b| rel_mad(a).total_cmp(&rel_mad(b))) {
        println!(
            "  noisiest: {} (MAD {:.1}% of {:.1} us)",
            noisiest.key,
            100.0 * rel_mad(noisiest),
            noisiest.median_us
        );
    }
    print_throughput(rows);
    let mut slow = rows.to_vec();
    slow.sort_by(|a, b| b.median_us.total_cmp(&a.median_us));
    println!("  slowest:      median     GFLOP/s   key");
    for r in slow.iter().take(top) {
        println!(
            "  {:>14.1} us {:>9.2}   {}",
            r.median_us,
            r.flops as f64 / r.median_us.max(1e-9) / 1e3,
            r.key
        );
    }
}
