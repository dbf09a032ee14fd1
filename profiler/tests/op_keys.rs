//! Property tests of the op vocabulary: every valid op's key parses back to the same op.

use hwnas_core::op::{Act, Activation, Conv, Linear, MbConv, Pool, PoolKind};
use hwnas_core::{Op, Tensor};
use proptest::prelude::*;

fn tensor() -> impl Strategy<Value = Tensor> {
    (1u32..4, 1u32..300, 1u32..64, 1u32..64).prop_map(|(n, c, h, w)| Tensor::new(n, c, h, w))
}

fn act() -> impl Strategy<Value = Activation> {
    prop::sample::select(Activation::ALL.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (tensor(), 1u32..8, 1u32..8, 1u32..4, 1u32..4, act(), act()).prop_map(
            |(t, gdiv, cmul, k, s, pre, a)| {
                // Groups that divide both channel counts.
                let groups = if t.c % gdiv == 0 { gdiv } else { 1 };
                Op::Conv(
                    Conv {
                        input: t,
                        cout: groups * cmul,
                        k: 2 * k - 1,
                        stride: s,
                        groups,
                        kw: None,
                        dilation: 1,
                        pad: None,
                        pre_act: pre,
                        act: a,
                    }
                    // Some valid (unpadded) convs too.
                    .with_pad(if cmul % 3 == 0 { 0 } else { k - 1 }),
                )
            }
        ),
        (
            tensor(),
            1u32..200,
            1u32..7,
            1u32..5,
            1u32..3,
            any::<bool>(),
            act(),
            any::<bool>()
        )
            .prop_map(|(t, cout, e, k, s, se, a, res)| {
                let residual = res && s == 1;
                Op::MbConv(MbConv {
                    input: t,
                    cout: if residual { t.c } else { cout },
                    expand: e,
                    k: 2 * k - 1,
                    stride: s,
                    se,
                    act: a,
                    residual,
                })
            }),
        (tensor(), any::<bool>(), 1u32..4, 1u32..3, 0u32..2).prop_map(
            |(t, avg, k, s, p)| Op::Pool(Pool {
                input: t,
                kind: if avg { PoolKind::Avg } else { PoolKind::Max },
                k,
                stride: s,
                pad: p.min(k / 2),
            })
        ),
        (1u32..4, 1u32..2000, 1u32..2000).prop_map(|(n, c, out)| Op::Linear(Linear {
            input: Tensor::new(n, c, 1, 1),
            cout: out
        })),
        (tensor(), act(), any::<bool>()).prop_map(|(t, a, bn)| Op::Act(Act {
            input: t,
            act: a,
            bn
        })),
        tensor().prop_map(Op::GlobalAvgPool),
        tensor().prop_map(Op::Add),
        tensor().prop_map(Op::Skip),
        tensor().prop_map(Op::Zero),
    ]
    .prop_filter("valid", |op| op.validate().is_ok())
}

proptest! {
    #[test]
    fn key_round_trips(op in op()) {
        let key = op.key();
        prop_assert_eq!(Op::from_key(&key).unwrap(), op);
        prop_assert!(!key.contains(',') && !key.contains(' '), "keys are CSV- and shell-safe");
    }

    #[test]
    fn fields_may_come_in_any_order(op in op(), rot in 0usize..8) {
        let key = op.key();
        let mut parts: Vec<&str> = key.split('-').collect();
        let fields = &mut parts[1..];
        let n = fields.len();
        fields.rotate_left(rot % n);
        prop_assert_eq!(Op::from_key(&parts.join("-")).unwrap(), op);
    }

    #[test]
    fn costs_are_consistent(op in op()) {
        prop_assert_eq!(op.bytes(), op.bytes_in() + op.bytes_out() + op.bytes_weights());
        prop_assert_eq!(op.bytes_weights(), 4 * op.params());
        prop_assert_eq!(op.is_free(), op.flops() == 0 && op.bytes() == 0 && matches!(op, Op::Skip(_) | Op::Zero(_)));
    }
}
