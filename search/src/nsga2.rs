//! NSGA-II (Deb et al., 2002) over categorical genomes, with Deb's constraint domination.
//!
//! Each generation: binary tournaments on (rank, crowding distance) pick parents; uniform
//! crossover and per-gene mutation make children no generation has evaluated before; parents
//! and children are sorted into non-dominated fronts (`pareto.rs`) and the best `population`
//! survive, the last front thinned by crowding distance. A feasible solution beats an
//! infeasible one, two infeasible ones compare by total violation. Two additions, each
//! switched off in `Config` for plain NSGA-II:
//! - screening (`screening.rs`): the generation breeds many candidates, a surrogate fitted on
//!   every evaluation so far ranks them, and the share of children it picks is the share it
//!   has earned by out-ranking plain children;
//! - on a space small enough that the front's one-gene neighbourhood fits in the remaining
//!   budget, children are those neighbours instead (`local_search.rs`), not screened.

use hwnas_core::rng::SplitMix64;
use rustc_hash::FxHashSet;

use crate::archive::Archive;
use crate::local_search::Neighbourhoods;
use crate::pareto::{crowding_distance, fronts};
use crate::problem::{EvaluateError, Evaluation, Generation, Individual, Outcome, Problem};
use crate::screening::{CANDIDATES_PER_CHILD, Screening};
use crate::space::Gene;
use crate::strategy::Config;
use crate::variation::{mutate, uniform_crossover};

/// Runs NSGA-II until `max_evaluations` distinct genomes are evaluated or no unseen child can
/// be found; `on_generation` sees the progress after the initial population and every
/// generation.
pub fn run<P: Problem>(
    problem: &mut P,
    cfg: &Config,
    mut on_generation: impl FnMut(&Generation),
) -> Result<Outcome<P::Info>, EvaluateError> {
    let mut rng = SplitMix64::new(cfg.seed);
    let mut run = Archive::new(problem);
    let size = cfg.population.max(2);
    let Some((mut population, normalizer, mut history)) =
        run.first_generation(size.min(cfg.max_evaluations), &mut rng, &mut on_generation)?
    else {
        return Ok(run.outcome(Vec::new()));
    };

    let objectives = run.eval(population[0]).objectives.len();
    let mut screening = cfg
        .screening
        .then(|| Screening::new(&run.genes, objectives));
    let (mut rank, mut crowding) = rank_and_crowd(&run.individuals, &population);
    let mut hoods = Neighbourhoods::default();
    let mut index = 0;
    while run.len() < cfg.max_evaluations {
        index += 1;
        let left = cfg.max_evaluations - run.len();
        let want = size.min(left);
        let front = run.front().len();
        let local = cfg.local_search && front > 0 && hoods.fit(run.front(), &run.genes, left);
        // No elites: every child comes from crossover and mutation.
        let elites = if local {
            elites(run.front(), &population, &rank, &crowding)
        } else {
            Vec::new()
        };
        // Screening breeds many candidates and evaluates the best `want`; local search's
        // neighbours are evaluated as they come.
        let screen = screening.as_ref().filter(|_| !local).is_some();
        let breed = if screen {
            want * CANDIDATES_PER_CHILD
        } else {
            want
        };
        let parents = Parents {
            population: &population,
            rank: &rank,
            crowding: &crowding,
        };
        let mut children = Vec::with_capacity(breed);
        let mut fresh = FxHashSet::default();
        let mut tries = 0;
        // Bounded by the plain search's tries: a small space runs out of unseen children.
        while children.len() < breed && tries < 100 * want {
            tries += 1;
            let unseen = |c: &[u8]| run.index_of(c).is_none() && !fresh.contains(c);
            let genome = |i: usize| run.individuals[i].genome.as_slice();
            let neighbour = hoods.child(&elites, front, genome, &run.genes, &mut rng, unseen);
            let child = neighbour
                .unwrap_or_else(|| parents.child(&run.individuals, &run.genes, cfg, &mut rng));
            if run.index_of(&child).is_none() && fresh.insert(child.clone()) {
                children.push(child);
            }
        }
        let mut screened = vec![false; children.len()];
        if let Some(s) = screening.as_mut().filter(|_| screen) {
            (children, screened) = s.pick(children, want, &run.individuals, &population);
        }
        if children.is_empty() {
            break; // The neighbourhood of the population is exhausted.
        }
        let offspring = run.evaluate(children)?;
        population.extend(&offspring);
        let merged = population.len();
        let (next, front_of) = survivors(&run.individuals, population, size);
        if let Some(s) = screening.as_mut().filter(|_| screen) {
            s.credit(&screened, &front_of[merged - offspring.len()..]);
        }
        population = next;
        (rank, crowding) = rank_and_crowd(&run.individuals, &population);
        let mut g = run.generation(index, &normalizer);
        g.screened = screened.iter().filter(|s| **s).count();
        on_generation(&g);
        history.push(g);
    }
    Ok(run.outcome(history))
}

/// The members whose neighbourhoods local search walks: the archive's front (every feasible
/// non-dominated evaluation so far), then the population by rank and crowding.
fn elites(front: &[usize], population: &[usize], rank: &[usize], crowding: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..population.len()).collect();
    order.sort_by(|a, b| {
        rank[*a]
            .cmp(&rank[*b])
            .then(crowding[*b].total_cmp(&crowding[*a]))
    });
    front
        .iter()
        .copied()
        .chain(order.into_iter().map(|p| population[p]))
        .collect()
}

/// The population as parents: members (archive indices) with their rank and crowding.
struct Parents<'a> {
    population: &'a [usize],
    rank: &'a [usize],
    crowding: &'a [f64],
}

impl Parents<'_> {
    /// Binary tournament: lower rank wins, then larger crowding distance, then the first
    /// drawn. Returns an archive index.
    fn tournament(&self, rng: &mut SplitMix64) -> usize {
        let a = rng.below(self.population.len());
        let b = rng.below(self.population.len());
        let (rank, crowding) = (self.rank, self.crowding);
        let a_wins = rank[a] < rank[b] || (rank[a] == rank[b] && crowding[a] >= crowding[b]);
        self.population[if a_wins { a } else { b }]
    }

    /// Two tournaments' winners, crossed over (with probability `cfg.crossover`) and mutated
    /// (each gene with probability `cfg.mutation`, by default one over the number of genes).
    fn child<I>(
        &self,
        archive: &[Individual<I>],
        genes: &[Gene],
        cfg: &Config,
        rng: &mut SplitMix64,
    ) -> Vec<u8> {
        let a = self.tournament(rng);
        let b = self.tournament(rng);
        let mut child = archive[a].genome.clone();
        if rng.next_f64() < cfg.crossover {
            uniform_crossover(&mut child, &archive[b].genome, rng);
        }
        let rate = cfg.mutation.unwrap_or(1.0 / genes.len().max(1) as f64);
        mutate(&mut child, genes, rate, rng);
        child
    }
}

/// Rank and crowding distance of each population member (by position).
fn rank_and_crowd<I>(archive: &[Individual<I>], population: &[usize]) -> (Vec<usize>, Vec<f64>) {
    let evals: Vec<&Evaluation> = population.iter().map(|i| &archive[*i].eval).collect();
    let mut rank = vec![0; population.len()];
    let mut crowd = vec![0.0; population.len()];
    for (r, front) in fronts(&evals).iter().enumerate() {
        let objs: Vec<&[f64]> = front
            .iter()
            .map(|p| evals[*p].objectives.as_slice())
            .collect();
        for (p, d) in front.iter().zip(crowding_distance(&objs)) {
            rank[*p] = r;
            crowd[*p] = d;
        }
    }
    (rank, crowd)
}

/// The best `size` of `candidates` by front, the last front cut by crowding distance; and the
/// front (0 best) of each candidate, by position.
fn survivors<I>(
    archive: &[Individual<I>],
    candidates: Vec<usize>,
    size: usize,
) -> (Vec<usize>, Vec<usize>) {
    let evals: Vec<&Evaluation> = candidates.iter().map(|i| &archive[*i].eval).collect();
    let sorted = fronts(&evals);
    let mut front_of = vec![0; candidates.len()];
    for (r, front) in sorted.iter().enumerate() {
        for p in front {
            front_of[*p] = r;
        }
    }
    let mut next = Vec::with_capacity(size);
    for front in sorted {
        if next.len() + front.len() <= size {
            next.extend(front.iter().map(|p| candidates[*p]));
            continue;
        }
        let objs: Vec<&[f64]> = front
            .iter()
            .map(|p| evals[*p].objectives.as_slice())
            .collect();
        let distance = crowding_distance(&objs);
        let mut order: Vec<usize> = (0..front.len()).collect();
        order.sort_by(|a, b| distance[*b].total_cmp(&distance[*a]));
        next.extend(
            order
                .into_iter()
                .take(size - next.len())
                .map(|w| candidates[front[w]]),
        );
        break;
    }
    (next, front_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervolume::hypervolume;
    use crate::space::Gene;
    use crate::strategy::exhaustive;
    use std::collections::HashSet;

    const LEVELS: u8 = 51;

    /// ZDT1/ZDT2 (Zitzler, Deb & Thiele 2000) on a grid of 51 values per variable. The
    /// Pareto front is g = 1 (every variable but the first at 0): f2 = 1 - sqrt(f1) for ZDT1,
    /// f2 = 1 - f1^2 for ZDT2, and grid points lie on it exactly.
    struct Zdt {
        vars: usize,
        concave: bool,
        /// Constraint f1 >= this.
        min_f1: f64,
    }

    impl Zdt {
        fn objectives(&self, genome: &[u8]) -> Vec<f64> {
            let x: Vec<f64> = genome
                .iter()
                .map(|v| *v as f64 / (LEVELS - 1) as f64)
                .collect();
            let f1 = x[0];
            let g = 1.0 + 9.0 * x[1..].iter().sum::<f64>() / (self.vars - 1) as f64;
            let r = f1 / g;
            let h = if self.concave {
                1.0 - r * r
            } else {
                1.0 - r.sqrt()
            };
            vec![f1, g * h]
        }
    }

    impl Problem for Zdt {
        type Info = ();
        fn genes(&self) -> Vec<Gene> {
            vec![
                Gene {
                    levels: LEVELS,
                    ordered: true
                };
                self.vars
            ]
        }
        fn evaluate(
            &mut self,
            genomes: &[Vec<u8>],
        ) -> Result<Vec<(Evaluation, ())>, EvaluateError> {
            Ok(genomes
                .iter()
                .map(|g| {
                    let objectives = self.objectives(g);
                    let violation = (self.min_f1 - objectives[0]).max(0.0);
                    (
                        Evaluation {
                            objectives,
                            violation,
                        },
                        (),
                    )
                })
                .collect())
        }
    }

    fn solve(problem: &mut Zdt, seed: u64) -> (Outcome<()>, Vec<Vec<f64>>) {
        let cfg = Config {
            population: 60,
            max_evaluations: 8000,
            seed,
            ..Config::default()
        };
        let out = run(problem, &cfg, |_| {}).unwrap();
        let front = out
            .front
            .iter()
            .map(|i| out.archive[*i].eval.objectives.clone())
            .collect();
        (out, front)
    }

    #[test]
    fn finds_the_closed_form_fronts_of_zdt1_and_zdt2() {
        // Hypervolume under (1.1, 1.1) of the continuous fronts: 1.21 - ∫(1 - √x) = 1.21 - 1/3,
        // and 1.21 - ∫(1 - x²) = 1.21 - 2/3.
        for (concave, exact) in [(false, 1.21 - 1.0 / 3.0), (true, 1.21 - 2.0 / 3.0)] {
            for seed in 1..=3 {
                let mut zdt = Zdt {
                    vars: 6,
                    concave,
                    min_f1: 0.0,
                };
                let (out, front) = solve(&mut zdt, seed);
                let hv = hypervolume(&front, &[1.1, 1.1]);
                assert!(
                    hv > 0.98 * exact,
                    "concave {concave} seed {seed}: {hv} vs {exact}"
                );
                // On the front: every variable but the first at zero for most members.
                let on_front = out
                    .front
                    .iter()
                    .filter(|i| out.archive[**i].genome[1..].iter().all(|v| *v == 0))
                    .count();
                assert!(
                    on_front * 10 >= out.front.len() * 9,
                    "{on_front}/{}",
                    out.front.len()
                );
                assert!(out.archive.len() <= 8000);
                let distinct: HashSet<&Vec<u8>> = out.archive.iter().map(|i| &i.genome).collect();
                assert_eq!(
                    distinct.len(),
                    out.archive.len(),
                    "a genome evaluated twice"
                );
            }
        }
    }

    #[test]
    fn constraints_are_hard_and_runs_are_reproducible() {
        let mut zdt = Zdt {
            vars: 6,
            concave: false,
            min_f1: 0.5,
        };
        let (out, front) = solve(&mut zdt, 7);
        assert!(!front.is_empty());
        assert!(front.iter().all(|f| f[0] >= 0.5), "{front:?}");
        // The constrained front, f1 in [0.5, 1] on 1 - √f1, under (1.1, 1.1):
        // ∫[0.5, 1] (0.1 + √x) dx + 0.1 × 1.1.
        let exact = 0.5 * 0.1 + 2.0 / 3.0 * (1.0 - 0.5f64.powf(1.5)) + 0.1 * 1.1;
        let reference = [1.1, 1.1];
        let hv = hypervolume(&front, &reference);
        assert!(hv > 0.97 * exact && hv <= exact + 1e-9, "{hv} vs {exact}");
        let (again, _) = solve(&mut zdt, 7);
        let genomes = |o: &Outcome<()>| {
            o.archive
                .iter()
                .map(|i| i.genome.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(genomes(&out), genomes(&again));
        assert_eq!(out.history, again.history);
        // Hypervolume never decreases: the archive front only improves.
        assert!(
            out.history
                .windows(2)
                .all(|w| w[1].hypervolume >= w[0].hypervolume)
        );
    }

    #[test]
    fn exhaustive_enumerates_every_genome_once() {
        let mut zdt = Zdt {
            vars: 2,
            concave: false,
            min_f1: 0.0,
        };
        let out = exhaustive(&mut zdt, 100, |_| {}).unwrap();
        assert_eq!(out.archive.len(), 51 * 51);
        // The true front: x2 = 0, all 51 values of x1.
        assert_eq!(out.front.len(), 51);
    }
}
