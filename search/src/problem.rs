//! What a search optimises and what it returns: a [`Problem`] evaluates genomes into
//! [`Evaluation`]s (objectives to minimise, constraint violation); every strategy returns an
//! [`Outcome`], every evaluation it made and the feasible non-dominated set of them.

use crate::space::Gene;

/// What a problem says of one genome: objectives to minimise, and how far it is from meeting
/// the constraints (0 when it meets them all).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub objectives: Vec<f64>,
    pub violation: f64,
}

impl Evaluation {
    pub fn feasible(&self) -> bool {
        self.violation <= 0.0
    }

    /// Deb's constraint domination.
    pub fn dominates(&self, other: &Evaluation) -> bool {
        match (self.feasible(), other.feasible()) {
            (true, false) => true,
            (false, true) => false,
            (false, false) => self.violation < other.violation,
            (true, true) => pareto_dominates(&self.objectives, &other.objectives),
        }
    }
}

/// `a` is no worse in every objective and better in one.
pub fn pareto_dominates(a: &[f64], b: &[f64]) -> bool {
    let mut better = false;
    for (x, y) in a.iter().zip(b) {
        if x > y {
            return false;
        }
        better |= x < y;
    }
    better
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EvaluateError(pub String);

/// What NSGA-II optimises. `Info` is whatever the problem wants kept with each evaluation.
pub trait Problem {
    type Info: Clone;

    fn genes(&self) -> Vec<Gene>;

    /// Evaluate a batch (a whole generation at once, so an external evaluator is called once
    /// per generation).
    fn evaluate(
        &mut self,
        genomes: &[Vec<u8>],
    ) -> Result<Vec<(Evaluation, Self::Info)>, EvaluateError>;
}

#[derive(Debug, Clone)]
pub struct Individual<I> {
    pub genome: Vec<u8>,
    pub eval: Evaluation,
    pub info: I,
}

/// Progress after one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub index: usize,
    pub evaluations: usize,
    /// Feasible non-dominated evaluations so far.
    pub front_size: usize,
    /// Hypervolume of that front, normalised by the initial population's bounding box
    /// (reference at 1.1): comparable across the generations of one run.
    pub hypervolume: f64,
    /// Children of this generation picked by NSGA-II's surrogate screening (0 for every other
    /// strategy and generation).
    pub screened: usize,
}

#[derive(Debug, Clone)]
pub struct Outcome<I> {
    /// Every evaluated genome, in evaluation order.
    pub archive: Vec<Individual<I>>,
    /// Indices into `archive` of the feasible non-dominated set, one per distinct objective
    /// vector.
    pub front: Vec<usize>,
    pub history: Vec<Generation>,
}
