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

use hwnas_onnx::proto::{ModelProto, NodeProto};

mod compute;
mod lowering;
mod movement;
mod resample;
mod tokens;

use lowering::{Lowering, eltwise};

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
    Tanh,
    /// `x` where positive, else `alpha * x`.
    LeakyRelu(f32),
    /// `x * (1 + erf(x / sqrt 2)) / 2`.
    Gelu,
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
    /// A buffer of the trailing dims (`period` values), added to every leading index (a
    /// position embedding over a batch).
    AddRepeat(usize, u32),
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
    /// Spacing of the kernel's taps (height, width).
    pub dilation: (u32, u32),
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
    Lrn(LrnStep),
    Resize(ResizeStep),
    ConvTranspose(ConvTransposeStep),
    /// LayerNorm over each of `rows` rows of `cols` values, with per-column scale and bias.
    LayerNorm {
        x: usize,
        scale: usize,
        bias: usize,
        y: usize,
        rows: u32,
        cols: u32,
        eps: f32,
    },
    /// `y = transpose(x, perm)`, `x` of `dims`.
    Transpose {
        x: usize,
        y: usize,
        dims: Vec<u32>,
        perm: Vec<u32>,
    },
    /// `batch` products of `m x k` by `k x n` matrices (`b` shared when not `b_batched`).
    MatMul {
        a: usize,
        b: usize,
        y: usize,
        batch: u32,
        m: u32,
        k: u32,
        n: u32,
        b_batched: bool,
    },
}

/// A transposed convolution, square kernel, uniform stride and padding, with a bias.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvTransposeStep {
    pub x: usize,
    pub w: usize,
    pub b: Option<usize>,
    pub y: usize,
    pub n: u32,
    pub cin: u32,
    pub h: u32,
    pub w_in: u32,
    pub cout: u32,
    pub ho: u32,
    pub wo: u32,
    pub k: u32,
    pub stride: u32,
    pub pad: u32,
    pub groups: u32,
}

/// Local response normalization across channels.
#[derive(Debug, Clone, PartialEq)]
pub struct LrnStep {
    pub x: usize,
    pub y: usize,
    pub n: u32,
    pub c: u32,
    pub hw: u32,
    pub size: u32,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

/// Resize of every `h x w` plane to `ho x wo`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResizeStep {
    pub x: usize,
    pub y: usize,
    pub planes: u32,
    pub h: u32,
    pub w: u32,
    pub ho: u32,
    pub wo: u32,
    /// Bilinear, else nearest.
    pub linear: bool,
    /// ONNX's `coordinate_transformation_mode`.
    pub coordinates: String,
    /// ONNX's `nearest_mode`.
    pub nearest: String,
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
            Step::Lrn(_) => "lrn",
            Step::Resize(_) => "resize",
            Step::ConvTranspose(_) => "convt",
            Step::LayerNorm { .. } => "layernorm",
            Step::Transpose { .. } => "transpose",
            Step::MatMul { .. } => "matmul",
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
            Step::Lrn(s) => s.y,
            Step::Resize(s) => s.y,
            Step::ConvTranspose(s) => s.y,
            Step::LayerNorm { y, .. } | Step::Transpose { y, .. } | Step::MatMul { y, .. } => *y,
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
                let k = crate::wgsl::kernel(step, crate::settings::DEFAULT_MIN_INVOCATIONS);
                let declared = k.source.matches("@binding(").count();
                assert_eq!(declared, k.reads.len() + 1, "{key}: {}", k.name);
                assert!(k.workgroups.0 >= 1 && k.workgroups.0 <= 65_535, "{key}");
            }
        }
    }
}
