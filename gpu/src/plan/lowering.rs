//! The lowering's state as it walks the graph ([`Lowering`]: buffers, steps, what each value
//! name is), and the table of handlers, one per ONNX op type, that lower nodes into steps.

use std::collections::HashMap;

use hwnas_core::op::window_output;
use hwnas_onnx::proto::NodeProto;

use super::{Act, Buffer, EltwiseStep, Operand, PlanError, Step};

/// The node a handler lowers: `nodes[i]`, and its (first) output.
pub(super) struct At<'a> {
    pub nodes: &'a [&'a NodeProto],
    pub i: usize,
    pub node: &'a NodeProto,
    pub out: String,
}

impl At<'_> {
    /// The node cannot run on the GPU, and why.
    pub fn bad(&self, why: String) -> PlanError {
        PlanError::Bad {
            node: self.node.name.clone(),
            op_type: self.node.op_type.clone(),
            why,
        }
    }
}

/// Lowers the node at hand (and the nodes after it that it fuses); returns how many it consumed.
type Handler = for<'a> fn(&mut Lowering, &At<'a>) -> Result<usize, PlanError>;

/// Every ONNX op type the GPU runs, and its handler. Adding an ONNX op is one line here and one
/// method in `compute.rs` (it computes) or `movement.rs` (it moves or views data).
const HANDLERS: [(&[&str], Handler); 22] = [
    (
        &[
            "Relu",
            "Sigmoid",
            "HardSwish",
            "HardSigmoid",
            "Clip",
            "Tanh",
            "LeakyRelu",
            "Gelu",
        ],
        Lowering::activation_node,
    ),
    (&["LayerNormalization"], Lowering::layer_norm),
    (&["Transpose"], Lowering::transpose),
    (&["Gather"], Lowering::gather),
    (&["Div"], Lowering::gelu_pattern),
    (&["LRN"], Lowering::lrn),
    (&["Resize", "Upsample"], Lowering::resize),
    (&["ConvTranspose"], Lowering::conv_transpose),
    (&["Identity", "Dropout", "Flatten"], Lowering::view),
    (&["Conv"], Lowering::conv_node),
    (&["Pad"], Lowering::pad),
    (&["ReduceMean"], Lowering::reduce_mean),
    (&["Split"], Lowering::split),
    (&["Concat"], Lowering::concat),
    (&["Slice"], Lowering::slice),
    (&["Reshape"], Lowering::reshape),
    (&["Softmax"], Lowering::softmax),
    (&["BatchNormalization"], Lowering::batch_norm),
    (&["Add", "Mul"], Lowering::binary),
    (&["AveragePool", "MaxPool"], Lowering::pool),
    (&["GlobalAveragePool"], Lowering::global_pool),
    (&["Gemm", "MatMul"], Lowering::gemm),
];

#[derive(Default)]
pub(super) struct Lowering {
    pub(super) buffers: Vec<Buffer>,
    pub(super) steps: Vec<Step>,
    /// ONNX value name → buffer (views share one).
    pub(super) names: HashMap<String, usize>,
    /// How many nodes (and graph outputs) read each value.
    pub(super) readers: HashMap<String, usize>,
    /// A value that is `act(other value)`, left for its only reader (a conv) to apply on load.
    pub(super) deferred: HashMap<String, (usize, Act)>,
    /// Buffer → the step that writes it.
    pub(super) producer: HashMap<usize, usize>,
    /// int64 constants (shapes, slice bounds).
    pub(super) ints: HashMap<String, Vec<i64>>,
    /// A value that is a zero-padded other value: (source, top, left, bottom, right), left for
    /// the conv or pool that reads it to fold into its own padding.
    pub(super) padded: HashMap<String, (usize, [u32; 4])>,
}

pub(super) fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attr(name).map(|a| a.ints.clone())
}

impl Lowering {
    pub(super) fn define(&mut self, name: &str, dims: Vec<usize>, data: Option<Vec<f32>>) -> usize {
        self.buffers.push(Buffer {
            name: name.into(),
            dims,
            data,
            alias: None,
        });
        let id = self.buffers.len() - 1;
        self.names.insert(name.into(), id);
        id
    }

    pub(super) fn lookup(&self, name: &str) -> Option<usize> {
        self.names.get(name).copied()
    }

    pub(super) fn readers(&self, name: &str) -> usize {
        self.readers.get(name).copied().unwrap_or(0)
    }

    pub(super) fn push(&mut self, step: Step) {
        self.producer.insert(step.output(), self.steps.len());
        self.steps.push(step);
    }

    /// Lower `nodes[i]`; returns how many nodes it consumed (more than one when a pattern
    /// spanning nodes was fused).
    pub(super) fn node(&mut self, nodes: &[&NodeProto], i: usize) -> Result<usize, PlanError> {
        let node = nodes[i];
        let at = |out: String| At {
            nodes,
            i,
            node,
            out,
        };
        if node.output.len() != 1
            && !matches!(
                node.op_type.as_str(),
                "Dropout" | "BatchNormalization" | "Split"
            )
        {
            let why = format!("{} outputs; one expected", node.output.len());
            return Err(at(String::new()).bad(why));
        }
        let out = node
            .output
            .first()
            .ok_or_else(|| at(String::new()).bad("no output".into()))?
            .clone();
        let op = node.op_type.as_str();
        match HANDLERS.iter().find(|(types, _)| types.contains(&op)) {
            Some((_, handler)) => handler(self, &at(out)),
            None => Err(PlanError::Unsupported {
                node: node.name.clone(),
                op_type: node.op_type.clone(),
            }),
        }
    }

    /// Integers given as an attribute (older opsets) or as constant input `k` (newer ones).
    pub(super) fn ints_attr_or_input(
        &self,
        node: &NodeProto,
        attr: &str,
        k: usize,
    ) -> Option<Vec<i64>> {
        attr_ints(node, attr).or_else(|| node.input.get(k).and_then(|n| self.ints.get(n)).cloned())
    }

    /// Input `k` of the node as a buffer (not an activation deferred to a conv).
    pub(super) fn input(&self, at: &At<'_>, k: usize) -> Result<usize, PlanError> {
        let name = at
            .node
            .input
            .get(k)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| at.bad(format!("input {k} is missing")))?;
        if self.deferred.contains_key(name) {
            return Err(at.bad(format!("reads `{name}`, an activation deferred to a conv")));
        }
        self.lookup(name)
            .ok_or_else(|| at.bad(format!("reads `{name}`, which nothing produced")))
    }
}

/// The dims `shape` gives a tensor of `dims` (ONNX Reshape: 0 copies, -1 infers).
pub(super) fn reshaped(dims: &[usize], shape: &[i64]) -> Result<Vec<usize>, String> {
    let numel: usize = dims.iter().product();
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (k, &v) in shape.iter().enumerate() {
        out.push(match v {
            0 => *dims
                .get(k)
                .ok_or("a 0 in the shape beyond the input's rank")?,
            -1 if infer.is_none() => {
                infer = Some(k);
                1
            }
            v if v > 0 => v as usize,
            v => return Err(format!("shape value {v} in {shape:?}")),
        });
    }
    let known: usize = out.iter().product();
    if let Some(k) = infer
        && known > 0
    {
        out[k] = numel / known;
    }
    if out.iter().product::<usize>() != numel {
        return Err(format!("cannot reshape {dims:?} to {shape:?}"));
    }
    Ok(out)
}

/// The epilogue activation slot of a step that has a free one.
pub(super) fn epilogue_slot(step: &mut Step) -> Option<&mut Act> {
    let slot = match step {
        Step::Conv(c) => {
            if c.residual.is_some() {
                &mut c.act_after_residual
            } else {
                &mut c.act
            }
        }
        Step::Pool(p) => &mut p.act,
        Step::Gemm(g) => &mut g.act,
        Step::Eltwise(e) => &mut e.act,
        Step::GlobalAvgPool { .. }
        | Step::Copy { .. }
        | Step::Shuffle { .. }
        | Step::Softmax { .. }
        | Step::Lrn(_)
        | Step::Resize(_)
        | Step::ConvTranspose(_)
        | Step::LayerNorm { .. }
        | Step::Transpose { .. }
        | Step::MatMul { .. } => return None,
    };
    (*slot == Act::None).then_some(slot)
}

/// The activation an activation node applies.
pub(super) fn activation(node: &NodeProto, l: &Lowering) -> Result<Act, PlanError> {
    let bad = |why: &str| PlanError::Bad {
        node: node.name.clone(),
        op_type: node.op_type.clone(),
        why: why.into(),
    };
    Ok(match node.op_type.as_str() {
        "Relu" => Act::Relu,
        "Sigmoid" => Act::Sigmoid,
        "HardSwish" => Act::HardSwish,
        "Tanh" => Act::Tanh,
        "LeakyRelu" => Act::LeakyRelu(node.attr("alpha").map_or(0.01, |a| a.f)),
        "Gelu"
            if node
                .attr("approximate")
                .is_none_or(|a| a.s.is_empty() || a.s == b"none") =>
        {
            Act::Gelu
        }
        "HardSigmoid" => Act::HardSigmoid(
            node.attr("alpha").map_or(0.2, |a| a.f),
            node.attr("beta").map_or(0.5, |a| a.f),
        ),
        "Clip" => {
            let bound = |k: usize, default: f32| -> Result<f32, PlanError> {
                match node.input.get(k).filter(|s| !s.is_empty()) {
                    None => Ok(default),
                    Some(name) => l
                        .lookup(name)
                        .and_then(|id| l.buffers[id].data.as_ref())
                        .and_then(|d| d.first().copied())
                        .ok_or_else(|| bad("Clip bounds must be constants")),
                }
            };
            Act::Clip(bound(1, f32::MIN)?, bound(2, f32::MAX)?)
        }
        _ => return Err(bad("not an activation")),
    })
}

pub(super) fn eltwise(
    x: usize,
    operand: Operand,
    y: usize,
    dims: &[usize],
    act: Act,
) -> EltwiseStep {
    let numel: usize = dims.iter().product();
    let c = dims.get(1).copied().unwrap_or(1);
    let hw: usize = dims.iter().skip(2).product();
    EltwiseStep {
        x,
        operand,
        y,
        numel: numel as u32,
        c: c as u32,
        hw: hw as u32,
        act,
    }
}

pub(super) fn dims4(d: &[usize]) -> Result<[usize; 4], String> {
    <[usize; 4]>::try_from(d).map_err(|_| format!("a 4-D tensor expected, got {d:?}"))
}

pub(super) fn pair(v: Option<Vec<i64>>, default: Option<u32>) -> Result<(u32, u32), String> {
    match (v, default) {
        (Some(v), _) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok((v[0] as u32, v[1] as u32)),
        (Some(v), _) => Err(format!("expected two positive values, got {v:?}")),
        (None, Some(d)) => Ok((d, d)),
        (None, None) => Err("kernel_shape is required".into()),
    }
}

/// Padding of a 2-D window: `(top, left)` and `(bottom, right)`.
pub(super) type Pads = ((u32, u32), (u32, u32));

pub(super) fn pads(node: &NodeProto) -> Result<Pads, String> {
    match attr_ints(node, "pads") {
        None => Ok(((0, 0), (0, 0))),
        Some(p) if p.len() == 4 && p.iter().all(|&v| (0..1 << 16).contains(&v)) => {
            Ok(((p[0] as u32, p[1] as u32), (p[2] as u32, p[3] as u32)))
        }
        Some(p) => Err(format!("pads must be 4 non-negative values, got {p:?}")),
    }
}

pub(super) fn out_size(
    size: usize,
    k: u32,
    stride: u32,
    pad: (u32, u32),
    ceil: bool,
) -> Result<u32, String> {
    u32::try_from(size)
        .ok()
        .and_then(|size| window_output(size, k, stride, pad.0, pad.1, ceil))
        .ok_or_else(|| {
            format!(
                "window {k} is larger than the padded input {}",
                size as u64 + pad.0 as u64 + pad.1 as u64
            )
        })
}
