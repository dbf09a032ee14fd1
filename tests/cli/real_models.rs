//! Real third-party ONNX files, not imitations: the ONNX Model Zoo networks the `onnx` wheel
//! ships (`scripts/setup.sh` installs it and exports `HWNAS_ONNX_ZOO`), and real
//! `torch.onnx.export` outputs of torchvision models (`tests/data/torchvision`, structure only,
//! written by `scripts/export_torchvision.py`, whose manifest records the versions).

use std::path::{Path, PathBuf};

use hwnas_onnx::import::{ImportOptions, Imported, import, read_model};

use crate::util::{fails, fit_uncalibrated, hwnas, ok, one_at_a_time, quick_cpu_profile, s};

const TORCHVISION: &str = "tests/data/torchvision";

fn manifest() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(TORCHVISION)
        .join("manifest.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn torchvision_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(TORCHVISION)
        .join(name)
}

/// The nine model-zoo networks of the `onnx` wheel (opset 9, IR 3, weights made by
/// ConstantOfShape nodes).
fn zoo_files() -> Vec<PathBuf> {
    let dir = std::env::var("HWNAS_ONNX_ZOO").unwrap_or_else(|_| {
        panic!("HWNAS_ONNX_ZOO is unset: run ./test.sh, which installs the onnx wheel and sets it")
    });
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("HWNAS_ONNX_ZOO={dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 9, "{files:?}");
    files
}

fn strict(path: &Path) -> Imported {
    let model = read_model(path).unwrap();
    let opts = ImportOptions {
        strict: true,
        ..ImportOptions::default()
    };
    import(&model, &path.display().to_string(), opts).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn torchvision_exports_map_completely_with_the_published_multiply_adds() {
    let manifest = manifest();
    let models = manifest["models"].as_array().unwrap();
    assert!(models.len() >= 15, "{}", models.len());
    for m in models {
        let file = m["file"].as_str().unwrap();
        let imported = strict(&torchvision_file(file));
        assert!(
            imported.unmapped.is_empty(),
            "{file}: {:?}",
            imported.unmapped
        );
        let res = m["resolution"].as_u64().unwrap() as u32;
        assert_eq!(
            (imported.network.input.h, imported.network.input.w),
            (res, res)
        );
        if m["resolution"] != m["published_resolution"] {
            continue;
        }
        // Our own exports (transformers) have no published count.
        let Some(published) = m["published_gmacs"].as_f64() else {
            continue;
        };
        let gmacs = imported.network.macs() as f64 / 1e9;
        assert!(
            (gmacs / published - 1.0).abs() <= 0.03,
            "{file}: {gmacs:.3} GMACs mapped vs {published:.3} published by torchvision"
        );
    }
}

#[test]
fn the_model_zoo_files_of_the_onnx_wheel_map_completely() {
    for path in zoo_files() {
        let m = strict(&path);
        assert!(m.unmapped.is_empty(), "{}", path.display());
        assert_eq!(m.opset, 9, "{}", path.display());
        // Every node that computes stands in some op: none was taken for a constant.
        let model = read_model(&path).unwrap();
        let covered: std::collections::HashSet<&String> = m.layers.iter().flatten().collect();
        for (i, n) in model.graph.as_ref().unwrap().node.iter().enumerate() {
            let computes = matches!(
                n.op_type.as_str(),
                "Conv" | "Gemm" | "LRN" | "MaxPool" | "AveragePool" | "Sum" | "Concat" | "Relu"
            );
            let name = if n.name.is_empty() {
                format!("{}#{i}", n.op_type)
            } else {
                n.name.clone()
            };
            assert!(
                !computes || covered.contains(&name),
                "{}: {name} ({}) is in no op",
                path.display(),
                n.op_type
            );
        }
    }
}

/// Profile a few ops of every real model on ONNX Runtime's CPU EP, then predict each model
/// (the rest of its ops from the regressor) and validate two end to end, structure-only files
/// with seeded weights among them.
#[test]
fn real_models_profile_predict_and_validate_on_onnx_runtime() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let device = quick_cpu_profile(dir.path());
    let mut files: Vec<PathBuf> = manifest()["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| torchvision_file(m["file"].as_str().unwrap()))
        .collect();
    files.extend(zoo_files());
    // Three ops per model: its first, middle and last, so every file's ops run on ORT.
    let mut keys = Vec::new();
    for f in &files {
        let ops: Vec<_> = strict(f)
            .network
            .ops()
            .filter(|o| !o.is_free())
            .copied()
            .collect();
        for op in [ops[0], ops[ops.len() / 2], ops[ops.len() - 1]] {
            keys.push(op.key());
        }
    }
    keys.sort();
    keys.dedup();
    let table = dir.path().join("real.csv");
    let op_args: Vec<&str> = keys.iter().flat_map(|k| ["--op", k.as_str()]).collect();
    ok(&[
        &["profile", "--device", s(&device), "--out", s(&table)][..],
        &op_args,
    ]
    .concat());
    let model = dir.path().join("real.model.json");
    fit_uncalibrated(&table, &model);
    let onnx_args: Vec<&str> = files.iter().flat_map(|f| ["--onnx", s(f)]).collect();
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        &["predict", "--model", s(&model), "--json"][..],
        &onnx_args,
    ]
    .concat()))
    .unwrap();
    for p in json.as_array().unwrap() {
        assert_eq!(p["partial"], false, "{}", p["onnx"]);
        assert!(p["latency_us"].as_f64().unwrap() > 0.0, "{}", p["onnx"]);
    }
    // End to end: a structure-only torch export and a model-zoo file.
    let small = [
        torchvision_file("mobilenet_v3_small-224.onnx"),
        zoo_files()
            .into_iter()
            .find(|f| s(f).contains("squeezenet"))
            .unwrap(),
    ];
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "validate",
        "--model",
        s(&model),
        "--device",
        s(&device),
        "--json",
        "--per-layer",
        "--onnx",
        s(&small[0]),
        "--onnx",
        s(&small[1]),
    ]))
    .unwrap();
    for r in report["models"].as_array().unwrap() {
        assert!(r["measured_us"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["unmapped_nodes"], 0, "{r}");
        // ORT's profile, node by node, lands on the file's layers (also the zoo's unnamed
        // nodes, which ORT's NCHWc rewrite renames after their outputs): what is left to the
        // runtime alone is the layout reorders it inserted, and views and gates it runs
        // apart (under 5% of the time).
        let per_layer = &r["per_layer"];
        let attributed: f64 = per_layer["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["profiled_us"].as_f64().unwrap())
            .sum();
        let own = per_layer["runtime_own_us"].as_object().unwrap();
        let computing: f64 = own
            .iter()
            .filter(|(k, _)| !k.starts_with("Reorder"))
            .map(|(_, v)| v.as_f64().unwrap())
            .sum();
        assert!(
            computing < 0.05 * attributed,
            "{own:?} beside {attributed} us"
        );
        if r["onnx"].as_str().unwrap().contains("squeezenet") {
            assert!(own.keys().all(|k| k.starts_with("Reorder")), "{own:?}");
        }
    }
}

#[test]
fn a_partly_mapped_real_model_is_refused_unless_allowed() {
    // Swin's shifted windows (Roll, window partitions, attention masks) and its channels-last
    // stages are no ops of the vocabulary.
    let swin = torchvision_file("partial/swin_t-224.onnx");
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.csv");
    let device = quick_cpu_profile(dir.path());
    let err = fails(&[
        "profile",
        "--device",
        s(&device),
        "--onnx",
        s(&swin),
        "--out",
        s(&table),
    ]);
    assert!(
        err.contains("swin_t-224.onnx")
            && err.contains("cannot be mapped")
            && err.contains("(LayerNormalization)")
            && err.contains("--allow-unmapped"),
        "{err}"
    );
    assert!(!table.exists(), "nothing is written for a refused model");
    // A model to predict with: any table will do (the mock device's, of a built-in space).
    ok(&[
        "profile",
        "--device",
        "device_profiles/mock.toml",
        "--space",
        "mbv3",
        "--out",
        s(&table),
    ]);
    let model = dir.path().join("m.json");
    fit_uncalibrated(&table, &model);
    for cmd in [
        vec!["predict", "--model", s(&model), "--onnx", s(&swin)],
        vec![
            "validate",
            "--model",
            s(&model),
            "--device",
            s(&device),
            "--onnx",
            s(&swin),
        ],
    ] {
        let out = hwnas(&cmd);
        assert!(!out.status.success(), "{cmd:?} must refuse a partial model");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("LayerNormalization") && err.contains("--allow-unmapped"),
            "{err}"
        );
    }
    let out = ok(&[
        "predict",
        "--model",
        s(&model),
        "--onnx",
        s(&swin),
        "--allow-unmapped",
    ]);
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("PARTIAL: ") && first.contains("% of the model's FLOPs"),
        "{out}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "predict",
        "--model",
        s(&model),
        "--onnx",
        s(&swin),
        "--allow-unmapped",
        "--json",
    ]))
    .unwrap();
    let p = &json[0];
    assert_eq!(p["partial"], true);
    assert!(p["unmapped_nodes"].as_u64().unwrap() > 10, "{p}");
    let share = p["unmapped_flops_share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 1.0, "{p}");
}

/// One calibration for files nobody calibrated on: the reference networks' ops profiled, the
/// networks timed end to end, and the calibration applied to a real export.
#[test]
fn the_reference_networks_calibrate_a_device_for_any_model() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let device = quick_cpu_profile(dir.path());
    let table = dir.path().join("reference.csv");
    ok(&[
        "profile",
        "--device",
        s(&device),
        "--reference",
        "--out",
        s(&table),
    ]);
    let model = dir.path().join("reference.model.json");
    let out = ok(&[
        "fit",
        "--table",
        s(&table),
        "--device",
        s(&device),
        "--calibrate-reference",
        "--out",
        s(&model),
    ]);
    assert!(out.contains("calibrated on 20 reference networks"), "{out}");
    let file = torchvision_file("mobilenet_v3_small-224.onnx");
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "predict",
        "--model",
        s(&model),
        "--onnx",
        s(&file),
        "--json",
    ]))
    .unwrap();
    assert_eq!(json[0]["calibrated"], true, "{json}");
    assert!(json[0]["latency_us"].as_f64().unwrap() > 0.0, "{json}");
    // Validated with three reference networks (rebuilt by name) measured again beside it.
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "validate",
        "--model",
        s(&model),
        "--device",
        s(&device),
        "--onnx",
        s(&file),
        "--repeat",
        "0",
        "--anchors",
        "3",
        "--json",
    ]))
    .unwrap();
    let sitting = &report["sitting"];
    assert_eq!(sitting["anchors"], 3, "{sitting}");
    assert!(
        (0.5..2.0).contains(&sitting["factor"].as_f64().unwrap()),
        "{sitting}"
    );
}
