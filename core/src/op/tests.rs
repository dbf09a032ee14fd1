use super::*;

fn conv(cin: u32, h: u32, cout: u32, k: u32, s: u32, g: u32) -> Conv {
    Conv {
        input: Tensor::new(1, cin, h, h),
        cout,
        k,
        stride: s,
        groups: g,
        kw: None,
        dilation: 1,
        pad: None,
        pre_act: Activation::None,
        act: Activation::Relu,
    }
}

#[test]
fn conv_flops_match_closed_form() {
    // 3x3, 16 -> 32 channels, 32x32, stride 1: 2 * 32*32*32 * 16*9 FLOPs.
    let op = Op::Conv(conv(16, 32, 32, 3, 1, 1));
    assert_eq!(op.flops(), 2 * 32 * 32 * 32 * 16 * 9);
    assert_eq!(op.params(), 32 * 16 * 9 + 32);
    assert_eq!(op.output(), Tensor::new(1, 32, 32, 32));
    // Stride 2 halves each spatial side: 56 -> 28.
    let s2 = Op::Conv(conv(24, 56, 48, 5, 2, 1));
    assert_eq!(s2.output(), Tensor::new(1, 48, 28, 28));
    assert_eq!(s2.flops(), 2 * 48 * 28 * 28 * 24 * 25);
    // Depthwise: one input channel per group.
    let dw = Op::Conv(conv(96, 14, 96, 7, 1, 96));
    assert_eq!(dw.flops(), 2 * 96 * 14 * 14 * 49);
    assert_eq!(dw.params(), 96 * 49 + 96);
}

#[test]
fn mbconv_flops_match_closed_form() {
    // OFA stage-1 block: 16 -> 24, expand 4 (mid 64), k 3, stride 2, 112 -> 56, no SE.
    let m = MbConv {
        input: Tensor::new(1, 16, 112, 112),
        cout: 24,
        expand: 4,
        k: 3,
        stride: 2,
        se: false,
        act: Activation::Relu,
        residual: false,
    };
    assert_eq!(m.mid(), 64);
    let expand = 2 * 112 * 112 * 64 * 16;
    let dw = 2 * 56 * 56 * 64 * 9;
    let project = 2 * 56 * 56 * 24 * 64;
    assert_eq!(Op::MbConv(m).flops(), expand + dw + project);
    assert_eq!(
        Op::MbConv(m).params(),
        (64 * 16 + 64) + (64 * 9 + 64) + (24 * 64 + 24)
    );

    // With SE (mid 240 -> se 64) and a residual on 40 x 28 x 28.
    let se = MbConv {
        input: Tensor::new(1, 40, 28, 28),
        cout: 40,
        expand: 6,
        k: 5,
        stride: 1,
        se: true,
        act: Activation::Relu,
        residual: true,
    };
    assert_eq!((se.mid(), se.se_mid()), (240, 64));
    let hw = 28 * 28;
    let convs = 2 * hw * 240 * 40 + 2 * hw * 240 * 25 + 2 * hw * 40 * 240;
    let se_cost = hw * 240 + 2 * 2 * 240 * 64 + hw * 240;
    assert_eq!(Op::MbConv(se).flops(), convs + se_cost + hw * 40);
}

#[test]
fn elementwise_and_pool_flops() {
    let t = Tensor::new(1, 16, 32, 32);
    assert_eq!(Op::Add(t).flops(), 16 * 32 * 32);
    assert_eq!(Op::GlobalAvgPool(t).flops(), 16 * 32 * 32);
    let pool = Op::Pool(Pool {
        input: t,
        kind: PoolKind::Avg,
        k: 3,
        stride: 1,
        pad: 1,
    });
    assert_eq!(pool.output(), t);
    assert_eq!(pool.flops(), 16 * 32 * 32 * 9);
    let lin = Op::Linear(Linear {
        input: Tensor::new(1, 64, 1, 1),
        cout: 10,
    });
    assert_eq!((lin.flops(), lin.params()), (2 * 640, 650));
    assert_eq!(Op::Skip(t).flops() + Op::Skip(t).bytes(), 0);
    assert_eq!(Op::Add(t).bytes(), 3 * 16 * 32 * 32 * 4);
}

#[test]
fn window_output_follows_onnx_floor_and_ceil_modes() {
    // 112 wide, 3x3 stride 2, no padding: 54.5 windows, floor 55, ceil 56.
    assert_eq!(window_output(112, 3, 2, 0, 0, false), Some(55));
    assert_eq!(window_output(112, 3, 2, 0, 0, true), Some(56));
    // Windows that fit exactly: ceil mode adds nothing.
    assert_eq!(window_output(111, 3, 2, 0, 0, true), Some(55));
    // A partial window that would start in the trailing padding is dropped: 5 wide, k 2,
    // stride 2, pad 1 both sides: windows at -1, 1, 3; one at 5 would start past the input.
    assert_eq!(window_output(5, 2, 2, 1, 1, true), Some(3));
    assert_eq!(window_output(2, 5, 1, 1, 1, false), None);
    assert_eq!(window_output(7, 3, 1, 1, 1, false), Some(7));
}

#[test]
fn data_movement_ops_cost_their_bytes() {
    let t = Tensor::new(1, 64, 28, 28);
    let cat = Op::from_key("concat-in:1x64x28x28-out:96").unwrap();
    assert_eq!(cat.input_shapes(), vec![t, t.with_channels(32)]);
    assert_eq!(cat.output(), t.with_channels(96));
    assert_eq!((cat.flops(), cat.bytes()), (0, 2 * 96 * 28 * 28 * 4));
    let shuffle = Op::from_key("shuffle-in:1x64x28x28-g:2").unwrap();
    assert_eq!(shuffle.output(), t);
    let slice = Op::from_key("slice-in:1x64x28x28-out:32").unwrap();
    let second = Op::from_key("slice-in:1x64x28x28-out:32-at:32").unwrap();
    assert_ne!(slice, second);
    assert_eq!(second.key(), "slice-in:1x64x28x28-out:32-at:32");
    assert_eq!(slice.bytes(), (64 + 32) * 28 * 28 * 4);
    let scale = Op::from_key("scale-in:1x64x28x28").unwrap();
    assert_eq!(scale.bytes_in(), (64 * 28 * 28 + 64) * 4);
    assert_eq!(Op::from_key("softmax-in:1x1000x1x1").unwrap().flops(), 3000);
    for bad in [
        "concat-in:1x64x28x28-out:64",
        "shuffle-in:1x63x28x28-g:2",
        "slice-in:1x64x28x28-out:64",
        "slice-in:1x64x28x28-out:32-at:40",
    ] {
        assert!(Op::from_key(bad).is_err(), "{bad}");
    }
}

#[test]
fn make_divisible_matches_mobilenet() {
    assert_eq!(make_divisible(16.0 * 4.0, 8), 64);
    assert_eq!(make_divisible(240.0 / 4.0, 8), 64);
    assert_eq!(make_divisible(3.0, 8), 8);
    assert_eq!(make_divisible(112.0 * 3.0, 8), 336);
    assert_eq!(make_divisible(60.0, 8), 64);
}

#[test]
fn bad_keys_say_what_is_wrong() {
    let err = Op::from_key("conv-in:1x16x32x32-out:16-k:3-s:1-g:3-pre:none-act:relu")
        .unwrap_err()
        .to_string();
    assert!(err.contains("groups 3 must divide"), "{err}");
    assert!(matches!(
        Op::from_key("dense-in:1x1x1x1"),
        Err(OpError::UnknownKind(_))
    ));
    assert!(matches!(
        Op::from_key("add-in:1x16x32x32-k:3"),
        Err(OpError::Unexpected { .. })
    ));
    assert!(matches!(
        Op::from_key("linear-in:1x64x1x1"),
        Err(OpError::Missing { field: "out", .. })
    ));
    assert!(Op::from_key("act-in:1x16x32x32-act:gelu-bn:0").is_err());
    assert!(Op::from_key("add-in:1x16").is_err());
    assert!(Op::from_key("add-in:0x16x32x32").is_err());
    assert!(Op::from_key("").is_err());
}

#[test]
fn transformer_ops_take_tokens_and_round_trip() {
    for key in [
        "patch-in:1x3x224x224-out:192-p:16-cls:1",
        "ln-in:1x197x192",
        "mhsa-in:1x197x192-h:3-hd:64",
        "mlp-in:1x197x192-hidden:768",
        "encoder-in:1x197x192-h:3-hd:64-mlp:768",
        "cls-in:1x197x192",
        "tokens-in:1x64x14x14",
        "tokmean-in:1x196x64",
        "add-in:1x197x192",
    ] {
        let op = Op::from_key(key).unwrap();
        assert_eq!(op.key(), key);
    }
    let patch = Op::from_key("patch-in:1x3x224x224-out:192-p:16-cls:1").unwrap();
    assert_eq!(patch.output(), Tensor::tokens(1, 197, 192));
    assert_eq!(patch.output().to_string(), "1x197x192");
    assert_eq!(patch.output().dims(), vec![1, 197, 192]);
    let block = Op::from_key("encoder-in:1x197x192-h:3-hd:64-mlp:768").unwrap();
    assert_eq!(block.output(), block.input());
    // DeiT-Tiny's layer: 444,864 parameters; QKV, the two attention products, the output
    // projection and the MLP as multiply-adds.
    assert_eq!(block.params(), 444_864);
    let macs = 197 * 192 * 576 + 2 * 197 * 197 * 192 + 197 * 192 * 192 + 2 * 197 * 192 * 768;
    assert_eq!(block.macs(), macs);
    assert!(block.flops() > 2 * macs);
    let tokens = Op::from_key("tokens-in:1x64x14x14").unwrap();
    assert_eq!(tokens.output(), Tensor::tokens(1, 196, 64));
    for (bad, why) in [
        ("ln-in:1x16x32x32", "token sequence"),
        ("encoder-in:1x197x192-h:0-hd:64-mlp:768", "at least 1"),
        ("patch-in:1x3x224x224-out:192-p:15-cls:1", "must divide"),
        (
            "conv-in:1x197x192-out:16-k:1-s:1-g:1-pre:none-act:none",
            "feature map",
        ),
        ("tokens-in:1x197x192", "feature map"),
    ] {
        let err = Op::from_key(bad).unwrap_err().to_string();
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[test]
fn convnext_ops_take_feature_maps_and_round_trip() {
    for key in ["cnblock-in:1x96x56x56-hidden:384-k:7", "ln2d-in:1x96x56x56"] {
        let op = Op::from_key(key).unwrap();
        assert_eq!(op.key(), key);
        assert_eq!(op.output(), op.input());
    }
    // torchvision's CNBlock(96): depthwise 7x7 with bias, LayerNorm, Linear 96-384-96, layer
    // scale: 79,296 parameters.
    let block = Op::from_key("cnblock-in:1x96x56x56-hidden:384-k:7").unwrap();
    assert_eq!(block.params(), 79_296);
    assert_eq!(block.macs(), 56 * 56 * 96 * 49 + 2 * 56 * 56 * 96 * 384);
    assert!(block.flops() > 2 * block.macs());
    assert_eq!(Op::from_key("ln2d-in:1x96x56x56").unwrap().params(), 192);
    for (bad, why) in [
        ("cnblock-in:1x96x56x56-hidden:384-k:4", "odd"),
        ("cnblock-in:1x96x56x56-hidden:0-k:7", "at least 1"),
        ("cnblock-in:1x197x192-hidden:768-k:7", "feature map"),
        ("ln2d-in:1x197x192", "feature map"),
    ] {
        let err = Op::from_key(bad).unwrap_err().to_string();
        assert!(err.contains(why), "{bad}: {err}");
    }
}
