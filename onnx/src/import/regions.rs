//! The graph walks behind the transformer mapping (`tokens.rs`): who reads each value, a
//! LayerNorm as one node or written out (torch before opset 17, and hand-written LayerNorms:
//! ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, then Mul and Add by its scale and
//! shift), and the region of a sub-layer (every node from a LayerNorm's output, or from the
//! tokens in a post-norm block, to the Add that rejoins the residual stream).

use std::collections::{HashMap, HashSet};

use crate::proto::NodeProto;

/// Past this many nodes a "sub-layer" is not one (the residual Add was never found).
const MAX_REGION: usize = 400;

/// A sub-layer found in the graph: its nodes (by index) and the residual Add that ends it.
pub(super) struct Region {
    pub nodes: Vec<usize>,
    pub add: usize,
}

/// A LayerNorm in the graph: its nodes (by index, the first reads the input) and its output.
pub(super) struct Norm<'g> {
    pub nodes: Vec<usize>,
    pub out: &'g str,
}

/// The LayerNorm starting at `nodes[j]`: a LayerNormalization node, or the written-out form
/// starting at its first ReduceMean (`is_const` tells a scale or shift from an activation).
pub(super) fn norm_at<'g>(
    nodes: &[&'g NodeProto],
    j: usize,
    consumers: &HashMap<&str, Vec<usize>>,
    is_const: &dyn Fn(&str) -> bool,
) -> Option<Norm<'g>> {
    let n = nodes[j];
    match n.op_type.as_str() {
        "LayerNormalization" => Some(Norm {
            nodes: vec![j],
            out: n.output.first()?.as_str(),
        }),
        "ReduceMean" => written_out(nodes, j, consumers, is_const),
        _ => None,
    }
}

fn written_out<'g>(
    nodes: &[&'g NodeProto],
    j: usize,
    consumers: &HashMap<&str, Vec<usize>>,
    is_const: &dyn Fn(&str) -> bool,
) -> Option<Norm<'g>> {
    // The one reader of `value` of type `op` whose inputs satisfy `fits`.
    let next = |value: &str, op: &str, fits: &dyn Fn(&NodeProto) -> bool| {
        consumers
            .get(value)?
            .iter()
            .copied()
            .find(|&k| nodes[k].op_type == op && fits(nodes[k]))
    };
    let out = |k: usize| nodes[k].output[0].as_str();
    let x = nodes[j].input.first()?.as_str();
    let mean = out(j);
    let sub = next(mean, "Sub", &|n| n.input[..] == [x, mean])?;
    let centred = out(sub);
    let square = next(centred, "Pow", &|_| true)
        .or_else(|| next(centred, "Mul", &|n| n.input.iter().all(|i| i == centred)))?;
    let var = next(out(square), "ReduceMean", &|_| true)?;
    let eps = next(out(var), "Add", &|_| true)?;
    let sqrt = next(out(eps), "Sqrt", &|_| true)?;
    let div = next(out(sqrt), "Div", &|n| n.input[0] == centred)?;
    let mut found = vec![j, sub, square, var, eps, sqrt, div];
    let affine = |k: usize| nodes[k].input.iter().any(|i| is_const(i));
    let mut last = div;
    for op in ["Mul", "Add"] {
        let readers = consumers.get(out(last)).map_or(0, Vec::len);
        match next(out(last), op, &|_| true).filter(|&k| readers == 1 && affine(k)) {
            Some(k) => {
                found.push(k);
                last = k;
            }
            None => break,
        }
    }
    Some(Norm {
        nodes: found,
        out: out(last),
    })
}

/// For each value, the nodes that read it.
pub(super) fn consumers<'a>(nodes: &[&'a NodeProto]) -> HashMap<&'a str, Vec<usize>> {
    let mut map: HashMap<&str, Vec<usize>> = HashMap::new();
    for (j, n) in nodes.iter().enumerate() {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            map.entry(i.as_str()).or_default().push(j);
        }
    }
    map
}

/// Every node reachable from `starts` (a LayerNorm's output; or the tokens themselves, with
/// the feature map they were transposed from) until an Add that joins the reached values with
/// `residual`; `None` if there is no such Add within [`MAX_REGION`] nodes.
pub(super) fn region(
    nodes: &[&NodeProto],
    starts: &[&str],
    residual: &str,
    consumers: &HashMap<&str, Vec<usize>>,
) -> Option<Region> {
    let mut reached: HashSet<&str> = starts.iter().copied().collect();
    let mut members: Vec<usize> = Vec::new();
    let mut queue: Vec<&str> = reached.iter().copied().collect();
    let mut end = None;
    while let Some(v) = queue.pop() {
        for &j in consumers.get(v).into_iter().flatten() {
            let n = nodes[j];
            if members.contains(&j) || end == Some(j) {
                continue;
            }
            if n.op_type == "Add" && n.input.iter().any(|i| i == residual) {
                if end.is_some_and(|e| e != j) {
                    return None;
                }
                end = Some(j);
                continue;
            }
            members.push(j);
            if members.len() > MAX_REGION {
                return None;
            }
            for o in &n.output {
                if reached.insert(o.as_str()) {
                    queue.push(o.as_str());
                }
            }
        }
    }
    let add = end?;
    // The Add's other operand must come from the region.
    let joined = nodes[add]
        .input
        .iter()
        .any(|i| i != residual && reached.contains(i.as_str()));
    members.sort_unstable();
    joined.then_some(Region {
        nodes: members,
        add,
    })
}
