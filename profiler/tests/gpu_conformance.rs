//! Conformance: every op kind's wgpu output equals ONNX Runtime CPU's on the same inputs and
//! weights, over many shapes.
//!
//! Needs a wgpu adapter (on a machine without a GPU, Mesa's lavapipe: `scripts/setup.sh`
//! installs it and `./test.sh` selects it with `WGPU_BACKEND=vulkan`) and the ONNX Runtime
//! library. Without either the tests fail: CI must never skip the GPU path silently.
//!
//! Tolerance: `|gpu - ort| <= 1e-5 * max(1, max |ort|) + 1e-5 * |ort|` per element. Both sides
//! are fp32 but sum in different orders (ORT's MLAS blocks and fuses multiply-adds); the
//! observed differences are ~1e-6 of the output's range.

use hwnas_core::op::Op;
use hwnas_core::rng::SplitMix64;
use hwnas_gpu::runtime::GpuRuntime;
use hwnas_gpu::settings::DEFAULT_MIN_INVOCATIONS;
use hwnas_gpu::{GpuSettings, GpuTiming};
use hwnas_onnx as onnx;
use hwnas_profiler::backend::Backend;
use hwnas_profiler::backend::ort::OrtRuntime;
use hwnas_profiler::device::OrtSettings;
use hwnas_profiler::measure::{MeasureConfig, measure_group};

/// The GPU under test. These tests check outputs, not deadlines (`a_kernel_that_misses_its_deadline...`
/// does): lavapipe compiles every kernel with LLVM on its first dispatch, and a whole network's
/// first run took over the default 10 s on a busy 2-core VM, so the deadline here is generous.
fn gpu() -> GpuRuntime {
    gpu_with(None)
}

/// The GPU under test, its kernels shaped for `min_invocations` (`None`: the adapter's own).
fn gpu_with(min_invocations: Option<u32>) -> GpuRuntime {
    let settings = GpuSettings {
        timeout_ms: 120_000.0,
        min_invocations,
        ..GpuSettings::default()
    };
    GpuRuntime::new(&settings).unwrap_or_else(|e| {
        panic!(
            "a wgpu adapter is required for this test ({e}); run ./test.sh, which installs lavapipe"
        )
    })
}

fn ort() -> OrtRuntime {
    OrtRuntime::new(&OrtSettings::default(), None).unwrap_or_else(|e| {
        panic!("ONNX Runtime is required for this test ({e}); run ./test.sh, which installs it")
    })
}

/// The largest error relative to the tolerance (<= 1 passes), and where it is.
fn worst(got: &[f32], want: &[f32]) -> (f64, usize) {
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs())) as f64;
    got.iter()
        .zip(want)
        .enumerate()
        .map(|(i, (&g, &w))| {
            let tol = 1e-5 * scale + 1e-5 * (w as f64).abs();
            ((g as f64 - w as f64).abs() / tol, i)
        })
        .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a })
}

fn check(gpu: &GpuRuntime, ort: &OrtRuntime, op: &Op) -> f64 {
    let inputs = onnx::op_inputs(op, 3);
    let (_, want) = ort.infer(op, &inputs).unwrap();
    let model = onnx::op_model(op).unwrap();
    let got = gpu
        .infer(&model, &inputs)
        .unwrap_or_else(|e| panic!("{op}: {e}"));
    assert_eq!(got.len(), want.len(), "{op}: output size");
    let (ratio, i) = worst(&got, &want);
    assert!(
        ratio <= 1.0,
        "{op}: element {i}: wgpu {} vs ORT {} ({ratio:.1}x the tolerance)",
        got[i],
        want[i]
    );
    ratio
}

/// Hand-picked cases: every op kind and activation, tile edges (64-wide GEMM tiles, 4-wide
/// column and channel tiles), strides, groups, depthwise, SE, residuals, pre-activation; direct
/// convs wide enough to run unsplit, and narrow ones whose input channels split unevenly.
const CASES: &[&str] = &[
    "conv-in:1x8x64x64-out:32-k:3-s:1-g:1-pre:none-act:relu",
    "conv-in:1x7x6x6-out:9-k:3-s:1-g:1-pre:relu-act:none",
    "conv-in:1x12x6x6-out:12-k:3-s:2-g:2-pre:none-act:relu6",
    "conv-in:1x3x16x16-out:16-k:3-s:2-g:1-pre:none-act:hswish",
    "conv-in:1x8x9x9-out:8-k:3-s:1-g:1-pre:relu-act:none",
    "conv-in:2x8x10x10-out:12-k:5-s:2-g:2-pre:none-act:relu",
    "conv-in:1x16x11x11-out:16-k:3-s:2-g:16-pre:none-act:relu6",
    "conv-in:1x8x6x6-out:16-k:1-s:1-g:1-pre:none-act:swish",
    "conv-in:1x8x6x6-out:8-k:1-s:1-g:1-pre:none-act:sigmoid",
    "conv-in:1x8x6x6-out:8-k:1-s:1-g:1-pre:none-act:hsigmoid",
    "conv-in:1x20x13x13-out:72-k:1-s:1-g:1-pre:relu-act:relu",
    "conv-in:2x36x9x9-out:130-k:1-s:2-g:1-pre:none-act:none",
    "conv-in:1x12x10x10-out:24-k:1-s:1-g:4-pre:none-act:relu",
    "conv-in:1x24x17x17-out:24-k:7-s:2-g:24-pre:none-act:hswish",
    "conv-in:1x3x33x33-out:10-k:3-s:2-g:1-pre:none-act:relu6",
    "mbconv-in:1x16x12x12-out:16-e:1-k:3-s:1-se:0-act:relu-res:1",
    "mbconv-in:1x16x12x12-out:24-e:4-k:5-s:2-se:1-act:hswish-res:0",
    "mbconv-in:1x24x7x7-out:24-e:6-k:7-s:1-se:1-act:relu-res:1",
    "mbconv-in:1x8x9x9-out:16-e:3-k:3-s:2-se:0-act:swish-res:0",
    "mbconv-in:2x40x14x14-out:40-e:3-k:5-s:1-se:1-act:hswish-res:1",
    "avgpool-in:1x8x9x9-k:3-s:1-p:1",
    "avgpool-in:1x8x8x8-k:2-s:2-p:0",
    "maxpool-in:1x8x9x9-k:3-s:2-p:1",
    "gap-in:1x16x7x7",
    "gap-in:2x8x15x15",
    "linear-in:2x32x1x1-out:10",
    "linear-in:1x1280x1x1-out:1000",
    "add-in:1x8x5x5",
    "add-in:1x3x7x9",
    "act-in:1x16x4x4-act:relu-bn:1",
    "act-in:1x16x4x4-act:hswish-bn:0",
    "act-in:1x16x4x4-act:none-bn:1",
    "act-in:1x6x5x5-act:swish-bn:1",
    "act-in:1x6x5x5-act:sigmoid-bn:0",
    "scale-in:2x24x7x7",
    "concat-in:2x8x5x5-out:20",
    "shuffle-in:1x12x4x4-g:3",
    "conv-in:1x8x12x12-out:8-k:3-s:1-g:1-d:2-pre:none-act:none",
    "conv-in:1x8x13x13-out:8-k:3-s:1-g:8-d:4-p:2-pre:none-act:relu",
    "conv-in:1x8x9x9-out:12-k:1x7-s:1-g:1-pre:none-act:relu",
    "conv-in:1x8x9x9-out:12-k:7x1-s:2-g:1-pre:none-act:tanh",
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
    "shuffle-in:2x116x7x7-g:2",
    "slice-in:2x12x4x4-out:5",
    "slice-in:2x12x4x4-out:5-at:7",
    "softmax-in:2x1000x1x1",
    "patch-in:1x3x32x32-out:24-p:8-cls:1",
    "patch-in:2x3x16x24-out:8-p:4-cls:0",
    "ln-in:1x17x24",
    "ln-in:2x9x200",
    "mhsa-in:1x17x24-h:3-hd:8",
    "mhsa-in:2x10x20-h:2-hd:16",
    "mlp-in:1x17x24-hidden:84",
    "encoder-in:1x17x24-h:4-hd:8-mlp:96",
    "encoder-in:2x9x16-h:2-hd:8-mlp:56",
    "cls-in:2x17x24",
    "tokens-in:2x12x5x3",
    "tokmean-in:2x15x24",
    "mlp-in:1x70x44-hidden:130",
    "mhsa-in:2x70x44-h:2-hd:12",
    "ln2d-in:1x12x5x3",
    "ln2d-in:2x24x1x1",
    "cnblock-in:1x8x7x7-hidden:32-k:7",
    "cnblock-in:2x12x5x6-hidden:20-k:3",
];

#[test]
fn every_op_kind_matches_onnx_runtime() {
    let (g, o) = (gpu(), ort());
    let mut worst_ratio: f64 = 0.0;
    for key in CASES {
        worst_ratio = worst_ratio.max(check(&g, &o, &Op::from_key(key).unwrap()));
    }
    eprintln!("worst error: {worst_ratio:.3} of the tolerance");
}

/// Lavapipe runs direct convolutions unsplit; shaped as for a GPU, narrow ones split their input
/// channels over invocations, and must still give ONNX Runtime's outputs.
#[test]
fn convolutions_shaped_for_a_gpu_match_onnx_runtime() {
    let (g, o) = (gpu_with(Some(DEFAULT_MIN_INVOCATIONS)), ort());
    let mut rng = SplitMix64::new(7);
    let mut ops: Vec<Op> = CASES
        .iter()
        .filter(|k| k.starts_with("conv-") || k.starts_with("mbconv-"))
        .map(|k| Op::from_key(k).unwrap())
        .collect();
    while ops.len() < 60 {
        let op = random_op(&mut rng);
        if op.validate().is_ok() && matches!(op.kind(), "conv" | "mbconv") {
            ops.push(op);
        }
    }
    for op in &ops {
        check(&g, &o, op);
    }
}

/// A seeded op of a random kind and shape.
fn random_op(rng: &mut SplitMix64) -> Op {
    let pick = |rng: &mut SplitMix64, xs: &[u32]| xs[rng.below(xs.len())];
    let acts = [
        "none", "relu", "relu6", "hswish", "swish", "hsigmoid", "sigmoid",
    ];
    let act = |rng: &mut SplitMix64| acts[rng.below(acts.len())];
    let n = pick(rng, &[1, 1, 1, 2]);
    let hw = pick(rng, &[1, 3, 5, 7, 8, 12, 14, 19, 28]);
    let key = match rng.below(7) {
        0 | 1 => {
            let k = pick(rng, &[1, 1, 3, 5, 7]);
            let s = pick(rng, &[1, 2]);
            let (cin, cout, g) = match rng.below(3) {
                0 => {
                    let c = pick(rng, &[8, 16, 24, 40]);
                    (c, c, c)
                }
                1 => (pick(rng, &[8, 12, 16]), pick(rng, &[8, 16, 24]), 4),
                _ => (
                    pick(rng, &[3, 5, 16, 33, 64]),
                    pick(rng, &[4, 7, 16, 65, 96]),
                    1,
                ),
            };
            let pre = if rng.below(3) == 0 { "relu" } else { "none" };
            format!(
                "conv-in:{n}x{cin}x{hw}x{hw}-out:{cout}-k:{k}-s:{s}-g:{g}-pre:{pre}-act:{}",
                act(rng)
            )
        }
        2 => {
            let cin = pick(rng, &[8, 16, 24, 40]);
            let s = pick(rng, &[1, 2]);
            let cout = if s == 1 && rng.below(2) == 0 {
                cin
            } else {
                pick(rng, &[16, 24, 48])
            };
            let res = u32::from(s == 1 && cout == cin);
            format!(
                "mbconv-in:{n}x{cin}x{hw}x{hw}-out:{cout}-e:{}-k:{}-s:{s}-se:{}-act:{}-res:{res}",
                pick(rng, &[1, 3, 4, 6]),
                pick(rng, &[3, 5, 7]),
                rng.below(2),
                ["relu", "hswish", "swish"][rng.below(3)]
            )
        }
        3 => {
            let kind = ["avgpool", "maxpool"][rng.below(2)];
            let k = pick(rng, &[2, 3]).min(hw);
            let p = if k == 3 { rng.below(2) } else { 0 };
            format!(
                "{kind}-in:{n}x{}x{hw}x{hw}-k:{k}-s:{}-p:{p}",
                pick(rng, &[4, 16]),
                pick(rng, &[1, 2])
            )
        }
        4 => match rng.below(3) {
            0 => format!("gap-in:{n}x{}x{hw}x{hw}", pick(rng, &[8, 33])),
            1 => format!(
                "linear-in:{n}x{}x1x1-out:{}",
                pick(rng, &[16, 100, 576]),
                pick(rng, &[3, 10, 129])
            ),
            _ => format!("add-in:{n}x{}x{hw}x{hw}", pick(rng, &[8, 17])),
        },
        5 => format!(
            "act-in:{n}x{}x{hw}x{hw}-act:{}-bn:{}",
            pick(rng, &[8, 17]),
            act(rng),
            rng.below(2)
        ),
        _ => {
            let c = pick(rng, &[8, 24, 58]);
            match rng.below(5) {
                0 => format!("scale-in:{n}x{c}x{hw}x{hw}"),
                1 => format!(
                    "concat-in:{n}x{c}x{hw}x{hw}-out:{}",
                    c + pick(rng, &[1, 8, 58])
                ),
                2 => format!("shuffle-in:{n}x{c}x{hw}x{hw}-g:2"),
                3 => format!("slice-in:{n}x{c}x{hw}x{hw}-out:{}", c / 2),
                _ => format!("softmax-in:{n}x{}x1x1", pick(rng, &[10, 1000])),
            }
        }
    };
    Op::from_key(&key).unwrap_or_else(|e| panic!("{key}: {e}"))
}

#[test]
fn random_shapes_match_onnx_runtime() {
    let (g, o) = (gpu(), ort());
    let mut rng = SplitMix64::new(2026);
    let mut checked = 0;
    while checked < 120 {
        let op = random_op(&mut rng);
        if op.validate().is_err() {
            continue;
        }
        check(&g, &o, &op);
        checked += 1;
    }
}

#[test]
fn measuring_reports_gpu_time_and_the_provider() {
    let mut g = gpu();
    let op = Op::from_key("conv-in:1x16x16x16-out:16-k:3-s:1-g:1-pre:none-act:relu").unwrap();
    let mut kernels = vec![g.prepare(&op).unwrap()];
    let cfg = MeasureConfig {
        min_runs: 5,
        max_ms: 200.0,
        ..MeasureConfig::default()
    };
    let m = measure_group(&mut kernels, &cfg, None, None)
        .remove(0)
        .unwrap();
    assert!(m.providers[0].starts_with("wgpu-"), "{:?}", m.providers);
    assert!(m.stats.median > 0.0);
    let prov: std::collections::HashMap<String, String> = g.provenance().into_iter().collect();
    if prov["timing"] == "timestamp" {
        assert!(m.in_network, "timestamps are the recorded latency");
        // The kernels cannot take longer than the submit + wait around them.
        assert!(
            m.stats.median <= m.wall.median * 1.05,
            "{} vs {}",
            m.stats.median,
            m.wall.median
        );
    }
}

#[test]
fn a_kernel_that_misses_its_deadline_is_an_error_and_the_next_op_still_runs() {
    let settings = GpuSettings {
        timeout_ms: 0.01,
        timing: GpuTiming::Wall,
        ..GpuSettings::default()
    };
    let mut g = GpuRuntime::new(&settings).unwrap();
    // Big enough to take far more than 10 us on any device.
    let big = Op::from_key("conv-in:1x128x64x64-out:128-k:3-s:1-g:1-pre:none-act:relu").unwrap();
    let mut k = g.prepare(&big).unwrap();
    let err = k.run().expect_err("must miss a 10 us deadline").to_string();
    assert!(err.contains("wgpu.timeout_ms"), "{err}");
    drop(k);
    // The device is still usable afterwards.
    let g = gpu();
    let o = ort();
    check(&g, &o, &Op::from_key("add-in:1x8x5x5").unwrap());
}

#[test]
fn a_missing_adapter_lists_the_ones_there() {
    let settings = GpuSettings {
        adapter: "no-such-gpu-9000".into(),
        ..GpuSettings::default()
    };
    let err = GpuRuntime::new(&settings)
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.contains("no-such-gpu-9000") && err.contains("found:"),
        "{err}"
    );
}

#[test]
fn a_lost_device_is_a_clear_error() {
    let mut g = gpu();
    let op = Op::from_key("add-in:1x8x5x5").unwrap();
    let mut k = g.prepare(&op).unwrap();
    k.run().unwrap();
    g.destroy();
    let err = k
        .run()
        .expect_err("a destroyed device cannot run")
        .to_string();
    assert!(err.to_lowercase().contains("lost"), "{err}");
}

/// Imported models: the five CNN families of `onnx::zoo` (Pad, Split, ReduceMean, ceil-mode
/// pools, Reshape/Transpose shuffles, Gemm heads), as written, on wgpu against ORT.
#[test]
fn zoo_models_match_onnx_runtime() {
    let (g, o) = (gpu(), ort());
    use hwnas_onnx::zoo;
    // Opset 13 writes hard swish as x * HardSigmoid(x).
    let cases = zoo::FAMILIES
        .iter()
        .map(|f| (*f, 17))
        .chain([("mobilenetv3", 13)]);
    for (family, opset) in cases {
        let model = zoo::build_at_opset(family, 64, opset).unwrap();
        let input = hwnas_core::op::Tensor::new(1, 3, 64, 64);
        let mut rng = SplitMix64::new(4);
        let x: Vec<f32> = (0..input.numel()).map(|_| rng.uniform(1.0)).collect();
        let want = o.infer_model(&model, input, &x).unwrap();
        let got = g
            .infer(&model, &[x])
            .unwrap_or_else(|e| panic!("{family}: {e}"));
        assert_eq!(got.len(), want.len(), "{family}");
        let (ratio, i) = worst(&got, &want);
        assert!(
            ratio <= 1.0,
            "{family}: output {i}: wgpu {} vs ORT {} ({ratio:.1}x the tolerance)",
            got[i],
            want[i]
        );
    }
}
