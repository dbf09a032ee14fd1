//! The pipeline on the real CPU: devices, space ops, profile → resume after a crash → fit → predict → validate → search, ONNX export of ops.

use std::path::Path;

use hwnas_core::table::LatencyTable;
use hwnas_core::{Op, Tensor};
use hwnas_onnx::{self as onnx, ModelProto, reference};
use prost::Message;

use crate::util::{fails, ok, one_at_a_time, quick_cpu_profile, read_json, s};

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
        // Compared as measured: `median_us` is moved to the table's nominal speed, which can
        // put it above a call timed while the machine ran faster than that.
        let raw = row.raw_us.unwrap_or(row.median_us);
        assert!(
            raw <= row.wall_us,
            "{}: kernel time {raw} µs exceeds the call's {} µs",
            row.key,
            row.wall_us
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
        "20",
        "--repeat",
        "3",
        "--out",
        s(&prefix),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["samples"], 20);
    // Loose bounds that a noisy machine cannot break, yet a broken pipeline would: networks
    // from 0.2 to 4 ms must come out in the right order and roughly the right size. With 12
    // networks a noisy run once gave tau 0.53 against a bound of 0.6; over 20, random
    // predictions pass tau > 0.5 with probability 0.001, and the noise moves tau less.
    let acc = &report["accuracy"];
    assert!(acc["kendall_tau"].as_f64().unwrap() > 0.5, "{acc}");
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
    // The model's 12 calibration networks, measured again among the 20, anchor them.
    let sitting = &report["sitting"];
    assert_eq!(sitting["anchors"], 12, "{sitting}");
    assert!(
        (0.5..2.0).contains(&sitting["factor"].as_f64().unwrap()),
        "{sitting}"
    );
    another_sitting_is_brought_back_by_the_anchors(dir.path(), &model, &device, &report);
    imprecise_networks_are_measured_again(dir.path(), &model);
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
/// A model fitted in a sitting where networks ran 1.4x slower than now (beyond what the
/// probe corrects): its predictions and its calibration times are 1.4x today's. Against the
/// times the probe leaves, every prediction is 40% high; the calibration networks measured
/// again among the validation's see the shift and bring the times back to the model's sitting.
/// The same model "fitted in a sitting 1.4x slower" (its times scaled), validated on the same
/// networks as `unshifted` (the plain model's report, seconds before): the anchors find the
/// shift and take it out; without them it stays. Compared with the plain model's own errors,
/// not with zero: on a noisy day a model calibrated on 12 networks of a quick table misses
/// held-out ones by 10-25% on its own (once -25%, which hid the shift against a fixed bound).
fn another_sitting_is_brought_back_by_the_anchors(
    dir: &Path,
    model: &Path,
    device: &Path,
    unshifted: &serde_json::Value,
) {
    const SHIFT: f64 = 1.4;
    let mut m = read_json(model);
    for entry in m["ops"].as_object_mut().unwrap().values_mut() {
        for v in entry.as_array_mut().unwrap() {
            *v = (v.as_f64().unwrap() * SHIFT).into();
        }
    }
    let cal = &mut m["calibration"];
    cal["intercept_us"] = (cal["intercept_us"].as_f64().unwrap() * SHIFT).into();
    let kinds: Vec<String> = serde_json::from_value(cal["kinds"].clone()).unwrap();
    for (kind, c) in kinds
        .iter()
        .zip(cal["coefficients"].as_array_mut().unwrap())
    {
        if kind.starts_with("n_") {
            *c = (c.as_f64().unwrap() * SHIFT).into();
        }
    }
    for v in m["calibration_us"].as_array_mut().unwrap() {
        *v = (v.as_f64().unwrap() * SHIFT).into();
    }
    let slow = dir.join("m-slow-sitting.json");
    std::fs::write(&slow, m.to_string()).unwrap();
    let validate = |anchors: &str| -> serde_json::Value {
        let out = ok(&[
            "validate",
            "--model",
            s(&slow),
            "--device",
            s(device),
            "--samples",
            "20",
            "--repeat",
            "0",
            "--anchors",
            anchors,
            "--out",
            s(&dir.join("val-slow")),
            "--json",
        ]);
        serde_json::from_str(&out).unwrap()
    };
    // Predictions over measurements, against the plain model's in its sitting.
    let ratio = |accuracy: &serde_json::Value, unshifted: &serde_json::Value| {
        (1.0 + accuracy["bias"].as_f64().unwrap()) / (1.0 + unshifted["bias"].as_f64().unwrap())
    };
    let report = validate("12");
    let sitting = &report["sitting"];
    let factor = sitting["factor"].as_f64().unwrap();
    assert!((0.5..0.95).contains(&factor), "{sitting}");
    let probe_only = ratio(
        &sitting["probe_only_accuracy"],
        &unshifted["sitting"]["probe_only_accuracy"],
    );
    assert!(probe_only > 1.15, "{probe_only}: {sitting}");
    let acc = &report["accuracy"];
    let anchored = ratio(acc, &unshifted["accuracy"]);
    assert!((anchored - 1.0).abs() < 0.15, "{anchored}: {acc}");
    assert!(acc["rmspe"].as_f64().unwrap() < 0.35, "{acc}");
    // Without anchors the report says so, and the times stay as the probe left them.
    let plain = validate("0");
    assert_eq!(plain["sitting"]["anchors"], 0);
    let kept = ratio(
        &plain["accuracy"],
        &unshifted["sitting"]["probe_only_accuracy"],
    );
    assert!(kept > 1.15, "{kept}: {}", plain["accuracy"]);
}

/// A precision no network reaches (±0.01% in 5 ms of runs, 8 at least): each is measured once more in a
/// later pass, the report says so and that they are still wider; with `later_passes = 0`, not.
fn imprecise_networks_are_measured_again(dir: &Path, model: &Path) {
    let validate = |later_passes: u32| -> (String, serde_json::Value) {
        let device = dir.join(format!("cpu-strict-{later_passes}.toml"));
        std::fs::write(
            &device,
            format!(
                "name = \"cpu-strict\"\nbackend = \"ort\"\n[measure]\nmin_runs = 8\nmax_ms = 5.0\n\
                 target_ci = 0.0001\nround_ms = 2.0\nlater_passes = {later_passes}\n"
            ),
        )
        .unwrap();
        let prefix = dir.join(format!("val-strict-{later_passes}"));
        let out = ok(&[
            "validate",
            "--model",
            s(model),
            "--device",
            s(&device),
            "--samples",
            "6",
            "--repeat",
            "0",
            "--anchors",
            "2",
            "--out",
            s(&prefix),
        ]);
        (out, read_json(&prefix.with_extension("json")))
    };
    let (out, report) = validate(1);
    let p = &report["precision"];
    assert_eq!(
        (&p["passes"], &p["remeasured"], &p["still_wide"]),
        (&2.into(), &8.into(), &8.into()),
        "{p}"
    );
    // No interval at all (null) where a network got fewer batches than an interval needs.
    assert!(p["median_ci"].as_f64().is_none_or(|ci| ci > 0.0001), "{p}");
    assert!(
        out.contains("8 measured again in 1 later pass(es), 8 still wider"),
        "{out}"
    );
    let (out, report) = validate(0);
    let p = &report["precision"];
    assert_eq!(
        (&p["passes"], &p["remeasured"]),
        (&1.into(), &0.into()),
        "{p}"
    );
    assert!(
        out.contains("8 wider, not measured again (later_passes = 0)"),
        "{out}"
    );
}

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
    assert_eq!(report["verification"]["sitting"]["anchors"], 12);
    // How precise those times are, as validate and measure say it.
    let precision = &report["verification"]["precision"];
    assert!(
        precision["median_ci"].as_f64().unwrap() > 0.0,
        "{precision}"
    );
    assert!(precision["passes"].as_u64().unwrap() >= 1, "{precision}");

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
