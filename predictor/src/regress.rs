//! Op-level regression: latency of shapes the table lacks.
//!
//! The target is `ln(latency)` (latencies span five orders of magnitude); the features are
//! [`op_features`]. Three model families are compared on held-out rows of a real table
//! ([`compare`]): linfa's least squares on the features, linfa's Gaussian-kernel SVR on
//! standardised features, and gradient-boosted trees ([`crate::gbdt`]). `hwnas fit` keeps the
//! one with the lowest held-out RMSPE.

use std::time::Instant;

use hwnas_core::Op;
use hwnas_core::rng::SplitMix64;
use linfa::DatasetBase;
use linfa::traits::{Fit, Predict};
use linfa_svm::Svm;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::features::{OP_FEATURES, op_features};
use crate::gbdt::{Gbdt, GbdtParams, records};
use crate::lsq::ridge_toward;
use crate::metrics::Accuracy;

/// Latencies below this are clamped before taking logs (the resolution of a lone-op timing).
const FLOOR_US: f64 = 0.05;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Linear,
    Svr,
    Gbdt,
    /// No fit: FLOPs and bytes at nominal rates ([`OpRegressor::roofline`]), the basis of models
    /// learned from whole-network timings without a prior device.
    Roofline,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Linear, Family::Svr, Family::Gbdt];
    pub fn name(self) -> &'static str {
        match self {
            Family::Linear => "linfa least squares on log features",
            Family::Svr => "linfa SVR, Gaussian kernel, standardised features",
            Family::Gbdt => "gradient-boosted trees (300 x depth 5)",
            Family::Roofline => "roofline: FLOPs at 20 GFLOP/s plus bytes at 10 GB/s, not fitted",
        }
    }
}

/// Feature standardisation (mean 0, variance 1), fitted on the training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl Scaler {
    fn fit(x: &[Vec<f64>]) -> Scaler {
        let d = x[0].len();
        let n = x.len() as f64;
        let mean: Vec<f64> = (0..d)
            .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n)
            .collect();
        let std = (0..d)
            .map(|j| {
                let v = x.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n;
                if v > 1e-12 { v.sqrt() } else { 1.0 }
            })
            .collect();
        Scaler { mean, std }
    }
    fn apply(&self, row: &[f64]) -> Vec<f64> {
        row.iter()
            .zip(&self.mean)
            .zip(&self.std)
            .map(|((v, m), s)| (v - m) / s)
            .collect()
    }
}

/// A fitted op regressor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OpRegressor {
    Linear {
        scaler: Scaler,
        coefficients: Vec<f64>,
        intercept: f64,
    },
    Svr {
        scaler: Scaler,
        model: Box<Svm<f64, f64>>,
    },
    Gbdt(Gbdt),
    /// `flops / flops_per_us + bytes / bytes_per_us`: a device-free estimate whose scale per
    /// kind of op a calibration then fits (`hwnas fit --networks` without `--prior`).
    Roofline {
        flops_per_us: f64,
        bytes_per_us: f64,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("fitting the op regressor: {0}")]
pub struct RegressError(String);

fn log_target(us: f64) -> f64 {
    us.max(FLOOR_US).ln()
}

impl OpRegressor {
    /// The roofline estimate at nominal rates of one CPU core. Only the ratio of the two rates
    /// shapes predictions: a calibration scales each kind of op.
    pub fn roofline() -> OpRegressor {
        OpRegressor::Roofline {
            flops_per_us: 2e4,
            bytes_per_us: 1e4,
        }
    }

    /// Fit a family on (op, measured µs) rows.
    pub fn fit(family: Family, rows: &[(Op, f64)]) -> Result<OpRegressor, RegressError> {
        if rows.len() < 5 {
            return Err(RegressError(format!(
                "{} rows; at least 5 are needed",
                rows.len()
            )));
        }
        let x: Vec<Vec<f64>> = rows
            .iter()
            .map(|(op, _)| op_features(op).to_vec())
            .collect();
        let y: Array1<f64> = rows.iter().map(|(_, us)| log_target(*us)).collect();
        let err = |e: String| RegressError(e);
        Ok(match family {
            Family::Roofline => Self::roofline(),
            Family::Linear | Family::Svr => {
                let scaler = Scaler::fit(&x);
                let xs: Vec<Vec<f64>> = x.iter().map(|r| scaler.apply(r)).collect();
                let ds = DatasetBase::new(records(&xs), y);
                if family == Family::Linear {
                    // A light ridge toward 0, so that constant or collinear features (bytes in
                    // and out of same-shape ops) leave the problem well posed.
                    let d = xs[0].len();
                    let (coefficients, intercept) = ridge_toward(
                        &xs,
                        &ds.targets().to_vec(),
                        &vec![0.0; d],
                        &vec![1e-3f64.sqrt(); d],
                    )
                    .map_err(err)?;
                    OpRegressor::Linear {
                        scaler,
                        coefficients,
                        intercept,
                    }
                } else {
                    let m = Svm::<f64, f64>::params()
                        .c_svr(10.0, Some(0.02))
                        .gaussian_kernel(OP_FEATURES.len() as f64)
                        .fit(&ds)
                        .map_err(|e| err(e.to_string()))?;
                    OpRegressor::Svr {
                        scaler,
                        model: Box::new(m),
                    }
                }
            }
            Family::Gbdt => OpRegressor::Gbdt(
                GbdtParams::default()
                    .fit(&DatasetBase::new(records(&x), y))
                    .map_err(|e| err(e.to_string()))?,
            ),
        })
    }

    pub fn family(&self) -> Family {
        match self {
            OpRegressor::Linear { .. } => Family::Linear,
            OpRegressor::Svr { .. } => Family::Svr,
            OpRegressor::Gbdt(_) => Family::Gbdt,
            OpRegressor::Roofline { .. } => Family::Roofline,
        }
    }

    /// Predicted latency of an op, in µs.
    pub fn predict_us(&self, op: &Op) -> f64 {
        match self {
            OpRegressor::Linear {
                scaler,
                coefficients,
                intercept,
            } => (intercept
                + scaler
                    .apply(&op_features(op))
                    .iter()
                    .zip(coefficients)
                    .map(|(x, c)| x * c)
                    .sum::<f64>())
            .exp(),
            OpRegressor::Svr { scaler, model } => {
                let f = scaler.apply(&op_features(op));
                let row = Array2::from_shape_vec((1, f.len()), f).expect("one row");
                model.predict(&row)[0].exp()
            }
            OpRegressor::Gbdt(g) => g.predict_one(&op_features(op)).exp(),
            // No features: the roofline reads FLOPs and bytes alone, on every op of a model
            // fitted to timings without a prior.
            OpRegressor::Roofline {
                flops_per_us,
                bytes_per_us,
            } => op.flops() as f64 / flops_per_us + op.bytes() as f64 / bytes_per_us,
        }
    }
}

/// One family's score on held-out ops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub family: Family,
    pub train: usize,
    pub test: usize,
    pub accuracy: Accuracy,
    pub fit_ms: f64,
}

/// Fit every family on a seeded random `1 - holdout` of the rows and score it on the rest.
/// Rows under 5 µs are left out of the score: their relative error is timing resolution, not
/// model quality (they still train).
pub fn compare(
    rows: &[(Op, f64)],
    holdout: f64,
    seed: u64,
) -> Result<Vec<Comparison>, RegressError> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let n_test = ((rows.len() as f64) * holdout).round() as usize;
    let (test_idx, train_idx) = order.split_at(n_test.min(rows.len()));
    let train: Vec<(Op, f64)> = train_idx.iter().map(|&i| rows[i]).collect();
    let test: Vec<(Op, f64)> = test_idx
        .iter()
        .map(|&i| rows[i])
        .filter(|(_, us)| *us >= 5.0)
        .collect();
    if test.is_empty() {
        return Err(RegressError(
            "no held-out op of 5 us or more to score on".into(),
        ));
    }
    Family::ALL
        .into_iter()
        .map(|family| {
            let start = Instant::now();
            let model = OpRegressor::fit(family, &train)?;
            let fit_ms = start.elapsed().as_secs_f64() * 1e3;
            let predicted: Vec<f64> = test.iter().map(|(op, _)| model.predict_us(op)).collect();
            let measured: Vec<f64> = test.iter().map(|(_, us)| *us).collect();
            Ok(Comparison {
                family,
                train: train.len(),
                test: test.len(),
                accuracy: Accuracy::of(&predicted, &measured),
                fit_ms,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwnas_profiler::backend::mock::MockDevice;

    /// Ops of many shapes, with the mock device's exact law as their latency.
    fn law_rows() -> Vec<(Op, f64)> {
        let dev = MockDevice::default();
        let mut rows = Vec::new();
        for c in [8, 16, 24, 32, 48, 64] {
            for hw in [7, 14, 28, 56] {
                for k in [1, 3, 5] {
                    let key =
                        format!("conv-in:1x{c}x{hw}x{hw}-out:{c}-k:{k}-s:1-g:1-pre:none-act:relu");
                    let op = Op::from_key(&key).unwrap();
                    rows.push((op, dev.true_latency_us(&op)));
                }
                let add = Op::from_key(&format!("add-in:1x{c}x{hw}x{hw}")).unwrap();
                rows.push((add, dev.true_latency_us(&add)));
            }
        }
        rows
    }

    #[test]
    fn every_family_learns_a_smooth_cost_law() {
        let rows = law_rows();
        let scores = compare(&rows, 0.25, 1).unwrap();
        assert_eq!(scores.len(), 3);
        for s in &scores {
            // The law is smooth in the log features: every family should get close.
            assert!(s.accuracy.rmspe < 0.35, "{:?}: {:?}", s.family, s.accuracy);
            assert!(
                s.accuracy.kendall_tau > 0.8,
                "{:?}: {:?}",
                s.family,
                s.accuracy
            );
        }
    }

    #[test]
    fn regressors_round_trip_through_json() {
        let rows = law_rows();
        for family in Family::ALL {
            let m = OpRegressor::fit(family, &rows).unwrap();
            let back: OpRegressor =
                serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
            let op = rows[7].0;
            assert_eq!(back.predict_us(&op), m.predict_us(&op), "{family:?}");
        }
        assert!(OpRegressor::fit(Family::Gbdt, &rows[..3]).is_err());
    }
}
