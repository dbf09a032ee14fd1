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

mod arith;
mod tensor;

use arith::*;
pub(in crate::import) use tensor::reshape_dims;
use tensor::*;

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
        "Expand" => expand(arg(0)?, arg(1)?.int_values()?),
        "Where" => where_(arg(0)?, arg(1)?, arg(2)?),
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
        data_type::FLOAT | data_type::FLOAT16 | data_type::DOUBLE | data_type::BFLOAT16
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

#[cfg(test)]
mod tests;
