//! Per-choice tables of any space: one term per unit of an additive space (a chain of blocks,
//! each depending on a few genes), or one term over every gene of a small space.
//!
//! Decisions are the space's genes (less the resolution, which the table fixes), so the
//! choices of an architecture are its genome without that gene ([`Lut::choices_of`]).

use hwnas_predictor::{LatencyModel, ModelError};

use super::{Decision, Lut, LutError, LutTerm, SCHEMA};
use crate::space::{Additive, SearchSpace, genome_count};

/// Spaces up to this many architectures get one term over all their genes.
pub const ENUMERABLE: usize = 100_000;

/// Milliseconds `net` adds to a prediction (its ops' calibrated share, without the intercept).
fn share_ms(
    model: &LatencyModel,
    net: &hwnas_core::network::Network,
    intercept_us: f64,
) -> Result<f64, ModelError> {
    if net.nodes.is_empty() {
        return Ok(0.0);
    }
    let terms = model.terms(net);
    let us = match model.predict_fast(&terms) {
        Some(us) => us,
        None => model.predict(&terms)?.latency_us,
    };
    Ok((us - intercept_us) / 1e3)
}

/// Every combination of `genes`' levels, row-major (the last gene fastest), written into a
/// copy of `base`.
fn combinations(levels: &[u8], genes: &[usize], base: &[u8]) -> Vec<Vec<u8>> {
    let total: usize = genes.iter().map(|&g| levels[g] as usize).product();
    (0..total)
        .map(|flat| {
            let mut genome = base.to_vec();
            let mut rest = flat;
            for &g in genes.iter().rev() {
                genome[g] = (rest % levels[g] as usize) as u8;
                rest /= levels[g] as usize;
            }
            genome
        })
        .collect()
}

impl Lut {
    /// The table of a space read from a file (or any [`SearchSpace`]), at `resolution` (default:
    /// the largest the space has).
    pub fn of_space(
        model: &LatencyModel,
        space: &dyn SearchSpace,
        resolution: Option<u32>,
    ) -> Result<Lut, LutError> {
        let levels: Vec<u8> = space.genes().iter().map(|g| g.levels).collect();
        let labels = space.gene_labels();
        let (r_gene, resolutions) = match space.additive() {
            Some(a) => a.resolution(),
            None => (None, vec![]),
        };
        let mut base = vec![0u8; levels.len()];
        let resolution = match (resolution, resolutions.iter().max()) {
            (None, max) => max.copied().unwrap_or(0),
            (Some(r), _) if resolutions.is_empty() || resolutions.contains(&r) => r,
            (Some(r), _) => {
                return Err(LutError::Resolution {
                    space: space.name().into(),
                    resolution: r,
                    allowed: resolutions,
                });
            }
        };
        if let (Some(g), Some(i)) = (r_gene, resolutions.iter().position(|&r| r == resolution)) {
            base[g] = i as u8;
        }
        let decision_genes: Vec<usize> = (0..levels.len()).filter(|&g| Some(g) != r_gene).collect();
        let decisions = decision_genes
            .iter()
            .map(|&g| Decision {
                name: labels[g].0.clone(),
                choices: labels[g].1.clone(),
            })
            .collect();
        let intercept_us = model.predict(&[])?.latency_us;
        let (fixed, terms) = match space.additive() {
            Some(a) => unit_terms(model, a, &levels, &base, r_gene, intercept_us)?,
            None => whole_term(model, space, &levels, intercept_us)?,
        };
        let to_decision = |g: usize| {
            decision_genes
                .iter()
                .position(|&d| d == g)
                .expect("a gene other than the resolution")
        };
        Ok(Lut {
            schema: SCHEMA.into(),
            space: space.name().into(),
            device: model.device.clone(),
            resolution,
            fixed_ms: intercept_us / 1e3 + fixed,
            decisions,
            terms: terms
                .into_iter()
                .map(|(genes, latency_ms)| LutTerm {
                    decisions: genes.into_iter().map(to_decision).collect(),
                    latency_ms,
                })
                .collect(),
        })
    }

    /// The choices of a genome of the space the table was cut from ([`Lut::of_space`]).
    pub fn choices_of(&self, space: &dyn SearchSpace, genome: &[u8]) -> Vec<usize> {
        let r_gene = space.additive().and_then(|a| a.resolution().0);
        genome
            .iter()
            .enumerate()
            .filter(|(g, _)| Some(*g) != r_gene)
            .map(|(_, &v)| v as usize)
            .collect()
    }
}

type Terms = (f64, Vec<(Vec<usize>, Vec<f64>)>);

fn unit_terms(
    model: &LatencyModel,
    space: &dyn Additive,
    levels: &[u8],
    base: &[u8],
    r_gene: Option<usize>,
    intercept_us: f64,
) -> Result<Terms, LutError> {
    let mut fixed = 0.0;
    let mut terms = Vec::new();
    for (u, unit) in space.units().iter().enumerate() {
        let genes: Vec<usize> = unit
            .genes
            .iter()
            .copied()
            .filter(|&g| Some(g) != r_gene)
            .collect();
        let mut latency_ms = Vec::new();
        for genome in combinations(levels, &genes, base) {
            latency_ms.push(share_ms(
                model,
                &space.unit_network(u, &genome),
                intercept_us,
            )?);
        }
        if genes.is_empty() {
            fixed += latency_ms[0];
        } else {
            terms.push((genes, latency_ms));
        }
    }
    Ok((fixed, terms))
}

/// One term over every gene: each entry a whole network's prediction.
fn whole_term(
    model: &LatencyModel,
    space: &dyn SearchSpace,
    levels: &[u8],
    intercept_us: f64,
) -> Result<Terms, LutError> {
    let count = genome_count(&space.genes());
    if count > ENUMERABLE as f64 {
        return Err(LutError::NotAdditive {
            space: space.name().into(),
            count,
            limit: ENUMERABLE,
        });
    }
    let genes: Vec<usize> = (0..levels.len()).collect();
    let mut latency_ms = Vec::new();
    for genome in combinations(levels, &genes, &vec![0; levels.len()]) {
        let net = space
            .network(&space.decode(&genome))
            .expect("a decoded genome is an architecture");
        latency_ms.push(share_ms(model, &net, intercept_us)?);
    }
    Ok((0.0, vec![(genes, latency_ms)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::file::{parse, tests::SHIPPED};
    use hwnas_core::rng::SplitMix64;

    #[test]
    fn one_hot_choices_of_shipped_spaces_cost_exactly_the_prediction() {
        for (name, text) in SHIPPED {
            let space = parse(text, name).unwrap();
            let model = crate::lut::tests::model_of(space.as_ref());
            let lut = match Lut::of_space(&model, space.as_ref(), None) {
                Ok(lut) => lut,
                Err(LutError::NotAdditive { .. }) if name == "darts" => continue,
                Err(e) => panic!("{name}: {e}"),
            };
            assert_eq!(lut.space, name);
            let (r_gene, resolutions) = space.additive().map_or((None, vec![]), |a| a.resolution());
            let mut rng = SplitMix64::new(9);
            for _ in 0..150 {
                let mut genome: Vec<u8> = space
                    .genes()
                    .iter()
                    .map(|g| rng.below(g.levels as usize) as u8)
                    .collect();
                if let Some(g) = r_gene {
                    genome[g] = (resolutions.len() - 1) as u8;
                }
                let net = space.network(&space.decode(&genome)).unwrap();
                let want = model.predict(&model.terms(&net)).unwrap().latency_us / 1e3;
                let got = lut.latency_ms(&lut.choices_of(space.as_ref(), &genome));
                assert!(
                    (got - want).abs() < 1e-9 * want.max(1.0),
                    "{name}: {got} vs {want}"
                );
                let expected =
                    lut.expected_ms(&lut.one_hot(&lut.choices_of(space.as_ref(), &genome)));
                assert!((expected - want).abs() < 1e-9 * want.max(1.0));
            }
        }
    }

    #[test]
    fn a_large_cell_space_has_no_table_and_says_why() {
        let space = parse(SHIPPED[4].1, "darts").unwrap();
        let model = crate::lut::tests::model_of(space.as_ref());
        let err = Lut::of_space(&model, space.as_ref(), None).unwrap_err();
        assert!(
            err.to_string().contains("not a sum of independent parts"),
            "{err}"
        );
        let mbv3 = parse(SHIPPED[1].1, "mbv3").unwrap();
        let model = crate::lut::tests::model_of(mbv3.as_ref());
        let err = Lut::of_space(&model, mbv3.as_ref(), Some(100)).unwrap_err();
        assert!(err.to_string().contains("resolution 100"), "{err}");
    }
}
