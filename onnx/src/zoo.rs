//! Common CNN families as ONNX models, written the way `torch.onnx.export` writes them (opset
//! 17): Conv and BatchNormalization as separate nodes, Clip for ReLU6, Flatten + Gemm heads,
//! Reshape/Transpose channel shuffles, Split, Concat, explicit Pad, ceil-mode pooling, Dropout,
//! ReduceMean, Softmax. Seeded weights. For trying `predict --onnx` and for the importer's tests;
//! the shapes follow the published architectures at reduced width where noted.

use crate::build::OPSET;
use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    ValueInfoProto, data_type,
};
use hwnas_core::rng::SplitMix64;

/// The families [`build`] knows.
pub const FAMILIES: [&str; 5] = [
    "resnet18",
    "mobilenetv2",
    "mobilenetv3",
    "shufflenetv2",
    "squeezenet",
];

/// A model of `family` for a `resolution` x `resolution` RGB input, batch 1, 1000 classes,
/// at opset 17.
pub fn build(family: &str, resolution: u32) -> Result<ModelProto, String> {
    build_at_opset(family, resolution, OPSET)
}

/// The same at another opset (13 to 21): where ONNX moved an attribute to an input (ReduceMean's
/// axes at 18), the model follows, as the exporter does.
pub fn build_at_opset(family: &str, resolution: u32, opset: i64) -> Result<ModelProto, String> {
    if !(13..=21).contains(&opset) {
        return Err(format!("opset {opset}: the zoo writes opsets 13 to 21"));
    }
    let mut b = Builder::new(family, opset);
    let x = "input".to_string();
    let y = match family {
        "resnet18" => resnet18(&mut b, x),
        "mobilenetv2" => mobilenetv2(&mut b, x),
        "mobilenetv3" => mobilenetv3(&mut b, x),
        "shufflenetv2" => shufflenetv2(&mut b, x, resolution as i64),
        "squeezenet" => squeezenet(&mut b, x),
        other => {
            return Err(format!(
                "unknown model family `{other}` (known: {})",
                FAMILIES.join(", ")
            ));
        }
    };
    Ok(b.finish(&y, resolution))
}

struct Builder {
    opset: i64,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    rng: SplitMix64,
    next: usize,
    name: String,
}

impl Builder {
    fn new(family: &str, opset: i64) -> Builder {
        Builder {
            opset,
            nodes: Vec::new(),
            inits: Vec::new(),
            rng: SplitMix64::from_str_seed(family, 17),
            next: 0,
            name: family.into(),
        }
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}_{}", self.next)
    }

    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: format!("/{out}/{op}"),
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    fn floats(&mut self, dims: &[i64], scale: f32, offset: f32) -> String {
        let n: i64 = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| offset + self.rng.uniform(scale)).collect();
        let name = self.fresh("w");
        self.inits.push(TensorProto::from_f32(&name, dims, &v));
        name
    }

    fn ints(&mut self, v: &[i64]) -> String {
        let name = self.fresh("c");
        self.inits.push(TensorProto {
            dims: vec![v.len() as i64],
            data_type: data_type::INT64,
            name: name.clone(),
            int64_data: v.to_vec(),
            ..Default::default()
        });
        name
    }

    /// Conv without bias, then BatchNormalization (as PyTorch exports before folding).
    fn conv_bn(&mut self, x: &str, cin: i64, cout: i64, k: i64, s: i64, g: i64) -> String {
        let fan = (cin / g * k * k) as f32;
        let w = self.floats(&[cout, cin / g, k, k], (3.0 / fan).sqrt(), 0.0);
        let c = self.node(
            "Conv",
            &[x, &w],
            vec![
                AttributeProto::ints("kernel_shape", &[k, k]),
                AttributeProto::ints("strides", &[s, s]),
                AttributeProto::ints("pads", &[k / 2; 4]),
                AttributeProto::ints("dilations", &[1, 1]),
                AttributeProto::int("group", g),
            ],
        );
        self.bn(&c, cout)
    }

    fn bn(&mut self, x: &str, c: i64) -> String {
        let scale = self.floats(&[c], 0.1, 1.0);
        let bias = self.floats(&[c], 0.1, 0.0);
        let mean = self.floats(&[c], 0.1, 0.0);
        let var = self.floats(&[c], 0.1, 1.0);
        self.node(
            "BatchNormalization",
            &[x, &scale, &bias, &mean, &var],
            vec![AttributeProto::float("epsilon", 1e-5)],
        )
    }

    fn relu(&mut self, x: &str) -> String {
        self.node("Relu", &[x], vec![])
    }

    fn relu6(&mut self, x: &str) -> String {
        let lo = self.floats(&[], 0.0, 0.0);
        let hi = self.floats(&[], 0.0, 6.0);
        self.node("Clip", &[x, &lo, &hi], vec![])
    }

    fn hswish(&mut self, x: &str) -> String {
        if self.opset >= 14 {
            return self.node("HardSwish", &[x], vec![]);
        }
        // Opset 13 has no HardSwish: x * HardSigmoid(x), as the exporter writes it.
        let hs = self.hsigmoid(x);
        self.node("Mul", &[x, &hs], vec![])
    }

    fn hsigmoid(&mut self, x: &str) -> String {
        self.node("HardSigmoid", &[x], crate::build::hard_sigmoid_attributes())
    }

    fn gap(&mut self, x: &str) -> String {
        self.node("GlobalAveragePool", &[x], vec![])
    }

    /// Mean over H and W: axes an attribute before opset 18, an input from 18 on.
    fn mean_hw(&mut self, x: &str, keepdims: bool) -> String {
        let keep = AttributeProto::int("keepdims", i64::from(keepdims));
        if self.opset >= 18 {
            let axes = self.ints(&[2, 3]);
            self.node("ReduceMean", &[x, &axes], vec![keep])
        } else {
            self.node(
                "ReduceMean",
                &[x],
                vec![AttributeProto::ints("axes", &[2, 3]), keep],
            )
        }
    }

    fn pool(&mut self, op: &str, x: &str, k: i64, s: i64, p: i64, ceil: bool) -> String {
        self.node(
            op,
            &[x],
            vec![
                AttributeProto::ints("kernel_shape", &[k, k]),
                AttributeProto::ints("strides", &[s, s]),
                AttributeProto::ints("pads", &[p; 4]),
                AttributeProto::int("ceil_mode", i64::from(ceil)),
            ],
        )
    }

    fn gemm(&mut self, x: &str, fin: i64, fout: i64) -> String {
        let w = self.floats(&[fout, fin], (3.0 / fin as f32).sqrt(), 0.0);
        let b = self.floats(&[fout], 0.1, 0.0);
        self.node("Gemm", &[x, &w, &b], vec![AttributeProto::int("transB", 1)])
    }

    fn classifier(&mut self, x: &str, fin: i64) -> String {
        let f = self.node("Flatten", &[x], vec![AttributeProto::int("axis", 1)]);
        let d = self.node("Dropout", &[&f], vec![]);
        self.gemm(&d, fin, 1000)
    }

    fn finish(self, y: &str, resolution: u32) -> ModelProto {
        let r = resolution as i64;
        let mut nodes = self.nodes;
        for n in nodes.iter_mut() {
            for o in n.output.iter_mut() {
                if o == y {
                    *o = "output".into();
                }
            }
            for i in n.input.iter_mut() {
                if i == y {
                    *i = "output".into();
                }
            }
        }
        ModelProto {
            // The IR version each opset shipped with (onnx/helper.py's VERSION_TABLE).
            ir_version: match self.opset {
                ..=14 => 7,
                15..=18 => 8,
                19..=20 => 9,
                _ => 10,
            },
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            producer_name: "hwnas zoo".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: format!("{} at {r}x{r}", self.name),
            graph: Some(GraphProto {
                node: nodes,
                name: self.name,
                initializer: self.inits,
                input: vec![ValueInfoProto::f32_tensor("input", &[1, 3, r, r])],
                output: vec![ValueInfoProto {
                    name: "output".into(),
                    r#type: None,
                }],
                value_info: vec![],
            }),
        }
    }
}

/// ResNet-18: explicit Pad before the 7x7 stem, BasicBlocks with projection shortcuts.
fn resnet18(b: &mut Builder, x: String) -> String {
    let pads = b.ints(&[0, 0, 3, 3, 0, 0, 3, 3]);
    let padded = b.node("Pad", &[&x, &pads], vec![]);
    let fan = 3.0 * 49.0;
    let w = b.floats(&[64, 3, 7, 7], (3.0f32 / fan).sqrt(), 0.0);
    let stem = b.node(
        "Conv",
        &[&padded, &w],
        vec![
            AttributeProto::ints("kernel_shape", &[7, 7]),
            AttributeProto::ints("strides", &[2, 2]),
            AttributeProto::ints("pads", &[0, 0, 0, 0]),
        ],
    );
    let stem = b.bn(&stem, 64);
    let stem = b.relu(&stem);
    let mut h = b.pool("MaxPool", &stem, 3, 2, 1, false);
    let mut cin = 64;
    for (stage, cout) in [64, 128, 256, 512].into_iter().enumerate() {
        for block in 0..2 {
            let s = if stage > 0 && block == 0 { 2 } else { 1 };
            let a = b.conv_bn(&h, cin, cout, 3, s, 1);
            let a = b.relu(&a);
            let a = b.conv_bn(&a, cout, cout, 3, 1, 1);
            let short = if s != 1 || cin != cout {
                b.conv_bn(&h, cin, cout, 1, s, 1)
            } else {
                h.clone()
            };
            let sum = b.node("Add", &[&a, &short], vec![]);
            h = b.relu(&sum);
            cin = cout;
        }
    }
    let g = b.gap(&h);
    let f = b.node("Flatten", &[&g], vec![AttributeProto::int("axis", 1)]);
    b.gemm(&f, 512, 1000)
}

/// MobileNetV2 (width 1.0): inverted residuals with ReLU6 as Clip.
fn mobilenetv2(b: &mut Builder, x: String) -> String {
    let h = b.conv_bn(&x, 3, 32, 3, 2, 1);
    let mut h = b.relu6(&h);
    let mut cin = 32;
    let table = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    for (t, c, n, s) in table {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let mid = cin * t;
            let mut y = h.clone();
            if t != 1 {
                y = b.conv_bn(&y, cin, mid, 1, 1, 1);
                y = b.relu6(&y);
            }
            y = b.conv_bn(&y, mid, mid, 3, stride, mid);
            y = b.relu6(&y);
            y = b.conv_bn(&y, mid, c, 1, 1, 1);
            h = if stride == 1 && cin == c {
                b.node("Add", &[&h, &y], vec![])
            } else {
                y
            };
            cin = c;
        }
    }
    let h = b.conv_bn(&h, cin, 1280, 1, 1, 1);
    let h = b.relu6(&h);
    let g = b.gap(&h);
    b.classifier(&g, 1280)
}

/// MobileNetV3-Large: hard-swish, squeeze-excitation (ReduceMean, Conv, Relu, Conv,
/// HardSigmoid, Mul), classifier Gemm + HardSwish + Dropout + Gemm.
fn mobilenetv3(b: &mut Builder, x: String) -> String {
    let h = b.conv_bn(&x, 3, 16, 3, 2, 1);
    let mut h = b.hswish(&h);
    let mut cin = 16;
    // (kernel, expanded, out, se, hswish, stride) of MobileNetV3-Large.
    let table = [
        (3, 16, 16, false, false, 1),
        (3, 64, 24, false, false, 2),
        (3, 72, 24, false, false, 1),
        (5, 72, 40, true, false, 2),
        (5, 120, 40, true, false, 1),
        (5, 120, 40, true, false, 1),
        (3, 240, 80, false, true, 2),
        (3, 200, 80, false, true, 1),
        (3, 184, 80, false, true, 1),
        (3, 184, 80, false, true, 1),
        (3, 480, 112, true, true, 1),
        (3, 672, 112, true, true, 1),
        (5, 672, 160, true, true, 2),
        (5, 960, 160, true, true, 1),
        (5, 960, 160, true, true, 1),
    ];
    for (k, mid, cout, se, hs, s) in table {
        let act = |b: &mut Builder, v: &str| if hs { b.hswish(v) } else { b.relu(v) };
        let mut y = h.clone();
        if mid != cin {
            y = b.conv_bn(&y, cin, mid, 1, 1, 1);
            y = act(b, &y);
        }
        y = b.conv_bn(&y, mid, mid, k, s, mid);
        y = act(b, &y);
        if se {
            let m = b.mean_hw(&y, true);
            let sq = (mid / 4 + 7) / 8 * 8;
            let w1 = b.floats(&[sq, mid, 1, 1], (3.0 / mid as f32).sqrt(), 0.0);
            let b1 = b.floats(&[sq], 0.1, 0.0);
            let r = b.node(
                "Conv",
                &[&m, &w1, &b1],
                vec![AttributeProto::ints("kernel_shape", &[1, 1])],
            );
            let r = b.relu(&r);
            let w2 = b.floats(&[mid, sq, 1, 1], (3.0 / sq as f32).sqrt(), 0.0);
            let b2 = b.floats(&[mid], 0.1, 0.0);
            let e = b.node(
                "Conv",
                &[&r, &w2, &b2],
                vec![AttributeProto::ints("kernel_shape", &[1, 1])],
            );
            let e = b.hsigmoid(&e);
            y = b.node("Mul", &[&e, &y], vec![]);
        }
        y = b.conv_bn(&y, mid, cout, 1, 1, 1);
        h = if s == 1 && cin == cout {
            b.node("Add", &[&y, &h], vec![])
        } else {
            y
        };
        cin = cout;
    }
    let h = b.conv_bn(&h, cin, 960, 1, 1, 1);
    let h = b.hswish(&h);
    let g = b.gap(&h);
    let f = b.node("Flatten", &[&g], vec![AttributeProto::int("axis", 1)]);
    let f = b.gemm(&f, 960, 1280);
    let f = b.hswish(&f);
    let f = b.node("Dropout", &[&f], vec![]);
    b.gemm(&f, 1280, 1000)
}

/// ShuffleNetV2 (1.0x): Split, branches, Concat, channel shuffle by Reshape/Transpose/Reshape,
/// mean over H and W (ReduceMean, keepdims 0), Gemm.
fn shufflenetv2(b: &mut Builder, x: String, resolution: i64) -> String {
    // The side after a 3x3, stride-2, pad-1 conv or pool.
    let down = |side: i64| (side - 1) / 2 + 1;
    let h = b.conv_bn(&x, 3, 24, 3, 2, 1);
    let h = b.relu(&h);
    let mut h = b.pool("MaxPool", &h, 3, 2, 1, false);
    let mut cin = 24;
    let mut side = down(down(resolution));
    for (cout, repeats) in [(116, 4), (232, 8), (464, 4)] {
        side = down(side);
        let half = cout / 2;
        for i in 0..repeats {
            let (left, right, rin) = if i == 0 {
                let l = b.conv_bn(&h, cin, cin, 3, 2, cin);
                let l = b.conv_bn(&l, cin, half, 1, 1, 1);
                let l = b.relu(&l);
                (l, h.clone(), cin)
            } else {
                let sizes = b.ints(&[half, half]);
                let out1 = b.fresh("split");
                let out2 = b.fresh("split");
                b.nodes.push(NodeProto {
                    input: vec![h.clone(), sizes],
                    output: vec![out1.clone(), out2.clone()],
                    name: format!("/{out1}/Split"),
                    op_type: "Split".into(),
                    attribute: vec![AttributeProto::int("axis", 1)],
                    ..Default::default()
                });
                (out1, out2, half)
            };
            let s = if i == 0 { 2 } else { 1 };
            let r = b.conv_bn(&right, rin, half, 1, 1, 1);
            let r = b.relu(&r);
            let r = b.conv_bn(&r, half, half, 3, s, half);
            let r = b.conv_bn(&r, half, half, 1, 1, 1);
            let r = b.relu(&r);
            let cat = b.node("Concat", &[&left, &r], vec![AttributeProto::int("axis", 1)]);
            let to5 = b.ints(&[1, 2, half, side, side]);
            let r5 = b.node("Reshape", &[&cat, &to5], vec![]);
            let t = b.node(
                "Transpose",
                &[&r5],
                vec![AttributeProto::ints("perm", &[0, 2, 1, 3, 4])],
            );
            let to4 = b.ints(&[1, cout, side, side]);
            h = b.node("Reshape", &[&t, &to4], vec![]);
            cin = cout;
        }
    }
    let h = b.conv_bn(&h, cin, 1024, 1, 1, 1);
    let h = b.relu(&h);
    let m = b.mean_hw(&h, false);
    b.gemm(&m, 1024, 1000)
}

/// SqueezeNet 1.1: fire modules (squeeze 1x1, expand 1x1 and 3x3, Concat), ceil-mode max
/// pools, a 1x1 conv classifier, average pool, Flatten, Softmax.
fn squeezenet(b: &mut Builder, x: String) -> String {
    // SqueezeNet 1.1's stem is unpadded; every other conv keeps its size.
    let conv = |b: &mut Builder, x: &str, cin: i64, cout: i64, k: i64, s: i64| {
        let p = if s == 2 { 0 } else { k / 2 };
        let w = b.floats(&[cout, cin, k, k], (3.0 / (cin * k * k) as f32).sqrt(), 0.0);
        let bias = b.floats(&[cout], 0.1, 0.0);
        let c = b.node(
            "Conv",
            &[x, &w, &bias],
            vec![
                AttributeProto::ints("kernel_shape", &[k, k]),
                AttributeProto::ints("strides", &[s, s]),
                AttributeProto::ints("pads", &[p; 4]),
            ],
        );
        b.relu(&c)
    };
    let h = conv(b, &x, 3, 64, 3, 2);
    let mut h = b.pool("MaxPool", &h, 3, 2, 0, true);
    let mut cin = 64;
    for (i, (sq, ex)) in [
        (16, 64),
        (16, 64),
        (32, 128),
        (32, 128),
        (48, 192),
        (48, 192),
        (64, 256),
        (64, 256),
    ]
    .into_iter()
    .enumerate()
    {
        let s = conv(b, &h, cin, sq, 1, 1);
        let e1 = conv(b, &s, sq, ex, 1, 1);
        let e3 = conv(b, &s, sq, ex, 3, 1);
        h = b.node("Concat", &[&e1, &e3], vec![AttributeProto::int("axis", 1)]);
        cin = 2 * ex;
        if i == 1 || i == 3 {
            h = b.pool("MaxPool", &h, 3, 2, 0, true);
        }
    }
    let d = b.node("Dropout", &[&h], vec![]);
    let c = conv(b, &d, cin, 1000, 1, 1);
    let g = b.gap(&c);
    let f = b.node("Flatten", &[&g], vec![AttributeProto::int("axis", 1)]);
    b.node("Softmax", &[&f], vec![AttributeProto::int("axis", 1)])
}
