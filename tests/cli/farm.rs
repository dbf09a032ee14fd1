//! Profiling that survives: deterministic mock runs, shards merged, random kills resumed, hung kernels stopped, noisy rows retried.

use std::path::Path;
use std::process::Command;

use hwnas_core::table::LatencyTable;

use crate::util::{fails, hwnas, ok, one_at_a_time, profile_around_a_hung_op, s};

#[test]
fn mock_profiles_are_deterministic() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let out = dir.path().join(name);
        ok(&[
            "profile",
            "--device",
            "device_profiles/mock.toml",
            "--space",
            "mbv3",
            "--out",
            s(&out),
        ]);
        LatencyTable::read(&out).unwrap().rows
    };
    let (a, b) = (run("a.csv"), run("b.csv"));
    assert_eq!(a.len(), 450);
    assert_eq!(a, b);
    assert!(a.iter().all(|r| r.provider == "mock"));
}

#[test]
fn shards_profiled_apart_merge_into_the_whole_table() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let part = |i: usize| dir.path().join(format!("p{i}.csv"));
    let mock = [
        "profile",
        "--device",
        "device_profiles/mock.toml",
        "--space",
        "nb201",
    ];
    for i in 1..=2 {
        let shard = format!("{i}/2");
        ok(&[&mock[..], &["--shard", &shard, "--out", s(&part(i))]].concat());
    }
    let whole = dir.path().join("whole.csv");
    ok(&[&mock[..], &["--out", s(&whole)]].concat());
    let merged = dir.path().join("merged.csv");
    let out = ok(&[
        "table",
        "merge",
        s(&part(1)),
        s(&part(2)),
        "--out",
        s(&merged),
    ]);
    assert!(out.contains("merged 22 rows from 2 tables"), "{out}");
    let keys = |p: &Path| {
        let mut k: Vec<String> = LatencyTable::read(p)
            .unwrap()
            .rows
            .into_iter()
            .map(|r| r.key)
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys(&merged), keys(&whole));
    assert!(ok(&["table", "check", s(&merged)]).contains("ok"));
    // A shard alone, noisy rows, a missing shard and another device are all flagged.
    let err = hwnas(&["table", "check", s(&part(1))]);
    assert!(!err.status.success() && String::from_utf8_lossy(&err.stdout).contains("shard 1/2"));
    let noisy = hwnas(&["table", "check", s(&merged), "--max-ci", "0.000001"]);
    assert!(!noisy.status.success() && String::from_utf8_lossy(&noisy.stdout).contains("noisier"));
    let alone = hwnas(&["table", "merge", s(&part(1)), "--out", s(&merged)]);
    assert!(
        !alone.status.success()
            && String::from_utf8_lossy(&alone.stderr).contains("2/2 are missing")
    );
    let other = dir.path().join("other.csv");
    let text = std::fs::read_to_string(part(2))
        .unwrap()
        .replace("# device: mock", "# device: phone");
    std::fs::write(&other, text).unwrap();
    let err = fails(&[
        "table",
        "merge",
        s(&part(1)),
        s(&other),
        "--out",
        s(&merged),
    ]);
    assert!(
        err.contains("differ in device") && err.contains("other.csv"),
        "{err}"
    );
    let err = fails(&[&mock[..], &["--shard", "3/2", "--out", s(&merged)]].concat());
    assert!(err.contains("I/N"), "{err}");
}

/// The variables a scheduler sets for task `i` (from 0) of an array.
type TaskVars = fn(usize) -> Vec<(&'static str, String)>;

/// `--shard auto` in each scheduler's job array: the tasks' parts merge into the whole.
#[test]
fn shards_numbered_by_the_scheduler_merge_into_the_whole_table() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let profile = |out: &Path, vars: &[(&str, String)]| {
        let args = [
            "profile",
            "--device",
            "device_profiles/mock.toml",
            "--space",
            "nb201",
            "--shard",
            "auto",
            "--out",
            s(out),
        ];
        let output = Command::new(env!("CARGO_BIN_EXE_hwnas"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // sbatch --array=1-3, a 3-completion Indexed Job, a 3-child AWS Batch array.
    let schedulers: [(&str, TaskVars); 3] = [
        ("slurm", |i| {
            vec![
                ("SLURM_ARRAY_TASK_ID", (i + 1).to_string()),
                ("SLURM_ARRAY_TASK_MIN", "1".into()),
                ("SLURM_ARRAY_TASK_MAX", "3".into()),
                ("SLURM_ARRAY_TASK_COUNT", "3".into()),
            ]
        }),
        ("k8s", |i| {
            vec![
                ("JOB_COMPLETION_INDEX", i.to_string()),
                ("HWNAS_SHARDS", "3".into()),
            ]
        }),
        ("aws", |i| {
            vec![
                ("AWS_BATCH_JOB_ARRAY_INDEX", i.to_string()),
                ("AWS_BATCH_JOB_ARRAY_SIZE", "3".into()),
            ]
        }),
    ];
    for (name, vars) in schedulers {
        let parts: Vec<_> = (0..3)
            .map(|i| dir.path().join(format!("{name}-{i}.csv")))
            .collect();
        for (i, part) in parts.iter().enumerate() {
            let (success, err) = profile(part, &vars(i));
            assert!(success, "{name} task {i}: {err}");
            let t = LatencyTable::read(part).unwrap();
            assert_eq!(
                t.meta("shard"),
                Some(format!("{}/3", i + 1).as_str()),
                "{name}"
            );
            assert!(t.meta("shard_from").is_some());
        }
        let merged = dir.path().join(format!("{name}.csv"));
        let args: Vec<&str> = ["table", "merge"]
            .into_iter()
            .chain(parts.iter().map(|p| s(p)))
            .chain(["--out", s(&merged)])
            .collect();
        assert!(ok(&args).contains("merged 22 rows from 3 tables"), "{name}");
    }
    let (success, err) = profile(&dir.path().join("none.csv"), &[]);
    assert!(
        !success && err.contains("outside a job array give --shard I/N"),
        "{err}"
    );
}

#[test]
fn profiling_killed_at_random_resumes_without_losing_or_repeating_a_row() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("killed.csv");
    let args = [
        "profile",
        "--device",
        "device_profiles/cpu.toml",
        "--space",
        "nb201",
        "--out",
        s(&table),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_hwnas"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill -9 once a few rows are on disk: mid-run (the whole profile takes ~9 s).
    let rows_on_disk = || {
        LatencyTable::read(&table)
            .map(|t| t.rows)
            .unwrap_or_default()
    };
    let started = std::time::Instant::now();
    while rows_on_disk().len() < 3 && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = rows_on_disk();
    assert!(
        (3..22).contains(&before.len()),
        "killed after {} rows",
        before.len()
    );
    let out = ok(&[&args[..], &["--resume"]].concat());
    assert!(
        out.contains(&format!("measured {} ops", 22 - before.len())),
        "{out}"
    );
    let after = rows_on_disk();
    assert_eq!(after.len(), 22);
    assert_eq!(
        after[..before.len()],
        before[..],
        "rows measured before the kill are kept"
    );
    let keys: std::collections::HashSet<&str> = after.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys.len(), 22, "no row is repeated");
}

/// A kernel that does not come back within the profile's timeout is stopped (its measuring
/// process killed) and recorded failed; the ops around it, measured in the same interleaved
/// group, are measured and kept.
#[test]
fn a_hung_kernel_is_stopped_and_the_run_goes_on() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("cpu-hang.toml");
    std::fs::write(
        &device,
        "name = \"cpu-hang\"\nbackend = \"ort\"\n[ort]\ntimeout_ms = 1000\n[measure]\nmin_runs = 10\n",
    )
    .unwrap();
    profile_around_a_hung_op(&device, &dir.path().join("t.csv"));
}

#[test]
fn rows_too_noisy_twice_are_left_for_a_later_resume() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.csv");
    let args = [
        "profile",
        "--device",
        "device_profiles/mock.toml",
        "--space",
        "nb201",
        "--out",
        s(&table),
    ];
    let err = fails(&[&args[..], &["--max-noise", "0.000001"]].concat());
    assert!(
        err.contains("too noisy") && err.contains("22 ops failed"),
        "{err}"
    );
    assert_eq!(LatencyTable::read(&table).unwrap().rows.len(), 0);
    let out = ok(&[&args[..], &["--max-noise", "0.5", "--resume"]].concat());
    assert!(out.contains("measured 22 ops"), "{out}");
}
