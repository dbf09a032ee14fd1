//! The nodes of the transformer ops, for the reference evaluator: MatMul with batch
//! broadcasting, LayerNormalization, Erf, Gelu, Gather, ReduceMean.

use super::{Nd, attr_ints};
use crate::proto::NodeProto;

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// numpy's `matmul`: the last two axes multiply, the leading ones broadcast; a 1-D operand is
/// not supported (torch's exports never write one for these ops).
pub(super) fn matmul(x: &Nd, y: &Nd) -> Result<Nd, String> {
    let (rx, ry) = (x.dims.len(), y.dims.len());
    if rx < 2 || ry < 2 {
        return Err(format!("MatMul of {:?} and {:?}", x.dims, y.dims));
    }
    let (m, k) = (x.dims[rx - 2], x.dims[rx - 1]);
    let (k2, n) = (y.dims[ry - 2], y.dims[ry - 1]);
    if k != k2 {
        return Err(format!("MatMul of {:?} and {:?}", x.dims, y.dims));
    }
    let rank = rx.max(ry);
    let lead = |d: &[usize]| {
        let mut v = vec![1; rank - d.len()];
        v.extend_from_slice(&d[..d.len() - 2]);
        v
    };
    let (bx, by) = (lead(&x.dims), lead(&y.dims));
    let mut batch = Vec::with_capacity(rank - 2);
    for (&a, &b) in bx.iter().zip(&by) {
        if a != b && a != 1 && b != 1 {
            return Err(format!("MatMul batches {:?} and {:?}", x.dims, y.dims));
        }
        batch.push(a.max(b));
    }
    let (sx, sy, sb) = (strides(&bx), strides(&by), strides(&batch));
    let count: usize = batch.iter().product();
    let mut data = vec![0f32; count * m * n];
    for b in 0..count {
        let (mut ox, mut oy) = (0, 0);
        for d in 0..batch.len() {
            let i = b / sb[d] % batch[d];
            ox += if bx[d] == 1 { 0 } else { i * sx[d] };
            oy += if by[d] == 1 { 0 } else { i * sy[d] };
        }
        let (xs, ys) = (&x.data[ox * m * k..], &y.data[oy * k * n..]);
        let out = &mut data[b * m * n..(b + 1) * m * n];
        for i in 0..m {
            for l in 0..k {
                let a = xs[i * k + l];
                for j in 0..n {
                    out[i * n + j] += a * ys[l * n + j];
                }
            }
        }
    }
    let mut dims = batch;
    dims.extend([m, n]);
    Ok(Nd { dims, data })
}

/// LayerNormalization over the last axis (the only axis torch exports), with scale and bias.
pub(super) fn layer_norm(node: &NodeProto, a: &[&Nd]) -> Result<Nd, String> {
    let axis = node.attr("axis").map_or(-1, |v| v.i);
    let last = a[0].dims.len() as i64 - 1;
    if axis != -1 && axis != last {
        return Err(format!("LayerNormalization over axis {axis}, not the last"));
    }
    let eps = node.attr("epsilon").map_or(1e-5, |v| v.f);
    let c = *a[0].dims.last().unwrap_or(&1);
    let mut out = a[0].clone();
    for row in out.data.chunks_mut(c.max(1)) {
        let mean = row.iter().sum::<f32>() / c as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / c as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (i, v) in row.iter_mut().enumerate() {
            let bias = a.get(2).map_or(0.0, |b| b.data[i % b.data.len()]);
            *v = (*v - mean) * inv * a[1].data[i % a[1].data.len()] + bias;
        }
    }
    Ok(out)
}

pub(super) fn erf(x: &Nd) -> Nd {
    Nd {
        dims: x.dims.clone(),
        data: x.data.iter().map(|&v| libm::erff(v)).collect(),
    }
}

/// Opset 20's Gelu: exact (erf), or its tanh approximation.
pub(super) fn gelu(node: &NodeProto, x: &Nd) -> Result<Nd, String> {
    let tanh = match node.attr("approximate").map(|a| a.s.as_slice()) {
        None | Some(b"" | b"none") => false,
        Some(b"tanh") => true,
        Some(other) => {
            return Err(format!(
                "approximate = {:?}",
                String::from_utf8_lossy(other)
            ));
        }
    };
    let f = |v: f32| {
        if tanh {
            let c = (2.0 / std::f32::consts::PI).sqrt();
            0.5 * v * (1.0 + (c * (v + 0.044_715 * v * v * v)).tanh())
        } else {
            0.5 * v * (1.0 + libm::erff(v / std::f32::consts::SQRT_2))
        }
    };
    Ok(Nd {
        dims: x.dims.clone(),
        data: x.data.iter().map(|&v| f(v)).collect(),
    })
}

/// Gather along `axis` with a scalar or 1-D index tensor (negative indices count from the end).
pub(super) fn gather(node: &NodeProto, a: &[&Nd]) -> Result<Nd, String> {
    let (x, idx) = (a[0], a[1]);
    let rank = x.dims.len() as i64;
    let axis = node.attr("axis").map_or(0, |v| v.i);
    let axis = if axis < 0 { axis + rank } else { axis };
    if !(0..rank).contains(&axis) || idx.dims.len() > 1 {
        return Err(format!("Gather on axis {axis} with indices {:?}", idx.dims));
    }
    let axis = axis as usize;
    let (outer, extent) = (x.dims[..axis].iter().product::<usize>(), x.dims[axis]);
    let inner: usize = x.dims[axis + 1..].iter().product();
    let picks = idx
        .data
        .iter()
        .map(|&i| {
            let i = if i < 0.0 { i + extent as f32 } else { i } as usize;
            (i < extent)
                .then_some(i)
                .ok_or_else(|| format!("index {i} out of {extent}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut data = Vec::with_capacity(outer * picks.len() * inner);
    for o in 0..outer {
        for &p in &picks {
            let at = (o * extent + p) * inner;
            data.extend_from_slice(&x.data[at..at + inner]);
        }
    }
    let mut dims = x.dims[..axis].to_vec();
    dims.extend(&idx.dims);
    dims.extend(&x.dims[axis + 1..]);
    Ok(Nd { dims, data })
}

/// ReduceMean over one axis given as an attribute (opset 17), keeping it or not.
pub(super) fn reduce_mean(node: &NodeProto, x: &Nd) -> Result<Nd, String> {
    let axes = attr_ints(node, "axes", &[]);
    let [axis] = axes[..] else {
        return Err(format!(
            "ReduceMean over axes {axes:?} (one axis supported)"
        ));
    };
    if axis >= x.dims.len() {
        return Err(format!("ReduceMean over axis {axis} of {:?}", x.dims));
    }
    let (outer, extent) = (x.dims[..axis].iter().product::<usize>(), x.dims[axis]);
    let inner: usize = x.dims[axis + 1..].iter().product();
    let mut data = vec![0f32; outer * inner];
    for o in 0..outer {
        for e in 0..extent {
            for i in 0..inner {
                data[o * inner + i] += x.data[(o * extent + e) * inner + i] / extent as f32;
            }
        }
    }
    let mut dims = x.dims.clone();
    if node.attr("keepdims").is_none_or(|k| k.i != 0) {
        dims[axis] = 1;
    } else {
        dims.remove(axis);
    }
    Ok(Nd { dims, data })
}
