//! What a search leaves behind: the front as CSV, JSON and SVG (`front.*`), the per-generation
//! history, the front re-measured on a device ([`Verification`], `verify.rs`) and the
//! hypervolume against another run's front (`compare.rs`).
//!
//! A [`Report`] is built once from a finished search ([`Outcome`]) and its [`ArchProblem`]; it
//! predicts the front's latency intervals once, then writes every file from them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hwnas_core::files::write_atomic;
use hwnas_plot::Axes;
use serde_json::{Value, json};

use crate::objective::{ArchProblem, Metric, Metrics};
use crate::problem::Outcome;

mod compare;
mod verify;

pub use verify::{Verification, members_to_verify, verification_source};

/// The schema of `front.json`.
pub const SCHEMA: &str = "hwnas-search/1";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing {}: {message}", path.display())]
    Write { path: PathBuf, message: String },
    /// `--compare` names a file that is not a comparable front; the message names it.
    #[error("{0}")]
    Compare(String),
    /// `--verify` cannot tell which latency source the device measures.
    #[error("{0}")]
    Verify(String),
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
    pub intervals: Vec<Vec<Option<(f64, f64)>>>,
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
    pub fn ordered(&self) -> Vec<(usize, usize)> {
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
        let mut entry = json!({
            "arch": m.arch,
            "accuracy": m.accuracy,
            "latency": latency,
            "mflops": m.mflops, "mparams": m.mparams, "peak_memory_mb": m.memory_mb,
            "minimised": ind.eval.objectives,
        });
        if self.problem.uses_energy() {
            let energy: serde_json::Map<String, serde_json::Value> = self
                .energy_sources()
                .map(|s| {
                    (
                        self.problem.latency[s].name().to_string(),
                        json!(m.energy_mj[s]),
                    )
                })
                .collect();
            entry["energy_mj"] = energy.into();
            if let Some(v) = self.verification.filter(|v| !v.measured_mj.is_empty()) {
                entry["measured_energy_mj"] = json!({ v.device.clone(): v.measured_mj[pos] });
            }
        }
        entry
    }

    fn objective_names(&self) -> Vec<String> {
        let p = self.problem;
        p.objectives.iter().map(|m| p.metric_name(*m)).collect()
    }

    /// The front's members as `front.json` lists them, in [`Report::ordered`] order.
    pub fn front_json(&self) -> Vec<Value> {
        self.ordered()
            .iter()
            .map(|(pos, i)| self.member_json(*pos, *i))
            .collect()
    }

    /// Writes front.json, front.csv, history.csv and front.svg into `dir`.
    pub fn save(&self, dir: &Path, comparison: Option<&Value>) -> Result<(), ReportError> {
        let p = self.problem;
        let names = self.objective_names();
        let ordered = self.ordered();
        let front = self.front_json();
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
            "history": self.outcome.history.iter().map(|g| json!({"generation": g.index, "evaluations": g.evaluations, "front": g.front_size, "hypervolume": g.hypervolume, "screened": g.screened})).collect::<Vec<_>>(),
            "front": front,
            "verification": verification,
            "comparison": comparison,
        });
        let write = |name: &str, text: String| -> Result<(), ReportError> {
            let path = dir.join(name);
            write_atomic(&path, text).map_err(|e| ReportError::Write {
                path: path.clone(),
                message: e.to_string(),
            })
        };
        let json = serde_json::to_string_pretty(&report).map_err(|e| ReportError::Write {
            path: dir.join("front.json"),
            message: e.to_string(),
        })?;
        write("front.json", json)?;
        write("front.csv", self.csv(&ordered))?;
        write("history.csv", self.history_csv())?;
        let svg = self.svg().map_err(|e| ReportError::Write {
            path: dir.join("front.svg"),
            message: e.to_string(),
        })?;
        write("front.svg", svg)
    }

    /// The sources whose energy the search predicted (none unless it optimises or bounds it).
    pub fn energy_sources(&self) -> impl Iterator<Item = usize> + '_ {
        let p = self.problem;
        (0..p.latency.len()).filter(move |s| p.uses_energy() && p.latency[*s].has_energy())
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
        for s in self.energy_sources() {
            header.push(format!("energy_{}_mj", p.latency[s].name()));
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
            row.extend(self.energy_sources().map(|s| num(Some(m.energy_mj[s]))));
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
        let mut out = String::from("generation,evaluations,front,hypervolume,screened\n");
        for g in &self.outcome.history {
            let _ = writeln!(
                out,
                "{},{},{},{:.6},{}",
                g.index, g.evaluations, g.front_size, g.hypervolume, g.screened
            );
        }
        out
    }

    /// The front over everything evaluated; metrics other than accuracy on log axes.
    fn svg(&self) -> Result<String, hwnas_plot::PlotError> {
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
        hwnas_plot::pareto(
            &Axes {
                title: &title,
                x: &xn,
                y: &yn,
                x_log: x != Metric::Accuracy,
                y_log: y != Metric::Accuracy,
            },
            &all,
            &front,
        )
    }
}
