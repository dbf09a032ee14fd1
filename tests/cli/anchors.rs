//! The search against the field's reference library, side by side in one sitting: pymoo's
//! NSGA-II through the shared anchor (`../shared/anchors/pymoo_nsga2_nb201.py`, run by
//! `scripts/compare_search.py`) and `hwnas search` on the same file of NAS-Bench-201 CIFAR-10
//! accuracies and latencies, 20 seeds each. The latencies are this CPU's committed op tables
//! (`tests/data/few_shot/`), summed: a model measured in the test made the problem move with
//! the machine's load (the median gap 0.29–0.34 of pymoo's on quiet days, 0.54 with a release
//! build beside the profile, and 0.71, over the 0.7 bound, on 2026-12-05 with a reliability
//! test and a validation run beside a CI run), and a test that noise can break tests the
//! noise. On the committed table: 0.38. The README reports the ratios measured on live models.

use std::path::Path;
use std::process::Command;

use crate::util::{fit_uncalibrated, nb201_accuracy, one_at_a_time, read_json, s};

#[test]
fn nsga2_beats_pymoos_hypervolume_gap_on_nb201() {
    let _serial = one_at_a_time();
    nb201_accuracy(); // fails when the shared data is missing
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("cpu-nb201.model.json");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    fit_uncalibrated(&root.join("tests/data/few_shot/cpu-nb201.csv"), &model);
    let (summary, said) = compare("nb201", &model, d);
    let (pymoo, ours) = pymoo_and_hwnas(&summary);
    let f = |m: &serde_json::Value, k: &str| m[k].as_f64().unwrap();
    assert!(
        f(&ours, "gap_median") <= 0.7 * f(&pymoo, "gap_median"),
        "{said}"
    );
    beats_on_every_indicator(&pymoo, &ours, &said);
    // Both spent the same budget: pymoo 1,000 evaluations (repeats included), hwnas 1,000
    // distinct architectures.
    assert_eq!(summary["budget"], 1000);
    assert_eq!(ours["evaluations"], serde_json::json!([1000]));
}

/// mbv3 (10^22 architectures, no exhaustive front): MFLOPs against the latency of this CPU's
/// op table (`tests/data/few_shot/cpu-mbv3.csv`, measured here), 20 seeds each, gaps against
/// the best front any run found. Plain NSGA-II trails pymoo there (median gap 1.1–1.2×);
/// hwnas's surrogate screening measured 0.25–0.32× of pymoo's. Deterministic: the table is
/// a file, and both searches are seeded.
#[test]
fn nsga2_beats_pymoos_hypervolume_gap_on_mbv3() {
    let _serial = one_at_a_time(); // CPU-bound for a while: not beside a timing test
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = d.join("cpu-mbv3.model.json");
    let table = root.join("tests/data/few_shot/cpu-mbv3.csv");
    fit_uncalibrated(&table, &model);
    let (summary, said) = compare("mbv3", &model, d);
    let (pymoo, ours) = pymoo_and_hwnas(&summary);
    let f = |m: &serde_json::Value, k: &str| m[k].as_f64().unwrap();
    assert!(
        f(&ours, "gap_median") <= 0.5 * f(&pymoo, "gap_median"),
        "{said}"
    );
    beats_on_every_indicator(&pymoo, &ours, &said);
    // Without its screening, hwnas is plain NSGA-II on mbv3 (local search never starts), and
    // no better than pymoo's: the screening is what wins.
    let plain = &summary["methods"]["hwnas nsga2 --no-screening"];
    assert!(
        f(plain, "gap_median") > 2.0 * f(&ours, "gap_median"),
        "{said}"
    );
}

/// `scripts/compare_search.py SPACE --model MODEL --seeds 20`: its SUMMARY.json and what it
/// printed.
fn compare(space: &str, model: &Path, dir: &Path) -> (serde_json::Value, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    let out = Command::new(&python)
        .arg(root.join("scripts/compare_search.py"))
        .args([
            space,
            "--model",
            s(model),
            "--seeds",
            "20",
            "--out",
            s(&dir.join("cmp")),
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
    (read_json(&dir.join("cmp/SUMMARY.json")), said)
}

fn pymoo_and_hwnas(summary: &serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    let method = |name: &str| summary["methods"][name].clone();
    (
        method("pymoo NSGA-II (pop 50)"),
        method("hwnas nsga2 (default)"),
    )
}

/// hwnas's worst run beats pymoo's worst, and its median normalised HV and IGD+ pymoo's.
fn beats_on_every_indicator(pymoo: &serde_json::Value, ours: &serde_json::Value, said: &str) {
    let f = |m: &serde_json::Value, k: &str| m[k].as_f64().unwrap();
    assert!(f(ours, "gap_worst") < f(pymoo, "gap_worst"), "{said}");
    assert!(
        f(ours, "normalised_hv_median") > f(pymoo, "normalised_hv_median")
            && f(ours, "igd_plus_median") < f(pymoo, "igd_plus_median"),
        "{said}"
    );
}
