//! Latency models learned from whole-network timings ([`crate::few_shot`]): the basis a fit
//! starts from (a prior device's model, or the roofline), and the fit itself.

use std::collections::BTreeMap;

use hwnas_core::Precision;
use hwnas_core::network::Network;

use super::{KINDS, LatencyModel, SCHEMA};
use crate::calibrate::{CalibrationError, OP_COUNT, WEIGHT_OP_COUNT};
use crate::few_shot::{self, INTERCEPT, Posterior, Prior};
use crate::regress::OpRegressor;
use crate::{ModelError, Term};

/// Why a model could not be learned from networks.
#[derive(Debug, thiserror::Error)]
pub enum FromNetworksError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Fit(#[from] CalibrationError),
}

/// A model fitted to timed networks, and how far off each timing lies from the rest: its
/// cross-validated relative error, in the order the networks were given.
#[derive(Debug, Clone)]
pub struct NetworksFit {
    pub model: LatencyModel,
    pub held_out_errors: Vec<f64>,
}

/// Which of a network's sums a posterior column reads (rebuilt on load).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Column {
    Slot(usize),
    Ops,
    WeightOps,
    Intercept,
}

impl Column {
    pub(super) fn of(name: &str) -> Option<Column> {
        match name {
            OP_COUNT => Some(Column::Ops),
            WEIGHT_OP_COUNT => Some(Column::WeightOps),
            INTERCEPT => Some(Column::Intercept),
            kind => KINDS.iter().position(|k| *k == kind).map(Column::Slot),
        }
    }
}

/// A network's sums as a posterior reads them: latency per kind slot, ops, ops with weights.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sums {
    pub slots: [f64; KINDS.len()],
    pub ops: f64,
    pub weight_ops: f64,
}

impl Sums {
    pub(super) fn add(&mut self, term: &Term, us: f64) {
        self.slots[term.slot()] += us;
        self.ops += 1.0;
        if term.op.params() > 0 {
            self.weight_ops += 1.0;
        }
    }

    /// The interval's relative half-width of a prediction.
    pub(super) fn half_width(&self, posterior: &Posterior, columns: &[Column], us: f64) -> f64 {
        let values: Vec<f64> = columns
            .iter()
            .map(|c| match c {
                Column::Slot(s) => self.slots[*s],
                Column::Ops => self.ops,
                Column::WeightOps => self.weight_ops,
                Column::Intercept => 1.0,
            })
            .collect();
        few_shot::Z95 * posterior.relative_sd(&values, us)
    }
}

impl LatencyModel {
    /// A model with no measurement behind it: every op from the roofline estimate. The basis
    /// of a fit to whole-network timings without a prior device.
    pub fn roofline(device: &str) -> LatencyModel {
        let table = hwnas_core::table::LatencyTable {
            meta: vec![("device".into(), device.into())],
            rows: Vec::new(),
        };
        let mut m = LatencyModel::from_table(&table, std::path::Path::new("(roofline)"));
        m.table = String::new();
        m.regressor = Some(OpRegressor::roofline());
        m
    }

    /// The kinds a calibration may give a coefficient, in slot order.
    pub fn kinds() -> &'static [&'static str] {
        &KINDS
    }

    /// What this model says of each calibration column, as the prior of a fit to another
    /// device's networks: the coefficient each kind's latencies are multiplied by, the cost
    /// per op, the intercept.
    pub fn as_prior(&self) -> Prior {
        let mut coefficients: BTreeMap<String, f64> = KINDS
            .iter()
            .zip(&self.slot_coefficients)
            .map(|(k, c)| (k.to_string(), *c))
            .collect();
        coefficients.insert(OP_COUNT.into(), self.per_op_us);
        coefficients.insert(WEIGHT_OP_COUNT.into(), self.per_weight_op_us);
        Prior {
            coefficients,
            intercept_us: self.calibration.as_ref().map_or(0.0, |c| c.intercept_us),
        }
    }

    /// A model of another device learned from networks timed whole on it (`networks`: each
    /// network and its latency in µs, as run at `precision`), this model the basis: its ops'
    /// latencies, scaled per kind. The result keeps this model's table and regressor and
    /// carries the new calibration with its posterior; its provenance says what it came from.
    pub fn fit_networks(
        &self,
        device: &str,
        precision: Precision,
        networks: &[(&Network, f64)],
        networks_file: &str,
    ) -> Result<NetworksFit, FromNetworksError> {
        let mut model = self.clone();
        model.schema = SCHEMA.into();
        model.device = device.into();
        model.calibration = None;
        let basis = if self.regressor == Some(OpRegressor::roofline()) && self.ops.is_empty() {
            "roofline".to_string()
        } else {
            format!("{} ({})", self.device, self.table)
        };
        model.provenance = vec![
            ("device".into(), device.into()),
            ("precision".into(), precision.to_string()),
            ("networks".into(), networks_file.into()),
            ("basis".into(), basis),
        ];
        model.created = hwnas_core::host::utc_now();
        model.tool_version = format!("hwnas {}", env!("CARGO_PKG_VERSION"));
        model.rebuild();
        let samples = networks
            .iter()
            .map(|(net, us)| Ok((model.kind_sums(&model.terms(net))?, *us)))
            .collect::<Result<Vec<_>, ModelError>>()?;
        let (calibration, held_out_errors) = few_shot::fit(&samples, &KINDS, &self.as_prior())?;
        model.calibration = Some(calibration);
        model.rebuild();
        Ok(NetworksFit {
            model,
            held_out_errors,
        })
    }

    /// Which `k` of `candidates` to time next: those whose timing would narrow this model's
    /// predictions most (see [`few_shot::suggest`]). A model without a posterior (not fitted to
    /// timings yet) is taken as the prior of a first fit.
    pub fn suggest(&self, candidates: &[&Network], k: usize) -> Result<Vec<usize>, ModelError> {
        let rows = candidates
            .iter()
            .map(|net| {
                let terms = self.terms(net);
                let predicted = self.predict(&terms)?.latency_us;
                Ok((self.kind_sums(&terms)?, predicted))
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let posterior = self.calibration.as_ref().and_then(|c| c.posterior.as_ref());
        Ok(few_shot::suggest(posterior, &rows, k))
    }
}
