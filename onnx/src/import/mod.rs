//! Reading any ONNX CNN and mapping it to the op vocabulary, the way a runtime executes it.
//!
//! [`read_model`] decodes a file (bounded: protobuf's 2 GiB limit, and prost never allocates
//! more than the bytes it is given); [`import`] walks the graph in order, infers every tensor's
//! shape and maps node groups to [`Op`](hwnas_core::op::Op)s:
//!
//! | ONNX | op |
//! |---|---|
//! | Conv (+ BatchNormalization) (+ Relu, Clip, HardSwish, HardSigmoid, Sigmoid, `x·Sigmoid(x)`) | `conv` with the activation (BN folded) |
//! | BatchNormalization (+ activation), or an activation alone | `act` |
//! | Add of two tensors | `add` (ORT folds a residual add into the conv before it: see [`Network::fused_adds`]) |
//! | Mul by an `N x C x 1 x 1` tensor (squeeze-excitation) | `scale` |
//! | GlobalAveragePool, ReduceMean over H and W | `gap` |
//! | AveragePool, MaxPool | `avgpool`, `maxpool` |
//! | Gemm, MatMul (+ Add of a bias) | `linear` |
//! | Concat on channels | `concat` (k inputs: k - 1 of them) |
//! | Reshape → Transpose(0,2,1,3,4) → Reshape | `shuffle` |
//! | Split, Slice on channels | `slice` per output |
//! | Softmax | `softmax` |
//! | Flatten, Reshape to `N x F`, Identity, Dropout, Pad (folded into the conv or pool after it), shape arithmetic (Shape, Gather, Unsqueeze, Cast, Constant...) | nothing: views and constants |
//!
//! and the transformer layers of `tokens.rs` (patch embedding, encoder blocks, LayerNorm,
//! class token, token mean).
//!
//! A node that maps to nothing above is reported with its reason; an element-wise one (same
//! shape in and out) is passed over, so the rest of the graph still maps.

use std::path::Path;

use prost::Message;

use crate::proto::{ModelProto, NodeProto};
use hwnas_core::network::Network;

mod convnext;
mod fold;
mod layers;
mod mapper;
mod regions;
mod spatial;
mod tokens;
mod views;

use mapper::{Mapper, Problem};

/// Protobuf cannot encode more than 2 GiB in one message.
const MAX_MODEL_BYTES: u64 = 2 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read ONNX model {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid ONNX model: {why}")]
    Invalid { path: String, why: String },
    #[error(
        "{path}: node `{node}` ({op_type}) cannot be mapped: {why} (leave out --strict to skip it)"
    )]
    Strict {
        path: String,
        node: String,
        op_type: String,
        why: String,
    },
}

/// Read and decode an ONNX file (its weights may live in external data files: only their
/// shapes are needed, and those are in the model).
pub fn read_model(path: &Path) -> Result<ModelProto, ImportError> {
    let name = path.display().to_string();
    let io = |source| ImportError::Io {
        path: name.clone(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_MODEL_BYTES {
        return Err(ImportError::Invalid {
            path: name,
            why: format!("{len} bytes, more than protobuf's 2 GiB limit"),
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let model = ModelProto::decode(bytes.as_slice()).map_err(|e| ImportError::Invalid {
        path: name.clone(),
        why: format!("protobuf decoding failed ({e}); is the file truncated or not ONNX?"),
    })?;
    if model.graph.is_none() {
        return Err(ImportError::Invalid {
            path: name,
            why: "it has no graph".into(),
        });
    }
    Ok(model)
}

/// A node hwnas could not map.
#[derive(Debug, Clone, PartialEq)]
pub struct Unmapped {
    pub node: String,
    pub op_type: String,
    pub why: String,
    /// Its estimated FLOPs, where its input's shape is known (see [`Imported::unmapped_share`]).
    pub flops: Option<u64>,
}

/// The first unmapped nodes, one per line, for error messages.
pub fn list_unmapped(unmapped: &[Unmapped]) -> String {
    const SHOWN: usize = 20;
    let mut lines: Vec<String> = unmapped
        .iter()
        .take(SHOWN)
        .map(|u| format!("  {} ({}): {}", u.node, u.op_type, u.why))
        .collect();
    if unmapped.len() > SHOWN {
        lines.push(format!("  ... and {} more", unmapped.len() - SHOWN));
    }
    lines.join("\n")
}

/// A model as vocabulary ops.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The ops in execution order with their wiring. Views (Flatten) are not nodes, so an op may
    /// read a tensor under another shape than its producer wrote; the network is for latency
    /// prediction, not for rebuilding the model.
    pub network: Network,
    /// Per network node, the ONNX nodes it stands for.
    pub layers: Vec<Vec<String>>,
    pub unmapped: Vec<Unmapped>,
    /// Approximations made while mapping (e.g. ceil-mode pooling timed in floor mode).
    pub notes: Vec<String>,
    /// The default-domain opset the model imports.
    pub opset: i64,
    /// Nodes in the graph.
    pub onnx_nodes: usize,
    /// Each ONNX node's output tensors, by the node's name as `layers` gives it: a runtime
    /// names the nodes it rewrites after them (ONNX Runtime's NCHWc `r8` → `r8_bn_nchwc`).
    pub outputs: std::collections::HashMap<String, Vec<String>>,
}

impl Imported {
    /// The unmapped nodes' share of the model's FLOPs (mapped plus unmapped), and how many
    /// unmapped nodes have no estimate (their input's shape is unknown, typically because an
    /// earlier node did not map): with any of those the share is a lower bound.
    pub fn unmapped_share(&self) -> (f64, usize) {
        let known: u64 = self.unmapped.iter().filter_map(|u| u.flops).sum();
        let unknown = self.unmapped.iter().filter(|u| u.flops.is_none()).count();
        let total = self.network.flops() + known;
        (known as f64 / total.max(1) as f64, unknown)
    }

    /// Unmapped nodes counted per op type, most frequent first.
    pub fn unmapped_counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for u in &self.unmapped {
            match counts.iter_mut().find(|(t, _)| *t == u.op_type) {
                Some((_, n)) => *n += 1,
                None => counts.push((u.op_type.clone(), 1)),
            }
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        counts
    }
}

/// How to read a model.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// The batch size for inputs whose batch dimension is symbolic (default 1).
    pub batch: Option<u32>,
    /// Fail on the first node that cannot be mapped instead of skipping it.
    pub strict: bool,
}

/// Map `model` (read from `path`, named in errors) to vocabulary ops.
pub fn import(
    model: &ModelProto,
    path: &str,
    opts: ImportOptions,
) -> Result<Imported, ImportError> {
    let invalid = |why: String| ImportError::Invalid {
        path: path.into(),
        why,
    };
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| invalid("it has no graph".into()))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(0, |o| o.version);
    let mut m = Mapper::new(graph, opts.batch.unwrap_or(1)).map_err(invalid)?;
    let nodes: Vec<&NodeProto> = graph.node.iter().collect();
    let mut i = 0;
    while i < nodes.len() {
        if m.claimed.contains(&i) {
            i += 1;
            continue;
        }
        match m.node(&nodes, i) {
            Ok(consumed) => i += consumed.max(1),
            Err(Problem::Invalid(why)) => return Err(invalid(why)),
            Err(Problem::Unmapped(why)) => {
                let node = nodes[i];
                if opts.strict {
                    return Err(ImportError::Strict {
                        path: path.into(),
                        node: node_name(node, i),
                        op_type: node.op_type.clone(),
                        why,
                    });
                }
                m.pass_over(node, i, why);
                i += 1;
            }
        }
    }
    if m.network.nodes.is_empty() {
        return Err(invalid(format!(
            "no node maps to an op hwnas can time; the unmapped nodes:\n{}",
            list_unmapped(&m.unmapped)
        )));
    }
    Ok(Imported {
        network: m.network,
        layers: m.layers,
        unmapped: m.unmapped,
        notes: m.notes,
        opset,
        onnx_nodes: graph.node.len(),
        outputs: graph
            .node
            .iter()
            .enumerate()
            .map(|(i, n)| (node_name(n, i), n.output.clone()))
            .collect(),
    })
}

fn node_name(node: &NodeProto, i: usize) -> String {
    if node.name.is_empty() {
        format!("{}#{i}", node.op_type)
    } else {
        node.name.clone()
    }
}
