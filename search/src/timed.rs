//! Latency models from architectures of a space timed whole (`hwnas fit --networks`, and
//! `LatencyModel.fit_networks` in Python): the timings checked and put in one order, their
//! networks built, the fit ([`LatencyModel::fit_networks`]) and which architectures to time
//! next ([`suggest`]).

use std::collections::{BTreeSet, HashSet};

use hwnas_core::Precision;
use hwnas_core::network::Network;
use hwnas_predictor::model::FromNetworksError;
use hwnas_predictor::{LatencyModel, ModelError, NetworksFit};

use crate::space::{SearchSpace, SpaceError};

#[derive(Debug, thiserror::Error)]
pub enum TimedError {
    #[error(transparent)]
    Space(#[from] SpaceError),
    #[error("`{arch}` is timed at {ms} ms; latencies must be positive")]
    NotPositive { arch: String, ms: f64 },
    #[error("`{0}` is timed twice")]
    Twice(String),
    #[error(transparent)]
    Fit(#[from] FromNetworksError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A model of the device that ran `timed` (architecture, latency in ms), fitted on `basis`
/// (another device's model, or [`LatencyModel::roofline`]). The architectures are
/// canonicalised and fitted in sorted order, so the same timings give the same model whatever
/// their order; `space_spec` (the name or file as given) and the architectures are recorded in
/// the model, and `source` names the timings in its provenance.
pub fn fit(
    basis: &LatencyModel,
    space: &dyn SearchSpace,
    space_spec: &str,
    timed: &[(String, f64)],
    device: &str,
    precision: Precision,
    source: &str,
) -> Result<NetworksFit, TimedError> {
    let mut rows = Vec::with_capacity(timed.len());
    let mut seen = HashSet::new();
    for (arch, ms) in timed {
        let canonical = space.decode(&space.encode(arch)?);
        if !(*ms > 0.0 && ms.is_finite()) {
            return Err(TimedError::NotPositive {
                arch: arch.clone(),
                ms: *ms,
            });
        }
        if !seen.insert(canonical.clone()) {
            return Err(TimedError::Twice(arch.clone()));
        }
        rows.push((canonical, *ms));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let nets = rows
        .iter()
        .map(|(a, _)| space.network(a))
        .collect::<Result<Vec<Network>, _>>()?;
    let pairs: Vec<(&Network, f64)> = nets
        .iter()
        .zip(&rows)
        .map(|(n, (_, ms))| (n, ms * 1e3))
        .collect();
    let mut fitted = basis.fit_networks(device, precision, &pairs, source)?;
    fitted.model.space = Some(space_spec.to_string());
    fitted.model.calibration_archs = rows.into_iter().map(|(a, _)| a).collect();
    Ok(fitted)
}

/// The `k` of `candidates` to time next by `model` (see [`LatencyModel::suggest`]), leaving out
/// the architectures it was fitted on; candidates are canonicalised and taken once each.
pub fn suggest(
    model: &LatencyModel,
    space: &dyn SearchSpace,
    candidates: &[String],
    k: usize,
) -> Result<Vec<String>, TimedError> {
    let fitted: HashSet<&str> = model.calibration_archs.iter().map(String::as_str).collect();
    let mut pool = BTreeSet::new();
    for arch in candidates {
        let canonical = space.decode(&space.encode(arch)?);
        if !fitted.contains(canonical.as_str()) {
            pool.insert(canonical);
        }
    }
    let pool: Vec<String> = pool.into_iter().collect();
    let nets = pool
        .iter()
        .map(|a| space.network(a))
        .collect::<Result<Vec<Network>, _>>()?;
    let refs: Vec<&Network> = nets.iter().collect();
    let picked = model.suggest(&refs, k)?;
    Ok(picked.into_iter().map(|i| pool[i].clone()).collect())
}
