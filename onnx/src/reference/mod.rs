//! A plain-Rust evaluator for the ONNX graphs hwnas builds: the slow, obvious reference that
//! every backend's output is checked against.
//!
//! It covers the node types [`crate::build`] emits (Conv, BatchNormalization, Relu, Clip,
//! HardSwish, HardSigmoid, Sigmoid, Mul, Add, AveragePool, MaxPool, GlobalAveragePool, Flatten,
//! Gemm, Identity, Concat and Slice on channels, Reshape, Transpose, Softmax; and for the
//! transformer ops MatMul, LayerNormalization, Div, Erf, opset 20's Gelu, Gather, ReduceMean), with numpy
//! broadcasting for Add, Mul and Div, and the nodes of other precisions ([`crate::precision`]):
//! Cast to fp16 (rounding) and back, QuantizeLinear and DequantizeLinear, per tensor or per axis.

use std::collections::HashMap;

mod conv_transpose;
mod resample;
mod tokens;

use crate::proto::{ModelProto, NodeProto, data_type};

/// A dense fp32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Nd {
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error("reference evaluator: node `{node}` ({op_type}) is not supported")]
    Unsupported { node: String, op_type: String },
    #[error("reference evaluator: node `{node}` reads `{value}`, which nothing produced")]
    MissingValue { node: String, value: String },
    #[error("reference evaluator: node `{node}`: {why}")]
    Bad { node: String, why: String },
    #[error("reference evaluator: the model has no graph")]
    NoGraph,
}

/// Run the model on named inputs and return its outputs, in the graph's output order.
pub fn evaluate(model: &ModelProto, inputs: &[(&str, Nd)]) -> Result<Vec<Nd>, RefError> {
    let graph = model.graph.as_ref().ok_or(RefError::NoGraph)?;
    let mut values: HashMap<String, Nd> = HashMap::new();
    // Quantisation's output range follows its zero point's type.
    let types: HashMap<&str, i32> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t.data_type))
        .collect();
    for t in &graph.initializer {
        if let Some(data) = t.numeric_values() {
            let dims = t.dims.iter().map(|&d| d as usize).collect();
            values.insert(t.name.clone(), Nd { dims, data });
        }
    }
    for (name, nd) in inputs {
        values.insert(name.to_string(), nd.clone());
    }
    // An optional input left out (Resize's roi and scales) is named "".
    values.insert(
        String::new(),
        Nd {
            dims: vec![0],
            data: vec![],
        },
    );
    for node in &graph.node {
        let args: Vec<&Nd> = node
            .input
            .iter()
            .map(|n| {
                values.get(n).ok_or_else(|| RefError::MissingValue {
                    node: node.name.clone(),
                    value: n.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        let out = match node.op_type.as_str() {
            "QuantizeLinear" => {
                let zp_type = node.input.get(2).and_then(|z| types.get(z.as_str()));
                quantize(node, &args, zp_type.copied())?
            }
            _ => eval_node(node, &args)?,
        };
        values.insert(node.output[0].clone(), out);
    }
    graph
        .output
        .iter()
        .map(|o| {
            values
                .remove(&o.name)
                .ok_or_else(|| RefError::MissingValue {
                    node: "graph output".into(),
                    value: o.name.clone(),
                })
        })
        .collect()
}

fn attr_ints(node: &NodeProto, name: &str, default: &[i64]) -> Vec<usize> {
    node.attr(name)
        .map(|a| a.ints.clone())
        .unwrap_or_else(|| default.to_vec())
        .into_iter()
        .map(|v| v as usize)
        .collect()
}

fn map(x: &Nd, f: impl Fn(f32) -> f32) -> Nd {
    Nd {
        dims: x.dims.clone(),
        data: x.data.iter().map(|&v| f(v)).collect(),
    }
}

/// QuantizeLinear: `saturate(round_half_even(x / scale) + zero_point)` into the zero point's
/// type (uint8 when it has none).
fn quantize(node: &NodeProto, a: &[&Nd], zp_type: Option<i32>) -> Result<Nd, RefError> {
    let (lo, hi) = match zp_type {
        None | Some(data_type::UINT8) => (0.0, 255.0),
        Some(data_type::INT8) => (-128.0, 127.0),
        Some(t) => {
            return Err(RefError::Bad {
                node: node.name.clone(),
                why: format!("quantising to data type {t}"),
            });
        }
    };
    let (scale, zp) = per_axis(node, a)?;
    Ok(along_axis(node, a[0], scale.len() > 1, |v, c| {
        ((v / scale[c]).round_ties_even() + zp[c]).clamp(lo, hi)
    }))
}

/// The scale and zero point of a (de)quantisation, per tensor (one value) or per axis.
fn per_axis(node: &NodeProto, a: &[&Nd]) -> Result<(Vec<f32>, Vec<f32>), RefError> {
    let scale = a
        .get(1)
        .ok_or_else(|| RefError::Bad {
            node: node.name.clone(),
            why: "no scale".into(),
        })?
        .data
        .clone();
    let zp = a.get(2).map_or(vec![0.0; scale.len()], |z| z.data.clone());
    Ok((scale, zp))
}

/// `f(value, index along the node's axis)` over `x`; the index is 0 for a per-tensor node.
fn along_axis(node: &NodeProto, x: &Nd, per_axis: bool, f: impl Fn(f32, usize) -> f32) -> Nd {
    let axis = node.attr("axis").map_or(1, |a| a.i) as usize;
    let (extent, inner) = (
        x.dims.get(axis).copied().unwrap_or(1),
        x.dims.iter().skip(axis + 1).product::<usize>(),
    );
    Nd {
        dims: x.dims.clone(),
        data: x
            .data
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = (i / inner.max(1)) % extent.max(1);
                f(v, if per_axis { c } else { 0 })
            })
            .collect(),
    }
}

fn eval_node(node: &NodeProto, a: &[&Nd]) -> Result<Nd, RefError> {
    let bad = |why: String| RefError::Bad {
        node: node.name.clone(),
        why,
    };
    let hard_sigmoid = |alpha: f32, beta: f32| move |v: f32| (alpha * v + beta).clamp(0.0, 1.0);
    Ok(match node.op_type.as_str() {
        "Identity" => a[0].clone(),
        "DequantizeLinear" => {
            let (scale, zp) = per_axis(node, a)?;
            along_axis(node, a[0], scale.len() > 1, |v, c| (v - zp[c]) * scale[c])
        }
        "Cast" => match node.attr("to").map(|t| t.i as i32) {
            Some(data_type::FLOAT) => a[0].clone(),
            Some(data_type::FLOAT16) => map(a[0], |v| half::f16::from_f32(v).to_f32()),
            to => return Err(bad(format!("cast to data type {to:?}"))),
        },
        "Relu" => map(a[0], |v| v.max(0.0)),
        "Sigmoid" => map(a[0], |v| 1.0 / (1.0 + (-v).exp())),
        "Tanh" => map(a[0], f32::tanh),
        "LeakyRelu" => {
            let alpha = node.attr("alpha").map_or(0.01, |a| a.f);
            map(a[0], |v| if v < 0.0 { alpha * v } else { v })
        }
        "LRN" => resample::lrn(node, a[0]).map_err(bad)?,
        "ConvTranspose" => conv_transpose::conv_transpose(node, a).map_err(bad)?,
        "Resize" | "Upsample" => resample::resize(node, a).map_err(bad)?,
        "HardSwish" => map(a[0], |v| v * hard_sigmoid(1.0 / 6.0, 0.5)(v)),
        "HardSigmoid" => {
            let alpha = node.attr("alpha").map_or(0.2, |a| a.f);
            let beta = node.attr("beta").map_or(0.5, |a| a.f);
            map(a[0], hard_sigmoid(alpha, beta))
        }
        "Clip" => {
            let lo = a.get(1).map_or(f32::MIN, |t| t.data[0]);
            let hi = a.get(2).map_or(f32::MAX, |t| t.data[0]);
            map(a[0], |v| v.clamp(lo, hi))
        }
        "Add" => broadcast(a[0], a[1], |x, y| x + y).map_err(bad)?,
        "Mul" => broadcast(a[0], a[1], |x, y| x * y).map_err(bad)?,
        "Div" => broadcast(a[0], a[1], |x, y| x / y).map_err(bad)?,
        "MatMul" => tokens::matmul(a[0], a[1]).map_err(bad)?,
        "LayerNormalization" => tokens::layer_norm(node, a).map_err(bad)?,
        "Erf" => tokens::erf(a[0]),
        "Gelu" => tokens::gelu(node, a[0]).map_err(bad)?,
        "Gather" => tokens::gather(node, a).map_err(bad)?,
        "ReduceMean" => tokens::reduce_mean(node, a[0]).map_err(bad)?,
        "Conv" => conv(node, a).map_err(bad)?,
        "AveragePool" | "MaxPool" => pool(node, a[0]).map_err(bad)?,
        "GlobalAveragePool" => global_avg_pool(a[0]),
        "Flatten" => {
            let n = a[0].dims[0];
            Nd {
                dims: vec![n, a[0].data.len() / n.max(1)],
                data: a[0].data.clone(),
            }
        }
        "Gemm" => gemm(node, a).map_err(bad)?,
        "Concat" => concat(node, a).map_err(bad)?,
        "Slice" => slice(a).map_err(bad)?,
        "Reshape" => {
            let dims: Vec<usize> = a[1].data.iter().map(|&d| d as usize).collect();
            if dims.iter().product::<usize>() != a[0].data.len() {
                return Err(bad(format!("cannot reshape {:?} to {dims:?}", a[0].dims)));
            }
            Nd {
                dims,
                data: a[0].data.clone(),
            }
        }
        "Transpose" => transpose(node, a[0]).map_err(bad)?,
        "Softmax" => softmax(a[0]),
        "BatchNormalization" => batch_norm(node, a),
        other => {
            return Err(RefError::Unsupported {
                node: node.name.clone(),
                op_type: other.into(),
            });
        }
    })
}

fn global_avg_pool(x: &Nd) -> Nd {
    let (n, c, hw) = (x.dims[0], x.dims[1], x.dims[2] * x.dims[3]);
    let data = x
        .data
        .chunks(hw)
        .map(|ch| ch.iter().sum::<f32>() / hw as f32)
        .collect();
    Nd {
        dims: vec![n, c, 1, 1],
        data,
    }
}

fn concat(node: &NodeProto, a: &[&Nd]) -> Result<Nd, String> {
    if node.attr("axis").map_or(0, |a| a.i) != 1 {
        return Err("only Concat on axis 1 is supported".into());
    }
    let (n, rest) = (a[0].dims[0], a[0].dims[2..].iter().product::<usize>());
    let mut dims = a[0].dims.clone();
    dims[1] = a.iter().map(|t| t.dims[1]).sum();
    let mut data = Vec::with_capacity(dims.iter().product());
    for b in 0..n {
        for t in a {
            let len = t.dims[1] * rest;
            data.extend_from_slice(&t.data[b * len..(b + 1) * len]);
        }
    }
    Ok(Nd { dims, data })
}

fn slice(a: &[&Nd]) -> Result<Nd, String> {
    let (start, end) = (a[1].data[0] as usize, a[2].data[0] as usize);
    if a.get(3).is_none_or(|axes| axes.data[0] != 1.0) {
        return Err("only Slice on axis 1 is supported".into());
    }
    let (n, c, rest) = (
        a[0].dims[0],
        a[0].dims[1],
        a[0].dims[2..].iter().product::<usize>(),
    );
    let end = end.min(c);
    let mut dims = a[0].dims.clone();
    dims[1] = end - start;
    let mut data = Vec::new();
    for b in 0..n {
        data.extend_from_slice(&a[0].data[(b * c + start) * rest..(b * c + end) * rest]);
    }
    Ok(Nd { dims, data })
}

fn softmax(x: &Nd) -> Nd {
    let cols = *x.dims.last().unwrap_or(&1);
    let mut out = x.clone();
    for row in out.data.chunks_mut(cols.max(1)) {
        let max = row.iter().fold(f32::MIN, |m, &v| m.max(v));
        let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
        for v in row.iter_mut() {
            *v = (*v - max).exp() / sum;
        }
    }
    out
}

fn batch_norm(node: &NodeProto, a: &[&Nd]) -> Nd {
    let eps = node.attr("epsilon").map_or(1e-5, |a| a.f);
    let (c, hw) = (a[0].dims[1], a[0].dims[2..].iter().product::<usize>());
    let mut out = a[0].clone();
    for (i, v) in out.data.iter_mut().enumerate() {
        let ch = (i / hw) % c;
        let (s, b, m, var) = (a[1].data[ch], a[2].data[ch], a[3].data[ch], a[4].data[ch]);
        *v = s * (*v - m) / (var + eps).sqrt() + b;
    }
    out
}

/// Element-wise binary op with numpy broadcasting (the lower rank is padded with leading 1s).
fn broadcast(x: &Nd, y: &Nd, f: impl Fn(f32, f32) -> f32) -> Result<Nd, String> {
    let rank = x.dims.len().max(y.dims.len());
    let pad = |t: &Nd| Nd {
        dims: std::iter::repeat_n(1, rank - t.dims.len())
            .chain(t.dims.iter().copied())
            .collect(),
        data: t.data.clone(),
    };
    let (x, y) = (&pad(x), &pad(y));
    let mut dims = Vec::with_capacity(x.dims.len());
    for (&a, &b) in x.dims.iter().zip(&y.dims) {
        if a != b && a != 1 && b != 1 {
            return Err(format!(
                "shapes {:?} and {:?} do not broadcast",
                x.dims, y.dims
            ));
        }
        dims.push(a.max(b));
    }
    let strides = |d: &[usize]| {
        let mut s = vec![0; d.len()];
        let mut acc = 1;
        for i in (0..d.len()).rev() {
            s[i] = if d[i] == 1 { 0 } else { acc };
            acc *= d[i];
        }
        s
    };
    let (sx, sy) = (strides(&x.dims), strides(&y.dims));
    let total: usize = dims.iter().product();
    let mut data = Vec::with_capacity(total);
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..total {
        let ix: usize = idx.iter().zip(&sx).map(|(i, s)| i * s).sum();
        let iy: usize = idx.iter().zip(&sy).map(|(i, s)| i * s).sum();
        data.push(f(x.data[ix], y.data[iy]));
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(Nd { dims, data })
}

fn conv(node: &NodeProto, a: &[&Nd]) -> Result<Nd, String> {
    let (x, w) = (a[0], a[1]);
    let [n, cin, h, wd] = x.dims[..] else {
        return Err(format!("Conv input must be 4-D, got {:?}", x.dims));
    };
    let (cout, cin_g, kh, kw) = (w.dims[0], w.dims[1], w.dims[2], w.dims[3]);
    let groups = node.attr("group").map_or(1, |a| a.i as usize);
    let s = attr_ints(node, "strides", &[1, 1]);
    let p = attr_ints(node, "pads", &[0, 0, 0, 0]);
    let d = attr_ints(node, "dilations", &[1, 1]);
    if cin != cin_g * groups {
        return Err(format!(
            "{cin} input channels vs weight {cin_g} x {groups} groups"
        ));
    }
    let ho = (h + p[0] + p[2] - (d[0] * (kh - 1) + 1)) / s[0] + 1;
    let wo = (wd + p[1] + p[3] - (d[1] * (kw - 1) + 1)) / s[1] + 1;
    let cout_g = cout / groups;
    let mut out = vec![0f32; n * cout * ho * wo];
    for b in 0..n {
        for co in 0..cout {
            let g = co / cout_g;
            let bias = a.get(2).map_or(0.0, |t| t.data[co]);
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = bias;
                    for ci in 0..cin_g {
                        let c = g * cin_g + ci;
                        for ky in 0..kh {
                            let iy = (oy * s[0] + ky * d[0]) as isize - p[0] as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * s[1] + kx * d[1]) as isize - p[1] as isize;
                                if ix < 0 || ix >= wd as isize {
                                    continue;
                                }
                                let xv =
                                    x.data[((b * cin + c) * h + iy as usize) * wd + ix as usize];
                                let wv = w.data[((co * cin_g + ci) * kh + ky) * kw + kx];
                                acc += xv * wv;
                            }
                        }
                    }
                    out[((b * cout + co) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    Ok(Nd {
        dims: vec![n, cout, ho, wo],
        data: out,
    })
}

fn pool(node: &NodeProto, x: &Nd) -> Result<Nd, String> {
    let [n, c, h, w] = x.dims[..] else {
        return Err(format!("pool input must be 4-D, got {:?}", x.dims));
    };
    let k = attr_ints(node, "kernel_shape", &[]);
    if k.len() != 2 {
        return Err("pool needs a 2-D kernel_shape".into());
    }
    let s = attr_ints(node, "strides", &[1, 1]);
    let p = attr_ints(node, "pads", &[0, 0, 0, 0]);
    let is_max = node.op_type == "MaxPool";
    let include_pad = node.attr("count_include_pad").is_some_and(|a| a.i != 0);
    let ho = (h + p[0] + p[2] - k[0]) / s[0] + 1;
    let wo = (w + p[1] + p[3] - k[1]) / s[1] + 1;
    let mut out = Vec::with_capacity(n * c * ho * wo);
    for plane in x.data.chunks(h * w) {
        for oy in 0..ho {
            for ox in 0..wo {
                let (mut acc, mut count) = (if is_max { f32::MIN } else { 0.0 }, 0usize);
                for ky in 0..k[0] {
                    for kx in 0..k[1] {
                        let iy = (oy * s[0] + ky) as isize - p[0] as isize;
                        let ix = (ox * s[1] + kx) as isize - p[1] as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = plane[iy as usize * w + ix as usize];
                        acc = if is_max { acc.max(v) } else { acc + v };
                        count += 1;
                    }
                }
                let divisor = if include_pad {
                    k[0] * k[1]
                } else {
                    count.max(1)
                };
                out.push(if is_max { acc } else { acc / divisor as f32 });
            }
        }
    }
    Ok(Nd {
        dims: vec![n, c, ho, wo],
        data: out,
    })
}

fn transpose(node: &NodeProto, x: &Nd) -> Result<Nd, String> {
    let rank = x.dims.len();
    let perm = attr_ints(node, "perm", &(0..rank as i64).rev().collect::<Vec<_>>());
    if perm.len() != rank {
        return Err(format!("perm {perm:?} for a rank-{rank} tensor"));
    }
    let dims: Vec<usize> = perm.iter().map(|&p| x.dims[p]).collect();
    let mut strides = vec![1usize; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * x.dims[i + 1];
    }
    let total = x.data.len();
    let mut data = Vec::with_capacity(total);
    let mut idx = vec![0usize; rank];
    for _ in 0..total {
        let src: usize = idx.iter().zip(&perm).map(|(&i, &p)| i * strides[p]).sum();
        data.push(x.data[src]);
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(Nd { dims, data })
}

fn gemm(node: &NodeProto, a: &[&Nd]) -> Result<Nd, String> {
    let trans_b = node.attr("transB").is_some_and(|t| t.i != 0);
    let (x, w) = (a[0], a[1]);
    let (m, k) = (x.dims[0], x.dims[1]);
    let (nout, wk) = if trans_b {
        (w.dims[0], w.dims[1])
    } else {
        (w.dims[1], w.dims[0])
    };
    if wk != k {
        return Err(format!("Gemm: input has {k} features, weight expects {wk}"));
    }
    let mut out = vec![0f32; m * nout];
    for i in 0..m {
        for j in 0..nout {
            let mut acc = a.get(2).map_or(0.0, |b| b.data[j % b.data.len()]);
            for l in 0..k {
                let wv = if trans_b {
                    w.data[j * k + l]
                } else {
                    w.data[l * nout + j]
                };
                acc += x.data[i * k + l] * wv;
            }
            out[i * nout + j] = acc;
        }
    }
    Ok(Nd {
        dims: vec![m, nout],
        data: out,
    })
}
