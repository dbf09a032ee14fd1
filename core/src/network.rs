//! Whole networks: vocabulary ops wired into a graph.
//!
//! A [`Network`] is what a search space makes of an architecture: the ops in execution order,
//! each reading the network input or earlier ops' outputs. `hwnas_onnx::NetworkModel` builds it
//! as one ONNX model.

use serde::{Deserialize, Serialize};

use crate::op::{Op, Tensor};

/// A tensor in a network: the network's input, or the output of node `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    Input,
    Node(usize),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// A name for the network (its architecture encoding), also the seed of its weights.
    pub name: String,
    pub input: Tensor,
    pub nodes: Vec<Node>,
    pub output: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("network `{name}`, node {node} (`{key}`): {why}")]
    Wiring {
        name: String,
        node: usize,
        key: String,
        why: String,
    },
}

impl Network {
    pub fn new(name: impl Into<String>, input: Tensor) -> Network {
        Network {
            name: name.into(),
            input,
            nodes: Vec::new(),
            output: Value::Input,
        }
    }

    /// Append `op` reading `inputs`; returns its output, which also becomes the network output.
    pub fn push(&mut self, op: Op, inputs: &[Value]) -> Value {
        self.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
        });
        self.output = Value::Node(self.nodes.len() - 1);
        self.output
    }

    /// The ops in execution order.
    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.nodes.iter().map(|n| &n.op)
    }

    fn shape(&self, v: Value) -> Tensor {
        match v {
            Value::Input => self.input,
            Value::Node(i) => self.nodes[i].op.output(),
        }
    }

    /// Per node: the nodes that read its output (the network's output is not counted).
    fn consumers(&self) -> Vec<Vec<usize>> {
        let mut consumers = vec![Vec::new(); self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for v in &node.inputs {
                if let Value::Node(j) = v {
                    consumers[*j].push(i);
                }
            }
        }
        consumers
    }

    /// What `v` is in the ONNX graph, where a skip is no node: the value the skips pass on.
    fn through_skips(&self, mut v: Value) -> Value {
        while let Value::Node(j) = v
            && let (Op::Skip(_), [passed]) = (self.nodes[j].op, self.nodes[j].inputs.as_slice())
        {
            v = *passed;
        }
        v
    }

    /// Per node: how many nodes of the ONNX graph read its output, the network's output
    /// counted as one reader; a skip reads nothing itself, it hands its readers on.
    fn graph_readers(&self) -> Vec<usize> {
        let mut readers = vec![0; self.nodes.len()];
        let reads = self
            .nodes
            .iter()
            .filter(|n| !matches!(n.op, Op::Skip(_)))
            .flat_map(|n| n.inputs.iter())
            .chain([&self.output]);
        for v in reads {
            if let Value::Node(j) = self.through_skips(*v) {
                readers[j] += 1;
            }
        }
        readers
    }

    /// Per node: is it an `add` that the runtime folds into a convolution before it? ORT fuses
    /// `Add(conv(x), y)` into the conv (the NCHWc conv takes `y` as a sum input) when the conv's
    /// output feeds nothing else, so such an add costs almost nothing inside a network, while an
    /// add of pooled or skipped tensors runs as its own kernel. Skips between the conv and the
    /// add are no nodes of the graph, so the conv's readers are counted through them.
    pub fn fused_adds(&self) -> Vec<bool> {
        let readers = self.graph_readers();
        self.nodes
            .iter()
            .map(|node| {
                matches!(node.op, Op::Add(_))
                    && node.inputs.iter().any(|v| {
                        matches!(self.through_skips(*v), Value::Node(j)
                            if readers[j] == 1 && matches!(self.nodes[j].op, Op::Conv(_) | Op::MbConv(_)))
                    })
            })
            .collect()
    }

    /// Per node: would ONNX Runtime run this pool channels-last in an int8 (QDQ) graph? Its CPU
    /// EP converts every QLinearConv to NHWC, and its transpose optimiser then pulls the ops
    /// between convs (pools, adds, activations) into NHWC with them; a pool with no convolution
    /// after it (a dead-end branch, the cell before the head) keeps NCHW, as a pool measured
    /// alone does. The two run at different speeds: `QLinearAveragePool` took 0.70-0.75x as
    /// long channels-last on this CPU (16x32x32: 106 against 150 µs). Checked against ORT
    /// 1.31's optimised graphs of 70 NAS-Bench-201 int8 networks: all 1,460 pools as predicted.
    pub fn channels_last_pools(&self) -> Vec<bool> {
        let consumers = self.consumers();
        // Consumers come later, so one backward pass sees theirs first. (Scales and concats
        // are taken to follow the layout as adds do; the check above had none.)
        let mut feeds_conv = vec![false; self.nodes.len()];
        for i in (0..self.nodes.len()).rev() {
            feeds_conv[i] = consumers[i].iter().any(|&j| match self.nodes[j].op {
                Op::Conv(_) | Op::MbConv(_) => true,
                Op::Pool(_)
                | Op::GlobalAvgPool(_)
                | Op::Add(_)
                | Op::Act(_)
                | Op::Skip(_)
                | Op::Scale(_)
                | Op::Concat(_) => feeds_conv[j],
                _ => false,
            });
        }
        self.nodes
            .iter()
            .zip(feeds_conv)
            .map(|(n, feeds)| feeds && matches!(n.op, Op::Pool(_) | Op::GlobalAvgPool(_)))
            .collect()
    }

    pub fn flops(&self) -> u64 {
        self.ops().map(Op::flops).sum()
    }

    pub fn params(&self) -> u64 {
        self.ops().map(Op::params).sum()
    }

    /// Multiply-adds of the convolutions and linear layers, as model zoos count "FLOPs".
    pub fn macs(&self) -> u64 {
        self.ops().map(Op::macs).sum()
    }

    /// Peak activation memory of running the network op by op, batch as given: at each op,
    /// the tensors still needed later plus the op's own working set. Skip and zero ops alias
    /// their input rather than own a buffer.
    pub fn peak_activation_bytes(&self) -> u64 {
        let n = self.nodes.len();
        // Buffers: 0 is the network input, i + 1 the output of node i.
        let mut buffer = Vec::with_capacity(n);
        let resolve = |buffer: &Vec<usize>, v: Value| match v {
            Value::Input => 0,
            Value::Node(i) => buffer[i],
        };
        for (i, node) in self.nodes.iter().enumerate() {
            let b = match node.inputs.first() {
                Some(v) if node.op.is_free() => resolve(&buffer, *v),
                _ => i + 1,
            };
            buffer.push(b);
        }
        let mut last_use = vec![0usize; n + 1];
        for (i, node) in self.nodes.iter().enumerate() {
            for v in &node.inputs {
                last_use[resolve(&buffer, *v)] = i + 1;
            }
        }
        last_use[resolve(&buffer, self.output)] = n + 1;
        let size = |b: usize| {
            let t = if b == 0 {
                self.input
            } else {
                self.nodes[b - 1].op.output()
            };
            t.numel() * crate::op::BYTES_PER_ELEMENT
        };
        let mut peak = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.op.is_free() {
                continue;
            }
            // Step i + 1: buffers born before it and used after it, other than its own.
            let own: Vec<usize> = node
                .inputs
                .iter()
                .map(|v| resolve(&buffer, *v))
                .chain([i + 1])
                .collect();
            let waiting: u64 = (0..=n)
                .filter(|b| *b < i + 1 && last_use[*b] > i + 1 && !own.contains(b))
                .map(size)
                .sum();
            peak = peak.max(waiting + node.op.working_set_bytes());
        }
        peak
    }

    /// Per node: does an earlier node compute the very same thing — the same weightless op
    /// (pool, activation without BN, add, global pool) on the same inputs? ONNX Runtime's
    /// common-subexpression elimination runs such a node once: in an all-pool NAS-Bench-201
    /// cell, 92 AveragePool nodes become 47. Inputs are compared after replacing duplicates by
    /// the node they repeat, and skips by what they pass on (the ONNX graph has no node for a
    /// skip, so `pool(skip(x))` is `pool(x)` to the runtime), so chains of repeats are found too.
    pub fn duplicates(&self) -> Vec<bool> {
        let mut representative: Vec<usize> = Vec::with_capacity(self.nodes.len());
        let mut duplicate = Vec::with_capacity(self.nodes.len());
        let canonical = |rep: &[usize], v: &Value| match self.through_skips(*v) {
            Value::Input => None,
            Value::Node(j) => Some(rep[j]),
        };
        for (i, node) in self.nodes.iter().enumerate() {
            let weightless = node.op.params() == 0 && !node.op.is_free();
            let inputs: Vec<Option<usize>> = node
                .inputs
                .iter()
                .map(|v| canonical(&representative, v))
                .collect();
            let earlier = weightless
                .then(|| {
                    (0..i).find(|&j| {
                        representative[j] == j
                            && self.nodes[j].op == node.op
                            && self.nodes[j]
                                .inputs
                                .iter()
                                .map(|v| canonical(&representative, v))
                                .eq(inputs.iter().copied())
                    })
                })
                .flatten();
            representative.push(earlier.unwrap_or(i));
            duplicate.push(earlier.is_some());
        }
        duplicate
    }

    /// Every node reads earlier values of the shapes its op expects.
    pub fn validate(&self) -> Result<(), NetworkError> {
        for (i, node) in self.nodes.iter().enumerate() {
            let bad = |why: String| NetworkError::Wiring {
                name: self.name.clone(),
                node: i,
                key: node.op.key(),
                why,
            };
            if node.inputs.len() != node.op.num_inputs() {
                return Err(bad(format!(
                    "reads {} inputs, the op takes {}",
                    node.inputs.len(),
                    node.op.num_inputs()
                )));
            }
            for (&v, want) in node.inputs.iter().zip(node.op.input_shapes()) {
                if let Value::Node(j) = v
                    && j >= i
                {
                    return Err(bad(format!(
                        "reads node {j}, which does not come before it"
                    )));
                }
                if self.shape(v) != want {
                    return Err(bad(format!(
                        "reads a {} tensor, the op expects {want}",
                        self.shape(v),
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_activation_memory_counts_what_waits_for_a_residual() {
        // x -> conv -> conv -> add(., x): each tensor 4x8x8 floats = 1 KiB. The second conv
        // holds its input and output while x waits for the add: 3 KiB; the add also 3 KiB.
        let conv = Op::from_key("conv-in:1x4x8x8-out:4-k:3-s:1-g:1-pre:none-act:none").unwrap();
        let t = conv.input();
        let mut net = Network::new("res", t);
        let a = net.push(conv, &[Value::Input]);
        let b = net.push(conv, &[a]);
        net.push(Op::Add(t), &[b, Value::Input]);
        assert_eq!(net.peak_activation_bytes(), 3 * 1024);
        // A skip aliases its input: no buffer of its own, but it keeps x alive.
        let mut chain = Network::new("skip", t);
        let s = chain.push(Op::Skip(t), &[Value::Input]);
        let c = chain.push(conv, &[Value::Input]);
        chain.push(Op::Add(t), &[c, s]);
        assert_eq!(chain.peak_activation_bytes(), 3 * 1024);
        assert_eq!(net.flops(), 2 * conv.flops() + Op::Add(t).flops());
        assert_eq!(net.params(), 2 * conv.params());
    }

    #[test]
    fn repeated_weightless_ops_on_the_same_input_are_duplicates() {
        // pool(x) twice, then pool of each: the second chain repeats the first entirely; a
        // conv never counts (its weights differ), nor a pool of another input.
        let t = Tensor::new(1, 4, 8, 8);
        let pool = Op::from_key("avgpool-in:1x4x8x8-k:3-s:1-p:1").unwrap();
        let conv = Op::from_key("conv-in:1x4x8x8-out:4-k:3-s:1-g:1-pre:none-act:none").unwrap();
        let mut net = Network::new("cse", t);
        let a = net.push(pool, &[Value::Input]);
        let b = net.push(pool, &[Value::Input]);
        let aa = net.push(pool, &[a]);
        net.push(pool, &[b]);
        let c1 = net.push(conv, &[aa]);
        net.push(conv, &[aa]);
        net.push(pool, &[c1]);
        assert_eq!(
            net.duplicates(),
            vec![false, true, false, true, false, false, false]
        );
    }

    #[test]
    fn pools_run_channels_last_only_on_the_way_to_a_conv() {
        // x -> conv -> c; pool(x) + c -> a; pool(a) -> conv (on the way: NHWC);
        // pool(x) + c -> dead end (NCHW); pool(conv) -> the output (NCHW, as alone).
        let conv = Op::from_key("conv-in:1x4x8x8-out:4-k:3-s:1-g:1-pre:relu-act:none").unwrap();
        let pool = Op::from_key("avgpool-in:1x4x8x8-k:3-s:1-p:1").unwrap();
        let t = conv.input();
        let mut net = Network::new("layouts", t);
        let c = net.push(conv, &[Value::Input]);
        let p1 = net.push(pool, &[Value::Input]);
        let a = net.push(Op::Add(t), &[p1, c]);
        let p2 = net.push(pool, &[a]);
        let c2 = net.push(conv, &[p2]);
        let p3 = net.push(pool, &[Value::Input]);
        net.push(Op::Add(t), &[p3, c]);
        net.push(pool, &[c2]);
        assert_eq!(
            net.channels_last_pools(),
            vec![false, true, false, true, false, false, false, false]
        );
    }

    #[test]
    fn adds_after_a_lone_conv_are_fused() {
        let conv = Op::from_key("conv-in:1x4x5x5-out:4-k:3-s:1-g:1-pre:none-act:none").unwrap();
        let pool = Op::from_key("avgpool-in:1x4x5x5-k:3-s:1-p:1").unwrap();
        let t = conv.input();
        let mut net = Network::new("fusion", t);
        let c = net.push(conv, &[Value::Input]);
        let p = net.push(pool, &[Value::Input]);
        let a = net.push(Op::Add(t), &[p, c]); // conv output used once: fused
        let q = net.push(pool, &[a]);
        net.push(Op::Add(t), &[q, a]); // pool and add: a kernel of its own
        assert_eq!(net.fused_adds(), vec![false, false, true, false, false]);
    }

    #[test]
    fn skips_are_seen_through_as_the_runtime_sees_them() {
        // A skip is no node of the ONNX graph: pool(skip(x)) repeats pool(x), and an add of
        // skip(conv) is fused as an add of the conv would be, unless the conv's output reaches
        // another reader through a second skip.
        let conv = Op::from_key("conv-in:1x4x5x5-out:4-k:3-s:1-g:1-pre:none-act:none").unwrap();
        let pool = Op::from_key("avgpool-in:1x4x5x5-k:3-s:1-p:1").unwrap();
        let t = conv.input();
        let mut net = Network::new("skips", t);
        let p = net.push(pool, &[Value::Input]);
        let s = net.push(Op::Skip(t), &[Value::Input]);
        let ps = net.push(pool, &[s]); // pool(x) again
        let c = net.push(conv, &[Value::Input]);
        let sc = net.push(Op::Skip(t), &[c]);
        let a = net.push(Op::Add(t), &[p, sc]); // the conv's only reader: fused
        let c2 = net.push(conv, &[a]);
        let s1 = net.push(Op::Skip(t), &[c2]);
        let s2 = net.push(Op::Skip(t), &[c2]);
        let b = net.push(Op::Add(t), &[s1, ps]); // the conv has two readers: a kernel
        net.push(Op::Add(t), &[b, s2]);
        let at = |v: Value| match v {
            Value::Node(i) => i,
            Value::Input => unreachable!(),
        };
        let d = net.duplicates();
        assert_eq!(d.iter().filter(|&&d| d).count(), 1);
        assert!(d[at(ps)]);
        let f = net.fused_adds();
        assert_eq!([a, b].map(|v| f[at(v)]), [true, false], "{f:?}");
    }
}
