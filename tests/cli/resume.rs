//! Searches that stop and go on: a search killed mid-generation resumes from its state file to
//! the result of one never stopped, and `--accuracy ask` hands each generation out through
//! files, as a scheduler's loop would answer it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{fails, mock_model, nb201_accuracy, ok, s};

/// nb201 against the mock model in `dir`: 300 evaluations in 10 generations.
fn search_args(dir: &Path, accuracy: &str, out: &Path) -> Vec<String> {
    [
        "search",
        "--space",
        "nb201",
        "--model",
        s(&dir.join("nb201.model.json")),
        "--accuracy",
        accuracy,
        "--max-evaluations",
        "300",
        "--population",
        "30",
        "--seed",
        "4",
        "--out",
        s(out),
    ]
    .map(String::from)
    .to_vec()
}

/// `hwnas args` in the background, its output dropped (a pipe nobody reads could fill and
/// stall it).
fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hwnas"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An accuracy command answering from NAS-Bench-201's table that counts its calls and, on the
/// call numbered in `kill_at`, kills the search (whose pid is in `pid`) with SIGKILL.
fn accuracy_command(dir: &Path) -> String {
    let csv = nb201_accuracy();
    let csv = csv.strip_prefix("table:").unwrap();
    let script = dir.join("accuracy.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncd {d}\nn=$(($(cat count 2>/dev/null || echo 0) + 1)); echo $n > count\n\
             if [ \"$n\" = \"$(cat kill_at 2>/dev/null)\" ]; then kill -9 $(cat pid); sleep 10; fi\n\
             awk -F, 'NR==FNR {{ a[$2] = $3; next }} {{ print a[$0] }}' {csv} -\n",
            d = s(dir)
        ),
    )
    .unwrap();
    format!("cmd:sh {}", s(&script))
}

#[test]
fn a_killed_search_resumes_to_the_result_of_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mock_model(d, "nb201", "nb201");
    let accuracy = accuracy_command(d);
    let straight = d.join("straight");
    let args = search_args(d, &accuracy, &straight);
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let generations: usize = read(&d.join("count")).trim().parse().unwrap();
    assert_eq!(generations, 10);

    // The same search with a state file, killed during its fourth generation's accuracies.
    std::fs::write(d.join("count"), "0").unwrap();
    std::fs::write(d.join("kill_at"), "4").unwrap();
    let (killed, state) = (d.join("killed"), d.join("run/state.json"));
    let mut args = search_args(d, &accuracy, &killed);
    args.extend(["--state".into(), s(&state).into()]);
    let mut child = spawn(&args);
    std::fs::write(d.join("pid"), child.id().to_string()).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success() && status.code().is_none(), "{status}");
    assert!(!killed.join("front.csv").exists());
    // Three generations' accuracies were saved before the kill.
    let saved: serde_json::Value = serde_json::from_str(&read(&state)).unwrap();
    assert_eq!(saved["accuracies"].as_array().unwrap().len(), 90);

    let err = fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("--resume"), "{err}");
    let err = fails(&["search", "--resume", s(&state), "--seed", "5"]);
    assert!(err.contains("no other arguments"), "{err}");
    std::fs::write(d.join("kill_at"), "0").unwrap();
    ok(&["search", "--resume", s(&state)]);
    for file in ["front.csv", "history.csv"] {
        assert_eq!(
            read(&killed.join(file)),
            read(&straight.join(file)),
            "{file}"
        );
    }
    // The resumed search asked only for the generations never told: 4 calls before the kill
    // (the fourth lost with it), then generations 4 to 10.
    let calls: usize = read(&d.join("count")).trim().parse().unwrap();
    assert_eq!(calls, 4 + generations - 3);
}

#[test]
fn accuracy_ask_hands_each_generation_out_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mock_model(d, "nb201", "nb201");
    let table = d.join("table");
    let args = search_args(d, &nb201_accuracy(), &table);
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let accuracies: std::collections::HashMap<String, String> = {
        let csv = nb201_accuracy();
        read(Path::new(csv.strip_prefix("table:").unwrap()))
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[1].to_string(), f[2].to_string())
            })
            .collect()
    };
    let err = fails(
        &search_args(d, "ask", &d.join("x"))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(err.contains("needs --state"), "{err}");
    let asked = d.join("asked");
    let state = d.join("run/state.json");
    let mut args = search_args(d, "ask", &asked);
    args.extend(["--state".into(), s(&state).into()]);
    let mut child = spawn(&args);
    let (ask, tell) = (d.join("run/ask.txt"), d.join("run/tell.csv"));
    let started = Instant::now();
    let mut batches = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "no end");
        if !ask.exists() || tell.exists() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let rows: String = read(&ask)
            .lines()
            .map(|a| format!("\"{a}\",{}\n", accuracies[a]))
            .collect();
        std::fs::write(d.join("run/answer.tmp"), format!("arch,accuracy\n{rows}")).unwrap();
        std::fs::rename(d.join("run/answer.tmp"), &tell).unwrap();
        batches += 1;
    };
    assert!(status.success(), "{status}");
    assert_eq!(batches, 10);
    assert_eq!(
        read(&asked.join("front.csv")),
        read(&table.join("front.csv"))
    );
    assert!(!ask.exists() && !tell.exists());
}
