//! Importing ONNX models: the CNN families of `onnx::zoo` (written as torch.onnx.export writes
//! them) map to the vocabulary completely, with the FLOPs of the published architectures, and
//! run on ONNX Runtime; broken and hostile files are clear errors.

use std::collections::BTreeMap;
use std::path::Path;

use hwnas_core::backend::Backend;
use hwnas_core::op::Tensor;
use hwnas_onnx::import::{ImportError, ImportOptions, Imported, import, read_model};
use hwnas_onnx::proto::{AttributeProto, NodeProto};
use hwnas_onnx::{ModelProto, zoo};
use hwnas_profiler::backend::ort::OrtRuntime;
use hwnas_profiler::device::OrtSettings;
use hwnas_profiler::measure::{MeasureConfig, measure_group};

fn imported(model: &ModelProto) -> Imported {
    import(model, "test.onnx", ImportOptions::default()).unwrap()
}

fn kinds(m: &Imported) -> BTreeMap<&'static str, usize> {
    let mut k = BTreeMap::new();
    for op in m.network.ops() {
        *k.entry(op.kind()).or_default() += 1;
    }
    k
}

fn gflops(m: &Imported) -> f64 {
    m.network.ops().map(|o| o.flops() as f64).sum::<f64>() / 1e9
}

#[test]
fn every_family_maps_completely_with_the_published_flops() {
    // Published multiply-adds at 224x224 (torchvision / the papers), x2 for FLOPs; the
    // vocabulary also counts element-wise work, so allow a few percent.
    for (family, published_gflops) in [
        ("resnet18", 2.0 * 1.814),
        ("mobilenetv2", 2.0 * 0.300),
        ("mobilenetv3", 2.0 * 0.217),
        ("shufflenetv2", 2.0 * 0.146),
        ("squeezenet", 2.0 * 0.349),
    ] {
        let model = zoo::build(family, 224).unwrap();
        let m = imported(&model);
        assert!(m.unmapped.is_empty(), "{family}: {:?}", m.unmapped);
        let g = gflops(&m);
        assert!(
            (g / published_gflops - 1.0).abs() < 0.06,
            "{family}: {g:.3} GFLOPs vs published {published_gflops:.3}"
        );
        // Every ONNX node is accounted for by an op, or is a view or constant.
        let covered: std::collections::BTreeSet<&String> = m.layers.iter().flatten().collect();
        assert!(covered.len() <= m.onnx_nodes, "{family}");
        assert_eq!(m.network.input, Tensor::new(1, 3, 224, 224));
    }
}

#[test]
fn layers_fuse_as_a_runtime_runs_them() {
    let m = imported(&zoo::build("resnet18", 224).unwrap());
    let k = kinds(&m);
    // 1 stem + 16 block convs + 3 projection shortcuts; BN and ReLU folded into them; the ReLU
    // after each residual add stands alone.
    assert_eq!(k["conv"], 20, "{k:?}");
    assert_eq!((k["add"], k["act"]), (8, 8), "{k:?}");
    assert_eq!((k["maxpool"], k["gap"], k["linear"]), (1, 1, 1), "{k:?}");
    let stem = &m.layers[0];
    assert_eq!(stem.len(), 3, "{stem:?}"); // Conv, BatchNormalization, Relu (the Pad is folded)
    assert!(
        m.network
            .ops()
            .next()
            .unwrap()
            .key()
            .starts_with("conv-in:1x3x224x224-out:64-k:7-s:2")
    );

    let k = kinds(&imported(&zoo::build("mobilenetv2", 224).unwrap()));
    assert_eq!((k["conv"], k["add"]), (52, 10), "{k:?}");
    assert!(!k.contains_key("act"), "every ReLU6 fused: {k:?}");

    let k = kinds(&imported(&zoo::build("mobilenetv3", 224).unwrap()));
    assert_eq!((k["scale"], k["gap"]), (8, 9), "SE blocks: {k:?}");
    // The SE's hard sigmoid fuses into its conv; the head's hard swish after a Gemm stands alone.
    assert_eq!(k["act"], 1, "{k:?}");

    let k = kinds(&imported(&zoo::build("shufflenetv2", 224).unwrap()));
    assert_eq!(
        (k["shuffle"], k["concat"], k["slice"]),
        (16, 16, 26),
        "{k:?}"
    );

    let m = imported(&zoo::build("squeezenet", 224).unwrap());
    let k = kinds(&m);
    assert_eq!((k["concat"], k["softmax"]), (8, 1), "{k:?}");
    // At 224 every ceil-mode pool's windows fit exactly; at 100 two pools have a partial last
    // window (24 -> 12 instead of 11, 12 -> 6 instead of 5), and are noted.
    assert!(m.notes.is_empty(), "{:?}", m.notes);
    let m = imported(&zoo::build("squeezenet", 100).unwrap());
    assert_eq!(m.notes.len(), 2, "{:?}", m.notes);
    assert!(m.notes[0].contains("partial window"), "{:?}", m.notes);
}

#[test]
fn the_families_run_on_onnx_runtime() {
    let mut rt = OrtRuntime::new(&OrtSettings::default(), None)
        .unwrap_or_else(|e| panic!("ONNX Runtime is required ({e}); run ./test.sh"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = MeasureConfig {
        warmup_runs: 1,
        warmup_ms: 0.0,
        min_runs: 2,
        max_ms: 50.0,
        ..MeasureConfig::default()
    };
    for family in zoo::FAMILIES {
        let path = dir.path().join(format!("{family}.onnx"));
        std::fs::write(&path, zoo::build(family, 96).unwrap().to_bytes()).unwrap();
        let m = imported(&read_model(&path).unwrap());
        let mut k = vec![rt.prepare_file(&path, m.network.input).unwrap()];
        let stats = measure_group(&mut k, &cfg, None, None).remove(0).unwrap();
        assert!(stats.wall.median > 0.0, "{family}");
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn broken_and_hostile_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = zoo::build("mobilenetv2", 64).unwrap().to_bytes();
    let msg = |r: Result<ModelProto, ImportError>| r.expect_err("must fail").to_string();

    // Truncated anywhere, random bytes, empty: errors that name the file, never a panic.
    for cut in [1, 10, 100, good.len() / 3, good.len() - 1] {
        let p = write(dir.path(), "cut.onnx", &good[..cut]);
        let e = msg(read_model(&p));
        assert!(e.contains("cut.onnx"), "{e}");
    }
    let mut rng = hwnas_core::rng::SplitMix64::new(9);
    for _ in 0..50 {
        let len = rng.below(4096);
        let noise: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let p = write(dir.path(), "noise.onnx", &noise);
        if let Ok(model) = read_model(&p) {
            // Whatever decodes must map or fail cleanly.
            let _ = import(&model, "noise.onnx", ImportOptions::default());
        }
    }
    let e = msg(read_model(&write(dir.path(), "empty.onnx", b"")));
    assert!(e.contains("no graph"), "{e}");
    assert!(msg(read_model(&dir.path().join("missing.onnx"))).contains("missing.onnx"));

    // A length prefix claiming 2^62 bytes: prost refuses it without allocating.
    let hostile = [0x3a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f];
    let e = msg(read_model(&write(dir.path(), "hostile.onnx", &hostile)));
    assert!(e.contains("hostile.onnx"), "{e}");

    let mut model = zoo::build("resnet18", 64).unwrap();
    let graph = model.graph.as_mut().unwrap();
    // A node reading what nothing defines.
    graph.node[5].input[0] = "ghost".into();
    let e = import(&model, "m.onnx", ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("ghost") && e.contains("m.onnx"), "{e}");

    // An absurd input size.
    let mut model = zoo::build("resnet18", 64).unwrap();
    let dims = &mut model.graph.as_mut().unwrap().input[0]
        .r#type
        .as_mut()
        .unwrap()
        .tensor_type
        .as_mut()
        .unwrap()
        .shape
        .as_mut()
        .unwrap()
        .dim;
    dims[2].dim_value = 1 << 20;
    dims[3].dim_value = 1 << 20;
    let e = import(&model, "big.onnx", ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("elements"), "{e}");
}

#[test]
fn an_unknown_op_is_reported_skipped_or_fatal_with_strict() {
    let mut model = zoo::build("mobilenetv2", 64).unwrap();
    let graph = model.graph.as_mut().unwrap();
    // Turn the first ReLU6 into an Elu: element-wise, so the rest still maps.
    let clip = graph.node.iter().position(|n| n.op_type == "Clip").unwrap();
    let x = graph.node[clip].input[0].clone();
    graph.node[clip] = NodeProto {
        input: vec![x],
        output: graph.node[clip].output.clone(),
        name: "elu".into(),
        op_type: "Elu".into(),
        attribute: vec![AttributeProto::float("alpha", 0.1)],
        ..Default::default()
    };
    let m = import(&model, "m.onnx", ImportOptions::default()).unwrap();
    assert_eq!(m.unmapped.len(), 1);
    assert_eq!(m.unmapped_counts(), vec![("Elu".to_string(), 1)]);
    assert_eq!(kinds(&m)["conv"], 52, "the graph after it still maps");
    let strict = ImportOptions {
        strict: true,
        ..ImportOptions::default()
    };
    let e = import(&model, "m.onnx", strict).unwrap_err().to_string();
    assert!(
        e.contains("elu") && e.contains("Elu") && e.contains("--strict"),
        "{e}"
    );
}

#[test]
fn every_opset_from_13_to_21_maps_and_runs() {
    let rt = OrtRuntime::new(&OrtSettings::default(), None)
        .unwrap_or_else(|e| panic!("ONNX Runtime is required ({e}); run ./test.sh"));
    let input = Tensor::new(1, 3, 48, 48);
    let x = vec![0.5f32; input.numel() as usize];
    for opset in [13, 17, 18, 21] {
        for family in zoo::FAMILIES {
            let model = zoo::build_at_opset(family, 48, opset).unwrap();
            let m = imported(&model);
            assert!(
                m.unmapped.is_empty(),
                "{family} at opset {opset}: {:?}",
                m.unmapped
            );
            assert_eq!(m.opset, opset);
            let y = rt
                .infer_model(&model, input, &x)
                .unwrap_or_else(|e| panic!("{family} at opset {opset}: {e}"));
            assert_eq!(y.len(), 1000, "{family} at opset {opset}");
        }
    }
    assert!(zoo::build_at_opset("resnet18", 48, 12).is_err());
}

#[test]
fn weights_in_external_data_are_not_needed_to_map_and_ort_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = zoo::build("mobilenetv2", 64).unwrap();
    let embedded = imported(&model);
    // Move every large initializer to weights.bin, as torch.onnx.export does past 2 GiB.
    let mut blob = Vec::new();
    for t in &mut model.graph.as_mut().unwrap().initializer {
        if t.raw_data.len() < 256 {
            continue;
        }
        let entry = |k: &str, v: String| hwnas_onnx::proto::StringStringEntryProto {
            key: k.into(),
            value: v,
        };
        t.external_data = vec![
            entry("location", "weights.bin".into()),
            entry("offset", blob.len().to_string()),
            entry("length", t.raw_data.len().to_string()),
        ];
        t.data_location = 1;
        blob.append(&mut t.raw_data);
    }
    std::fs::write(dir.path().join("weights.bin"), &blob).unwrap();
    let path = dir.path().join("external.onnx");
    std::fs::write(&path, model.to_bytes()).unwrap();
    assert!(
        std::fs::metadata(&path).unwrap().len() < 100_000,
        "the weights left the model"
    );

    let m = imported(&read_model(&path).unwrap());
    let keys = |m: &Imported| m.network.ops().map(|o| o.key()).collect::<Vec<_>>();
    assert_eq!(keys(&m), keys(&embedded));
    let mut rt = OrtRuntime::new(&OrtSettings::default(), None)
        .unwrap_or_else(|e| panic!("ONNX Runtime is required ({e}); run ./test.sh"));
    let cfg = MeasureConfig {
        warmup_runs: 1,
        warmup_ms: 0.0,
        min_runs: 2,
        max_ms: 20.0,
        ..MeasureConfig::default()
    };
    let mut k = vec![rt.prepare_file(&path, m.network.input).unwrap()];
    assert!(measure_group(&mut k, &cfg, None, None).remove(0).is_ok());
}

#[test]
fn tensorflow_same_padding_maps_where_it_is_symmetric_and_is_refused_where_not() {
    // MobileNetV2 at 64 px: its first conv is 3x3 stride 2 on an even input, the second a 3x3
    // depthwise at stride 1. Written with auto_pad instead of pads, as TensorFlow exports do.
    let with_same_padding = |conv: usize| {
        let mut model = zoo::build("mobilenetv2", 64).unwrap();
        let graph = model.graph.as_mut().unwrap();
        let i = (0..graph.node.len())
            .filter(|&i| graph.node[i].op_type == "Conv")
            .nth(conv)
            .unwrap();
        let node = &mut graph.node[i];
        node.attribute.retain(|a| a.name != "pads");
        node.attribute
            .push(AttributeProto::string("auto_pad", "SAME_UPPER"));
        import(&model, "same.onnx", ImportOptions::default())
    };
    let explicit: Vec<String> = imported(&zoo::build("mobilenetv2", 64).unwrap())
        .network
        .ops()
        .map(|o| o.key())
        .collect();
    // Stride 1: one pixel on every side, the same ops as the explicit pads.
    let m = with_same_padding(1).unwrap();
    assert!(m.unmapped.is_empty(), "{:?}", m.unmapped);
    let keys: Vec<String> = m.network.ops().map(|o| o.key()).collect();
    assert_eq!(keys, explicit);
    // Stride 2 on 64 px: one pixel in all, at the bottom and right only: not an op hwnas has,
    // and the stem, so nothing after it maps either; the error lists the nodes.
    let e = with_same_padding(0).unwrap_err().to_string();
    assert!(
        e.contains("/conv_2/Conv (Conv): padding [0, 0, 1, 1]"),
        "{e}"
    );
}

#[test]
fn every_op_model_hwnas_builds_imports_back_to_the_same_op() {
    // What profile times must be what import maps: the new kinds included.
    for key in [
        "conv-in:1x8x12x12-out:8-k:3-s:1-g:1-d:2-pre:none-act:none",
        "conv-in:1x8x9x9-out:12-k:1x7-s:1-g:1-pre:none-act:relu",
        "conv-in:1x8x9x9-out:12-k:7x1-s:2-g:1-pre:none-act:tanh",
        "act-in:1x16x4x4-act:leakyrelu-bn:1",
        "lrn-in:1x16x5x5-size:5",
        "resize-in:1x8x5x7-to:10x14-mode:nearest",
        "resize-in:1x8x5x7-to:16x9-mode:linear",
        "convt-in:1x8x5x5-out:6-k:4-s:2-p:1-g:1",
        "convt-in:2x8x4x6-out:8-k:3-s:1-p:0-g:2",
        // The one transformer op that reads an image (the others read tokens, and a file's
        // input is an image: a whole ViT imports back in tests/cli/transformers.rs).
        "patch-in:1x3x32x32-out:24-p:8-cls:1",
        "patch-in:2x3x16x24-out:8-p:4-cls:0",
    ] {
        let op: hwnas_core::op::Op = key.parse().unwrap();
        let m = imported(&hwnas_onnx::op_model(&op).unwrap());
        assert!(m.unmapped.is_empty(), "{key}: {:?}", m.unmapped);
        let keys: Vec<String> = m.network.ops().map(|o| o.key()).collect();
        assert_eq!(keys, [key], "{key}");
    }
}
