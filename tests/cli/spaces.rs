//! Space files: every shipped one through the pipeline on the mock device, FBNet's on the real
//! CPU, the NAS-Bench-201 file against the built-in space with the benchmark's accuracies, and
//! bad files.

use crate::util::{
    fails, mock_model, nb201_accuracy, ok, one_at_a_time, quick_cpu_profile, read_json, s,
};

const SHIPPED: [&str; 5] = ["nb201", "mbv3", "fbnet", "proxyless", "darts"];

#[test]
fn every_shipped_space_runs_profile_fit_search_and_lut_export() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    for name in SHIPPED {
        let space = format!("spaces/{name}.toml");
        let check = ok(&["space", "check", &space]);
        assert!(check.starts_with(&format!("{name}: ")), "{check}");
        // The simulated device times ops only: no calibration on networks (the real CPU test
        // below has one).
        let model = mock_model(dir.path(), name, &space);
        // The model remembers the file, so later commands can find the space.
        assert_eq!(read_json(&model)["space"], space.as_str());
        let out = dir.path().join(format!("search-{name}"));
        let searched = ok(&[
            "search",
            "--space",
            &space,
            "--model",
            s(&model),
            "--max-evaluations",
            "150",
            "--out",
            s(&out),
        ]);
        let front = read_json(&out.join("front.json"));
        let arch = front["front"][0]["arch"].as_str().unwrap().to_string();
        assert!(!arch.is_empty(), "{searched}");
        if name == "fbnet" {
            // Every strategy runs on a file's genome (evolution and REINFORCE maximise the
            // MnasNet reward of the accuracy proxy and the latency).
            for strategy in ["evolution", "reinforce", "random"] {
                let out = dir.path().join(format!("{name}-{strategy}"));
                ok(&[
                    "search",
                    "--space",
                    &space,
                    "--model",
                    s(&model),
                    "--strategy",
                    strategy,
                    "--max-evaluations",
                    "100",
                    "--reward-target-ms",
                    "20",
                    "--out",
                    s(&out),
                ]);
                assert!(out.join("front.json").exists());
            }
        }
        let predicted = ok(&[
            "predict",
            "--model",
            s(&model),
            "--space",
            &space,
            "--arch",
            &arch,
        ]);
        assert!(predicted.contains("ms"), "{predicted}");
        let lut = dir.path().join(format!("{name}.lut.json"));
        let args = [
            "lut",
            "export",
            "--model",
            s(&model),
            "--space",
            &space,
            "--out",
            s(&lut),
        ];
        if name == "darts" {
            let err = fails(&args);
            assert!(err.contains("not a sum of independent parts"), "{err}");
        } else {
            let cut = ok(&args);
            // "at resolution R" only for a space with a resolution choice.
            assert!(cut.contains(&format!("decisions of {name}")), "{cut}");
            assert_eq!(read_json(&lut)["space"], name);
        }
        let onnx = dir.path().join(format!("{name}.onnx"));
        ok(&[
            "export",
            "--space",
            &space,
            "--arch",
            &arch,
            "--out",
            s(&onnx),
        ]);
        assert!(std::fs::metadata(&onnx).unwrap().len() > 1000);
    }
}

/// FBNet's space on the real ORT CPU EP: profile (a short measurement), fit with networks
/// measured end to end, validate on held-out ones.
#[test]
fn fbnet_space_on_the_real_cpu_end_to_end() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let device = quick_cpu_profile(dir.path());
    let (table, model) = (dir.path().join("t.csv"), dir.path().join("m.json"));
    let space = "spaces/fbnet.toml";
    ok(&[
        "profile",
        "--device",
        s(&device),
        "--space",
        space,
        "--out",
        s(&table),
    ]);
    let rows = std::fs::read_to_string(&table)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    // 132 ops to profile, and the header.
    assert_eq!(rows, 133);
    ok(&[
        "fit",
        "--table",
        s(&table),
        "--device",
        s(&device),
        "--out",
        s(&model),
        "--calibrate",
        "8",
    ]);
    // No --space: the model names the space file.
    ok(&[
        "validate",
        "--model",
        s(&model),
        "--device",
        s(&device),
        "--samples",
        "6",
        "--repeat",
        "3",
        "--out",
        s(&dir.path().join("v")),
    ]);
    let v = read_json(&dir.path().join("v.json"));
    assert_eq!(v["space"], "fbnet");
    let rmspe = v["accuracy"]["rmspe"].as_f64().unwrap();
    // A loose bound for a short measurement on a shared CI machine; the README has the quiet
    // numbers with the full measurement.
    assert!(rmspe < 0.25, "{v}");
}

/// The NAS-Bench-201 file gives the built-in space's exhaustive front with the benchmark's
/// CIFAR-10 accuracies: the same architecture strings, the same networks.
#[test]
fn nb201_file_gives_the_built_in_exhaustive_front() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let accuracy = nb201_accuracy();
    let fronts: Vec<serde_json::Value> = ["nb201", "spaces/nb201.toml"]
        .iter()
        .enumerate()
        .map(|(i, space)| {
            let out = dir.path().join(i.to_string());
            ok(&[
                "search",
                "--space",
                space,
                "--accuracy",
                &accuracy,
                "--objectives",
                "accuracy,mflops",
                "--exhaustive",
                "--out",
                s(&out),
            ]);
            read_json(&out.join("front.json"))["front"].clone()
        })
        .collect();
    assert!(fronts[0].as_array().unwrap().len() > 5);
    assert_eq!(fronts[0], fronts[1]);
}

/// A broken space file: the error names the file, the line and the key; nothing panics.
#[test]
fn bad_space_files_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let fbnet = std::fs::read_to_string("spaces/fbnet.toml").unwrap();
    let darts = std::fs::read_to_string("spaces/darts.toml").unwrap();
    let nb201 = std::fs::read_to_string("spaces/nb201.toml").unwrap();
    let line_of =
        |text: &str, needle: &str| text[..text.find(needle).unwrap()].matches('\n').count() + 1;
    let cases: Vec<(String, String, String)> = vec![
        // An unknown key, a wrong type, an empty choice: the TOML reader's line.
        (
            fbnet.replacen("stride = 2\n", "stride = 2\nstrides = 2\n", 1),
            "unknown field `strides`".into(),
            format!("line {}", line_of(&fbnet, "stride = 2\n") + 1),
        ),
        (
            fbnet.replacen("out = 24", "out = \"24\"", 1),
            "positive integer".into(),
            format!("line {}", line_of(&fbnet, "out = 24")),
        ),
        (
            fbnet.replacen("out = 24", "out = []", 1),
            "empty list of choices".into(),
            "line".into(),
        ),
        (
            fbnet.replacen(
                "type = \"mbconv\"\nk = 3\nexpand = 1\ngroups = 2",
                "type = \"mbconv\"\nk = 3\nexpand = 1\ngroups = 5",
                1,
            ),
            "groups 5 must divide".into(),
            "`stage[1]`".into(),
        ),
        // A stride that leaves nothing: 2x2 pooling of a 1x1 map in the second reduction.
        (
            nb201.replacen("resolution = 32", "resolution = 2", 1),
            "window must fit".into(),
            format!("line {}, `stage[3]`", line_of(&nb201, "out = 64") - 1),
        ),
        (
            fbnet.replacen("\"k3_e1\", ", "\"k3_e9\", ", 1),
            "no block `k3_e9`".into(),
            "`stage[1].choose`".into(),
        ),
        (
            fbnet.replacen(
                "type = \"mbconv\"\nk = 3\nexpand = 3",
                "type = \"mbconv\"\nk = 3\nexpand = 3\npool = \"max\"",
                1,
            ),
            "takes no `pool`".into(),
            "`blocks.k3_e3.pool`".into(),
        ),
        (
            darts.replacen(
                "pick = 2\n",
                "edges = [[0, 2], [3, 2], [1, 3], [2, 4], [2, 5]]\n",
                1,
            ),
            "goes back".into(),
            "`cell.edges`".into(),
        ),
        (
            darts.replacen(
                "\"skip_connect\"]\noutput = \"concat\"",
                "\"skip_connect\", \"none\"]\noutput = \"concat\"",
                1,
            ) + "\n[blocks.none]\ntype = \"none\"\n",
            "hole in the concatenation".into(),
            "`cell.ops`".into(),
        ),
        (
            nb201.replacen(
                "first = { type = \"resnet_basic\", k = 3, stride = 2, pre_act = \"relu\" }\n",
                "",
                1,
            ),
            "give the stage a `first` block".into(),
            "`cell`".into(),
        ),
        // Sizes no device has memory for.
        (
            darts.replacen("repeat = 2", "repeat = 1000000", 1),
            "at most 8".into(),
            "`blocks.sep_conv_3x3.repeat`".into(),
        ),
        (
            fbnet.replacen("out = 1984", "out = 1048576", 1),
            "at most 2^28".into(),
            "`head[1]`".into(),
        ),
        (
            nb201.replacen("kind = \"cells\"", "kind = \"graph\"", 1),
            "unknown variant `graph`".into(),
            "line 8".into(),
        ),
    ];
    for (i, (text, why, at)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, &text).unwrap();
        let err = fails(&["space", "check", s(&path)]);
        assert!(
            err.contains(s(&path)) && err.contains(&why) && err.contains(&at),
            "case {i}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let err = fails(&["space", "check", "spaces/missing.toml"]);
    assert!(
        err.contains("cannot read space file spaces/missing.toml"),
        "{err}"
    );
    let err = fails(&[
        "predict",
        "--model",
        "x.json",
        "--space",
        "spaces/fbnet.toml",
        "--arch",
        "b:k3_e1",
    ]);
    assert!(!err.contains("panicked"), "{err}");
}
