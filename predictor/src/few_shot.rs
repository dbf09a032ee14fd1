//! Latency models learned from whole-network timings (`hwnas fit --networks`): few-shot
//! transfer to a device that cannot be profiled op by op.
//!
//! A network timed whole is still known op by op, so its latency is modelled as a calibration
//! models it ([`crate::calibrate`]):
//!
//! `latency = intercept + Σ_kind c_kind · Σ_{ops of kind} basis_us(op) + per_op · n_ops`
//!
//! where `basis_us` is a prior device's op latency (its table and regressor) or, with no prior,
//! a roofline estimate ([`crate::regress::OpRegressor::roofline`]). The fit is a Bayesian ridge
//! regression on relative errors, in two steps: one scale for the whole prior first (the new
//! device runs the prior's calibrated predictions `s` times slower, plus a fixed cost per run),
//! then every coefficient pulled toward that scale times the prior's own coefficient, with a
//! strength chosen by cross-validation. Few networks leave the kinds at the common scale; many
//! let each kind find its own. No term may be negative.
//!
//! The pull is a Gaussian prior, so the fit has a posterior ([`Posterior`]): each prediction
//! gets its own interval (wider for networks unlike the measured ones), and [`suggest`] picks
//! the networks whose timing would narrow the predictions of the candidates most (a greedy
//! I-optimal design).

use std::collections::BTreeMap;

use linfa_linalg::cholesky::InverseC;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::calibrate::{Calibration, CalibrationError, Form, Sample};
use crate::lsq::ridge_toward_through_origin;
use crate::metrics::relative_errors;

/// The intercept's column name in a [`Posterior`].
pub const INTERCEPT: &str = "intercept";

/// Pull strengths tried, relative to each column's energy in the data.
const STRENGTHS: [f64; 7] = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0];

/// The fewest networks a fit takes: a scale and a fixed cost need two, and leaving one out a
/// third.
pub const MIN_NETWORKS: usize = 3;

/// Above this many networks, the pull's strength is chosen by 10-fold cross-validation rather
/// than leaving each out.
const LOO_MAX: usize = 60;

/// What the prior says of each column before any network of the new device is seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Prior {
    /// Column (kind or count) → coefficient: the prior model's own, 1 for a kind it never
    /// calibrated, its per-op cost in µs for a count.
    pub coefficients: BTreeMap<String, f64>,
    pub intercept_us: f64,
}

impl Prior {
    fn coefficient(&self, column: &str) -> f64 {
        self.coefficients.get(column).copied().unwrap_or_else(|| {
            if crate::calibrate::is_count(column) {
                0.0
            } else {
                1.0
            }
        })
    }
}

/// The fit's Gaussian posterior, in relative units (each row divided by its latency).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Posterior {
    /// Columns of `inverse`: kinds and counts with a free coefficient, then [`INTERCEPT`].
    pub columns: Vec<String>,
    /// `(ZᵀZ + Λ)⁻¹`, Z the relative design over `columns` and Λ the prior's pull.
    pub inverse: Vec<Vec<f64>>,
    /// The residual standard deviation, relative.
    pub noise_rel: f64,
    /// The pull's strength the cross-validation chose.
    pub strength: f64,
}

impl Posterior {
    /// The relative standard deviation of a prediction `predicted_us` of a network whose
    /// column values are `values` (same order as `columns`; 1 for the intercept).
    pub fn relative_sd(&self, values: &[f64], predicted_us: f64) -> f64 {
        let z: Vec<f64> = values.iter().map(|v| v / predicted_us.max(1e-9)).collect();
        (self.noise_rel.powi(2) * (1.0 + quadratic(&self.inverse, &z))).sqrt()
    }
}

/// The 95% two-sided normal quantile: a prediction's interval is ±1.96 standard deviations.
pub const Z95: f64 = 1.96;

fn quadratic(m: &[Vec<f64>], z: &[f64]) -> f64 {
    m.iter()
        .zip(z)
        .map(|(row, zi)| zi * row.iter().zip(z).map(|(a, b)| a * b).sum::<f64>())
        .sum()
}

/// One fit: coefficients per column (the intercept last), which are free (not held at 0), and
/// each column's pull.
struct Fitted {
    coefficients: Vec<f64>,
    free: Vec<bool>,
    weights: Vec<f64>,
}

/// The design: each sample's column values (the intercept's is 1) and its latency.
struct Design {
    columns: Vec<String>,
    rows: Vec<Vec<f64>>,
    y: Vec<f64>,
}

impl Design {
    fn new(samples: &[Sample]) -> Design {
        let mut columns: Vec<String> = samples.iter().flat_map(|s| s.0.keys().cloned()).collect();
        columns.sort();
        columns.dedup();
        // A column that is zero in every network says nothing and cannot be fitted.
        columns.retain(|c| {
            samples
                .iter()
                .any(|s| s.0.get(c).is_some_and(|v| *v != 0.0))
        });
        columns.push(INTERCEPT.into());
        let rows = samples
            .iter()
            .map(|s| {
                columns
                    .iter()
                    .map(|c| match c.as_str() {
                        INTERCEPT => 1.0,
                        c => s.0.get(c).copied().unwrap_or(0.0),
                    })
                    .collect()
            })
            .collect();
        Design {
            columns,
            rows,
            y: samples.iter().map(|s| s.1).collect(),
        }
    }

    fn subset(&self, keep: &[usize]) -> Design {
        Design {
            columns: self.columns.clone(),
            rows: keep.iter().map(|&i| self.rows[i].clone()).collect(),
            y: keep.iter().map(|&i| self.y[i]).collect(),
        }
    }

    fn predict(&self, row: &[f64], coefficients: &[f64]) -> f64 {
        row.iter().zip(coefficients).map(|(x, c)| x * c).sum()
    }

    /// The prior's calibrated prediction of each row, intercept left out.
    fn prior_sums(&self, prior: &[f64]) -> Vec<f64> {
        let last = self.columns.len() - 1;
        self.rows
            .iter()
            .map(|r| self.predict(&r[..last], &prior[..last]))
            .collect()
    }

    /// Step one: latency ≈ s · (prior's prediction without intercept) + b, relative, s and b
    /// non-negative. Returns (s, b).
    fn common_scale(&self, prior: &[f64]) -> Result<(f64, f64), CalibrationError> {
        let one = Design {
            columns: vec!["scale".into(), INTERCEPT.into()],
            rows: self
                .prior_sums(prior)
                .iter()
                .map(|s| vec![*s, 1.0])
                .collect(),
            y: self.y.clone(),
        };
        let fitted = one.ridge(&[1.0, prior[prior.len() - 1]], 1e-3)?;
        Ok((fitted.coefficients[0], fitted.coefficients[1]))
    }

    /// The mean step two pulls toward: `s` times the prior's coefficients, and `b`.
    fn scaled(prior: &[f64], (s, b): (f64, f64)) -> Vec<f64> {
        let last = prior.len() - 1;
        prior[..last]
            .iter()
            .map(|c| c * s)
            .chain(std::iter::once(b))
            .collect()
    }

    /// Ridge on relative errors toward `mean`, pull `strength` times each column's energy; the
    /// most negative term held at 0 until none is.
    fn ridge(&self, mean: &[f64], strength: f64) -> Result<Fitted, CalibrationError> {
        let d = self.columns.len();
        let z: Vec<Vec<f64>> = self
            .rows
            .iter()
            .zip(&self.y)
            .map(|(r, y)| r.iter().map(|v| v / y.max(1e-9)).collect())
            .collect();
        let energy: Vec<f64> = (0..d)
            .map(|j| z.iter().map(|r| r[j] * r[j]).sum::<f64>())
            .collect();
        // A column these rows never have (a fold without pools) cannot be fitted: it keeps its
        // prior mean, which only the rows left out see.
        let absent: Vec<bool> = energy.iter().map(|e| *e == 0.0).collect();
        let mut free: Vec<bool> = absent.iter().map(|a| !a).collect();
        loop {
            let keep: Vec<usize> = (0..d).filter(|j| free[*j]).collect();
            let x: Vec<Vec<f64>> = z
                .iter()
                .map(|r| keep.iter().map(|j| r[*j]).collect())
                .collect();
            // Held and absent terms add 0 to these rows, so the target stays 1 for every row.
            let target = vec![1.0; z.len()];
            let priors: Vec<f64> = keep.iter().map(|j| mean[*j]).collect();
            let weights: Vec<f64> = keep
                .iter()
                .map(|j| (strength * energy[*j]).sqrt())
                .collect();
            let (kept, _) = ridge_toward_through_origin(&x, &target, &priors, &weights)
                .map_err(CalibrationError::Fit)?;
            let mut coefficients: Vec<f64> = (0..d)
                .map(|j| if absent[j] { mean[j] } else { 0.0 })
                .collect();
            for (j, c) in keep.iter().zip(&kept) {
                coefficients[*j] = *c;
            }
            // Scaled by each term's typical share of a prediction, so µs and factors compare.
            let worst = keep
                .iter()
                .filter(|j| coefficients[**j] < 0.0)
                .min_by(|a, b| {
                    (coefficients[**a] * energy[**a].sqrt())
                        .total_cmp(&(coefficients[**b] * energy[**b].sqrt()))
                });
            match worst {
                Some(&j) => free[j] = false,
                None => {
                    let weights = (0..d).map(|j| (strength * energy[j]).sqrt()).collect();
                    return Ok(Fitted {
                        coefficients,
                        free,
                        weights,
                    });
                }
            }
        }
    }

    /// Both steps on this design.
    fn fit(&self, prior: &[f64], strength: f64) -> Result<Fitted, CalibrationError> {
        let mean = Self::scaled(prior, self.common_scale(prior)?);
        self.ridge(&mean, strength)
    }

    /// Held-out relative errors of the two-step fit at `strength`: each network left out in
    /// turn, or ten folds for large designs.
    fn cross_validate(&self, prior: &[f64], strength: f64) -> Result<Vec<f64>, CalibrationError> {
        let n = self.y.len();
        let folds = if n > LOO_MAX { 10 } else { n };
        let mut predicted = vec![0.0; n];
        for f in 0..folds {
            let train: Vec<usize> = (0..n).filter(|i| i % folds != f).collect();
            let fitted = self.subset(&train).fit(prior, strength)?;
            for i in (0..n).filter(|i| i % folds == f) {
                predicted[i] = self.predict(&self.rows[i], &fitted.coefficients);
            }
        }
        Ok(relative_errors(&predicted, &self.y))
    }

    fn posterior(&self, fitted: &Fitted, strength: f64) -> Result<Posterior, CalibrationError> {
        let keep: Vec<usize> = (0..self.columns.len())
            .filter(|j| fitted.free[*j])
            .collect();
        let z: Vec<Vec<f64>> = self
            .rows
            .iter()
            .zip(&self.y)
            .map(|(r, y)| keep.iter().map(|j| r[*j] / y.max(1e-9)).collect())
            .collect();
        let p = keep.len();
        let a = Array2::from_shape_fn((p, p), |(i, j)| {
            let data: f64 = z.iter().map(|r| r[i] * r[j]).sum();
            let pull = if i == j {
                fitted.weights[keep[i]].powi(2)
            } else {
                0.0
            };
            // A tiny jitter keeps a column that never varies (a fixed stem) invertible.
            data + pull + if i == j { 1e-12 } else { 0.0 }
        });
        let inverse = a
            .invc()
            .map_err(|e| CalibrationError::Fit(format!("posterior: {e}")))?;
        let inverse: Vec<Vec<f64>> = inverse.outer_iter().map(|r| r.to_vec()).collect();
        let residuals = relative_errors(
            &self
                .rows
                .iter()
                .map(|r| self.predict(r, &fitted.coefficients))
                .collect::<Vec<_>>(),
            &self.y,
        );
        // Degrees of freedom used: the trace of the hat matrix.
        let dof: f64 = z.iter().map(|r| quadratic(&inverse, r)).sum();
        let rss: f64 = residuals.iter().map(|e| e * e).sum();
        let noise_rel = (rss / (self.y.len() as f64 - dof).max(1.0)).sqrt();
        Ok(Posterior {
            columns: keep.iter().map(|j| self.columns[*j].clone()).collect(),
            inverse,
            noise_rel,
            strength,
        })
    }
}

/// Fit a calibration to networks timed whole (`samples`: each network's basis latencies summed
/// per kind, its counts, and its measured latency in µs), starting from `prior`. `kinds` names
/// every kind a network may have: those the samples lack take the common scale. Returns the
/// calibration and each sample's cross-validated relative error (a timing far off the rest is
/// suspect).
pub fn fit(
    samples: &[Sample],
    kinds: &[&str],
    prior: &Prior,
) -> Result<(Calibration, Vec<f64>), CalibrationError> {
    if samples.len() < MIN_NETWORKS {
        return Err(CalibrationError::TooFew {
            need: MIN_NETWORKS,
            got: samples.len(),
        });
    }
    let design = Design::new(samples);
    let prior_vector: Vec<f64> = design
        .columns
        .iter()
        .map(|c| match c.as_str() {
            INTERCEPT => prior.intercept_us,
            c => prior.coefficient(c),
        })
        .collect();
    let mut best: Option<(f64, f64, Vec<f64>)> = None;
    for strength in STRENGTHS {
        let errors = design.cross_validate(&prior_vector, strength)?;
        let rmspe = (errors.iter().map(|e| e * e).sum::<f64>() / errors.len() as f64).sqrt();
        if best.as_ref().is_none_or(|b| rmspe < b.0) {
            best = Some((rmspe, strength, errors));
        }
    }
    let (loo_rmspe, strength, errors) = best.expect("strengths are tried");
    let fitted = design.fit(&prior_vector, strength)?;
    let posterior = design.posterior(&fitted, strength)?;
    let (scale, _) = design.common_scale(&prior_vector)?;
    let mut columns: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    columns.extend(
        design.columns[..design.columns.len() - 1]
            .iter()
            .filter(|c| !kinds.contains(&c.as_str()))
            .cloned(),
    );
    let coefficients = columns
        .iter()
        .map(|c| match design.columns.iter().position(|d| d == c) {
            Some(j) => fitted.coefficients[j],
            // A kind no network has: the common scale times the prior's coefficient.
            None => scale * prior.coefficient(c),
        })
        .collect();
    let mut abs: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    abs.sort_by(f64::total_cmp);
    let calibration = Calibration {
        form: Form::PerKind,
        kinds: columns,
        coefficients,
        intercept_us: fitted.coefficients[design.columns.len() - 1],
        fixed_kinds: Vec::new(),
        networks: samples.len(),
        loo_rmspe,
        interval_rel: hwnas_core::stats::quantile_sorted(&abs, 0.95),
        loo_median: hwnas_core::stats::quantile_sorted(&abs, 0.5),
        posterior: Some(posterior),
    };
    Ok((calibration, errors))
}

/// The `k` candidates whose timing would narrow the predictions of all candidates most,
/// greedily: each pick is the one that cuts the predictive variance summed over the candidates
/// most, given the networks timed and the picks before it (which, for a linear model, needs no
/// timing). Summed over the candidates (I-optimal design) rather than the pick's own variance
/// (D-optimal-like): the latter picked the space's extremes — all-skip and all-conv cells —
/// which a model that is not exactly linear fits at the cost of the typical networks (20 such
/// picks on the int8 table's prior: 63% of random nb201 networks within ±10%). `candidates` are column values
/// per network and the model's prediction of it in µs; `posterior` is the fitted model's, or
/// `None` before any network is measured (then the pull alone, on every column).
pub fn suggest(
    posterior: Option<&Posterior>,
    candidates: &[(BTreeMap<String, f64>, f64)],
    k: usize,
) -> Vec<usize> {
    let columns: Vec<String> = match posterior {
        Some(p) => p.columns.clone(),
        None => {
            let mut c: Vec<String> = candidates
                .iter()
                .flat_map(|s| s.0.keys().cloned())
                .collect();
            c.sort();
            c.dedup();
            c.push(INTERCEPT.into());
            c
        }
    };
    let z: Vec<Vec<f64>> = candidates
        .iter()
        .map(|(values, predicted)| {
            columns
                .iter()
                .map(|c| match c.as_str() {
                    INTERCEPT => 1.0,
                    c => values.get(c).copied().unwrap_or(0.0),
                } / predicted.max(1e-9))
                .collect()
        })
        .collect();
    let p = columns.len();
    let mut inverse: Vec<Vec<f64>> = match posterior {
        Some(post) => post.inverse.clone(),
        None => (0..p)
            .map(|i| {
                // The default pull on each column, as if `strength` 0.1 on the candidates'
                // mean energy: the first picks span the columns.
                let energy = z.iter().map(|r| r[i] * r[i]).sum::<f64>() / z.len().max(1) as f64;
                let mut row = vec![0.0; p];
                row[i] = 1.0 / (0.1 * energy).max(1e-12);
                row
            })
            .collect(),
    };
    // The candidates' second moment: the variance summed over them is trace(A⁻¹ M).
    let moment: Vec<Vec<f64>> = (0..p)
        .map(|i| {
            (0..p)
                .map(|j| z.iter().map(|r| r[i] * r[j]).sum())
                .collect()
        })
        .collect();
    let mut picked = Vec::with_capacity(k);
    for _ in 0..k.min(candidates.len()) {
        // Timing x cuts the summed variance by uᵀMu / (1 + xᵀu), u = A⁻¹x (Sherman-Morrison).
        let best = (0..z.len())
            .filter(|i| !picked.contains(i))
            .map(|i| {
                let u = times(&inverse, &z[i]);
                let own: f64 = u.iter().zip(&z[i]).map(|(a, b)| a * b).sum();
                (i, quadratic(&moment, &u) / (1.0 + own), u, own)
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((i, _, u, own)) = best else { break };
        for (r, ur) in inverse.iter_mut().zip(&u) {
            for (v, uc) in r.iter_mut().zip(&u) {
                *v -= ur * uc / (1.0 + own);
            }
        }
        picked.push(i);
    }
    picked
}

fn times(m: &[Vec<f64>], x: &[f64]) -> Vec<f64> {
    m.iter()
        .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

#[cfg(test)]
mod tests;
