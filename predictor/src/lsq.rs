//! Least squares with a ridge pull toward priors, the one solver behind the op regressor's
//! linear family and the calibration.

use linfa::DatasetBase;
use linfa::traits::Fit;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};

/// Fit `y ≈ intercept + Σ_j coefficient_j · x_j` (linfa's least squares), pulling each
/// coefficient toward `priors[j]` with weight `weights[j]`: one extra row per column,
/// `weights[j] · e_j` with target `weights[j] · priors[j]`. The intercept is free. All-zero
/// weights give plain least squares (no extra rows: they upset the solver). Returns
/// (coefficients, intercept).
pub fn ridge_toward(
    x: &[Vec<f64>],
    y: &[f64],
    priors: &[f64],
    weights: &[f64],
) -> Result<(Vec<f64>, f64), String> {
    solve(x, y, priors, weights, true)
}

/// [`ridge_toward`] with the intercept held at 0. Returns (coefficients, 0).
pub fn ridge_toward_through_origin(
    x: &[Vec<f64>],
    y: &[f64],
    priors: &[f64],
    weights: &[f64],
) -> Result<(Vec<f64>, f64), String> {
    solve(x, y, priors, weights, false)
}

fn solve(
    x: &[Vec<f64>],
    y: &[f64],
    priors: &[f64],
    weights: &[f64],
    intercept: bool,
) -> Result<(Vec<f64>, f64), String> {
    let (n, d) = (x.len(), x.first().map_or(0, Vec::len));
    if n == 0 || y.len() != n || priors.len() != d || weights.len() != d {
        return Err(format!(
            "ridge: {n} rows of {d} columns, {} targets, {} priors, {} weights",
            y.len(),
            priors.len(),
            weights.len()
        ));
    }
    let extra = if weights.iter().any(|w| *w > 0.0) {
        d
    } else {
        0
    };
    let ones = usize::from(intercept);
    let records = Array2::from_shape_fn((n + extra, d + ones), |(i, j)| match (i < n, j < d) {
        (true, true) => x[i][j],
        (true, false) => 1.0,
        (false, true) if i - n == j => weights[j],
        _ => 0.0,
    });
    let targets: Array1<f64> = (0..n + extra)
        .map(|i| {
            if i < n {
                y[i]
            } else {
                weights[i - n] * priors[i - n]
            }
        })
        .collect();
    let fitted = LinearRegression::new()
        .with_intercept(false)
        .fit(&DatasetBase::new(records, targets))
        .map_err(|e| e.to_string())?;
    let p = fitted.params().to_vec();
    Ok((p[..d].to_vec(), if intercept { p[d] } else { 0.0 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_least_squares_recovers_a_line_and_the_pull_moves_toward_the_prior() {
        let x: Vec<Vec<f64>> = (0..10).map(|i| vec![i as f64]).collect();
        let y: Vec<f64> = (0..10).map(|i| 3.0 + 2.0 * i as f64).collect();
        let (c, b) = ridge_toward(&x, &y, &[0.0], &[0.0]).unwrap();
        assert!((c[0] - 2.0).abs() < 1e-9 && (b - 3.0).abs() < 1e-9);
        let (pulled, _) = ridge_toward(&x, &y, &[1.0], &[20.0]).unwrap();
        assert!(pulled[0] < 2.0 && pulled[0] > 1.0, "{pulled:?}");
        assert!(ridge_toward(&x, &y[..3], &[0.0], &[0.0]).is_err());
        let (c, b) = ridge_toward_through_origin(&x, &y, &[0.0], &[0.0]).unwrap();
        // Through the origin: Σxy / Σx² = (3·45 + 2·285) / 285.
        assert_eq!(b, 0.0);
        assert!(
            (c[0] - (3.0 * 45.0 + 2.0 * 285.0) / 285.0).abs() < 1e-9,
            "{c:?}"
        );
    }
}
