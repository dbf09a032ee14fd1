//! A device that is not this machine: the worker started through a real ssh connection
//! (an `sshd` on 127.0.0.1, see `sshd.rs`), every measuring command run through it, the
//! connection dropped and the device lost midway.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hwnas_core::table::LatencyTable;

use crate::sshd::Sshd;
use crate::util::{fails, ok, one_at_a_time, profile_around_a_hung_op, read_json, s};

const HWNAS: &str = env!("CARGO_BIN_EXE_hwnas");

#[test]
fn profile_fit_validate_and_devices_run_on_the_device_over_ssh() {
    let _serial = one_at_a_time();
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let device = sshd.device_profile(dir.path(), HWNAS);
    let table = dir.path().join("t.csv");
    ok(&[
        "profile",
        "--device",
        s(&device),
        "--space",
        "nb201",
        "--out",
        s(&table),
    ]);
    let t = LatencyTable::read(&table).unwrap();
    assert_eq!(t.rows.len(), 22);
    assert_eq!(t.meta("remote"), Some(sshd.command().as_str()));
    assert!(t.meta("remote_hostname").is_some() && t.meta("ort_version").is_some());
    assert!(
        t.rows.iter().all(|r| r.load1.is_some()),
        "the device's load on every row"
    );

    let model = dir.path().join("m.json");
    let fitted = ok(&[
        "fit",
        "--table",
        s(&table),
        "--device",
        s(&device),
        "--calibrate",
        "8",
        "--out",
        s(&model),
    ]);
    assert!(
        fitted.contains("calibrated on 8 nb201 networks"),
        "{fitted}"
    );
    ok(&[
        "validate",
        "--model",
        s(&model),
        "--device",
        s(&device),
        "--samples",
        "6",
        "--repeat",
        "2",
    ]);
    let report = read_json(&dir.path().join("m.validate-nb201.json"));
    assert_eq!(report["device"], "ssh-device");
    assert!(report["accuracy"]["n"].as_u64() == Some(6), "{report}");

    // A real torchvision export travels to the device and is timed and profiled there.
    let onnx = "tests/data/torchvision/mobilenet_v3_small-224.onnx";
    let out = ok(&[
        "validate",
        "--model",
        s(&model),
        "--device",
        s(&device),
        "--onnx",
        onnx,
        "--per-layer",
        "--repeat",
        "1",
    ]);
    assert!(out.contains("ONNX Runtime's profile"), "{out}");

    let out = ok(&["devices", "--device", s(&device)]);
    assert!(
        out.contains("reached by")
            && out.contains("worker         hwnas")
            && out.contains("CPUExecutionProvider"),
        "{out}"
    );
}

/// Rows on disk now.
fn rows(table: &Path) -> Vec<hwnas_core::table::Row> {
    LatencyTable::read(table)
        .map(|t| t.rows)
        .unwrap_or_default()
}

/// Wait until `done()`, at most `limit`, else fail saying `what` did not happen.
fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_rows(table: &Path, n: usize) {
    let what = format!("{n} rows on disk");
    wait_until(&what, Duration::from_secs(120), || rows(table).len() >= n);
}

/// A dropped connection costs the ops in flight, which are measured again through a new one;
/// a device that cannot be reached at all ends the run with an error naming it, every row
/// measured kept; `--resume` completes the table once it is back.
#[test]
fn a_dropped_connection_is_redialled_and_a_lost_device_resumes() {
    let _serial = one_at_a_time();
    let mut sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let device = sshd.device_profile(dir.path(), HWNAS);
    let table = dir.path().join("t.csv");
    let args = [
        "profile",
        "--device",
        s(&device),
        "--space",
        "nb201",
        "--out",
        s(&table),
    ];
    let run = Command::new(HWNAS)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Rows are written a group (8 ops) at a time: drop the connection during the second
    // group, lose the device during the third.
    wait_for_rows(&table, 1);
    sshd.drop_connections();
    wait_for_rows(&table, 9);
    sshd.stop();
    let out = run.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("lost the device `ssh-device`: it cannot be reached again through `ssh -p")
            && err.contains("Connection refused")
            && err.contains("rerun with --resume"),
        "{err}"
    );
    let before = rows(&table);
    assert!((9..22).contains(&before.len()), "{} rows", before.len());

    sshd.listen();
    let out = ok(&[&args[..], &["--resume"]].concat());
    assert!(
        out.contains(&format!("measured {} ops", 22 - before.len())),
        "{out}"
    );
    let after = rows(&table);
    assert_eq!(
        after[..before.len()],
        before[..],
        "rows measured before are kept"
    );
    let keys: HashSet<&str> = after.iter().map(|r| r.key.as_str()).collect();
    assert_eq!((after.len(), keys.len()), (22, 22), "every op once");
    no_worker_is_left();
}

/// No worker runs on the device any more: those whose connection dropped exited by
/// themselves (at once: 65 ms here; a worker that waited for its kernel took over 10 s).
fn no_worker_is_left() {
    let pattern = format!("^{HWNAS} worker");
    let left = || {
        let pgrep = Command::new("pgrep")
            .args(["-f", &pattern])
            .stdout(Stdio::null())
            .status();
        pgrep.unwrap().success()
    };
    wait_until("every worker gone", Duration::from_secs(5), || !left());
}

/// A kernel that hangs on the device is stopped there too: the host kills its end of the
/// connection after the timeout, and the worker on the device, orphaned mid-kernel, exits
/// instead of keeping the device busy; the ops around it are measured.
#[test]
fn a_hung_kernel_on_the_device_is_stopped_there_too() {
    let _serial = one_at_a_time();
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let device = sshd.device_profile(dir.path(), HWNAS);
    let text = std::fs::read_to_string(&device).unwrap();
    std::fs::write(
        &device,
        text.replace("[ort]\n", "[ort]\ntimeout_ms = 1000\n"),
    )
    .unwrap();
    profile_around_a_hung_op(&device, &dir.path().join("t.csv"));
    no_worker_is_left();
}

/// A device whose hwnas is another build is refused at once, both builds named; one that
/// cannot be reached is named with what ssh said.
#[test]
fn another_build_on_the_device_or_no_device_is_refused() {
    let _serial = one_at_a_time();
    let mut sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    // An older hwnas: it says hello in protocol 1, then waits for a request it cannot read.
    let old = dir.path().join("hwnas-0.0.9");
    std::fs::write(
        &old,
        "#!/bin/sh\necho 'hwnas-worker {\"Hello\":{\"protocol\":1,\"version\":\"0.0.9\"}}'\nread request\n",
    )
    .unwrap();
    let made_executable = Command::new("chmod").arg("+x").arg(&old).status().unwrap();
    assert!(made_executable.success());
    let table = dir.path().join("t.csv");
    let profile_on = |device: &Path| {
        fails(&[
            "profile",
            "--device",
            s(device),
            "--space",
            "nb201",
            "--out",
            s(&table),
        ])
    };
    let err = profile_on(&sshd.device_profile(dir.path(), s(&old)));
    assert!(
        err.contains("the device runs hwnas 0.0.9 (worker protocol 1) and this host hwnas")
            && err.contains("install the same hwnas on both")
            && err.contains("ssh-device.toml"),
        "{err}"
    );

    sshd.stop();
    let device = sshd.device_profile(dir.path(), HWNAS);
    let err = fails(&[
        "validate",
        "--model",
        "nothing.json",
        "--device",
        s(&device),
    ]);
    assert!(err.contains("nothing.json"), "{err}");
    let err = profile_on(&device);
    assert!(
        err.contains("cannot reach the device `ssh-device` through `ssh -p")
            && err.contains("Connection refused"),
        "{err}"
    );
}
