//! Op → a self-contained ONNX model (opset 17) with seeded weights.
//!
//! Each op becomes the nodes a framework exporter would write for it (Conv with folded BN as a
//! bias, the activation as its own node, SE as GlobalAveragePool → Conv → Relu → Conv →
//! HardSigmoid → Mul) and nothing else, so ONNX Runtime's optimiser fuses it the way it fuses
//! the same layers inside a whole network.

use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    ValueInfoProto,
};
use hwnas_core::op::{
    Activation, Conv, LEAKY_RELU_ALPHA, MbConv, Op, PoolKind, Resize, ResizeMode, Tensor,
};
use hwnas_core::rng::SplitMix64;

mod convnext;
mod transformer;

pub const OPSET: i64 = 17;
pub const IR_VERSION: i64 = 8;
/// Input names: `x` for the first input, `x2` for the second (add, scale, concat).
pub const INPUT_NAMES: [&str; 2] = ["x", "x2"];
pub const OUTPUT_NAME: &str = "y";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("`{0}` runs no kernel (identity or zero), so there is no model to build")]
    FreeOp(String),
}

/// MobileNetV3's hard sigmoid, `relu6(x + 3) / 6`, as HardSigmoid's attributes.
pub(crate) fn hard_sigmoid_attributes() -> Vec<AttributeProto> {
    vec![
        AttributeProto::float("alpha", 1.0 / 6.0),
        AttributeProto::float("beta", 0.5),
    ]
}

/// The ONNX model of one op, with weights drawn from a generator seeded by the op key.
pub fn op_model(op: &Op) -> Result<ModelProto, BuildError> {
    if op.is_free() {
        return Err(BuildError::FreeOp(op.key()));
    }
    let mut g = GraphBuilder::new(&op.key());
    let inputs: Vec<String> = INPUT_NAMES[..op.num_inputs()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let y = g.emit(op, &inputs);
    g.rename_output(&y);
    let inputs = op
        .input_shapes()
        .iter()
        .zip(INPUT_NAMES)
        .map(|(t, name)| ValueInfoProto::f32_tensor(name, &t.dims()))
        .collect();
    Ok(g.finish(inputs, output_info(op), &op.key()))
}

/// The declared output of a graph ending in `op` (a linear layer's output is 2-D).
pub(crate) fn output_info(op: &Op) -> ValueInfoProto {
    let dims: Vec<i64> = match op {
        Op::Linear(l) => vec![l.input.n as i64, l.cout as i64],
        Op::Softmax(t) | Op::ClassToken(t) | Op::TokenMean(t) => vec![t.n as i64, t.c as i64],
        _ => op.output().dims(),
    };
    ValueInfoProto::f32_tensor(OUTPUT_NAME, &dims)
}

/// Seeded input tensors for an op (one per input), in `[-1, 1)`.
pub fn op_inputs(op: &Op, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = SplitMix64::from_str_seed(&op.key(), seed ^ 0x1234_5678);
    op.input_shapes()
        .iter()
        .map(|t| (0..t.numel()).map(|_| rng.uniform(1.0)).collect())
        .collect()
}

/// The input a user's model is run on end to end (`validate --onnx`): seeded, in `[-1, 1)`, the
/// same on every backend.
pub fn model_input(shape: Tensor) -> Vec<f32> {
    let mut rng = SplitMix64::new(1);
    (0..shape.numel()).map(|_| rng.uniform(1.0)).collect()
}

/// Builds a graph node by node, naming intermediate values and initializers.
pub(crate) struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    next_id: usize,
    rng: SplitMix64,
}

impl GraphBuilder {
    pub(crate) fn new(seed_key: &str) -> Self {
        GraphBuilder {
            nodes: Vec::new(),
            initializers: Vec::new(),
            next_id: 0,
            rng: SplitMix64::from_str_seed(seed_key, 0),
        }
    }

    /// The nodes of `op` reading `inputs`; returns the name of its output. Free ops emit
    /// nothing: `skip` returns its input, and `zero` multiplies it by 0 (only emitted when a
    /// network really reads a zero tensor).
    pub(crate) fn emit(&mut self, op: &Op, inputs: &[String]) -> String {
        let x = &inputs[0];
        match op {
            Op::Conv(c) => self.conv_op(x, c),
            Op::MbConv(m) => self.mbconv(x, m),
            Op::Pool(p) => {
                let mut attrs = vec![
                    AttributeProto::ints("kernel_shape", &[p.k as i64; 2]),
                    AttributeProto::ints("strides", &[p.stride as i64; 2]),
                    AttributeProto::ints("pads", &[p.pad as i64; 4]),
                ];
                let op_type = match p.kind {
                    PoolKind::Avg => {
                        attrs.push(AttributeProto::int("count_include_pad", 0));
                        "AveragePool"
                    }
                    PoolKind::Max => "MaxPool",
                };
                self.node(op_type, &[x], attrs)
            }
            Op::GlobalAvgPool(_) => self.node("GlobalAveragePool", &[x], vec![]),
            Op::Linear(l) => {
                let fin = (l.input.c * l.input.h * l.input.w) as i64;
                let flat = self.node("Flatten", &[x], vec![AttributeProto::int("axis", 1)]);
                let w = self.weight(&[l.cout as i64, fin], fin as u32);
                let b = self.weight(&[l.cout as i64], fin as u32);
                self.node(
                    "Gemm",
                    &[&flat, &w, &b],
                    vec![AttributeProto::int("transB", 1)],
                )
            }
            Op::Add(_) => self.node("Add", &[x, &inputs[1]], vec![]),
            Op::Act(a) => {
                let mut h = x.clone();
                if a.bn {
                    h = self.batch_norm(&h, a.input.c);
                }
                self.activation(&h, a.act)
            }
            Op::Skip(_) => x.clone(),
            Op::Zero(_) => {
                let zero = self.constant(&[], &[0.0]);
                self.node("Mul", &[x, &zero], vec![])
            }
            Op::Scale(_) => self.node("Mul", &[x, &inputs[1]], vec![]),
            Op::Concat(_) => self.node(
                "Concat",
                &[x, &inputs[1]],
                vec![AttributeProto::int("axis", 1)],
            ),
            Op::Shuffle(s) => {
                let t = s.input;
                let (n, c, h, w) = (t.n as i64, t.c as i64, t.h as i64, t.w as i64);
                let g = s.groups as i64;
                let split = self.int64_constant(&[n, g, c / g, h, w]);
                let back = self.int64_constant(&[n, c, h, w]);
                let r = self.node("Reshape", &[x, &split], vec![]);
                let p = self.node(
                    "Transpose",
                    &[&r],
                    vec![AttributeProto::ints("perm", &[0, 2, 1, 3, 4])],
                );
                self.node("Reshape", &[&p, &back], vec![])
            }
            Op::Slice(s) => {
                let starts = self.int64_constant(&[s.start as i64]);
                let ends = self.int64_constant(&[(s.start + s.cout) as i64]);
                let axes = self.int64_constant(&[1]);
                self.node("Slice", &[x, &starts, &ends, &axes], vec![])
            }
            Op::Softmax(_) => {
                let flat = self.node("Flatten", &[x], vec![AttributeProto::int("axis", 1)]);
                self.node("Softmax", &[&flat], vec![AttributeProto::int("axis", 1)])
            }
            Op::ConvTranspose(c) => {
                let (k, cout_g) = (c.k as i64, (c.cout / c.groups) as i64);
                let fan_in = (c.input.c / c.groups) * c.k * c.k / (c.stride * c.stride);
                let w = self.weight(&[c.input.c as i64, cout_g, k, k], fan_in.max(1));
                let b = self.weight(&[c.cout as i64], fan_in.max(1));
                self.node(
                    "ConvTranspose",
                    &[x, &w, &b],
                    vec![
                        AttributeProto::ints("kernel_shape", &[k, k]),
                        AttributeProto::ints("strides", &[c.stride as i64; 2]),
                        AttributeProto::ints("pads", &[c.pad as i64; 4]),
                        AttributeProto::int("group", c.groups as i64),
                    ],
                )
            }
            // AlexNet's and GoogLeNet's constants.
            Op::Lrn(l) => self.node(
                "LRN",
                &[x],
                vec![
                    AttributeProto::int("size", l.size as i64),
                    AttributeProto::float("alpha", 1e-4),
                    AttributeProto::float("beta", 0.75),
                    AttributeProto::float("bias", 1.0),
                ],
            ),
            Op::Resize(r) => self.resize(x, r),
            Op::Patch(_)
            | Op::LayerNorm(_)
            | Op::Mhsa(_)
            | Op::Mlp(_)
            | Op::Encoder(_)
            | Op::ClassToken(_)
            | Op::ToTokens(_)
            | Op::TokenMean(_) => self.transformer_op(x, op),
            Op::ChannelNorm(_) | Op::CnBlock(_) => self.convnext_op(x, op),
        }
    }

    /// As torch exports `interpolate`: nearest with floor, bilinear with half pixels (ONNX
    /// Runtime took 1.3x as long with `pytorch_half_pixel` here).
    fn resize(&mut self, x: &str, r: &Resize) -> String {
        let t = r.input;
        let sizes = self.int64_constant(&[t.n as i64, t.c as i64, r.h as i64, r.w as i64]);
        let (coordinates, nearest) = match r.mode {
            ResizeMode::Nearest => ("asymmetric", "floor"),
            ResizeMode::Linear => ("half_pixel", "round_prefer_floor"),
        };
        let attrs = vec![
            AttributeProto::string("mode", r.mode.name()),
            AttributeProto::string("coordinate_transformation_mode", coordinates),
            AttributeProto::string("nearest_mode", nearest),
        ];
        self.node("Resize", &[x, "", "", &sizes], attrs)
    }

    /// A 0-D int64 constant (Gather's index).
    fn int64_scalar(&mut self, value: i64) -> String {
        let name = self.fresh("i");
        self.initializers.push(TensorProto {
            dims: vec![],
            data_type: crate::proto::data_type::INT64,
            name: name.clone(),
            int64_data: vec![value],
            ..Default::default()
        });
        name
    }

    /// A 1-D int64 constant (shapes, slice bounds).
    fn int64_constant(&mut self, values: &[i64]) -> String {
        let name = self.fresh("i");
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: crate::proto::data_type::INT64,
            name: name.clone(),
            int64_data: values.to_vec(),
            ..Default::default()
        });
        name
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    /// Adds a node with one output and returns the output's name.
    fn node(&mut self, op_type: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        let out = self.fresh("t");
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: format!("{}_{}", op_type.to_lowercase(), self.next_id),
            op_type: op_type.into(),
            attribute,
            ..Default::default()
        });
        out
    }

    /// A weight initializer, uniform with the variance of He initialisation for `fan_in`, so
    /// values stay in a sane range through a block.
    fn weight(&mut self, dims: &[i64], fan_in: u32) -> String {
        let n: i64 = dims.iter().product();
        let a = (3.0 / fan_in.max(1) as f32).sqrt();
        let values: Vec<f32> = (0..n).map(|_| self.rng.uniform(a)).collect();
        self.constant(dims, &values)
    }

    fn constant(&mut self, dims: &[i64], values: &[f32]) -> String {
        let name = self.fresh("w");
        self.initializers
            .push(TensorProto::from_f32(&name, dims, values));
        name
    }

    fn conv(&mut self, x: &str, c: &Conv) -> String {
        let cin_g = (c.input.c / c.groups) as i64;
        let (kh, kw) = (c.k as i64, c.kw() as i64);
        let fan_in = (cin_g * kh * kw) as u32;
        let w = self.weight(&[c.cout as i64, cin_g, kh, kw], fan_in);
        let b = self.weight(&[c.cout as i64], fan_in);
        let (ph, pw) = (c.pads().0 as i64, c.pads().1 as i64);
        let d = c.dilation as i64;
        self.node(
            "Conv",
            &[x, &w, &b],
            vec![
                AttributeProto::ints("kernel_shape", &[kh, kw]),
                AttributeProto::ints("strides", &[c.stride as i64; 2]),
                AttributeProto::ints("pads", &[ph, pw, ph, pw]),
                AttributeProto::ints("dilations", &[d, d]),
                AttributeProto::int("group", c.groups as i64),
            ],
        )
    }

    fn conv_op(&mut self, x: &str, c: &Conv) -> String {
        let h = self.activation(x, c.pre_act);
        let h = self.conv(&h, c);
        self.activation(&h, c.act)
    }

    fn activation(&mut self, x: &str, act: Activation) -> String {
        match act {
            Activation::None => x.to_string(),
            Activation::Relu => self.node("Relu", &[x], vec![]),
            Activation::Relu6 => {
                let lo = self.constant(&[], &[0.0]);
                let hi = self.constant(&[], &[6.0]);
                self.node("Clip", &[x, &lo, &hi], vec![])
            }
            Activation::HSwish => self.node("HardSwish", &[x], vec![]),
            Activation::HSigmoid => self.hard_sigmoid(x),
            Activation::Sigmoid => self.node("Sigmoid", &[x], vec![]),
            Activation::Tanh => self.node("Tanh", &[x], vec![]),
            Activation::LeakyRelu => self.node(
                "LeakyRelu",
                &[x],
                vec![AttributeProto::float("alpha", LEAKY_RELU_ALPHA)],
            ),
            Activation::Swish => {
                let s = self.node("Sigmoid", &[x], vec![]);
                self.node("Mul", &[x, &s], vec![])
            }
        }
    }

    fn hard_sigmoid(&mut self, x: &str) -> String {
        self.node("HardSigmoid", &[x], hard_sigmoid_attributes())
    }

    fn batch_norm(&mut self, x: &str, c: u32) -> String {
        let c = c as i64;
        let scale: Vec<f32> = (0..c).map(|_| 1.0 + self.rng.uniform(0.2)).collect();
        let shift: Vec<f32> = (0..c).map(|_| self.rng.uniform(0.2)).collect();
        let mean: Vec<f32> = (0..c).map(|_| self.rng.uniform(0.1)).collect();
        let var: Vec<f32> = (0..c).map(|_| 1.0 + self.rng.uniform(0.2)).collect();
        let names = [scale, shift, mean, var].map(|v| self.constant(&[c], &v));
        self.node(
            "BatchNormalization",
            &[x, &names[0], &names[1], &names[2], &names[3]],
            vec![AttributeProto::float("epsilon", 1e-5)],
        )
    }

    fn mbconv(&mut self, x: &str, m: &MbConv) -> String {
        let convs = m.convs();
        let (project, body) = convs.split_last().expect("an MBConv has a projection");
        let mut h = x.to_string();
        for c in body {
            h = self.conv_op(&h, c);
        }
        if m.se {
            let mid = m.mid() as i64;
            let sm = m.se_mid() as i64;
            let pooled = self.node("GlobalAveragePool", &[&h], vec![]);
            let reduce = Conv {
                input: Tensor::new(m.input.n, mid as u32, 1, 1),
                cout: sm as u32,
                k: 1,
                stride: 1,
                groups: 1,
                kw: None,
                dilation: 1,
                pad: None,
                pre_act: Activation::None,
                act: Activation::Relu,
            };
            let s = self.conv_op(&pooled, &reduce);
            let expand = Conv {
                input: Tensor::new(m.input.n, sm as u32, 1, 1),
                cout: mid as u32,
                act: Activation::None,
                ..reduce
            };
            let s = self.conv(&s, &expand);
            let s = self.hard_sigmoid(&s);
            h = self.node("Mul", &[&h, &s], vec![]);
        }
        let mut y = self.conv_op(&h, project);
        if m.residual {
            y = self.node("Add", &[&y, x], vec![]);
        }
        y
    }

    /// Points the last node that produced `y` at the graph output name.
    pub(crate) fn rename_output(&mut self, y: &str) {
        for n in self.nodes.iter_mut().rev() {
            if let Some(o) = n.output.iter_mut().find(|o| *o == y) {
                *o = OUTPUT_NAME.to_string();
                return;
            }
        }
        // The graph is a pass-through (e.g. act:none without bn): make the output explicit.
        self.nodes.push(NodeProto {
            input: vec![y.to_string()],
            output: vec![OUTPUT_NAME.to_string()],
            name: "identity_out".into(),
            op_type: "Identity".into(),
            ..Default::default()
        });
    }

    pub(crate) fn finish(
        self,
        input: Vec<ValueInfoProto>,
        output: ValueInfoProto,
        key: &str,
    ) -> ModelProto {
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "hwnas".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: key.into(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: "hwnas_op".into(),
                initializer: self.initializers,
                input,
                output: vec![output],
                value_info: vec![],
            }),
        }
    }
}
