//! A search driven from outside, one batch at a time: [`AskTell::ask`] gives the architectures
//! whose accuracies the search needs next, [`AskTell::tell`] answers them, until
//! [`AskTell::done`]. The Python `Search` is this.
//!
//! Underneath, each `ask` runs the strategy from its seed, the accuracies told so far answered
//! from the [`Journal`], until it reaches a batch never told ([`crate::journal`]): strategies
//! need no change to be driven this way, and a search resumed from its state file takes the
//! same path as one never stopped. What was evaluated is kept between asks, so a replay costs
//! the strategy's own work (milliseconds), nothing next to a training run per batch.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use serde_json::Value;

use crate::accuracy::AccuracySource;
use crate::journal::{ASKED, Journal, JournalError};
use crate::objective::{ArchProblem, Constraint, LatencySource, Metric, Metrics};
use crate::problem::{EvaluateError, Evaluation, Outcome, Problem};
use crate::report::{Report, ReportError};
use crate::space::{Gene, SearchSpace};
use crate::strategy::{Config, Fitness, Strategy};

/// What a search optimises, owned (an [`ArchProblem`] borrows its space).
pub struct Setup {
    pub space: Box<dyn SearchSpace>,
    /// `None`: every accuracy is asked for.
    pub accuracy: Option<AccuracySource>,
    pub latency: Vec<LatencySource>,
    pub objectives: Vec<Metric>,
    pub constraints: Vec<Constraint>,
    /// A strategy without a fitness (NSGA-II or random search).
    pub strategy: Strategy,
    pub config: Config,
}

pub struct AskTell {
    setup: Setup,
    journal: Journal,
    outcome: Option<Outcome<Metrics>>,
    /// Every evaluation made, kept across asks: a replay is then the strategy's own work.
    memo: HashMap<Vec<u8>, (Evaluation, Metrics)>,
}

/// The problem of `setup`, holding the journal while a strategy runs.
fn problem(setup: &Setup, journal: Journal) -> ArchProblem<'_> {
    ArchProblem {
        space: setup.space.as_ref(),
        accuracy: setup.accuracy.clone().unwrap_or(AccuracySource::Told),
        latency: setup.latency.clone(),
        objectives: setup.objectives.clone(),
        constraints: setup.constraints.clone(),
        journal: Some(Mutex::new(journal)),
    }
}

/// A problem answering the genomes it evaluated before from `seen` (evaluations are
/// deterministic, so this changes no result).
struct Memo<'m, 'p> {
    problem: &'m mut ArchProblem<'p>,
    seen: &'m mut HashMap<Vec<u8>, (Evaluation, Metrics)>,
}

impl Problem for Memo<'_, '_> {
    type Info = Metrics;

    fn genes(&self) -> Vec<Gene> {
        self.problem.genes()
    }

    fn evaluate(
        &mut self,
        genomes: &[Vec<u8>],
    ) -> Result<Vec<(Evaluation, Metrics)>, EvaluateError> {
        let missing: Vec<Vec<u8>> = genomes
            .iter()
            .filter(|g| !self.seen.contains_key(*g))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let fresh = self.problem.evaluate(&missing)?;
            self.seen.extend(missing.into_iter().zip(fresh));
        }
        Ok(genomes.iter().map(|g| self.seen[g].clone()).collect())
    }
}

/// The single-objective strategies' fitness is the CLI's MnasNet reward; driven searches run
/// the ones that need none.
struct NoFitness;

impl Fitness for NoFitness {
    fn value(&self, _: &Evaluation) -> f64 {
        0.0
    }
}

impl AskTell {
    /// A search of `setup`, its accuracies recorded in `journal` (loaded from a state file to
    /// resume one). Without an accuracy source the journal is put in ask mode.
    pub fn new(setup: Setup, journal: Journal) -> Result<AskTell, EvaluateError> {
        if setup.strategy.needs_fitness() {
            return Err(EvaluateError(format!(
                "strategy `{}` maximises the CLI's reward; drive nsga2 or random",
                setup.strategy.name()
            )));
        }
        let journal = if setup.accuracy.is_none() {
            journal.asking()
        } else {
            journal
        };
        Ok(AskTell {
            setup,
            journal,
            outcome: None,
            memo: HashMap::new(),
        })
    }

    /// The architectures to evaluate next (canonical encodings); empty when the search is
    /// done. Asking again before telling gives the same batch.
    pub fn ask(&mut self) -> Result<Vec<String>, EvaluateError> {
        if !self.journal.pending().is_empty() {
            return Ok(self.journal.pending().to_vec());
        }
        if self.outcome.is_some() {
            return Ok(Vec::new());
        }
        let (strategy, config) = (self.setup.strategy, self.setup.config.clone());
        let mut problem = problem(&self.setup, std::mem::take(&mut self.journal));
        let mut memo = Memo {
            problem: &mut problem,
            seen: &mut self.memo,
        };
        let result = strategy.run(&mut memo, &config, &NoFitness, |_| {});
        let result = result.and_then(|mut outcome| {
            for i in outcome.front.clone() {
                problem.complete(&mut outcome.archive[i].info)?;
            }
            Ok(outcome)
        });
        let journal = problem
            .journal
            .take()
            .expect("the problem holds the journal");
        self.journal = journal.into_inner().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(outcome) => {
                self.outcome = Some(outcome);
                Ok(Vec::new())
            }
            Err(e) if e.0 == ASKED => Ok(self.journal.pending().to_vec()),
            Err(e) => Err(e),
        }
    }

    /// The accuracies of the architectures the last [`AskTell::ask`] gave, in any order; the
    /// state file (where there is one) is saved before this returns.
    pub fn tell(&mut self, archs: &[String], accuracies: &[f64]) -> Result<(), JournalError> {
        self.journal.tell(archs, accuracies)
    }

    /// Whether the search has finished (asks nothing more).
    pub fn done(&mut self) -> Result<bool, EvaluateError> {
        Ok(self.ask()?.is_empty())
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn outcome(&self) -> Option<&Outcome<Metrics>> {
        self.outcome.as_ref()
    }

    /// The front as `front.json` lists it; `None` until the search is done.
    pub fn front_json(&mut self) -> Option<Vec<Value>> {
        self.with_report(|r| r.front_json())
    }

    /// Writes the CLI's files (front.csv, front.json, front.svg, history.csv) into `dir`.
    pub fn save(&mut self, dir: &Path) -> Option<Result<(), ReportError>> {
        self.with_report(|r| r.save(dir, None))
    }

    fn with_report<R>(&mut self, f: impl FnOnce(&Report) -> R) -> Option<R> {
        let outcome = self.outcome.take()?;
        let (seed, strategy) = (self.setup.config.seed, self.setup.strategy.name());
        let problem = problem(&self.setup, std::mem::take(&mut self.journal));
        let answer = f(&Report::new(&problem, &outcome, seed, strategy, false, 0.0));
        let journal = problem.journal.expect("the problem holds the journal");
        self.journal = journal.into_inner().unwrap_or_else(|p| p.into_inner());
        self.outcome = Some(outcome);
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch_table::temp_file;
    use crate::nsga2;
    use crate::space::nb201::Nb201;

    fn setup(accuracy: Option<AccuracySource>) -> Setup {
        Setup {
            space: Box::new(Nb201),
            accuracy,
            latency: Vec::new(),
            objectives: vec![Metric::Accuracy, Metric::Mflops],
            constraints: Vec::new(),
            strategy: Strategy::Nsga2,
            config: Config {
                population: 20,
                max_evaluations: 200,
                seed: 5,
                ..Config::default()
            },
        }
    }

    /// A made-up accuracy that orders cells differently from their FLOPs.
    fn accuracy(arch: &str) -> f64 {
        arch.bytes()
            .enumerate()
            .map(|(i, b)| ((i * 7 + b as usize) % 13) as f64)
            .sum()
    }

    #[test]
    fn asked_and_told_it_finds_the_front_a_direct_run_finds_and_resumes_from_its_state() {
        let rows: String = (0..15_625u32)
            .map(|i| {
                let genome: Vec<u8> = (0..6).map(|d| (i / 5u32.pow(d) % 5) as u8).collect();
                let a = Nb201.decode(&genome);
                format!("\"{a}\",{}\n", accuracy(&a))
            })
            .collect();
        let table = temp_file(&format!("arch,accuracy\n{rows}"));
        let spec = format!("table:{}", table.path().display());
        let source = AccuracySource::parse(&spec, &Nb201, 1).unwrap();
        let direct = {
            let s = setup(Some(source));
            let mut problem = ArchProblem {
                space: s.space.as_ref(),
                accuracy: s.accuracy.unwrap(),
                latency: vec![],
                objectives: s.objectives,
                constraints: vec![],
                journal: None,
            };
            let out = nsga2::run(&mut problem, &s.config, |_| {}).unwrap();
            let mut front: Vec<String> = out
                .front
                .iter()
                .map(|i| out.archive[*i].info.arch.clone())
                .collect();
            front.sort();
            front
        };

        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let mut search =
            AskTell::new(setup(None), Journal::new(Value::Null, Some(state.clone()))).unwrap();
        let mut batches = 0;
        loop {
            let archs = search.ask().unwrap();
            if archs.is_empty() {
                break;
            }
            assert_eq!(
                search.ask().unwrap(),
                archs,
                "asking again gives the same batch"
            );
            let values: Vec<f64> = archs.iter().map(|a| accuracy(a)).collect();
            search.tell(&archs, &values).unwrap();
            batches += 1;
            if batches == 3 {
                // Stopped here: a new search from the state file goes on.
                search = AskTell::new(setup(None), Journal::load(&state).unwrap()).unwrap();
            }
        }
        assert!(batches >= 10, "{batches} batches");
        assert!(search.done().unwrap());
        assert_eq!(search.outcome().unwrap().archive.len(), 200);
        let mut front: Vec<String> = search
            .front_json()
            .unwrap()
            .iter()
            .map(|m| m["arch"].as_str().unwrap().to_string())
            .collect();
        front.sort();
        assert_eq!(front, direct);
        assert_eq!(Journal::load(&state).unwrap().told().len(), 200);
    }
}
