//! `LatencyModel`: what `hwnas fit` writes and `predict` / `validate` / the search read.
//!
//! JSON with a schema version: the latency table it came from (op key → median, p10, p90) and
//! its provenance, the op regressor for shapes the table lacks (with the comparison that chose
//! it), and the calibration fitted on networks measured end to end. Exact table hits use the
//! measured value; other ops use the regressor; the sum goes through the calibration.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};

use hwnas_core::network::Network;
use hwnas_core::table::LatencyTable;
use hwnas_core::{Op, Precision};
use serde::{Deserialize, Serialize};

use crate::calibrate::{Calibration, Form, OP_COUNT, WEIGHT_OP_COUNT};
use crate::regress::{Comparison, OpRegressor};
use from_networks::{Column, Sums};

mod from_networks;
pub use from_networks::{FromNetworksError, NetworksFit};

pub const SCHEMA: &str = "hwnas-latency-model/2";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyModel {
    pub schema: String,
    pub device: String,
    /// The latency table the model was fitted on, and its provenance header.
    pub table: String,
    pub provenance: Vec<(String, String)>,
    /// Op key → [median, p10, p90] in µs, from the table.
    pub ops: BTreeMap<String, [f64; 3]>,
    pub regressor: Option<OpRegressor>,
    /// How each regressor family scored on held-out ops of the table.
    pub regressor_comparison: Vec<Comparison>,
    pub calibration: Option<Calibration>,
    /// The space and architectures the calibration networks came from (validation leaves
    /// them out).
    #[serde(default)]
    pub space: Option<String>,
    #[serde(default)]
    pub calibration_archs: Vec<String>,
    /// Each calibration network's latency as `fit` measured it, at the table's speed, in µs:
    /// re-measured beside later networks, they tell how the machine's sitting differs from the
    /// calibration's (see [`crate::anchors`]). Empty for models fitted before they were kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calibration_us: Vec<f64>,
    pub created: String,
    pub tool_version: String,
    /// Energy per inference, where the table has it (`profile --energy`): a model of the same
    /// kind whose "µs" are microjoules — the table's `energy_uj`, a regressor for unseen
    /// shapes, a calibration on the same networks' measured energy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy: Option<Box<LatencyModel>>,
    /// Op → (median, p10, p90); rebuilt from `ops` on load.
    #[serde(skip)]
    index: HashMap<Op, [f64; 3], FastHash>,
    /// Per kind slot, the calibration coefficient; rebuilt on load.
    #[serde(skip)]
    slot_coefficients: Vec<f64>,
    /// The calibration's cost per executed op, in µs; rebuilt on load.
    #[serde(skip)]
    per_op_us: f64,
    /// The calibration's cost per op with weights (ONNX-model calibrations), in µs.
    #[serde(skip)]
    per_weight_op_us: f64,
    /// How the runtime executes a network (int8 QDQ or float); rebuilt.
    #[serde(skip)]
    graph: Graph,
    /// What each column of the calibration's posterior reads (fits to timed networks); rebuilt.
    #[serde(skip)]
    posterior_columns: Vec<Column>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    // `reason`, not `source`: the message carries it, and a chain printing sources would
    // say it twice.
    #[error("cannot read model {path}: {reason}")]
    Io {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("model {path} is not a valid hwnas latency model: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "model {path} has schema `{found}`; this hwnas reads `{SCHEMA}`: fit it again with `hwnas fit`"
    )]
    Schema { path: PathBuf, found: String },
    #[error(
        "{} ops are not in the latency table and there is no regressor to predict them (first: {}); \
         profile them with `hwnas profile --op KEY ... --resume`, or `hwnas fit` a model, which predicts unseen shapes",
        .0.len(), .0.first().map_or("", String::as_str)
    )]
    Missing(Vec<String>),
}

/// Where an op's latency came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Measured,
    Regressed,
    Free,
}

/// A network's predicted latency with its uncertainty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub latency_us: f64,
    /// The uncertainty interval: the calibration's leave-one-out 95% band when calibrated,
    /// else the ops' p10 and p90 summed.
    pub low_us: f64,
    pub high_us: f64,
    /// Uncalibrated sum of the ops' latencies.
    pub sum_us: f64,
    pub calibrated: bool,
    pub per_op: Vec<(String, f64, Source)>,
}

impl Prediction {
    pub fn regressed(&self) -> impl Iterator<Item = &str> {
        self.per_op
            .iter()
            .filter(|o| o.2 == Source::Regressed)
            .map(|o| o.0.as_str())
    }
}

/// FNV-1a: ops hash in a few nanoseconds, which the search's millions of predictions need.
#[derive(Default)]
pub struct Fnv(u64);
impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}
type FastHash = BuildHasherDefault<Fnv>;

/// Kind slots, in a fixed order. `conv_pw` is a pointwise (1x1, ungrouped) convolution: runtimes
/// run it as a matrix product, and inside a network it costs less than alone while a spatial
/// conv costs more (on this CPU's NAS-Bench-201 networks, 0.79 against 1.07 of the lone
/// timing), so one coefficient for both mispredicts the cells made of one or the other.
/// `add_fused` is an add the runtime folds into the conv before it ([`Network::fused_adds`]).
/// The `_nhwc` kinds are pools an int8 graph runs channels-last
/// ([`Network::channels_last_pools`]), faster than the NCHW pool the table timed alone.
const KINDS: [&str; 14] = [
    "conv",
    "conv_pw",
    "mbconv",
    "avgpool",
    "maxpool",
    "gap",
    "linear",
    "add",
    "add_fused",
    "act",
    "avgpool_nhwc",
    "maxpool_nhwc",
    "gap_nhwc",
    "other",
];
const FUSED_ADD_SLOT: usize = 8;
const POINTWISE_SLOT: usize = 1;
/// The pool kinds (`avgpool`, `maxpool`, `gap`), and how many slots after each its
/// channels-last twin is.
const POOL_SLOTS: std::ops::RangeInclusive<usize> = 3..=5;
const NHWC_OFFSET: usize = 7;

fn slot(op: &Op) -> usize {
    if let Op::Conv(c) = op
        && c.k == 1
        && c.groups == 1
    {
        return POINTWISE_SLOT;
    }
    KINDS
        .iter()
        .position(|k| *k == op.kind())
        .unwrap_or(KINDS.len() - 1)
}

/// One op of a network as the model sees it: the op, whether it is an add fused into a conv,
/// and whether it is a pool the runtime runs channels-last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Term {
    pub op: Op,
    pub fused: bool,
    pub channels_last: bool,
}

/// How a runtime executes a network graph, as far as composing op latencies goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Graph {
    /// Float graphs: ORT computes a repeated weightless op once, and keeps one layout (NCHWc
    /// on the CPU EP, pools included).
    #[default]
    Float,
    /// Int8 QDQ graphs: every repeat has its own quantisation nodes and runs, and pools take
    /// the layout of the convolutions they lead to.
    Qdq,
}

impl Term {
    fn slot(&self) -> usize {
        match slot(&self.op) {
            _ if self.fused => FUSED_ADD_SLOT,
            s if self.channels_last && POOL_SLOTS.contains(&s) => s + NHWC_OFFSET,
            s => s,
        }
    }

    /// Ops without network context: no add is taken as fused, no pool as channels-last.
    pub fn plain(ops: &[Op]) -> Vec<Term> {
        ops.iter()
            .map(|&op| Term {
                op,
                fused: false,
                channels_last: false,
            })
            .collect()
    }

    /// A float network's ops with their fusion context; ops the runtime computes once though
    /// the network repeats them ([`Network::duplicates`]) appear once. (A model knows how its
    /// runtime executes a graph: [`LatencyModel::terms`].)
    pub fn of_network(net: &Network) -> Vec<Term> {
        Self::of_network_as(net, Graph::Float)
    }

    /// A network's ops with their context, as a runtime executing `graph` runs them.
    pub fn of_network_as(net: &Network, graph: Graph) -> Vec<Term> {
        // Each graph needs one of the two passes; the other is all `false`.
        let none = || vec![false; net.nodes.len()];
        let (duplicate, channels_last) = match graph {
            Graph::Float => (net.duplicates(), none()),
            Graph::Qdq => (none(), net.channels_last_pools()),
        };
        net.nodes
            .iter()
            .zip(net.fused_adds())
            .zip(duplicate)
            .zip(channels_last)
            .filter(|((_, duplicate), _)| !*duplicate)
            .map(|(((n, fused), _), channels_last)| Term {
                op: n.op,
                fused,
                channels_last,
            })
            .collect()
    }
}

impl LatencyModel {
    /// A model from a table: the lookup part only (`regressor` and `calibration` are set by
    /// the caller, then [`LatencyModel::rebuild`]).
    pub fn from_table(table: &LatencyTable, table_path: &Path) -> LatencyModel {
        let mut m = LatencyModel {
            schema: SCHEMA.into(),
            device: table.meta("device").unwrap_or("unknown").into(),
            table: table_path.display().to_string(),
            provenance: table.meta.clone(),
            ops: table
                .rows
                .iter()
                .map(|r| (r.key.clone(), [r.median_us, r.p10_us, r.p90_us]))
                .collect(),
            regressor: None,
            regressor_comparison: Vec::new(),
            calibration: None,
            space: table.meta("space").map(str::to_string),
            calibration_archs: Vec::new(),
            calibration_us: Vec::new(),
            created: hwnas_core::host::utc_now(),
            tool_version: format!("hwnas {}", env!("CARGO_PKG_VERSION")),
            energy: None,
            index: HashMap::default(),
            slot_coefficients: Vec::new(),
            per_op_us: 0.0,
            per_weight_op_us: 0.0,
            graph: Graph::Float,
            posterior_columns: Vec::new(),
        };
        m.rebuild();
        m
    }

    /// Rebuild the fast lookup after `ops` or `calibration` changed.
    pub fn rebuild(&mut self) {
        if let Some(energy) = &mut self.energy {
            energy.rebuild();
        }
        let count = |k| {
            self.calibration
                .as_ref()
                .and_then(|c| c.coefficient(k))
                .unwrap_or(0.0)
        };
        self.per_op_us = count(OP_COUNT);
        self.per_weight_op_us = count(WEIGHT_OP_COUNT);
        self.graph = match self.precision() {
            Precision::Int8 => Graph::Qdq,
            _ => Graph::Float,
        };
        self.posterior_columns = self
            .calibration
            .as_ref()
            .and_then(|c| c.posterior.as_ref())
            .and_then(|p| p.columns.iter().map(|c| Column::of(c)).collect())
            .unwrap_or_default();
        self.index = self
            .ops
            .iter()
            .filter_map(|(k, v)| Op::from_key(k).ok().map(|op| (op, *v)))
            .collect();
        self.slot_coefficients = KINDS
            .iter()
            .map(|kind| match &self.calibration {
                None => 1.0,
                Some(c) if c.fixed_kinds.iter().any(|k| k == kind) => 1.0,
                Some(c) => match c.form {
                    Form::Total => c.coefficients[0],
                    // Calibrations from before the channels-last kinds scale them as their
                    // NCHW kind.
                    Form::PerKind => c
                        .coefficient(kind)
                        .or_else(|| c.coefficient(kind.strip_suffix("_nhwc")?))
                        .unwrap_or(1.0),
                },
            })
            .collect();
    }

    pub fn load(path: &Path) -> Result<LatencyModel, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|reason| ModelError::Io {
            path: path.into(),
            reason,
        })?;
        Self::parse(&text, path)
    }

    /// A model from its JSON text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<LatencyModel, ModelError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ModelError::Corrupt {
                path: path.into(),
                message: e.to_string(),
            })?;
        match value.get("schema").and_then(|s| s.as_str()) {
            Some(SCHEMA) => {}
            Some(other) => {
                return Err(ModelError::Schema {
                    path: path.into(),
                    found: other.into(),
                });
            }
            None => {
                return Err(ModelError::Corrupt {
                    path: path.into(),
                    message: "no `schema` field".into(),
                });
            }
        }
        let mut model: LatencyModel =
            serde_json::from_value(value).map_err(|e| ModelError::Corrupt {
                path: path.into(),
                message: e.to_string(),
            })?;
        if let Some(bad) = model.ops.keys().find(|k| Op::from_key(k).is_err()) {
            return Err(ModelError::Corrupt {
                path: path.into(),
                message: format!("op key `{bad}` does not parse"),
            });
        }
        model.rebuild();
        Ok(model)
    }

    /// Write atomically: a temporary file beside `path`, then a rename.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let io = |reason| ModelError::Io {
            path: path.into(),
            reason,
        };
        let json = serde_json::to_string_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        hwnas_core::files::write_atomic(path, json).map_err(io)
    }

    /// A network's terms as this model's runtime executes them. Repeated weightless ops (pools
    /// on one input) run once — except in int8 QDQ graphs, where each repeat has quantisation
    /// nodes of its own and ONNX Runtime keeps them all (an all-pool nb201 network runs 47
    /// AveragePool nodes at fp32 and fp16, 92 QLinearAveragePool at int8), and where pools
    /// run channels-last on the way to a convolution.
    pub fn terms(&self, net: &Network) -> Vec<Term> {
        Term::of_network_as(net, self.graph)
    }

    /// The precision the table's ops were built in (fp32 for tables from before precisions).
    pub fn precision(&self) -> Precision {
        self.provenance
            .iter()
            .find(|(k, _)| k == "precision")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_default()
    }

    /// The reference probe's time the table's latencies are expressed at (its
    /// `probe_nominal_us`); networks compared with this model's predictions are measured at it.
    /// `None` for tables measured without the probe.
    pub fn probe_nominal_us(&self) -> Option<f64> {
        self.provenance
            .iter()
            .find(|(k, _)| k == hwnas_core::table::PROBE_NOMINAL_META)
            .and_then(|(_, v)| v.parse().ok())
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
    }

    /// Latency of one op: the table's median, or the regressor's prediction.
    pub fn op_us(&self, op: &Op) -> Option<(f64, Source)> {
        if op.is_free() {
            return Some((0.0, Source::Free));
        }
        if let Some(v) = self.index.get(op) {
            return Some((v[0], Source::Measured));
        }
        self.regressor
            .as_ref()
            .map(|r| (r.predict_us(op), Source::Regressed))
    }

    /// The ops' latencies summed per kind (uncalibrated), and their count, for calibration.
    pub fn kind_sums(&self, terms: &[Term]) -> Result<BTreeMap<String, f64>, ModelError> {
        let mut sums = BTreeMap::new();
        let mut missing = Vec::new();
        for t in terms {
            let op = &t.op;
            match self.op_us(op) {
                Some((_, Source::Free)) => {}
                Some((us, _)) => {
                    *sums.entry(KINDS[t.slot()].to_string()).or_insert(0.0) += us;
                    *sums.entry(OP_COUNT.to_string()).or_insert(0.0) += 1.0;
                    if op.params() > 0 {
                        *sums.entry(WEIGHT_OP_COUNT.to_string()).or_insert(0.0) += 1.0;
                    }
                }
                None if !missing.contains(&op.key()) => missing.push(op.key()),
                None => {}
            }
        }
        if missing.is_empty() {
            Ok(sums)
        } else {
            Err(ModelError::Missing(missing))
        }
    }

    /// Predicted latency of a network given its ops, with the per-op breakdown.
    pub fn predict(&self, terms: &[Term]) -> Result<Prediction, ModelError> {
        let mut per_op = Vec::with_capacity(terms.len());
        let mut missing = Vec::new();
        let (mut sum, mut low, mut high, mut scaled) = (0.0, 0.0, 0.0, 0.0);
        let mut sums = Sums::default();
        for t in terms {
            let op = &t.op;
            let Some((us, source)) = self.op_us(op) else {
                if !missing.contains(&op.key()) {
                    missing.push(op.key());
                }
                continue;
            };
            let (lo, hi) = match self.index.get(op) {
                Some(v) => (v[1], v[2]),
                None => (us, us),
            };
            sum += us;
            low += lo;
            high += hi;
            if source != Source::Free {
                scaled += us * self.slot_coefficients[t.slot()] + self.op_cost(op);
                sums.add(t, us);
            }
            per_op.push((op.key(), us, source));
        }
        if !missing.is_empty() {
            return Err(ModelError::Missing(missing));
        }
        Ok(match &self.calibration {
            Some(c) => {
                let latency = c.intercept_us + scaled;
                let half = match &c.posterior {
                    Some(p) if self.posterior_columns.len() == p.columns.len() => {
                        sums.half_width(p, &self.posterior_columns, latency)
                    }
                    _ => c.interval_rel,
                };
                Prediction {
                    latency_us: latency,
                    low_us: latency * (1.0 - half).max(0.0),
                    high_us: latency * (1.0 + half),
                    sum_us: sum,
                    calibrated: true,
                    per_op,
                }
            }
            None => Prediction {
                latency_us: sum,
                low_us: low,
                high_us: high,
                sum_us: sum,
                calibrated: false,
                per_op,
            },
        })
    }

    /// The calibration's fixed cost of running `op` inside a network.
    fn op_cost(&self, op: &Op) -> f64 {
        // Models calibrated on a space never have a per-weight-op cost: skip `params` then.
        if self.per_weight_op_us != 0.0 && op.params() > 0 {
            self.per_op_us + self.per_weight_op_us
        } else {
            self.per_op_us
        }
    }

    /// Energy per inference of a network, in microjoules, where the model has energy.
    pub fn predict_energy_uj(&self, terms: &[Term]) -> Option<Result<f64, ModelError>> {
        let energy = self.energy.as_ref()?;
        Some(match energy.predict_fast(terms) {
            Some(uj) => Ok(uj),
            None => energy.predict(terms).map(|p| p.latency_us),
        })
    }

    /// The fast path for search: the calibrated latency in µs of a network whose ops are all
    /// in the table, or `None` if one is not. No allocation.
    pub fn predict_fast(&self, terms: &[Term]) -> Option<f64> {
        let mut scaled = 0.0;
        for t in terms {
            if t.op.is_free() {
                continue;
            }
            let v = self.index.get(&t.op)?;
            scaled += v[0] * self.slot_coefficients[t.slot()] + self.op_cost(&t.op);
        }
        Some(self.calibration.as_ref().map_or(0.0, |c| c.intercept_us) + scaled)
    }
}

#[cfg(test)]
mod tests;
