//! Whole networks of the built-in spaces on ONNX Runtime, against the plain-Rust reference.

use hwnas_core::rng::SplitMix64;
use hwnas_onnx::NetworkModel;
use hwnas_onnx::reference::{self, Nd};
use hwnas_profiler::backend::ort::OrtRuntime;
use hwnas_profiler::device::OrtSettings;
use hwnas_search::space::builtin;

fn runtime() -> OrtRuntime {
    OrtRuntime::new(&OrtSettings::default(), None).unwrap_or_else(|e| {
        panic!("ONNX Runtime is required ({e}); run ./test.sh, which installs it")
    })
}

fn input(len: usize) -> Vec<f32> {
    let mut rng = SplitMix64::new(5);
    (0..len).map(|_| rng.uniform(1.0)).collect()
}

#[test]
fn nb201_networks_match_the_reference() {
    let rt = runtime();
    let space = builtin("nb201").unwrap();
    // A cell with every op kind, one with an empty node (its edges carry nothing), and one whose
    // output is empty (the cell passes its input on).
    for arch in [
        "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_1x1~0|none~1|skip_connect~2|",
        "|none~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|none~2|",
        "|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    ] {
        let net = space.network(arch).unwrap();
        let x = input(net.input.numel() as usize);
        let (shape, got) = rt.infer_network(&net, &x).unwrap();
        let model = net.to_onnx().unwrap();
        let dims = net.input.dims().iter().map(|&d| d as usize).collect();
        let want = reference::evaluate(&model, &[("x", Nd { dims, data: x })])
            .unwrap()
            .remove(0);
        assert_eq!(shape, vec![1, 10], "{arch}");
        for (g, w) in got.iter().zip(&want.data) {
            assert!(
                (g - w).abs() <= 1e-3 + 1e-3 * w.abs(),
                "{arch}: ORT {g} vs reference {w}"
            );
        }
    }
}

#[test]
fn mbv3_networks_run_with_the_published_output() {
    let rt = runtime();
    let space = builtin("mbv3").unwrap();
    let mut rng = SplitMix64::new(3);
    for _ in 0..2 {
        let net = space.network(&space.sample(&mut rng)).unwrap();
        let (shape, y) = rt
            .infer_network(&net, &input(net.input.numel() as usize))
            .unwrap();
        assert_eq!(shape, vec![1, 1000]);
        assert!(y.iter().all(|v| v.is_finite()));
    }
}

/// Whole networks on wgpu (their ops' kernels in order, one command buffer) against ONNX
/// Runtime, with the GPU conformance suite's tolerance. Needs a wgpu adapter (lavapipe in CI).
#[test]
fn networks_on_wgpu_match_onnx_runtime() {
    use hwnas_gpu::GpuSettings;
    use hwnas_gpu::runtime::GpuRuntime;
    // Outputs are checked here, not deadlines: lavapipe compiles each kernel with LLVM on its
    // first dispatch, which took over the default 10 s for a whole network on a busy VM.
    let settings = GpuSettings {
        timeout_ms: 120_000.0,
        ..GpuSettings::default()
    };
    let gpu = GpuRuntime::new(&settings).unwrap_or_else(|e| {
        panic!("a wgpu adapter is required ({e}); run ./test.sh, which installs lavapipe")
    });
    let rt = runtime();
    let mut rng = SplitMix64::new(11);
    let nb201 = builtin("nb201").unwrap();
    let mbv3 = builtin("mbv3").unwrap();
    let mut nets = vec![
        nb201
            .network("|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_1x1~0|none~1|skip_connect~2|")
            .unwrap(),
    ];
    for _ in 0..3 {
        nets.push(nb201.network(&nb201.sample(&mut rng)).unwrap());
    }
    nets.push(mbv3.network(&mbv3.sample(&mut rng)).unwrap());
    for net in &nets {
        let x = input(net.input.numel() as usize);
        let (_, want) = rt.infer_network(net, &x).unwrap();
        let got = gpu
            .infer(&net.to_onnx().unwrap(), &[x])
            .unwrap_or_else(|e| panic!("{}: {e}", net.name));
        assert_eq!(got.len(), want.len(), "{}", net.name);
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * scale + 1e-5 * w.abs(),
                "{}: output {i}: wgpu {g} vs ORT {w}",
                net.name
            );
        }
    }
}

/// Which pools an int8 (QDQ) graph runs channels-last is ORT's choice (its NHWC transformer
/// and transpose optimiser); `Network::channels_last_pools` predicts it for the latency model.
/// Checked here against the graph ORT really runs, so an ORT that decides otherwise fails.
#[test]
fn int8_pools_run_in_the_layout_the_model_expects() {
    let rt = runtime().with_precision(hwnas_core::Precision::Int8);
    let space = builtin("nb201").unwrap();
    let mut rng = SplitMix64::new(8);
    // Pools feeding a dead-end node, pools feeding pools, pools in the last cell.
    let mut archs: Vec<String> = [
        "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|avg_pool_3x3~0|skip_connect~1|none~2|",
        "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
        "|avg_pool_3x3~0|+|none~0|avg_pool_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|none~2|",
    ]
    .map(String::from)
    .into();
    archs.extend((0..9).map(|_| space.sample(&mut rng)));
    let mut kinds_seen = [0usize; 2];
    for arch in &archs {
        let net = space.network(arch).unwrap();
        let predicted: Vec<bool> = net
            .nodes
            .iter()
            .zip(net.channels_last_pools())
            .filter(|(n, _)| matches!(n.op.kind(), "avgpool" | "gap"))
            .map(|(_, nhwc)| nhwc)
            .collect();
        let graph = rt.optimized_network(&net).unwrap();
        let ran: Vec<bool> = graph
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .filter(|n| {
                n.op_type == "QLinearAveragePool" || n.op_type == "QLinearGlobalAveragePool"
            })
            .map(|n| {
                n.attribute
                    .iter()
                    .any(|a| a.name == "channels_last" && a.i == 1)
            })
            .collect();
        let count = |v: &[bool], nhwc: bool| v.iter().filter(|&&x| x == nhwc).count();
        for nhwc in [false, true] {
            assert_eq!(
                count(&predicted, nhwc),
                count(&ran, nhwc),
                "{arch}: pools with channels_last = {nhwc}, predicted against ORT's graph"
            );
            kinds_seen[usize::from(nhwc)] += count(&ran, nhwc);
        }
    }
    assert!(kinds_seen[0] >= 10 && kinds_seen[1] >= 50, "{kinds_seen:?}");
}

/// ORT's common-subexpression elimination runs a weightless op repeated on the same input once,
/// and a skip is no node of the graph, so `pool(skip(x))` repeats `pool(x)`; and it fuses an add
/// into the conv before it (the NCHWc conv's `Sum` input). `Network::duplicates` and
/// `Network::fused_adds` predict both for the float latency model: checked here against the graph
/// ORT really runs, pools, adds and fused adds counted per network.
#[test]
fn float_networks_run_the_pools_and_adds_the_model_counts() {
    let rt = runtime();
    let space = builtin("nb201").unwrap();
    let mut rng = SplitMix64::new(7);
    // A pool of a skip repeating a pool of the cell's input; a skip-only cell whose adds repeat.
    let mut archs: Vec<String> = [
        "|skip_connect~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|avg_pool_3x3~1|skip_connect~2|",
        "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
        "|avg_pool_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    ]
    .map(String::from)
    .into();
    archs.extend((0..37).map(|_| space.sample(&mut rng)));
    let mut repeats = 0;
    for arch in &archs {
        let net = space.network(arch).unwrap();
        let duplicate = net.duplicates();
        let fused = net.fused_adds();
        let counted = |kind: &str, into_conv: bool| {
            (0..net.nodes.len())
                .filter(|&i| {
                    net.nodes[i].op.kind() == kind && !duplicate[i] && fused[i] == into_conv
                })
                .count()
        };
        let graph = rt.optimized_network(&net).unwrap();
        let nodes = &graph.graph.as_ref().unwrap().node;
        let ran = |op: &str| nodes.iter().filter(|n| n.op_type == op).count();
        let sums = nodes
            .iter()
            .filter(|n| {
                n.op_type == "Conv" && n.input.iter().filter(|i| !i.is_empty()).count() == 4
            })
            .count();
        assert_eq!(
            (
                counted("avgpool", false),
                counted("add", false),
                counted("add", true)
            ),
            (ran("AveragePool"), ran("Add"), sums),
            "{arch}: (pools, adds, adds fused into a conv) counted against ORT's graph"
        );
        repeats += duplicate.iter().filter(|&&d| d).count();
    }
    assert!(
        repeats >= 40,
        "{repeats} repeated ops in all: the check needs repeats to see"
    );
}
