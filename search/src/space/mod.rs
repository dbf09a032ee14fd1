//! Search spaces: definition, architecture encodings, and operator enumeration.
//!
//! Built in: [`nb201`], [`mbv3`] and [`vit`]; any other space is a TOML file ([`file`]); [`open`] takes
//! either.

use std::collections::BTreeMap;

use hwnas_core::Op;
use hwnas_core::network::Network;
use hwnas_core::rng::SplitMix64;

pub mod file;
pub mod mbv3;
pub mod nb201;
pub mod vit;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpaceError {
    #[error("unknown search space `{0}` (built in: nb201, mbv3, vit; or a space file, `*.toml`)")]
    Unknown(String),
    #[error(transparent)]
    File(#[from] file::SpaceFileError),
    #[error("invalid {space} architecture `{arch}`: {why}")]
    BadArch {
        space: String,
        arch: String,
        why: String,
    },
}

/// A search space: the set of networks a search may pick from.
pub trait SearchSpace {
    fn name(&self) -> &str;

    /// One line on what the space is.
    fn describe(&self) -> String;

    /// Every distinct op any network of the space can run, each once, sorted by key.
    /// Includes the free ops (skip), which the profiler leaves out.
    fn ops(&self) -> Vec<Op>;

    /// A uniformly random architecture encoding (by default a uniform genome, see
    /// [`sample_genome`]).
    fn sample(&self, rng: &mut SplitMix64) -> String {
        self.decode(&sample_genome(&self.genes(), rng))
    }

    /// The network an architecture encoding describes: its ops, wired.
    fn network(&self, arch: &str) -> Result<Network, SpaceError>;

    /// The ops of one network, in execution order (repeats included).
    fn network_ops(&self, arch: &str) -> Result<Vec<Op>, SpaceError> {
        Ok(self.network(arch)?.ops().copied().collect())
    }

    /// The architecture as a genome: one gene per independent choice, what the search varies.
    fn genes(&self) -> Vec<Gene>;

    /// The encoding of a genome; every genome within [`SearchSpace::genes`] is an architecture.
    fn decode(&self, genome: &[u8]) -> String;

    /// The genome of an encoding (the inverse of [`SearchSpace::decode`]).
    fn encode(&self, arch: &str) -> Result<Vec<u8>, SpaceError>;

    /// Each gene's name and its choices as the encoding writes them (by default `gene<i>` and
    /// the level numbers).
    fn gene_labels(&self) -> Vec<(String, Vec<String>)> {
        self.genes()
            .iter()
            .enumerate()
            .map(|(i, g)| {
                (
                    format!("gene{i}"),
                    (0..g.levels).map(|l| l.to_string()).collect(),
                )
            })
            .collect()
    }

    /// The space as a sum of units, for per-choice latency tables; `None` when its networks
    /// are not a sum of independent parts.
    fn additive(&self) -> Option<&dyn Additive> {
        None
    }
}

/// A part of every network whose ops depend only on a few genes (a block slot: its own
/// choices, its stage's depth and widths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub name: String,
    pub genes: Vec<usize>,
}

/// A space whose networks are chains of [`Unit`]s: a network's ops are the union of its units'.
pub trait Additive {
    fn units(&self) -> Vec<Unit>;
    /// The ops unit `u` runs in the network of `genome` (only the unit's genes matter), wired
    /// as a network of their own; empty when the unit does not run.
    fn unit_network(&self, u: usize, genome: &[u8]) -> Network;
    /// Which gene sets the input resolution, and its choices.
    fn resolution(&self) -> (Option<usize>, Vec<u32>);
}

/// One choice of an architecture: `levels` values `0..levels`. `ordered` choices (kernel
/// size, depth, resolution) have neighbours, so mutation may step to the next value; unordered
/// ones (which op sits on an edge) only jump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gene {
    pub levels: u8,
    pub ordered: bool,
}

/// How many genomes there are (duplicate encodings of one network included).
pub fn genome_count(genes: &[Gene]) -> f64 {
    genes.iter().map(|g| g.levels as f64).product()
}

/// A built-in space by name.
pub fn builtin(name: &str) -> Result<Box<dyn SearchSpace>, SpaceError> {
    match name {
        "nb201" => Ok(Box::new(nb201::Nb201)),
        "mbv3" => Ok(Box::new(mbv3::Mbv3)),
        "vit" => Ok(Box::new(vit::Vit)),
        other => Err(SpaceError::Unknown(other.into())),
    }
}

/// A built-in space by name, or the space a `.toml` file declares.
pub fn open(spec: &str) -> Result<Box<dyn SearchSpace>, SpaceError> {
    if spec.ends_with(".toml") || std::path::Path::new(spec).is_file() {
        return Ok(file::load(std::path::Path::new(spec))?);
    }
    builtin(spec)
}

/// Does `stored` (a name or a space file, as a table or model records it) name `space`?
pub fn same(stored: &str, space: &dyn SearchSpace) -> bool {
    stored == space.name() || open(stored).is_ok_and(|s| s.name() == space.name())
}

/// A uniformly random genome. A space small enough draws one index and writes it in the
/// genes' mixed radix (first gene fastest, as NAS-Bench-201 numbers its cells); a larger one
/// draws gene by gene.
pub(crate) fn sample_genome(genes: &[Gene], rng: &mut SplitMix64) -> Vec<u8> {
    let total = genome_count(genes);
    if total <= (1u64 << 53) as f64 {
        let mut i = rng.below(total as usize);
        genes
            .iter()
            .map(|g| {
                let v = i % g.levels as usize;
                i /= g.levels as usize;
                v as u8
            })
            .collect()
    } else {
        genes
            .iter()
            .map(|g| rng.below(g.levels as usize) as u8)
            .collect()
    }
}

/// Sort and deduplicate.
pub(crate) fn distinct(ops: impl IntoIterator<Item = Op>) -> Vec<Op> {
    let mut by_key: BTreeMap<String, Op> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key()).or_insert(op);
    }
    by_key.into_values().collect()
}

/// How many distinct ops of each kind.
pub fn count_by_kind(ops: &[Op]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for op in ops {
        *counts.entry(op.kind()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_genome_decodes_to_a_network_and_encodes_back() {
        for name in ["nb201", "mbv3", "vit"] {
            let space = builtin(name).unwrap();
            let genes = space.genes();
            let mut rng = SplitMix64::new(7);
            for _ in 0..300 {
                let genome: Vec<u8> = genes
                    .iter()
                    .map(|g| rng.below(g.levels as usize) as u8)
                    .collect();
                let arch = space.decode(&genome);
                space.network(&arch).unwrap().validate().unwrap();
                assert_eq!(space.encode(&arch).unwrap(), genome, "{arch}");
                let sampled = space.sample(&mut rng);
                assert_eq!(space.decode(&space.encode(&sampled).unwrap()), sampled);
            }
        }
        assert_eq!(genome_count(&builtin("nb201").unwrap().genes()), 15_625.0);
        assert!(builtin("mbv3").unwrap().encode("r224-d2").is_err());
    }
}
