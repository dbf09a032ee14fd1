//! The importer's state as it walks the graph ([`Mapper`]: what each value is, the network so
//! far), and the table of handlers, one per ONNX op type, that map nodes to ops.

use std::collections::HashMap;

use hwnas_core::network::{Network, Value};
use hwnas_core::op::{Op, Tensor};

use super::fold::{self, Constant};
use super::{Unmapped, node_name};
use crate::proto::{GraphProto, NodeProto};

/// The node a handler maps: `nodes[i]`, its name for reports, and its (first) output.
pub(super) struct At<'a, 'g> {
    pub nodes: &'a [&'g NodeProto],
    pub i: usize,
    pub node: &'g NodeProto,
    pub name: String,
    pub out: &'g str,
}

/// Maps the node at hand (and the nodes after it that it absorbs) and returns how many nodes
/// it consumed.
type Handler<'g> = for<'a> fn(&mut Mapper<'g>, &At<'a, 'g>) -> Result<usize, Problem>;

/// Every ONNX op type the importer maps, and its handler. Adding an ONNX op is one line here
/// and one method in `layers.rs` (it computes), `views.rs` (it moves or describes data) or
/// `tokens.rs` (a transformer's).
fn handlers<'g>() -> [(&'static [&'static str], Handler<'g>); 21] {
    [
        (&["Identity", "Dropout"], Mapper::identity),
        (&["Conv"], Mapper::conv),
        (&["BatchNormalization"], Mapper::batch_norm),
        (
            &[
                "Relu",
                "Clip",
                "HardSwish",
                "HardSigmoid",
                "Sigmoid",
                "Tanh",
                "LeakyRelu",
            ],
            Mapper::activation,
        ),
        (
            &["Add", "Sub", "Mul", "Div", "Sum", "Max", "Min"],
            Mapper::binary,
        ),
        (&["LRN"], Mapper::lrn),
        (&["Resize", "Upsample"], Mapper::resize),
        (&["ConvTranspose"], Mapper::conv_transpose),
        (&["GlobalAveragePool"], Mapper::global_pool),
        (&["ReduceMean"], Mapper::reduce_mean),
        (&["AveragePool", "MaxPool"], Mapper::pool),
        (&["Flatten"], Mapper::flatten),
        (&["Reshape"], Mapper::reshape),
        (&["Transpose"], Mapper::transpose),
        (&["Gemm", "MatMul"], Mapper::linear),
        (&["Concat"], Mapper::concat),
        (&["Split", "Slice"], Mapper::split),
        (&["Softmax", "LogSoftmax"], Mapper::softmax),
        (&["Pad"], Mapper::pad),
        (&["LayerNormalization"], Mapper::layer_norm),
        (&["Gather"], Mapper::gather),
    ]
}

/// What a value of the graph is, as far as latency goes.
#[derive(Debug, Clone)]
pub(super) enum Val {
    /// An activation: where it comes from, its NCHW shape, and zero padding (top, left,
    /// bottom, right) a Pad node added, left for the conv or pool that reads it.
    Act {
        value: Value,
        shape: Tensor,
        pad: [u32; 4],
    },
    /// An activation seen as `N x F` (after Flatten or a flattening Reshape).
    Flat { value: Value, n: u32, f: u32 },
    /// An activation seen as `N x g x C/g x H x W` (`transposed`: as `N x C/g x g x H x W`):
    /// a channel shuffle under way.
    Grouped {
        value: Value,
        shape: Tensor,
        groups: u32,
        transposed: bool,
    },
    /// A feature map seen as `N x C x HW` (a Reshape on the way to tokens); `sole`: the
    /// feature map has no other reader.
    Seq {
        value: Value,
        shape: Tensor,
        sole: bool,
    },
    /// A constant (an initializer, or computed from constants and shapes: costs nothing).
    Const(Constant),
    /// A constant hwnas could not compute (an op the folder does not evaluate).
    Opaque,
    /// The output of a node that could not be mapped, shape unknown.
    Unknown,
}

pub(super) enum Problem {
    /// The model is broken (a value nothing defines, a bad attribute).
    Invalid(String),
    /// The model is fine, hwnas has no op for this node.
    Unmapped(String),
}

pub(super) fn unmapped<T>(why: impl Into<String>) -> Result<T, Problem> {
    Err(Problem::Unmapped(why.into()))
}

pub(super) struct Mapper<'g> {
    pub(super) vals: HashMap<&'g str, Val>,
    pub(super) readers: HashMap<&'g str, usize>,
    pub(super) network: Network,
    pub(super) layers: Vec<Vec<String>>,
    pub(super) unmapped: Vec<Unmapped>,
    pub(super) notes: Vec<String>,
    /// Nodes mapped ahead of the walk, as part of a transformer sub-layer.
    pub(super) claimed: std::collections::HashSet<usize>,
}

fn dim_u32(d: i64, what: &str) -> Result<u32, String> {
    u32::try_from(d)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("{what} has dimension {d}"))
}

impl<'g> Mapper<'g> {
    pub(super) fn new(graph: &'g GraphProto, batch: u32) -> Result<Mapper<'g>, String> {
        let mut vals = HashMap::new();
        for t in &graph.initializer {
            vals.insert(t.name.as_str(), Val::Const(Constant::from_tensor(t)));
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
            claimed: Default::default(),
        })
    }
    pub(super) fn get(&self, node: &NodeProto, k: usize) -> Result<&Val, Problem> {
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
    pub(super) fn act_in(&self, node: &NodeProto, k: usize) -> Result<(Value, Tensor), Problem> {
        match self.get(node, k)? {
            Val::Act { value, shape, pad } if *pad == [0; 4] => Ok((*value, *shape)),
            Val::Act { .. } => {
                unmapped("reads a padded tensor (only a conv or pool can take a Pad)")
            }
            Val::Flat { value, n, f } => Ok((*value, Tensor::new(*n, *f, 1, 1))),
            Val::Grouped { .. } => {
                unmapped("reads a 5-D view of a tensor (only a channel shuffle's)")
            }
            Val::Seq { .. } => unmapped("reads an N x C x HW view (only tokens' Transpose)"),
            Val::Unknown => unmapped("reads the output of an unmapped node"),
            _ => unmapped("input is a constant, not an activation"),
        }
    }
    /// The dims of a node's weight (input 1).
    pub(super) fn weight_dims(&self, node: &NodeProto) -> Result<Vec<i64>, Problem> {
        match self.get(node, 1)? {
            Val::Const(c) => Ok(c.dims.clone()),
            Val::Opaque => unmapped("weights made by a node hwnas cannot evaluate"),
            _ => unmapped("weights that are not constants"),
        }
    }
    pub(super) fn readers(&self, name: &str) -> usize {
        self.readers.get(name).copied().unwrap_or(0)
    }
    pub(super) fn set(&mut self, name: &'g str, v: Val) {
        self.vals.insert(name, v);
    }
    /// Add `op` reading `inputs` for ONNX node(s) `names`; returns its output value.
    pub(super) fn push(
        &mut self,
        op: Op,
        inputs: &[Value],
        names: Vec<String>,
    ) -> Result<Value, Problem> {
        op.validate()
            .map_err(|e| Problem::Unmapped(e.to_string()))?;
        self.layers.push(names);
        Ok(self.network.push(op, inputs))
    }
    pub(super) fn act_val(&mut self, name: &'g str, value: Value, shape: Tensor) {
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
    pub(super) fn pass_over(&mut self, node: &'g NodeProto, i: usize, why: String) {
        let flops = self.estimate_flops(node);
        self.unmapped.push(Unmapped {
            node: node_name(node, i),
            op_type: node.op_type.clone(),
            why,
            flops,
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

    /// FLOPs of a node hwnas could not map, from its first input's shape: a convolution or
    /// matrix product by its weight's dims (a convolution's output as large as its input over
    /// the stride), anything else one operation per input element. `None` when that shape is
    /// unknown.
    fn estimate_flops(&self, node: &NodeProto) -> Option<u64> {
        let (numel, channels) = match self.vals.get(node.input.first()?.as_str())? {
            Val::Act { shape, .. } | Val::Grouped { shape, .. } | Val::Seq { shape, .. } => {
                (shape.numel(), shape.c)
            }
            Val::Flat { n, f, .. } => (u64::from(*n) * u64::from(*f), *f),
            Val::Const(_) | Val::Opaque => return Some(0),
            Val::Unknown => return None,
        };
        let weight: Option<Vec<u64>> =
            match node.input.get(1).and_then(|w| self.vals.get(w.as_str())) {
                Some(Val::Const(c)) => c.dims.iter().map(|&d| u64::try_from(d).ok()).collect(),
                _ => None,
            };
        let stride: u64 = node
            .attr("strides")
            .map_or(1, |a| a.ints.iter().map(|&s| s.max(1) as u64).product());
        let pixels = numel / u64::from(channels.max(1));
        Some(match (node.op_type.as_str(), weight.as_deref()) {
            // Weight: cout x cin/g x taps; each output pixel and channel takes cin/g x taps MACs.
            ("Conv", Some([cout, cin_g, taps @ ..])) => {
                2 * pixels / stride * cout * cin_g * taps.iter().product::<u64>()
            }
            // Weight: cin x cout/g x taps; each input element feeds cout/g x taps outputs.
            ("ConvTranspose", Some([_, cout_g, taps @ ..])) => {
                2 * numel * cout_g * taps.iter().product::<u64>()
            }
            ("Gemm" | "MatMul", Some(w)) => {
                2 * numel * w.iter().product::<u64>() / u64::from(channels.max(1))
            }
            _ => numel,
        })
    }

    /// Map `nodes[i]`: shape arithmetic costs nothing; every other node goes to its handler.
    pub(super) fn node(&mut self, nodes: &[&'g NodeProto], i: usize) -> Result<usize, Problem> {
        let node = nodes[i];
        let name = node_name(node, i);
        let out: &'g str = node
            .output
            .first()
            .map(String::as_str)
            .ok_or_else(|| Problem::Invalid(format!("node `{name}` has no output")))?;
        if self.fold(node) {
            return Ok(1);
        }
        if let Some(mapped) = self.post_norm_sublayer(nodes, i) {
            return mapped;
        }
        let op_type = node.op_type.as_str();
        let Some((_, handler)) = handlers()
            .into_iter()
            .find(|(types, _)| types.contains(&op_type))
        else {
            return unmapped("no op in hwnas's vocabulary");
        };
        handler(
            self,
            &At {
                nodes,
                i,
                node,
                name,
                out,
            },
        )
    }

    /// Fold a node whose result is a constant: every input is one, or it reads only the shape
    /// of an activation. Returns whether it was.
    fn fold(&mut self, node: &'g NodeProto) -> bool {
        let reads_shape = matches!(node.op_type.as_str(), "Shape" | "Size");
        let mut inputs = Vec::with_capacity(node.input.len());
        for name in &node.input {
            let c = match self.vals.get(name.as_str()) {
                _ if name.is_empty() => None,
                Some(Val::Const(c)) => Some(c.clone()),
                Some(Val::Opaque) => None,
                Some(Val::Act { shape, .. }) if reads_shape => {
                    Some(Constant::new(shape.dims().to_vec(), None))
                }
                Some(Val::Flat { n, f, .. }) if reads_shape => {
                    Some(Constant::new(vec![*n as i64, *f as i64], None))
                }
                _ => return false,
            };
            inputs.push(c);
        }
        let refs: Vec<Option<&Constant>> = inputs.iter().map(Option::as_ref).collect();
        for (o, c) in node.output.iter().zip(fold::fold(node, &refs)) {
            self.set(o.as_str(), c.map_or(Val::Opaque, Val::Const));
        }
        true
    }

    /// Integers given as an attribute (older opsets) or as a constant input (newer ones).
    pub(super) fn ints_attr_or_input(
        &self,
        node: &NodeProto,
        attr: &str,
        input: usize,
    ) -> Option<Vec<i64>> {
        node.attr(attr).map(|a| a.ints.clone()).or_else(|| {
            match node
                .input
                .get(input)
                .and_then(|n| self.vals.get(n.as_str()))
            {
                Some(Val::Const(c)) => c.int_values().map(<[i64]>::to_vec),
                _ => None,
            }
        })
    }
}
