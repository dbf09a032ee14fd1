//! Folding of ops that move and reshape constants: Unsqueeze, Squeeze, Reshape, Concat,
//! Gather, Slice, Transpose.

use super::*;

/// `axis` (negative counts from the end) as an index into `rank` axes.
pub(super) fn axis_index(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    usize::try_from(a).ok().filter(|&a| a < rank)
}

/// `Shape`'s start/end: clamped into `0..=rank`.
pub(super) fn axis_clamp(v: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    usize::try_from(if v < 0 { (v + r).max(0) } else { v.min(r) }).ok()
}

pub(super) fn unsqueeze(c: &Constant, axes: &[i64]) -> Option<Constant> {
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

pub(super) fn squeeze(c: &Constant, axes: Option<Vec<i64>>) -> Option<Constant> {
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
pub(in crate::import) fn reshape_dims(
    from: &[i64],
    target: &[i64],
    allowzero: bool,
) -> Option<Vec<i64>> {
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

pub(super) fn reshape(c: &Constant, target: &[i64], allowzero: bool) -> Option<Constant> {
    let dims = reshape_dims(&c.dims, target, allowzero)?;
    Some(Constant::new(dims, c.values.clone()))
}

pub(super) fn concat(parts: &[&Constant], axis: i64) -> Option<Constant> {
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

pub(super) fn gather(data: &Constant, indices: &Constant, axis: i64) -> Option<Constant> {
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
pub(super) fn slice_axis(size: i64, start: i64, end: i64, step: i64) -> Option<Vec<i64>> {
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

pub(super) fn slice(
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

pub(super) fn strides(dims: &[i64]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for k in (0..dims.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * dims[k + 1].max(0) as usize;
    }
    s
}

pub(super) fn transpose(c: &Constant, perm: Option<Vec<i64>>) -> Option<Constant> {
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
