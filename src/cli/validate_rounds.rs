//! `validate`'s later rounds: measuring every network again while the noise would still reorder
//! them. Networks of a narrow space lie close together (the `vit` space's 30 held-out networks
//! within 28-47 ms, many pairs under 1% apart), and a measurement whose noise is as large as
//! those gaps cannot tell a model that orders them right from one that does not: on this VM,
//! two measurements of the same 30 networks, each to a 1% interval, ranked each other at tau
//! 0.90 (2026-12-04, with two CI runs beside them). Each round measures all networks once more,
//! at another moment of the machine, and pools it with the rounds before; the noise of one round
//! comes from the networks measured twice for the noise floor.

use hwnas_core::network::Network;
use hwnas_predictor::metrics::{expected_tau, noise_sigma};
use hwnas_profiler::measure::MeasureConfig;
use hwnas_profiler::networks::{NetworkMeasurer, NetworkTime, Speed};
use serde_json::json;

use super::anchors::Anchored;
use super::e2e;

/// Rounds go on until a measurement is expected to order the networks at this Kendall tau
/// against their true order ([`expected_tau`]): the measurement then costs a model's score at
/// most about 0.02, under half of what separates a model at 0.95 from a perfect one. (At 0.97
/// it could cost 0.03: under a switching load on 2026-12-05, 30 nb201 networks were expected at
/// 0.972 after one round, noise ±1.87%, which stopped there, and the model scored 0.952. In six
/// results pooled from more rounds since, the scores moved −0.03 to +0.03 from the first
/// round's, none on average: there, the models' own order was the limit, not the referee.)
pub const RANKING_TAU: f64 = 0.98;

/// The networks' times after the rounds, and what the rounds did.
pub struct Rounds {
    pub times: Vec<NetworkTime>,
    pub report: serde_json::Value,
}

/// `first` (the sitting's first round, at the calibration's sitting) and more rounds of `nets`
/// until [`RANKING_TAU`] or `max_rounds`, each network's rounds pooled. `first_us` and
/// `again_us` are the repeated networks' two medians, the noise of one round.
pub fn measure_more(
    device: &mut dyn NetworkMeasurer,
    nets: &[Network],
    first: &Anchored,
    (first_us, again_us): (&[f64], &[f64]),
    cfg: &MeasureConfig,
    speed: Speed,
    max_rounds: u32,
) -> anyhow::Result<Rounds> {
    let noise = noise_sigma(first_us, again_us);
    in_rounds(&first.times, noise, max_rounds, |round| {
        let what = format!("round {round} of at most {max_rounds}");
        let times = e2e::measure(device, nets, cfg, speed, &what)?.times;
        Ok(first.at_calibration(times))
    })
}

/// The rounds themselves: `round(k)` measures every network for the k-th time; `sigma` is the
/// noise of one round (`None`: unknown, one round).
fn in_rounds(
    first: &[NetworkTime],
    sigma: Option<f64>,
    max_rounds: u32,
    mut round: impl FnMut(u32) -> anyhow::Result<Vec<NetworkTime>>,
) -> anyhow::Result<Rounds> {
    let Some(sigma) = sigma else {
        return Ok(Rounds {
            times: first.to_vec(),
            report: json!({"rounds": 1, "why": "fewer than 3 networks measured twice: the noise of a round is unknown"}),
        });
    };
    let medians: Vec<f64> = first.iter().map(|t| t.latency.median).collect();
    let order_kept = |rounds: u32| expected_tau(&medians, sigma / f64::from(rounds).sqrt());
    let mut parts: Vec<Vec<NetworkTime>> = first.iter().map(|t| vec![*t]).collect();
    let mut rounds = 1;
    while rounds < max_rounds && order_kept(rounds) < RANKING_TAU {
        rounds += 1;
        for (p, t) in parts.iter_mut().zip(round(rounds)?) {
            p.push(t);
        }
    }
    Ok(Rounds {
        times: parts.iter().map(|p| NetworkTime::pooled(p)).collect(),
        report: json!({
            "rounds": rounds,
            "max_rounds": max_rounds,
            "noise_one_round": sigma,
            "noise_pooled": sigma / f64::from(rounds).sqrt(),
            "expected_tau_one_round": order_kept(1),
            "expected_tau": order_kept(rounds),
            "target_tau": RANKING_TAU,
        }),
    })
}

/// The line a report prints for [`Rounds::report`].
pub fn rounds_line(r: &serde_json::Value) -> Option<String> {
    let f = |k: &str| r[k].as_f64();
    let rounds = r["rounds"].as_u64()?;
    let Some(one) = f("noise_one_round") else {
        return r["why"]
            .as_str()
            .map(|why| format!("  rounds            1  ({why})"));
    };
    let met = if f("expected_tau")? >= RANKING_TAU {
        "enough"
    } else {
        "short of it: the rounds ran out (--max-rounds)"
    };
    // Rounded down, so that a tau short of the target never prints as reaching it.
    let tau = |k: &str| f(k).map(|t| (t * 1000.0).floor() / 1000.0);
    let what = if rounds == 1 {
        format!("one round: noise ±{:.2}%", 100.0 * one)
    } else {
        format!(
            "each network measured {rounds} times and pooled: noise ±{:.2}% (one round ±{:.2}%, tau {:.3})",
            100.0 * f("noise_pooled")?,
            100.0 * one,
            tau("expected_tau_one_round")?,
        )
    };
    let one_round = &r["accuracy_one_round"];
    let scored_alone = match (one_round["within_10"].as_f64(), rounds > 1) {
        (Some(w), true) => format!(
            "; the first round alone: {:.1}% within ±10%, Kendall tau {:.3}",
            100.0 * w,
            one_round["kendall_tau"].as_f64()?
        ),
        _ => String::new(),
    };
    Some(format!(
        "  rounds     {rounds:>10}  {what}; expected to keep the networks' order at tau {:.3} \
         (wanted {RANKING_TAU}: {met}){scored_alone}",
        tau("expected_tau")?,
    ))
}

#[cfg(test)]
mod tests {
    use hwnas_core::rng::SplitMix64;
    use hwnas_core::stats::Stats;
    use hwnas_predictor::metrics::kendall_tau;

    use super::*;

    /// One round of networks of `truth` µs, each timed 40 times with 1% run-to-run noise and
    /// off by `drift` of its own (what the probe leaves of a sitting), all seeded.
    fn round(truth: &[f64], drift: f64, rng: &mut SplitMix64) -> Vec<NetworkTime> {
        let mut normal = || {
            let (u, v) = (rng.next_f64().max(1e-12), rng.next_f64());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        };
        truth
            .iter()
            .map(|t| {
                let level = t * (drift * normal()).exp();
                let runs: Vec<f64> = (0..40).map(|_| level * (0.01 * normal()).exp()).collect();
                let latency = Stats::from_samples(&runs).unwrap();
                NetworkTime {
                    latency,
                    raw: latency,
                    drift: None,
                    energy: None,
                }
            })
            .collect()
    }

    #[test]
    fn close_networks_are_measured_again_until_their_order_holds_and_spread_ones_are_not() {
        let mut rng = SplitMix64::new(3);
        // 30 networks within 28-47 ms, each round 1% off on its own.
        let close: Vec<f64> = (0..30)
            .map(|_| 28e3 * (0.52 * rng.next_f64()).exp())
            .collect();
        let (mut taus_one, mut taus_pooled) = (0.0, 0.0);
        for _ in 0..20 {
            let first = round(&close, 0.01, &mut rng);
            let again = round(&close[..20], 0.01, &mut rng);
            let us = |t: &[NetworkTime]| t.iter().map(|t| t.latency.median).collect::<Vec<_>>();
            let sigma = noise_sigma(&us(&first[..20]), &us(&again));
            let mut calls = 0;
            let rounds = in_rounds(&first, sigma, 4, |k| {
                calls += 1;
                assert_eq!(k, calls + 1);
                Ok(round(&close, 0.01, &mut rng))
            })
            .unwrap();
            assert!(calls >= 1, "{}", rounds.report);
            assert_eq!(rounds.report["rounds"], calls + 1);
            taus_one += kendall_tau(&us(&first), &close) / 20.0;
            taus_pooled += kendall_tau(&us(&rounds.times), &close) / 20.0;
        }
        assert!(
            taus_pooled > taus_one + 0.015,
            "{taus_one} -> {taus_pooled}"
        );

        // 30 networks from 0.2 to 4 ms: one round keeps their order.
        let spread: Vec<f64> = (0..30)
            .map(|_| 200.0 * (3.0 * rng.next_f64()).exp())
            .collect();
        let first = round(&spread, 0.01, &mut rng);
        let rounds = in_rounds(&first, Some(0.01), 4, |_| panic!("no second round")).unwrap();
        assert_eq!(rounds.report["rounds"], 1);
        assert_eq!(rounds.times, first);
        // The noise unknown (no network measured twice): one round, and the report says why.
        let unknown = in_rounds(&first, None, 4, |_| panic!("no second round")).unwrap();
        assert!(rounds_line(&unknown.report).unwrap().contains("unknown"));
    }
}
