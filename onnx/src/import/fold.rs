//! Constant folding, as ONNX Runtime does before it runs a model: every node whose inputs are
//! all constants (initializers, Constant nodes, the shapes of activations) is evaluated here,
//! so that the Slice bounds, Reshape targets and Resize sizes an exporter computes with
//! Shape → Gather → Div → Concat chains become plain constants before mapping.
//!
//! Values are kept for small tensors only ([`MAX_VALUES`] elements): shapes, bounds, scales.
//! A large constant (weights, also weights a model makes with ConstantOfShape) keeps its dims,
//! which is all that mapping needs. An op folded here that hwnas cannot evaluate leaves
//! its outputs opaque (`None`): known to be constant, value unknown.

use crate::proto::{NodeProto, TensorProto, data_type};

/// Constants with more elements than this keep their dims only.
pub(super) const MAX_VALUES: usize = 4096;

/// A constant tensor's values, integers (any integer type, bool) or floats (any float type).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Values {
    Ints(Vec<i64>),
    Floats(Vec<f64>),
}

/// A constant: its dims, and its values when small.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Constant {
    pub dims: Vec<i64>,
    pub values: Option<Values>,
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Ints(v) => v.len(),
            Values::Floats(v) => v.len(),
        }
    }
    /// The same values in the order `index` gives, one output per index.
    fn pick(&self, index: impl Iterator<Item = usize>) -> Values {
        match self {
            Values::Ints(v) => Values::Ints(index.map(|i| v[i]).collect()),
            Values::Floats(v) => Values::Floats(index.map(|i| v[i]).collect()),
        }
    }
}

fn numel(dims: &[i64]) -> Option<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
}

impl Constant {
    pub fn new(dims: Vec<i64>, values: Option<Values>) -> Constant {
        let keep = numel(&dims).is_some_and(|n| n <= MAX_VALUES)
            && values
                .as_ref()
                .is_some_and(|v| Some(v.len()) == numel(&dims));
        Constant {
            values: if keep { values } else { None },
            dims,
        }
    }
    pub fn ints(dims: Vec<i64>, v: Vec<i64>) -> Constant {
        Constant::new(dims, Some(Values::Ints(v)))
    }
    pub fn vector(v: Vec<i64>) -> Constant {
        Constant::ints(vec![v.len() as i64], v)
    }

    /// A stored tensor: its values decoded from `raw_data` or the typed field when small.
    pub fn from_tensor(t: &TensorProto) -> Constant {
        let small = numel(&t.dims).is_some_and(|n| n <= MAX_VALUES);
        let values = if small { decode(t) } else { None };
        Constant::new(t.dims.clone(), values)
    }

    pub fn int_values(&self) -> Option<&[i64]> {
        match &self.values {
            Some(Values::Ints(v)) => Some(v),
            _ => None,
        }
    }
    pub fn float_values(&self) -> Option<Vec<f64>> {
        match &self.values {
            Some(Values::Floats(v)) => Some(v.clone()),
            Some(Values::Ints(v)) => Some(v.iter().map(|&x| x as f64).collect()),
            None => None,
        }
    }
    fn scalar_int(&self) -> Option<i64> {
        match self.int_values()? {
            [v] => Some(*v),
            _ => None,
        }
    }
}

fn decode(t: &TensorProto) -> Option<Values> {
    let raw = &t.raw_data;
    let chunks = |n: usize| raw.chunks_exact(n);
    let ints = |v: Vec<i64>| Some(Values::Ints(v));
    let from_i32 = || ints(t.int32_data.iter().map(|&v| i64::from(v)).collect());
    match t.data_type {
        data_type::FLOAT if raw.is_empty() => Some(Values::Floats(
            t.float_data.iter().map(|&v| f64::from(v)).collect(),
        )),
        data_type::FLOAT => Some(Values::Floats(
            chunks(4)
                .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
        )),
        data_type::DOUBLE if raw.is_empty() => Some(Values::Floats(t.double_data.clone())),
        data_type::DOUBLE => Some(Values::Floats(
            chunks(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect(),
        )),
        data_type::FLOAT16 => Some(Values::Floats(if raw.is_empty() {
            let bits = |v: &i32| half::f16::from_bits(*v as u16).to_f64();
            t.int32_data.iter().map(bits).collect()
        } else {
            chunks(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f64())
                .collect()
        })),
        data_type::INT64 if raw.is_empty() => ints(t.int64_data.clone()),
        data_type::INT64 => ints(
            chunks(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect(),
        ),
        data_type::INT32 if !raw.is_empty() => ints(
            chunks(4)
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
        ),
        data_type::INT8 if !raw.is_empty() => {
            ints(raw.iter().map(|&b| i64::from(b as i8)).collect())
        }
        data_type::UINT8 | data_type::BOOL if !raw.is_empty() => {
            ints(raw.iter().map(|&b| i64::from(b)).collect())
        }
        data_type::INT32
        | data_type::INT16
        | data_type::INT8
        | data_type::UINT16
        | data_type::UINT8
        | data_type::BOOL => from_i32(),
        _ => None,
    }
}

/// Evaluate `node`, every input of which is a constant (`None`: constant, value unknown; a
/// missing optional input is `None` too). Returns its outputs; `None` where hwnas cannot
/// compute one.
pub(super) fn fold(node: &NodeProto, inputs: &[Option<&Constant>]) -> Vec<Option<Constant>> {
    let first = fold_first(node, inputs);
    let mut outs = vec![first];
    outs.resize(node.output.len().max(1), None);
    outs
}

fn fold_first(node: &NodeProto, inputs: &[Option<&Constant>]) -> Option<Constant> {
    let arg = |k: usize| inputs.get(k).copied().flatten();
    let attr_ints = |name: &str| node.attr(name).map(|a| a.ints.clone());
    let attr_int = |name: &str| node.attr(name).map(|a| a.i);
    let ints_or_input = |name: &str, k: usize| {
        attr_ints(name).or_else(|| arg(k).and_then(|c| c.int_values().map(<[i64]>::to_vec)))
    };
    let op = node.op_type.as_str();
    match op {
        "Constant" => constant_node(node),
        "Identity" | "Dropout" => arg(0).cloned(),
        "Cast" => cast(arg(0)?, attr_int("to")?),
        "ConstantOfShape" => {
            let dims = arg(0)?.int_values()?.to_vec();
            let value = node
                .attr("value")
                .and_then(|a| a.t.as_ref())
                .and_then(decode);
            let n = numel(&dims)?;
            let values = match value.unwrap_or(Values::Floats(vec![0.0])) {
                Values::Ints(v) if n <= MAX_VALUES => Some(Values::Ints(vec![*v.first()?; n])),
                Values::Floats(v) if n <= MAX_VALUES => Some(Values::Floats(vec![*v.first()?; n])),
                _ => None,
            };
            Some(Constant::new(dims, values))
        }
        "Unsqueeze" => unsqueeze(arg(0)?, &ints_or_input("axes", 1)?),
        "Squeeze" => squeeze(arg(0)?, ints_or_input("axes", 1)),
        "Reshape" => reshape(
            arg(0)?,
            arg(1)?.int_values()?,
            attr_int("allowzero") == Some(1),
        ),
        "Flatten" => {
            let c = arg(0)?;
            let axis = axis_index(attr_int("axis").unwrap_or(1), c.dims.len() + 1)?;
            let (a, b) = c.dims.split_at(axis);
            let dims = vec![a.iter().product(), b.iter().product()];
            Some(Constant::new(dims, c.values.clone()))
        }
        "Concat" => concat(
            &inputs.iter().copied().collect::<Option<Vec<_>>>()?,
            attr_int("axis")?,
        ),
        "Gather" => gather(arg(0)?, arg(1)?, attr_int("axis").unwrap_or(0)),
        "Slice" => {
            let (starts, ends) = (ints_or_input("starts", 1)?, ints_or_input("ends", 2)?);
            let axes = ints_or_input("axes", 3);
            let steps = arg(4).and_then(|c| c.int_values().map(<[i64]>::to_vec));
            slice(arg(0)?, &starts, &ends, axes, steps)
        }
        "Transpose" => transpose(arg(0)?, attr_ints("perm")),
        "Range" => range(arg(0)?, arg(1)?, arg(2)?),
        "Expand" => {
            let (c, shape) = (arg(0)?, arg(1)?.int_values()?);
            let dims = broadcast(&c.dims, shape)?;
            let values = c
                .values
                .as_ref()
                .map(|v| v.pick(broadcast_index(&c.dims, &dims)));
            Some(Constant::new(dims, values))
        }
        "Where" => {
            let (c, x, y) = (arg(0)?, arg(1)?, arg(2)?);
            let dims = broadcast(&broadcast(&c.dims, &x.dims)?, &y.dims)?;
            let (cond, xs, ys) = (c.float_values(), x.values.as_ref(), y.values.as_ref());
            let values = match (cond, xs, ys) {
                (Some(cond), Some(xs), Some(ys)) => {
                    let (ci, xi, yi) = (
                        broadcast_index(&c.dims, &dims),
                        broadcast_index(&x.dims, &dims),
                        broadcast_index(&y.dims, &dims),
                    );
                    let pick: Vec<(bool, usize, usize)> = ci
                        .zip(xi)
                        .zip(yi)
                        .map(|((c, x), y)| (cond[c] != 0.0, x, y))
                        .collect();
                    Some(match (xs, ys) {
                        (Values::Ints(a), Values::Ints(b)) => Values::Ints(
                            pick.iter()
                                .map(|&(t, x, y)| if t { a[x] } else { b[y] })
                                .collect(),
                        ),
                        _ => {
                            let (a, b) = (x.float_values()?, y.float_values()?);
                            Values::Floats(
                                pick.iter()
                                    .map(|&(t, x, y)| if t { a[x] } else { b[y] })
                                    .collect(),
                            )
                        }
                    })
                }
                _ => None,
            };
            Some(Constant::new(dims, values))
        }
        "Shape" => {
            let dims = &arg(0)?.dims;
            let rank = dims.len();
            let start = attr_int("start").map_or(Some(0), |s| axis_clamp(s, rank))?;
            let end = attr_int("end").map_or(Some(rank), |e| axis_clamp(e, rank))?;
            Some(Constant::vector(dims[start..end.max(start)].to_vec()))
        }
        "Size" => Some(Constant::ints(vec![], vec![arg(0)?.dims.iter().product()])),
        // Weights quantized, clipped or normalized by nodes: the dims are all that matters.
        "DequantizeLinear" | "QuantizeLinear" | "Clip" | "BatchNormalization" => {
            Some(Constant::new(arg(0)?.dims.clone(), None))
        }
        "ReduceProd" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceMean" => reduce(
            op,
            arg(0)?,
            ints_or_input("axes", 1),
            attr_int("keepdims") != Some(0),
        ),
        _ => elementwise(op, inputs),
    }
}

fn constant_node(node: &NodeProto) -> Option<Constant> {
    if let Some(t) = node.attr("value").and_then(|a| a.t.as_ref()) {
        return Some(Constant::from_tensor(t));
    }
    if let Some(a) = node.attr("value_ints") {
        return Some(Constant::vector(a.ints.clone()));
    }
    if let Some(a) = node.attr("value_int") {
        return Some(Constant::ints(vec![], vec![a.i]));
    }
    if let Some(a) = node.attr("value_floats") {
        let v = a.floats.iter().map(|&f| f64::from(f)).collect::<Vec<_>>();
        return Some(Constant::new(vec![v.len() as i64], Some(Values::Floats(v))));
    }
    node.attr("value_float")
        .map(|a| Constant::new(vec![], Some(Values::Floats(vec![f64::from(a.f)]))))
}

fn cast(c: &Constant, to: i64) -> Option<Constant> {
    let to = i32::try_from(to).ok()?;
    let float = matches!(
        to,
        data_type::FLOAT | data_type::FLOAT16 | data_type::DOUBLE | 16
    );
    let values = match (&c.values, float) {
        (None, _) => None,
        (Some(_), true) => c.float_values().map(Values::Floats),
        (Some(Values::Ints(v)), false) if to == data_type::BOOL => {
            Some(Values::Ints(v.iter().map(|&x| i64::from(x != 0)).collect()))
        }
        (Some(Values::Ints(v)), false) => Some(Values::Ints(v.clone())),
        // Float to integer truncates toward zero, as C++ (and ONNX Runtime) does.
        (Some(Values::Floats(v)), false) if to == data_type::BOOL => Some(Values::Ints(
            v.iter().map(|&x| i64::from(x != 0.0)).collect(),
        )),
        (Some(Values::Floats(v)), false) => {
            Some(Values::Ints(v.iter().map(|&x| x.trunc() as i64).collect()))
        }
    };
    Some(Constant::new(c.dims.clone(), values))
}

/// `axis` (negative counts from the end) as an index into `rank` axes.
fn axis_index(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    usize::try_from(a).ok().filter(|&a| a < rank)
}

/// `Shape`'s start/end: clamped into `0..=rank`.
fn axis_clamp(v: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    usize::try_from(if v < 0 { (v + r).max(0) } else { v.min(r) }).ok()
}

fn unsqueeze(c: &Constant, axes: &[i64]) -> Option<Constant> {
    let rank = c.dims.len() + axes.len();
    let mut axes: Vec<usize> = axes
        .iter()
        .map(|&a| axis_index(a, rank))
        .collect::<Option<_>>()?;
    axes.sort_unstable();
    let mut dims = c.dims.clone();
    for a in axes {
        if a > dims.len() {
            return None;
        }
        dims.insert(a, 1);
    }
    Some(Constant::new(dims, c.values.clone()))
}

fn squeeze(c: &Constant, axes: Option<Vec<i64>>) -> Option<Constant> {
    let rank = c.dims.len();
    let drop: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&a| axis_index(a, rank))
            .collect::<Option<_>>()?,
        None => (0..rank).filter(|&k| c.dims[k] == 1).collect(),
    };
    let dims = (0..rank)
        .filter(|k| !drop.contains(k))
        .map(|k| c.dims[k])
        .collect();
    Some(Constant::new(dims, c.values.clone()))
}

/// Reshape's target: 0 copies the input's dim (unless `allowzero`), one -1 is inferred.
pub(super) fn reshape_dims(from: &[i64], target: &[i64], allowzero: bool) -> Option<Vec<i64>> {
    let total: i64 = from.iter().product();
    let mut dims: Vec<i64> = target
        .iter()
        .enumerate()
        .map(|(k, &d)| {
            if d == 0 && !allowzero {
                from.get(k).copied().unwrap_or(0)
            } else {
                d
            }
        })
        .collect();
    let known: i64 = dims.iter().filter(|&&d| d != -1).product();
    match dims.iter().filter(|&&d| d == -1).count() {
        0 => (known == total).then_some(dims),
        1 if known > 0 && total % known == 0 => {
            let slot = dims.iter().position(|&d| d == -1)?;
            dims[slot] = total / known;
            Some(dims)
        }
        _ => None,
    }
}

fn reshape(c: &Constant, target: &[i64], allowzero: bool) -> Option<Constant> {
    let dims = reshape_dims(&c.dims, target, allowzero)?;
    Some(Constant::new(dims, c.values.clone()))
}

fn concat(parts: &[&Constant], axis: i64) -> Option<Constant> {
    let first = parts.first()?;
    let rank = first.dims.len();
    let axis = axis_index(axis, rank.max(1))?;
    let mut dims = first.dims.clone();
    if dims.is_empty() {
        dims.push(1);
    }
    dims[axis] = parts
        .iter()
        .map(|p| p.dims.get(axis).copied().unwrap_or(1))
        .sum();
    // Row-major: along the first axis the values simply follow one another.
    let values = if axis == 0 {
        let all: Option<Vec<&Values>> = parts.iter().map(|p| p.values.as_ref()).collect();
        all.and_then(|all| {
            if all.iter().all(|v| matches!(v, Values::Ints(_))) {
                Some(Values::Ints(
                    all.iter()
                        .flat_map(|v| match v {
                            Values::Ints(x) => x.clone(),
                            Values::Floats(_) => vec![],
                        })
                        .collect(),
                ))
            } else {
                let floats: Option<Vec<Vec<f64>>> =
                    parts.iter().map(|p| p.float_values()).collect();
                Some(Values::Floats(floats?.concat()))
            }
        })
    } else {
        None
    };
    Some(Constant::new(dims, values))
}

fn gather(data: &Constant, indices: &Constant, axis: i64) -> Option<Constant> {
    let axis = axis_index(axis, data.dims.len())?;
    let size = data.dims[axis];
    let idx: Vec<usize> = match indices.int_values() {
        Some(v) => v
            .iter()
            .map(|&i| {
                usize::try_from(if i < 0 { i + size } else { i })
                    .ok()
                    .filter(|&i| (i as i64) < size)
            })
            .collect::<Option<_>>()?,
        None => vec![],
    };
    let dims: Vec<i64> = [
        &data.dims[..axis],
        &indices.dims[..],
        &data.dims[axis + 1..],
    ]
    .concat();
    let values = match (&data.values, indices.int_values()) {
        (Some(v), Some(_)) => {
            let outer: usize = numel(&data.dims[..axis])?;
            let inner: usize = numel(&data.dims[axis + 1..])?;
            let size = usize::try_from(size).ok()?;
            let order = (0..outer).flat_map(|o| {
                idx.iter()
                    .flat_map(move |&i| (0..inner).map(move |k| (o * size + i) * inner + k))
            });
            Some(v.pick(order))
        }
        _ => None,
    };
    Some(Constant::new(dims, values))
}

/// The elements Slice keeps along one axis of `size`.
fn slice_axis(size: i64, start: i64, end: i64, step: i64) -> Option<Vec<i64>> {
    if step == 0 {
        return None;
    }
    let clamp = |v: i64, lo: i64, hi: i64| {
        if v < 0 {
            (v + size).clamp(lo, hi)
        } else {
            v.clamp(lo, hi)
        }
    };
    let mut out = Vec::new();
    if step > 0 {
        let (mut i, e) = (clamp(start, 0, size), clamp(end, 0, size));
        while i < e {
            out.push(i);
            i += step;
        }
    } else {
        let (mut i, e) = (clamp(start, 0, size - 1), clamp(end, -1, size - 1));
        while i > e {
            out.push(i);
            i += step;
        }
    }
    Some(out)
}

fn slice(
    c: &Constant,
    starts: &[i64],
    ends: &[i64],
    axes: Option<Vec<i64>>,
    steps: Option<Vec<i64>>,
) -> Option<Constant> {
    let rank = c.dims.len();
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if axes.len() != starts.len() || ends.len() != starts.len() || steps.len() != starts.len() {
        return None;
    }
    let mut kept: Vec<Vec<i64>> = c
        .dims
        .iter()
        .map(|&d| (0..d.min(MAX_VALUES as i64)).collect())
        .collect();
    let mut dims = c.dims.clone();
    for k in 0..axes.len() {
        let a = axis_index(axes[k], rank)?;
        let picked = slice_axis(c.dims[a], starts[k], ends[k], steps[k])?;
        dims[a] = picked.len() as i64;
        kept[a] = picked;
    }
    let values = c.values.as_ref().map(|v| {
        let strides = strides(&c.dims);
        let mut order = vec![0usize];
        for (picks, &stride) in kept.iter().zip(&strides) {
            order = order
                .iter()
                .flat_map(|&base| picks.iter().map(move |&p| base + p as usize * stride))
                .collect();
        }
        v.pick(order.into_iter())
    });
    Some(Constant::new(dims, values))
}

fn strides(dims: &[i64]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for k in (0..dims.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * dims[k + 1].max(0) as usize;
    }
    s
}

fn transpose(c: &Constant, perm: Option<Vec<i64>>) -> Option<Constant> {
    let rank = c.dims.len();
    let perm: Vec<usize> = match perm {
        Some(p) => p
            .iter()
            .map(|&a| axis_index(a, rank))
            .collect::<Option<_>>()?,
        None => (0..rank).rev().collect(),
    };
    let dims: Vec<i64> = perm.iter().map(|&a| c.dims[a]).collect();
    let values = c.values.as_ref().map(|v| {
        let (from, out) = (strides(&c.dims), strides(&dims));
        let total = numel(&dims).unwrap_or(0);
        v.pick((0..total).map(|i| {
            perm.iter()
                .enumerate()
                .map(|(k, &a)| (i / out[k]) % dims[k].max(1) as usize * from[a])
                .sum()
        }))
    });
    Some(Constant::new(dims, values))
}

fn range(start: &Constant, limit: &Constant, delta: &Constant) -> Option<Constant> {
    if let (Some(s), Some(l), Some(d)) =
        (start.scalar_int(), limit.scalar_int(), delta.scalar_int())
    {
        if d == 0 {
            return None;
        }
        let n = ((l - s) as f64 / d as f64).ceil().max(0.0) as i64;
        return Some(Constant::vector((0..n).map(|k| s + k * d).collect()));
    }
    let f = |c: &Constant| c.float_values().and_then(|v| v.first().copied());
    let (s, l, d) = (f(start)?, f(limit)?, f(delta)?);
    let n = ((l - s) / d).ceil().max(0.0) as usize;
    let v: Vec<f64> = (0..n).map(|k| s + k as f64 * d).collect();
    Some(Constant::new(vec![n as i64], Some(Values::Floats(v))))
}

fn reduce(op: &str, c: &Constant, axes: Option<Vec<i64>>, keepdims: bool) -> Option<Constant> {
    let rank = c.dims.len();
    let axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|&a| axis_index(a, rank))
            .collect::<Option<_>>()?,
        _ => (0..rank).collect(),
    };
    let dims: Vec<i64> = (0..rank)
        .filter_map(|k| match (axes.contains(&k), keepdims) {
            (true, true) => Some(1),
            (true, false) => None,
            (false, _) => Some(c.dims[k]),
        })
        .collect();
    // Values only for a reduction over every axis (a product of dims, a sum of sizes).
    let values = (axes.len() == rank)
        .then(|| c.float_values())
        .flatten()
        .map(|v| {
            let r = match op {
                "ReduceProd" => v.iter().product(),
                "ReduceSum" => v.iter().sum(),
                "ReduceMax" => v.iter().copied().fold(f64::MIN, f64::max),
                "ReduceMin" => v.iter().copied().fold(f64::MAX, f64::min),
                _ => v.iter().sum::<f64>() / v.len().max(1) as f64,
            };
            match c.values {
                Some(Values::Ints(_)) => Values::Ints(vec![r as i64]),
                _ => Values::Floats(vec![r]),
            }
        });
    Some(Constant::new(dims, values))
}

/// Numpy broadcasting of two shapes.
pub(super) fn broadcast(a: &[i64], b: &[i64]) -> Option<Vec<i64>> {
    let rank = a.len().max(b.len());
    let at = |d: &[i64], k: usize| {
        if k + d.len() >= rank {
            d[k + d.len() - rank]
        } else {
            1
        }
    };
    (0..rank)
        .map(|k| match (at(a, k), at(b, k)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// For each element of a tensor of `out` dims, the element of one of `from` dims broadcast to it.
fn broadcast_index(from: &[i64], out: &[i64]) -> impl Iterator<Item = usize> {
    let total = numel(out).unwrap_or(0);
    let (fs, os) = (strides(from), strides(out));
    let offset = out.len() - from.len().min(out.len());
    let (from, out) = (from.to_vec(), out.to_vec());
    (0..total).map(move |i| {
        (0..from.len())
            .filter(|&k| from[k] != 1)
            .map(|k| (i / os[k + offset]) % out[k + offset].max(1) as usize * fs[k])
            .sum()
    })
}

/// Element-wise arithmetic, comparisons and logic on constants, with broadcasting; for big
/// constants (weights scaled or cast by nodes) the dims only.
fn elementwise(op: &str, inputs: &[Option<&Constant>]) -> Option<Constant> {
    let args: Vec<&Constant> = inputs.iter().copied().collect::<Option<_>>()?;
    let dims = args
        .iter()
        .try_fold(Vec::new(), |acc, c| broadcast(&acc, &c.dims))?;
    let unary: Option<fn(f64) -> f64> = match op {
        "Neg" => Some(|x| -x),
        "Abs" => Some(f64::abs),
        "Floor" => Some(f64::floor),
        "Ceil" => Some(f64::ceil),
        "Round" => Some(|x: f64| x.round_ties_even()),
        "Sqrt" => Some(f64::sqrt),
        "Reciprocal" => Some(|x| 1.0 / x),
        "Relu" => Some(|x: f64| x.max(0.0)),
        "Exp" => Some(f64::exp),
        "Log" => Some(f64::ln),
        "Not" => Some(|x| f64::from(x == 0.0)),
        "Sigmoid" => Some(|x: f64| 1.0 / (1.0 + (-x).exp())),
        _ => None,
    };
    let binary: Option<fn(f64, f64) -> f64> = match op {
        "Add" | "Sum" => Some(|a, b| a + b),
        "Sub" => Some(|a, b| a - b),
        "Mul" => Some(|a, b| a * b),
        "Div" => Some(|a, b| a / b),
        "Pow" => Some(f64::powf),
        "Max" => Some(f64::max),
        "Min" => Some(f64::min),
        "Mod" => Some(|a, b| a - (a / b).floor() * b),
        "Equal" => Some(|a, b| f64::from(a == b)),
        "Less" => Some(|a, b| f64::from(a < b)),
        "Greater" => Some(|a, b| f64::from(a > b)),
        "LessOrEqual" => Some(|a, b| f64::from(a <= b)),
        "GreaterOrEqual" => Some(|a, b| f64::from(a >= b)),
        "And" => Some(|a, b| f64::from(a != 0.0 && b != 0.0)),
        "Or" => Some(|a, b| f64::from(a != 0.0 || b != 0.0)),
        _ => None,
    };
    let known = |c: &Constant| c.values.is_some();
    let compare = matches!(
        op,
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Not"
    );
    let all_ints = args
        .iter()
        .all(|c| matches!(c.values, Some(Values::Ints(_))));
    let values = if !args.iter().all(|c| known(c)) {
        None
    } else if let (Some(f), [a]) = (unary, &args[..]) {
        let v = a.float_values()?.into_iter().map(f);
        Some(if all_ints || compare {
            Values::Ints(v.map(|x| x as i64).collect())
        } else {
            Values::Floats(v.collect())
        })
    } else if let (Some(f), true) = (binary, args.len() >= 2) {
        let n = numel(&dims)?;
        let mut acc: Vec<f64> = args[0].float_values()?.clone();
        let mut acc_dims = args[0].dims.clone();
        for b in &args[1..] {
            let out = broadcast(&acc_dims, &b.dims)?;
            let bv = b.float_values()?;
            let ai: Vec<usize> = broadcast_index(&acc_dims, &out).collect();
            acc = ai
                .into_iter()
                .zip(broadcast_index(&b.dims, &out))
                .map(|(i, j)| {
                    let (x, y) = (acc[i], bv[j]);
                    // Integer division truncates toward zero, as ONNX Runtime's does.
                    if all_ints && op == "Div" {
                        (x / y).trunc()
                    } else {
                        f(x, y)
                    }
                })
                .collect();
            acc_dims = out;
        }
        debug_assert_eq!(acc.len(), n);
        Some(if all_ints || compare {
            Values::Ints(acc.into_iter().map(|x| x as i64).collect())
        } else {
            Values::Floats(acc)
        })
    } else {
        None
    };
    (unary.is_some() || binary.is_some()).then(|| Constant::new(dims, values))
}

#[cfg(test)]
mod tests;
