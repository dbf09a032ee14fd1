//! A device timed only whole: `measure` on the real CPU, `fit --networks` (with and without a
//! prior), `validate --networks`, `fit --suggest`, and the model in `predict` and `search`.

use std::path::Path;

use crate::util::{
    fails, fit_uncalibrated, hwnas, ok, one_at_a_time, quick_cpu_profile, read_json, s, succeeded,
};

/// The `arch,latency_ms` rows of a file `measure` wrote.
fn rows(path: &Path) -> Vec<(String, f64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("arch,"))
        .map(|l| {
            let (arch, rest) = l.rsplit_once("\",").unwrap();
            let ms = rest.split(',').next().unwrap().parse().unwrap();
            (arch.trim_start_matches('"').to_string(), ms)
        })
        .collect()
}

fn write_rows(path: &Path, rows: &[(String, f64)]) {
    let text: String = rows
        .iter()
        .map(|(a, ms)| format!("\"{a}\",{ms}\n"))
        .collect();
    std::fs::write(path, format!("arch,latency_ms\n{text}")).unwrap();
}

#[test]
fn a_device_timed_whole_is_modelled_from_its_networks() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f);
    let device = quick_cpu_profile(dir.path());
    // Which networks to time first, before any is timed: the roofline's most informative.
    ok(&[
        "fit",
        "--space",
        "nb201",
        "--suggest",
        "6",
        "--suggest-out",
        s(&d("first.txt")),
    ]);
    ok(&[
        "measure",
        "--device",
        s(&device),
        "--space",
        "nb201",
        "--archs",
        s(&d("first.txt")),
        "--out",
        s(&d("first.csv")),
    ]);
    let first = rows(&d("first.csv"));
    assert_eq!(first.len(), 6);
    assert!(first.iter().all(|(_, ms)| *ms > 0.0), "{first:?}");
    // More at random, split into what the fit sees and what it is scored on.
    ok(&[
        "measure",
        "--device",
        s(&device),
        "--space",
        "nb201",
        "--samples",
        "30",
        "--seed",
        "4",
        "--speed-of",
        s(&d("first.csv")),
        "--out",
        s(&d("more.csv")),
    ]);
    // Both files at the first sitting's probe time: timings of two sittings compare.
    let probe = |f: &str| {
        let text = std::fs::read_to_string(d(f)).unwrap();
        let line = text.lines().find(|l| l.starts_with("# probe_us: "));
        line.unwrap_or_else(|| panic!("{f}:\n{text}")).to_string()
    };
    assert_eq!(probe("first.csv"), probe("more.csv"));
    // Each file says how far two timings of one network lie apart in its sitting.
    let header = std::fs::read_to_string(d("first.csv")).unwrap();
    assert!(
        header.contains("# noise floor: median ") && header.contains("(6 networks timed twice)"),
        "{header}"
    );
    let more = rows(&d("more.csv"));
    let mut train = first.clone();
    train.extend(more[..10].iter().cloned());
    write_rows(&d("train.csv"), &train);
    write_rows(&d("held.csv"), &more[10..]);

    let out = ok(&[
        "fit",
        "--space",
        "nb201",
        "--networks",
        s(&d("train.csv")),
        "--name",
        "box",
        "--out",
        s(&d("box.model.json")),
    ]);
    assert!(out.contains("fitted to 16 networks timed whole"), "{out}");
    assert!(out.contains("on the roofline (no --prior)"), "{out}");
    let model = read_json(&d("box.model.json"));
    assert_eq!(model["device"], "box");
    assert_eq!(model["calibration_archs"].as_array().unwrap().len(), 16);
    assert!(
        model["calibration"]["posterior"]["inverse"].is_array(),
        "{model}"
    );

    ok(&[
        "validate",
        "--model",
        s(&d("box.model.json")),
        "--networks",
        s(&d("held.csv")),
        "--out",
        s(&d("v")),
        "--json",
    ]);
    let report = read_json(&d("v.json"));
    assert_eq!(report["samples"], 20);
    let acc = &report["accuracy"];
    // Ranking survives a busy machine; the ±10% share is in the README, measured quietly.
    assert!(acc["spearman_rho"].as_f64().unwrap() >= 0.9, "{report}");
    assert!(acc["rmspe"].as_f64().unwrap() < 0.25, "{report}");
    // Scored on its own training file, it has nothing left to score, and says so; on a file
    // with more, it leaves the fitted networks out.
    let err = fails(&[
        "validate",
        "--model",
        s(&d("box.model.json")),
        "--networks",
        s(&d("train.csv")),
    ]);
    assert!(err.contains("fitted on all 16"), "{err}");
    let all = d("all.csv");
    let mut everything = train.clone();
    everything.extend(more[10..].iter().cloned());
    write_rows(&all, &everything);
    let text = ok(&[
        "validate",
        "--model",
        s(&d("box.model.json")),
        "--networks",
        s(&all),
    ]);
    assert!(
        text.contains("16 networks the model was fitted on left out"),
        "{text}"
    );

    // The model predicts, with each prediction's own interval, and drives a search.
    let arch = &more[12].0;
    let json = ok(&[
        "predict",
        "--model",
        s(&d("box.model.json")),
        "--space",
        "nb201",
        "--arch",
        arch,
        "--json",
    ]);
    let p = &serde_json::from_str::<serde_json::Value>(&json).unwrap()[0];
    assert!(p["basis"].as_str().unwrap().contains("posterior"), "{p}");
    let (ms, lo, hi) = (
        p["latency_us"].as_f64().unwrap(),
        p["low_us"].as_f64().unwrap(),
        p["high_us"].as_f64().unwrap(),
    );
    assert!(lo < ms && ms < hi && hi / lo < 2.0, "{p}");
    ok(&[
        "search",
        "--space",
        "nb201",
        "--model",
        s(&d("box.model.json")),
        "--accuracy",
        &crate::util::nb201_accuracy(),
        "--max-evaluations",
        "300",
        "--seed",
        "1",
        "--out",
        s(&d("front")),
    ]);
    assert!(d("front/front.csv").exists());

    // The next networks to time: none already timed, read back from a search's front too.
    ok(&[
        "fit",
        "--space",
        "nb201",
        "--networks",
        s(&d("train.csv")),
        "--out",
        s(&d("again.model.json")),
        "--suggest",
        "4",
        "--suggest-out",
        s(&d("next.txt")),
    ]);
    let next: Vec<String> = std::fs::read_to_string(d("next.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(next.len(), 4);
    assert!(
        next.iter().all(|a| train.iter().all(|(t, _)| t != a)),
        "{next:?}"
    );
    let from_front = ok(&[
        "fit",
        "--space",
        "nb201",
        "--networks",
        s(&d("train.csv")),
        "--suggest",
        "3",
        "--candidates",
        s(&d("front/front.csv")),
    ]);
    assert_eq!(from_front.lines().count(), 3, "{from_front}");
}

#[test]
fn another_devices_table_is_a_prior() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f);
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/few_shot");
    ok(&[
        "fit",
        "--table",
        s(&data.join("cpu-nb201-int8.csv")),
        "--calibrate",
        "0",
        "--out",
        s(&d("int8.model.json")),
    ]);
    // 20 of this CPU's fp32 timings (committed), the rest held out.
    let timed = rows(&data.join("cpu-nb201-networks.csv"));
    write_rows(&d("train.csv"), &timed[..20]);
    write_rows(&d("held.csv"), &timed[20..]);
    let out = ok(&[
        "fit",
        "--space",
        "nb201",
        "--networks",
        s(&d("train.csv")),
        "--prior",
        s(&d("int8.model.json")),
        "--out",
        s(&d("fp32.model.json")),
    ]);
    assert!(out.contains("22 ops of `cpu`"), "{out}");
    let model = read_json(&d("fp32.model.json"));
    let provenance = model["provenance"].to_string();
    assert!(
        provenance.contains("\"basis\"") && provenance.contains("fp32"),
        "{provenance}"
    );
    assert!(!provenance.contains("probe_nominal_us"), "{provenance}");
    ok(&[
        "validate",
        "--model",
        s(&d("fp32.model.json")),
        "--networks",
        s(&d("held.csv")),
        "--out",
        s(&d("v")),
    ]);
    let acc = &read_json(&d("v.json"))["accuracy"];
    // Committed timings, so this is arithmetic, not a measurement: the fp32 CPU ranked from its
    // int8 table and 20 networks. (The share within ±10% depends on which 20 — these, the
    // first of the sitting, include some timed in its slow spell: 67% — and is measured over
    // draws in tests/few_shot.rs.)
    assert!(acc["spearman_rho"].as_f64().unwrap() >= 0.98, "{acc}");

    // Two timings taken while something else ran: named, the fit still written.
    let mut disturbed = timed[..20].to_vec();
    for i in [4, 13] {
        disturbed[i].1 *= 1.5;
    }
    let (file, prior, out) = (
        d("disturbed.csv"),
        d("int8.model.json"),
        d("disturbed.model.json"),
    );
    write_rows(&file, &disturbed);
    let args = [
        "fit",
        "--space",
        "nb201",
        "--networks",
        s(&file),
        "--prior",
        s(&prior),
        "--out",
        s(&out),
    ];
    let run = hwnas(&args);
    succeeded(&args, &run);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("disturbed.csv"), "{err}");
    for i in [4, 13] {
        assert!(
            err.contains(&disturbed[i].0),
            "{} not named:\n{err}",
            disturbed[i].0
        );
    }
}

/// `validate`'s ceiling, on this CPU's committed op table and timings (arithmetic, not a
/// measurement): the uncalibrated op sum is off by its scale (RMSPE 12.7%); the same sums
/// calibrated on the 400 networks themselves leave 2.6%, and order them barely better (tau 0.942
/// against the sum's 0.938): what holds this table's order back is not its calibration. With
/// fewer networks than a calibration needs, the report says so instead of a number.
#[test]
fn the_ceiling_says_what_calibrating_the_table_could_reach() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f);
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/few_shot");
    fit_uncalibrated(&data.join("cpu-mbv3.csv"), &d("m.json"));
    let validate = |timings: &Path| {
        let text = ok(&[
            "validate",
            "--model",
            s(&d("m.json")),
            "--networks",
            s(timings),
            "--out",
            s(&d("v")),
        ]);
        (text, read_json(&d("v.json")))
    };
    let (text, report) = validate(&data.join("cpu-mbv3-networks.csv"));
    assert!(text.contains("ceiling           Kendall tau"), "{text}");
    let (model, best) = (&report["accuracy"], &report["ceiling"]);
    let f = |acc: &serde_json::Value, k: &str| acc[k].as_f64().unwrap();
    assert_eq!(best["networks"], report["samples"], "{best}");
    assert_eq!(best["accuracy"]["n"], 400, "{best}");
    assert!(
        f(&best["accuracy"], "rmspe") < 0.3 * f(model, "rmspe"),
        "{best} {model}"
    );
    assert!(
        f(&best["accuracy"], "kendall_tau") > f(model, "kendall_tau") - 0.005,
        "{best} {model}"
    );

    let few = d("few.csv");
    write_rows(&few, &rows(&data.join("cpu-mbv3-networks.csv"))[..3]);
    let (text, report) = validate(&few);
    let why = report["ceiling"]["why"].as_str().unwrap_or_default();
    assert!(why.contains("at least 4"), "{report}");
    assert!(text.contains("ceiling           not fitted"), "{text}");
}

#[test]
fn bad_timings_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f);
    let arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|";
    let write = |name: &str, text: &str| {
        std::fs::write(d(name), text).unwrap();
        d(name)
    };
    let fit = |file: &Path| {
        fails(&[
            "fit",
            "--space",
            "nb201",
            "--networks",
            s(file),
            "--out",
            s(&d("m.json")),
        ])
    };
    let err = fit(&write(
        "nan.csv",
        &format!("arch,latency_ms\n\"{arch}\",fast\n"),
    ));
    assert!(
        err.contains("nan.csv") && err.contains("not a number"),
        "{err}"
    );
    let err = fit(&write("bad.csv", "arch,latency_ms\n|conv~0|,1.0\n"));
    assert!(err.contains("bad.csv") && err.contains("row 2"), "{err}");
    let err = fit(&write(
        "neg.csv",
        &format!("arch,latency_ms\n\"{arch}\",-1\n"),
    ));
    assert!(err.contains("neg.csv") && err.contains("positive"), "{err}");
    let err = fit(&write(
        "two.csv",
        &format!(
            "arch,latency_ms\n\"{arch}\",1\n\"|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|\",0.2\n"
        ),
    ));
    assert!(
        err.contains("two.csv") && err.contains("at least 3"),
        "{err}"
    );
    assert!(!d("m.json").exists(), "nothing written on a refusal");
    let err = fit(&write("cols.csv", "arch,time\n"));
    assert!(err.contains("cols.csv") && err.contains("latency"), "{err}");
    let err = fails(&[
        "fit",
        "--space",
        "nb201",
        "--networks",
        s(&d("neg.csv")),
        "--prior",
        s(&d("missing.model.json")),
        "--out",
        s(&d("m.json")),
    ]);
    assert!(err.contains("missing.model.json"), "{err}");
    let err = fails(&[
        "measure",
        "--device",
        "device_profiles/cpu.toml",
        "--space",
        "nb201",
        "--speed-of",
        s(&d("neg.csv")),
        "--out",
        s(&d("t.csv")),
    ]);
    assert!(err.contains("neg.csv") && err.contains("probe_us"), "{err}");
    let err = fails(&[
        "fit",
        "--networks",
        s(&d("neg.csv")),
        "--out",
        s(&d("m.json")),
    ]);
    assert!(err.contains("--space"), "{err}");
    let err = fails(&[
        "validate",
        "--model",
        s(&d("m.json")),
        "--networks",
        s(&d("neg.csv")),
    ]);
    assert!(err.contains("m.json"), "{err}");
}
