use super::*;
use crate::calibrate::Sample;
use hwnas_core::table::Row;

fn model() -> LatencyModel {
    let row = |key: &str, us: f64| {
        let op = Op::from_key(key).unwrap();
        let m = hwnas_core::backend::Measurement {
            stats: hwnas_core::stats::Stats::from_samples(&[us * 0.9, us, us * 1.1]).unwrap(),
            wall: hwnas_core::stats::Stats::from_samples(&[us]).unwrap(),
            edge_reorder_us: None,
            providers: vec![],
            in_network: false,
            capped: false,
            drift: None,
            energy: None,
        };
        Row::new(&op, &m, "mock")
    };
    let table = LatencyTable {
        meta: vec![("device".into(), "test".into())],
        rows: vec![
            row("conv-in:1x8x8x8-out:8-k:3-s:1-g:1-pre:none-act:relu", 100.0),
            row("add-in:1x8x8x8", 10.0),
        ],
    };
    LatencyModel::from_table(&table, Path::new("t.csv"))
}

/// Two identical pools on one input: ORT runs one at fp32, both at int8 (QDQ).
#[test]
fn int8_models_count_repeated_pools_each_time() {
    use hwnas_core::Tensor;
    use hwnas_core::network::Value;
    let t = Tensor::new(1, 8, 8, 8);
    let pool = Op::from_key("avgpool-in:1x8x8x8-k:3-s:1-p:1").unwrap();
    let mut net = Network::new("two pools", t);
    let a = net.push(pool, &[Value::Input]);
    let b = net.push(pool, &[Value::Input]);
    net.push(Op::Add(t), &[a, b]);
    let mut m = model();
    assert_eq!(m.precision(), Precision::Fp32);
    assert_eq!(m.terms(&net).len(), 2);
    m.provenance.push(("precision".into(), "int8".into()));
    m.rebuild();
    assert_eq!(m.precision(), Precision::Int8);
    assert_eq!(m.terms(&net).len(), 3);
}

/// At int8, a pool on the way to a conv is its own kind (`avgpool_nhwc`), one before the
/// output is not; an old calibration without that kind scales it as `avgpool`.
#[test]
fn int8_pools_before_a_conv_have_their_own_kind() {
    use hwnas_core::network::Value;
    let conv = Op::from_key("conv-in:1x8x8x8-out:8-k:3-s:1-g:1-pre:none-act:relu").unwrap();
    let pool = Op::from_key("avgpool-in:1x8x8x8-k:3-s:1-p:1").unwrap();
    let mut net = Network::new("pool, conv, pool", conv.input());
    let a = net.push(pool, &[Value::Input]);
    let b = net.push(conv, &[a]);
    net.push(pool, &[b]);
    for (s, offset) in POOL_SLOTS.map(|s| (s, NHWC_OFFSET)) {
        assert_eq!(KINDS[s + offset], format!("{}_nhwc", KINDS[s]));
    }
    let mut m = model();
    let kinds =
        |m: &LatencyModel| -> Vec<&str> { m.terms(&net).iter().map(|t| KINDS[t.slot()]).collect() };
    assert_eq!(kinds(&m), ["avgpool", "conv", "avgpool"]);
    m.provenance.push(("precision".into(), "int8".into()));
    m.ops.insert(pool.key(), [50.0; 3]);
    m.calibration = Some(Calibration {
        form: Form::PerKind,
        kinds: vec!["avgpool".into(), "conv".into()],
        coefficients: vec![0.5, 1.0],
        intercept_us: 0.0,
        fixed_kinds: vec![],
        networks: 8,
        loo_rmspe: 0.0,
        interval_rel: 0.0,
        loo_median: 0.0,
        posterior: None,
    });
    m.rebuild();
    assert_eq!(kinds(&m), ["avgpool_nhwc", "conv", "avgpool"]);
    let terms = m.terms(&net);
    assert_eq!(m.predict_fast(&terms), Some(25.0 + 100.0 + 25.0));
}

fn ops() -> Vec<Term> {
    let ops: Vec<Op> = [
        "conv-in:1x8x8x8-out:8-k:3-s:1-g:1-pre:none-act:relu",
        "add-in:1x8x8x8",
        "skip-in:1x8x8x8",
    ]
    .iter()
    .map(|k| Op::from_key(k).unwrap())
    .collect();
    Term::plain(&ops)
}

#[test]
fn fast_path_equals_the_full_prediction_and_the_calibration() {
    let mut m = model();
    let p = m.predict(&ops()).unwrap();
    let spread = |i: usize| m.ops.values().map(|v| v[i]).sum::<f64>();
    assert_eq!(
        (p.latency_us, p.low_us, p.high_us),
        (110.0, spread(1), spread(2))
    );
    assert!(p.low_us < 110.0 && p.high_us > 110.0);
    assert_eq!(m.predict_fast(&ops()), Some(110.0));
    let samples: Vec<Sample> = (1..10)
        .map(|i| {
            let s: BTreeMap<String, f64> = [
                ("conv".to_string(), 100.0 * i as f64),
                ("add".to_string(), 10.0 * ((i * 5) % 3) as f64),
            ]
            .into();
            let y = 20.0 + 0.8 * s["conv"] + 0.1 * s["add"];
            (s, y)
        })
        .collect();
    m.calibration = Some(Calibration::fit_with(&samples, 0.0).unwrap());
    m.rebuild();
    let want = m
        .calibration
        .as_ref()
        .unwrap()
        .apply(&m.kind_sums(&ops()).unwrap());
    let p = m.predict(&ops()).unwrap();
    assert!((p.latency_us - want).abs() < 1e-9 && (want - (20.0 + 80.0 + 1.0)).abs() < 1e-6);
    assert!((m.predict_fast(&ops()).unwrap() - want).abs() < 1e-9);
}

#[test]
fn pointwise_convs_have_their_own_kind() {
    let mut m = model();
    let pw = Op::from_key("conv-in:1x8x8x8-out:8-k:1-s:1-g:1-pre:none-act:relu").unwrap();
    let dw = Op::from_key("conv-in:1x8x8x8-out:8-k:1-s:1-g:8-pre:none-act:relu").unwrap();
    m.ops.insert(pw.key(), [30.0, 27.0, 33.0]);
    m.ops.insert(dw.key(), [5.0, 4.0, 6.0]);
    m.rebuild();
    let mut terms = ops();
    terms.extend(Term::plain(&[pw, dw]));
    let sums = m.kind_sums(&terms).unwrap();
    // The grouped 1x1 is not a matrix product: it stays a conv.
    assert_eq!(
        (sums["conv"], sums["conv_pw"], sums["add"]),
        (105.0, 30.0, 10.0)
    );
}

#[test]
fn files_round_trip_and_bad_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    let m = model();
    m.save(&path).unwrap();
    let back = LatencyModel::load(&path).unwrap();
    assert_eq!(back.predict(&ops()).unwrap(), m.predict(&ops()).unwrap());

    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace(SCHEMA, "hwnas-latency-model/0")).unwrap();
    let err = LatencyModel::load(&path).unwrap_err().to_string();
    assert!(err.contains("schema") && err.contains("hwnas fit"), "{err}");
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let err = LatencyModel::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("m.json") && err.contains("not a valid"),
        "{err}"
    );
    std::fs::write(&path, text.replace("add-in:1x8x8x8", "add-in:1x8")).unwrap();
    assert!(LatencyModel::load(&path).is_err());

    let missing = Op::from_key("gap-in:1x8x8x8").unwrap();
    let err = m
        .predict(&Term::plain(&[missing, ops()[0].op, missing]))
        .unwrap_err();
    assert!(
        matches!(&err, ModelError::Missing(keys) if keys == &vec![missing.key()]),
        "listed once: {err}"
    );
    let err = err.to_string();
    assert!(
        err.contains("gap-in:1x8x8x8") && err.contains("hwnas profile --op"),
        "{err}"
    );
    assert_eq!(m.predict_fast(&Term::plain(&[missing])), None);
}
