//! How good predictions are, against measurements.

use serde::{Deserialize, Serialize};

/// Accuracy of `predicted` against `measured` (same order, same unit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub n: usize,
    /// Fraction within ±5% and ±10% of the measurement.
    pub within_5: f64,
    pub within_10: f64,
    /// Root mean square percentage error, as a fraction.
    pub rmspe: f64,
    /// Mean signed relative error (bias), as a fraction.
    pub bias: f64,
    /// Rank correlation (tau-b): does the predictor order the networks as the device does?
    pub kendall_tau: f64,
    /// Spearman's rank correlation, the figure few-shot predictors (HELP, NASFLAT) report.
    #[serde(default)]
    pub spearman_rho: f64,
}

pub fn relative_errors(predicted: &[f64], measured: &[f64]) -> Vec<f64> {
    predicted
        .iter()
        .zip(measured)
        .map(|(p, m)| p / m - 1.0)
        .collect()
}

/// Kendall's tau-b, O(n²) (validation sets are small).
pub fn kendall_tau(a: &[f64], b: &[f64]) -> f64 {
    let (mut concordant, mut discordant, mut ties_a, mut ties_b) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            let (da, db) = (a[i] - a[j], b[i] - b[j]);
            if da == 0.0 && db == 0.0 {
                continue;
            } else if da == 0.0 {
                ties_a += 1.0;
            } else if db == 0.0 {
                ties_b += 1.0;
            } else if (da > 0.0) == (db > 0.0) {
                concordant += 1.0;
            } else {
                discordant += 1.0;
            }
        }
    }
    let denom = ((concordant + discordant + ties_a) * (concordant + discordant + ties_b)).sqrt();
    if denom == 0.0 {
        0.0
    } else {
        (concordant - discordant) / denom
    }
}

/// Ranks from 1, ties given their mean rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            out[o] = mean;
        }
        i = j + 1;
    }
    out
}

/// Spearman's rho: the Pearson correlation of the ranks (0 when either side is constant).
pub fn spearman_rho(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len().max(1) as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

impl Accuracy {
    pub fn of(predicted: &[f64], measured: &[f64]) -> Accuracy {
        let rel = relative_errors(predicted, measured);
        let n = rel.len().max(1) as f64;
        let within = |t: f64| rel.iter().filter(|e| e.abs() <= t).count() as f64 / n;
        Accuracy {
            n: rel.len(),
            within_5: within(0.05),
            within_10: within(0.10),
            rmspe: (rel.iter().map(|e| e * e).sum::<f64>() / n).sqrt(),
            bias: rel.iter().sum::<f64>() / n,
            kendall_tau: kendall_tau(predicted, measured),
            spearman_rho: spearman_rho(predicted, measured),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_form_cases() {
        let m = [100.0, 200.0, 300.0, 400.0];
        let p = [104.0, 180.0, 300.0, 460.0];
        let a = Accuracy::of(&p, &m);
        assert_eq!(a.within_5, 0.5);
        assert_eq!(a.within_10, 0.75);
        let rmspe = ((0.04f64.powi(2) + 0.1f64.powi(2) + 0.0 + 0.15f64.powi(2)) / 4.0).sqrt();
        assert!((a.rmspe - rmspe).abs() < 1e-12);
        assert_eq!(a.kendall_tau, 1.0);
        assert_eq!(a.spearman_rho, 1.0);
        // Ranks 1,2,3,4 against 1,3,2,4: rho = 1 - 6·2 / (4·15).
        assert!((spearman_rho(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]) - 0.8).abs() < 1e-12);
        // Ties take their mean rank: [1, 2.5, 2.5, 4] against [1, 2, 3, 4].
        let tied = spearman_rho(&[1.0, 5.0, 5.0, 9.0], &[1.0, 2.0, 3.0, 4.0]);
        assert!((tied - 4.5 / (4.5f64 * 5.0).sqrt()).abs() < 1e-12, "{tied}");
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        assert!(
            (kendall_tau(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]) - 4.0 / 6.0).abs() < 1e-12
        );
    }
}
