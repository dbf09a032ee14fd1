//! Blocks: what one entry of a space file (a stem or head layer, a stage's block, a cell's edge
//! op) runs, as vocabulary ops wired into a [`Network`].
//!
//! A [`Template`] is a block whose kernel and expand ratio may still be choices; [`Block`] is
//! one concrete block. Fused units stay single ops where the vocabulary has them (a conv with
//! its activation, an MBConv block) so that the profiler times what the runtime fuses; blocks
//! the vocabulary has no unit for (grouped MBConv with a channel shuffle, separable convs,
//! residual basic blocks) are written as the sequence of ops they run.

use hwnas_core::network::{Network, Value};
use hwnas_core::op::{Act, Activation, Concat, Conv, Linear, MbConv, Pool, PoolKind, Shuffle};
use hwnas_core::{Op, Tensor};

use super::spec::{BlockSpec, BlockType, PoolType, SkipReduce};

/// Where a block of a space file is declared, to point an error at its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    Stem(usize),
    Stage(usize),
    Head(usize),
    /// The normal (`false`) or the reduction cell.
    Cell(bool),
}

/// The most weights one op may have: 1 GiB of fp32, far past any real layer, so that a typo
/// cannot ask the profiler to build a model it has no memory for.
const MAX_PARAMS: u64 = 1 << 28;

/// A block's output shape, or what is wrong with it and where.
pub type Checked = Result<Tensor, (Site, String)>;

/// Run `block` on a `t`-shaped input into `ops`, checking every op it makes; the output shape.
pub fn collect(ops: &mut Vec<Op>, site: Site, block: &Block, t: Tensor) -> Checked {
    let mut net = Network::new("scratch", t);
    let (_, out) = block.push(&mut net, Value::Input, t);
    for op in net.ops() {
        op.validate().map_err(|e| (site, e.to_string()))?;
        if op.params() > MAX_PARAMS {
            return Err((
                site,
                format!(
                    "`{}` has {} weights (at most 2^28 an op)",
                    op.key(),
                    op.params()
                ),
            ));
        }
    }
    // Branches that meet (a residual's sum) must agree on the shape, e.g. on odd sizes.
    net.validate().map_err(|e| (site, e.to_string()))?;
    ops.extend(net.ops().copied());
    Ok(out)
}

/// One concrete block. `out: None` keeps the input's channels.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub ty: BlockType,
    pub out: Option<u32>,
    pub k: u32,
    pub expand: u32,
    pub stride: u32,
    pub groups: Option<u32>,
    pub depthwise: bool,
    pub dilation: u32,
    pub se: bool,
    pub act: Activation,
    pub pre_act: Activation,
    pub residual: Option<bool>,
    pub pool: PoolType,
    pub pad: Option<u32>,
    pub bn: bool,
    pub repeat: u32,
    pub reduce: SkipReduce,
}

/// A block as declared: `ks` and `expands` hold its choices (one value when fixed).
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub base: Block,
    pub ks: Vec<u32>,
    pub expands: Vec<u32>,
}

impl Template {
    /// The template of a spec whose type and keys were checked.
    pub fn new(spec: &BlockSpec, ty: BlockType) -> Template {
        let ks = spec.k.as_ref().map_or(vec![default_k(ty)], |c| c.0.clone());
        let expands = spec.expand.as_ref().map_or(vec![1], |c| c.0.clone());
        let base = Block {
            ty,
            out: spec.out,
            k: ks[0],
            expand: expands[0],
            stride: spec.stride.unwrap_or(1),
            groups: spec.groups,
            depthwise: spec.depthwise.unwrap_or(false),
            dilation: spec.dilation.unwrap_or(1),
            se: spec.se.unwrap_or(false),
            act: spec.act.unwrap_or(default_act(ty)),
            pre_act: spec.pre_act.unwrap_or(Activation::None),
            residual: spec.residual,
            pool: spec.pool.unwrap_or(PoolType::Avg),
            pad: spec.pad,
            bn: spec.bn.unwrap_or(false),
            repeat: spec.repeat.unwrap_or(1),
            reduce: spec.reduce.unwrap_or_default(),
        };
        Template { base, ks, expands }
    }

    /// The block with the `k`-th kernel and `e`-th expand ratio, `out` channels and `stride`
    /// (where the stage or cell sets them).
    pub fn at(&self, k: usize, e: usize, out: Option<u32>, stride: Option<u32>) -> Block {
        Block {
            k: self.ks[k],
            expand: self.expands[e],
            out: out.or(self.base.out),
            stride: stride.unwrap_or(self.base.stride),
            ..self.base.clone()
        }
    }

    pub fn fixed(&self) -> Block {
        self.at(0, 0, None, None)
    }
}

fn default_k(ty: BlockType) -> u32 {
    match ty {
        BlockType::Conv | BlockType::Dwsep | BlockType::Mbconv | BlockType::ResnetBasic => 3,
        BlockType::Pool => 3,
        _ => 1,
    }
}

fn default_act(ty: BlockType) -> Activation {
    match ty {
        BlockType::Mbconv | BlockType::Act => Activation::Relu,
        _ => Activation::None,
    }
}

/// A plain k×k convolution: "same" padding, no pre-activation.
pub(super) fn conv(
    input: Tensor,
    cout: u32,
    k: u32,
    stride: u32,
    groups: u32,
    act: Activation,
) -> Conv {
    Conv {
        input,
        cout,
        k,
        stride,
        groups,
        kw: None,
        dilation: 1,
        pad: None,
        pre_act: Activation::None,
        act,
    }
}

fn push(net: &mut Network, op: Op, inputs: &[Value]) -> (Value, Tensor) {
    let out = op.output();
    (net.push(op, inputs), out)
}

impl Block {
    /// Append the block on `x` (shape `t`); returns its output and shape. `None` blocks run
    /// nothing and are never pushed (the caller leaves their edge out).
    pub fn push(&self, net: &mut Network, x: Value, t: Tensor) -> (Value, Tensor) {
        let out = self.out.unwrap_or(t.c);
        match self.ty {
            BlockType::Conv => {
                let groups = if self.depthwise {
                    t.c
                } else {
                    self.groups.unwrap_or(1)
                };
                let c = Conv {
                    dilation: self.dilation,
                    pre_act: self.pre_act,
                    ..conv(t, out, self.k, self.stride, groups, self.act)
                };
                push(net, Op::Conv(c), &[x])
            }
            BlockType::Dwsep => self.push_dwsep(net, x, t, out),
            BlockType::Mbconv => self.push_mbconv(net, x, t, out),
            BlockType::ResnetBasic => self.push_resnet_basic(net, x, t, out),
            BlockType::Skip => self.push_skip(net, x, t, out),
            BlockType::None => (x, t),
            BlockType::Pool => {
                let kind = match self.pool {
                    PoolType::Avg => PoolKind::Avg,
                    PoolType::Max => PoolKind::Max,
                };
                let pool = Pool {
                    input: t,
                    kind,
                    k: self.k,
                    stride: self.stride,
                    pad: self.pad.unwrap_or(self.k / 2),
                };
                push(net, Op::Pool(pool), &[x])
            }
            BlockType::Gap => push(net, Op::GlobalAvgPool(t), &[x]),
            BlockType::Linear => push(
                net,
                Op::Linear(Linear {
                    input: t,
                    cout: out,
                }),
                &[x],
            ),
            BlockType::Act => push(
                net,
                Op::Act(Act {
                    input: t,
                    act: self.act,
                    bn: self.bn,
                }),
                &[x],
            ),
        }
    }

    /// Depthwise k×k then pointwise 1×1, `repeat` times (DARTS's `sep_conv` repeats twice, the
    /// stride on the first); `pre_act` before each depthwise conv, `act` after each conv.
    fn push_dwsep(&self, net: &mut Network, x: Value, t: Tensor, out: u32) -> (Value, Tensor) {
        let (mut v, mut s) = (x, t);
        for r in 0..self.repeat {
            let last = r + 1 == self.repeat;
            let dw = Conv {
                dilation: self.dilation,
                pre_act: self.pre_act,
                ..conv(
                    s,
                    s.c,
                    self.k,
                    if r == 0 { self.stride } else { 1 },
                    s.c,
                    self.act,
                )
            };
            (v, s) = push(net, Op::Conv(dw), &[v]);
            let pw = conv(s, if last { out } else { s.c }, 1, 1, 1, self.act);
            (v, s) = push(net, Op::Conv(pw), &[v]);
        }
        (v, s)
    }

    fn residual(&self, t: Tensor, out: u32) -> bool {
        self.residual.unwrap_or(self.stride == 1 && t.c == out)
    }

    /// One MBConv op; with `groups > 1` (FBNet's `_g2` blocks) the grouped 1×1 convs, channel
    /// shuffle and depthwise conv it runs, as the vocabulary has no grouped MBConv unit.
    fn push_mbconv(&self, net: &mut Network, x: Value, t: Tensor, out: u32) -> (Value, Tensor) {
        let residual = self.residual(t, out);
        let g = self.groups.unwrap_or(1);
        let block = MbConv {
            input: t,
            cout: out,
            expand: self.expand,
            k: self.k,
            stride: self.stride,
            se: self.se,
            act: self.act,
            residual,
        };
        if g == 1 {
            return push(net, Op::MbConv(block), &[x]);
        }
        let mid = if self.expand == 1 { t.c } else { block.mid() };
        let (v, s) = push(net, Op::Conv(conv(t, mid, 1, 1, g, self.act)), &[x]);
        let (v, s) = push(
            net,
            Op::Shuffle(Shuffle {
                input: s,
                groups: g,
            }),
            &[v],
        );
        let dw = conv(s, mid, self.k, self.stride, mid, self.act);
        let (v, s) = push(net, Op::Conv(dw), &[v]);
        let (v, s) = push(net, Op::Conv(conv(s, out, 1, 1, g, Activation::None)), &[v]);
        if residual {
            push(net, Op::Add(s), &[v, x])
        } else {
            (v, s)
        }
    }

    /// ResNet's basic block with pre-activation convs (NAS-Bench-201's reduction): conv k×k
    /// with the stride, conv k×k, and a shortcut (2×2 average pooling and a 1×1 conv when it
    /// strides, a 1×1 conv when only the width changes), summed.
    fn push_resnet_basic(
        &self,
        net: &mut Network,
        x: Value,
        t: Tensor,
        out: u32,
    ) -> (Value, Tensor) {
        let a = Conv {
            pre_act: self.pre_act,
            ..conv(t, out, self.k, self.stride, 1, Activation::None)
        };
        let mid = a.output();
        let b = Conv {
            pre_act: self.pre_act,
            ..conv(mid, out, self.k, 1, 1, Activation::None)
        };
        let (va, _) = push(net, Op::Conv(a), &[x]);
        let (vb, _) = push(net, Op::Conv(b), &[va]);
        let shortcut = if self.stride > 1 {
            let pool = Pool {
                input: t,
                kind: PoolKind::Avg,
                k: self.stride,
                stride: self.stride,
                pad: 0,
            };
            let (vp, tp) = push(net, Op::Pool(pool), &[x]);
            push(
                net,
                Op::Conv(conv(tp, out, 1, 1, 1, Activation::None)),
                &[vp],
            )
            .0
        } else if t.c != out {
            let c = Conv {
                pre_act: self.pre_act,
                ..conv(t, out, 1, 1, 1, Activation::None)
            };
            push(net, Op::Conv(c), &[x]).0
        } else {
            x
        };
        push(net, Op::Add(mid), &[vb, shortcut])
    }

    /// Identity when the shape stays; otherwise what `reduce` says.
    fn push_skip(&self, net: &mut Network, x: Value, t: Tensor, out: u32) -> (Value, Tensor) {
        if self.stride == 1 && out == t.c {
            return push(net, Op::Skip(t), &[x]);
        }
        match self.reduce {
            SkipReduce::Conv => push(
                net,
                Op::Conv(conv(t, out, 1, self.stride, 1, Activation::Relu)),
                &[x],
            ),
            SkipReduce::Factorized => {
                let half = Conv {
                    pre_act: Activation::Relu,
                    ..conv(t, out / 2, 1, self.stride, 1, Activation::None)
                };
                let (a, ta) = push(net, Op::Conv(half), &[x]);
                let second = Conv {
                    cout: out - out / 2,
                    ..half
                };
                let (b, _) = push(net, Op::Conv(second), &[x]);
                push(
                    net,
                    Op::Concat(Concat {
                        input: ta,
                        cout: out,
                    }),
                    &[a, b],
                )
            }
        }
    }
}
