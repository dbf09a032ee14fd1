//! Folding of arithmetic on constants: element-wise ops with broadcasting, Range,
//! reductions, Expand, Where.

use super::*;

pub(super) fn range(start: &Constant, limit: &Constant, delta: &Constant) -> Option<Constant> {
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

pub(super) fn reduce(
    op: &str,
    c: &Constant,
    axes: Option<Vec<i64>>,
    keepdims: bool,
) -> Option<Constant> {
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
pub(super) fn broadcast_index(from: &[i64], out: &[i64]) -> impl Iterator<Item = usize> {
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
pub(super) fn elementwise(op: &str, inputs: &[Option<&Constant>]) -> Option<Constant> {
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

pub(super) fn expand(c: &Constant, shape: &[i64]) -> Option<Constant> {
    let dims = broadcast(&c.dims, shape)?;
    let values = c
        .values
        .as_ref()
        .map(|v| v.pick(broadcast_index(&c.dims, &dims)));
    Some(Constant::new(dims, values))
}

/// `Where(cond, x, y)`, broadcast.
pub(super) fn where_(c: &Constant, x: &Constant, y: &Constant) -> Option<Constant> {
    let dims = broadcast(&broadcast(&c.dims, &x.dims)?, &y.dims)?;
    let (Some(cond), Some(xs), Some(ys)) = (c.float_values(), x.float_values(), y.float_values())
    else {
        return Some(Constant::new(dims, None));
    };
    let picked = broadcast_index(&c.dims, &dims)
        .zip(broadcast_index(&x.dims, &dims))
        .zip(broadcast_index(&y.dims, &dims))
        .map(|((ci, xi), yi)| if cond[ci] != 0.0 { xs[xi] } else { ys[yi] });
    let ints = matches!(
        (&x.values, &y.values),
        (Some(Values::Ints(_)), Some(Values::Ints(_)))
    );
    let values = if ints {
        Values::Ints(picked.map(|v| v as i64).collect())
    } else {
        Values::Floats(picked.collect())
    };
    Some(Constant::new(dims, Some(values)))
}
