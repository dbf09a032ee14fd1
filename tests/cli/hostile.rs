//! Bad input: wrong flags, closed pipes, and truncated, corrupted or mismatched files of every kind, each named.

use std::process::Command;

use crate::util::{fails, ok, one_at_a_time, quick_cpu_profile, s};

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
