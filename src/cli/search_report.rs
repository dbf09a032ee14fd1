//! What `hwnas search` leaves behind: the front as CSV, JSON and SVG, the per-generation
//! history, `--verify`'s re-measurement and `--compare`'s hypervolume ratio.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use hwnas_core::files::write_atomic;
use hwnas_core::stats::quantile_sorted;
use hwnas_predictor::metrics::Accuracy;
use hwnas_profiler::device::DeviceProfile;
use hwnas_search::hypervolume::Normalizer;
use hwnas_search::objective::{ArchProblem, LatencySource, Metric, Metrics};
use hwnas_search::plot::{self, Axes};
use hwnas_search::problem::Outcome;
use serde_json::{Value, json};

use super::e2e;

pub const SCHEMA: &str = "hwnas-search/1";

/// The front re-measured end to end on one device.
pub struct Verification {
    pub device: String,
    /// Which latency source the device is.
    pub source: usize,
    /// Measured ms, in the order of `Outcome::front`; `None` for members left unmeasured.
    pub measured_ms: Vec<Option<f64>>,
}

impl Verification {
    /// (predicted, measured) ms of the measured members.
    fn pairs(&self, outcome: &Outcome<Metrics>) -> (Vec<f64>, Vec<f64>) {
        outcome
            .front
            .iter()
            .zip(&self.measured_ms)
            .filter_map(|(i, m)| Some((outcome.archive[*i].info.latency_ms[self.source], (*m)?)))
            .unzip()
    }
}

/// Measures front members on the device of `profile_path`: all of them, or `max` spread
/// evenly along the front's latency.
pub fn verify(
    problem: &ArchProblem,
    outcome: &Outcome<Metrics>,
    profile_path: &Path,
    library: Option<&Path>,
    max: usize,
) -> anyhow::Result<Verification> {
    let profile = DeviceProfile::load(profile_path)?;
    let models: Vec<usize> = (0..problem.latency.len())
        .filter(|i| matches!(problem.latency[*i], LatencySource::Model { .. }))
        .collect();
    let source = match problem
        .latency
        .iter()
        .position(|l| l.name() == profile.name)
    {
        Some(i) => i,
        None if models.len() == 1 => models[0],
        None => bail!(
            "--verify: device profile {} is `{}`, which names none of the latency sources ({})",
            profile_path.display(),
            profile.name,
            problem
                .latency
                .iter()
                .map(|l| l.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    // The networks are built at the precision the source's model was measured in.
    let precision = match &problem.latency[source] {
        LatencySource::Model { model, .. } => model.precision(),
        LatencySource::Table { .. } => profile.precision,
    };
    let profile = profile
        .with_precision(precision)
        .map_err(|e| anyhow::anyhow!("device profile {}: {e}", profile_path.display()))?;
    let mut rt = e2e::runtime(&profile, profile_path, library)?;
    let mut by_latency: Vec<usize> = (0..outcome.front.len()).collect();
    by_latency.sort_by(|a, b| {
        let ms = |p: usize| outcome.archive[outcome.front[p]].info.latency_ms[source];
        ms(*a).total_cmp(&ms(*b))
    });
    let n = by_latency.len();
    let chosen: Vec<usize> = if n <= max {
        by_latency
    } else {
        let mut picks: Vec<usize> = (0..max.max(1))
            .map(|k| by_latency[k * (n - 1) / (max.max(2) - 1)])
            .collect();
        picks.dedup();
        picks
    };
    let nets = chosen
        .iter()
        .map(|p| {
            problem
                .space
                .network(&outcome.archive[outcome.front[*p]].info.arch)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let stats = e2e::measure(rt.as_mut(), &nets, &profile.measure, "verifying the front")?;
    let mut measured_ms = vec![None; n];
    for (p, s) in chosen.iter().zip(&stats) {
        measured_ms[*p] = Some(s.median / 1e3);
    }
    Ok(Verification {
        device: profile.name,
        source,
        measured_ms,
    })
}

pub struct Report<'a, 'p> {
    pub problem: &'a ArchProblem<'p>,
    pub outcome: &'a Outcome<Metrics>,
    pub seed: u64,
    /// `exhaustive`, or the strategy's name.
    pub strategy: &'a str,
    pub exhaustive: bool,
    pub seconds: f64,
    pub verification: Option<&'a Verification>,
    /// Per front member (in `Outcome::front` order), per latency source: the prediction's
    /// interval in ms, where the source has one.
    intervals: Vec<Vec<Option<(f64, f64)>>>,
}

impl<'a, 'p> Report<'a, 'p> {
    /// The report of a finished search; the front's latency intervals are predicted here, once.
    pub fn new(
        problem: &'a ArchProblem<'p>,
        outcome: &'a Outcome<Metrics>,
        seed: u64,
        strategy: &'a str,
        exhaustive: bool,
        seconds: f64,
    ) -> Self {
        let intervals = outcome
            .front
            .iter()
            .map(|i| {
                let net = problem.space.network(&outcome.archive[*i].info.arch).ok();
                problem
                    .latency
                    .iter()
                    .map(|src| net.as_ref().and_then(|n| src.interval_ms(n)))
                    .collect()
            })
            .collect();
        Report {
            problem,
            outcome,
            seed,
            strategy,
            exhaustive,
            seconds,
            verification: None,
            intervals,
        }
    }
}

impl Report<'_, '_> {
    /// Front members (archive indices) with their position in `Outcome::front`, ordered by the
    /// first objective that is not accuracy.
    fn ordered(&self) -> Vec<(usize, usize)> {
        let key = self.x_metric();
        let mut v: Vec<(usize, usize)> = self.outcome.front.iter().copied().enumerate().collect();
        v.sort_by(|a, b| {
            let m = |i: usize| self.outcome.archive[i].info.get(key);
            m(a.1).total_cmp(&m(b.1))
        });
        v
    }

    fn x_metric(&self) -> Metric {
        let objs = &self.problem.objectives;
        *objs
            .iter()
            .find(|m| **m != Metric::Accuracy)
            .unwrap_or(&objs[0])
    }

    fn y_metric(&self) -> Metric {
        let objs = &self.problem.objectives;
        let x = self.x_metric();
        *objs
            .iter()
            .find(|m| **m == Metric::Accuracy)
            .or_else(|| objs.iter().find(|m| **m != x))
            .unwrap_or(&objs[0])
    }

    fn member_json(&self, pos: usize, i: usize) -> Value {
        let ind = &self.outcome.archive[i];
        let m = &ind.info;
        let latency: serde_json::Map<String, Value> = self
            .problem
            .latency
            .iter()
            .enumerate()
            .map(|(s, src)| {
                let interval = self.intervals[pos][s];
                let measured = self
                    .verification
                    .filter(|v| v.source == s)
                    .and_then(|v| v.measured_ms[pos]);
                (
                    src.name().to_string(),
                    json!({"ms": m.latency_ms[s], "low_ms": interval.map(|i| i.0),
                           "high_ms": interval.map(|i| i.1), "measured_ms": measured}),
                )
            })
            .collect();
        json!({
            "arch": m.arch,
            "accuracy": m.accuracy,
            "latency": latency,
            "mflops": m.mflops, "mparams": m.mparams, "peak_memory_mb": m.memory_mb,
            "minimised": ind.eval.objectives,
        })
    }

    fn objective_names(&self) -> Vec<String> {
        let p = self.problem;
        p.objectives.iter().map(|m| p.metric_name(*m)).collect()
    }

    /// Writes front.json, front.csv, history.csv and front.svg into `dir`.
    pub fn save(&self, dir: &Path, comparison: Option<&Value>) -> anyhow::Result<()> {
        let p = self.problem;
        let names = self.objective_names();
        let ordered = self.ordered();
        let front: Vec<Value> = ordered
            .iter()
            .map(|(pos, i)| self.member_json(*pos, *i))
            .collect();
        let verification = self.verification.map(|v| self.verification_json(v));
        let report = json!({
            "schema": SCHEMA,
            "space": p.space.name(),
            "seed": self.seed,
            "strategy": self.strategy,
            "exhaustive": self.exhaustive,
            "evaluations": self.outcome.archive.len(),
            "seconds": self.seconds,
            "accuracy_source": p.accuracy.describe(),
            "accuracy_is_proxy": p.accuracy.is_proxy(),
            "objectives": names,
            "constraints": p.constraints.iter().map(|c| json!({"metric": p.metric_name(c.metric), "bound": c.bound})).collect::<Vec<_>>(),
            "history": self.outcome.history.iter().map(|g| json!({"generation": g.index, "evaluations": g.evaluations, "front": g.front_size, "hypervolume": g.hypervolume})).collect::<Vec<_>>(),
            "front": front,
            "verification": verification,
            "comparison": comparison,
        });
        let write = |name: &str, text: String| -> anyhow::Result<()> {
            let path = dir.join(name);
            write_atomic(&path, text).with_context(|| format!("writing {}", path.display()))
        };
        write("front.json", serde_json::to_string_pretty(&report)?)?;
        write("front.csv", self.csv(&ordered))?;
        write("history.csv", self.history_csv())?;
        write("front.svg", self.svg())
    }

    fn csv(&self, ordered: &[(usize, usize)]) -> String {
        let p = self.problem;
        let mut header = vec!["arch".to_string(), p.metric_name(Metric::Accuracy)];
        for (s, src) in p.latency.iter().enumerate() {
            let n = src.name();
            header.extend([
                format!("latency_{n}_ms"),
                format!("latency_{n}_low_ms"),
                format!("latency_{n}_high_ms"),
            ]);
            if self.verification.is_some_and(|v| v.source == s) {
                header.push(format!("measured_{n}_ms"));
            }
        }
        header.extend(["mflops", "mparams", "peak_memory_mb"].map(String::from));
        let mut out = header.join(",") + "\n";
        let num = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:.6}"));
        for (pos, i) in ordered {
            let m = &self.outcome.archive[*i].info;
            let mut row = vec![format!("\"{}\"", m.arch), num(Some(m.accuracy))];
            for s in 0..p.latency.len() {
                let interval = self.intervals[*pos][s];
                row.extend([
                    num(Some(m.latency_ms[s])),
                    num(interval.map(|i| i.0)),
                    num(interval.map(|i| i.1)),
                ]);
                if let Some(v) = self.verification.filter(|v| v.source == s) {
                    row.push(num(v.measured_ms[*pos]));
                }
            }
            row.extend([
                num(Some(m.mflops)),
                num(Some(m.mparams)),
                num(Some(m.memory_mb)),
            ]);
            out += &(row.join(",") + "\n");
        }
        out
    }

    fn history_csv(&self) -> String {
        let mut out = String::from("generation,evaluations,front,hypervolume\n");
        for g in &self.outcome.history {
            let _ = writeln!(
                out,
                "{},{},{},{:.6}",
                g.index, g.evaluations, g.front_size, g.hypervolume
            );
        }
        out
    }

    fn svg(&self) -> String {
        let p = self.problem;
        let (x, y) = (self.x_metric(), self.y_metric());
        let point = |i: usize| {
            let m = &self.outcome.archive[i].info;
            (m.get(x), m.get(y))
        };
        // Thousands of grey dots say enough; keep the file small.
        let step = (self.outcome.archive.len() / 5000).max(1);
        let all: Vec<(f64, f64)> = (0..self.outcome.archive.len())
            .step_by(step)
            .map(point)
            .collect();
        let front: Vec<(f64, f64)> = self.outcome.front.iter().map(|i| point(*i)).collect();
        let projected = if p.objectives.len() > 2 {
            format!(" (projection of a {}-objective front)", p.objectives.len())
        } else {
            String::new()
        };
        let title = format!(
            "{} search: {} evaluated{projected}",
            p.space.name(),
            self.outcome.archive.len()
        );
        let (xn, yn) = (p.metric_name(x), p.metric_name(y));
        plot::pareto(
            &Axes {
                title: &title,
                x: &xn,
                y: &yn,
            },
            &all,
            &front,
        )
    }

    fn verification_json(&self, v: &Verification) -> Value {
        let (predicted, measured) = v.pairs(self.outcome);
        let acc = Accuracy::of(&predicted, &measured);
        let mut errors: Vec<f64> = predicted
            .iter()
            .zip(&measured)
            .map(|(p, m)| (p / m - 1.0).abs())
            .collect();
        errors.sort_by(f64::total_cmp);
        json!({
            "device": v.device,
            "latency_source": self.problem.latency[v.source].name(),
            "networks": measured.len(),
            "front": v.measured_ms.len(),
            "within_10": acc.within_10, "within_5": acc.within_5,
            "median_abs_error": quantile_sorted(&errors, 0.5),
            "max_abs_error": errors.last().copied(),
            "kendall_tau": acc.kendall_tau,
        })
    }

    /// Hypervolume of this front against another run's, both normalised by their union's box.
    pub fn compare(&self, other: &Path) -> anyhow::Result<Value> {
        let names = self.objective_names();
        let text = std::fs::read_to_string(other)
            .with_context(|| format!("reading --compare {}", other.display()))?;
        let theirs: Value = serde_json::from_str(&text)
            .with_context(|| format!("--compare {}: not JSON", other.display()))?;
        if theirs["schema"] != SCHEMA {
            bail!(
                "--compare {}: not a front.json of `hwnas search` (schema {SCHEMA})",
                other.display()
            );
        }
        let space = self.problem.space.name();
        if theirs["space"] != space {
            bail!(
                "--compare {}: a front of space {} (this search is over {space})",
                other.display(),
                theirs["space"]
            );
        }
        let their_names: Vec<String> = serde_json::from_value(theirs["objectives"].clone())
            .with_context(|| format!("--compare {}: no objectives", other.display()))?;
        if their_names != names {
            bail!(
                "--compare {}: objectives {their_names:?} differ from this search's {names:?}",
                other.display()
            );
        }
        let reference: Vec<Vec<f64>> = theirs["front"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|m| serde_json::from_value(m["minimised"].clone()).ok())
                    .collect()
            })
            .unwrap_or_default();
        let their_archs: std::collections::HashSet<&str> = theirs["front"]
            .as_array()
            .map(|f| f.iter().filter_map(|m| m["arch"].as_str()).collect())
            .unwrap_or_default();
        let ours: Vec<Vec<f64>> = self
            .outcome
            .front
            .iter()
            .map(|i| self.outcome.archive[*i].eval.objectives.clone())
            .collect();
        let found = self
            .outcome
            .front
            .iter()
            .filter(|i| their_archs.contains(self.outcome.archive[**i].info.arch.as_str()))
            .count();
        let Some(norm) = Normalizer::of(ours.iter().chain(&reference)) else {
            bail!("--compare: both fronts are empty");
        };
        let (hv_ours, hv_ref) = (norm.hypervolume(&ours), norm.hypervolume(&reference));
        Ok(json!({
            "reference": other.display().to_string(),
            "hypervolume": hv_ours, "reference_hypervolume": hv_ref,
            "ratio": if hv_ref > 0.0 { hv_ours / hv_ref } else { f64::NAN },
            "reference_front": reference.len(), "found_in_reference_front": found,
        }))
    }

    /// The summary on stdout: counts, the front (or a sample of it), verification, comparison.
    pub fn print(&self, comparison: Option<&Value>, dir: &Path) {
        let ordered = self.ordered();
        let verification = self.verification.map(|v| self.verification_json(v));
        let p = self.problem;
        let o = self.outcome;
        println!(
            "{} architectures evaluated in {:.1} s{}; front: {} architectures",
            o.archive.len(),
            self.seconds,
            o.history.last().map_or(String::new(), |g| format!(
                " over {} generations (hypervolume {:.4})",
                g.index, g.hypervolume
            )),
            o.front.len()
        );
        let closest = o
            .archive
            .iter()
            .min_by(|a, b| a.eval.violation.total_cmp(&b.eval.violation));
        if o.front.is_empty()
            && let Some(best) = closest
        {
            println!(
                "no architecture met the constraints; the closest ({:.1}% over its bounds): {}",
                100.0 * best.eval.violation,
                best.info.arch
            );
        }
        if p.accuracy.is_proxy() {
            println!("note: accuracy is a PROXY (MFLOPs); give --accuracy for a real one");
        }
        let mut header = format!(
            "{:>10}",
            if p.accuracy.is_proxy() {
                "proxy"
            } else {
                "accuracy"
            }
        );
        for src in &p.latency {
            let _ = write!(header, " {:>12}", format!("{} ms", src.name()));
        }
        if let Some(v) = self.verification {
            let _ = write!(header, " {:>12}", format!("{} meas.", v.device));
        }
        let _ = write!(
            header,
            " {:>8} {:>8} {:>8}  arch",
            "MFLOPs", "Mparams", "mem MB"
        );
        if !ordered.is_empty() {
            println!("{header}");
        }
        // A long front: an even sample of it (the members measured, when verified); the files
        // have all.
        let measured: Vec<&(usize, usize)> = ordered
            .iter()
            .filter(|(pos, _)| {
                self.verification
                    .is_some_and(|v| v.measured_ms[*pos].is_some())
            })
            .collect();
        let pool: Vec<&(usize, usize)> = if measured.is_empty() {
            ordered.iter().collect()
        } else {
            measured
        };
        let step = pool.len().div_ceil(20).max(1);
        let rows: Vec<&(usize, usize)> = pool.into_iter().step_by(step).collect();
        for (pos, i) in &rows {
            let m = &o.archive[*i].info;
            let mut line = format!("{:>10.3}", m.accuracy);
            for ms in &m.latency_ms {
                let _ = write!(line, " {ms:>12.3}");
            }
            if let Some(v) = self.verification {
                match v.measured_ms[*pos] {
                    Some(ms) => _ = write!(line, " {ms:>12.3}"),
                    None => _ = write!(line, " {:>12}", "-"),
                }
            }
            let _ = write!(
                line,
                " {:>8.1} {:>8.2} {:>8.2}  {}",
                m.mflops, m.mparams, m.memory_mb, m.arch
            );
            println!("{line}");
        }
        if rows.len() < ordered.len() {
            println!(
                "({} of {} shown; every one is in front.csv)",
                rows.len(),
                ordered.len()
            );
        }
        if let Some(v) = verification {
            println!(
                "verify on `{}`: {} of {} front networks measured, {:.0}% within ±10% of the prediction (median |error| {:.1}%, max {:.1}%, Kendall tau {:.3})",
                v["device"].as_str().unwrap_or(""),
                v["networks"],
                v["front"],
                100.0 * v["within_10"].as_f64().unwrap_or(f64::NAN),
                100.0 * v["median_abs_error"].as_f64().unwrap_or(f64::NAN),
                100.0 * v["max_abs_error"].as_f64().unwrap_or(f64::NAN),
                v["kendall_tau"].as_f64().unwrap_or(f64::NAN),
            );
        }
        if let Some(c) = comparison {
            println!(
                "hypervolume vs {}: {:.2}% ({:.4} vs {:.4}); {} of this front's architectures are on that front ({} there)",
                c["reference"].as_str().unwrap_or(""),
                100.0 * c["ratio"].as_f64().unwrap_or(f64::NAN),
                c["hypervolume"].as_f64().unwrap_or(f64::NAN),
                c["reference_hypervolume"].as_f64().unwrap_or(f64::NAN),
                c["found_in_reference_front"],
                c["reference_front"],
            );
        }
        println!(
            "wrote {0}/front.csv, {0}/front.json, {0}/front.svg, {0}/history.csv",
            dir.display()
        );
    }
}
