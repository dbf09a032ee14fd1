//! `--energy` from profile to search. This VM has no energy counter, so that error is tested
//! as it is, and the whole path (worker, meter, table, resume, `table show`, fit, validate,
//! predict, search) runs against a simulated RAPL counter: a powercap file tree that a driver
//! thread here updates every millisecond, whose package draws an idle power plus a fixed power
//! per CPU second the test's own `hwnas` processes' threads run (their schedstat, in
//! nanoseconds) — so the real ORT CPU EP's runs are what spends the energy. Only processes
//! that carry the counter's tag in their environment count: another test, or another checkout's
//! CI on the same machine, would otherwise be billed to this one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hwnas_core::table::LatencyTable;

use crate::util::{Background, fails, hwnas_with_env, one_at_a_time, read_json, s, succeeded};

const IDLE_W: f64 = 20.0;
/// Power per busy thread: a run of t µs on one core costs t * BUSY_W µJ.
const BUSY_W: f64 = 15.0;
const WRAP_UJ: u64 = 262_143_328_850;

/// The variable whose value tags the `hwnas` processes a simulated counter bills.
const TAG_VAR: &str = "HWNAS_TEST_SIMULATED_RAPL";

/// The CPU time of every thread of every running `hwnas` tagged `tag`, as the kernel's
/// scheduler counts it.
struct HwnasCpu {
    tag: String,
    tasks: Vec<PathBuf>,
    last_ns: HashMap<PathBuf, u64>,
    scanned: Option<Instant>,
    seconds: f64,
}

impl HwnasCpu {
    /// CPU seconds of hwnas threads since the first call (processes come and go: each
    /// thread's own counter is followed from 0).
    fn seconds(&mut self) -> f64 {
        if self
            .scanned
            .is_none_or(|t| t.elapsed() > Duration::from_millis(50))
        {
            self.tasks = hwnas_tasks(&self.tag);
            self.scanned = Some(Instant::now());
        }
        for task in &self.tasks {
            let Some(ns) = std::fs::read_to_string(task)
                .ok()
                .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok())
            else {
                continue;
            };
            let last = self.last_ns.insert(task.clone(), ns).unwrap_or(0);
            self.seconds += ns.saturating_sub(last) as f64 * 1e-9;
        }
        self.seconds
    }
}

fn hwnas_tasks(tag: &str) -> Vec<PathBuf> {
    let wanted = format!("{TAG_VAR}={tag}");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let proc = entry.path();
        let is_hwnas =
            std::fs::read_to_string(proc.join("comm")).is_ok_and(|c| c.trim() == "hwnas");
        let tagged = is_hwnas
            && std::fs::read(proc.join("environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == wanted.as_bytes()));
        if let (true, Ok(tasks)) = (tagged, std::fs::read_dir(proc.join("task"))) {
            out.extend(tasks.flatten().map(|t| t.path().join("schedstat")));
        }
    }
    out
}

/// A simulated counter, updated every millisecond until dropped, and how to run the `hwnas`
/// it bills.
struct SimulatedRapl {
    tag: String,
    _driver: Background,
}

impl SimulatedRapl {
    fn ok(&self, args: &[&str]) -> String {
        succeeded(args, &hwnas_with_env(args, &[(TAG_VAR, &self.tag)]))
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = hwnas_with_env(args, &[(TAG_VAR, &self.tag)]);
        assert!(!out.status.success(), "hwnas {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// The simulated counter under `root`; it bills the processes [`SimulatedRapl::ok`] runs.
fn simulated_rapl(root: &Path) -> SimulatedRapl {
    let tag = root.display().to_string();
    let zone = root.join("intel-rapl:0");
    std::fs::create_dir_all(&zone).unwrap();
    std::fs::write(zone.join("name"), "package-0\n").unwrap();
    std::fs::write(zone.join("max_energy_range_uj"), format!("{WRAP_UJ}\n")).unwrap();
    let mut cpu = HwnasCpu {
        tag: tag.clone(),
        tasks: Vec::new(),
        last_ns: HashMap::new(),
        scanned: None,
        seconds: 0.0,
    };
    let t0 = Instant::now();
    let mut write = move || {
        let joules = IDLE_W * t0.elapsed().as_secs_f64() + BUSY_W * cpu.seconds();
        let uj = (joules * 1e6) as u64 % WRAP_UJ;
        std::fs::write(zone.join("energy_uj.tmp"), format!("{uj}\n")).unwrap();
        std::fs::rename(zone.join("energy_uj.tmp"), zone.join("energy_uj")).unwrap();
    };
    write();
    let driver = Background::spawn(move |stop| {
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
            write();
        }
    });
    SimulatedRapl {
        tag,
        _driver: driver,
    }
}

/// A quick CPU profile whose energy comes from the simulated counter under `dir`.
fn energy_profile(dir: &Path) -> PathBuf {
    let device = dir.join("cpu-energy.toml");
    std::fs::write(
        &device,
        format!(
            "name = \"cpu-energy\"\nbackend = \"ort\"\n[measure]\nmin_runs = 10\nmax_ms = 100.0\n\
             target_ci = 0.05\nround_ms = 5.0\n[energy]\nsource = \"rapl\"\nwindow_ms = 100.0\n\
             idle_ms = 200.0\npowercap = \"{}\"\n",
            dir.join("powercap").display()
        ),
    )
    .unwrap();
    device
}

#[test]
fn energy_is_an_error_where_there_is_no_counter() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.csv");
    // This VM's real /sys/class/powercap is absent and it has no NVIDIA driver.
    let e = fails(&[
        "profile",
        "--device",
        "device_profiles/cpu.toml",
        "--op",
        "gap-in:1x64x8x8",
        "--energy",
        "--out",
        s(&table),
    ]);
    assert!(
        e.contains("no energy counter") && e.contains("RAPL") && e.contains("NVML"),
        "{e}"
    );
    assert!(
        !table.exists(),
        "nothing is written without the energy asked for"
    );
}

#[test]
fn energy_per_op_follows_the_work_the_op_does() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let rapl = simulated_rapl(&dir.path().join("powercap"));
    let device = energy_profile(dir.path());
    let table = dir.path().join("t.csv");
    // Ops from a few microseconds to a few milliseconds.
    let keys = [
        "gap-in:1x64x8x8",
        "conv-in:1x16x32x32-out:16-k:3-s:1-g:1-pre:relu-act:none",
        "conv-in:1x32x32x32-out:64-k:3-s:1-g:1-pre:relu-act:none",
        "conv-in:1x64x56x56-out:64-k:3-s:1-g:1-pre:relu-act:none",
    ];
    let mut args = vec![
        "profile",
        "--device",
        s(&device),
        "--energy",
        "--out",
        s(&table),
    ];
    for k in &keys[..3] {
        args.extend(["--op", k]);
    }
    rapl.ok(&args);

    // Without --energy, the table's rows cannot be resumed into.
    let plain = [
        "profile",
        "--device",
        s(&device),
        "--op",
        keys[3],
        "--resume",
        "--out",
        s(&table),
    ];
    let e = rapl.fails(&plain);
    assert!(e.contains("energy_counter") && e.contains("t.csv"), "{e}");
    // With it, the resumed table gets the fourth op.
    let mut resumed = args.clone();
    resumed.extend(["--op", keys[3], "--resume"]);
    rapl.ok(&resumed);

    let t = LatencyTable::read(&table).unwrap();
    assert_eq!(t.rows.len(), 4);
    assert!(t.meta("energy_counter").unwrap().contains("package-0"));
    let idle: f64 = t.meta("energy_idle_w").unwrap().parse().unwrap();
    // The worker's threads wait while idle is measured (its heartbeats cost a little); the
    // driver thread writes a value a moment after computing it, and on a busy host that moment
    // varies by milliseconds over a 200 ms window (CI once read 19.992 W), hence 2% below.
    assert!(
        (IDLE_W * 0.98..IDLE_W * 1.05).contains(&idle),
        "idle {idle} W"
    );
    // A run of t µs on one core costs about 15 t µJ. Wall time also counts the slices a busy
    // host or a concurrent test took (the counter does not): a quiet VM gives 0.83–1.09 a row,
    // CI once gave 0.50 for the 39 µs gap run (half a core). So each row is only held within a
    // factor 2.5 and their median within 30%, which is what catches a metering bug: each op's
    // profiled twin run counted too would double it, idle not subtracted, far more.
    let mut ratios = Vec::new();
    for r in &t.rows {
        let uj = r.energy_uj.expect("every row has its energy");
        let expected = BUSY_W * r.wall_us;
        let ratio = uj / expected;
        assert!(
            (1.0 / 2.5..2.5).contains(&ratio),
            "{}: {uj:.1} µJ a run, a run of {:.1} µs on one core costs {expected:.1}",
            r.key,
            r.wall_us
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let median = (ratios[1] + ratios[2]) / 2.0;
    assert!((median - 1.0).abs() < 0.3, "{ratios:?}");
    let shown = rapl.ok(&["table", "show", s(&table)]);
    assert!(
        shown.contains("4 rows of 4 from rapl") && shown.contains("package-0"),
        "{shown}"
    );
}

#[test]
fn a_simulated_device_has_no_energy() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.csv");
    let e = fails(&[
        "profile",
        "--device",
        "device_profiles/mock.toml",
        "--op",
        "gap-in:1x64x8x8",
        "--energy",
        "--out",
        s(&table),
    ]);
    assert!(e.contains("simulated device has no energy"), "{e}");
}

/// Energy composed and calibrated like latency, then searched on: profile nb201 with
/// `--energy`, fit (the energy model calibrated on the same networks' measured energy),
/// validate it on held-out networks, predict, and search accuracy × latency × energy under an
/// energy bound.
#[test]
fn energy_is_predicted_validated_and_searched() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let rapl = simulated_rapl(&dir.path().join("powercap"));
    let device = energy_profile(dir.path());
    let (table, model) = (dir.path().join("t.csv"), dir.path().join("m.json"));
    let d = ["--device", s(&device)];
    rapl.ok(&[
        &[
            "profile",
            "--space",
            "nb201",
            "--energy",
            "--out",
            s(&table),
        ],
        &d[..],
    ]
    .concat());
    let fit = rapl.ok(&[
        &[
            "fit",
            "--table",
            s(&table),
            "--calibrate",
            "20",
            "--out",
            s(&model),
        ],
        &d[..],
    ]
    .concat());
    assert!(
        fit.contains("energy: calibrated on 20 nb201 networks"),
        "{fit}"
    );

    let report = dir.path().join("v");
    let out = rapl.ok(&[
        &[
            "validate",
            "--model",
            s(&model),
            "--samples",
            "20",
            "--repeat",
            "0",
            "--out",
            s(&report),
        ],
        &d[..],
    ]
    .concat());
    let v = read_json(&dir.path().join("v.json"));
    // The end to end path works: energy is predicted and ranks the networks. Its exactness is
    // the unit tests' (the meter against a known world, the energy view's share). Here energy
    // is CPU time in disguise and is not corrected by the probe, so a busy host moves it where
    // it moves latency's uncorrected times. Measured, 20-30 networks: quiet, energy 77 and 87%
    // within ±10%, tau 0.905 and 0.924 (latency 73 and 77%); a busy host (probe spread 10%),
    // energy 40%, tau 0.749, bias +1.8% (latency 70% corrected, 35% uncorrected, tau 0.816);
    // a fresh-clone CI run at 1.93x the table's speed, energy 50%, tau 0.931, bias +15%.
    // Busier still, 0% within ±10% (bias -12.5%) with tau 0.61: calibration and validation
    // minutes apart at different host speeds. What holds on any day is the order (tau > 0.5:
    // p = 0.001 for random predictions over 20 networks, as the latency pipeline test).
    let tau = v["energy"]["accuracy"]["kendall_tau"].as_f64().unwrap();
    assert!(tau > 0.5, "energy's Kendall tau {tau}\n{out}");
    // The calibration networks measured again shift energy as they shift latency: its anchors
    // are the same 20 networks, with their energy at calibration kept in the model.
    let energy_sitting = &v["sitting"]["energy"];
    assert_eq!(energy_sitting["anchors"], 20, "{}", v["sitting"]);
    assert!(
        (0.3..3.0).contains(&energy_sitting["factor"].as_f64().unwrap()),
        "{energy_sitting}"
    );

    let arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|";
    let predicted = rapl.ok(&[
        "predict",
        "--model",
        s(&model),
        "--space",
        "nb201",
        "--arch",
        arch,
    ]);
    assert!(predicted.contains(" mJ "), "{predicted}");

    // Bounded at the median held-out network's predicted energy.
    let mut uj: Vec<f64> = v["energy"]["predicted_uj"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    uj.sort_by(f64::total_cmp);
    let bound = uj[uj.len() / 2] / 1e3;
    let front = dir.path().join("front");
    let accuracy = crate::util::nb201_accuracy();
    let searched = rapl.ok(&[
        "search",
        "--space",
        "nb201",
        "--model",
        s(&model),
        "--accuracy",
        &accuracy,
        "--objectives",
        "accuracy,latency,energy",
        "--max-energy-mj",
        &bound.to_string(),
        "--max-evaluations",
        "300",
        "--verify",
        "--device",
        s(&device),
        "--verify-max",
        "4",
        "--out",
        s(&front),
    ]);
    assert!(searched.contains("cpu-energy mJ"), "{searched}");
    // The front re-measured, energy too.
    assert!(searched.contains("and its energy: "), "{searched}");
    let f = read_json(&front.join("front.json"));
    let members = f["front"].as_array().unwrap();
    assert!(!members.is_empty(), "{searched}");
    for m in members {
        let mj = m["energy_mj"]["cpu-energy"].as_f64().unwrap();
        assert!(mj > 0.0 && mj <= bound, "{m}");
    }
    let measured = members
        .iter()
        .filter_map(|m| m["measured_energy_mj"]["cpu-energy"].as_f64())
        .count();
    assert_eq!(measured, members.len().min(4), "{searched}");
    assert_eq!(f["verification"]["energy"]["networks"], measured);
    let csv = std::fs::read_to_string(front.join("front.csv")).unwrap();
    assert!(
        csv.lines().next().unwrap().contains("energy_cpu-energy_mj"),
        "{csv}"
    );

    // A model without energy cannot be searched on it, and says what to do.
    let mock = crate::util::mock_model(dir.path(), "mock", "nb201");
    let e = rapl.fails(&[
        "search",
        "--space",
        "nb201",
        "--model",
        s(&mock),
        "--objectives",
        "accuracy,energy",
    ]);
    assert!(e.contains("profiled with --energy"), "{e}");
}
