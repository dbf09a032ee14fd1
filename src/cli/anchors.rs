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

/// The calibration networks (or files) to measure again, with their times at calibration.
pub struct Anchors<T> {
    then_us: Vec<f64>,
    /// Their energy at calibration, where the model has energy (µJ per run).
    then_uj: Option<Vec<f64>>,
    items: Vec<T>,
}

impl<T> Anchors<T> {
    /// Up to `k` of `model`'s calibration networks, each rebuilt by `rebuild` from its name;
    /// why there are none otherwise (said beside the results).
    pub fn of(
        model: &LatencyModel,
        k: usize,
        mut rebuild: impl FnMut(&str) -> Result<T, String>,
    ) -> Result<Anchors<T>, String> {
        if k == 0 {
            return Err("--anchors 0".into());
        }
        let (names, times) = (&model.calibration_archs, &model.calibration_us);
        if times.is_empty() || times.len() != names.len() {
            return Err(
                "the model keeps no calibration times (fitted before hwnas kept them, or from \
                 timings made elsewhere): fit it again to have anchors"
                    .into(),
            );
        }
        let picked = pick(times, k);
        let energy = model
            .energy
            .as_ref()
            .map(|e| &e.calibration_us)
            .filter(|uj| uj.len() == times.len());
        Ok(Anchors {
            then_us: picked.iter().map(|&i| times[i]).collect(),
            then_uj: energy.map(|uj| picked.iter().map(|&i| uj[i]).collect()),
            items: picked
                .iter()
                .map(|&i| rebuild(&names[i]))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl Anchors<Network> {
    /// Up to `k` of `model`'s calibration networks, as networks of `space`.
    pub fn in_space(
        model: &LatencyModel,
        space: &dyn SearchSpace,
        k: usize,
    ) -> Result<Self, String> {
        Self::of(model, k, |arch| {
            space.network(arch).map_err(|e| {
                format!(
                    "the model's calibration networks are not of space `{}` ({e})",
                    space.name()
                )
            })
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
    /// The same for energy, where the model and the measurements have it.
    pub energy_sitting: Option<Sitting>,
    /// The networks and anchors as measured (at this sitting), with the passes it took.
    pub measured: e2e::Measured,
}

impl Anchored {
    /// Times of this sitting (a repeat, say) expressed as `times` are.
    pub fn at_calibration(&self, times: Vec<NetworkTime>) -> Vec<NetworkTime> {
        times
            .into_iter()
            .map(|mut t| {
                if let Ok(s) = &self.sitting {
                    t.latency = t.latency.scaled(1.0 / s.factor);
                }
                if let (Some(s), Some(e)) = (&self.energy_sitting, t.energy.as_mut()) {
                    e.per_run_uj = s.at_calibration(e.per_run_uj);
                }
                t
            })
            .collect()
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

/// Measures `nets` with the anchors spread among them (one interleaved run), and expresses
/// them at the calibration's sitting.
pub fn measure(
    device: &mut dyn NetworkMeasurer,
    nets: &[Network],
    anchors: Result<Anchors<Network>, String>,
    cfg: &MeasureConfig,
    speed: Speed,
    what: &str,
) -> anyhow::Result<Anchored> {
    measure_with(nets, anchors, |all| {
        e2e::measure(device, all, cfg, speed, what)
    })
}

/// `own` measured by `run` in one call with the anchors spread among them, and expressed at
/// the calibration's sitting.
pub fn measure_with<T: Clone>(
    own: &[T],
    anchors: Result<Anchors<T>, String>,
    run: impl FnOnce(&[T]) -> anyhow::Result<e2e::Measured>,
) -> anyhow::Result<Anchored> {
    let anchors = match anchors {
        Ok(a) => a,
        Err(why) => {
            let measured = run(own)?;
            return Ok(Anchored {
                times: measured.times.clone(),
                sitting: Err(why),
                energy_sitting: None,
                measured,
            });
        }
    };
    let order = interleave(own.len(), anchors.items.len());
    let all: Vec<T> = order
        .iter()
        .map(|slot| match *slot {
            Slot::Network(i) => own[i].clone(),
            Slot::Anchor(i) => anchors.items[i].clone(),
        })
        .collect();
    let measured = run(&all)?;
    let mut mine = Vec::with_capacity(own.len());
    let mut now = vec![f64::NAN; anchors.items.len()];
    let mut now_uj = vec![f64::NAN; anchors.items.len()];
    for (slot, &t) in order.iter().zip(&measured.times) {
        match *slot {
            Slot::Network(_) => mine.push(t),
            Slot::Anchor(i) => {
                now[i] = t.latency.median;
                now_uj[i] = t.energy.map_or(f64::NAN, |e| e.per_run_uj);
            }
        }
    }
    let sitting =
        Sitting::of(&anchors.then_us, &now).ok_or_else(|| "no anchor was measured".to_string());
    let energy_sitting = anchors.then_uj.and_then(|then| Sitting::of(&then, &now_uj));
    let mut out = Anchored {
        times: Vec::new(),
        sitting,
        energy_sitting,
        measured,
    };
    out.times = out.at_calibration(mine);
    Ok(out)
}
