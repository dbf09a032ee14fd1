//! Per-choice latency tables for differentiable (one-shot) search: DARTS-, ProxylessNAS- and
//! FBNet-style training loops add the expected latency `fixed + Σ_decisions Σ_choices p · ms`
//! to their loss. The table is cut from a latency model, so for a one-hot choice of a real
//! architecture the expected latency equals the model's prediction of it exactly.
//!
//! Only spaces whose predicted latency is a sum over independent decisions get one. mbv3 at a
//! fixed resolution is (each block's op depends only on its own kernel and expand ratio, and a
//! block that does not run costs nothing). nb201 is not: an empty node silences every edge
//! leaving it, and a node sums its live inputs with one add fewer than it has inputs. The
//! additive table closest to this CPU's nb201 model (least squares over all 15,625 cells) was
//! off by 31% RMS in relative terms (56% fitted on ms), 22% of cells within ±10%: no table to
//! hand a training loop, so nb201 gets none.

use hwnas_predictor::{LatencyModel, ModelError, Term};
use hwnas_profiler::Op;
use serde::{Deserialize, Serialize};

use crate::space::mbv3::{self, EXPANDS, KERNELS, MAX_DEPTH, Mbv3Arch, RESOLUTIONS, STAGES};

pub const SCHEMA: &str = "hwnas-lut/1";

/// One decision and the predicted latency of each of its choices, in ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub name: String,
    pub choices: Vec<String>,
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
}

#[derive(Debug, thiserror::Error)]
pub enum LutError {
    #[error(
        "space `{0}` has no per-choice latency table: its latency is not a sum over independent choices (mbv3 has one)"
    )]
    NotAdditive(String),
    #[error("resolution {0} is not one of mbv3's {RESOLUTIONS:?}")]
    Resolution(u32),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// The name of a running block's choice.
fn choice_name(k: u32, e: u32) -> String {
    format!("k{k}-e{e}")
}

/// The choice a stage's depth leaves to a block that does not run.
pub const SKIP: &str = "skip";

impl Lut {
    /// The table of `space` at `resolution` from a latency model.
    pub fn export(model: &LatencyModel, space: &str, resolution: u32) -> Result<Lut, LutError> {
        if space != "mbv3" {
            return Err(LutError::NotAdditive(space.into()));
        }
        if !RESOLUTIONS.contains(&resolution) {
            return Err(LutError::Resolution(resolution));
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
        for s in 0..STAGES {
            for b in 0..MAX_DEPTH {
                // The first two blocks of a stage always run (depth >= 2).
                let mut choices = if b < 2 {
                    vec![]
                } else {
                    vec![SKIP.to_string()]
                };
                let mut latency_ms = if b < 2 { vec![] } else { vec![0.0] };
                for k in KERNELS {
                    for e in EXPANDS {
                        choices.push(choice_name(k, e));
                        latency_ms.push(share(mbv3::stage_block(
                            inputs[s * MAX_DEPTH + b],
                            s,
                            b,
                            k,
                            e,
                        ))?);
                    }
                }
                decisions.push(Decision {
                    name: format!("stage{}.block{}", s + 1, b),
                    choices,
                    latency_ms,
                });
            }
        }
        Ok(Lut {
            schema: SCHEMA.into(),
            space: space.into(),
            device: model.device.clone(),
            resolution,
            fixed_ms,
            decisions,
        })
    }

    /// The expected latency under one probability vector per decision, ms.
    pub fn expected_ms(&self, probabilities: &[Vec<f64>]) -> f64 {
        self.fixed_ms
            + self
                .decisions
                .iter()
                .zip(probabilities)
                .map(|(d, p)| {
                    d.latency_ms
                        .iter()
                        .zip(p)
                        .map(|(ms, p)| ms * p)
                        .sum::<f64>()
                })
                .sum::<f64>()
    }

    /// The one-hot probabilities of an architecture (at this table's resolution).
    pub fn one_hot(&self, arch: &Mbv3Arch) -> Vec<Vec<f64>> {
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
                d.choices
                    .iter()
                    .map(|c| f64::from(u8::from(*c == name)))
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwnas_profiler::rng::SplitMix64;
    use hwnas_profiler::table::{LatencyTable, Row};

    /// A model of every mbv3 op with made-up latencies (a function of FLOPs), calibrated
    /// with a per-op cost and an intercept.
    fn model() -> LatencyModel {
        use crate::space::SearchSpace;
        use hwnas_profiler::measure::Measurement;
        use hwnas_profiler::stats::Stats;
        let rows = crate::space::mbv3::Mbv3
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
    fn a_one_hot_choice_costs_exactly_what_the_model_predicts() {
        let m = model();
        let mut rng = SplitMix64::new(4);
        for r in RESOLUTIONS {
            let lut = Lut::export(&m, "mbv3", r).unwrap();
            assert_eq!(lut.decisions.len(), 20);
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
                let expected = lut.expected_ms(&lut.one_hot(&arch));
                assert!(
                    (expected - predicted).abs() < 1e-9 * predicted,
                    "{arch}: {expected} vs {predicted}"
                );
            }
        }
        assert!(matches!(
            Lut::export(&m, "nb201", 224),
            Err(LutError::NotAdditive(_))
        ));
        assert!(matches!(
            Lut::export(&m, "mbv3", 225),
            Err(LutError::Resolution(225))
        ));
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
                .decisions
                .iter()
                .map(|d| d.latency_ms.iter().sum::<f64>() / d.choices.len() as f64)
                .sum::<f64>();
        assert!((lut.expected_ms(&uniform) - mean).abs() < 1e-9);
    }
}
