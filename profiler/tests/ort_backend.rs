//! ONNX Runtime backend against the plain-Rust reference, and its measurement path.
//!
//! These tests need the ONNX Runtime library (`scripts/setup.sh` installs it; `./test.sh` sets
//! `ORT_DYLIB_PATH`). Without it they fail: CI must never skip the real backend silently.

use hwnas_core::op::{Op, Precision};
use hwnas_onnx::{self as onnx, reference};
use hwnas_profiler::backend::Backend;
use hwnas_profiler::backend::ort::OrtRuntime;
use hwnas_profiler::device::OrtSettings;
use hwnas_profiler::measure::{MeasureConfig, measure_group};
use proptest::prelude::*;

fn runtime() -> OrtRuntime {
    OrtRuntime::new(&OrtSettings::default(), None).unwrap_or_else(|e| {
        panic!("ONNX Runtime is required for this test ({e}); run ./test.sh, which installs it")
    })
}

/// One small case of every op kind and every activation.
const CASES: &[&str] = &[
    "conv-in:1x3x16x16-out:16-k:3-s:2-g:1-pre:none-act:hswish",
    "conv-in:1x8x9x9-out:8-k:3-s:1-g:1-pre:relu-act:none",
    "conv-in:2x8x10x10-out:12-k:5-s:2-g:2-pre:none-act:relu",
    "conv-in:1x16x11x11-out:16-k:3-s:2-g:16-pre:none-act:relu6",
    "conv-in:1x8x6x6-out:16-k:1-s:1-g:1-pre:none-act:swish",
    "conv-in:1x8x6x6-out:8-k:1-s:1-g:1-pre:none-act:sigmoid",
    "conv-in:1x8x6x6-out:8-k:1-s:1-g:1-pre:none-act:hsigmoid",
    "mbconv-in:1x16x12x12-out:16-e:1-k:3-s:1-se:0-act:relu-res:1",
    "mbconv-in:1x16x12x12-out:24-e:4-k:5-s:2-se:1-act:hswish-res:0",
    "mbconv-in:1x24x7x7-out:24-e:6-k:7-s:1-se:1-act:relu-res:1",
    "mbconv-in:1x8x9x9-out:16-e:3-k:3-s:2-se:0-act:swish-res:0",
    "avgpool-in:1x8x9x9-k:3-s:1-p:1",
    "avgpool-in:1x8x8x8-k:2-s:2-p:0",
    "maxpool-in:1x8x9x9-k:3-s:2-p:1",
    "gap-in:1x16x7x7",
    "linear-in:2x32x1x1-out:10",
    "add-in:1x8x5x5",
    "act-in:1x16x4x4-act:relu-bn:1",
    "act-in:1x16x4x4-act:hswish-bn:0",
    "act-in:1x16x4x4-act:none-bn:1",
    "scale-in:2x16x5x5",
    "concat-in:1x8x5x5-out:20",
    "shuffle-in:1x12x4x4-g:3",
    "slice-in:1x12x4x4-out:5",
    "slice-in:1x12x4x4-out:5-at:6",
    "softmax-in:2x10x1x1",
    "conv-in:1x8x12x12-out:8-k:3-s:1-g:1-d:2-pre:none-act:none",
    "conv-in:1x8x13x13-out:8-k:3-s:1-g:8-d:4-p:2-pre:none-act:relu",
    "conv-in:1x8x9x9-out:12-k:1x7-s:1-g:1-pre:none-act:relu",
    "conv-in:1x8x9x9-out:12-k:7x1-s:2-g:1-pre:none-act:none",
    "act-in:1x16x4x4-act:tanh-bn:0",
    "act-in:1x16x4x4-act:leakyrelu-bn:1",
    "lrn-in:1x16x5x5-size:5",
    "lrn-in:2x3x4x4-size:3",
    "resize-in:1x8x5x7-to:10x14-mode:nearest",
    "resize-in:1x8x5x7-to:16x9-mode:linear",
    "resize-in:1x8x10x10-to:4x4-mode:linear",
    "convt-in:1x8x5x5-out:6-k:4-s:2-p:1-g:1",
    "convt-in:2x8x4x6-out:8-k:3-s:1-p:0-g:2",
    "convt-in:1x4x3x3-out:4-k:2-s:2-p:0-g:4",
    "patch-in:1x3x32x32-out:24-p:8-cls:1",
    "patch-in:2x3x16x24-out:8-p:4-cls:0",
    "ln-in:1x17x24",
    "mhsa-in:1x17x24-h:3-hd:8",
    "mhsa-in:2x10x20-h:2-hd:16",
    "mlp-in:1x17x24-hidden:84",
    "encoder-in:1x17x24-h:4-hd:8-mlp:96",
    "encoder-in:2x9x16-h:2-hd:8-mlp:56",
    "cls-in:2x17x24",
    "tokens-in:2x12x5x3",
    "tokmean-in:2x15x24",
    "ln2d-in:1x12x5x3",
    "ln2d-in:2x24x1x1",
    "cnblock-in:1x8x7x7-hidden:32-k:7",
    "cnblock-in:2x12x5x6-hidden:20-k:3",
];

fn assert_matches_reference(rt: &OrtRuntime, op: &Op) {
    let (got, want) = output_and_reference(rt, op, Precision::Fp32);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 + 1e-3 * w.abs(),
            "{op}: element {i}: ORT {g} vs reference {w}"
        );
    }
}

/// ORT's output for an op at `precision` (`rt` builds at it), and the reference's for the same
/// converted graph.
fn output_and_reference(rt: &OrtRuntime, op: &Op, precision: Precision) -> (Vec<f32>, Vec<f32>) {
    let inputs = onnx::op_inputs(op, 7);
    let (shape, got) = rt.infer(op, &inputs).unwrap();
    let model = onnx::precision::convert(&onnx::op_model(op).unwrap(), precision);
    let want = reference_output(&model, op, &inputs);
    let want_dims: Vec<i64> = want.dims.iter().map(|&d| d as i64).collect();
    assert_eq!(shape, want_dims, "{op}: output shape");
    assert_eq!(
        got.len() as u64,
        op.output().numel(),
        "{op}: output size vs Op::output"
    );
    (got, want.data)
}

fn reference_output(model: &onnx::ModelProto, op: &Op, inputs: &[Vec<f32>]) -> reference::Nd {
    let named: Vec<(&str, reference::Nd)> = onnx::INPUT_NAMES
        .iter()
        .copied()
        .zip(
            op.input_shapes()
                .iter()
                .zip(inputs)
                .map(|(t, v)| reference::Nd {
                    dims: t.dims().iter().map(|&d| d as usize).collect(),
                    data: v.clone(),
                }),
        )
        .collect();
    reference::evaluate(model, &named).unwrap().remove(0)
}

/// Whether ORT's uint8 x int8 kernels saturate on this CPU: on x86 without VNNI they sum pairs
/// of products in int16, which full-range int8 weights overflow (ORT's documented reason for
/// `reduce_range`), so ORT and exact arithmetic differ by design there.
fn u8s8_saturates() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !(std::arch::is_x86_feature_detected!("avx512vnni")
            || std::arch::is_x86_feature_detected!("avxvnni"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// An int8 op with weights as ORT runs it exactly on every CPU: 7-bit weights
/// (`WeightRange::Reduced`), whose pair sums cannot saturate. Such ops have one input.
fn reduced_range_output_and_reference(rt: &OrtRuntime, op: &Op) -> (Vec<f32>, Vec<f32>) {
    let inputs = onnx::op_inputs(op, 7);
    assert_eq!(inputs.len(), 1, "{op}: ops with weights take one input");
    let model = onnx::precision::to_int8(
        &onnx::op_model(op).unwrap(),
        onnx::precision::WeightRange::Reduced,
    );
    let got = rt.infer_model(&model, op.input(), &inputs[0]).unwrap();
    (got, reference_output(&model, op, &inputs).data)
}

/// Every op kind at fp16 and int8 (QDQ) on ORT equals the reference's evaluation of the same
/// converted graph: fp16 within a few fp16 roundings, int8 within a few quantisation steps.
#[test]
fn every_op_kind_matches_the_reference_at_fp16_and_int8() {
    for precision in [Precision::Fp16, Precision::Int8] {
        let rt = runtime().with_precision(precision);
        for key in CASES {
            let op = Op::from_key(key).unwrap();
            // Where ORT saturates full-range weights by design, the conversion is checked with
            // 7-bit weights; elsewhere as the tables build it.
            let (got, want) = if precision == Precision::Int8 && op.params() > 0 && u8s8_saturates()
            {
                reduced_range_output_and_reference(&rt, &op)
            } else {
                output_and_reference(&rt, &op, precision)
            };
            match precision {
                // The reference rounds where the graph casts; ORT may also round intermediate
                // results to fp16: a few fp16 ulps (2^-10).
                Precision::Fp16 => {
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= 4e-3 * w.abs().max(1.0),
                            "{precision} {op}: element {i}: ORT {g} vs reference {w}"
                        );
                    }
                }
                // Integer kernels round once where the reference rounds its float sum: a tie
                // may fall the other way, by one quantisation step, rarely.
                _ => {
                    let step = onnx::precision::ACTIVATION_SCALE;
                    let mut off = 0;
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= step * 1.01,
                            "{precision} {op}: element {i}: ORT {g} vs reference {w}"
                        );
                        off += usize::from((g - w).abs() > step / 2.0);
                    }
                    // ORT's int8 ConvTranspose lands on the other side of a rounding boundary
                    // from the reference's float sum more often (7% of elements here: a
                    // scatter sums in another order); still within one step each, as
                    // asserted above.
                    let ties_allowed = if op.kind() == "convt" { 10 } else { 100 };
                    assert!(
                        off * ties_allowed <= got.len(),
                        "{precision} {op}: {off} of {} elements a step off",
                        got.len()
                    );
                }
            }
            // Quantised outputs keep their spread: not everything saturated to one value.
            let distinct: std::collections::BTreeSet<i64> =
                got.iter().map(|v| (v * 1024.0).round() as i64).collect();
            assert!(distinct.len() >= 5, "{precision} {op}: {distinct:?}");
        }
    }
}

#[test]
fn every_op_kind_matches_the_reference() {
    let rt = runtime();
    for key in CASES {
        assert_matches_reference(&rt, &Op::from_key(key).unwrap());
    }
}

fn small_conv() -> impl Strategy<Value = Op> {
    (
        1u32..3,
        1u32..5,
        3u32..12,
        prop::sample::select(vec![1u32, 3, 5]),
        1u32..3,
        any::<bool>(),
    )
        .prop_flat_map(|(n, cin_mul, hw, k, s, dw)| {
            let cin = 4 * cin_mul;
            let (cout, g) = if dw { (cin, cin) } else { (8, 4) };
            (
                Just(n),
                Just(cin),
                Just(hw),
                Just(k),
                Just(s),
                Just(cout),
                Just(g),
                0usize..7,
                0usize..2,
            )
        })
        .prop_map(|(n, cin, hw, k, s, cout, g, act, pre)| {
            let acts = [
                "none", "relu", "relu6", "hswish", "swish", "hsigmoid", "sigmoid",
            ];
            let pre = ["none", "relu"][pre];
            Op::from_key(&format!(
                "conv-in:{n}x{cin}x{hw}x{hw}-out:{cout}-k:{k}-s:{s}-g:{g}-pre:{pre}-act:{}",
                acts[act]
            ))
            .unwrap()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_convs_match_the_reference(op in small_conv()) {
        assert_matches_reference(&runtime(), &op);
    }
}

#[test]
fn measuring_reports_in_network_time_and_the_provider() {
    let mut rt = runtime();
    // A conv that ORT runs in the NCHWc layout, so a lone op pays edge reorders.
    let op = Op::from_key("conv-in:1x32x28x28-out:32-k:3-s:1-g:1-pre:none-act:relu").unwrap();
    let mut kernels = vec![rt.prepare(&op).unwrap()];
    let cfg = MeasureConfig {
        max_ms: 300.0,
        ..MeasureConfig::default()
    };
    let m = measure_group(&mut kernels, &cfg, None, None)
        .remove(0)
        .unwrap();
    assert!(m.in_network);
    assert_eq!(m.providers, vec!["CPUExecutionProvider".to_string()]);
    assert!(m.stats.n >= cfg.min_runs as usize);
    assert!(m.stats.median > 0.0);
    // The kernels cannot take longer than the call that ran them.
    assert!(
        m.stats.median <= m.wall.median,
        "{} vs {}",
        m.stats.median,
        m.wall.median
    );
    let reorder = m.edge_reorder_us.expect("ORT reports edge reorders");
    assert!(
        reorder > 0.0,
        "the lone NCHWc conv should pay edge reorders"
    );
}

#[test]
fn an_unknown_execution_provider_lists_the_ones_there() {
    let settings = OrtSettings {
        execution_provider: "tpu9000".into(),
        ..OrtSettings::default()
    };
    let err = OrtRuntime::new(&settings, None)
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.contains("tpu9000") && err.contains("CPUExecutionProvider"),
        "{err}"
    );
}

#[test]
fn a_missing_library_names_the_flag() {
    let err = OrtRuntime::new(
        &OrtSettings::default(),
        Some(std::path::Path::new("/nonexistent/libonnxruntime.so.1.0")),
    )
    .err()
    .expect("must fail")
    .to_string();
    assert!(err.contains("--ort-library"), "{err}");
}
