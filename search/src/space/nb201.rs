//! NAS-Bench-201 (Dong & Yang, ICLR 2020): a cell of 4 nodes whose 6 edges each pick one of 5
//! ops, giving 15,625 cells. The network (CIFAR, 32x32 input): a 3x3 stem conv to 16 channels,
//! three stages of 5 cells at 16/32/64 channels, a residual reduction block between stages,
//! then BN + ReLU, global average pooling and a linear classifier.
//!
//! Architectures use the benchmark's own strings:
//! `|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|`.

use hwnas_core::network::{Network, Value};
use hwnas_core::op::{Act, Activation, Conv, Linear, Pool, PoolKind};
use hwnas_core::rng::SplitMix64;
use hwnas_core::{Op, Tensor};

use super::{Gene, SearchSpace, SpaceError, distinct};

/// The five edge operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeOp {
    None,
    Skip,
    Conv1x1,
    Conv3x3,
    AvgPool3x3,
}

impl EdgeOp {
    pub const ALL: [EdgeOp; 5] = [
        EdgeOp::None,
        EdgeOp::Skip,
        EdgeOp::Conv1x1,
        EdgeOp::Conv3x3,
        EdgeOp::AvgPool3x3,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EdgeOp::None => "none",
            EdgeOp::Skip => "skip_connect",
            EdgeOp::Conv1x1 => "nor_conv_1x1",
            EdgeOp::Conv3x3 => "nor_conv_3x3",
            EdgeOp::AvgPool3x3 => "avg_pool_3x3",
        }
    }

    /// The vocabulary op this edge runs on a `t`-shaped tensor.
    pub fn op(self, t: Tensor) -> Op {
        match self {
            EdgeOp::None => Op::Zero(t),
            EdgeOp::Skip => Op::Skip(t),
            EdgeOp::Conv1x1 => relu_conv_bn(t, t.c, 1, 1),
            EdgeOp::Conv3x3 => relu_conv_bn(t, t.c, 3, 1),
            EdgeOp::AvgPool3x3 => Op::Pool(Pool {
                input: t,
                kind: PoolKind::Avg,
                k: 3,
                stride: 1,
                pad: 1,
            }),
        }
    }
}

/// NAS-Bench-201's ReLU → Conv → BN (BN folded into the conv).
fn relu_conv_bn(input: Tensor, cout: u32, k: u32, stride: u32) -> Op {
    Op::Conv(Conv {
        input,
        cout,
        k,
        stride,
        groups: 1,
        kw: None,
        dilation: 1,
        pad: None,
        pre_act: Activation::Relu,
        act: Activation::None,
    })
}

/// A cell: `edges[0]` is 0→1, `edges[1..3]` are 0→2, 1→2, `edges[3..6]` are 0→3, 1→3, 2→3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nb201Arch {
    pub edges: [EdgeOp; 6],
}

/// (target node, source node) of each edge, in string order.
pub const EDGES: [(usize, usize); 6] = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)];
/// Stem channels, cells per stage and the CIFAR input.
const C: u32 = 16;
const CELLS_PER_STAGE: usize = 5;
/// The input's height and width.
pub const RESOLUTION: u32 = 32;
const INPUT: Tensor = Tensor::new(1, 3, RESOLUTION, RESOLUTION);
const CLASSES: u32 = 10;

impl Nb201Arch {
    pub fn parse(s: &str) -> Result<Nb201Arch, SpaceError> {
        let bad = |why: String| SpaceError::BadArch {
            space: "nb201".into(),
            arch: s.into(),
            why,
        };
        let nodes: Vec<&str> = s.trim().split('+').collect();
        if nodes.len() != 3 {
            return Err(bad(format!(
                "expected 3 nodes separated by `+`, found {}",
                nodes.len()
            )));
        }
        let mut edges = [EdgeOp::None; 6];
        let mut e = 0;
        for (j, node) in nodes.iter().enumerate() {
            let inner = node
                .strip_prefix('|')
                .and_then(|n| n.strip_suffix('|'))
                .ok_or_else(|| bad(format!("node {} must be written `|op~src|...|`", j + 1)))?;
            let parts: Vec<&str> = inner.split('|').collect();
            if parts.len() != j + 1 {
                return Err(bad(format!(
                    "node {} needs {} edges, found {}",
                    j + 1,
                    j + 1,
                    parts.len()
                )));
            }
            for (i, part) in parts.iter().enumerate() {
                let (name, src) = part
                    .split_once('~')
                    .ok_or_else(|| bad(format!("edge `{part}` must be `op~source`")))?;
                if src != i.to_string() {
                    return Err(bad(format!(
                        "edge `{part}` of node {} must come from node {i}",
                        j + 1
                    )));
                }
                edges[e] = EdgeOp::ALL
                    .into_iter()
                    .find(|op| op.name() == name)
                    .ok_or_else(|| {
                        bad(format!(
                            "unknown op `{name}` (none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3)"
                        ))
                    })?;
                e += 1;
            }
        }
        Ok(Nb201Arch { edges })
    }

    /// The i-th of the 15,625 cells in base-5 order over [`EdgeOp::ALL`] (not the benchmark's
    /// index order, which its accuracy file gives).
    pub fn from_index(mut i: usize) -> Nb201Arch {
        let mut edges = [EdgeOp::None; 6];
        for e in edges.iter_mut() {
            *e = EdgeOp::ALL[i % 5];
            i /= 5;
        }
        Nb201Arch { edges }
    }

    pub const COUNT: usize = 15_625;

    /// One cell on `x` (shape `t`): each node sums the edges into it that carry something.
    /// An edge carries nothing when it is `none` or its source node is itself empty, so no
    /// kernel runs for it. A cell whose output node is empty runs nothing and passes its input
    /// on (a `skip`): NAS-Bench-201 would output zeros, which costs the same downstream, and a
    /// multiply by zero would be a kernel the cell does not have.
    fn push_cell(&self, net: &mut Network, x: Value, t: Tensor) -> Value {
        let mut nodes: [Option<Value>; 4] = [Some(x), None, None, None];
        for node in 1..=3 {
            let mut terms = Vec::new();
            for (e, &(to, from)) in EDGES.iter().enumerate() {
                if to != node || self.edges[e] == EdgeOp::None {
                    continue;
                }
                if let Some(src) = nodes[from] {
                    terms.push(net.push(self.edges[e].op(t), &[src]));
                }
            }
            nodes[node] = terms
                .into_iter()
                .reduce(|a, b| net.push(Op::Add(t), &[a, b]));
        }
        nodes[3].unwrap_or_else(|| net.push(Op::Skip(t), &[x]))
    }
}

impl std::fmt::Display for Nb201Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for node in 1..=3 {
            if node > 1 {
                f.write_str("+")?;
            }
            f.write_str("|")?;
            for (e, &(to, from)) in EDGES.iter().enumerate() {
                if to == node {
                    write!(f, "{}~{from}|", self.edges[e].name())?;
                }
            }
        }
        Ok(())
    }
}

/// The reduction block between stages: ReLUConvBN 3x3 s2, ReLUConvBN 3x3, and a shortcut of
/// 2x2 average pooling + 1x1 conv, summed.
fn push_reduction(net: &mut Network, x: Value, t: Tensor, cout: u32) -> Value {
    let a = relu_conv_bn(t, cout, 3, 2);
    let mid = a.output();
    let pool = Op::Pool(Pool {
        input: t,
        kind: PoolKind::Avg,
        k: 2,
        stride: 2,
        pad: 0,
    });
    let shortcut = Op::Conv(Conv {
        input: pool.output(),
        cout,
        k: 1,
        stride: 1,
        groups: 1,
        kw: None,
        dilation: 1,
        pad: None,
        pre_act: Activation::None,
        act: Activation::None,
    });
    let va = net.push(a, &[x]);
    let vb = net.push(relu_conv_bn(mid, cout, 3, 1), &[va]);
    let vp = net.push(pool, &[x]);
    let vs = net.push(shortcut, &[vp]);
    net.push(Op::Add(mid), &[vb, vs])
}

/// The network around the cells: (stem, per-stage shapes, head).
fn skeleton() -> (Op, [Tensor; 3], Vec<Op>) {
    let stem = Op::Conv(Conv {
        input: INPUT,
        cout: C,
        k: 3,
        stride: 1,
        groups: 1,
        kw: None,
        dilation: 1,
        pad: None,
        pre_act: Activation::None,
        act: Activation::None,
    });
    let stages = [
        Tensor::new(1, C, 32, 32),
        Tensor::new(1, 2 * C, 16, 16),
        Tensor::new(1, 4 * C, 8, 8),
    ];
    let last = stages[2];
    let head = vec![
        Op::Act(Act {
            input: last,
            act: Activation::Relu,
            bn: true,
        }),
        Op::GlobalAvgPool(last),
        Op::Linear(Linear {
            input: Tensor::new(1, last.c, 1, 1),
            cout: CLASSES,
        }),
    ];
    (stem, stages, head)
}

/// The NAS-Bench-201 space.
pub struct Nb201;

impl SearchSpace for Nb201 {
    fn name(&self) -> &str {
        "nb201"
    }

    fn describe(&self) -> String {
        "NAS-Bench-201: 15,625 cells (5 ops on 6 edges), CIFAR 32x32, 16/32/64 channels, 5 cells per stage".into()
    }

    fn ops(&self) -> Vec<Op> {
        let (stem, stages, head) = skeleton();
        let mut ops = vec![stem];
        for (s, &t) in stages.iter().enumerate() {
            if s > 0 {
                let mut scratch = Network::new("reduction", stages[s - 1]);
                push_reduction(&mut scratch, Value::Input, stages[s - 1], t.c);
                ops.extend(scratch.ops().copied());
            }
            // `none` edges run nothing and never appear in a network.
            ops.extend(
                EdgeOp::ALL
                    .iter()
                    .filter(|e| **e != EdgeOp::None)
                    .map(|e| e.op(t)),
            );
            ops.push(Op::Add(t));
        }
        ops.extend(head);
        distinct(ops)
    }

    fn sample(&self, rng: &mut SplitMix64) -> String {
        Nb201Arch::from_index(rng.below(Nb201Arch::COUNT)).to_string()
    }

    fn genes(&self) -> Vec<Gene> {
        vec![
            Gene {
                levels: EdgeOp::ALL.len() as u8,
                ordered: false
            };
            6
        ]
    }

    fn decode(&self, genome: &[u8]) -> String {
        Nb201Arch {
            edges: std::array::from_fn(|i| EdgeOp::ALL[genome[i] as usize]),
        }
        .to_string()
    }

    fn encode(&self, arch: &str) -> Result<Vec<u8>, SpaceError> {
        let cell = Nb201Arch::parse(arch)?;
        Ok(cell
            .edges
            .iter()
            .map(|e| EdgeOp::ALL.iter().position(|a| a == e).expect("an edge op") as u8)
            .collect())
    }

    fn network(&self, arch: &str) -> Result<Network, SpaceError> {
        let cell = Nb201Arch::parse(arch)?;
        let (stem, stages, head) = skeleton();
        let mut net = Network::new(cell.to_string(), INPUT);
        let mut x = net.push(stem, &[Value::Input]);
        for (s, &t) in stages.iter().enumerate() {
            if s > 0 {
                x = push_reduction(&mut net, x, stages[s - 1], t.c);
            }
            for _ in 0..CELLS_PER_STAGE {
                x = cell.push_cell(&mut net, x, t);
            }
        }
        for op in head {
            x = net.push(op, &[x]);
        }
        Ok(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const ARCH: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";

    #[test]
    fn arch_strings_round_trip() {
        let a = Nb201Arch::parse(ARCH).unwrap();
        assert_eq!(a.to_string(), ARCH);
        for i in [0, 1, 624, 9999, Nb201Arch::COUNT - 1] {
            let a = Nb201Arch::from_index(i);
            assert_eq!(Nb201Arch::parse(&a.to_string()).unwrap(), a);
        }
        for bad in [
            "",
            "|nor_conv_3x3~0|",
            "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
            "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
            "|none~0|+|none~0|+|none~0|none~1|none~2|",
        ] {
            assert!(Nb201Arch::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enumeration_is_the_union_of_all_networks() {
        let space = Nb201;
        let listed: HashSet<String> = space.ops().iter().map(Op::key).collect();
        let mut seen = HashSet::new();
        for i in 0..Nb201Arch::COUNT {
            let arch = Nb201Arch::from_index(i).to_string();
            for op in space.network_ops(&arch).unwrap() {
                seen.insert(op.key());
            }
        }
        assert_eq!(listed, seen);
    }

    #[test]
    fn network_shape_and_cost() {
        let ops = Nb201.network_ops(ARCH).unwrap();
        // Stem + 15 cells + 2 reductions + head; shapes chain through.
        assert_eq!(ops[0].output(), Tensor::new(1, 16, 32, 32));
        assert_eq!(ops.last().unwrap().output(), Tensor::new(1, 10, 1, 1));
        // This cell: 3 convs 3x3, 1 pool, 2 skips; node 2 and node 3 need 1 and 2 adds.
        let per_cell = 6 + 3;
        assert_eq!(ops.len(), 1 + 15 * per_cell + 2 * 5 + 3);
        // The all-3x3 cell is the most expensive: FLOPs add up to the closed form.
        let all_conv = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|";
        let convs: u64 = Nb201
            .network_ops(all_conv)
            .unwrap()
            .iter()
            .filter(|o| o.kind() == "conv")
            .map(Op::flops)
            .sum();
        let cell = |c: u64, hw: u64| 5 * 6 * 2 * c * c * 9 * hw * hw;
        let red = |cin: u64, c: u64, hw: u64| {
            2 * c * cin * 9 * hw * hw + 2 * c * c * 9 * hw * hw + 2 * c * cin * hw * hw
        };
        let stem = 2 * 16 * 3 * 9 * 32 * 32;
        assert_eq!(
            convs,
            stem + cell(16, 32) + cell(32, 16) + cell(64, 8) + red(16, 32, 16) + red(32, 64, 8)
        );
    }
}
