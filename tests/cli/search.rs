//! Search: errors a user meets, and the exhaustive NAS-Bench-201 front with the benchmark's accuracies.

use crate::util::{fails, nb201_accuracy, ok, one_at_a_time, s};

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
