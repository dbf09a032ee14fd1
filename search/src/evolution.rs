//! Regularized (aging) evolution (Real et al., AAAI 2019, AmoebaNet): a queue of `population`
//! members; a tournament of `tournament` random members picks the fittest as parent, its child
//! differs in exactly one gene, joins the queue, and the oldest member leaves — however fit,
//! which is what keeps the search from settling on one lucky architecture. Children are made
//! and evaluated a tournament's worth at a time (the paper's parallel workers).

use hwnas_core::rng::SplitMix64;

use crate::archive::Archive;
use crate::problem::{EvaluateError, Generation, Outcome, Problem};
use crate::strategy::{Config, Fitness, fitter};
use crate::variation::mutate_one;

pub fn run<P: Problem>(
    problem: &mut P,
    cfg: &Config,
    fitness: &dyn Fitness,
    mut on_generation: impl FnMut(&Generation),
) -> Result<Outcome<P::Info>, EvaluateError> {
    let mut rng = SplitMix64::new(cfg.seed);
    let mut run = Archive::new(problem);
    let size = cfg.population.max(2);
    let sample = cfg.tournament.unwrap_or(size / 4).clamp(2, size);
    // The queue: oldest first.
    let Some((mut queue, normalizer, mut history)) =
        run.first_generation(size.min(cfg.max_evaluations), &mut rng, &mut on_generation)?
    else {
        return Ok(run.outcome(Vec::new()));
    };
    let mut since_report = 0;
    while run.len() < cfg.max_evaluations {
        let want = sample.min(cfg.max_evaluations - run.len());
        let mut children: Vec<Vec<u8>> = Vec::with_capacity(want);
        let mut tries = 0;
        while children.len() < want && tries < 100 * want {
            tries += 1;
            let parent = (0..sample)
                .map(|_| queue[rng.below(queue.len())])
                .max_by(|a, b| fitter(fitness, run.eval(*a), run.eval(*b)))
                .expect("a non-empty tournament");
            let mut child = run.individuals[parent].genome.clone();
            mutate_one(&mut child, &run.genes, &mut rng);
            if run.index_of(&child).is_none() && !children.contains(&child) {
                children.push(child);
            }
        }
        if children.is_empty() {
            break; // Every neighbour of the population has been evaluated.
        }
        for i in run.evaluate(children)? {
            queue.push(i);
            if queue.len() > size {
                queue.remove(0);
            }
        }
        since_report += want;
        if since_report >= size || run.len() >= cfg.max_evaluations {
            since_report = 0;
            let g = run.generation(history.len(), &normalizer);
            on_generation(&g);
            history.push(g);
        }
    }
    Ok(run.outcome(history))
}
