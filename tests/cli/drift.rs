//! Numbers that hold on a busy machine: the whole pipeline (profile, fit, validate) with a
//! competing process on the measuring core that switches on and off at random, once with the
//! corrections (reference probe, thread CPU time) and once without, side by side.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hwnas_core::rng::SplitMix64;

use crate::util::{Background, one_at_a_time, s, succeeded};

/// The core both hwnas and the load are pinned to.
const CORE: &str = "0";

/// A busy loop on one core that switches on and off every 1-4 s at random (seeded), for at
/// most `limit`; stopped when dropped.
fn load(seed: u64, limit: Duration) -> Background {
    Background::spawn(move |stop| {
        let mut rng = SplitMix64::new(seed);
        let start = Instant::now();
        let mut busy: Option<Child> = None;
        while !stop.load(Ordering::Relaxed) && start.elapsed() < limit {
            busy = match busy.take() {
                Some(mut child) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    None
                }
                None => Some(
                    Command::new("taskset")
                        .args(["-c", CORE, "sh", "-c", "while :; do :; done"])
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("taskset (util-linux) starts the competing process"),
                ),
            };
            let until = Instant::now() + Duration::from_millis(1000 + rng.below(3000) as u64);
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Some(mut child) = busy {
            let _ = child.kill();
            let _ = child.wait();
        }
    })
}

/// `hwnas args` pinned to the loaded core; its stdout, or a panic with everything it said.
fn pinned(args: &[&str]) -> String {
    let out = Command::new("taskset")
        .args(["-c", CORE, env!("CARGO_BIN_EXE_hwnas")])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run hwnas under taskset");
    succeeded(args, &out)
}

/// The shipped CPU profile, with the probe and the CPU clock on (`corrected`) or off. Rows stop
/// at a ±2% interval and 0.5 s instead of ±1% and 1.5 s, so that four tables fit in CI: drift
/// biases every row of a stretch alike, which a looser interval does not hide. (nb201 at the
/// shipped settings took 12 minutes instead of 6 under the load and ordered its networks no
/// better: tau 0.926, 2026-12-05.)
fn cpu_profile(dir: &Path, corrected: bool) -> PathBuf {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("device_profiles/cpu.toml"),
    )
    .unwrap();
    let name = if corrected { "corrected" } else { "raw" };
    let mut text = shipped
        .replace("name = \"cpu\"", &format!("name = \"cpu-{name}\""))
        .replace("target_ci = 0.01", "target_ci = 0.02")
        .replace("max_ms = 1500.0", "max_ms = 500.0");
    assert!(text.contains("target_ci = 0.02") && text.contains("max_ms = 500.0"));
    if !corrected {
        text.push_str("probe_runs = 0\ncpu_clock = false\n");
    }
    let path = dir.join(format!("cpu-{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Profile `space`, fit with `calibrate` networks, validate on 30 others: the report.
fn pipeline(dir: &Path, space: &str, corrected: bool, calibrate: &str) -> serde_json::Value {
    let device = cpu_profile(dir, corrected);
    let tag = format!("{space}-{}", if corrected { "corrected" } else { "raw" });
    let table = dir.join(format!("{tag}.csv"));
    let model = dir.join(format!("{tag}.model.json"));
    pinned(&[
        "profile",
        "--device",
        s(&device),
        "--space",
        space,
        "--out",
        s(&table),
    ]);
    pinned(&[
        "fit",
        "--table",
        s(&table),
        "--device",
        s(&device),
        "--calibrate",
        calibrate,
        "--out",
        s(&model),
    ]);
    // Corrected: `validate` as a user runs it (its anchors and its rounds: the first round's
    // own score is in the report too); uncorrected: one round and no anchors, as hwnas was
    // before either.
    let (model, device) = (s(&model), s(&device));
    let mut args = vec!["validate", "--model", model, "--device", device];
    args.extend(["--samples", "30", "--json"]);
    if !corrected {
        args.extend(["--max-rounds", "1", "--repeat", "5", "--anchors", "0"]);
    }
    let report = pinned(&args);
    serde_json::from_str(&report).unwrap()
}

/// Within ±10% and Kendall tau, against the rounds pooled (`pooled`) or the first round alone.
fn score(report: &serde_json::Value, pooled: bool) -> (f64, f64) {
    let acc = if pooled {
        &report["accuracy"]
    } else {
        &report["rounds"]["accuracy_one_round"]
    };
    (
        acc["within_10"].as_f64().unwrap(),
        acc["kendall_tau"].as_f64().unwrap(),
    )
}

/// With the load switching on and off, the corrected pipeline still predicts held-out networks
/// (at least 75% within ±10%, tau ≥ 0.88, against `validate`'s pooled rounds), and where the
/// load hurt the uncorrected run beside it (below 80% within ±10%) the corrected one's first
/// round does better by at least 3 networks in 30 without ordering them worse; where the load
/// did not bite, it must be as good within noise. History of the bounds: eight CI runs under
/// the load gave corrected nb201 70-93% (tau 0.896-0.949), mbv3 53-100% (tau 0.844-0.963),
/// hence 45% and 0.80 until 2026-12-05; since skips find repeats and fused adds, three runs
/// gave 93-100% (tau 0.921-0.973); since ops and networks are timed in batches until the
/// batches agree, 100% in every one of four runs (tau 0.935-0.963, one round); then with
/// `validate`'s own rounds (to an expected tau of 0.98) nb201 100% / tau 0.937 and 0.926, mbv3
/// 100% / 0.954, and 0.960 / 0.946, 0.949 / 0.954 in two runs where each model scored at or
/// above its ceiling (the table calibrated on the validated networks themselves: 0.945-0.954).
/// Issue 19 asks tau ≥ 0.95 run after run, which that ceiling does not reach either; these
/// bounds claim what CI's noise cannot break, the README ("What limits tau") has the runs.
#[test]
fn validate_holds_under_an_injected_load() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (space, calibrate, min_10, min_tau) in
        [("nb201", "40", 0.75, 0.88), ("mbv3", "30", 0.75, 0.88)]
    {
        let load = load(19, Duration::from_secs(1800));
        let corrected = pipeline(dir.path(), space, true, calibrate);
        let raw = pipeline(dir.path(), space, false, calibrate);
        drop(load);
        let (c10, ctau) = score(&corrected, true);
        let ((f10, ftau), (r10, rtau)) = (score(&corrected, false), score(&raw, false));
        eprintln!(
            "{space} under load: corrected {:.0}% within ±10%, tau {ctau:.3} ({} rounds; the first \
             round alone {:.0}%, tau {ftau:.3}; the table calibrated on these networks themselves \
             {}); uncorrected (one round) {:.0}%, tau {rtau:.3}; drift {}; rounds {}",
            100.0 * c10,
            corrected["rounds"]["rounds"],
            100.0 * f10,
            corrected["ceiling"]["accuracy"],
            100.0 * r10,
            corrected["drift"],
            corrected["rounds"],
        );
        assert!(!corrected["drift"].is_null(), "{corrected}");
        assert!(raw["drift"].is_null(), "{raw}");
        let load_bit = r10 < 0.80;
        // One round against one round: the rounds would pool away part of what the corrections
        // correct.
        let beaten = if load_bit {
            f10 < r10 + 0.099 || ftau < rtau - 0.02
        } else {
            f10 < r10 - 0.10
        };
        if c10 < min_10 || ctau < min_tau || beaten {
            failures.push(format!(
                "{space}: corrected {} vs uncorrected {}",
                corrected["accuracy"], raw["accuracy"]
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
