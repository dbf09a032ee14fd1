//! Latency tables for differentiable (one-shot) search: DARTS-, ProxylessNAS- and FBNet-style
//! training loops add the expected latency of their architecture distribution to the loss.
//!
//! A [`Lut`] is a fixed part plus [`LutTerm`]s, each a table over the choices of one or more
//! decisions. With one independent probability vector per decision the expected latency is
//! `fixed + Σ_terms Σ_combos Π_d p_d(combo_d) · latency(combo)`, a polynomial in the
//! probabilities (so differentiable), and for a one-hot choice of a real architecture it equals
//! the model's prediction of that architecture exactly.
//!
//! mbv3 at a fixed resolution is a sum over its blocks (each block's op depends only on its own
//! kernel and expand ratio, and a block that does not run costs nothing): one term per block.
//! nb201 is not a sum over its edges: an empty node silences every edge leaving it, a node adds
//! its live inputs (one add fewer than it has inputs), and pools repeated on one input run once.
//! The additive table closest to this CPU's model (least squares over all 15,625 cells) was off
//! by 31% RMS relative error, 22% of cells within ±10%, so nb201 gets one term over all six
//! edges: 5^6 entries, each the prediction of one cell, whose expectation is the exact expected
//! latency under independent per-edge choices.

use hwnas_core::Op;
use hwnas_predictor::{LatencyModel, ModelError, Term};
use serde::{Deserialize, Serialize};

mod of_space;
pub use of_space::ENUMERABLE;

use crate::space::SearchSpace;
use crate::space::mbv3::{self, EXPANDS, KERNELS, MAX_DEPTH, Mbv3Arch, RESOLUTIONS, STAGES};
use crate::space::nb201::{self, EdgeOp, Nb201Arch};

pub const SCHEMA: &str = "hwnas-lut/2";

/// One decision of the space and its choices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub name: String,
    pub choices: Vec<String>,
}

/// The latency of every combination of the choices of some decisions, ms, row-major in the
/// order `decisions` lists them (the last decision's choice varies fastest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LutTerm {
    pub decisions: Vec<usize>,
    pub latency_ms: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lut {
    pub schema: String,
    pub space: String,
    pub device: String,
    pub resolution: u32,
    /// Latency of what every architecture runs (and the calibration's intercept), ms.
    pub fixed_ms: f64,
    pub decisions: Vec<Decision>,
    pub terms: Vec<LutTerm>,
}

#[derive(Debug, thiserror::Error)]
pub enum LutError {
    #[error("space `{0}` has no latency table for one-shot search (mbv3 and nb201 have)")]
    Space(String),
    #[error(
        "space `{space}` is not a sum of independent parts and has {count:.3e} architectures \
         (a table over all of them is written up to {limit}): no per-choice table exists for it"
    )]
    NotAdditive {
        space: String,
        count: f64,
        limit: usize,
    },
    #[error("resolution {resolution} is not one of {space}'s {allowed:?}")]
    Resolution {
        space: String,
        resolution: u32,
        allowed: Vec<u32>,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Open(#[from] crate::space::SpaceError),
}

/// The name of a running mbv3 block's choice.
fn choice_name(k: u32, e: u32) -> String {
    format!("k{k}-e{e}")
}

/// The choice a stage's depth leaves to an mbv3 block that does not run.
pub const SKIP: &str = "skip";

impl Lut {
    /// The resolution a space's table is cut at unless told otherwise.
    pub fn default_resolution(space: &str) -> u32 {
        if space == "nb201" {
            nb201::RESOLUTION
        } else {
            224
        }
    }

    /// The table `hwnas lut export` writes: for a built-in space by name (at its default
    /// resolution unless told), else for the space file `spec` names.
    pub fn for_space(
        model: &LatencyModel,
        spec: &str,
        resolution: Option<u32>,
    ) -> Result<Lut, LutError> {
        match spec {
            "mbv3" | "nb201" => {
                let resolution = resolution.unwrap_or_else(|| Lut::default_resolution(spec));
                Lut::export(model, spec, resolution)
            }
            _ => Lut::of_space(model, crate::space::open(spec)?.as_ref(), resolution),
        }
    }

    /// The table of `space` at `resolution` from a latency model.
    pub fn export(model: &LatencyModel, space: &str, resolution: u32) -> Result<Lut, LutError> {
        let (fixed_ms, decisions, terms) = match space {
            "mbv3" => mbv3_terms(model, resolution)?,
            "nb201" => nb201_terms(model, resolution)?,
            _ => return Err(LutError::Space(space.into())),
        };
        Ok(Lut {
            schema: SCHEMA.into(),
            space: space.into(),
            device: model.device.clone(),
            resolution,
            fixed_ms,
            decisions,
            terms,
        })
    }

    /// The expected latency under one probability vector per decision, ms.
    pub fn expected_ms(&self, probabilities: &[Vec<f64>]) -> f64 {
        let mut total = self.fixed_ms;
        for term in &self.terms {
            let sizes: Vec<usize> = term
                .decisions
                .iter()
                .map(|&d| self.decisions[d].choices.len())
                .collect();
            for (flat, ms) in term.latency_ms.iter().enumerate() {
                let mut rest = flat;
                let mut p = 1.0;
                for (&d, &n) in term.decisions.iter().zip(&sizes).rev() {
                    p *= probabilities[d][rest % n];
                    rest /= n;
                }
                total += p * ms;
            }
        }
        total
    }

    /// The latency of one architecture, given as one choice (an index) per decision: the
    /// expected latency of its one-hot probabilities, looked up instead of summed.
    pub fn latency_ms(&self, choices: &[usize]) -> f64 {
        self.fixed_ms
            + self
                .terms
                .iter()
                .map(|term| {
                    let flat = term.decisions.iter().fold(0, |flat, &d| {
                        flat * self.decisions[d].choices.len() + choices[d]
                    });
                    term.latency_ms[flat]
                })
                .sum::<f64>()
    }

    /// One-hot probabilities for one choice (an index) per decision.
    pub fn one_hot(&self, choices: &[usize]) -> Vec<Vec<f64>> {
        self.decisions
            .iter()
            .zip(choices)
            .map(|(d, &c)| {
                (0..d.choices.len())
                    .map(|i| f64::from(u8::from(i == c)))
                    .collect()
            })
            .collect()
    }

    /// The choices of an mbv3 architecture (at this table's resolution).
    pub fn mbv3_choices(&self, arch: &Mbv3Arch) -> Vec<usize> {
        self.decisions
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let (s, b) = (i / MAX_DEPTH, i % MAX_DEPTH);
                let name = if b < arch.depths[s] as usize {
                    choice_name(arch.kernels[i], arch.expands[i])
                } else {
                    SKIP.to_string()
                };
                d.choices.iter().position(|c| *c == name).unwrap_or(0)
            })
            .collect()
    }
}

/// The choices of an nb201 cell: each edge's op, as an index into [`EdgeOp::ALL`].
pub fn nb201_choices(cell: &Nb201Arch) -> Vec<usize> {
    cell.edges
        .iter()
        .map(|e| EdgeOp::ALL.iter().position(|a| a == e).unwrap_or(0))
        .collect()
}

type Parts = (f64, Vec<Decision>, Vec<LutTerm>);

fn mbv3_terms(model: &LatencyModel, resolution: u32) -> Result<Parts, LutError> {
    if !RESOLUTIONS.contains(&resolution) {
        return Err(LutError::Resolution {
            space: "mbv3".into(),
            resolution,
            allowed: RESOLUTIONS.to_vec(),
        });
    }
    // The model is linear in its terms: a term's share is its prediction less the empty
    // network's (the intercept).
    let empty = model.predict(&[])?.latency_us;
    let share = |op: Op| -> Result<f64, ModelError> {
        Ok((model.predict(&Term::plain(&[op]))?.latency_us - empty) / 1e3)
    };
    let (fixed, inputs) = mbv3::skeleton(resolution);
    let fixed_ms = model.predict(&Term::plain(&fixed))?.latency_us / 1e3;
    let mut decisions = Vec::new();
    let mut terms = Vec::new();
    for s in 0..STAGES {
        for b in 0..MAX_DEPTH {
            // The first two blocks of a stage always run (depth >= 2).
            let (mut choices, mut latency_ms) = if b < 2 {
                (vec![], vec![])
            } else {
                (vec![SKIP.to_string()], vec![0.0])
            };
            for k in KERNELS {
                for e in EXPANDS {
                    choices.push(choice_name(k, e));
                    let input = inputs[s * MAX_DEPTH + b];
                    latency_ms.push(share(mbv3::stage_block(input, s, b, k, e))?);
                }
            }
            terms.push(LutTerm {
                decisions: vec![decisions.len()],
                latency_ms,
            });
            decisions.push(Decision {
                name: format!("stage{}.block{}", s + 1, b),
                choices,
            });
        }
    }
    Ok((fixed_ms, decisions, terms))
}

fn nb201_terms(model: &LatencyModel, resolution: u32) -> Result<Parts, LutError> {
    if resolution != nb201::RESOLUTION {
        return Err(LutError::Resolution {
            space: "nb201".into(),
            resolution,
            allowed: vec![nb201::RESOLUTION],
        });
    }
    let space = nb201::Nb201;
    let decisions: Vec<Decision> = nb201::EDGES
        .iter()
        .map(|(to, from)| Decision {
            name: format!("edge{from}to{to}"),
            choices: EdgeOp::ALL.iter().map(|e| e.name().to_string()).collect(),
        })
        .collect();
    let n = EdgeOp::ALL.len();
    let mut latency_ms = Vec::with_capacity(Nb201Arch::COUNT);
    let mut genome = vec![0u8; decisions.len()];
    for flat in 0..Nb201Arch::COUNT {
        // Row-major: the last edge's choice varies fastest.
        let mut rest = flat;
        for g in genome.iter_mut().rev() {
            *g = (rest % n) as u8;
            rest /= n;
        }
        let net = space
            .network(&space.decode(&genome))
            .expect("a decoded genome is an nb201 cell");
        latency_ms.push(model.predict(&model.terms(&net))?.latency_us / 1e3);
    }
    let terms = vec![LutTerm {
        decisions: (0..decisions.len()).collect(),
        latency_ms,
    }];
    Ok((0.0, decisions, terms))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hwnas_core::rng::SplitMix64;
    use hwnas_core::table::{LatencyTable, Row};

    fn model() -> LatencyModel {
        model_of(&crate::space::mbv3::Mbv3)
    }

    /// A model of every op of a space with made-up latencies (a function of FLOPs), calibrated
    /// with a per-op cost and an intercept.
    pub(crate) fn model_of(space: &dyn crate::space::SearchSpace) -> LatencyModel {
        use hwnas_core::backend::Measurement;
        use hwnas_core::stats::Stats;
        let rows = space
            .ops()
            .iter()
            .map(|op| {
                let us = 5.0 + op.flops() as f64 / 1e5;
                let m = Measurement {
                    stats: Stats::from_samples(&[us * 0.95, us, us * 1.05]).unwrap(),
                    wall: Stats::from_samples(&[us]).unwrap(),
                    edge_reorder_us: None,
                    providers: vec![],
                    in_network: false,
                    capped: false,
                    drift: None,
                    energy: None,
                };
                Row::new(op, &m, "mock")
            })
            .collect();
        let table = LatencyTable {
            meta: vec![("device".into(), "test".into())],
            rows,
        };
        let mut m = LatencyModel::from_table(&table, std::path::Path::new("t.csv"));
        let samples: Vec<hwnas_predictor::calibrate::Sample> = (0..30)
            .map(|i| {
                let (mb, conv, n) = (
                    1000.0 + 97.0 * i as f64,
                    50.0 + 3.0 * ((i * 7) % 5) as f64,
                    (20 + i % 7) as f64,
                );
                let sums = [
                    ("mbconv".to_string(), mb),
                    ("conv".to_string(), conv),
                    ("n_ops".to_string(), n),
                ]
                .into();
                (sums, 100.0 + 1.1 * mb + 0.9 * conv + 12.0 * n)
            })
            .collect();
        m.calibration =
            Some(hwnas_predictor::calibrate::Calibration::fit_with(&samples, 0.0).unwrap());
        m.rebuild();
        m
    }

    #[test]
    fn a_one_hot_mbv3_choice_costs_exactly_what_the_model_predicts() {
        let m = model();
        let mut rng = SplitMix64::new(4);
        for r in RESOLUTIONS {
            let lut = Lut::export(&m, "mbv3", r).unwrap();
            assert_eq!(lut.decisions.len(), 20);
            assert_eq!(lut.terms.len(), 20);
            assert_eq!(lut.decisions[0].choices.len(), 9);
            assert_eq!(lut.decisions[3].choices[0], SKIP);
            for _ in 0..20 {
                let mut arch = Mbv3Arch::random(&mut rng);
                arch.resolution = r;
                let predicted = m
                    .predict(&Term::of_network(&arch.network()))
                    .unwrap()
                    .latency_us
                    / 1e3;
                let expected = lut.expected_ms(&lut.one_hot(&lut.mbv3_choices(&arch)));
                assert!(
                    (expected - predicted).abs() < 1e-9 * predicted,
                    "{arch}: {expected} vs {predicted}"
                );
            }
        }
        assert!(matches!(
            Lut::export(&m, "mbv3", 225),
            Err(LutError::Resolution {
                resolution: 225,
                ..
            })
        ));
        assert!(matches!(
            Lut::export(&m, "nb201", 224),
            Err(LutError::Resolution {
                resolution: 224,
                ..
            })
        ));
        assert!(matches!(
            Lut::export(&m, "darts", 32),
            Err(LutError::Space(_))
        ));
    }

    /// nb201's latency is not additive over edges, yet its cells come out of the table
    /// exactly, and the layout agrees with the decision order: pinning one edge and leaving the
    /// others uniform gives the mean over the cells with that edge.
    #[test]
    fn nb201_cells_cost_exactly_what_the_model_predicts() {
        use crate::space::SearchSpace;
        let m = model_of(&crate::space::nb201::Nb201);
        let lut = Lut::export(&m, "nb201", Lut::default_resolution("nb201")).unwrap();
        assert_eq!(lut.decisions.len(), 6);
        assert_eq!(lut.decisions[2].name, "edge1to2");
        let predict = |cell: &Nb201Arch| {
            let net = crate::space::nb201::Nb201
                .network(&cell.to_string())
                .unwrap();
            m.predict(&m.terms(&net)).unwrap().latency_us / 1e3
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b;
        let mut sums = [0.0; 5];
        for i in 0..Nb201Arch::COUNT {
            let cell = Nb201Arch::from_index(i);
            let choices = nb201_choices(&cell);
            let looked_up = lut.latency_ms(&choices);
            sums[choices[4]] += looked_up;
            // Every 7th cell (the stride walks all edges' choices) against the model itself.
            if i % 7 == 0 {
                let predicted = predict(&cell);
                assert!(
                    close(looked_up, predicted),
                    "{cell}: {looked_up} vs {predicted}"
                );
                if i % 49 == 0 {
                    let expected = lut.expected_ms(&lut.one_hot(&choices));
                    assert!(
                        close(expected, predicted),
                        "{cell}: {expected} vs {predicted}"
                    );
                }
            }
        }
        // Additivity would make swapping edge 1->3 from skip to conv cost the same everywhere;
        // it costs nothing when node 1 is empty (edge 0->1 is none).
        let cell = |e0: EdgeOp, e4: EdgeOp| {
            let mut c = Nb201Arch::from_index(0);
            c.edges[0] = e0;
            c.edges[4] = e4;
            predict(&c)
        };
        let empty_node = cell(EdgeOp::None, EdgeOp::Conv3x3) - cell(EdgeOp::None, EdgeOp::Skip);
        let live_node = cell(EdgeOp::Skip, EdgeOp::Conv3x3) - cell(EdgeOp::Skip, EdgeOp::Skip);
        assert!(
            empty_node.abs() < 1e-9 && live_node > 1e-3,
            "{empty_node} {live_node}"
        );
        let uniform = vec![0.2; 5];
        for (c, sum) in sums.iter().enumerate() {
            let mut p = vec![uniform.clone(); 6];
            p[4] = lut.one_hot(&[0, 0, 0, 0, c, 0])[4].clone();
            let mean = sum / (Nb201Arch::COUNT / 5) as f64;
            assert!(close(lut.expected_ms(&p), mean));
        }
    }

    #[test]
    fn expectations_mix_linearly() {
        let lut = Lut::export(&model(), "mbv3", 160).unwrap();
        let uniform: Vec<Vec<f64>> = lut
            .decisions
            .iter()
            .map(|d| vec![1.0 / d.choices.len() as f64; d.choices.len()])
            .collect();
        let mean: f64 = lut.fixed_ms
            + lut
                .terms
                .iter()
                .map(|t| t.latency_ms.iter().sum::<f64>() / t.latency_ms.len() as f64)
                .sum::<f64>();
        assert!((lut.expected_ms(&uniform) - mean).abs() < 1e-9);
    }
}
