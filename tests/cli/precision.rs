//! Precisions: fp16 and int8 profiled, recorded in the table, and checked by predict and search.

use hwnas_core::table::LatencyTable;

use crate::util::{fails, fit_uncalibrated, hwnas, ok, one_at_a_time, quick_cpu_profile, s};

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
    fit_uncalibrated(&table, &model);
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
