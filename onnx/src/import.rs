//! Reading any ONNX CNN and mapping it to the op vocabulary, the way a runtime executes it.
//!
//! [`read_model`] decodes a file (bounded: protobuf's 2 GiB limit, and prost never allocates
//! more than the bytes it is given); [`import`] walks the graph in order, infers every tensor's
//! shape and maps node groups to [`Op`]s:
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
//! A node that maps to nothing above is reported with its reason; an element-wise one (same
//! shape in and out) is passed over, so the rest of the graph still maps.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;

use crate::patterns;
use crate::proto::{GraphProto, ModelProto, NodeProto, TensorProto};
use hwnas_core::network::{Network, Value};
use hwnas_core::op::{
    Act as ActOp, Activation, Concat, Conv, Linear, Op, Pool, PoolKind, Shuffle, Slice, Tensor,
    window_output,
};

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
}

impl Imported {
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
        return Err(invalid(
            "no node maps to an op hwnas can time (see the unmapped nodes)".into(),
        ));
    }
    Ok(Imported {
        network: m.network,
        layers: m.layers,
        unmapped: m.unmapped,
        notes: m.notes,
        opset,
        onnx_nodes: graph.node.len(),
    })
}

fn node_name(node: &NodeProto, i: usize) -> String {
    if node.name.is_empty() {
        format!("{}#{i}", node.op_type)
    } else {
        node.name.clone()
    }
}

/// What a value of the graph is, as far as latency goes.
#[derive(Debug, Clone)]
enum Val {
    /// An activation: where it comes from, its NCHW shape, and zero padding (top, left,
    /// bottom, right) a Pad node added, left for the conv or pool that reads it.
    Act {
        value: Value,
        shape: Tensor,
        pad: [u32; 4],
    },
    /// An activation seen as `N x F` (after Flatten or a flattening Reshape).
    Flat { value: Value, n: u32, f: u32 },
    /// A constant: its dims, and its values when they are integers or a few floats.
    Const {
        dims: Vec<i64>,
        ints: Option<Vec<i64>>,
        floats: Option<Vec<f32>>,
    },
    /// Shape arithmetic (Shape, Gather, Unsqueeze, ...): costs nothing.
    Shape(Option<Vec<i64>>),
    /// The output of a node that could not be mapped, shape unknown.
    Unknown,
}

enum Problem {
    /// The model is broken (a value nothing defines, a bad attribute).
    Invalid(String),
    /// The model is fine, hwnas has no op for this node.
    Unmapped(String),
}

fn unmapped<T>(why: impl Into<String>) -> Result<T, Problem> {
    Err(Problem::Unmapped(why.into()))
}

struct Mapper<'g> {
    vals: HashMap<&'g str, Val>,
    readers: HashMap<&'g str, usize>,
    network: Network,
    layers: Vec<Vec<String>>,
    unmapped: Vec<Unmapped>,
    notes: Vec<String>,
}

fn dim_u32(d: i64, what: &str) -> Result<u32, String> {
    u32::try_from(d)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("{what} has dimension {d}"))
}

/// Values of a constant tensor, kept only when small (shapes, bounds, scalars).
fn const_val(t: &TensorProto) -> Val {
    let numel: i64 = t.dims.iter().product();
    let small = numel <= 64;
    Val::Const {
        dims: t.dims.clone(),
        ints: if small { t.i64_values() } else { None },
        floats: if small { t.f32_values() } else { None },
    }
}

impl<'g> Mapper<'g> {
    fn new(graph: &'g GraphProto, batch: u32) -> Result<Mapper<'g>, String> {
        let mut vals = HashMap::new();
        for t in &graph.initializer {
            vals.insert(t.name.as_str(), const_val(t));
        }
        let mut input = None;
        for vi in &graph.input {
            if vals.contains_key(vi.name.as_str()) {
                continue;
            }
            let shape = vi
                .r#type
                .as_ref()
                .and_then(|t| t.tensor_type.as_ref())
                .and_then(|t| t.shape.as_ref())
                .ok_or_else(|| format!("input `{}` has no shape", vi.name))?;
            let dims: Vec<i64> = shape
                .dim
                .iter()
                .enumerate()
                .map(|(k, d)| {
                    if d.dim_value > 0 {
                        d.dim_value
                    } else if k == 0 {
                        batch as i64
                    } else {
                        -1
                    }
                })
                .collect();
            let [n, c, h, w] = dims[..] else {
                return Err(format!(
                    "input `{}` has shape {dims:?}; hwnas reads image models with one N x C x H x W input",
                    vi.name
                ));
            };
            if input.is_some() {
                return Err(
                    "the model has more than one input; hwnas reads image models with one".into(),
                );
            }
            let t = Tensor::new(
                dim_u32(n, "the input")?,
                dim_u32(c, "the input")?,
                dim_u32(h, "the input (give a fixed size)")?,
                dim_u32(w, "the input (give a fixed size)")?,
            );
            if t.numel() > 1 << 30 {
                return Err(format!("input `{}` has {} elements", vi.name, t.numel()));
            }
            input = Some(t);
            vals.insert(
                vi.name.as_str(),
                Val::Act {
                    value: Value::Input,
                    shape: t,
                    pad: [0; 4],
                },
            );
        }
        let input = input.ok_or("the graph has no input besides its weights")?;
        let mut readers: HashMap<&str, usize> = HashMap::new();
        for node in &graph.node {
            for i in node.input.iter().filter(|i| !i.is_empty()) {
                *readers.entry(i.as_str()).or_default() += 1;
            }
        }
        for o in &graph.output {
            *readers.entry(o.name.as_str()).or_default() += 1;
        }
        Ok(Mapper {
            vals,
            readers,
            network: Network::new(graph.name.clone(), input),
            layers: Vec::new(),
            unmapped: Vec::new(),
            notes: Vec::new(),
        })
    }

    fn get(&self, node: &NodeProto, k: usize) -> Result<&Val, Problem> {
        let name = node
            .input
            .get(k)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Problem::Invalid(format!("node `{}` lacks input {k}", node.name)))?;
        self.vals.get(name.as_str()).ok_or_else(|| {
            Problem::Invalid(format!(
                "node `{}` reads `{name}`, which no earlier node or initializer defines (a truncated graph, or nodes out of order)",
                node.name
            ))
        })
    }

    /// An activation input, without pending padding.
    fn act_in(&self, node: &NodeProto, k: usize) -> Result<(Value, Tensor), Problem> {
        match self.get(node, k)? {
            Val::Act { value, shape, pad } if *pad == [0; 4] => Ok((*value, *shape)),
            Val::Act { .. } => {
                unmapped("reads a padded tensor (only a conv or pool can take a Pad)")
            }
            Val::Flat { value, n, f } => Ok((*value, Tensor::new(*n, *f, 1, 1))),
            Val::Unknown => unmapped("reads the output of an unmapped node"),
            _ => unmapped("input is a constant, not an activation"),
        }
    }

    fn readers(&self, name: &str) -> usize {
        self.readers.get(name).copied().unwrap_or(0)
    }

    fn set(&mut self, name: &'g str, v: Val) {
        self.vals.insert(name, v);
    }

    /// Add `op` reading `inputs` for ONNX node(s) `names`; returns its output value.
    fn push(&mut self, op: Op, inputs: &[Value], names: Vec<String>) -> Result<Value, Problem> {
        op.validate()
            .map_err(|e| Problem::Unmapped(e.to_string()))?;
        self.layers.push(names);
        Ok(self.network.push(op, inputs))
    }

    fn act_val(&mut self, name: &'g str, value: Value, shape: Tensor) {
        self.set(
            name,
            Val::Act {
                value,
                shape,
                pad: [0; 4],
            },
        );
    }

    /// An unmapped node: reported, and passed over when it is element-wise (one activation in,
    /// and the same shape out) so the graph after it still maps.
    fn pass_over(&mut self, node: &'g NodeProto, i: usize, why: String) {
        self.unmapped.push(Unmapped {
            node: node_name(node, i),
            op_type: node.op_type.clone(),
            why,
        });
        const ELEMENTWISE: [&str; 16] = [
            "LeakyRelu",
            "PRelu",
            "Elu",
            "Selu",
            "Celu",
            "Tanh",
            "Gelu",
            "Erf",
            "Exp",
            "Log",
            "Neg",
            "Abs",
            "Sqrt",
            "Div",
            "Sub",
            "Pow",
        ];
        let passthrough = ELEMENTWISE.contains(&node.op_type.as_str())
            || matches!(node.op_type.as_str(), "Add" | "Mul");
        // The activation it reads (a constant operand may come first: `Mul(2, x)`).
        let activation = node
            .input
            .iter()
            .filter_map(|n| self.vals.get(n.as_str()))
            .find(|v| matches!(v, Val::Act { .. } | Val::Flat { .. }))
            .cloned();
        let out = match activation {
            Some(v) if passthrough => v,
            _ => Val::Unknown,
        };
        for o in &node.output {
            self.set(o.as_str(), out.clone());
        }
    }

    fn node(&mut self, nodes: &[&'g NodeProto], i: usize) -> Result<usize, Problem> {
        let node = nodes[i];
        let name = node_name(node, i);
        let out: &'g str = node
            .output
            .first()
            .map(String::as_str)
            .ok_or_else(|| Problem::Invalid(format!("node `{name}` has no output")))?;
        // Shape arithmetic and constants first: they cost nothing.
        match node.op_type.as_str() {
            "Constant" => {
                let v = match node.attr("value").and_then(|a| a.t.as_ref()) {
                    Some(t) => const_val(t),
                    None => match node.attr("value_ints").or(node.attr("value_int")) {
                        Some(a) => Val::Const {
                            dims: vec![a.ints.len().max(1) as i64],
                            ints: Some(if a.ints.is_empty() {
                                vec![a.i]
                            } else {
                                a.ints.clone()
                            }),
                            floats: None,
                        },
                        None => Val::Shape(None),
                    },
                };
                self.set(out, v);
                return Ok(1);
            }
            "Shape" => {
                let dims = match self.get(node, 0)? {
                    Val::Act { shape, .. } => Some(shape.dims().to_vec()),
                    Val::Flat { n, f, .. } => Some(vec![*n as i64, *f as i64]),
                    _ => None,
                };
                self.set(out, Val::Shape(dims));
                return Ok(1);
            }
            "Gather" | "Unsqueeze" | "Squeeze" | "Cast" | "ConstantOfShape" | "Range"
                if node.input.iter().all(|n| {
                    matches!(
                        self.vals.get(n.as_str()),
                        Some(Val::Shape(_) | Val::Const { .. }) | None
                    )
                }) =>
            {
                for o in &node.output {
                    self.set(o.as_str(), Val::Shape(None));
                }
                return Ok(1);
            }
            _ => {}
        }
        if node.op_type == "Concat"
            && node.input.iter().all(|n| {
                matches!(
                    self.vals.get(n.as_str()),
                    Some(Val::Shape(_) | Val::Const { .. })
                )
            })
        {
            self.set(out, Val::Shape(None));
            return Ok(1);
        }
        match node.op_type.as_str() {
            "Identity" | "Dropout" => {
                let v = self.get(node, 0)?.clone();
                self.set(out, v);
                Ok(1)
            }
            "Conv" => self.conv(node, name, out),
            "BatchNormalization" => {
                let (value, shape) = self.act_in(node, 0)?;
                // Folded into the conv that made its input, as every runtime does.
                if let Value::Node(k) = value
                    && self.readers(&node.input[0]) == 1
                    && let Op::Conv(c) = self.network.nodes[k].op
                    && c.act == Activation::None
                {
                    self.layers[k].push(name);
                    self.act_val(out, value, shape);
                    return Ok(1);
                }
                let op = Op::Act(ActOp {
                    input: shape,
                    act: Activation::None,
                    bn: true,
                });
                let v = self.push(op, &[value], vec![name])?;
                self.act_val(out, v, shape);
                Ok(1)
            }
            "Relu" | "Clip" | "HardSwish" | "HardSigmoid" | "Sigmoid" => {
                self.activation(nodes, i, name, out)
            }
            "Add" | "Mul" => self.binary(node, name, out),
            "GlobalAveragePool" => {
                let (value, shape) = self.act_in(node, 0)?;
                let v = self.push(Op::GlobalAvgPool(shape), &[value], vec![name])?;
                self.act_val(out, v, Tensor::new(shape.n, shape.c, 1, 1));
                Ok(1)
            }
            "ReduceMean" => {
                let (value, shape) = self.act_in(node, 0)?;
                let axes = node.attr("axes").map(|a| a.ints.clone()).or_else(|| {
                    match node.input.get(1).and_then(|n| self.vals.get(n.as_str())) {
                        Some(Val::Const { ints, .. }) => ints.clone(),
                        _ => None,
                    }
                });
                let mut axes = axes.unwrap_or_default();
                for a in axes.iter_mut() {
                    if *a < 0 {
                        *a += 4;
                    }
                }
                axes.sort_unstable();
                if axes != [2, 3] {
                    return unmapped(format!("a mean over axes {axes:?}, not over H and W"));
                }
                let v = self.push(Op::GlobalAvgPool(shape), &[value], vec![name])?;
                if node.attr("keepdims").is_none_or(|a| a.i != 0) {
                    self.act_val(out, v, Tensor::new(shape.n, shape.c, 1, 1));
                } else {
                    self.set(
                        out,
                        Val::Flat {
                            value: v,
                            n: shape.n,
                            f: shape.c,
                        },
                    );
                }
                Ok(1)
            }
            "AveragePool" | "MaxPool" => self.pool(node, name, out),
            "Flatten" => {
                let (value, shape) = self.act_in(node, 0)?;
                if node.attr("axis").map_or(1, |a| a.i) != 1 {
                    return unmapped("Flatten on an axis other than 1");
                }
                let f = (shape.c as u64 * shape.h as u64 * shape.w as u64) as u32;
                self.set(
                    out,
                    Val::Flat {
                        value,
                        n: shape.n,
                        f,
                    },
                );
                Ok(1)
            }
            "Reshape" => self.reshape(nodes, i, name, out),
            "Gemm" | "MatMul" => self.linear(nodes, i, name, out),
            "Concat" => {
                if node.attr("axis").map(|a| a.i) != Some(1) {
                    return unmapped("a Concat that is not along channels (axis 1)");
                }
                let parts: Vec<(Value, Tensor)> = (0..node.input.len())
                    .map(|k| self.act_in(node, k))
                    .collect::<Result<_, _>>()?;
                let (mut value, mut shape) = parts[0];
                for &(v2, t2) in &parts[1..] {
                    if (t2.n, t2.h, t2.w) != (shape.n, shape.h, shape.w) {
                        return unmapped(format!("concatenating {shape} and {t2}"));
                    }
                    let op = Op::Concat(Concat {
                        input: shape,
                        cout: shape.c + t2.c,
                    });
                    value = self.push(op, &[value, v2], vec![name.clone()])?;
                    shape = shape.with_channels(shape.c + t2.c);
                }
                self.act_val(out, value, shape);
                Ok(1)
            }
            "Split" | "Slice" => self.split(node, name),
            "Softmax" | "LogSoftmax" => {
                let (value, shape) = self.act_in(node, 0)?;
                if shape.h * shape.w != 1 {
                    return unmapped("a softmax over a spatial tensor");
                }
                let v = self.push(Op::Softmax(shape), &[value], vec![name])?;
                self.set(
                    out,
                    Val::Flat {
                        value: v,
                        n: shape.n,
                        f: shape.c,
                    },
                );
                Ok(1)
            }
            "Pad" => {
                let (value, shape) = self.act_in(node, 0)?;
                let mode_ok = node
                    .attr("mode")
                    .is_none_or(|a| a.s.is_empty() || a.s == b"constant");
                let pads = node.attr("pads").map(|a| a.ints.clone()).or_else(|| {
                    match node.input.get(1).and_then(|n| self.vals.get(n.as_str())) {
                        Some(Val::Const { ints, .. }) => ints.clone(),
                        _ => None,
                    }
                });
                let zero_value = match node.input.get(2).and_then(|n| self.vals.get(n.as_str())) {
                    None => true,
                    Some(Val::Const { floats, .. }) => {
                        floats.as_ref().is_none_or(|f| f.iter().all(|&v| v == 0.0))
                    }
                    _ => false,
                };
                match pads.as_deref() {
                    Some([0, 0, t, l, 0, 0, b, r]) if mode_ok && zero_value => {
                        let p = [*t, *l, *b, *r].map(|v| u32::try_from(v).unwrap_or(u32::MAX));
                        if p.iter().any(|&v| v > 64) {
                            return unmapped(format!("padding {p:?}"));
                        }
                        self.set(
                            out,
                            Val::Act {
                                value,
                                shape,
                                pad: p,
                            },
                        );
                        Ok(1)
                    }
                    _ => unmapped("a Pad other than zeros around H and W"),
                }
            }
            _ => unmapped("no op in hwnas's vocabulary"),
        }
    }

    fn conv(&mut self, node: &'g NodeProto, name: String, out: &'g str) -> Result<usize, Problem> {
        let (value, shape, extra) = match self.get(node, 0)? {
            Val::Act { value, shape, pad } => (*value, *shape, *pad),
            Val::Unknown => return unmapped("reads the output of an unmapped node"),
            _ => return unmapped("input is not an N x C x H x W activation"),
        };
        let wdims = match self.get(node, 1)? {
            Val::Const { dims, .. } => dims.clone(),
            _ => return unmapped("weights that are not constants"),
        };
        let [cout, _, kh, kw] = wdims[..] else {
            return unmapped(format!("a {}-D weight (2-D convs only)", wdims.len()));
        };
        let ints = |k: &str| node.attr(k).map(|a| a.ints.clone());
        if ints("dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return unmapped("a dilated convolution");
        }
        if kh != kw {
            return unmapped(format!("a {kh}x{kw} kernel (square kernels only)"));
        }
        let stride = ints("strides").unwrap_or_else(|| vec![1, 1]);
        if stride.len() != 2 || stride[0] != stride[1] {
            return unmapped(format!("strides {stride:?}"));
        }
        let k = kh;
        let auto = node
            .attr("auto_pad")
            .map(|a| a.s.clone())
            .unwrap_or_default();
        let mut pads = match auto.as_slice() {
            b"" | b"NOTSET" => ints("pads").unwrap_or_else(|| vec![0; 4]),
            b"SAME_UPPER" | b"SAME_LOWER" if k % 2 == 1 => vec![k / 2; 4],
            b"VALID" => vec![0; 4],
            other => return unmapped(format!("auto_pad {}", String::from_utf8_lossy(other))),
        };
        if pads.len() != 4 {
            return unmapped(format!("pads {pads:?}"));
        }
        // A Pad node before the conv adds to its padding: (top, left, bottom, right).
        for (p, e) in pads
            .iter_mut()
            .zip([extra[0], extra[1], extra[2], extra[3]])
        {
            *p += e as i64;
        }
        if pads.iter().any(|&p| p != pads[0]) || !(0..k).contains(&pads[0]) {
            return unmapped(format!(
                "padding {pads:?} for a {k}x{k} kernel (only the same padding on every side, less than k)"
            ));
        }
        let groups = node.attr("group").map_or(1, |a| a.i);
        let op = Op::Conv(
            Conv {
                input: shape,
                cout: u32::try_from(cout)
                    .map_err(|_| Problem::Invalid(format!("conv `{name}` has {cout} outputs")))?,
                k: u32::try_from(k)
                    .map_err(|_| Problem::Invalid(format!("conv `{name}` kernel {k}")))?,
                stride: u32::try_from(stride[0]).unwrap_or(0),
                groups: u32::try_from(groups).unwrap_or(0),
                pad: None,
                pre_act: Activation::None,
                act: Activation::None,
            }
            .with_pad(pads[0] as u32),
        );
        let output = op.output();
        let v = self.push(op, &[value], vec![name])?;
        self.act_val(out, v, output);
        Ok(1)
    }

    fn activation(
        &mut self,
        nodes: &[&'g NodeProto],
        i: usize,
        name: String,
        out: &'g str,
    ) -> Result<usize, Problem> {
        let node = nodes[i];
        let (value, shape) = self.act_in(node, 0)?;
        let input = node.input[0].as_str();
        let mut act = match node.op_type.as_str() {
            "Relu" => Activation::Relu,
            "Clip" => Activation::Relu6,
            "HardSwish" => Activation::HSwish,
            "HardSigmoid" => Activation::HSigmoid,
            _ => Activation::Sigmoid,
        };
        let (mut out, mut names, mut consumed) = (out, vec![name], 1);
        // Swish: x * Sigmoid(x), the Mul right after.
        // x * Sigmoid(x) is swish; x * HardSigmoid(x) hard swish (opset 13 has no HardSwish).
        if matches!(act, Activation::Sigmoid | Activation::HSigmoid)
            && let Some(next) = patterns::gated_mul(nodes, i)
            && self.readers(out) == 1
        {
            act = if act == Activation::Sigmoid {
                Activation::Swish
            } else {
                Activation::HSwish
            };
            names.push(node_name(next, i + 1));
            out = next.output[0].as_str();
            consumed = 2;
        }
        // Into the conv or act op that made its input, when nothing else reads that.
        if let Value::Node(k) = value
            && self.readers(input) == consumed
        {
            let fused = match &mut self.network.nodes[k].op {
                Op::Conv(c) if c.act == Activation::None => Some(&mut c.act),
                Op::Act(a) if a.act == Activation::None => Some(&mut a.act),
                _ => None,
            };
            if let Some(slot) = fused {
                *slot = act;
                self.layers[k].extend(names);
                self.act_val(out, value, shape);
                return Ok(consumed);
            }
        }
        let op = Op::Act(ActOp {
            input: shape,
            act,
            bn: false,
        });
        let v = self.push(op, &[value], names)?;
        match self.get(node, 0)? {
            Val::Flat { n, f, .. } => {
                let (n, f) = (*n, *f);
                self.set(out, Val::Flat { value: v, n, f });
            }
            _ => self.act_val(out, v, shape),
        }
        Ok(consumed)
    }

    fn binary(
        &mut self,
        node: &'g NodeProto,
        name: String,
        out: &'g str,
    ) -> Result<usize, Problem> {
        let a = self.get(node, 0)?.clone();
        let b = self.get(node, 1)?.clone();
        let is_const = |v: &Val| matches!(v, Val::Const { .. });
        if is_const(&a) || is_const(&b) {
            return unmapped(format!("{} with a constant", node.op_type));
        }
        let (va, ta) = self.act_in(node, 0)?;
        let (vb, tb) = self.act_in(node, 1)?;
        if node.op_type == "Add" {
            if ta != tb {
                return unmapped(format!("adding {ta} and {tb} (broadcasting)"));
            }
            let v = self.push(Op::Add(ta), &[va, vb], vec![name])?;
            self.act_val(out, v, ta);
            return Ok(1);
        }
        // Mul: a per-channel scale (squeeze-excitation) either way round.
        let ((vx, tx), (vs, ts)) = if tb.h * tb.w == 1 && ta.h * ta.w > 1 {
            ((va, ta), (vb, tb))
        } else {
            ((vb, tb), (va, ta))
        };
        if (ts.n, ts.c, ts.h, ts.w) != (tx.n, tx.c, 1, 1) {
            return unmapped(format!("multiplying {ta} by {tb}"));
        }
        let v = self.push(Op::Scale(tx), &[vx, vs], vec![name])?;
        self.act_val(out, v, tx);
        Ok(1)
    }

    fn pool(&mut self, node: &'g NodeProto, name: String, out: &'g str) -> Result<usize, Problem> {
        let (value, shape, extra) = match self.get(node, 0)? {
            Val::Act { value, shape, pad } => (*value, *shape, *pad),
            Val::Unknown => return unmapped("reads the output of an unmapped node"),
            _ => return unmapped("input is not an N x C x H x W activation"),
        };
        let ints = |k: &str| node.attr(k).map(|a| a.ints.clone());
        let k = ints("kernel_shape").unwrap_or_default();
        let s = ints("strides").unwrap_or_else(|| vec![1, 1]);
        let mut p = ints("pads").unwrap_or_else(|| vec![0; 4]);
        if k.len() != 2 || k[0] != k[1] || s.len() != 2 || s[0] != s[1] || p.len() != 4 {
            return unmapped(format!(
                "kernel {k:?}, strides {s:?}, pads {p:?} (square windows only)"
            ));
        }
        for (v, e) in p.iter_mut().zip(extra) {
            *v += e as i64;
        }
        if p.iter().any(|&v| v != p[0]) {
            return unmapped(format!("asymmetric padding {p:?}"));
        }
        let pool = Pool {
            input: shape,
            kind: if node.op_type == "MaxPool" {
                PoolKind::Max
            } else {
                PoolKind::Avg
            },
            k: u32::try_from(k[0]).unwrap_or(0),
            stride: u32::try_from(s[0]).unwrap_or(0),
            pad: u32::try_from(p[0]).unwrap_or(u32::MAX),
        };
        let op = Op::Pool(pool);
        let mut output = op.output();
        // Ceil mode adds a last, partial window where floor mode stops short. The op is timed
        // in floor mode (one row and column fewer); the tensor after it keeps its true size.
        let ceil = |side| window_output(side, pool.k, pool.stride, pool.pad, pool.pad, true);
        if node.attr("ceil_mode").is_some_and(|a| a.i != 0)
            && let (Some(h), Some(w)) = (ceil(shape.h), ceil(shape.w))
            && (h, w) != (output.h, output.w)
        {
            self.notes.push(format!(
                "`{name}`: ceil-mode pooling timed in floor mode ({}x{} outputs instead of {h}x{w})",
                output.h, output.w
            ));
            output = Tensor::new(output.n, output.c, h, w);
        }
        let v = self.push(op, &[value], vec![name])?;
        self.act_val(out, v, output);
        Ok(1)
    }

    fn reshape(
        &mut self,
        nodes: &[&'g NodeProto],
        i: usize,
        name: String,
        out: &'g str,
    ) -> Result<usize, Problem> {
        let node = nodes[i];
        let (value, shape) = self.act_in(node, 0)?;
        let target = match self.get(node, 1)? {
            Val::Const { ints: Some(v), .. } => Some(v.clone()),
            Val::Shape(v) => v.clone(),
            _ => None,
        };
        // Channel shuffle: N x g x C/g x H x W, Transpose(0, 2, 1, 3, 4), back to N x C x H x W.
        if let Some([_, g, cg, _, _]) = target.as_deref()
            && g * cg == shape.c as i64
            && let Some((t, back)) = patterns::shuffle_tail(nodes, i)
        {
            let op = Op::Shuffle(Shuffle {
                input: shape,
                groups: u32::try_from(*g).unwrap_or(0),
            });
            let names = vec![name, node_name(t, i + 1), node_name(back, i + 2)];
            let v = self.push(op, &[value], names)?;
            self.act_val(back.output[0].as_str(), v, shape);
            return Ok(3);
        }
        // Flattening to N x F (a constant shape, or a computed one feeding a linear layer).
        let numel = shape.numel() as i64;
        let flat = match target.as_deref() {
            Some([n, f]) => {
                (*n == shape.n as i64 || *n == 0 || *n == -1)
                    && (*f == -1 || *f * shape.n as i64 == numel)
            }
            Some(other) => {
                return unmapped(format!("a reshape of {shape} to {other:?}"));
            }
            None => nodes[i + 1..]
                .iter()
                .find(|n| n.input.iter().any(|x| x == out))
                .is_some_and(|n| matches!(n.op_type.as_str(), "Gemm" | "MatMul")),
        };
        if !flat {
            return unmapped(format!("a reshape of {shape} other than a flatten"));
        }
        let f = (shape.c as u64 * shape.h as u64 * shape.w as u64) as u32;
        self.set(
            out,
            Val::Flat {
                value,
                n: shape.n,
                f,
            },
        );
        Ok(1)
    }

    fn linear(
        &mut self,
        nodes: &[&'g NodeProto],
        i: usize,
        name: String,
        out: &'g str,
    ) -> Result<usize, Problem> {
        let node = nodes[i];
        let (value, n, f) = match self.get(node, 0)? {
            Val::Flat { value, n, f } => (*value, *n, *f),
            Val::Act { value, shape, pad } if shape.h * shape.w == 1 && *pad == [0; 4] => {
                (*value, shape.n, shape.c)
            }
            Val::Unknown => return unmapped("reads the output of an unmapped node"),
            _ => return unmapped("a matrix product of a spatial tensor (flatten it first)"),
        };
        let wdims = match self.get(node, 1)? {
            Val::Const { dims, .. } => dims.clone(),
            _ => return unmapped("weights that are not constants"),
        };
        let trans_b = node.op_type == "Gemm" && node.attr("transB").is_some_and(|a| a.i != 0);
        let [a, b] = wdims[..] else {
            return unmapped(format!("a {}-D weight", wdims.len()));
        };
        let (k, cout) = if trans_b { (b, a) } else { (a, b) };
        if k != f as i64 {
            return Err(Problem::Invalid(format!(
                "`{name}`: {f} input features, weight {wdims:?}"
            )));
        }
        let mut names = vec![name];
        let mut consumed = 1;
        let mut out = out;
        // MatMul + Add(bias) is a linear layer with a bias.
        if node.op_type == "MatMul"
            && let Some(next) = nodes.get(i + 1)
            && next.op_type == "Add"
            && next.input.iter().any(|x| x == out)
            && self.readers(out) == 1
            && next
                .input
                .iter()
                .any(|x| matches!(self.vals.get(x.as_str()), Some(Val::Const { .. })))
            && let Some(o) = next.output.first()
        {
            names.push(node_name(next, i + 1));
            out = o.as_str();
            consumed = 2;
        }
        let cout = u32::try_from(cout).map_err(|_| Problem::Invalid(format!("{cout} outputs")))?;
        let op = Op::Linear(Linear {
            input: Tensor::new(n, f, 1, 1),
            cout,
        });
        let v = self.push(op, &[value], names)?;
        self.set(
            out,
            Val::Flat {
                value: v,
                n,
                f: cout,
            },
        );
        Ok(consumed)
    }

    /// Split (any number of outputs) or Slice along channels: one `slice` op per output.
    fn split(&mut self, node: &'g NodeProto, name: String) -> Result<usize, Problem> {
        let (value, shape) = self.act_in(node, 0)?;
        let const_ints = |this: &Self, k: usize| -> Option<Vec<i64>> {
            match node.input.get(k).and_then(|n| this.vals.get(n.as_str())) {
                Some(Val::Const { ints, .. }) => ints.clone(),
                _ => None,
            }
        };
        let mut start = 0i64;
        let sizes: Vec<i64> = if node.op_type == "Slice" {
            let (starts, ends) = (const_ints(self, 1), const_ints(self, 2));
            let axes = const_ints(self, 3).unwrap_or_else(|| vec![0]);
            let (Some([s]), Some([e])) = (starts.as_deref(), ends.as_deref()) else {
                return unmapped("a Slice with computed or several bounds");
            };
            if axes != [1] || const_ints(self, 4).is_some_and(|st| st != [1]) {
                return unmapped("a Slice that is not along channels with step 1");
            }
            let c = shape.c as i64;
            let clamp = |v: i64| if v < 0 { (v + c).max(0) } else { v.min(c) };
            start = clamp(*s);
            vec![clamp(*e) - start]
        } else {
            if node.attr("axis").map_or(0, |a| a.i) != 1 {
                return unmapped("a Split that is not along channels");
            }
            match node
                .attr("split")
                .map(|a| a.ints.clone())
                .or_else(|| const_ints(self, 1))
            {
                Some(s) => s,
                None => {
                    let parts = node.output.len().max(1) as i64;
                    vec![shape.c as i64 / parts; node.output.len()]
                }
            }
        };
        if sizes.len() != node.output.len()
            || sizes.iter().sum::<i64>() > shape.c as i64 && node.op_type == "Split"
        {
            return Err(Problem::Invalid(format!(
                "`{name}`: split sizes {sizes:?} for {} channels and {} outputs",
                shape.c,
                node.output.len()
            )));
        }
        for (o, &size) in node.output.iter().zip(&sizes) {
            let cout = u32::try_from(size).unwrap_or(0);
            let out_shape = shape.with_channels(cout);
            if cout == shape.c {
                self.act_val(o.as_str(), value, shape);
                continue;
            }
            let op = Op::Slice(Slice {
                input: shape,
                cout,
                start: u32::try_from(start).unwrap_or(u32::MAX),
            });
            let v = self.push(op, &[value], vec![name.clone()])?;
            self.act_val(o.as_str(), v, out_shape);
            start += size;
        }
        Ok(1)
    }
}
