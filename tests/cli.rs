//! The `hwnas` binary end to end: real ONNX Runtime on nb201, the mock device on mbv3, resume,
//! and the errors a user meets. Needs ORT (`./test.sh` installs it and sets ORT_DYLIB_PATH).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hwnas_core::table::LatencyTable;
use hwnas_core::{Op, Tensor};
use hwnas_onnx::{self as onnx, ModelProto, reference};
use prost::Message;

/// The tests here measure on the real CPU; one at a time, so that none measures while another
/// loads the machine (two cores: a parallel test halves what a measurement sees).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn hwnas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hwnas"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run hwnas")
}

fn ok(args: &[&str]) -> String {
    let out = hwnas(args);
    assert!(
        out.status.success(),
        "hwnas {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(args: &[&str]) -> String {
    let out = hwnas(args);
    assert!(!out.status.success(), "hwnas {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A quick CPU profile: the real ORT CPU EP with a short measurement, for tests.
fn quick_cpu_profile(dir: &Path) -> PathBuf {
    let path = dir.join("cpu-quick.toml");
    std::fs::write(
        &path,
        "name = \"cpu-quick\"\nbackend = \"ort\"\n[measure]\nmin_runs = 10\nmax_ms = 50.0\ntarget_ci = 0.05\nround_ms = 5.0\n",
    )
    .unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn devices_lists_the_cpu_provider() {
    let _serial = one_at_a_time();
    let out = ok(&["devices"]);
    assert!(out.contains("CPUExecutionProvider"), "{out}");
    assert!(out.contains("version"), "{out}");
}

#[test]
fn space_ops_counts_nb201() {
    let _serial = one_at_a_time();
    let out = ok(&["space", "ops", "--space", "nb201"]);
    assert!(out.contains("nb201: 25 distinct ops"), "{out}");
    assert!(out.contains("22 to profile"), "{out}");
    let keys = ok(&["space", "ops", "--space", "mbv3", "--keys"]);
    assert_eq!(keys.lines().count(), 450);
    for line in keys.lines() {
        Op::from_key(line).unwrap();
    }
    assert!(fails(&["space", "ops", "--space", "darts"]).contains("unknown search space `darts`"));
}

#[test]
fn profile_nb201_on_ort_then_resume_after_a_crash() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let device = quick_cpu_profile(dir.path());
    let table_path = dir.path().join("cpu-nb201.csv");
    let args = [
        "profile",
        "--device",
        s(&device),
        "--space",
        "nb201",
        "--out",
        s(&table_path),
    ];
    let out = ok(&args);
    assert!(out.contains("measured 22 ops"), "{out}");

    let table = LatencyTable::read(&table_path).unwrap();
    assert_eq!(table.rows.len(), 22);
    assert_eq!(table.meta("device"), Some("cpu-quick"));
    assert_eq!(
        table.meta("execution_provider"),
        Some("CPUExecutionProvider")
    );
    assert!(
        table
            .meta("ort_version")
            .is_some_and(|v| v.starts_with("1."))
    );
    assert!(table.meta("created").is_some() && table.meta("cpu").is_some());
    for row in &table.rows {
        assert_eq!(row.provider, "CPUExecutionProvider", "{}", row.key);
        // Tiny ops (a 64x10 linear layer) can cost less than the run overhead resolves: ~0.
        assert!(
            row.median_us >= 0.0 && row.p10_us <= row.median_us && row.median_us <= row.p90_us,
            "{row:?}"
        );
        assert!(row.wall_us > 0.0, "{}", row.key);
        assert!(row.runs >= 10, "{}", row.key);
        assert!(
            row.median_us <= row.wall_us,
            "{}: kernel time exceeds the call",
            row.key
        );
        assert_eq!(row.flops, row.op().unwrap().flops());
    }
    // More FLOPs, more time: the 3x3 conv costs more than the 1x1 conv on the same tensor.
    let t = |k: &str| table.get(k).unwrap().median_us;
    assert!(
        t("conv-in:1x16x32x32-out:16-k:3-s:1-g:1-pre:relu-act:none")
            > t("conv-in:1x16x32x32-out:16-k:1-s:1-g:1-pre:relu-act:none")
    );

    // Resume on a complete table measures nothing and keeps every row.
    let out = ok(&[&args[..], &["--resume"]].concat());
    assert!(out.contains("nothing to measure"), "{out}");
    assert_eq!(LatencyTable::read(&table_path).unwrap().rows, table.rows);

    // A crash mid-write: keep 5 rows and half of the 6th, then resume.
    let text = std::fs::read_to_string(&table_path).unwrap();
    let header = text.lines().take_while(|l| l.starts_with('#')).count() + 1;
    let lines: Vec<&str> = text.lines().collect();
    let torn = format!(
        "{}\n{}",
        lines[..header + 5].join("\n"),
        &lines[header + 5][..20]
    );
    std::fs::write(&table_path, torn).unwrap();
    let out = ok(&[&args[..], &["--resume"]].concat());
    assert!(out.contains("measured 17 ops"), "{out}");
    let resumed = LatencyTable::read(&table_path).unwrap();
    assert_eq!(resumed.rows.len(), 22);
    assert_eq!(
        resumed.rows[..5],
        table.rows[..5],
        "rows measured before the crash are kept"
    );
    let mut keys: Vec<&str> = resumed.rows.iter().map(|r| r.key.as_str()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 22, "no row is duplicated");

    // Fit a model calibrated on a few networks, validate it on others, predict with it.
    let model = dir.path().join("m.json");
    let fitted = ok(&[
        "fit",
        "--table",
        s(&table_path),
        "--device",
        s(&device),
        "--out",
        s(&model),
        "--calibrate",
        "12",
    ]);
    assert!(
        fitted.contains("calibrated on 12 nb201 networks"),
        "{fitted}"
    );
    let prefix = dir.path().join("val");
    let report = ok(&[
        "validate",
        "--model",
        s(&model),
        "--device",
        s(&device),
        "--samples",
        "12",
        "--repeat",
        "3",
        "--out",
        s(&prefix),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["samples"], 12);
    // Loose bounds that a noisy machine cannot break, yet a broken pipeline would: networks
    // from 0.2 to 4 ms must come out in the right order and roughly the right size.
    let acc = &report["accuracy"];
    assert!(acc["kendall_tau"].as_f64().unwrap() > 0.6, "{acc}");
    assert!(acc["rmspe"].as_f64().unwrap() < 0.35, "{acc}");
    assert!(dir.path().join("val.svg").exists() && dir.path().join("val.json").exists());
    let arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|";
    let out = ok(&[
        "predict",
        "--model",
        s(&model),
        "--space",
        "nb201",
        "--arch",
        arch,
        "--json",
    ]);
    let p: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (lat, lo, hi) = (
        p[0]["latency_us"].as_f64().unwrap(),
        p[0]["low_us"].as_f64().unwrap(),
        p[0]["high_us"].as_f64().unwrap(),
    );
    assert!(lo < lat && lat < hi, "{p}");
    search_nb201_with_the_model(dir.path(), &model, &device);

    std::fs::write(
        &model,
        "{\"schema\": \"hwnas-latency-model/2\", \"ops\": 3}",
    )
    .unwrap();
    let err = fails(&[
        "predict",
        "--model",
        s(&model),
        "--space",
        "nb201",
        "--arch",
        arch,
    ]);
    assert!(
        err.contains("m.json") && err.contains("not a valid"),
        "{err}"
    );

    let shown = ok(&["table", "show", s(&table_path)]);
    assert!(
        shown.contains("22 ops") && shown.contains("slowest"),
        "{shown}"
    );

    // Every nb201 network composes from the table; more 3x3 convs, more latency.
    let predict = |arch: &str| -> f64 {
        let out = ok(&[
            "predict",
            "--table",
            s(&table_path),
            "--space",
            "nb201",
            "--arch",
            arch,
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["latency_us"].as_f64().unwrap()
    };
    let skips = predict(
        "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    );
    let convs = predict(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    );
    assert!(skips > 0.0 && convs > 3.0 * skips, "{skips} vs {convs}");
}

#[test]
fn mock_profiles_are_deterministic() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let out = dir.path().join(name);
        ok(&[
            "profile",
            "--device",
            "device_profiles/mock.toml",
            "--space",
            "mbv3",
            "--out",
            s(&out),
        ]);
        LatencyTable::read(&out).unwrap().rows
    };
    let (a, b) = (run("a.csv"), run("b.csv"));
    assert_eq!(a.len(), 450);
    assert_eq!(a, b);
    assert!(a.iter().all(|r| r.provider == "mock"));
}

#[test]
fn bad_input_names_what_to_fix() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.csv");
    let profile = |device: &str, what: &[&str]| {
        fails(&[&["profile", "--device", device, "--out", s(&out)], what].concat())
    };
    let nb201: &[&str] = &["--space", "nb201"];

    let bad_toml = dir.path().join("bad.toml");
    let toml =
        "name = \"x\"\nbackend = \"ort\"\n[ort]\nexecution_provider = \"cpu\"\nthreads = 4\n";
    std::fs::write(&bad_toml, toml).unwrap();
    let err = profile(s(&bad_toml), nb201);
    assert!(err.contains("bad.toml") && err.contains("threads"), "{err}");

    let missing = profile("nope.toml", nb201);
    assert!(missing.contains("nope.toml"), "{missing}");

    let err = profile("device_profiles/mock.toml", &["--op", "conv-in:1x3x8x8"]);
    let wanted = err.contains("--op") && err.contains("missing field `out`");
    assert!(wanted, "{err}");

    let npu = dir.path().join("npu.toml");
    let toml = "name = \"npu\"\nbackend = \"ort\"\n[ort]\nexecution_provider = \"qnn\"\n";
    std::fs::write(&npu, toml).unwrap();
    let err = profile(s(&npu), nb201);
    let wanted = err.contains("QNNExecutionProvider") && err.contains("CPUExecutionProvider");
    assert!(wanted, "{err}");
    assert!(
        !out.exists(),
        "nothing is written when the device is unusable"
    );

    // Resuming a table from another device is refused, and the table is left as it was.
    ok(&[
        "profile",
        "--device",
        "device_profiles/mock.toml",
        "--op",
        "add-in:1x8x4x4",
        "--out",
        s(&out),
    ]);
    let before = std::fs::read(&out).unwrap();
    let device = quick_cpu_profile(dir.path());
    let err = fails(&[
        "profile",
        "--device",
        s(&device),
        "--op",
        "add-in:1x8x4x4",
        "--out",
        s(&out),
        "--resume",
    ]);
    assert!(err.contains("--resume") && err.contains("device"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), before);

    // A table that lacks ops says which and how to profile them.
    let err = fails(&[
        "predict",
        "--table",
        s(&out),
        "--space",
        "nb201",
        "--arch",
        "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    ]);
    assert!(
        err.contains("not in the latency table") && err.contains("hwnas profile --op"),
        "{err}"
    );
    let err = fails(&[
        "predict",
        "--table",
        s(&out),
        "--space",
        "nb201",
        "--arch",
        "|conv~0|",
    ]);
    assert!(err.contains("invalid nb201 architecture"), "{err}");

    let garbage = dir.path().join("garbage.csv");
    std::fs::write(&garbage, "# hwnas-table: 1\nkey,kind\nconv,1\n").unwrap();
    let err = fails(&["table", "show", s(&garbage)]);
    assert!(
        err.contains("garbage.csv") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn export_op_writes_a_model_that_runs() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("op.onnx");
    let key = "mbconv-in:1x16x8x8-out:24-e:4-k:5-s:2-se:1-act:hswish-res:0";
    ok(&["export-op", key, "--out", s(&path)]);
    let model = ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    assert_eq!(model.doc_string, key);
    let x = reference::Nd {
        dims: vec![1, 16, 8, 8],
        data: onnx::op_inputs(&Op::from_key(key).unwrap(), 0).remove(0),
    };
    let y = reference::evaluate(&model, &[("x", x)]).unwrap().remove(0);
    assert_eq!(y.dims, vec![1, 24, 4, 4]);
    assert!(y.data.iter().all(|v| v.is_finite()));
    assert_eq!(Tensor::new(1, 24, 4, 4).numel() as usize, y.data.len());

    let err = fails(&["export-op", "skip-in:1x16x8x8", "--out", s(&path)]);
    assert!(err.contains("runs no kernel"), "{err}");
}

/// Accuracy for tests: a deterministic command, more for convs than for pools and skips.
const ACCURACY_CMD: &str = "cmd:awk '{ print 80 + 3 * gsub(/conv_3x3/, \"\") + 2 * gsub(/conv_1x1/, \"\") + gsub(/avg_pool/, \"\") }'";

/// `hwnas search` on nb201 with a fitted model: the exhaustive front, NSGA-II against it,
/// a latency bound, reproducibility, and `--verify` on the real CPU.
fn search_nb201_with_the_model(dir: &Path, model: &Path, device: &Path) {
    let base = [
        "search",
        "--space",
        "nb201",
        "--model",
        s(model),
        "--accuracy",
        ACCURACY_CMD,
    ];
    let exhaustive = dir.join("exhaustive");
    let out = ok(&[&base[..], &["--exhaustive", "--out", s(&exhaustive)]].concat());
    assert!(out.contains("15625 architectures evaluated"), "{out}");
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(exhaustive.join("front.json")).unwrap())
            .unwrap();
    let true_front = truth["front"].as_array().unwrap();
    assert!(true_front.len() >= 3, "{truth}");

    let found = dir.join("found");
    let run = |out_dir: &Path, extra: &[&str]| {
        let args = [
            &base[..],
            &[
                "--max-evaluations",
                "600",
                "--seed",
                "3",
                "--out",
                s(out_dir),
            ],
            extra,
        ]
        .concat();
        ok(&args)
    };
    let out = run(&found, &["--compare", s(&exhaustive.join("front.json"))]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(found.join("front.json")).unwrap()).unwrap();
    assert!(report["evaluations"].as_u64().unwrap() <= 600);
    let ratio = report["comparison"]["ratio"].as_f64().unwrap();
    assert!(ratio > 0.97 && ratio <= 1.0 + 1e-9, "{out}");
    for f in ["front.csv", "front.svg", "history.csv"] {
        assert!(found.join(f).exists(), "{f}");
    }
    // Same seed, same front.
    let again = dir.join("again");
    run(&again, &[]);
    assert_eq!(
        std::fs::read_to_string(found.join("front.csv")).unwrap(),
        std::fs::read_to_string(again.join("front.csv")).unwrap()
    );

    // A latency bound at the middle of the true front holds for every member found.
    let mut lat: Vec<f64> = true_front
        .iter()
        .map(|m| m["latency"]["cpu-quick"]["ms"].as_f64().unwrap())
        .collect();
    lat.sort_by(f64::total_cmp);
    let bound = lat[lat.len() / 2];
    let bounded = dir.join("bounded");
    run(
        &bounded,
        &[
            "--max-latency-ms",
            &format!("{bound}"),
            "--verify",
            "--verify-max",
            "3",
            "--device",
            s(device),
        ],
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bounded.join("front.json")).unwrap())
            .unwrap();
    let front = report["front"].as_array().unwrap();
    assert!(!front.is_empty());
    let mut measured = 0;
    for m in front {
        let l = &m["latency"]["cpu-quick"];
        assert!(l["ms"].as_f64().unwrap() <= bound, "{m}");
        assert!(
            l["low_ms"].as_f64().unwrap() < l["high_ms"].as_f64().unwrap(),
            "{m}"
        );
        if let Some(ms) = l["measured_ms"].as_f64() {
            // Measured on the real CPU: the right size, however noisy the machine.
            let predicted = l["ms"].as_f64().unwrap();
            assert!(ms > predicted / 3.0 && ms < predicted * 3.0, "{m}");
            measured += 1;
        }
    }
    assert_eq!(measured, 3.min(front.len()));
    assert_eq!(report["verification"]["networks"], measured);

    // The single-objective strategies under the same bound: every member meets it.
    let bound_text = format!("{bound}");
    for strategy in ["evolution", "reinforce", "random"] {
        let d = dir.join(strategy);
        let args = [
            &base[..],
            &["--strategy", strategy, "--max-latency-ms", &bound_text],
            &["--max-evaluations", "200", "--out", s(&d)],
        ]
        .concat();
        ok(&args);
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("front.json")).unwrap()).unwrap();
        assert_eq!(report["strategy"], strategy);
        assert_eq!(report["evaluations"], 200);
        for m in report["front"].as_array().unwrap() {
            assert!(
                m["latency"]["cpu-quick"]["ms"].as_f64().unwrap() <= bound,
                "{m}"
            );
        }
    }

    // One-shot tables: mbv3's, a term per block (ops the nb201 table lacks come from its
    // regressor); nb201's, one term over its six edges, only at its own resolution.
    let lut = dir.join("lat.json");
    let out = ok(&[
        "lut",
        "export",
        "--model",
        s(model),
        "--space",
        "mbv3",
        "--resolution",
        "160",
        "--out",
        s(&lut),
    ]);
    assert!(
        out.contains("20 decisions of mbv3 at resolution 160"),
        "{out}"
    );
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lut).unwrap()).unwrap();
    assert_eq!(table["schema"], "hwnas-lut/2");
    assert_eq!(table["decisions"].as_array().unwrap().len(), 20);
    assert_eq!(table["terms"].as_array().unwrap().len(), 20);
    let out = ok(&[
        "lut",
        "export",
        "--model",
        s(model),
        "--space",
        "nb201",
        "--out",
        s(&lut),
    ]);
    assert!(
        out.contains("6 decisions of nb201 at resolution 32") && out.contains("15625 entries"),
        "{out}"
    );
    let err = fails(&[
        "lut",
        "export",
        "--model",
        s(model),
        "--space",
        "nb201",
        "--resolution",
        "224",
        "--out",
        s(&lut),
    ]);
    assert!(
        err.contains("resolution 224 is not one of nb201's [32]"),
        "{err}"
    );

    // Two devices (the same model twice: numbered apart), a bound for each.
    let two = dir.join("two");
    let bounds = format!("cpu-quick1={bound},cpu-quick2={}", bound / 2.0);
    let args = [
        &base[..],
        &["--model", s(model), "--max-latency-ms", &bounds],
        &["--max-evaluations", "300", "--out", s(&two)],
    ]
    .concat();
    let out = ok(&args);
    assert!(
        out.contains("latency_cpu-quick1_ms, latency_cpu-quick2_ms"),
        "{out}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("front.json")).unwrap()).unwrap();
    for m in report["front"].as_array().unwrap() {
        assert!(
            m["latency"]["cpu-quick2"]["ms"].as_f64().unwrap() <= bound / 2.0,
            "{m}"
        );
    }
}

#[test]
fn search_explains_bad_input() {
    let _serial = one_at_a_time();
    let nb201 = ["search", "--space", "nb201"];
    let err = fails(&[&nb201[..], &["--accuracy", "oracle"]].concat());
    assert!(err.contains("table:FILE.csv"), "{err}");
    let err = fails(&[&nb201[..], &["--objectives", "accuracy,latency"]].concat());
    assert!(err.contains("needs a --model"), "{err}");
    let err = fails(&[&nb201[..], &["--objectives", "accuracy,speed"]].concat());
    assert!(err.contains("unknown `speed`"), "{err}");
    let dir0 = tempfile::tempdir().unwrap();
    let out0 = ["--out", s(dir0.path())];
    // An objective named twice counts once, wherever it repeats.
    let out = ok(&[
        &nb201[..],
        &[
            "--objectives",
            "mflops,mparams,mflops",
            "--max-evaluations",
            "50",
        ],
        &out0,
    ]
    .concat());
    assert!(out.contains("objectives: mflops, mparams\n"), "{out}");
    let err = fails(
        &[
            &nb201[..],
            &["--strategy", "annealing", "--objectives", "mflops,mparams"],
            &out0,
        ]
        .concat(),
    );
    assert!(err.contains("nsga2, evolution, reinforce, random"), "{err}");
    let err = fails(
        &[
            &nb201[..],
            &["--strategy", "evolution", "--objectives", "mflops,mparams"],
            &out0,
        ]
        .concat(),
    );
    assert!(err.contains("add `accuracy`"), "{err}");
    let err = fails(
        &[
            &nb201[..],
            &["--strategy", "evolution", "--objectives", "accuracy,speed"],
        ]
        .concat(),
    );
    assert!(err.contains("unknown `speed`"), "{err}");
    let err = fails(&[
        "search",
        "--space",
        "mbv3",
        "--objectives",
        "mflops,mparams",
        "--exhaustive",
    ]);
    assert!(err.contains("at most"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("lat.csv");
    std::fs::write(
        &table,
        "arch,latency_ms\n|none~0|+|none~0|none~1|+|none~0|none~1|bogus~2|,1.0\n",
    )
    .unwrap();
    let err = fails(&[&nb201[..], &["--latency", &format!("table:{}", s(&table))]].concat());
    assert!(err.contains("lat.csv") && err.contains("row 2"), "{err}");
    // A table that misses architectures the search reaches names the file and the arch.
    std::fs::write(
        &table,
        "arch,latency_ms\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1.0\n",
    )
    .unwrap();
    let err = fails(
        &[
            &nb201[..],
            &[
                "--latency",
                &format!("table:{}", s(&table)),
                "--out",
                s(dir.path()),
            ],
        ]
        .concat(),
    );
    assert!(err.contains("is not in the table"), "{err}");
    let err = fails(
        &[
            &nb201[..],
            &[
                "--latency",
                &format!("table:{}", s(&table)),
                "--max-latency-ms",
                "gpu=5",
            ],
        ]
        .concat(),
    );
    assert!(
        err.contains("no device `gpu`") && err.contains("lat"),
        "{err}"
    );
}

/// NAS-Bench-201's real CIFAR-10 accuracies from the shared data set against MFLOPs: NSGA-II
/// with 1,000 evaluations against the exhaustive front. (The README's latency version of this
/// needs a fitted CPU model, which `./run.sh` makes.)
#[test]
fn nb201_search_with_the_benchmark_accuracies_finds_the_true_front() {
    let _serial = one_at_a_time();
    let acc =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nb201/cifar10_test_acc.csv");
    if !acc.exists() {
        eprintln!(
            "NOTE: {} is not here; this test needs the shared NAS-Bench-201 data",
            acc.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let accuracy = format!("table:{}", s(&acc));
    let mflops = ["--objectives", "accuracy,mflops"];
    let base = ["search", "--space", "nb201", "--accuracy", &accuracy];
    let truth = dir.path().join("truth");
    ok(&[&base[..], &mflops, &["--exhaustive", "--out", s(&truth)]].concat());
    let found = dir.path().join("found");
    let out = ok(&[
        &base[..],
        &mflops,
        &[
            "--max-evaluations",
            "1000",
            "--out",
            s(&found),
            "--compare",
            s(&truth.join("front.json")),
        ],
    ]
    .concat());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(found.join("front.json")).unwrap()).unwrap();
    let ratio = report["comparison"]["ratio"].as_f64().unwrap();
    assert!(ratio > 0.98, "{out}");
    // The most accurate cell of NAS-Bench-201 on CIFAR-10 (94.37%) is on both fronts.
    let best = |r: &serde_json::Value| {
        r["front"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["accuracy"].as_f64().unwrap())
            .fold(0.0, f64::max)
    };
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(truth.join("front.json")).unwrap()).unwrap();
    assert!((best(&truth) - 94.37).abs() < 0.01, "{}", best(&truth));
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let _serial = one_at_a_time();
    // `hwnas ... | head`: the reader is gone before hwnas writes its first line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hwnas"))
        .args(["space", "ops", "--space", "mbv3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn shards_profiled_apart_merge_into_the_whole_table() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let part = |i: usize| dir.path().join(format!("p{i}.csv"));
    let mock = [
        "profile",
        "--device",
        "device_profiles/mock.toml",
        "--space",
        "nb201",
    ];
    for i in 1..=2 {
        let shard = format!("{i}/2");
        ok(&[&mock[..], &["--shard", &shard, "--out", s(&part(i))]].concat());
    }
    let whole = dir.path().join("whole.csv");
    ok(&[&mock[..], &["--out", s(&whole)]].concat());
    let merged = dir.path().join("merged.csv");
    let out = ok(&[
        "table",
        "merge",
        s(&part(1)),
        s(&part(2)),
        "--out",
        s(&merged),
    ]);
    assert!(out.contains("merged 22 rows from 2 tables"), "{out}");
    let keys = |p: &Path| {
        let mut k: Vec<String> = LatencyTable::read(p)
            .unwrap()
            .rows
            .into_iter()
            .map(|r| r.key)
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys(&merged), keys(&whole));
    assert!(ok(&["table", "check", s(&merged)]).contains("ok"));
    // A shard alone, noisy rows, a missing shard and another device are all flagged.
    let err = hwnas(&["table", "check", s(&part(1))]);
    assert!(!err.status.success() && String::from_utf8_lossy(&err.stdout).contains("shard 1/2"));
    let noisy = hwnas(&["table", "check", s(&merged), "--max-ci", "0.000001"]);
    assert!(!noisy.status.success() && String::from_utf8_lossy(&noisy.stdout).contains("noisier"));
    let alone = hwnas(&["table", "merge", s(&part(1)), "--out", s(&merged)]);
    assert!(
        !alone.status.success()
            && String::from_utf8_lossy(&alone.stderr).contains("2/2 are missing")
    );
    let other = dir.path().join("other.csv");
    let text = std::fs::read_to_string(part(2))
        .unwrap()
        .replace("# device: mock", "# device: phone");
    std::fs::write(&other, text).unwrap();
    let err = fails(&[
        "table",
        "merge",
        s(&part(1)),
        s(&other),
        "--out",
        s(&merged),
    ]);
    assert!(
        err.contains("differ in device") && err.contains("other.csv"),
        "{err}"
    );
    let err = fails(&[&mock[..], &["--shard", "3/2", "--out", s(&merged)]].concat());
    assert!(err.contains("I/N"), "{err}");
}

#[test]
fn profiling_killed_at_random_resumes_without_losing_or_repeating_a_row() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("killed.csv");
    let args = [
        "profile",
        "--device",
        "device_profiles/cpu.toml",
        "--space",
        "nb201",
        "--out",
        s(&table),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_hwnas"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill -9 once a few rows are on disk: mid-run (the whole profile takes ~9 s).
    let rows_on_disk = || {
        LatencyTable::read(&table)
            .map(|t| t.rows)
            .unwrap_or_default()
    };
    let started = std::time::Instant::now();
    while rows_on_disk().len() < 3 && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = rows_on_disk();
    assert!(
        (3..22).contains(&before.len()),
        "killed after {} rows",
        before.len()
    );
    let out = ok(&[&args[..], &["--resume"]].concat());
    assert!(
        out.contains(&format!("measured {} ops", 22 - before.len())),
        "{out}"
    );
    let after = rows_on_disk();
    assert_eq!(after.len(), 22);
    assert_eq!(
        after[..before.len()],
        before[..],
        "rows measured before the kill are kept"
    );
    let keys: std::collections::HashSet<&str> = after.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys.len(), 22, "no row is repeated");
}

/// Every kind of file hwnas reads — latency table, device profile, model JSON, ONNX model,
/// search front, architecture table — refuses a truncated or corrupted copy with an error that
/// names the file, and a file of the wrong space or schema with one that says so.
#[test]
fn truncated_corrupted_and_mismatched_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = |name: &str| d.join(name).to_str().unwrap().to_string();
    let arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";
    // Good files of each kind, from the simulated device (fast).
    let mock = "device_profiles/mock.toml";
    ok(&[
        "profile",
        "--device",
        mock,
        "--space",
        "nb201",
        "--out",
        &path("t.csv"),
    ]);
    ok(&[
        "fit",
        "--table",
        &path("t.csv"),
        "--calibrate",
        "0",
        "--out",
        &path("m.json"),
    ]);
    ok(&[
        "export",
        "--space",
        "nb201",
        "--arch",
        arch,
        "--out",
        &path("net.onnx"),
    ]);
    let search = |extra: &[&str], out: &str| -> Vec<String> {
        [
            &[
                "search",
                "--space",
                "nb201",
                "--model",
                &path("m.json"),
                "--out",
                &path(out),
            ][..],
            extra,
        ]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = search(&["--exhaustive"], "exhaustive");
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    std::fs::copy(d.join("exhaustive/front.json"), d.join("front.json")).unwrap();
    std::fs::write(d.join("acc.csv"), format!("arch,acc\n{arch},93.1\n")).unwrap();
    std::fs::copy(mock, d.join("dev.toml")).unwrap();

    // (file, a command that reads it)
    let readers: Vec<(&str, Vec<String>)> = vec![
        ("t.csv", vec!["table".into(), "show".into(), path("t.csv")]),
        (
            "dev.toml",
            [
                "profile",
                "--device",
                &path("dev.toml"),
                "--space",
                "nb201",
                "--out",
                &path("x.csv"),
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "m.json",
            [
                "predict",
                "--model",
                &path("m.json"),
                "--space",
                "nb201",
                "--arch",
                arch,
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "net.onnx",
            [
                "predict",
                "--model",
                &path("m.json"),
                "--onnx",
                &path("net.onnx"),
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "front.json",
            search(
                &["--max-evaluations", "40", "--compare", &path("front.json")],
                "s",
            ),
        ),
        (
            "acc.csv",
            search(
                &[
                    "--max-evaluations",
                    "40",
                    "--accuracy",
                    &format!("table:{}", path("acc.csv")),
                ],
                "s",
            ),
        ),
    ];
    for (name, cmd) in &readers {
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let file = d.join(name);
        let good = std::fs::read(&file).unwrap();
        if *name != "acc.csv" {
            // (the one-row accuracy table is too short to corrupt without a wrong arch)
            ok(&cmd);
        }
        let mut torn = good[..good.len() / 2].to_vec();
        if torn.last() == Some(&b'\n') {
            torn.pop();
        }
        // Bytes changed inside an ONNX file's weights still make a valid model (ONNX has no
        // checksum): its corruption goes into the structure at the start.
        let at = if name.ends_with(".onnx") {
            2
        } else {
            good.len() / 2
        };
        let mut corrupted = good.clone();
        corrupted.splice(at..(at + 8).min(good.len()), *b"\x00\xff}{,\"#~");
        for (what, bytes) in [("truncated", torn), ("corrupted", corrupted)] {
            std::fs::write(&file, &bytes).unwrap();
            let err = fails(&cmd);
            assert!(err.contains(name), "{what} {name}: {err}");
        }
        std::fs::write(&file, &good).unwrap();
    }

    // Files of the wrong kind or space.
    let table = std::fs::read_to_string(d.join("t.csv")).unwrap();
    std::fs::write(
        d.join("t.csv"),
        table.replacen("hwnas-table: 1", "hwnas-table: 9", 1),
    )
    .unwrap();
    let err = fails(&["table", "show", &path("t.csv")]);
    assert!(
        err.contains("t.csv") && err.contains("schema version 9"),
        "{err}"
    );
    ok(&[
        "profile",
        "--device",
        mock,
        "--space",
        "mbv3",
        "--op",
        "add-in:1x8x8x8",
        "--out",
        &path("mb.csv"),
    ]);
    let mbv3_front = [
        "search",
        "--space",
        "mbv3",
        "--model",
        &path("m.json"),
        "--max-evaluations",
        "40",
        "--out",
        &path("mb"),
    ];
    ok(&mbv3_front);
    let err = fails(
        &search(
            &[
                "--max-evaluations",
                "40",
                "--compare",
                &path("mb/front.json"),
            ],
            "s",
        )
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    assert!(
        err.contains("a front of space \"mbv3\" (this search is over nb201)"),
        "{err}"
    );
    let err = fails(&[
        "predict",
        "--model",
        &path("net.onnx"),
        "--space",
        "nb201",
        "--arch",
        arch,
    ]);
    assert!(err.contains("net.onnx"), "{err}");
}

/// Precision is part of what is measured: an int8 (QDQ) table says so, its model refuses to
/// predict for another precision, and devices without ONNX Runtime refuse anything but fp32.
#[test]
fn precisions_are_profiled_recorded_and_checked() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let device = quick_cpu_profile(dir.path());
    let table = dir.path().join("int8.csv");
    let out = ok(&[
        "profile",
        "--device",
        s(&device),
        "--space",
        "nb201",
        "--precision",
        "int8",
        "--out",
        s(&table),
    ]);
    assert!(out.contains("measured 22 ops"), "{out}");
    let t = LatencyTable::read(&table).unwrap();
    assert_eq!(t.meta("precision"), Some("int8"));
    assert!(
        t.meta("latency_basis")
            .is_some_and(|b| b.contains("QuantizeLinear"))
    );
    let fp16 = dir.path().join("fp16.csv");
    ok(&[
        "profile",
        "--device",
        s(&device),
        "--op",
        "conv-in:1x16x16x16-out:16-k:3-s:1-g:1-pre:relu-act:none",
        "--precision",
        "fp16",
        "--out",
        s(&fp16),
    ]);
    let t16 = LatencyTable::read(&fp16).unwrap();
    assert_eq!(t16.meta("precision"), Some("fp16"));
    assert!(
        t16.meta("latency_basis")
            .is_some_and(|b| b.contains("Cast"))
    );
    assert!(t16.rows[0].median_us > 0.0);
    // A resume at another precision is another table.
    let err = fails(&[
        "profile",
        "--device",
        s(&device),
        "--space",
        "nb201",
        "--out",
        s(&table),
        "--resume",
    ]);
    assert!(err.contains("precision") && err.contains("int8"), "{err}");

    let model = dir.path().join("int8.json");
    ok(&[
        "fit",
        "--table",
        s(&table),
        "--calibrate",
        "0",
        "--out",
        s(&model),
    ]);
    let arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";
    let predict = |precision: &str| {
        hwnas(&[
            "predict",
            "--model",
            s(&model),
            "--space",
            "nb201",
            "--arch",
            arch,
            "--precision",
            precision,
        ])
    };
    let good = predict("int8");
    assert!(good.status.success() && String::from_utf8_lossy(&good.stdout).contains("at int8"));
    let bad = predict("fp32");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("holds int8 latencies, not fp32"),
        "{err}"
    );
    let err = fails(&[
        "search",
        "--space",
        "nb201",
        "--model",
        s(&model),
        "--precision",
        "fp16",
        "--max-evaluations",
        "30",
        "--out",
        s(&dir.path().join("s")),
    ]);
    assert!(err.contains("holds int8 latencies, not fp16"), "{err}");
    let err = fails(&[
        "profile",
        "--device",
        "device_profiles/lavapipe.toml",
        "--space",
        "nb201",
        "--precision",
        "fp16",
        "--out",
        s(&dir.path().join("gpu.csv")),
    ]);
    assert!(
        err.contains("--precision") && err.contains("needs an ONNX Runtime device"),
        "{err}"
    );
}

/// A kernel that does not come back within the profile's timeout is stopped (its measuring
/// process killed) and recorded failed; the ops around it, measured in the same interleaved
/// group, are measured and kept.
#[test]
fn a_hung_kernel_is_stopped_and_the_run_goes_on() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("cpu-hang.toml");
    std::fs::write(
        &device,
        "name = \"cpu-hang\"\nbackend = \"ort\"\n[ort]\ntimeout_ms = 1000\n[measure]\nmin_runs = 10\n",
    )
    .unwrap();
    let table = dir.path().join("t.csv");
    // ~470 GFLOP a run: seconds on any single core, far past the 1 s timeout.
    let hung = "conv-in:8x512x112x112-out:512-k:3-s:1-g:1-pre:none-act:none";
    let err = fails(&[
        "profile",
        "--device",
        s(&device),
        "--op",
        "add-in:1x16x32x32",
        "--op",
        hung,
        "--op",
        "add-in:1x32x16x16",
        "--out",
        s(&table),
    ]);
    assert!(
        err.contains(&format!(
            "FAILED {hung}: no preparation or run finished within 1.0 s"
        )) && err.contains("1 ops failed"),
        "{err}"
    );
    let rows = LatencyTable::read(&table).unwrap().rows;
    let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["add-in:1x16x32x32", "add-in:1x32x16x16"]);
}

#[test]
fn rows_too_noisy_twice_are_left_for_a_later_resume() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.csv");
    let args = [
        "profile",
        "--device",
        "device_profiles/mock.toml",
        "--space",
        "nb201",
        "--out",
        s(&table),
    ];
    let err = fails(&[&args[..], &["--max-noise", "0.000001"]].concat());
    assert!(
        err.contains("too noisy") && err.contains("22 ops failed"),
        "{err}"
    );
    assert_eq!(LatencyTable::read(&table).unwrap().rows.len(), 0);
    let out = ok(&[&args[..], &["--max-noise", "0.5", "--resume"]].concat());
    assert!(out.contains("measured 22 ops"), "{out}");
}

/// A short-measurement wgpu profile on the best adapter there (lavapipe in CI).
fn quick_gpu_profile(dir: &Path, name: &str, extra_wgpu: &str, extra_measure: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\nbackend = \"wgpu\"\n[wgpu]\n{extra_wgpu}\n[measure]\nwarmup_runs = 1\nwarmup_ms = 0.0\nmin_runs = 5\nmax_ms = 100.0\ntarget_ci = 0.05\n{extra_measure}\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn gpu_profile_fit_and_validate_on_wgpu() {
    let _serial = one_at_a_time();
    let out = ok(&["devices"]);
    assert!(
        out.contains("wgpu adapters") && !out.contains("wgpu adapters (0)"),
        "a wgpu adapter is required (lavapipe in CI): {out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let device = quick_gpu_profile(dir.path(), "gpu-quick", "", "");
    let table_path = dir.path().join("gpu-nb201.csv");
    let out = ok(&[
        "profile",
        "--device",
        s(&device),
        "--space",
        "nb201",
        "--out",
        s(&table_path),
    ]);
    assert!(
        out.contains("measured 22 ops") && out.contains("throughput"),
        "{out}"
    );
    let table = LatencyTable::read(&table_path).unwrap();
    assert_eq!(table.rows.len(), 22);
    assert_eq!(table.meta("backend"), Some("wgpu"));
    assert!(table.meta("adapter").is_some() && table.meta("timing").is_some());
    if table.meta("adapter_type") == Some("cpu (software)") {
        assert!(
            table
                .meta("note")
                .is_some_and(|n| n.contains("not predictor data"))
        );
    }
    for row in &table.rows {
        assert!(row.provider.starts_with("wgpu-"), "{row:?}");
        assert!(row.median_us > 0.0 && row.runs >= 5, "{row:?}");
    }
    let t = |k: &str| table.get(k).unwrap().median_us;
    assert!(
        t("conv-in:1x16x32x32-out:16-k:3-s:1-g:1-pre:relu-act:none")
            > t("conv-in:1x16x32x32-out:16-k:1-s:1-g:1-pre:relu-act:none")
    );

    // Whole networks run on the GPU too: calibrate on some, validate on others.
    let model = dir.path().join("gpu.model.json");
    let fitted = ok(&[
        "fit",
        "--table",
        s(&table_path),
        "--device",
        s(&device),
        "--out",
        s(&model),
        "--calibrate",
        "6",
    ]);
    assert!(
        fitted.contains("calibrated on 6 nb201 networks"),
        "{fitted}"
    );
    let report = ok(&[
        "validate",
        "--model",
        s(&model),
        "--device",
        s(&device),
        "--samples",
        "6",
        "--repeat",
        "2",
        "--out",
        s(&dir.path().join("val")),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["samples"], 6);
    assert!(
        report["accuracy"]["rmspe"].as_f64().unwrap().is_finite(),
        "{report}"
    );
}

#[test]
fn gpu_errors_name_what_to_fix_and_keep_what_was_measured() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let table_path = dir.path().join("t.csv");
    let out = dir.path().join("none.csv");

    let missing = quick_gpu_profile(dir.path(), "nogpu", "adapter = \"no-such-gpu-9000\"", "");
    let err = fails(&[
        "profile",
        "--device",
        s(&missing),
        "--op",
        "add-in:1x8x5x5",
        "--out",
        s(&out),
    ]);
    assert!(
        err.contains("nogpu.toml") && err.contains("no-such-gpu-9000") && err.contains("found:"),
        "{err}"
    );

    // One op at a time: the small op is measured and written before the big one misses a
    // 50 ms deadline (it takes seconds on lavapipe, milliseconds on a real GPU: hence 1 ms there).
    let deadline = quick_gpu_profile(
        dir.path(),
        "deadline",
        "timeout_ms = 50.0",
        "interleave = 1",
    );
    let big = "conv-in:1x256x64x64-out:256-k:3-s:1-g:1-pre:none-act:relu";
    let run = hwnas(&[
        "profile",
        "--device",
        s(&deadline),
        "--op",
        "add-in:1x8x5x5",
        "--op",
        big,
        "--out",
        s(&table_path),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let table = LatencyTable::read(&table_path).unwrap();
    if table.meta("adapter_type") == Some("cpu (software)") {
        assert!(!run.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("FAILED {big}")) && stderr.contains("wgpu.timeout_ms"),
            "{stderr}"
        );
        assert_eq!(table.rows.len(), 1, "the op measured before is kept");
        assert_eq!(table.rows[0].key, "add-in:1x8x5x5");
    }
}

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
    // The conv before the Elu now has no activation: not in the table, so from the regressor.
    ok(&[
        "fit",
        "--table",
        s(&table),
        "--calibrate",
        "0",
        "--out",
        s(&model),
    ]);
    let out = hwnas(&[
        "predict",
        "--model",
        s(&model),
        "--onnx",
        s(&file("elu.onnx")),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 predicted by the regressor"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Elu x1") && stderr.contains("--strict"),
        "{stderr}"
    );
    let err = fails(&[
        "predict",
        "--model",
        s(&model),
        "--onnx",
        s(&file("elu.onnx")),
        "--strict",
    ]);
    assert!(err.contains("Elu") && err.contains("elu.onnx"), "{err}");
}

/// A second execution provider for real: OpenVINO's EP from the `onnxruntime-openvino` wheel
/// (`scripts/setup.sh` installs it into ./.venv-openvino).
#[test]
fn openvino_profiles_nb201_and_fallbacks_are_flagged() {
    let _serial = one_at_a_time();
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-openvino");
    let out = ok(&["devices", "--ort-library", s(&venv)]);
    assert!(
        out.contains("OpenVINOExecutionProvider"),
        "the onnxruntime-openvino wheel is required (./test.sh installs it): {out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("ov.toml");
    std::fs::write(
        &device,
        format!(
            "name = \"ov-quick\"\nbackend = \"ort\"\n[ort]\nexecution_provider = \"openvino\"\nlibrary = \"{}\"\n[ort.options]\ndevice_type = \"CPU\"\n[measure]\nmin_runs = 10\nmax_ms = 50.0\ntarget_ci = 0.05\nround_ms = 5.0\n",
            s(&venv)
        ),
    )
    .unwrap();
    let table_path = dir.path().join("ov.csv");
    let out = ok(&[
        "profile",
        "--device",
        s(&device),
        "--space",
        "nb201",
        "--out",
        s(&table_path),
    ]);
    assert!(out.contains("measured 22 ops"), "{out}");
    let table = LatencyTable::read(&table_path).unwrap();
    assert_eq!(
        table.meta("execution_provider"),
        Some("OpenVINOExecutionProvider")
    );
    assert!(
        table
            .meta("ort_version")
            .is_some_and(|v| v.starts_with("1.24"))
    );
    assert!(
        table
            .meta("ep_options")
            .is_some_and(|o| o.contains("device_type=CPU"))
    );
    for row in &table.rows {
        assert_eq!(row.provider, "OpenVINOExecutionProvider", "{}", row.key);
    }

    // int8 as QDQ graphs, as NPUs take them: OpenVINO runs every op of nb201 itself.
    let int8_path = dir.path().join("ov-int8.csv");
    let out = ok(&[
        "profile",
        "--device",
        s(&device),
        "--space",
        "nb201",
        "--precision",
        "int8",
        "--out",
        s(&int8_path),
    ]);
    assert!(out.contains("measured 22 ops"), "{out}");
    let int8 = LatencyTable::read(&int8_path).unwrap();
    assert_eq!(int8.meta("precision"), Some("int8"));
    for row in &int8.rows {
        assert_eq!(row.provider, "OpenVINOExecutionProvider", "{}", row.key);
    }
    // Tables of two precisions are two devices to `table merge`.
    let err = fails(&[
        "table",
        "merge",
        s(&table_path),
        s(&int8_path),
        "--out",
        s(&dir.path().join("mixed.csv")),
    ]);
    assert!(err.contains("precision") && err.contains("int8"), "{err}");

    // A lone channel slice is one op OpenVINO hands back to ORT's CPU EP: flagged in the
    // table and on stderr, refused with --require-ep.
    let slice = "slice-in:1x16x8x8-out:8-at:4";
    let flagged = dir.path().join("flagged.csv");
    let run = hwnas(&[
        "profile",
        "--device",
        s(&device),
        "--op",
        slice,
        "--out",
        s(&flagged),
    ]);
    assert!(run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("did not run on OpenVINOExecutionProvider") && stderr.contains(slice),
        "{stderr}"
    );
    let rows = LatencyTable::read(&flagged).unwrap().rows;
    assert!(
        rows[0].provider.contains("CPUExecutionProvider"),
        "{:?}",
        rows[0]
    );
    let refused = dir.path().join("refused.csv");
    let err = fails(&[
        "profile",
        "--device",
        s(&device),
        "--op",
        slice,
        "--out",
        s(&refused),
        "--require-ep",
    ]);
    assert!(
        err.contains("--require-ep") && err.contains("CPUExecutionProvider"),
        "{err}"
    );
    assert!(
        LatencyTable::read(&refused).unwrap().rows.is_empty(),
        "nothing recorded under OpenVINO's name"
    );

    // An EP this library lacks names the ones it has.
    let cuda = dir.path().join("cuda.toml");
    std::fs::write(
        &cuda,
        format!("name = \"x\"\nbackend = \"ort\"\n[ort]\nexecution_provider = \"cuda\"\nlibrary = \"{}\"\n", s(&venv)),
    )
    .unwrap();
    let err = fails(&[
        "profile",
        "--device",
        s(&cuda),
        "--space",
        "nb201",
        "--out",
        s(&refused),
    ]);
    assert!(
        err.contains("CUDAExecutionProvider")
            && err.contains("OpenVINOExecutionProvider")
            && err.contains("cuda.toml"),
        "{err}"
    );
}
