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

/// Each gene from `other` with probability 1/2 (one random bit per gene).
pub fn uniform_crossover(child: &mut [u8], other: &[u8], rng: &mut SplitMix64) {
    for (c, o) in child.chunks_mut(64).zip(other.chunks(64)) {
        let bits = rng.next_u64();
        for (k, (g, v)) in c.iter_mut().zip(o).enumerate() {
            if bits >> k & 1 == 1 {
                *g = *v;
            }
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

/// Each gene changed with probability `rate` (single-level genes never change). The genes
/// to change are reached by geometric skips, one draw per change rather than one per gene.
pub fn mutate(genome: &mut [u8], genes: &[Gene], rate: f64, rng: &mut SplitMix64) {
    if rate <= 0.0 {
        return;
    }
    let log_keep = (1.0 - rate.min(1.0)).ln();
    let mut i = 0;
    loop {
        // Genes left unchanged before the next change: P(k) = (1 − rate)^k · rate.
        let skip = if log_keep == f64::NEG_INFINITY {
            0.0
        } else {
            ((1.0 - rng.next_f64()).ln() / log_keep).floor()
        };
        if skip >= (genome.len() - i) as f64 {
            return;
        }
        i += skip as usize;
        if genes[i].levels > 1 {
            change(&mut genome[i], genes[i], rng);
        }
        i += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn genes(n: usize) -> Vec<Gene> {
        (0..n)
            .map(|i| Gene {
                levels: if i % 10 == 0 { 1 } else { 3 + (i % 4) as u8 },
                ordered: i % 2 == 0,
            })
            .collect()
    }

    #[test]
    fn mutation_changes_each_gene_at_its_rate_and_stays_within_levels() {
        let genes = genes(100);
        let mut rng = SplitMix64::new(4);
        for rate in [0.01, 0.1, 0.5] {
            let mut changed = 0;
            for _ in 0..2000 {
                let before = random_genome(&genes, &mut rng);
                let mut after = before.clone();
                mutate(&mut after, &genes, rate, &mut rng);
                for (i, (b, a)) in before.iter().zip(&after).enumerate() {
                    assert!(*a < genes[i].levels, "gene {i} out of its levels");
                    changed += usize::from(a != b);
                }
            }
            // 90 of the 100 genes can change: 2,000 · 90 · rate expected, ±5%.
            let expected = 2000.0 * 90.0 * rate;
            let ratio = changed as f64 / expected;
            assert!(
                (0.95..1.05).contains(&ratio),
                "rate {rate}: {changed} vs {expected}"
            );
        }
        let mut all = vec![0u8; 100];
        mutate(&mut all, &genes, 1.0, &mut rng);
        assert_eq!(all.iter().filter(|v| **v != 0).count(), 90);
    }

    #[test]
    fn crossover_takes_each_gene_from_either_parent_evenly() {
        let (mut from_other, n) = (vec![0usize; 150], 4000);
        let mut rng = SplitMix64::new(9);
        for _ in 0..n {
            let mut child = vec![0u8; 150];
            uniform_crossover(&mut child, &[1u8; 150], &mut rng);
            for (count, g) in from_other.iter_mut().zip(&child) {
                *count += usize::from(*g);
            }
        }
        // Every position, the third 64-gene chunk's too: 2,000 ± 4 standard deviations.
        assert!(
            from_other.iter().all(|c| c.abs_diff(n / 2) < 130),
            "{from_other:?}"
        );
    }
}
