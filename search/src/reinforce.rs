//! REINFORCE (Williams 1992) as NAS uses it (Zoph & Le 2017; MnasNet, Tan et al. 2019): a
//! policy over the space's choices is sampled, each sample rewarded, and the policy moved
//! toward what scored well. The policy here is one independent categorical distribution per
//! gene (softmax over logits, all zero at first: uniform), not an RNN controller: the built-in
//! spaces' choices are independent slots, and the factorised policy is what ENAS- and
//! ProxylessNAS-style samplers use.
//!
//! Each generation samples `population` genomes. Their rewards become centred ranks (fitter
//! first, Deb's rule for infeasible ones; values in [-0.5, 0.5] summing to 0), which need no
//! baseline and no reward scale; the update is `logit += lr · mean(advantage · (onehot − p))`.
//! A sample evaluated before is rewarded from the archive without spending budget; the run
//! stops when the budget is spent or the policy has produced nothing new for a while.

use hwnas_core::rng::SplitMix64;

use crate::archive::Archive;
use crate::problem::{EvaluateError, Generation, Outcome, Problem};
use crate::strategy::{Config, Fitness, fitter};

/// Generations in a row without a new genome before the policy counts as converged.
const STALE_GENERATIONS: usize = 20;

pub fn run<P: Problem>(
    problem: &mut P,
    cfg: &Config,
    fitness: &dyn Fitness,
    mut on_generation: impl FnMut(&Generation),
) -> Result<Outcome<P::Info>, EvaluateError> {
    let mut rng = SplitMix64::new(cfg.seed);
    let mut run = Archive::new(problem);
    let batch = cfg.population.max(2);
    let mut logits: Vec<Vec<f64>> = run
        .genes
        .iter()
        .map(|g| vec![0.0; g.levels as usize])
        .collect();
    let mut normalizer = None;
    let mut history = Vec::new();
    let mut stale = 0;
    while run.len() < cfg.max_evaluations && stale < STALE_GENERATIONS {
        let probs: Vec<Vec<f64>> = logits.iter().map(|l| softmax(l)).collect();
        let samples: Vec<Vec<u8>> = (0..batch)
            .map(|_| probs.iter().map(|p| draw(p, &mut rng)).collect())
            .collect();
        // New genomes are evaluated (up to the budget); the rest are looked up.
        let mut new: Vec<Vec<u8>> = Vec::new();
        for s in &samples {
            if run.index_of(s).is_none()
                && !new.contains(s)
                && run.len() + new.len() < cfg.max_evaluations
            {
                new.push(s.clone());
            }
        }
        stale = if new.is_empty() { stale + 1 } else { 0 };
        let added = run.evaluate(new)?;
        if normalizer.is_none() {
            normalizer = run.normalizer(&added);
        }
        let scored: Vec<(Vec<u8>, usize)> = samples
            .into_iter()
            .filter_map(|s| run.index_of(&s).map(|i| (s, i)))
            .collect();
        let advantages = centred_ranks(&scored, |a, b| fitter(fitness, run.eval(a), run.eval(b)));
        for ((genome, _), adv) in scored.iter().zip(&advantages) {
            for ((logit, p), chosen) in logits.iter_mut().zip(&probs).zip(genome) {
                for (v, (l, pv)) in logit.iter_mut().zip(p).enumerate() {
                    let onehot = if v == *chosen as usize { 1.0 } else { 0.0 };
                    *l += cfg.learning_rate * adv * (onehot - pv) / scored.len() as f64;
                }
            }
        }
        if let Some(n) = &normalizer
            && !added.is_empty()
        {
            let g = run.generation(history.len(), n);
            on_generation(&g);
            history.push(g);
        }
    }
    Ok(run.outcome(history))
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

fn draw(p: &[f64], rng: &mut SplitMix64) -> u8 {
    let u = rng.next_f64();
    let mut acc = 0.0;
    for (i, pi) in p.iter().enumerate() {
        acc += pi;
        if u < acc {
            return i as u8;
        }
    }
    (p.len() - 1) as u8
}

/// Each item's rank among the batch (ties share), mapped to [-0.5, 0.5], fittest highest.
fn centred_ranks(
    scored: &[(Vec<u8>, usize)],
    cmp: impl Fn(usize, usize) -> std::cmp::Ordering,
) -> Vec<f64> {
    let n = scored.len();
    if n < 2 {
        return vec![0.0; n];
    }
    (0..n)
        .map(|i| {
            let (below, equal) = scored.iter().fold((0usize, 0usize), |(b, e), other| {
                match cmp(scored[i].1, other.1) {
                    std::cmp::Ordering::Greater => (b + 1, e),
                    std::cmp::Ordering::Equal => (b, e + 1),
                    std::cmp::Ordering::Less => (b, e),
                }
            });
            // Average rank of the tie group, 0-based, over n - 1.
            let rank = below as f64 + (equal as f64 - 1.0) / 2.0;
            rank / (n - 1) as f64 - 0.5
        })
        .collect()
}
