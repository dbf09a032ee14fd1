//! How good predictions are, against measurements; and how well a measurement can order
//! networks at all ([`noise_sigma`], [`expected_tau`]).

use std::f64::consts::SQRT_2;

use hwnas_core::stats::quantile_sorted;
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

/// The relative noise of one measurement (a standard deviation), from networks measured twice
/// (`first[i]`, `again[i]`): the spread of `ln(again / first)` about its median — a shift of a
/// whole sitting moves every network alike and reorders none — as 1.4826 × its median absolute
/// deviation, over √2 for one measurement of the pair. `None` below three pairs.
pub fn noise_sigma(first: &[f64], again: &[f64]) -> Option<f64> {
    let mut logs: Vec<f64> = first
        .iter()
        .zip(again)
        .filter(|(a, b)| **a > 0.0 && **b > 0.0)
        .map(|(a, b)| (b / a).ln())
        .collect();
    if logs.len() < 3 {
        return None;
    }
    logs.sort_by(f64::total_cmp);
    let middle = quantile_sorted(&logs, 0.5);
    let mut deviations: Vec<f64> = logs.iter().map(|l| (l - middle).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    Some(1.4826 * quantile_sorted(&deviations, 0.5) / SQRT_2)
}

/// The Kendall tau that measurements with relative noise `sigma` (a standard deviation) are
/// expected to reach against the true order of networks of these latencies: a pair swaps when
/// the difference of its two errors (standard deviation σ√2) exceeds its log gap `g`, which
/// happens with probability Φ(−g / σ√2) = erfc(g / 2σ) / 2. Networks of a narrow space are close
/// together, so the same noise costs them more of their order than a wide space's.
pub fn expected_tau(latencies: &[f64], sigma: f64) -> f64 {
    let n = latencies.len();
    if n < 2 || sigma <= 0.0 {
        return 1.0;
    }
    let mut swaps = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            let gap = (latencies[i] / latencies[j]).ln().abs();
            swaps += 0.5 * libm::erfc(gap / (2.0 * sigma));
        }
    }
    1.0 - 2.0 * swaps / (n * (n - 1) / 2) as f64
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

    /// Seeded standard normal draws (Box-Muller).
    fn normals(rng: &mut hwnas_core::rng::SplitMix64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let (u, v) = (rng.next_f64().max(1e-12), rng.next_f64());
                (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            })
            .collect()
    }

    #[test]
    fn the_noise_of_a_measurement_and_the_order_it_keeps_match_a_simulation() {
        // 30 networks over 28-47 ms (the vit space's spread), measured with 1% noise twice,
        // the second sitting 5% slower throughout: the shift is no noise.
        let mut rng = hwnas_core::rng::SplitMix64::new(7);
        let truth: Vec<f64> = (0..30)
            .map(|_| 28.0 * (0.52 * rng.next_f64()).exp())
            .collect();
        let (mut sigmas, mut taus) = (Vec::new(), Vec::new());
        for _ in 0..400 {
            let noisy = |rng: &mut hwnas_core::rng::SplitMix64, level: f64| -> Vec<f64> {
                let e = normals(rng, truth.len());
                truth
                    .iter()
                    .zip(e)
                    .map(|(t, e)| level * t * (0.01 * e).exp())
                    .collect()
            };
            let (first, again) = (noisy(&mut rng, 1.0), noisy(&mut rng, 1.05));
            sigmas.push(noise_sigma(&first, &again).unwrap());
            taus.push(kendall_tau(&first, &truth));
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!((mean(&sigmas) - 0.01).abs() < 0.001, "{}", mean(&sigmas));
        let expected = expected_tau(&truth, 0.01);
        assert!(
            (mean(&taus) - expected).abs() < 0.01,
            "{} {expected}",
            mean(&taus)
        );
        // Less noise keeps more of the order; none keeps all of it.
        assert!(expected_tau(&truth, 0.004) > expected + 0.02, "{expected}");
        assert_eq!(expected_tau(&truth, 0.0), 1.0);
        assert_eq!(noise_sigma(&[1.0, 2.0], &[1.0, 2.0]), None);
    }
}
