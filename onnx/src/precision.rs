//! One fp32 graph at another precision, in the form deployments take:
//!
//! - **fp16**: every float initializer (weights, biases, constants) stored as fp16, and a
//!   `Cast` at each graph edge, so the graph's own inputs and outputs stay fp32 and any runtime
//!   can feed it. A runtime without an fp16 kernel for a node inserts its own casts around it:
//!   the table then shows what fp16 costs there.
//! - **int8**: QuantizeLinear → DequantizeLinear (QDQ) pairs after the graph input and every
//!   node's output (uint8 activations), and weights stored as int8 behind a DequantizeLinear
//!   (per output channel for convolutions, per tensor for linear layers) with int32 biases — the
//!   format ONNX Runtime's quantiser writes and NPUs compile. Runtimes fuse a `DQ → Conv → Q`
//!   into an integer kernel (ORT's CPU: QLinearConv). Activation scales are fixed (1/32, zero
//!   point 0 for tensors that cannot be negative, which lets a Relu fold into the quantisation,
//!   else 128): an integer kernel's time does not depend on the scale, so no calibration data
//!   is needed to time it.
//!
//! In a network, the conversions at the edges of a lone op (the input's Cast or Quantize, the
//! output's Cast or Dequantize) are paid once, not per op: the ORT backend leaves them out of an
//! op's in-network time as it does layout reorders.

use std::collections::{HashMap, HashSet};

use crate::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, data_type};
use hwnas_core::op::Precision;

/// The scale of every quantised activation.
pub const ACTIVATION_SCALE: f32 = 1.0 / 32.0;

/// `model` at `precision` (fp32: unchanged).
pub fn convert(model: &ModelProto, precision: Precision) -> ModelProto {
    let mut model = model.clone();
    if let Some(graph) = model.graph.as_mut() {
        match precision {
            Precision::Fp32 => {}
            Precision::Fp16 => to_fp16(graph),
            Precision::Int8 => to_qdq(graph, WeightRange::Full),
        }
    }
    model
}

/// How many levels int8 weights use on each side of zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightRange {
    /// ±127: what ORT's quantiser writes by default and NPU compilers take, and what
    /// [`convert`] builds.
    Full,
    /// ±63 (7 bits), ORT's `reduce_range`. On x86 CPUs without VNNI (AVX2, AVX-512F) ORT
    /// multiplies uint8 activations by int8 weights in pairs summed to int16, which saturates
    /// with full-range weights (255 · 127 · 2 is over 32767); 7-bit weights (255 · 63 · 2 =
    /// 32130) cannot. It also times differently there (~9% slower nb201 networks on an AVX2
    /// VM), so tables are built at the full range, as deployed models are.
    Reduced,
}

impl WeightRange {
    fn levels(self) -> f32 {
        match self {
            WeightRange::Full => 127.0,
            WeightRange::Reduced => 63.0,
        }
    }
}

/// `model` as int8 QDQ with weights over `range` (what [`convert`] does at int8 with
/// [`WeightRange::Full`]).
pub fn to_int8(model: &ModelProto, range: WeightRange) -> ModelProto {
    let mut model = model.clone();
    if let Some(graph) = model.graph.as_mut() {
        to_qdq(graph, range);
    }
    model
}

fn node(op_type: &str, name: String, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name,
        op_type: op_type.into(),
        ..Default::default()
    }
}

/// Point every reader of `from` (nodes and graph outputs alike) at `to`.
fn rename_uses(nodes: &mut [NodeProto], from: &str, to: &str) {
    for n in nodes {
        for input in n.input.iter_mut().filter(|i| *i == from) {
            *input = to.into();
        }
    }
}

/// The names of the graph's float inputs and outputs.
fn float_io(graph: &GraphProto) -> (Vec<String>, Vec<String>) {
    let is_float = |v: &&crate::proto::ValueInfoProto| {
        v.r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .is_some_and(|t| t.elem_type == data_type::FLOAT)
    };
    (
        graph
            .input
            .iter()
            .filter(is_float)
            .map(|v| v.name.clone())
            .collect(),
        graph
            .output
            .iter()
            .filter(is_float)
            .map(|v| v.name.clone())
            .collect(),
    )
}

fn to_fp16(graph: &mut GraphProto) {
    for t in &mut graph.initializer {
        if let Some(values) = t.f32_values() {
            *t = TensorProto::from_f16(&t.name, &t.dims, &values);
        }
    }
    for n in &mut graph.node {
        for a in &mut n.attribute {
            if let Some(values) = a.t.as_ref().and_then(TensorProto::f32_values) {
                let t = a.t.as_mut().expect("checked above");
                *t = TensorProto::from_f16(&t.name, &t.dims, &values);
            }
        }
    }
    let cast = |name: String, from: &str, to: &str, into: i32| {
        let mut n = node("Cast", name, &[from], to);
        n.attribute.push(AttributeProto::int("to", i64::from(into)));
        n
    };
    let (inputs, outputs) = float_io(graph);
    let mut head = Vec::new();
    for x in &inputs {
        let half = format!("{x}_fp16");
        rename_uses(&mut graph.node, x, &half);
        head.push(cast(
            format!("cast_{x}_to_fp16"),
            x,
            &half,
            data_type::FLOAT16,
        ));
    }
    for y in &outputs {
        let half = format!("{y}_fp16");
        for n in &mut graph.node {
            for o in n.output.iter_mut().filter(|o| *o == y) {
                *o = half.clone();
            }
        }
        rename_uses(&mut graph.node, y, &half);
        graph.node.push(cast(
            format!("cast_{y}_to_fp32"),
            &half,
            y,
            data_type::FLOAT,
        ));
    }
    head.append(&mut graph.node);
    graph.node = head;
    graph.value_info.clear();
}

/// Node types whose output is never negative, and those that keep their inputs' sign.
const NON_NEGATIVE: [&str; 3] = ["Relu", "Sigmoid", "HardSigmoid"];
const SIGN_KEEPING: [&str; 10] = [
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Reshape",
    "Flatten",
    "Transpose",
    "Identity",
    "Slice",
    "Split",
    "Concat",
];
/// Node types whose outputs are shapes or indices, not activations: never quantised.
const NOT_ACTIVATIONS: [&str; 4] = ["Shape", "Size", "Constant", "ConstantOfShape"];

/// The activations that cannot be negative, by the nodes that make them.
fn non_negative(graph: &GraphProto) -> HashSet<String> {
    let constants: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut set: HashSet<String> = HashSet::new();
    for n in &graph.node {
        let yes = match n.op_type.as_str() {
            t if NON_NEGATIVE.contains(&t) => true,
            "Softmax" => true,
            // A constant factor or term may be negative.
            "Mul" | "Add" => n.input.iter().all(|i| set.contains(i)),
            "Clip" => n
                .input
                .get(1)
                .and_then(|m| constants.get(m.as_str()))
                .and_then(|t| t.f32_values())
                .is_some_and(|v| v.first().is_some_and(|m| *m >= 0.0)),
            // Their constant inputs (shapes, slice bounds) carry no sign.
            t if SIGN_KEEPING.contains(&t) => {
                let mut inputs = n
                    .input
                    .iter()
                    .filter(|i| !constants.contains_key(i.as_str()))
                    .peekable();
                inputs.peek().is_some() && inputs.all(|i| set.contains(i))
            }
            _ => false,
        };
        if yes {
            set.extend(n.output.iter().cloned());
        }
    }
    set
}

fn to_qdq(graph: &mut GraphProto, range: WeightRange) {
    let positive = non_negative(graph);
    let weights: HashMap<String, TensorProto> = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == data_type::FLOAT)
        .map(|t| (t.name.clone(), t.clone()))
        .collect();
    let named = |name: &str, t: TensorProto| TensorProto {
        name: name.into(),
        ..t
    };
    let (act_scale, zp_signed, zp_positive) = ("act_scale", "act_zero_128", "act_zero_0");
    let mut initializers = vec![
        named(
            act_scale,
            TensorProto::from_f32("", &[], &[ACTIVATION_SCALE]),
        ),
        named(zp_signed, TensorProto::from_u8("", &[], &[128])),
        named(zp_positive, TensorProto::from_u8("", &[], &[0])),
    ];

    let (inputs, outputs) = float_io(graph);
    let old = std::mem::take(&mut graph.node);
    let mut nodes: Vec<NodeProto> = Vec::new();
    // A QDQ pair from `value` to `out` (what readers use instead); `original` is the value's
    // name in the fp32 graph, whose sign decides the zero point.
    let qdq = |nodes: &mut Vec<NodeProto>, value: &str, out: &str, original: &str| {
        let zp = if positive.contains(original) {
            zp_positive
        } else {
            zp_signed
        };
        let q = format!("{value}_q");
        nodes.push(node(
            "QuantizeLinear",
            format!("quantize_{value}"),
            &[value, act_scale, zp],
            &q,
        ));
        nodes.push(node(
            "DequantizeLinear",
            format!("dequantize_{value}"),
            &[&q, act_scale, zp],
            out,
        ));
    };
    let mut renamed: HashMap<String, String> = HashMap::new();
    for x in &inputs {
        let dq = format!("{x}_dq");
        qdq(&mut nodes, x, &dq, x);
        renamed.insert(x.clone(), dq);
    }
    for mut n in old {
        for i in n.input.iter_mut() {
            if let Some(r) = renamed.get(i) {
                *i = r.clone();
            }
        }
        let weight_slots: &[usize] = match n.op_type.as_str() {
            "Conv" | "Gemm" => &[1, 2],
            "MatMul" => &[1],
            _ => &[],
        };
        let mut weight_scale: Vec<f32> = Vec::new();
        for &slot in weight_slots {
            let Some(w) = n.input.get(slot).and_then(|name| weights.get(name)) else {
                continue;
            };
            let (stored, dq) = dequantized_weight(&n, slot, w, range, &mut weight_scale);
            initializers.extend(stored);
            n.input[slot] = dq.output[0].clone();
            nodes.push(dq);
        }
        let produced = if NOT_ACTIVATIONS.contains(&n.op_type.as_str()) {
            vec![]
        } else {
            n.output.clone()
        };
        nodes.push(n);
        for value in produced.iter().filter(|v| !v.is_empty()) {
            if outputs.contains(value) {
                // The graph's output keeps its name: the node writes `value_f` instead.
                let inner = format!("{value}_f");
                let last = nodes.last_mut().expect("just pushed");
                for o in last.output.iter_mut().filter(|o| *o == value) {
                    *o = inner.clone();
                }
                qdq(&mut nodes, &inner, value, value);
            } else {
                let dq = format!("{value}_dq");
                qdq(&mut nodes, value, &dq, value);
                renamed.insert(value.clone(), dq);
            }
        }
    }
    // Weights now live as int8/int32 copies; the fp32 originals only where something else
    // (a Clip bound, a Mul constant) still reads them.
    let read: HashSet<&str> = nodes
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    graph.initializer.retain(|t| read.contains(t.name.as_str()));
    graph.initializer.extend(initializers);
    graph.node = nodes;
    graph.value_info.clear();
}

/// Input `slot` of `n` — its weights (1) or bias (2), the fp32 initializer `w` — stored as
/// int8 weights (per output channel for a Conv, else per tensor) or an int32 bias at the input's
/// × weights' scale, behind a DequantizeLinear: the initializers it needs, and the node, whose
/// output `n` reads instead. `weight_scale` carries the weights' scales to the bias.
fn dequantized_weight(
    n: &NodeProto,
    slot: usize,
    w: &TensorProto,
    range: WeightRange,
    weight_scale: &mut Vec<f32>,
) -> (Vec<TensorProto>, NodeProto) {
    let values = w.f32_values().expect("a float initializer");
    let (q, scale, zp) = if slot == 1 {
        let (q, scale) = quantize_weights(&values, &w.dims, n.op_type == "Conv", range.levels());
        weight_scale.clone_from(&scale);
        let zp = TensorProto::from_i8("", &[], &vec![0; scale.len()]);
        (q, scale, zp)
    } else {
        let scale: Vec<f32> = if weight_scale.len() == values.len() {
            weight_scale.iter().map(|s| s * ACTIVATION_SCALE).collect()
        } else {
            vec![weight_scale.first().copied().unwrap_or(1.0) * ACTIVATION_SCALE]
        };
        let q: Vec<i32> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (v / scale[i.min(scale.len() - 1)]).round_ties_even() as i32)
            .collect();
        let zp = TensorProto::from_i32("", &[], &vec![0; scale.len()]);
        (TensorProto::from_i32("", &w.dims, &q), scale, zp)
    };
    let per_channel = scale.len() > 1;
    let dims = if per_channel {
        vec![scale.len() as i64]
    } else {
        vec![]
    };
    let name = |what: &str| format!("{}_{what}{slot}_{}", w.name, n.name);
    let stored = vec![
        TensorProto {
            name: name("q"),
            ..q
        },
        TensorProto::from_f32(&name("scale"), &dims, &scale),
        TensorProto {
            name: name("zero"),
            dims: dims.clone(),
            ..zp
        },
    ];
    let mut dq = node(
        "DequantizeLinear",
        format!("dequantize_{}", name("dq")),
        &[&name("q"), &name("scale"), &name("zero")],
        &name("dq"),
    );
    if per_channel {
        dq.attribute.push(AttributeProto::int("axis", 0));
    }
    (stored, dq)
}

/// Symmetric int8 weights, per output channel (the first axis) or per tensor: the scale maps
/// the largest magnitude to `levels`.
fn quantize_weights(
    values: &[f32],
    dims: &[i64],
    per_channel: bool,
    levels: f32,
) -> (TensorProto, Vec<f32>) {
    let channels = if per_channel {
        dims.first().copied().unwrap_or(1).max(1) as usize
    } else {
        1
    };
    let per = values.len() / channels.max(1);
    let scale: Vec<f32> = (0..channels)
        .map(|c| {
            let max = values[c * per..(c + 1) * per]
                .iter()
                .fold(0.0f32, |m, v| m.max(v.abs()));
            if max > 0.0 { max / levels } else { 1.0 }
        })
        .collect();
    let q: Vec<i8> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (v / scale[i / per.max(1)])
                .round_ties_even()
                .clamp(-levels, levels) as i8
        })
        .collect();
    (TensorProto::from_i8("", dims, &q), scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op_model;
    use hwnas_core::op::Op;

    fn model(key: &str) -> ModelProto {
        op_model(&Op::from_key(key).unwrap()).unwrap()
    }

    #[test]
    fn fp16_keeps_fp32_edges_and_halves_the_weights() {
        let fp32 = model("conv-in:1x8x6x6-out:8-k:3-s:1-g:1-pre:none-act:relu");
        let g = convert(&fp32, Precision::Fp16).graph.unwrap();
        assert_eq!(float_io(&g), float_io(fp32.graph.as_ref().unwrap()));
        assert_eq!(g.node.first().unwrap().op_type, "Cast");
        assert_eq!(g.node.last().unwrap().op_type, "Cast");
        assert!(
            g.initializer
                .iter()
                .all(|t| t.data_type != data_type::FLOAT)
        );
        let bytes = |g: &GraphProto| {
            g.initializer
                .iter()
                .map(|t| t.raw_data.len())
                .sum::<usize>()
        };
        assert_eq!(2 * bytes(&g), bytes(fp32.graph.as_ref().unwrap()));
        assert_eq!(convert(&fp32, Precision::Fp32), fp32);
    }

    #[test]
    fn int8_quantises_every_edge_and_the_weights_per_channel() {
        let g = convert(
            &model("conv-in:1x8x6x6-out:16-k:3-s:1-g:1-pre:none-act:relu"),
            Precision::Int8,
        )
        .graph
        .unwrap();
        let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
        // x: Q, DQ; weights and bias: DQ each; Conv, Q, DQ; Relu, Q, DQ (the output).
        assert_eq!(
            ops,
            [
                "QuantizeLinear",
                "DequantizeLinear",
                "DequantizeLinear",
                "DequantizeLinear",
                "Conv",
                "QuantizeLinear",
                "DequantizeLinear",
                "Relu",
                "QuantizeLinear",
                "DequantizeLinear",
            ]
        );
        let init = |name: &str| g.initializer.iter().find(|t| t.name == name).unwrap();
        let weights = &g.node[2];
        assert_eq!(init(&weights.input[0]).data_type, data_type::INT8);
        assert_eq!(
            init(&weights.input[1]).dims,
            [16],
            "a scale per output channel"
        );
        assert_eq!(weights.attr("axis").map(|a| a.i), Some(0));
        let bias = &g.node[3];
        assert_eq!(init(&bias.input[0]).data_type, data_type::INT32);
        let (w_scale, b_scale) = (
            init(&weights.input[1]).f32_values().unwrap(),
            init(&bias.input[1]).f32_values().unwrap(),
        );
        for (w, b) in w_scale.iter().zip(&b_scale) {
            assert_eq!(
                *b,
                w * ACTIVATION_SCALE,
                "bias scale = input scale x weight scale"
            );
        }
        // The Relu's output cannot be negative: zero point 0; the conv's can: 128.
        let zero_point = |n: &NodeProto| init(&n.input[2]).numeric_values().unwrap()[0];
        assert_eq!(zero_point(&g.node[5]), 128.0);
        assert_eq!(zero_point(&g.node[8]), 0.0);
        assert_eq!(g.node.last().unwrap().output[0], crate::OUTPUT_NAME);
        assert!(
            g.initializer
                .iter()
                .all(|t| t.data_type != data_type::FLOAT || t.dims.len() <= 1)
        );
    }
}
