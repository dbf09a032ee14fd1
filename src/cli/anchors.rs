//! Anchors in a later sitting (`validate`, `search --verify`): some of the model's
//! calibration networks measured again among the sitting's own, so that its networks are
//! compared with the predictions at the calibration's sitting (`hwnas_predictor::anchors`).

use hwnas_core::network::Network;
use hwnas_predictor::LatencyModel;
use hwnas_predictor::anchors::{Sitting, Slot, interleave, pick};
use hwnas_profiler::measure::MeasureConfig;
use hwnas_profiler::networks::{NetworkMeasurer, NetworkTime, Speed};
use hwnas_search::space::SearchSpace;

use super::e2e;

/// How many calibration networks a sitting measures again unless told.
pub const DEFAULT_ANCHORS: usize = 20;

/// The calibration networks to measure again, with their times at calibration.
pub struct Anchors {
    then_us: Vec<f64>,
    nets: Vec<Network>,
}

impl Anchors {
    /// Up to `k` of `model`'s calibration networks, rebuilt in `space`; why there are none
    /// otherwise (said beside the results).
    pub fn of(model: &LatencyModel, space: &dyn SearchSpace, k: usize) -> Result<Anchors, String> {
        if k == 0 {
            return Err("--anchors 0".into());
        }
        let (archs, times) = (&model.calibration_archs, &model.calibration_us);
        if times.is_empty() || times.len() != archs.len() {
            return Err(
                "the model keeps no calibration times (fitted before hwnas kept them, or not \
                 calibrated on networks of a space): fit it again to have anchors"
                    .into(),
            );
        }
        let picked = pick(times, k);
        let nets = picked
            .iter()
            .map(|&i| space.network(&archs[i]))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                format!(
                    "the model's calibration networks are not of space `{}` ({e})",
                    space.name()
                )
            })?;
        Ok(Anchors {
            then_us: picked.iter().map(|&i| times[i]).collect(),
            nets,
        })
    }
}

/// A sitting's own networks, measured among the anchors.
pub struct Anchored {
    /// Each network's time, at the calibration's sitting where there were anchors (else as the
    /// probe left it).
    pub times: Vec<NetworkTime>,
    /// The shift the anchors measured; `Err` says why there was none.
    pub sitting: Result<Sitting, String>,
}

impl Anchored {
    /// Times of this sitting (a repeat, say) expressed as `times` are.
    pub fn at_calibration(&self, times: Vec<NetworkTime>) -> Vec<NetworkTime> {
        match &self.sitting {
            Ok(s) => times.into_iter().map(|t| shifted(t, s)).collect(),
            Err(_) => times,
        }
    }

    /// The medians before the anchors' shift (as the probe alone left them).
    pub fn unanchored_us(&self) -> Vec<f64> {
        let factor = self.sitting.as_ref().map_or(1.0, |s| s.factor);
        self.times
            .iter()
            .map(|t| t.latency.median * factor)
            .collect()
    }

    /// The sitting as one line for the report (`note` where there were no anchors).
    pub fn describe(&self) -> String {
        match &self.sitting {
            Ok(s) => format!(
                "{:.3}x the calibration's ({} of its networks measured again among these: p10-p90 \
                 {:.3}-{:.3}x); times are divided by it",
                s.factor, s.anchors, s.p10, s.p90
            ),
            Err(why) => format!("not compared with the calibration's: {why}"),
        }
    }
}

fn shifted(mut t: NetworkTime, s: &Sitting) -> NetworkTime {
    t.latency = t.latency.scaled(1.0 / s.factor);
    t
}

/// Measures `nets` with the anchors spread among them (one interleaved run), and expresses
/// them at the calibration's sitting.
pub fn measure(
    device: &mut dyn NetworkMeasurer,
    nets: &[Network],
    anchors: Result<Anchors, String>,
    cfg: &MeasureConfig,
    speed: Speed,
    what: &str,
) -> anyhow::Result<Anchored> {
    let anchors = match anchors {
        Ok(a) => a,
        Err(why) => {
            let times = e2e::measure(device, nets, cfg, speed, what)?;
            return Ok(Anchored {
                times,
                sitting: Err(why),
            });
        }
    };
    let order = interleave(nets.len(), anchors.nets.len());
    let all: Vec<Network> = order
        .iter()
        .map(|slot| match *slot {
            Slot::Network(i) => nets[i].clone(),
            Slot::Anchor(i) => anchors.nets[i].clone(),
        })
        .collect();
    let measured = e2e::measure(device, &all, cfg, speed, what)?;
    let mut own = Vec::with_capacity(nets.len());
    let mut now = vec![f64::NAN; anchors.nets.len()];
    for (slot, t) in order.iter().zip(measured) {
        match *slot {
            Slot::Network(_) => own.push(t),
            Slot::Anchor(i) => now[i] = t.latency.median,
        }
    }
    let sitting =
        Sitting::of(&anchors.then_us, &now).ok_or_else(|| "no anchor was measured".to_string());
    let mut out = Anchored {
        times: Vec::new(),
        sitting,
    };
    out.times = out.at_calibration(own);
    Ok(out)
}
