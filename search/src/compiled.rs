//! Latency predictions at memory speed: a latency model compiled, for one space, into tables
//! looked up straight from a genome, with no network built.
//!
//! An additive space (mbv3, and the layer-wise space files) compiles to its `lut export` terms
//! at each of its resolutions: a fixed part plus one lookup per unit, each unit's entry indexed
//! by the few genes that shape it. A space small enough to enumerate (nb201's 5^6 cells)
//! compiles to one entry per genome. Either way a prediction is the model's own prediction of
//! the network (tested to 1e-9 relative), because the model is linear in its ops; only the
//! interval is not kept (the general path gives it).

use hwnas_predictor::LatencyModel;

use crate::lut::{Lut, LutError};
use crate::space::{SearchSpace, file};

/// A latency model compiled for one space ([`CompiledLatency::new`]).
#[derive(Debug, Clone)]
pub struct CompiledLatency {
    /// The gene that picks the resolution, when the space has one: it picks the table.
    resolution_gene: Option<usize>,
    tables: Vec<Table>,
    genes: usize,
}

/// Every term of one resolution, flattened: term `t` reads genes
/// `reads[starts[t]..starts[t + 1]]` and adds `ms[offsets[t] + Σ genome[gene] · stride]`.
#[derive(Debug, Clone)]
struct Table {
    fixed_ms: f64,
    starts: Vec<usize>,
    reads: Vec<(usize, usize)>,
    offsets: Vec<usize>,
    ms: Vec<f64>,
}

/// The twin of the built-in mbv3 that is a sum of units (`spaces/mbv3.toml`: the same genes,
/// encodings and networks, tested in `space::file::tests`).
const MBV3_FILE: &str = include_str!("../../spaces/mbv3.toml");

impl CompiledLatency {
    /// Whether a space compiles in a few ms: a sum of units (the built-in mbv3 through its
    /// file twin). A space that only enumerates compiles too, by predicting every network.
    pub fn cheap(space: &dyn SearchSpace) -> bool {
        space.additive().is_some() || space.name() == "mbv3"
    }

    /// Compiles `model` for `space`; [`LutError::NotAdditive`] for a space that is neither a
    /// sum of units nor small enough to enumerate (its predictions take the general path).
    pub fn new(model: &LatencyModel, space: &dyn SearchSpace) -> Result<CompiledLatency, LutError> {
        let twin = match space.additive() {
            None if space.name() == "mbv3" => Some(
                file::parse(MBV3_FILE, "mbv3").expect("the shipped mbv3.toml is a valid space"),
            ),
            _ => None,
        };
        let space = twin.as_deref().unwrap_or(space);
        let levels: Vec<usize> = space
            .genes()
            .iter()
            .map(|g| usize::from(g.levels))
            .collect();
        let (resolution_gene, resolutions) =
            space.additive().map_or((None, vec![]), |a| a.resolution());
        let luts = if resolutions.is_empty() {
            vec![Lut::of_space(model, space, None)?]
        } else {
            resolutions
                .iter()
                .map(|r| Lut::of_space(model, space, Some(*r)))
                .collect::<Result<_, _>>()?
        };
        // The tables' decisions are the genes less the resolution gene, in order.
        let decision_genes: Vec<usize> = (0..levels.len())
            .filter(|g| Some(*g) != resolution_gene)
            .collect();
        let tables = luts
            .iter()
            .map(|lut| Table::of(lut, &decision_genes, &levels))
            .collect();
        Ok(CompiledLatency {
            resolution_gene,
            tables,
            genes: levels.len(),
        })
    }

    /// The predicted latency of a genome of the space, ms. The genome must be the space's
    /// (one value per gene, each within its levels); a shorter one panics.
    #[inline]
    pub fn predict_ms(&self, genome: &[u8]) -> f64 {
        let table = match self.resolution_gene {
            Some(g) => &self.tables[usize::from(genome[g])],
            None => &self.tables[0],
        };
        table.lookup(genome)
    }

    /// Predictions for a batch of genomes laid end to end (`genomes.len()` a multiple of the
    /// space's gene count), into `out`.
    pub fn predict_batch(&self, genomes: &[u8], out: &mut Vec<f64>) {
        out.extend(genomes.chunks_exact(self.genes).map(|g| self.predict_ms(g)));
    }

    /// How many genes a genome of the compiled space has.
    pub fn genes(&self) -> usize {
        self.genes
    }
}

impl Table {
    fn of(lut: &Lut, decision_genes: &[usize], levels: &[usize]) -> Table {
        let mut table = Table {
            fixed_ms: lut.fixed_ms,
            starts: vec![0],
            reads: Vec::new(),
            offsets: Vec::new(),
            ms: Vec::new(),
        };
        for term in &lut.terms {
            // Row-major: the last decision's choice varies fastest.
            let mut stride = 1;
            let mut reads: Vec<(usize, usize)> = Vec::with_capacity(term.decisions.len());
            for &d in term.decisions.iter().rev() {
                let gene = decision_genes[d];
                reads.push((gene, stride));
                stride *= levels[gene];
            }
            table.reads.extend(reads.into_iter().rev());
            table.starts.push(table.reads.len());
            table.offsets.push(table.ms.len());
            table.ms.extend(&term.latency_ms);
        }
        table
    }

    #[inline]
    fn lookup(&self, genome: &[u8]) -> f64 {
        let mut total = self.fixed_ms;
        for (t, offset) in self.offsets.iter().enumerate() {
            let index = self.reads[self.starts[t]..self.starts[t + 1]]
                .iter()
                .fold(*offset, |at, (gene, stride)| {
                    at + usize::from(genome[*gene]) * stride
                });
            total += self.ms[index];
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::builtin;
    use crate::space::file::{parse, tests::SHIPPED};
    use hwnas_core::rng::SplitMix64;

    /// The compiled prediction of random genomes against the model's prediction of their
    /// networks: built-ins and every shipped space file that compiles.
    #[test]
    fn compiled_predictions_are_the_models_own() {
        let mut spaces: Vec<Box<dyn SearchSpace>> =
            vec![builtin("mbv3").unwrap(), builtin("nb201").unwrap()];
        spaces.extend(
            SHIPPED
                .iter()
                .map(|(name, text)| parse(text, name).unwrap()),
        );
        let mut rng = SplitMix64::new(5);
        for space in &spaces {
            let model = crate::lut::tests::model_of(space.as_ref());
            let compiled = match CompiledLatency::new(&model, space.as_ref()) {
                Ok(c) => c,
                Err(LutError::NotAdditive { .. }) if space.name() == "darts" => continue,
                Err(e) => panic!("{}: {e}", space.name()),
            };
            let genes = space.genes();
            assert_eq!(compiled.genes(), genes.len());
            let mut batch = Vec::new();
            let mut want = Vec::new();
            for _ in 0..200 {
                let genome = crate::variation::random_genome(&genes, &mut rng);
                let net = space.network(&space.decode(&genome)).unwrap();
                let predicted = model.predict(&model.terms(&net)).unwrap().latency_us / 1e3;
                let got = compiled.predict_ms(&genome);
                assert!(
                    (got - predicted).abs() <= 1e-9 * predicted,
                    "{}: {} compiled {got}, model {predicted}",
                    space.name(),
                    space.decode(&genome)
                );
                batch.extend(genome);
                want.push(got);
            }
            let mut out = Vec::new();
            compiled.predict_batch(&batch, &mut out);
            assert_eq!(out, want);
        }
    }
}
