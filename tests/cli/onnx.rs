//! Users' ONNX models: profile exactly their ops, predict layer by layer, validate end to end, calibrate.

use hwnas_core::table::LatencyTable;
use prost::Message;

use crate::util::{fails, fit_uncalibrated, hwnas, ok, one_at_a_time, quick_cpu_profile, s};

#[test]
fn onnx_models_profile_predict_validate_and_calibrate() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let device = quick_cpu_profile(dir.path());
    let file = |name: &str| dir.path().join(name);
    let mut models = Vec::new();
    for family in ["resnet18", "mobilenetv3", "shufflenetv2", "squeezenet"] {
        let path = file(&format!("{family}.onnx"));
        let out = ok(&[
            "export",
            "--family",
            family,
            "--resolution",
            "96",
            "--out",
            s(&path),
        ]);
        assert!(out.contains("ONNX nodes"), "{out}");
        models.push(path);
    }
    let onnx_args: Vec<&str> = models.iter().flat_map(|m| ["--onnx", s(m)]).collect();

    // Profile exactly the ops the models need.
    let table = file("zoo.csv");
    let out = ok(&[
        &["profile", "--device", s(&device), "--out", s(&table)],
        &onnx_args[..],
    ]
    .concat());
    assert!(out.contains("measured"), "{out}");
    let t = LatencyTable::read(&table).unwrap();
    assert!(
        t.meta("space").unwrap().starts_with("onnx:resnet18.onnx"),
        "{:?}",
        t.meta("space")
    );

    // Every layer of every model is in the table: nothing comes from the regressor.
    let out = ok(&["predict", "--table", s(&table), "--onnx", s(&models[1])]);
    assert!(
        out.contains("0 unmapped") && out.contains("0 predicted by the regressor"),
        "{out}"
    );
    assert!(
        out.contains("onnx nodes") && out.contains("HardSwish"),
        "{out}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "predict",
        "--table",
        s(&table),
        "--onnx",
        s(&models[2]),
        "--json",
    ]))
    .unwrap();
    let layers = json[0]["layers"].as_array().unwrap();
    assert!(
        layers
            .iter()
            .any(|l| l["op"].as_str().unwrap().starts_with("shuffle-"))
    );
    assert!(
        layers
            .iter()
            .all(|l| l["source"] == "table" && !l["onnx_nodes"].as_array().unwrap().is_empty())
    );
    let sum: f64 = layers.iter().map(|l| l["us"].as_f64().unwrap()).sum();
    assert!(
        (sum - json[0]["sum_us"].as_f64().unwrap()).abs() < 1e-6 * sum.max(1.0),
        "{json}"
    );

    // Calibrate on the four models measured end to end (a scale and a cost per op with
    // weights), then validate them. Four small models on a shared VM make a loose fit (in-sample
    // errors of 10-35% were seen, as the same model's time moved by up to 40% between runs); a
    // broken mapping or measurement would be off by far more than the bound.
    let model = file("zoo.model.json");
    let cal_args: Vec<&str> = models
        .iter()
        .flat_map(|m| ["--calibrate-onnx", s(m)])
        .collect();
    let out = ok(&[
        &[
            "fit",
            "--table",
            s(&table),
            "--device",
            s(&device),
            "--out",
            s(&model),
        ][..],
        &cal_args[..],
    ]
    .concat());
    assert!(out.contains("calibrated on 4 ONNX models"), "{out}");
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        &[
            "validate",
            "--model",
            s(&model),
            "--device",
            s(&device),
            "--json",
        ][..],
        &onnx_args[..],
    ]
    .concat()))
    .unwrap();
    assert_eq!(report["calibrated"], true);
    // The four calibration files, still there, were measured again among the validated ones.
    assert_eq!(report["sitting"]["anchors"], 4, "{}", report["sitting"]);
    for r in report["models"].as_array().unwrap() {
        assert!(r["measured_us"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["error"].as_f64().unwrap().abs() < 0.6, "{r}");
    }

    // Broken files and unmapped nodes.
    let bytes = std::fs::read(&models[0]).unwrap();
    std::fs::write(file("cut.onnx"), &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&[
        "predict",
        "--table",
        s(&table),
        "--onnx",
        s(&file("cut.onnx")),
    ]);
    assert!(
        err.contains("cut.onnx") && err.contains("not a valid ONNX model"),
        "{err}"
    );
    let mut m = hwnas_onnx::import::read_model(&models[0]).unwrap();
    let node = m
        .graph
        .as_mut()
        .unwrap()
        .node
        .iter_mut()
        .find(|n| n.op_type == "Relu")
        .unwrap();
    node.op_type = "Elu".into();
    std::fs::write(file("elu.onnx"), m.encode_to_vec()).unwrap();
    fit_uncalibrated(&table, &model);
    // A partly mapped model is refused, naming the node, unless --allow-unmapped.
    let elu = file("elu.onnx");
    let err = fails(&["predict", "--model", s(&model), "--onnx", s(&elu)]);
    assert!(
        err.contains("elu.onnx") && err.contains("(Elu)") && err.contains("--allow-unmapped"),
        "{err}"
    );
    let out = hwnas(&[
        "predict",
        "--model",
        s(&model),
        "--onnx",
        s(&elu),
        "--allow-unmapped",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("PARTIAL: ") && stdout.contains("1 unmapped nodes left out"),
        "{stdout}"
    );
    // The conv before the Elu now has no activation: not in the table, so from the regressor.
    assert!(stdout.contains("1 predicted by the regressor"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Elu x1"), "{stderr}");
    let err = fails(&[
        "predict",
        "--model",
        s(&model),
        "--onnx",
        s(&elu),
        "--strict",
    ]);
    assert!(err.contains("Elu") && err.contains("elu.onnx"), "{err}");
}
