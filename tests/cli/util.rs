//! Helpers: run the binary, expect success or failure, quick device profiles.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// The tests here measure on the real CPU; one at a time, so that none measures while another
/// loads the machine (two cores: a parallel test halves what a measurement sees).
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn hwnas(args: &[&str]) -> Output {
    hwnas_with_env(args, &[])
}

/// `hwnas args` with these environment variables set (its workers inherit them).
pub fn hwnas_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hwnas"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run hwnas")
}

pub fn ok(args: &[&str]) -> String {
    succeeded(args, &hwnas(args))
}

/// The stdout of a run of `hwnas args` that must have succeeded; a panic with all it said.
pub fn succeeded(args: &[&str], out: &Output) -> String {
    assert!(
        out.status.success(),
        "hwnas {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn fails(args: &[&str]) -> String {
    let out = hwnas(args);
    assert!(!out.status.success(), "hwnas {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A quick CPU profile: the real ORT CPU EP with a short measurement, for tests.
pub fn quick_cpu_profile(dir: &Path) -> PathBuf {
    let path = dir.join("cpu-quick.toml");
    std::fs::write(
        &path,
        "name = \"cpu-quick\"\nbackend = \"ort\"\n[measure]\nmin_runs = 10\nmax_ms = 50.0\ntarget_ci = 0.05\nround_ms = 5.0\n",
    )
    .unwrap();
    path
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A short-measurement wgpu profile on the best adapter there (lavapipe in CI), without the
/// reference probe (29 ms a run on lavapipe; `extra_measure` may turn it on), and with
/// lavapipe's deadline (`device_profiles/lavapipe.toml`: 60 s) unless `extra_wgpu` sets one: a
/// whole SqueezeNet on lavapipe missed the 10 s default in a CI run beside a load pinned to a
/// core (2026-12-05), and a deadline is not what these tests check.
pub fn quick_gpu_profile(dir: &Path, name: &str, extra_wgpu: &str, extra_measure: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let deadline = if extra_wgpu.contains("timeout_ms") {
        ""
    } else {
        "timeout_ms = 60000.0\n"
    };
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\nbackend = \"wgpu\"\n[wgpu]\n{deadline}{extra_wgpu}\n[measure]\nwarmup_runs = 1\nwarmup_ms = 0.0\nmin_runs = 5\nmax_ms = 100.0\ntarget_ci = 0.05\n{}\n",
            if extra_measure.contains("probe_runs") {
                extra_measure.to_string()
            } else {
                format!("probe_runs = 0\n{extra_measure}")
            }
        ),
    )
    .unwrap();
    path
}

/// The contents of a JSON file hwnas wrote.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `--accuracy` for NAS-Bench-201's CIFAR-10 accuracies in the shared data set, which the
/// tests need (a missing file fails them).
pub fn nb201_accuracy() -> String {
    let acc =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nb201/cifar10_test_acc.csv");
    assert!(
        acc.exists(),
        "{} (the shared NAS-Bench-201 data) is missing",
        acc.display()
    );
    format!("table:{}", s(&acc))
}

/// A latency model of `space` on the mock device (deterministic, no hardware), fitted without
/// calibration: `dir/{name}.model.json`, from the table `dir/{name}.csv`, which profiled every
/// op of the space.
pub fn mock_model(dir: &Path, name: &str, space: &str) -> PathBuf {
    let (table, model) = (
        dir.join(format!("{name}.csv")),
        dir.join(format!("{name}.model.json")),
    );
    let profiled = ok(&[
        "profile",
        "--device",
        "device_profiles/mock.toml",
        "--space",
        space,
        "--out",
        s(&table),
    ]);
    assert!(!profiled.contains("PARTIAL"), "{profiled}");
    fit_uncalibrated(&table, &model);
    model
}

/// `hwnas fit --table TABLE --calibrate 0 --out MODEL`: the table's own model, no network
/// measured.
pub fn fit_uncalibrated(table: &Path, model: &Path) {
    ok(&[
        "fit",
        "--table",
        s(table),
        "--calibrate",
        "0",
        "--out",
        s(model),
    ]);
}

/// Profile an op that hangs (~470 GFLOP a run: seconds on any core, far past the 1 s timeout
/// the device profile must set) between two small ones: the run fails naming it, and the two
/// ops interleaved with it are measured and kept in `table`.
pub fn profile_around_a_hung_op(device: &Path, table: &Path) {
    let hung = "conv-in:8x512x112x112-out:512-k:3-s:1-g:1-pre:none-act:none";
    let err = fails(&[
        "profile",
        "--device",
        s(device),
        "--op",
        "add-in:1x16x32x32",
        "--op",
        hung,
        "--op",
        "add-in:1x32x16x16",
        "--out",
        s(table),
    ]);
    assert!(
        err.contains(&format!(
            "FAILED {hung}: no preparation or run finished within 1.0 s"
        )) && err.contains("1 ops failed"),
        "{err}"
    );
    let rows = hwnas_core::table::LatencyTable::read(table).unwrap().rows;
    let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["add-in:1x16x32x32", "add-in:1x32x16x16"]);
}

/// A thread a test runs beside hwnas (a load, a simulated counter's driver): it is given a
/// flag to poll, which is raised when this is dropped, and then joined.
pub struct Background {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    pub fn spawn(work: impl FnOnce(&AtomicBool) + Send + 'static) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        Background {
            stop,
            thread: Some(std::thread::spawn(move || work(&flag))),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
