//! Transformers: real `torch.onnx.export` files of ViTs (torchvision's vit_b_16, DeiT-Tiny's
//! configuration at five opsets and both exporters, a hybrid CNN with attention, torch's own
//! post-norm nn.TransformerEncoder; written by
//! `scripts/export_torchvision.py`, structure only) mapped op for op, and the built-in `vit`
//! space through profile, fit, validate, predict, lut and search on ONNX Runtime.

use std::path::{Path, PathBuf};

use hwnas_core::op::Op;
use hwnas_onnx::import::{ImportOptions, Imported, import, read_model};

use crate::util::{ok, one_at_a_time, quick_cpu_profile, read_json, s};

fn export(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/torchvision")
        .join(name)
}

fn strict(path: &Path) -> Imported {
    let model = read_model(path).unwrap();
    let opts = ImportOptions {
        strict: true,
        ..ImportOptions::default()
    };
    import(&model, &path.display().to_string(), opts).unwrap_or_else(|e| panic!("{e}"))
}

fn keys(imported: &Imported) -> Vec<String> {
    imported.network.ops().map(Op::key).collect()
}

fn count(keys: &[String], key: &str) -> usize {
    keys.iter().filter(|k| *k == key).count()
}

/// torchvision's ConvNeXt-Tiny: its blocks (depthwise 7x7, then LayerNorm and the MLP
/// channels-last, layer scale, residual) and its channel LayerNorms, op for op, with
/// torchvision's parameter count.
#[test]
fn a_convnext_export_maps_to_its_blocks() {
    let convnext = strict(&export("convnext_tiny-224.onnx"));
    let k = keys(&convnext);
    assert_eq!(
        k[..2],
        [
            "conv-in:1x3x224x224-out:96-k:4-s:4-g:1-p:0-pre:none-act:none",
            "ln2d-in:1x96x56x56"
        ]
    );
    for (c, side, blocks) in [(96, 56, 3), (192, 28, 3), (384, 14, 9), (768, 7, 3)] {
        let block = format!("cnblock-in:1x{c}x{side}x{side}-hidden:{}-k:7", 4 * c);
        assert_eq!(count(&k, &block), blocks, "{k:?}");
    }
    assert_eq!(
        k.iter().filter(|k| k.starts_with("ln2d-")).count(),
        5,
        "{k:?}"
    );
    assert_eq!(
        k[k.len() - 3..],
        [
            "gap-in:1x768x7x7",
            "ln2d-in:1x768x1x1",
            "linear-in:1x768x1x1-out:1000"
        ]
    );
    assert_eq!(k.len(), 2 + 18 + 3 * 2 + 3, "{k:?}");
    // torchvision: 28,589,128 parameters.
    assert_eq!(convnext.network.params(), 28_589_128);
}

#[test]
fn every_form_of_a_vit_export_maps_to_the_same_ops() {
    let tiny = keys(&strict(&export("vit_tiny-224.onnx")));
    assert_eq!(tiny[0], "patch-in:1x3x224x224-out:192-p:16-cls:1");
    assert_eq!(count(&tiny, "encoder-in:1x197x192-h:3-hd:64-mlp:768"), 12);
    assert_eq!(
        tiny[13..],
        [
            "ln-in:1x197x192",
            "cls-in:1x197x192",
            "linear-in:1x192x1x1-out:1000"
        ]
    );
    // Opset 16 writes every LayerNorm out (ReduceMean ... Div, Mul, Add); opset 20 writes GELU
    // as one node; the dynamo exporter (opsets 18 and 21) writes attention with fewer,
    // different nodes: the same ops whichever.
    for variant in [
        "vit_tiny-opset16-torchscript-224.onnx",
        "vit_tiny-opset20-torchscript-224.onnx",
        "vit_tiny-opset18-dynamo-224.onnx",
        "vit_tiny-opset21-dynamo-224.onnx",
    ] {
        let imported = strict(&export(&format!("variants/{variant}")));
        assert_eq!(keys(&imported), tiny, "{variant}");
    }

    let vit_b = strict(&export("vit_b_16-224.onnx"));
    let b = keys(&vit_b);
    assert_eq!(b.len(), 1 + 12 + 3, "{b:?}");
    assert_eq!(count(&b, "encoder-in:1x197x768-h:12-hd:64-mlp:3072"), 12);
    // torchvision publishes 17.564 GFLOPS (multiply-adds) for vit_b_16.
    let gmacs = vit_b.network.macs() as f64 / 1e9;
    assert!((gmacs / 17.564 - 1.0).abs() < 0.01, "{gmacs}");

    // The space's own networks, as hwnas writes them (timm's attention), map back to
    // themselves.
    let vit = hwnas_search::space::builtin("vit").unwrap();
    let deit = format!("e192-d12-h{}-m{}", "3".repeat(14), "8".repeat(14));
    let net = vit.network(&deit).unwrap();
    let written = hwnas_onnx::NetworkModel::to_onnx(&net).unwrap();
    let back = import(&written, "deit", ImportOptions::default()).unwrap();
    assert!(back.unmapped.is_empty(), "{:?}", back.unmapped);
    assert_eq!(keys(&back), tiny);

    // The hybrid: conv stem, its 14x14 map as tokens plus a position embedding (an add of its
    // own), four blocks of 4 heads of 48, LayerNorm, the mean token, the classifier.
    let hybrid = keys(&strict(&export("hybrid_vit-224.onnx")));
    assert!(
        hybrid[..4].iter().all(|k| k.starts_with("conv-")),
        "{hybrid:?}"
    );
    assert_eq!(hybrid[4], "tokens-in:1x192x14x14");
    assert_eq!(hybrid[5], "add-in:1x196x192");
    assert_eq!(count(&hybrid, "encoder-in:1x196x192-h:4-hd:48-mlp:384"), 4);
    assert_eq!(
        hybrid[10..],
        [
            "ln-in:1x196x192",
            "tokmean-in:1x196x192",
            "linear-in:1x192x1x1-out:1000"
        ]
    );

    // torch's own nn.TransformerEncoder, post-norm by default (x = LN(x + f(x))): each layer
    // is its attention and MLP with their adds, each add followed by its LayerNorm. Its first
    // attention reads the feature map before `transpose(1, 2)` (torch merges the two
    // transposes), the residual reads the tokens.
    let post = strict(&export("post_norm_vit-224.onnx"));
    let p = keys(&post);
    assert_eq!(
        p[..2],
        [
            "conv-in:1x3x224x224-out:192-k:16-s:16-g:1-p:0-pre:none-act:none",
            "tokens-in:1x192x14x14"
        ]
    );
    let layer = [
        "mhsa-in:1x196x192-h:3-hd:64",
        "add-in:1x196x192",
        "ln-in:1x196x192",
        "mlp-in:1x196x192-hidden:768",
        "add-in:1x196x192",
        "ln-in:1x196x192",
    ];
    assert_eq!(p[2..26], layer.repeat(4), "{p:?}");
    assert_eq!(
        p[26..],
        ["tokmean-in:1x196x192", "linear-in:1x192x1x1-out:1000"]
    );
    // Every node belongs to one op: the patch's transpose is not claimed again by the first
    // attention that starts beside it.
    let mut names: Vec<&String> = post.layers.iter().flatten().collect();
    let all = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all, "a node mapped twice");
}

#[test]
fn the_vit_space_runs_every_command_on_onnx_runtime() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let device = quick_cpu_profile(dir.path());
    let listed = ok(&["space", "ops", "--space", "vit", "--keys"]);
    assert_eq!(listed.lines().count(), 24, "{listed}");
    assert!(listed.contains("encoder-in:1x197x240-h:4-hd:64-mlp:960"));

    let table = dir.path().join("vit.csv");
    ok(&[
        "profile",
        "--device",
        s(&device),
        "--space",
        "vit",
        "--out",
        s(&table),
    ]);
    let model = dir.path().join("vit.model.json");
    ok(&[
        "fit",
        "--table",
        s(&table),
        "--device",
        s(&device),
        "--calibrate",
        "8",
        "--out",
        s(&model),
    ]);
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "validate",
        "--model",
        s(&model),
        "--device",
        s(&device),
        "--space",
        "vit",
        "--samples",
        "8",
        "--repeat",
        "4",
        "--anchors",
        "2",
        "--max-rounds",
        "2",
        "--out",
        s(&dir.path().join("v")),
        "--json",
    ]))
    .unwrap();
    // Eight networks on a quick profile: a sanity bound; the README has the 30-network runs.
    let acc = &v["accuracy"];
    assert!(acc["within_10"].as_f64().unwrap() >= 0.5, "{acc}");
    assert!(acc["bias"].as_f64().unwrap().abs() < 0.15, "{acc}");
    // Networks this close are measured again while one round's noise would reorder them; how
    // many rounds depends on the day, what they claim must hold.
    let r = &v["rounds"];
    let f = |k: &str| r[k].as_f64().unwrap();
    let rounds = f("rounds");
    assert!((1.0..=2.0).contains(&rounds), "{r}");
    assert!(
        (f("noise_pooled") - f("noise_one_round") / rounds.sqrt()).abs() < 1e-12,
        "{r}"
    );
    assert_eq!(
        rounds > 1.0,
        f("expected_tau_one_round") < f("target_tau"),
        "{r}"
    );
    // The first round's own score beside the pooled one: the same after one round.
    let one = &r["accuracy_one_round"];
    assert_eq!(one["n"], acc["n"], "{r}");
    assert_eq!(rounds == 1.0, one == acc, "{r} {acc}");

    // Real exports predicted (ops the table lacks come from the regressor: all of ConvNeXt's),
    // every node mapped.
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "predict",
        "--model",
        s(&model),
        "--json",
        "--onnx",
        s(&export("vit_tiny-224.onnx")),
        "--onnx",
        s(&export("hybrid_vit-224.onnx")),
        "--onnx",
        s(&export("convnext_tiny-224.onnx")),
    ]))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3, "{json}");
    for p in json.as_array().unwrap() {
        assert_eq!(p["partial"], false, "{p}");
        assert_eq!(p["unmapped_nodes"], 0, "{p}");
        assert!(p["latency_us"].as_f64().unwrap() > 1000.0, "{p}");
    }

    // A real export run end to end, with two of the model's calibration networks (rebuilt
    // from the vit space) measured again beside it as anchors.
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "validate",
        "--model",
        s(&model),
        "--device",
        s(&device),
        "--onnx",
        s(&export("vit_tiny-224.onnx")),
        "--repeat",
        "0",
        "--anchors",
        "2",
        "--json",
    ]))
    .unwrap();
    assert_eq!(report["sitting"]["anchors"], 2, "{}", report["sitting"]);
    let m = &report["models"][0];
    assert_eq!(m["unmapped_nodes"], 0, "{m}");
    assert!(m["measured_us"].as_f64().unwrap() > 1000.0, "{m}");
    // DeiT-Tiny is a network of the space: its prediction comes from the table alone.
    assert_eq!(m["ops_from_regressor"], 0, "{m}");

    let lut = dir.path().join("vit.lut.json");
    ok(&[
        "lut",
        "export",
        "--model",
        s(&model),
        "--space",
        "vit",
        "--out",
        s(&lut),
    ]);
    let found = dir.path().join("found");
    ok(&[
        "search",
        "--space",
        "vit",
        "--model",
        s(&model),
        "--accuracy",
        "proxy",
        "--max-latency-ms",
        "60",
        "--population",
        "16",
        "--max-evaluations",
        "160",
        "--out",
        s(&found),
    ]);
    let front = read_json(&found.join("front.json"));
    let members = front["front"].as_array().unwrap();
    assert!(!members.is_empty(), "{front}");
    for m in members {
        let latency = m["latency"].as_object().unwrap().values().next().unwrap();
        assert!(latency["ms"].as_f64().unwrap() <= 60.0, "{m}");
        assert!(m["arch"].as_str().unwrap().starts_with('e'), "{m}");
    }
}
