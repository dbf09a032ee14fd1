//! Node sequences exporters write for one layer, matched by node types and wiring alone; the
//! importer and the GPU lowering each add the checks their own value maps allow (who else
//! reads a value, what shapes it has).

use crate::proto::NodeProto;

/// `nodes[i]` is a gate (`Sigmoid`, `HardSigmoid`) of some `x`, and the next node multiplies
/// `x` by it: swish or hard swish (opset 13 has no HardSwish). Returns that `Mul`.
pub fn gated_mul<'n>(nodes: &[&'n NodeProto], i: usize) -> Option<&'n NodeProto> {
    let (gate, next) = (nodes.get(i)?, nodes.get(i + 1)?);
    let (x, g) = (gate.input.first()?, gate.output.first()?);
    (next.op_type == "Mul"
        && next.input.len() == 2
        && next.input.contains(x)
        && next.input.contains(g)
        && !next.output.is_empty())
    .then_some(*next)
}

/// `nodes[i]` is a Reshape to `N x g x C/g x H x W`, followed by `Transpose(0, 2, 1, 3, 4)` of
/// its output and a Reshape of that: a channel shuffle. Returns the Transpose and the last
/// Reshape (whose shape the caller checks).
pub fn shuffle_tail<'n>(
    nodes: &[&'n NodeProto],
    i: usize,
) -> Option<(&'n NodeProto, &'n NodeProto)> {
    let (t, back) = (nodes.get(i + 1)?, nodes.get(i + 2)?);
    let out = nodes.get(i)?.output.first()?;
    (t.op_type == "Transpose"
        && t.input.first() == Some(out)
        && t.attr("perm").is_some_and(|a| a.ints == [0, 2, 1, 3, 4])
        && back.op_type == "Reshape"
        && back.input.first() == t.output.first()
        && !back.output.is_empty())
    .then_some((*t, *back))
}
