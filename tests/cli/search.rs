//! Search: errors a user meets, the exhaustive NAS-Bench-201 front with the benchmark's accuracies,
//! and many architectures predicted at once.

use crate::util::{fails, mock_model, nb201_accuracy, ok, one_at_a_time, s};

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
    let dir = tempfile::tempdir().unwrap();
    let accuracy = nb201_accuracy();
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

/// `predict --archs` and `--all` agree with `predict --arch`, take genomes as `space genes`
/// lists them, answer standard input line by line, and stop at a bad line with its number.
#[test]
fn batch_predictions_match_single_ones() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let models = [
        mock_model(d, "nb201", "nb201"),
        mock_model(d, "mbv3", "mbv3"),
    ];
    let genes = ok(&["space", "genes", "--space", "mbv3"]);
    assert_eq!(genes.lines().count(), 47, "{genes}");
    assert!(
        genes.starts_with("gene,levels,ordered,choices\ngene0,5,true,"),
        "{genes}"
    );
    // The largest mbv3 network: resolution 224 (level 4), then the top level of every gene.
    let genome = format!("4,{}", vec!["2"; 45].join(","));
    let big = "r224-d44444-k77777777777777777777-e66666666666666666666";
    let archs = d.join("archs.txt");
    std::fs::write(&archs, format!("# a comment\n{genome}\n\n{big}\n")).unwrap();
    let mbv3 = s(&models[1]);
    let batch = ok(&[
        "predict",
        "--model",
        mbv3,
        "--space",
        "mbv3",
        "--archs",
        s(&archs),
        "--sizes",
    ]);
    let lines: Vec<&str> = batch.lines().collect();
    assert_eq!(lines[0], "arch,latency_ms,mflops,mparams,peak_memory_mb");
    assert_eq!(lines.len(), 3, "{batch}");
    assert_eq!(lines[1], lines[2]);
    assert!(lines[1].starts_with(&format!("\"{big}\",")), "{batch}");
    let single = read_predict_ms(&ok(&[
        "predict", "--model", mbv3, "--space", "mbv3", "--arch", big, "--json",
    ]));
    let batched: f64 = lines[1].split(',').nth(1).unwrap().parse().unwrap();
    assert!(
        (batched - single).abs() < 1e-6 * single,
        "{batched} vs {single}"
    );
    // Standard input, and a bad line named by its number after the good ones are answered.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hwnas"))
        .args([
            "predict", "--model", mbv3, "--space", "mbv3", "--archs", "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{big}\n1,2,3").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--archs - line 2") && err.contains("46 genes"),
        "{err}"
    );
    // Every nb201 cell, once each.
    let all = ok(&[
        "predict",
        "--model",
        s(&models[0]),
        "--space",
        "nb201",
        "--all",
    ]);
    let cells: std::collections::HashSet<&str> = all.lines().skip(1).collect();
    assert_eq!(cells.len(), 15_625);
    let err = fails(&["predict", "--model", mbv3, "--space", "mbv3", "--all"]);
    assert!(err.contains("--all") && err.contains("--archs"), "{err}");
}

fn read_predict_ms(json: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v[0]["latency_us"].as_f64().unwrap() / 1e3
}
