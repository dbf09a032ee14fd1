//! Few-shot latency models (`fit --networks`) on real timings of this project's CPU, treated
//! as a device that can only be timed whole: 400 nb201 and 400 mbv3 networks measured end to
//! end once (`scripts/few_shot_data.sh` writes them), 200 of each kept as the pool a fit draws
//! from and 200 held out. From 10, 20, 50 and 100 networks of the pool, random or suggested
//! (in rounds of five, each fit suggesting the next round), with no prior, with the CPU's own
//! op table as prior, and with another precision's (int8) or execution provider's (OpenVINO)
//! table as the "other device".
//!
//! `cargo test --release --test few_shot -- --nocapture` prints the table the README shows.

use std::path::{Path, PathBuf};

use hwnas_core::Precision;
use hwnas_core::network::Network;
use hwnas_core::rng::SplitMix64;
use hwnas_core::table::LatencyTable;
use hwnas_predictor::LatencyModel;
use hwnas_predictor::metrics::Accuracy;
use hwnas_search::arch_table::{ArchTable, ValueKind};
use hwnas_search::space::{SearchSpace, builtin};

const SIZES: [usize; 4] = [10, 20, 50, 100];
const RANDOM_DRAWS: u64 = 5;
/// Networks timed per round of suggestions.
const ROUND: usize = 5;

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/few_shot")
        .join(file)
}

/// The timed networks in a seeded order: (network, µs).
fn timings(space: &dyn SearchSpace) -> Vec<(Network, f64)> {
    let file = data(&format!("cpu-{}-networks.csv", space.name()));
    let table = ArchTable::read(&file, None, ValueKind::LatencyMs, space).unwrap();
    let mut rows: Vec<(String, f64)> = table.iter().map(|(a, ms)| (a.into(), ms)).collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rng = SplitMix64::new(2026);
    for i in (1..rows.len()).rev() {
        rows.swap(i, rng.below(i + 1));
    }
    rows.into_iter()
        .map(|(a, ms)| (space.network(&a).unwrap(), ms * 1e3))
        .collect()
}

/// A prior: a device's op table as a model, uncalibrated (what `fit --table T --calibrate 0`
/// writes, less the regressor: the tables cover their space).
fn prior(table: &str) -> LatencyModel {
    let path = data(table);
    LatencyModel::from_table(&LatencyTable::read(&path).unwrap(), &path)
}

struct Score {
    rho: f64,
    within_10: f64,
    coverage: f64,
}

fn score(model: &LatencyModel, test: &[(Network, f64)]) -> Score {
    let predictions: Vec<_> = test
        .iter()
        .map(|(n, _)| model.predict(&model.terms(n)).unwrap())
        .collect();
    let pred: Vec<f64> = predictions.iter().map(|p| p.latency_us).collect();
    let meas: Vec<f64> = test.iter().map(|t| t.1).collect();
    let acc = Accuracy::of(&pred, &meas);
    let inside = predictions
        .iter()
        .zip(&meas)
        .filter(|(p, m)| p.low_us <= **m && **m <= p.high_us)
        .count();
    Score {
        rho: acc.spearman_rho,
        within_10: acc.within_10,
        coverage: inside as f64 / meas.len() as f64,
    }
}

fn fit(basis: &LatencyModel, train: &[&(Network, f64)]) -> LatencyModel {
    let pairs: Vec<(&Network, f64)> = train.iter().map(|(n, us)| (n, *us)).collect();
    basis
        .fit_networks("cpu", Precision::Fp32, &pairs, "test")
        .unwrap()
        .model
}

/// The networks a user timing in rounds of [`ROUND`] would time: the prior suggests the first
/// round, then each fit on the rounds so far suggests the next. Returns the model fitted on the
/// first `n` for every `n` of [`SIZES`].
fn suggested(basis: &LatencyModel, pool: &[(Network, f64)]) -> Vec<LatencyModel> {
    let mut picked: Vec<usize> = Vec::new();
    let mut model = basis.clone();
    let mut models = Vec::new();
    while picked.len() < SIZES[SIZES.len() - 1] {
        let rest: Vec<usize> = (0..pool.len()).filter(|i| !picked.contains(i)).collect();
        let nets: Vec<&Network> = rest.iter().map(|&i| &pool[i].0).collect();
        picked.extend(
            model
                .suggest(&nets, ROUND)
                .unwrap()
                .iter()
                .map(|&j| rest[j]),
        );
        let train: Vec<_> = picked.iter().map(|&i| &pool[i]).collect();
        model = fit(basis, &train);
        if SIZES.contains(&picked.len()) {
            models.push(model.clone());
        }
    }
    models
}

/// Per size: the median of the random draws' scores, and the suggested rounds' score.
fn curve(
    basis: &LatencyModel,
    pool: &[(Network, f64)],
    test: &[(Network, f64)],
) -> Vec<(Score, Score)> {
    let suggested = suggested(basis, pool);
    SIZES
        .iter()
        .zip(&suggested)
        .map(|(&n, model)| {
            let mut draws: Vec<Score> = (0..RANDOM_DRAWS)
                .map(|seed| {
                    let mut rng = SplitMix64::new(seed);
                    let mut idx: Vec<usize> = (0..pool.len()).collect();
                    for i in (1..idx.len()).rev() {
                        idx.swap(i, rng.below(i + 1));
                    }
                    let train: Vec<_> = idx[..n].iter().map(|&i| &pool[i]).collect();
                    score(&fit(basis, &train), test)
                })
                .collect();
            draws.sort_by(|a, b| a.within_10.total_cmp(&b.within_10));
            (draws.swap_remove(draws.len() / 2), score(model, test))
        })
        .collect()
}

fn row(space: &str, prior: &str, scores: &[(Score, Score)]) -> String {
    let cells: Vec<String> = scores
        .iter()
        .map(|(r, s)| {
            format!(
                "{:.3} / {:.0}% · {:.3} / {:.0}%",
                r.rho,
                100.0 * r.within_10,
                s.rho,
                100.0 * s.within_10
            )
        })
        .collect();
    format!("| {space} | {prior} | {} |", cells.join(" | "))
}

#[test]
fn few_shot_models_from_whole_network_timings() {
    let mut table = vec![
        "| space | prior | 10 | 20 | 50 | 100 |".to_string(),
        "|---|---|---|---|---|---|".to_string(),
    ];
    let mut coverage = Vec::new();
    for name in ["nb201", "mbv3"] {
        let space = builtin(name).unwrap();
        let timed = timings(space.as_ref());
        let (pool, test) = timed.split_at(timed.len() / 2);
        let priors = [
            ("none (roofline)", LatencyModel::roofline("cpu")),
            ("CPU op table", prior(&format!("cpu-{name}.csv"))),
            ("int8 op table", prior(&format!("cpu-{name}-int8.csv"))),
            ("OpenVINO op table", prior(&format!("openvino-{name}.csv"))),
        ];
        for (label, basis) in &priors {
            let scores = curve(basis, pool, test);
            table.push(row(name, label, &scores));
            coverage.extend(scores.iter().map(|(r, _)| r.coverage));
            if *label == "CPU op table" {
                // The goal: from 20 networks with a prior, rho >= 0.98 and >= 90% of
                // held-out networks within ±10%. Asserted on the random draws' median; the one
                // suggested design must rank as well and come within 5 points of it (on the
                // committed nb201 timings, from a sitting with a slow spell, both are at 90-92%:
                // that sitting's noise, not the model, is the limit).
                let (random, suggested) = &scores[1];
                let msg = |how: &str, s: &Score| {
                    format!(
                        "{name}, 20 {how} networks: rho {:.3}, {:.0}% within ±10%",
                        s.rho,
                        100.0 * s.within_10
                    )
                };
                assert!(
                    random.rho >= 0.98 && random.within_10 >= 0.90,
                    "{}",
                    msg("random", random)
                );
                assert!(
                    suggested.rho >= 0.98 && suggested.within_10 >= random.within_10 - 0.05,
                    "{}",
                    msg("suggested", suggested)
                );
            }
        }
    }
    coverage.sort_by(f64::total_cmp);
    println!("{}", table.join("\n"));
    println!(
        "95% intervals: coverage of held-out timings min {:.0}%, median {:.0}%",
        100.0 * coverage[0],
        100.0 * coverage[coverage.len() / 2]
    );
}
