use super::*;

fn shard(device: &str, keys: &[&str]) -> LatencyTable {
    let op = |k: &str| Op::from_key(k).unwrap();
    let m = |us: f64| Measurement {
        stats: crate::stats::Stats::from_samples(&[us]).unwrap(),
        wall: crate::stats::Stats::from_samples(&[us]).unwrap(),
        edge_reorder_us: None,
        providers: vec![],
        in_network: false,
        capped: false,
        drift: None,
        energy: None,
    };
    LatencyTable {
        meta: vec![
            (SCHEMA_KEY.into(), SCHEMA_VERSION.into()),
            ("device".into(), device.into()),
            ("created".into(), format!("{}", keys.len())),
            ("shard".into(), format!("{}/2", keys.len())),
        ],
        rows: keys
            .iter()
            .map(|k| Row::new(&op(k), &m(3.0), "mock"))
            .collect(),
    }
}

#[test]
fn shards_of_one_device_merge_and_others_are_refused() {
    let (a, b) = ("add-in:1x8x8x8", "gap-in:1x8x8x8");
    let parts = vec![
        (PathBuf::from("p1.csv"), shard("cpu", &[a])),
        (
            PathBuf::from("p2.csv"),
            shard("cpu", &[b, "add-in:1x4x8x8"]),
        ),
    ];
    let merged = LatencyTable::merge(&parts, false).unwrap();
    assert_eq!(merged.rows.len(), 3);
    assert_eq!(merged.meta("shard"), None);
    assert_eq!(merged.meta("merged_from"), Some("p1.csv p2.csv"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.csv");
    merged.write(&path).unwrap();
    assert_eq!(LatencyTable::read(&path).unwrap().rows, merged.rows);

    let other = vec![
        parts[0].clone(),
        (PathBuf::from("gpu.csv"), shard("gpu", &[b])),
    ];
    let err = LatencyTable::merge(&other, false).unwrap_err().to_string();
    assert!(err.contains("device") && err.contains("gpu.csv"), "{err}");
    assert_eq!(LatencyTable::merge(&other, true).unwrap().rows.len(), 2);
    let twice = vec![parts[0].clone(), parts[0].clone()];
    let err = LatencyTable::merge(&twice, false).unwrap_err().to_string();
    assert!(err.contains(a) && err.contains("both"), "{err}");

    // Shards whose devices ran the reference probe at different speeds merge at the first's.
    let mut probed = parts.clone();
    for ((_, t), nominal) in probed.iter_mut().zip(["200", "250"]) {
        t.meta.push((PROBE_NOMINAL_META.into(), nominal.into()));
    }
    let merged = LatencyTable::merge(&probed, false).unwrap();
    assert_eq!(merged.meta(PROBE_NOMINAL_META), Some("200"));
    assert_eq!(merged.get(a).unwrap().median_us, 3.0);
    assert!((merged.get(b).unwrap().median_us - 3.0 * 200.0 / 250.0).abs() < 1e-12);
}
/// Rows as a measurement gives them: a spread of seeded samples per op, so the round trips
/// carry every statistic with its full precision.
fn measured_rows(keys: &[&str]) -> Vec<Row> {
    let mut rng = crate::rng::SplitMix64::new(7);
    keys.iter()
        .map(|k| {
            let samples: Vec<f64> = (0..40).map(|_| 10.0 + 3.0 * rng.next_f64()).collect();
            let stats = crate::stats::Stats::from_samples(&samples).unwrap();
            let m = Measurement {
                stats,
                wall: stats,
                edge_reorder_us: None,
                providers: vec![],
                in_network: false,
                capped: false,
                drift: None,
                energy: None,
            };
            Row::new(&Op::from_key(k).unwrap(), &m, "mock")
        })
        .collect()
}

fn meta(device: &str) -> Metadata {
    vec![
        ("device".into(), device.into()),
        ("created".into(), crate::host::utc_now()),
    ]
}

const KEYS: [&str; 3] = [
    "conv-in:1x16x32x32-out:32-k:3-s:2-g:1-pre:relu-act:none",
    "mbconv-in:1x24x56x56-out:24-e:4-k:5-s:1-se:1-act:relu-res:1",
    "linear-in:1x64x1x1-out:10",
];

#[test]
fn round_trip_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    let rows = measured_rows(&KEYS);
    let mut w = TableWriter::create(&path, &meta("cpu")).unwrap();
    w.append(&rows[0]).unwrap();
    w.append(&rows[1]).unwrap();
    drop(w);
    // A torn write: half of the third row, no newline.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"linear-in:1x64x1x1-out:10,linear,1,64")
        .unwrap();
    drop(f);

    let (mut w, done) = TableWriter::resume(&path, &meta("cpu")).unwrap();
    assert_eq!(done, rows[..2].to_vec());
    w.append(&rows[2]).unwrap();
    drop(w);
    let t = LatencyTable::read(&path).unwrap();
    assert_eq!(t.rows, rows);
    assert_eq!(t.meta("device"), Some("cpu"));
    assert_eq!(t.get(KEYS[2]).unwrap().cout, 10);
}

/// A table written before rows carried the machine's state (no `load1`, `cpu_mhz`, nor the
/// probe's `probe_us`, `raw_us`, nor `energy_uj`, `energy_spread`) still reads, and a resume rewrites it in today's columns before appending.
#[test]
fn tables_from_before_machine_state_read_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.csv");
    let rows = measured_rows(&KEYS);
    let mut w = TableWriter::create(&path, &meta("cpu")).unwrap();
    w.append(&rows[0]).unwrap();
    w.append(&rows[1]).unwrap();
    drop(w);
    let text = std::fs::read_to_string(&path).unwrap();
    let old: String = text
        .lines()
        .map(|l| {
            let l = if l.starts_with('#') {
                l
            } else {
                l.strip_suffix(",,,,,,").unwrap_or(l)
            };
            let l = l
                .strip_suffix(",load1,cpu_mhz,probe_us,raw_us,energy_uj,energy_spread")
                .unwrap_or(l);
            format!("{l}\n")
        })
        .collect();
    assert!(!old.contains("load1"));
    std::fs::write(&path, &old).unwrap();
    assert_eq!(LatencyTable::read(&path).unwrap().rows, rows[..2].to_vec());

    let (mut w, done) = TableWriter::resume(&path, &meta("cpu")).unwrap();
    assert_eq!(done, rows[..2].to_vec());
    let now = rows[2].clone().on_machine(crate::host::MachineState::now());
    w.append(&now).unwrap();
    drop(w);
    let t = LatencyTable::read(&path).unwrap();
    assert_eq!(t.rows, [&rows[..2], std::slice::from_ref(&now)].concat());
    assert_eq!(t.meta("device"), Some("cpu"));
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains(",load1,cpu_mhz,probe_us,raw_us,energy_uj,energy_spread\n")
    );
    // This machine (Linux) has a load average.
    assert!(now.load1.is_some());
}

#[test]
fn busy_rows_and_a_moving_clock_are_reported() {
    let rows = measured_rows(&KEYS);
    let with = |r: &Row, load: f64, mhz: f64| Row {
        load1: Some(load),
        cpu_mhz: Some(mhz),
        ..r.clone()
    };
    let steady = [
        with(&rows[0], 0.9, 3000.0),
        with(&rows[1], 1.1, 3010.0),
        with(&rows[2], 1.0, 2990.0),
    ];
    let refs: Vec<&Row> = steady.iter().collect();
    let report = machine_report(&refs, Some(2));
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(
        report.summary.as_deref(),
        Some("1-min load 0.90-1.10 on 2 CPUs, CPU clock 2990-3010 MHz")
    );
    let disturbed = [
        with(&rows[0], 0.9, 3000.0),
        with(&rows[1], 3.5, 3010.0),
        with(&rows[2], 1.0, 2200.0),
    ];
    let refs: Vec<&Row> = disturbed.iter().collect();
    let report = machine_report(&refs, Some(2));
    assert_eq!(report.problems.len(), 2, "{report:?}");
    assert!(report.problems[0].contains(&format!("`{}` at load 3.50", KEYS[1])));
    assert!(report.problems[1].contains(&format!("`{}` at 2200 MHz", KEYS[2])));
    // Tables from before the machine state was recorded say nothing of it.
    let refs: Vec<&Row> = rows.iter().collect();
    let report = machine_report(&refs, Some(2));
    assert_eq!(report.summary, None);
    assert!(report.problems.is_empty());
}

#[test]
fn resume_refuses_another_device() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    TableWriter::create(&path, &meta("cpu")).unwrap();
    let err = TableWriter::resume(&path, &meta("gpu"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("device") && err.contains("--resume"), "{err}");
}

#[test]
fn malformed_tables_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    std::fs::write(&path, "key,kind\nfoo,bar\n").unwrap();
    let err = LatencyTable::read(&path).unwrap_err().to_string();
    assert!(err.contains("not an hwnas latency table"), "{err}");

    let rows = measured_rows(&KEYS[..1]);
    let mut w = TableWriter::create(&path, &meta("cpu")).unwrap();
    w.append(&rows[0]).unwrap();
    drop(w);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("pre:relu", "pre:gelu")).unwrap();
    let err = LatencyTable::read(&path).unwrap_err().to_string();
    assert!(err.contains("line 5") && err.contains("gelu"), "{err}");
    std::fs::write(&path, text.replace(",conv,1,", ",conv,x,")).unwrap();
    let err = LatencyTable::read(&path).unwrap_err().to_string();
    assert!(err.contains("line 5") && err.contains("bad row"), "{err}");
    let missing = LatencyTable::read(&dir.path().join("nope.csv"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.csv"), "{missing}");
}

/// A table with energy: its energy view gives each op the call's energy times the share of the
/// call its own kernels took; shards merge when measured with the same counter (their idle
/// powers may differ), and a shard without energy is refused, as is a resume without it.
#[test]
fn energy_rows_view_merge_and_resume() {
    let mut rows = measured_rows(&KEYS);
    for (i, r) in rows.iter_mut().enumerate() {
        (r.raw_us, r.wall_us) = (Some(30.0), 40.0);
        (r.energy_uj, r.energy_spread) = (Some(100.0 * (i + 1) as f64), Some(0.1));
    }
    let with = |idle: &str| {
        let mut m = meta("cpu");
        m.push((
            ENERGY_COUNTER_META.into(),
            "rapl:/sys/class/powercap (package-0)".into(),
        ));
        m.push(("energy_idle_w".into(), idle.into()));
        m
    };
    let table = LatencyTable {
        meta: with("11.5"),
        rows: rows.clone(),
    };
    let energy = table.energy().expect("the table has energy");
    assert_eq!(energy.rows[1].median_us, 200.0 * 0.75);
    assert!((energy.rows[1].p90_us / energy.rows[1].median_us - 1.05).abs() < 1e-12);
    let plain = LatencyTable {
        meta: meta("cpu"),
        rows: rows[..1].to_vec(),
    };
    assert!(plain.energy().is_none());

    let part = |m, r: &[Row]| LatencyTable {
        meta: m,
        rows: r.to_vec(),
    };
    let same_counter = [
        ("a.csv".into(), part(with("11.5"), &rows[..2])),
        ("b.csv".into(), part(with("12.0"), &rows[2..])),
    ];
    assert_eq!(
        LatencyTable::merge(&same_counter, false)
            .unwrap()
            .rows
            .len(),
        3
    );
    let one_without = [
        ("a.csv".into(), part(with("11.5"), &rows[..2])),
        ("b.csv".into(), part(meta("cpu"), &rows[2..])),
    ];
    let e = LatencyTable::merge(&one_without, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains(ENERGY_COUNTER_META), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    table.write(&path).unwrap();
    let e = TableWriter::resume(&path, &meta("cpu"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(ENERGY_COUNTER_META) && e.contains("(absent)"),
        "{e}"
    );
    assert!(TableWriter::resume(&path, &with("13.0")).is_ok());
}
