//! The search against the field's reference library, side by side in one sitting: pymoo's
//! NSGA-II through the shared anchor (`../shared/anchors/pymoo_nsga2_nb201.py`, run by
//! `scripts/compare_search.py`) and `hwnas search` on the same file of NAS-Bench-201 CIFAR-10
//! accuracies and latencies this CPU's model (calibrated on 20 networks) predicts for every
//! cell, 20 seeds each. The model is measured here, so the problem moves with the machine's
//! load: the median gap came out 0.29–0.34 of pymoo's on quiet days, 0.54 once with a release
//! build running beside the profile (CI, 2026-12-02), and 0.30–0.48 on four uncalibrated
//! table sums (the README has them). The bound is below pymoo's by a margin that load has not
//! crossed; the README reports the ratios measured.

use std::path::Path;
use std::process::Command;

use crate::util::{nb201_accuracy, ok, one_at_a_time, quick_cpu_profile, read_json, s};

#[test]
fn nsga2_beats_pymoos_hypervolume_gap_on_nb201() {
    let _serial = one_at_a_time();
    nb201_accuracy(); // fails when the shared data is missing
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let table = d.join("cpu.csv");
    let device = quick_cpu_profile(d);
    ok(&[
        "profile",
        "--device",
        s(&device),
        "--space",
        "nb201",
        "--out",
        s(&table),
    ]);
    let model = d.join("cpu.model.json");
    ok(&[
        "fit",
        "--table",
        s(&table),
        "--device",
        s(&device),
        "--calibrate",
        "20",
        "--out",
        s(&model),
    ]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    let out = Command::new(&python)
        .arg(root.join("scripts/compare_search.py"))
        .args([
            "nb201",
            "--model",
            s(&model),
            "--seeds",
            "20",
            "--out",
            s(&d.join("cmp")),
        ])
        .args(["--hwnas", env!("CARGO_BIN_EXE_hwnas")])
        .output()
        .unwrap_or_else(|e| panic!("{} (./test.sh installs pymoo there): {e}", python.display()));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    let summary = read_json(&d.join("cmp/SUMMARY.json"));
    let method = |name: &str| summary["methods"][name].clone();
    let (pymoo, ours) = (
        method("pymoo NSGA-II (pop 50)"),
        method("hwnas nsga2 (default)"),
    );
    let f = |m: &serde_json::Value, k: &str| m[k].as_f64().unwrap();
    assert!(
        f(&ours, "gap_median") <= 0.7 * f(&pymoo, "gap_median"),
        "{said}"
    );
    assert!(f(&ours, "gap_worst") < f(&pymoo, "gap_worst"), "{said}");
    assert!(
        f(&ours, "normalised_hv_median") > f(&pymoo, "normalised_hv_median")
            && f(&ours, "igd_plus_median") < f(&pymoo, "igd_plus_median"),
        "{said}"
    );
    // Both spent the same budget: pymoo 1,000 evaluations (repeats included), hwnas 1,000
    // distinct architectures.
    assert_eq!(summary["budget"], 1000);
    assert_eq!(ours["evaluations"], serde_json::json!([1000]));
}
