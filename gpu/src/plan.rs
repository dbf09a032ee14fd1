//! Lowering: an ONNX graph (the subset hwnas builds) → a list of GPU kernel launches.
//!
//! This is what a GPU runtime does before it runs a model: infer every tensor's shape, then fuse
//! what one kernel can do in its epilogue or prologue, so a block runs as few dispatches as a
//! real runtime would:
//! - an activation after a Conv, Gemm, Pool or element-wise op runs in that kernel's epilogue
//!   (also Swish, written `x * Sigmoid(x)`);
//! - an activation whose only reader is a Conv (NAS-Bench-201's ReLU-Conv-BN) runs in the
//!   conv's input load;
//! - a BatchNormalization after a Conv is folded into its weights and bias;
//! - a residual `Add` of a Conv's output (the conv's only reader) is added in the conv's
//!   epilogue, as ORT's `Conv+Sum` does on the CPU;
//! - Identity and Flatten are views of the same buffer.
//!
//! The result, a [`Plan`], is plain data: buffers with their shapes and (for weights) values,
//! and [`Step`]s that read and write them. [`crate::wgsl`] turns each step into a kernel.

use std::collections::HashMap;

use hwnas_core::op::window_output;
use hwnas_onnx::patterns;
use hwnas_onnx::proto::{ModelProto, NodeProto};

/// An activation applied element-wise inside a kernel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    None,
    Relu,
    Clip(f32, f32),
    /// `clamp(alpha * x + beta, 0, 1)`.
    HardSigmoid(f32, f32),
    HardSwish,
    Sigmoid,
    /// `x * sigmoid(x)`.
    Swish,
}

/// What an element-wise step combines its input with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Operand {
    /// Nothing: the step is an activation.
    None,
    /// Another buffer of the same shape, added.
    Add(usize),
    /// Another buffer of the same shape, multiplied.
    Mul(usize),
    /// A per-(batch, channel) buffer of `N x C x 1 x 1`, multiplied (squeeze-excitation).
    MulChannel(usize),
    /// A per-channel affine `x * scale[c] + shift[c]` (an inference batch norm); buffers of `C`.
    Affine(usize, usize),
    /// A constant.
    Scale(f32),
}

/// A convolution: NCHW input, OIHW weights, symmetric or asymmetric padding.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvStep {
    pub x: usize,
    pub w: usize,
    pub b: Option<usize>,
    pub y: usize,
    /// Added after `act`, before `act_after_residual`.
    pub residual: Option<usize>,
    pub n: u32,
    pub cin: u32,
    pub h: u32,
    pub w_in: u32,
    pub cout: u32,
    pub ho: u32,
    pub wo: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride: (u32, u32),
    /// Top and left padding (bottom and right only change the output size).
    pub pad: (u32, u32),
    pub groups: u32,
    /// Applied to every input value that is inside the image (padding stays 0).
    pub pre_act: Act,
    pub act: Act,
    pub act_after_residual: Act,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolStep {
    pub x: usize,
    pub y: usize,
    pub max: bool,
    /// Average pooling divides by the whole window, padding included.
    pub count_include_pad: bool,
    /// Number of planes (N x C).
    pub planes: u32,
    pub h: u32,
    pub w: u32,
    pub ho: u32,
    pub wo: u32,
    pub k: (u32, u32),
    pub stride: (u32, u32),
    pub pad: (u32, u32),
    pub act: Act,
}

/// `y[m, n] = act(sum_k x[m, k] * W + b[n])`, W as `[N, K]` (`trans_b`) or `[K, N]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GemmStep {
    pub x: usize,
    pub w: usize,
    pub b: Option<usize>,
    pub y: usize,
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub trans_b: bool,
    pub act: Act,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EltwiseStep {
    pub x: usize,
    pub operand: Operand,
    pub y: usize,
    pub numel: u32,
    /// Channels and spatial size, for the per-channel operands.
    pub c: u32,
    pub hw: u32,
    pub act: Act,
}

/// One kernel launch.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Conv(ConvStep),
    Pool(PoolStep),
    /// Mean over each of `planes` planes of `hw` values.
    GlobalAvgPool {
        x: usize,
        y: usize,
        planes: u32,
        hw: u32,
    },
    Gemm(GemmStep),
    Eltwise(EltwiseStep),
    /// `rows` blocks of `len` values from `x` (starting at `src.0`, `src.1` apart) to `y`
    /// (starting at `dst.0`, `dst.1` apart): concatenation and slicing along channels.
    Copy {
        x: usize,
        y: usize,
        rows: u32,
        len: u32,
        src: (u32, u32),
        dst: (u32, u32),
    },
    /// Channel shuffle: channel `i * (c / groups) + j` of each image goes to `j * groups + i`.
    Shuffle {
        x: usize,
        y: usize,
        n: u32,
        c: u32,
        groups: u32,
        hw: u32,
    },
    /// Softmax over each of `rows` rows of `cols` values.
    Softmax {
        x: usize,
        y: usize,
        rows: u32,
        cols: u32,
    },
}

impl Step {
    /// The kernel family, for reports (`conv`, `pool`, `gap`, `gemm`, `eltwise`).
    pub fn family(&self) -> &'static str {
        match self {
            Step::Conv(_) => "conv",
            Step::Pool(_) => "pool",
            Step::GlobalAvgPool { .. } => "gap",
            Step::Gemm(_) => "gemm",
            Step::Eltwise(_) => "eltwise",
            Step::Copy { .. } => "copy",
            Step::Shuffle { .. } => "shuffle",
            Step::Softmax { .. } => "softmax",
        }
    }

    /// The buffer it writes.
    pub fn output(&self) -> usize {
        match self {
            Step::Conv(s) => s.y,
            Step::Pool(s) => s.y,
            Step::GlobalAvgPool { y, .. } => *y,
            Step::Gemm(s) => s.y,
            Step::Eltwise(s) => s.y,
            Step::Copy { y, .. } | Step::Shuffle { y, .. } | Step::Softmax { y, .. } => *y,
        }
    }
}

/// A buffer of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Buffer {
    pub name: String,
    pub dims: Vec<usize>,
    /// Weights are known at plan time; inputs and intermediates are not.
    pub data: Option<Vec<f32>>,
    /// A view (Flatten) of another buffer's memory under another shape.
    pub alias: Option<usize>,
}

impl Buffer {
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A lowered graph: buffers, and the steps in execution order.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub buffers: Vec<Buffer>,
    pub steps: Vec<Step>,
    /// The graph inputs, in order.
    pub inputs: Vec<usize>,
    pub output: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("GPU lowering: node `{node}` ({op_type}) has no GPU kernel")]
    Unsupported { node: String, op_type: String },
    #[error("GPU lowering: node `{node}` ({op_type}): {why}")]
    Bad {
        node: String,
        op_type: String,
        why: String,
    },
    #[error("GPU lowering: {0}")]
    Graph(String),
}

impl Plan {
    /// Lower an ONNX model. Every graph input needs a static shape.
    pub fn lower(model: &ModelProto) -> Result<Plan, PlanError> {
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| PlanError::Graph("the model has no graph".into()))?;
        let mut l = Lowering::default();
        for t in &graph.initializer {
            // Shapes and bounds: read by the nodes that take them, never a GPU buffer.
            if let Some(v) = t.i64_values() {
                l.ints.insert(t.name.clone(), v);
                continue;
            }
            if t.data_location == 1 {
                return Err(PlanError::Graph(format!(
                    "initializer `{}` lives in an external data file, which the GPU backend does not load; embed the weights in the model",
                    t.name
                )));
            }
            let data = t.f32_values().ok_or_else(|| {
                PlanError::Graph(format!(
                    "initializer `{}` is neither fp32 nor int64",
                    t.name
                ))
            })?;
            let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
            if dims.iter().product::<usize>() != data.len() {
                return Err(PlanError::Graph(format!(
                    "initializer `{}` has {} values for dims {dims:?}",
                    t.name,
                    data.len()
                )));
            }
            l.define(&t.name, dims, Some(data));
        }
        let mut inputs = Vec::new();
        for vi in &graph.input {
            if l.names.contains_key(&vi.name) {
                continue; // an initializer also listed as an input (older exporters)
            }
            let dims = vi
                .dims()
                .filter(|d| d.iter().all(|&v| v > 0))
                .ok_or_else(|| {
                    PlanError::Graph(format!("input `{}` needs a static shape", vi.name))
                })?;
            inputs.push(l.define(&vi.name, dims.iter().map(|&d| d as usize).collect(), None));
        }
        for node in &graph.node {
            for o in &node.output {
                *l.readers.entry(o.clone()).or_default() += 0;
            }
            for i in node.input.iter().filter(|i| !i.is_empty()) {
                *l.readers.entry(i.clone()).or_default() += 1;
            }
        }
        for o in &graph.output {
            *l.readers.entry(o.name.clone()).or_default() += 1;
        }
        let nodes: Vec<&NodeProto> = graph.node.iter().collect();
        let mut i = 0;
        while i < nodes.len() {
            i += l.node(&nodes, i)?;
        }
        let out_name = &graph
            .output
            .first()
            .ok_or_else(|| PlanError::Graph("the graph has no output".into()))?
            .name;
        let output = l.lookup(out_name).ok_or_else(|| {
            PlanError::Graph(format!("output `{out_name}` is produced by no node"))
        })?;
        // An output that is an input or a weight (an identity graph) is copied, so the output
        // always has a buffer of its own that a kernel writes.
        let root = l.buffers[output].alias.unwrap_or(output);
        let output = if inputs.contains(&root) || l.buffers[root].data.is_some() {
            let dims = l.buffers[output].dims.clone();
            let y = l.define(&format!("{out_name}.copy"), dims.clone(), None);
            l.push(Step::Eltwise(eltwise(
                output,
                Operand::None,
                y,
                &dims,
                Act::None,
            )));
            y
        } else {
            output
        };
        Ok(Plan {
            buffers: l.buffers,
            steps: l.steps,
            inputs,
            output,
        })
    }
}

#[derive(Default)]
struct Lowering {
    buffers: Vec<Buffer>,
    steps: Vec<Step>,
    /// ONNX value name → buffer (views share one).
    names: HashMap<String, usize>,
    /// How many nodes (and graph outputs) read each value.
    readers: HashMap<String, usize>,
    /// A value that is `act(other value)`, left for its only reader (a conv) to apply on load.
    deferred: HashMap<String, (usize, Act)>,
    /// Buffer → the step that writes it.
    producer: HashMap<usize, usize>,
    /// int64 constants (shapes, slice bounds).
    ints: HashMap<String, Vec<i64>>,
    /// A value that is a zero-padded other value: (source, top, left, bottom, right), left for
    /// the conv or pool that reads it to fold into its own padding.
    padded: HashMap<String, (usize, [u32; 4])>,
}

fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attr(name).map(|a| a.ints.clone())
}

impl Lowering {
    fn define(&mut self, name: &str, dims: Vec<usize>, data: Option<Vec<f32>>) -> usize {
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

    fn lookup(&self, name: &str) -> Option<usize> {
        self.names.get(name).copied()
    }

    fn readers(&self, name: &str) -> usize {
        self.readers.get(name).copied().unwrap_or(0)
    }

    fn push(&mut self, step: Step) {
        self.producer.insert(step.output(), self.steps.len());
        self.steps.push(step);
    }

    /// Lower `nodes[i]`; returns how many nodes it consumed (more than one when a pattern
    /// spanning nodes was fused).
    fn node(&mut self, nodes: &[&NodeProto], i: usize) -> Result<usize, PlanError> {
        let node = nodes[i];
        let bad = |why: String| PlanError::Bad {
            node: node.name.clone(),
            op_type: node.op_type.clone(),
            why,
        };
        if node.output.len() != 1
            && !matches!(
                node.op_type.as_str(),
                "Dropout" | "BatchNormalization" | "Split"
            )
        {
            return Err(bad(format!("{} outputs; one expected", node.output.len())));
        }
        let out = node
            .output
            .first()
            .ok_or_else(|| bad("no output".into()))?
            .clone();
        // Inputs that are not deferred activations, as buffers.
        let input = |l: &Lowering, k: usize| -> Result<usize, PlanError> {
            let name = node
                .input
                .get(k)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad(format!("input {k} is missing")))?;
            if l.deferred.contains_key(name) {
                return Err(bad(format!(
                    "reads `{name}`, an activation deferred to a conv"
                )));
            }
            l.lookup(name)
                .ok_or_else(|| bad(format!("reads `{name}`, which nothing produced")))
        };
        let op = node.op_type.as_str();
        if let Some(act) = activation(node, self)? {
            // Swish: Sigmoid(t) read only by Mul(t, sigmoid).
            let act_in = node.input.first().cloned().unwrap_or_default();
            let mut consumed = 1;
            let mut act = act;
            let mut out = out;
            // x * HardSigmoid(x) with MobileNet's constants is hard swish (how opset 13,
            // which has no HardSwish, writes it).
            let hard_swish =
                matches!(act, Act::HardSigmoid(a, b) if (a - 1.0 / 6.0).abs() < 1e-6 && b == 0.5);
            if (act == Act::Sigmoid || hard_swish)
                && let Some(next) = patterns::gated_mul(nodes, i)
                && self.readers(&node.output[0]) == 1
                && self.readers(&act_in) == 2
            {
                act = if hard_swish {
                    Act::HardSwish
                } else {
                    Act::Swish
                };
                out = next.output[0].clone();
                consumed = 2;
            }
            let sole_reader = self.readers(&act_in) == consumed;
            // Into the producer's epilogue...
            if sole_reader
                && let Some(src) = self.lookup(&act_in)
                && let Some(&s) = self.producer.get(&src)
                && let Some(slot) = epilogue_slot(&mut self.steps[s])
            {
                *slot = act;
                self.names.insert(out, src);
                return Ok(consumed);
            }
            // ...or into the prologue of its only reader, a conv...
            if consumed == 1 && act != Act::Swish && self.readers(&out) == 1 {
                let reader = nodes[i + 1..].iter().find(|n| n.input.contains(&out));
                if reader.is_some_and(|r| r.op_type == "Conv" && r.input[0] == out) {
                    let src = input(self, 0)?;
                    self.deferred.insert(out, (src, act));
                    return Ok(1);
                }
            }
            // ...or its own kernel.
            let x = input(self, 0)?;
            let dims = self.buffers[x].dims.clone();
            let y = self.define(&out, dims.clone(), None);
            self.push(Step::Eltwise(eltwise(x, Operand::None, y, &dims, act)));
            return Ok(consumed);
        }
        match op {
            "Identity" | "Dropout" | "Flatten" => {
                let x = input(self, 0)?;
                let dims = self.buffers[x].dims.clone();
                if op != "Flatten" {
                    self.names.insert(out, x);
                    return Ok(1);
                }
                let axis = node.attr("axis").map_or(1, |a| a.i);
                let axis = if axis < 0 {
                    axis + dims.len() as i64
                } else {
                    axis
                };
                if !(0..=dims.len() as i64).contains(&axis) {
                    return Err(bad(format!("axis {axis} out of range for {dims:?}")));
                }
                let (a, b) = dims.split_at(axis as usize);
                let view = vec![a.iter().product(), b.iter().product()];
                let id = self.define(&out, view, None);
                self.buffers[id].alias = Some(self.buffers[x].alias.unwrap_or(x));
                Ok(1)
            }
            "Conv" => {
                self.conv(node, &out).map_err(bad)?;
                Ok(1)
            }
            "Pad" => {
                let x = input(self, 0)?;
                let pads = attr_ints(node, "pads")
                    .or_else(|| node.input.get(1).and_then(|n| self.ints.get(n)).cloned());
                let zero = node.input.get(2).filter(|n| !n.is_empty()).is_none_or(|n| {
                    self.lookup(n)
                        .and_then(|id| self.buffers[id].data.as_ref())
                        .is_some_and(|d| d.iter().all(|&v| v == 0.0))
                });
                let constant = node
                    .attr("mode")
                    .is_none_or(|a| a.s.is_empty() || a.s == b"constant");
                let readers_fold = nodes[i + 1..]
                    .iter()
                    .filter(|n| n.input.contains(&out))
                    .all(|n| matches!(n.op_type.as_str(), "Conv" | "AveragePool" | "MaxPool"));
                match pads.as_deref() {
                    Some(&[0, 0, t, l, 0, 0, b, r])
                        if zero
                            && constant
                            && readers_fold
                            && [t, l, b, r].iter().all(|v| (0..64).contains(v)) =>
                    {
                        self.padded.insert(out, (x, [t, l, b, r].map(|v| v as u32)));
                        Ok(1)
                    }
                    _ => Err(bad(
                        "only a zero Pad of H and W read by convs or pools runs on the GPU".into(),
                    )),
                }
            }
            "ReduceMean" => {
                let x = input(self, 0)?;
                let dims = self.buffers[x].dims.clone();
                let [n, c, h, w] = dims4(&dims).map_err(bad)?;
                let mut axes = attr_ints(node, "axes")
                    .or_else(|| node.input.get(1).and_then(|n| self.ints.get(n)).cloned())
                    .unwrap_or_default();
                for a in axes.iter_mut() {
                    if *a < 0 {
                        *a += 4;
                    }
                }
                axes.sort_unstable();
                if axes != [2, 3] {
                    return Err(bad("only a mean over H and W runs on the GPU".into()));
                }
                let keep = node.attr("keepdims").is_none_or(|a| a.i != 0);
                let ydims = if keep { vec![n, c, 1, 1] } else { vec![n, c] };
                let y = self.define(&out, ydims, None);
                self.push(Step::GlobalAvgPool {
                    x,
                    y,
                    planes: (n * c) as u32,
                    hw: (h * w) as u32,
                });
                Ok(1)
            }
            "Split" => {
                let x = input(self, 0)?;
                let dims = self.buffers[x].dims.clone();
                if node.attr("axis").map_or(0, |a| a.i) != 1 || dims.len() < 2 {
                    return Err(bad("only a Split along axis 1 runs on the GPU".into()));
                }
                let parts = node.output.len().max(1);
                let sizes: Vec<usize> = attr_ints(node, "split")
                    .or_else(|| node.input.get(1).and_then(|n| self.ints.get(n)).cloned())
                    .map(|v| v.iter().map(|&s| s.max(0) as usize).collect())
                    .unwrap_or_else(|| vec![dims[1] / parts; parts]);
                if sizes.len() != parts || sizes.iter().sum::<usize>() != dims[1] {
                    return Err(bad(format!(
                        "split sizes {sizes:?} for {} channels",
                        dims[1]
                    )));
                }
                let rest: usize = dims[2..].iter().product();
                let mut start = 0;
                for (o, &size) in node.output.iter().zip(&sizes) {
                    let mut ydims = dims.clone();
                    ydims[1] = size;
                    let y = self.define(o, ydims, None);
                    let len = size * rest;
                    self.push(Step::Copy {
                        x,
                        y,
                        rows: dims[0] as u32,
                        len: len as u32,
                        src: ((start * rest) as u32, (dims[1] * rest) as u32),
                        dst: (0, len as u32),
                    });
                    start += size;
                }
                Ok(1)
            }
            "Concat" => {
                let parts: Vec<usize> = (0..node.input.len())
                    .map(|k| input(self, k))
                    .collect::<Result<_, _>>()?;
                let dims0 = self.buffers[parts[0]].dims.clone();
                let axis = node.attr("axis").map_or(0, |a| a.i);
                let same_but_channels = parts.iter().all(|&p| {
                    let d = &self.buffers[p].dims;
                    d.len() == dims0.len() && d[0] == dims0[0] && d[2..] == dims0[2..]
                });
                if axis != 1 || dims0.len() < 2 || !same_but_channels {
                    return Err(bad(
                        "only a Concat of same-sized tensors along axis 1 runs on the GPU".into(),
                    ));
                }
                let rest: usize = dims0[2..].iter().product();
                let total: usize = parts.iter().map(|&p| self.buffers[p].dims[1]).sum();
                let mut dims = dims0.clone();
                dims[1] = total;
                let y = self.define(&out, dims, None);
                let mut offset = 0;
                for &p in &parts {
                    let len = self.buffers[p].dims[1] * rest;
                    self.push(Step::Copy {
                        x: p,
                        y,
                        rows: dims0[0] as u32,
                        len: len as u32,
                        src: (0, len as u32),
                        dst: (offset as u32, (total * rest) as u32),
                    });
                    offset += len;
                }
                Ok(1)
            }
            "Slice" => {
                let x = input(self, 0)?;
                let dims = self.buffers[x].dims.clone();
                let int = |k: usize| -> Option<i64> {
                    node.input
                        .get(k)
                        .and_then(|n| self.ints.get(n))
                        .and_then(|v| v.first().copied())
                };
                let (axis, step) = (int(3).unwrap_or(0), int(4).unwrap_or(1));
                let (Some(start), Some(end)) = (int(1), int(2)) else {
                    return Err(bad("starts and ends must be constants".into()));
                };
                if axis != 1 || step != 1 || dims.len() < 2 {
                    return Err(bad(
                        "only a Slice along axis 1 with step 1 runs on the GPU".into()
                    ));
                }
                let c = dims[1] as i64;
                let clamp = |v: i64| if v < 0 { (v + c).max(0) } else { v.min(c) };
                let (start, end) = (clamp(start) as usize, clamp(end) as usize);
                if end <= start {
                    return Err(bad("the slice is empty".into()));
                }
                let rest: usize = dims[2..].iter().product();
                let mut ydims = dims.clone();
                ydims[1] = end - start;
                let y = self.define(&out, ydims, None);
                let len = (end - start) * rest;
                self.push(Step::Copy {
                    x,
                    y,
                    rows: dims[0] as u32,
                    len: len as u32,
                    src: ((start * rest) as u32, (dims[1] * rest) as u32),
                    dst: (0, len as u32),
                });
                Ok(1)
            }
            "Reshape" => {
                let x = input(self, 0)?;
                let dims = self.buffers[x].dims.clone();
                let shape = node
                    .input
                    .get(1)
                    .and_then(|n| self.ints.get(n))
                    .ok_or_else(|| bad("the shape must be a constant".into()))?
                    .clone();
                if let Some((y, groups)) = self.shuffle_pattern(nodes, i, &dims, &shape) {
                    let [n, c, h, w] = dims4(&dims).map_err(bad)?;
                    let y = self.define(&y, dims.clone(), None);
                    self.push(Step::Shuffle {
                        x,
                        y,
                        n: n as u32,
                        c: c as u32,
                        groups,
                        hw: (h * w) as u32,
                    });
                    return Ok(3);
                }
                // Any other reshape is a view of the same memory.
                let new_dims = reshaped(&dims, &shape).map_err(bad)?;
                let id = self.define(&out, new_dims, None);
                self.buffers[id].alias = Some(self.buffers[x].alias.unwrap_or(x));
                Ok(1)
            }
            "Softmax" => {
                let x = input(self, 0)?;
                let dims = self.buffers[x].dims.clone();
                let axis = node.attr("axis").map_or(-1, |a| a.i);
                let last = dims.len() as i64 - 1;
                if axis != -1 && axis != last {
                    return Err(bad(
                        "only a Softmax over the last axis runs on the GPU".into()
                    ));
                }
                let cols = dims.last().copied().unwrap_or(1).max(1);
                let y = self.define(&out, dims.clone(), None);
                self.push(Step::Softmax {
                    x,
                    y,
                    rows: (dims.iter().product::<usize>() / cols) as u32,
                    cols: cols as u32,
                });
                Ok(1)
            }

            "BatchNormalization" => {
                let x = input(self, 0)?;
                let eps = node.attr("epsilon").map_or(1e-5, |a| a.f);
                let params: Vec<Vec<f32>> = (1..5)
                    .map(|k| {
                        let id = input(self, k)?;
                        self.buffers[id].data.clone().ok_or_else(|| {
                            bad("scale, bias, mean and var must be constants".into())
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let dims = self.buffers[x].dims.clone();
                let c = *dims
                    .get(1)
                    .ok_or_else(|| bad("input has no channel axis".into()))?;
                if params.iter().any(|p| p.len() != c) {
                    return Err(bad(format!("parameters must have {c} values")));
                }
                let scale: Vec<f32> = (0..c)
                    .map(|i| params[0][i] / (params[3][i] + eps).sqrt())
                    .collect();
                let shift: Vec<f32> = (0..c)
                    .map(|i| params[1][i] - params[2][i] * scale[i])
                    .collect();
                if self.readers(&node.input[0]) == 1 && self.fold_into_conv(x, &scale, &shift) {
                    self.names.insert(out, x);
                    return Ok(1);
                }
                let s = self.define(&format!("{out}.scale"), vec![c], Some(scale));
                let t = self.define(&format!("{out}.shift"), vec![c], Some(shift));
                let y = self.define(&out, dims.clone(), None);
                self.push(Step::Eltwise(eltwise(
                    x,
                    Operand::Affine(s, t),
                    y,
                    &dims,
                    Act::None,
                )));
                Ok(1)
            }
            "Add" | "Mul" => {
                let (a, b) = (input(self, 0)?, input(self, 1)?);
                let (da, db) = (self.buffers[a].dims.clone(), self.buffers[b].dims.clone());
                // The bigger operand is the one the output follows.
                let (x, o, dx, dother) =
                    if da.iter().product::<usize>() >= db.iter().product::<usize>() {
                        (a, b, da, db)
                    } else {
                        (b, a, db, da)
                    };
                let numel_o: usize = dother.iter().product();
                if op == "Add" && dx == dother {
                    // A residual into the conv that made one side, if nothing else reads it.
                    for (side, other) in [(a, b), (b, a)] {
                        let name = &node.input[usize::from(side != a)];
                        if self.readers(name) == 1
                            && let Some(&s) = self.producer.get(&side)
                            && let Step::Conv(c) = &mut self.steps[s]
                            && c.residual.is_none()
                            && c.act_after_residual == Act::None
                            && other != side
                            // The other side must exist when the conv runs.
                            && self.producer.get(&other).is_none_or(|&p| p < s)
                        {
                            c.residual = Some(other);
                            self.names.insert(out, side);
                            return Ok(1);
                        }
                    }
                }
                let operand = if dx == dother {
                    if op == "Add" {
                        Operand::Add(o)
                    } else {
                        Operand::Mul(o)
                    }
                } else if numel_o == 1 && self.buffers[o].data.is_some() {
                    let v = self.buffers[o].data.as_ref().map_or(0.0, |d| d[0]);
                    if op == "Add" {
                        return Err(bad("adding a scalar has no GPU kernel".into()));
                    }
                    Operand::Scale(v)
                } else if op == "Mul"
                    && dx.len() == 4
                    && dother.len() == 4
                    && dother[0] == dx[0]
                    && dother[1] == dx[1]
                    && dother[2] * dother[3] == 1
                {
                    Operand::MulChannel(o)
                } else {
                    return Err(bad(format!(
                        "shapes {dx:?} and {dother:?}: only equal shapes, a scalar factor or an N x C x 1 x 1 factor run on the GPU"
                    )));
                };
                let y = self.define(&out, dx.clone(), None);
                self.push(Step::Eltwise(eltwise(x, operand, y, &dx, Act::None)));
                Ok(1)
            }
            "AveragePool" | "MaxPool" => {
                let (x, extra) = match self.padded.get(&node.input[0]) {
                    Some(&(src, p)) => (src, p),
                    None => (input(self, 0)?, [0; 4]),
                };
                let dims = self.buffers[x].dims.clone();
                let [n, c, h, w] = dims4(&dims).map_err(bad)?;
                let k = pair(attr_ints(node, "kernel_shape"), None).map_err(bad)?;
                let stride = pair(attr_ints(node, "strides"), Some(1)).map_err(bad)?;
                let (pad, pad_end) = pads(node).map_err(bad)?;
                let (pad, pad_end) = (
                    (pad.0 + extra[0], pad.1 + extra[1]),
                    (pad_end.0 + extra[2], pad_end.1 + extra[3]),
                );
                if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
                    return Err(bad("dilations are not supported".into()));
                }
                let ceil = node.attr("ceil_mode").is_some_and(|a| a.i != 0);
                let ho = out_size(h, k.0, stride.0, (pad.0, pad_end.0), ceil).map_err(bad)?;
                let wo = out_size(w, k.1, stride.1, (pad.1, pad_end.1), ceil).map_err(bad)?;
                let y = self.define(&out, vec![n, c, ho as usize, wo as usize], None);
                self.push(Step::Pool(PoolStep {
                    x,
                    y,
                    max: op == "MaxPool",
                    count_include_pad: node.attr("count_include_pad").is_some_and(|a| a.i != 0),
                    planes: (n * c) as u32,
                    h: h as u32,
                    w: w as u32,
                    ho,
                    wo,
                    k,
                    stride,
                    pad,
                    act: Act::None,
                }));
                Ok(1)
            }
            "GlobalAveragePool" => {
                let x = input(self, 0)?;
                let dims = self.buffers[x].dims.clone();
                let [n, c, h, w] = dims4(&dims).map_err(bad)?;
                let y = self.define(&out, vec![n, c, 1, 1], None);
                self.push(Step::GlobalAvgPool {
                    x,
                    y,
                    planes: (n * c) as u32,
                    hw: (h * w) as u32,
                });
                Ok(1)
            }
            "Gemm" | "MatMul" => {
                let x = input(self, 0)?;
                let w = input(self, 1)?;
                let dx = self.buffers[x].dims.clone();
                let dw = self.buffers[w].dims.clone();
                if dx.len() != 2 || dw.len() != 2 {
                    return Err(bad(format!("2-D operands expected, got {dx:?} and {dw:?}")));
                }
                let flag = |name: &str| node.attr(name).is_some_and(|a| a.i != 0);
                if flag("transA") {
                    return Err(bad("transA is not supported".into()));
                }
                let alpha = node.attr("alpha").map_or(1.0, |a| a.f);
                let beta = node.attr("beta").map_or(1.0, |a| a.f);
                if alpha != 1.0 || beta != 1.0 {
                    return Err(bad("alpha and beta other than 1 are not supported".into()));
                }
                let trans_b = op == "Gemm" && flag("transB");
                let (n_out, k_w) = if trans_b {
                    (dw[0], dw[1])
                } else {
                    (dw[1], dw[0])
                };
                if k_w != dx[1] {
                    return Err(bad(format!("{} input features, weight has {k_w}", dx[1])));
                }
                let b = match node.input.get(2).filter(|s| !s.is_empty()) {
                    Some(_) => {
                        let b = input(self, 2)?;
                        if self.buffers[b].numel() != n_out {
                            return Err(bad(format!("bias must have {n_out} values")));
                        }
                        Some(b)
                    }
                    None => None,
                };
                let y = self.define(&out, vec![dx[0], n_out], None);
                self.push(Step::Gemm(GemmStep {
                    x,
                    w,
                    b,
                    y,
                    m: dx[0] as u32,
                    k: dx[1] as u32,
                    n: n_out as u32,
                    trans_b,
                    act: Act::None,
                }));
                Ok(1)
            }
            _ => Err(PlanError::Unsupported {
                node: node.name.clone(),
                op_type: node.op_type.clone(),
            }),
        }
    }

    fn conv(&mut self, node: &NodeProto, out: &str) -> Result<(), String> {
        let xname = node.input.first().ok_or("no input")?;
        let extra = self.padded.get(xname).map_or([0; 4], |p| p.1);
        let (x, pre_act) = match (self.deferred.remove(xname), self.padded.get(xname)) {
            (Some((src, act)), _) => (src, act),
            (None, Some(&(src, _))) => (src, Act::None),
            (None, None) => (
                self.lookup(xname)
                    .ok_or(format!("reads `{xname}`, which nothing produced"))?,
                Act::None,
            ),
        };
        let wname = node.input.get(1).ok_or("no weight")?;
        let w = self
            .lookup(wname)
            .ok_or(format!("weight `{wname}` is missing"))?;
        let b = match node.input.get(2).filter(|s| !s.is_empty()) {
            Some(n) => Some(self.lookup(n).ok_or(format!("bias `{n}` is missing"))?),
            None => None,
        };
        let [n, cin, h, wi] = dims4(&self.buffers[x].dims)?;
        let [cout, cin_g, kh, kw] = dims4(&self.buffers[w].dims)?;
        let groups = node.attr("group").map_or(1, |a| a.i).max(1) as usize;
        if cin_g * groups != cin || cout % groups != 0 {
            return Err(format!(
                "{cin} input channels and {cout} outputs do not split into {groups} groups of weight {:?}",
                self.buffers[w].dims
            ));
        }
        if b.is_some_and(|b| self.buffers[b].numel() != cout) {
            return Err(format!("bias must have {cout} values"));
        }
        if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return Err("dilated convolutions are not supported".into());
        }
        if node
            .attr("auto_pad")
            .is_some_and(|a| !a.s.is_empty() && a.s != b"NOTSET")
        {
            return Err("auto_pad is not supported; write explicit pads".into());
        }
        let stride = pair(attr_ints(node, "strides"), Some(1))?;
        let (pad, pad_end) = pads(node)?;
        let (pad, pad_end) = (
            (pad.0 + extra[0], pad.1 + extra[1]),
            (pad_end.0 + extra[2], pad_end.1 + extra[3]),
        );
        let ho = out_size(h, kh as u32, stride.0, (pad.0, pad_end.0), false)?;
        let wo = out_size(wi, kw as u32, stride.1, (pad.1, pad_end.1), false)?;
        let y = self.define(out, vec![n, cout, ho as usize, wo as usize], None);
        self.push(Step::Conv(ConvStep {
            x,
            w,
            b,
            y,
            residual: None,
            n: n as u32,
            cin: cin as u32,
            h: h as u32,
            w_in: wi as u32,
            cout: cout as u32,
            ho,
            wo,
            kh: kh as u32,
            kw: kw as u32,
            stride,
            pad,
            groups: groups as u32,
            pre_act,
            act: Act::None,
            act_after_residual: Act::None,
        }));
        Ok(())
    }

    /// Fold `y = x * scale[c] + shift[c]` into the conv that wrote `x`, when that conv has no
    /// epilogue yet. Weights are copied, so a weight shared with another conv is left intact.
    fn fold_into_conv(&mut self, x: usize, scale: &[f32], shift: &[f32]) -> bool {
        let Some(&s) = self.producer.get(&x) else {
            return false;
        };
        let Step::Conv(c) = &self.steps[s] else {
            return false;
        };
        if c.act != Act::None || c.residual.is_some() || c.act_after_residual != Act::None {
            return false;
        }
        let (w, b, cout) = (c.w, c.b, c.cout as usize);
        let Some(wdata) = self.buffers[w].data.clone() else {
            return false;
        };
        let per_out = wdata.len() / cout;
        let folded: Vec<f32> = wdata
            .iter()
            .enumerate()
            .map(|(i, &v)| v * scale[i / per_out])
            .collect();
        let bias: Vec<f32> = (0..cout)
            .map(|o| {
                let b0 = b
                    .and_then(|b| self.buffers[b].data.as_ref().map(|d| d[o]))
                    .unwrap_or(0.0);
                b0 * scale[o] + shift[o]
            })
            .collect();
        let wdims = self.buffers[w].dims.clone();
        let name = self.buffers[w].name.clone();
        let new_w = self.define(&format!("{name}.bn"), wdims, Some(folded));
        let new_b = self.define(&format!("{name}.bn_bias"), vec![cout], Some(bias));
        if let Step::Conv(c) = &mut self.steps[s] {
            c.w = new_w;
            c.b = Some(new_b);
        }
        true
    }
}

impl Lowering {
    /// `Reshape(N x g x C/g x H x W) -> Transpose(0, 2, 1, 3, 4) -> Reshape(N x C x H x W)`
    /// starting at `nodes[i]`: the last node's output name and `g`.
    fn shuffle_pattern(
        &self,
        nodes: &[&NodeProto],
        i: usize,
        dims: &[usize],
        shape: &[i64],
    ) -> Option<(String, u32)> {
        let ([n, c, h, w], [sn, g, cg, sh, sw]) = (dims, shape) else {
            return None;
        };
        let (_, back) = patterns::shuffle_tail(nodes, i)?;
        let back_shape = self.ints.get(back.input.get(1)?)?;
        let matches = (*sn, *sh, *sw) == (*n as i64, *h as i64, *w as i64)
            && *g > 0
            && g * cg == *c as i64
            && reshaped(&[*n, *g as usize, *cg as usize, *h, *w], back_shape).ok()?
                == [*n, *c, *h, *w];
        matches.then(|| (back.output[0].clone(), *g as u32))
    }
}

/// The dims `shape` gives a tensor of `dims` (ONNX Reshape: 0 copies, -1 infers).
fn reshaped(dims: &[usize], shape: &[i64]) -> Result<Vec<usize>, String> {
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
fn epilogue_slot(step: &mut Step) -> Option<&mut Act> {
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
        | Step::Softmax { .. } => return None,
    };
    (*slot == Act::None).then_some(slot)
}

/// The node as an activation, if it is one.
fn activation(node: &NodeProto, l: &Lowering) -> Result<Option<Act>, PlanError> {
    let bad = |why: &str| PlanError::Bad {
        node: node.name.clone(),
        op_type: node.op_type.clone(),
        why: why.into(),
    };
    Ok(Some(match node.op_type.as_str() {
        "Relu" => Act::Relu,
        "Sigmoid" => Act::Sigmoid,
        "HardSwish" => Act::HardSwish,
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
        _ => return Ok(None),
    }))
}

fn eltwise(x: usize, operand: Operand, y: usize, dims: &[usize], act: Act) -> EltwiseStep {
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

fn dims4(d: &[usize]) -> Result<[usize; 4], String> {
    <[usize; 4]>::try_from(d).map_err(|_| format!("a 4-D tensor expected, got {d:?}"))
}

fn pair(v: Option<Vec<i64>>, default: Option<u32>) -> Result<(u32, u32), String> {
    match (v, default) {
        (Some(v), _) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok((v[0] as u32, v[1] as u32)),
        (Some(v), _) => Err(format!("expected two positive values, got {v:?}")),
        (None, Some(d)) => Ok((d, d)),
        (None, None) => Err("kernel_shape is required".into()),
    }
}

/// Padding of a 2-D window: `(top, left)` and `(bottom, right)`.
type Pads = ((u32, u32), (u32, u32));

fn pads(node: &NodeProto) -> Result<Pads, String> {
    match attr_ints(node, "pads") {
        None => Ok(((0, 0), (0, 0))),
        Some(p) if p.len() == 4 && p.iter().all(|&v| (0..1 << 16).contains(&v)) => {
            Ok(((p[0] as u32, p[1] as u32), (p[2] as u32, p[3] as u32)))
        }
        Some(p) => Err(format!("pads must be 4 non-negative values, got {p:?}")),
    }
}

fn out_size(size: usize, k: u32, stride: u32, pad: (u32, u32), ceil: bool) -> Result<u32, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use hwnas_core::op::Op;
    use hwnas_onnx::op_model;

    fn plan(key: &str) -> Plan {
        Plan::lower(&op_model(&Op::from_key(key).unwrap()).unwrap()).unwrap()
    }

    fn families(p: &Plan) -> Vec<&'static str> {
        p.steps.iter().map(Step::family).collect()
    }

    #[test]
    fn an_mbconv_block_runs_as_a_gpu_runtime_would_fuse_it() {
        let p = plan("mbconv-in:1x24x14x14-out:24-e:4-k:5-s:1-se:1-act:hswish-res:1");
        // expand, depthwise, SE (pool, reduce, expand, scale), project with the residual.
        assert_eq!(
            families(&p),
            ["conv", "conv", "gap", "conv", "conv", "eltwise", "conv"]
        );
        let Step::Conv(expand) = &p.steps[0] else {
            unreachable!()
        };
        assert_eq!(expand.act, Act::HardSwish);
        let Step::Conv(reduce) = &p.steps[3] else {
            unreachable!()
        };
        assert_eq!(reduce.act, Act::Relu);
        let Step::Conv(excite) = &p.steps[4] else {
            unreachable!()
        };
        assert_eq!(excite.act, Act::HardSigmoid(1.0 / 6.0, 0.5));
        let Step::Eltwise(scale) = &p.steps[5] else {
            unreachable!()
        };
        assert!(matches!(scale.operand, Operand::MulChannel(_)));
        let Step::Conv(project) = &p.steps[6] else {
            unreachable!()
        };
        assert_eq!(project.residual, Some(p.inputs[0]));
        assert_eq!(project.y, p.output);
    }

    #[test]
    fn pre_activation_swish_and_batch_norm_fuse() {
        let p = plan("conv-in:1x8x9x9-out:8-k:3-s:1-g:1-pre:relu-act:swish");
        assert_eq!(families(&p), ["conv"]);
        let Step::Conv(c) = &p.steps[0] else {
            unreachable!()
        };
        assert_eq!(
            (c.pre_act, c.act, c.x),
            (Act::Relu, Act::Swish, p.inputs[0])
        );

        let p = plan("act-in:1x16x4x4-act:relu-bn:1");
        assert_eq!(families(&p), ["eltwise"]);
        let Step::Eltwise(e) = &p.steps[0] else {
            unreachable!()
        };
        assert!(matches!(e.operand, Operand::Affine(..)));
        assert_eq!(e.act, Act::Relu);

        // Identity graphs still write their own output.
        let p = plan("act-in:1x16x4x4-act:none-bn:0");
        assert_eq!(families(&p), ["eltwise"]);
        assert_ne!(p.output, p.inputs[0]);
    }

    #[test]
    fn a_linear_layer_reads_its_input_through_a_flatten_view() {
        let p = plan("linear-in:2x32x1x1-out:10");
        assert_eq!(families(&p), ["gemm"]);
        let Step::Gemm(g) = &p.steps[0] else {
            unreachable!()
        };
        assert_eq!((g.m, g.k, g.n, g.trans_b), (2, 32, 10, true));
        assert_eq!(p.buffers[g.x].alias, Some(p.inputs[0]));
    }

    #[test]
    fn a_node_without_a_kernel_is_named() {
        let mut model = op_model(&Op::from_key("add-in:1x8x5x5").unwrap()).unwrap();
        fn node(m: &mut hwnas_onnx::ModelProto) -> &mut hwnas_onnx::proto::NodeProto {
            &mut m.graph.as_mut().unwrap().node[0]
        }
        node(&mut model).op_type = "LRN".into();
        let name = node(&mut model).name.clone();
        let e = Plan::lower(&model).unwrap_err().to_string();
        assert!(e.contains("LRN") && e.contains(&name), "{e}");
        node(&mut model).op_type = "Add".into();
        node(&mut model).input[1] = "nowhere".into();
        let e = Plan::lower(&model).unwrap_err().to_string();
        assert!(e.contains("nowhere"), "{e}");
        model.graph = None;
        assert!(Plan::lower(&model).is_err());
    }

    #[test]
    fn every_kernel_binds_what_it_declares() {
        for key in [
            "mbconv-in:1x16x12x12-out:24-e:4-k:5-s:2-se:1-act:hswish-res:0",
            "conv-in:1x16x11x11-out:16-k:3-s:2-g:16-pre:none-act:relu6",
            "maxpool-in:1x8x9x9-k:3-s:2-p:1",
            "act-in:1x16x4x4-act:relu-bn:1",
            "linear-in:2x32x1x1-out:10",
        ] {
            for step in &plan(key).steps {
                let k = crate::wgsl::kernel(step);
                let declared = k.source.matches("@binding(").count();
                assert_eq!(declared, k.reads.len() + 1, "{key}: {}", k.name);
                assert!(k.workgroups.0 >= 1 && k.workgroups.0 <= 65_535, "{key}");
            }
        }
    }
}
