use super::*;
use hwnas_core::rng::SplitMix64;

/// Networks with random per-kind latency sums on the prior device and op counts, timed on a
/// device that runs `conv` `scale_conv` times and `pool` `scale_pool` times as long, plus
/// `per_op` µs an op and `intercept` µs a run, with relative noise `noise`.
fn device(n: usize, scales: (f64, f64), per_op: f64, intercept: f64, noise: f64) -> Vec<Sample> {
    let mut rng = SplitMix64::new(11);
    (0..n)
        .map(|_| {
            let conv = 500.0 + (3000.0 * rng.next_f64());
            let pool = 50.0 + (400.0 * rng.next_f64());
            let ops = (10.0 + (30.0 * rng.next_f64())).round();
            let y = intercept + scales.0 * conv + scales.1 * pool + per_op * ops;
            let y = y * (1.0 + noise * ((2.0 * rng.next_f64()) - 1.0));
            let sums = [("conv", conv), ("avgpool", pool), (OP_COUNT_NAME, ops)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            (sums, y)
        })
        .collect()
}

const OP_COUNT_NAME: &str = crate::calibrate::OP_COUNT;
const KINDS: [&str; 3] = ["conv", "avgpool", "linear"];

fn neutral() -> Prior {
    Prior {
        coefficients: BTreeMap::new(),
        intercept_us: 0.0,
    }
}

fn predict(cal: &Calibration, s: &Sample) -> f64 {
    cal.intercept_us
        + s.0
            .iter()
            .map(|(k, v)| v * cal.coefficient(k).unwrap_or(0.0))
            .sum::<f64>()
}

#[test]
fn many_networks_recover_each_kinds_own_scale() {
    let samples = device(80, (2.0, 5.0), 3.0, 200.0, 0.0);
    let cal = fit(&samples, &KINDS, &neutral()).unwrap().0;
    let c = |k| cal.coefficient(k).unwrap();
    assert!((c("conv") - 2.0).abs() < 0.05, "{cal:?}");
    assert!((c("avgpool") - 5.0).abs() < 0.25, "{cal:?}");
    assert!(cal.loo_rmspe < 0.01, "{cal:?}");
    // A kind no network had takes the common scale, not the prior's 1.
    assert!(c("linear") > 1.5, "{cal:?}");
    let post = cal.posterior.as_ref().unwrap();
    assert_eq!(post.columns.last().map(String::as_str), Some(INTERCEPT));
    assert_eq!(post.inverse.len(), post.columns.len());
}

#[test]
fn few_networks_keep_the_priors_shape_at_a_fitted_scale() {
    // The new device is the prior device 3x slower, all kinds alike: five networks find the
    // scale and leave the kinds at it.
    let samples = device(5, (3.0, 3.0), 0.0, 0.0, 0.02);
    let cal = fit(&samples, &KINDS, &neutral()).unwrap().0;
    for k in ["conv", "avgpool"] {
        let c = cal.coefficient(k).unwrap();
        assert!((c - 3.0).abs() < 0.3, "{k} {c} in {cal:?}");
    }
    let held_out = device(50, (3.0, 3.0), 0.0, 0.0, 0.0);
    for s in &held_out {
        let e = predict(&cal, s) / s.1 - 1.0;
        assert!(e.abs() < 0.05, "{e}");
    }
}

#[test]
fn no_term_comes_out_negative() {
    // A device whose pools cost nothing and whose noise pushes a free fit below zero.
    let samples = device(12, (1.0, 0.0), 0.0, 0.0, 0.08);
    let cal = fit(&samples, &KINDS, &neutral()).unwrap().0;
    assert!(cal.coefficients.iter().all(|c| *c >= 0.0), "{cal:?}");
    assert!(cal.intercept_us >= 0.0, "{cal:?}");
}

#[test]
fn too_few_networks_are_refused() {
    let samples = device(2, (1.0, 1.0), 0.0, 0.0, 0.0);
    assert!(matches!(
        fit(&samples, &KINDS, &neutral()),
        Err(CalibrationError::TooFew { need: 3, got: 2 })
    ));
}

/// Predictive variance averaged over `pool`, for a design of `picked` rows.
fn mean_variance(pool: &[(BTreeMap<String, f64>, f64)], picked: &[usize]) -> f64 {
    let samples: Vec<Sample> = picked.iter().map(|&i| pool[i].clone()).collect();
    let cal = fit(&samples, &KINDS, &neutral()).unwrap().0;
    let post = cal.posterior.unwrap();
    pool.iter()
        .map(|(v, y)| {
            let values: Vec<f64> = post
                .columns
                .iter()
                .map(|c| if c == INTERCEPT { 1.0 } else { v[c] })
                .collect();
            (post.relative_sd(&values, *y) / post.noise_rel).powi(2)
        })
        .sum::<f64>()
        / pool.len() as f64
}

#[test]
fn suggested_networks_narrow_predictions_more_than_random_ones() {
    let pool = device(300, (2.0, 5.0), 3.0, 200.0, 0.03);
    let picked = suggest(None, &pool, 10);
    assert_eq!(picked.len(), 10);
    let mut unique = picked.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10, "{picked:?}");
    assert_eq!(picked, suggest(None, &pool, 10), "deterministic");
    let suggested = mean_variance(&pool, &picked);
    // The first 10 of the pool are as random as any (the pool is seeded noise).
    let random = mean_variance(&pool, &(0..10).collect::<Vec<_>>());
    assert!(suggested < random, "suggested {suggested} random {random}");
    // From a fitted posterior too (the caller leaves measured networks out of the pool).
    let samples: Vec<Sample> = picked.iter().map(|&i| pool[i].clone()).collect();
    let cal = fit(&samples, &KINDS, &neutral()).unwrap().0;
    let next = suggest(cal.posterior.as_ref(), &pool, 5);
    assert!(next.iter().all(|i| *i < pool.len()));
    assert_eq!(suggest(None, &pool, 1000).len(), pool.len());
}
