//! The state every strategy shares: the problem, every evaluation so far (a genome is never
//! evaluated twice, so a budget counts distinct architectures), and the feasible
//! non-dominated set of them, kept up to date as evaluations arrive.

use hwnas_core::rng::SplitMix64;
use rustc_hash::FxHashMap;

use crate::hypervolume::Normalizer;
use crate::problem::{
    EvaluateError, Evaluation, Generation, Individual, Outcome, Problem, pareto_dominates,
};
use crate::space::Gene;
use crate::variation::random_genome;

/// The feasible non-dominated set of an archive, maintained as evaluations arrive.
#[derive(Debug, Default)]
struct FrontKeeper {
    members: Vec<usize>,
}

impl FrontKeeper {
    fn offer<I>(&mut self, archive: &[Individual<I>], i: usize) {
        let e = &archive[i].eval;
        if !e.feasible() {
            return;
        }
        let same_or_better = |j: &usize| {
            let o = &archive[*j].eval.objectives;
            o == &e.objectives || pareto_dominates(o, &e.objectives)
        };
        if self.members.iter().any(same_or_better) {
            return;
        }
        self.members
            .retain(|j| !pareto_dominates(&e.objectives, &archive[*j].eval.objectives));
        self.members.push(i);
    }
}

/// A run's first generation: its members, the hypervolume scale, the history so far.
pub(crate) type Start = (Vec<usize>, Normalizer, Vec<Generation>);

pub(crate) struct Archive<'a, P: Problem> {
    problem: &'a mut P,
    pub genes: Vec<Gene>,
    pub individuals: Vec<Individual<P::Info>>,
    /// Fx, not SipHash: genomes are short byte strings looked up for every child bred, and
    /// nothing here needs protection from chosen collisions.
    seen: FxHashMap<Vec<u8>, usize>,
    front: FrontKeeper,
}

impl<'a, P: Problem> Archive<'a, P> {
    pub fn new(problem: &'a mut P) -> Self {
        let genes = problem.genes();
        Archive {
            problem,
            genes,
            individuals: Vec::new(),
            seen: FxHashMap::default(),
            front: FrontKeeper::default(),
        }
    }

    /// The archive index of a genome evaluated before.
    pub fn index_of(&self, genome: &[u8]) -> Option<usize> {
        self.seen.get(genome).copied()
    }

    /// The feasible non-dominated set so far (archive indices, in arrival order).
    pub fn front(&self) -> &[usize] {
        &self.front.members
    }

    pub fn len(&self) -> usize {
        self.individuals.len()
    }

    pub fn eval(&self, i: usize) -> &Evaluation {
        &self.individuals[i].eval
    }

    /// Evaluates genomes not seen before (the caller makes sure); returns their indices.
    pub fn evaluate(&mut self, genomes: Vec<Vec<u8>>) -> Result<Vec<usize>, EvaluateError> {
        let results = self.problem.evaluate(&genomes)?;
        if results.len() != genomes.len() {
            return Err(EvaluateError(format!(
                "evaluator returned {} results for {} genomes",
                results.len(),
                genomes.len()
            )));
        }
        let mut indices = Vec::with_capacity(genomes.len());
        for (genome, (eval, info)) in genomes.into_iter().zip(results) {
            let i = self.individuals.len();
            self.seen.insert(genome.clone(), i);
            self.individuals.push(Individual { genome, eval, info });
            self.front.offer(&self.individuals, i);
            indices.push(i);
        }
        Ok(indices)
    }

    /// Up to `size` distinct random genomes, evaluated: the usual first generation.
    pub fn random_population(
        &mut self,
        size: usize,
        rng: &mut SplitMix64,
    ) -> Result<Vec<usize>, EvaluateError> {
        let total = crate::space::genome_count(&self.genes);
        let want = (size as f64).min(total) as usize;
        let mut genomes: Vec<Vec<u8>> = Vec::with_capacity(want);
        let mut tries = 0;
        while genomes.len() < want && tries < 1000 * want.max(1) {
            tries += 1;
            let g = random_genome(&self.genes, rng);
            if self.index_of(&g).is_none() && !genomes.contains(&g) {
                genomes.push(g);
            }
        }
        self.evaluate(genomes)
    }

    /// The usual start of a run: `size` random genomes evaluated, the hypervolume scale taken
    /// from them, and generation 0 reported. `None` when nothing could be evaluated.
    pub fn first_generation(
        &mut self,
        size: usize,
        rng: &mut SplitMix64,
        on_generation: &mut impl FnMut(&Generation),
    ) -> Result<Option<Start>, EvaluateError> {
        let first = self.random_population(size, rng)?;
        let Some(normalizer) = self.normalizer(&first) else {
            return Ok(None);
        };
        let g = self.generation(0, &normalizer);
        on_generation(&g);
        Ok(Some((first, normalizer, vec![g])))
    }

    /// The hypervolume scale of a run: the bounding box of its first evaluations (the
    /// feasible ones, if any).
    pub fn normalizer(&self, first: &[usize]) -> Option<Normalizer> {
        let evals = || first.iter().map(|i| &self.individuals[*i].eval);
        Normalizer::of(evals().filter(|e| e.feasible()).map(|e| &e.objectives))
            .or_else(|| Normalizer::of(evals().map(|e| &e.objectives)))
    }

    pub fn generation(&self, index: usize, normalizer: &Normalizer) -> Generation {
        let points: Vec<Vec<f64>> = self
            .front
            .members
            .iter()
            .map(|i| self.individuals[*i].eval.objectives.clone())
            .collect();
        Generation {
            index,
            evaluations: self.individuals.len(),
            front_size: points.len(),
            hypervolume: normalizer.hypervolume(&points),
            screened: 0,
        }
    }

    pub fn outcome(self, history: Vec<Generation>) -> Outcome<P::Info> {
        let mut front = self.front.members;
        front.sort_unstable();
        Outcome {
            archive: self.individuals,
            front,
            history,
        }
    }
}
