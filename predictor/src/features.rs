//! Features: what a regression sees of an op.

use hwnas_core::op::{Activation, Op};

/// Names of the op features, in [`op_features`] order.
pub const OP_FEATURES: [&str; 17] = [
    "log_flops",
    "log_bytes_in",
    "log_bytes_out",
    "log_bytes_weights",
    "log_intensity",
    "kind",
    "cin",
    "hin",
    "cout",
    "hout",
    "kernel",
    "stride",
    "depthwise",
    "expand",
    "se",
    "residual",
    "act",
];

/// Kinds in a fixed order, so `kind` is a stable number.
const KINDS: [&str; 9] = [
    "conv", "mbconv", "avgpool", "maxpool", "gap", "linear", "add", "act", "skip",
];

fn ln1p(v: u64) -> f64 {
    (v as f64).ln_1p()
}

fn act_id(a: Activation) -> f64 {
    Activation::ALL.iter().position(|&x| x == a).unwrap_or(0) as f64
}

/// An op as numbers: log costs (FLOPs, bytes in/out/weights, arithmetic intensity) and its shape
/// parameters. Logs because latency spans five orders of magnitude.
pub fn op_features(op: &Op) -> [f64; OP_FEATURES.len()] {
    let (i, o) = (op.input(), op.output());
    let (mut k, mut s, mut dw, mut e, mut se, mut res, mut act) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    match op {
        Op::Conv(c) => {
            (k, s) = (c.k as f64, c.stride as f64);
            dw = f64::from(u8::from(c.groups > 1 && c.groups == c.input.c));
            act = act_id(c.act) + 10.0 * act_id(c.pre_act);
        }
        Op::MbConv(m) => {
            (k, s, e) = (m.k as f64, m.stride as f64, m.expand as f64);
            (se, res, act) = (
                f64::from(u8::from(m.se)),
                f64::from(u8::from(m.residual)),
                act_id(m.act),
            );
        }
        Op::Pool(p) => (k, s) = (p.k as f64, p.stride as f64),
        Op::Act(a) => act = act_id(a.act) + if a.bn { 10.0 } else { 0.0 },
        // Heads and head width in the kernel and stride slots, the MLP ratio as the expansion.
        Op::Mhsa(m) => (k, s) = (m.heads as f64, m.head_dim as f64),
        Op::Mlp(m) => e = m.hidden as f64 / m.input.c.max(1) as f64,
        Op::Encoder(b) => {
            (k, s) = (b.heads as f64, b.head_dim as f64);
            e = b.hidden as f64 / b.input.c.max(1) as f64;
        }
        Op::Patch(p) => (k, s) = (p.patch as f64, p.patch as f64),
        Op::CnBlock(b) => {
            (k, dw) = (b.k as f64, 1.0);
            e = b.hidden as f64 / b.input.c.max(1) as f64;
        }
        _ => {}
    }
    let kind = KINDS
        .iter()
        .position(|&x| x == op.kind())
        .unwrap_or(KINDS.len()) as f64;
    let bytes = op.bytes().max(1) as f64;
    [
        ln1p(op.flops()),
        ln1p(op.bytes_in()),
        ln1p(op.bytes_out()),
        ln1p(op.bytes_weights()),
        (op.flops() as f64 / bytes).ln_1p(),
        kind,
        i.c as f64,
        i.h as f64,
        o.c as f64,
        o.h as f64,
        k,
        s,
        dw,
        e,
        se,
        res,
        act,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_follow_the_op() {
        let dw = Op::from_key("conv-in:1x32x16x16-out:32-k:5-s:2-g:32-pre:none-act:relu").unwrap();
        let f = op_features(&dw);
        assert_eq!(f.len(), OP_FEATURES.len());
        assert!((f[0] - (dw.flops() as f64).ln_1p()).abs() < 1e-12);
        assert_eq!((f[10], f[11], f[12]), (5.0, 2.0, 1.0));
        let add = Op::from_key("add-in:1x32x16x16").unwrap();
        assert_eq!(op_features(&add)[5], 6.0);
    }
}
