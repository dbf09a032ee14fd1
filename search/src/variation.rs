//! Variation operators on genomes: random genomes, per-gene mutation, uniform crossover. Every
//! result is within the genes' levels, so every genome they make is an architecture.

use hwnas_core::rng::SplitMix64;

use crate::space::Gene;

pub fn random_genome(genes: &[Gene], rng: &mut SplitMix64) -> Vec<u8> {
    genes
        .iter()
        .map(|g| rng.below(g.levels as usize) as u8)
        .collect()
}

/// Each gene from `other` with probability 1/2.
pub fn uniform_crossover(child: &mut [u8], other: &[u8], rng: &mut SplitMix64) {
    for (g, o) in child.iter_mut().zip(other) {
        if rng.next_f64() < 0.5 {
            *g = *o;
        }
    }
}

/// Exactly one gene changed (of those with two levels or more).
pub fn mutate_one(genome: &mut [u8], genes: &[Gene], rng: &mut SplitMix64) {
    let choices: Vec<usize> = (0..genes.len()).filter(|i| genes[*i].levels > 1).collect();
    if choices.is_empty() {
        return;
    }
    let i = choices[rng.below(choices.len())];
    change(&mut genome[i], genes[i], rng);
}

/// Each gene changed with probability `rate`.
pub fn mutate(genome: &mut [u8], genes: &[Gene], rate: f64, rng: &mut SplitMix64) {
    for (v, gene) in genome.iter_mut().zip(genes) {
        let levels = gene.levels as usize;
        if levels < 2 || rng.next_f64() >= rate {
            continue;
        }
        change(v, *gene, rng);
    }
}

/// Another value of the gene: for an ordered gene half the time a neighbour (reflected at the
/// ends), otherwise any other level.
fn change(v: &mut u8, gene: Gene, rng: &mut SplitMix64) {
    let levels = gene.levels as usize;
    if gene.ordered && levels > 2 && rng.next_f64() < 0.5 {
        let up = rng.next_f64() < 0.5;
        *v = match (up, *v as usize) {
            (true, x) if x + 1 < levels => x as u8 + 1,
            (true, x) => x as u8 - 1,
            (false, 0) => 1,
            (false, x) => x as u8 - 1,
        };
    } else {
        let other = rng.below(levels - 1) as u8;
        *v = if other >= *v { other + 1 } else { other };
    }
}
