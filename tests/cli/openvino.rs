//! OpenVINO's execution provider (the onnxruntime-openvino wheel): nb201 profiled, fallbacks flagged.

use std::path::Path;

use hwnas_core::table::LatencyTable;

use crate::util::{fails, hwnas, ok, one_at_a_time, s};

/// A second execution provider for real: OpenVINO's EP from the `onnxruntime-openvino` wheel
/// (`scripts/setup.sh` installs it into ./.venv-openvino).
#[test]
fn openvino_profiles_nb201_and_fallbacks_are_flagged() {
    let _serial = one_at_a_time();
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-openvino");
    let out = ok(&["devices", "--ort-library", s(&venv)]);
    assert!(
        out.contains("OpenVINOExecutionProvider"),
        "the onnxruntime-openvino wheel is required (./test.sh installs it): {out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("ov.toml");
    std::fs::write(
        &device,
        format!(
            "name = \"ov-quick\"\nbackend = \"ort\"\n[ort]\nexecution_provider = \"openvino\"\nlibrary = \"{}\"\n[ort.options]\ndevice_type = \"CPU\"\n[measure]\nmin_runs = 10\nmax_ms = 50.0\ntarget_ci = 0.05\nround_ms = 5.0\n",
            s(&venv)
        ),
    )
    .unwrap();
    let table_path = dir.path().join("ov.csv");
    let out = ok(&[
        "profile",
        "--device",
        s(&device),
        "--space",
        "nb201",
        "--out",
        s(&table_path),
    ]);
    assert!(out.contains("measured 22 ops"), "{out}");
    let table = LatencyTable::read(&table_path).unwrap();
    assert_eq!(
        table.meta("execution_provider"),
        Some("OpenVINOExecutionProvider")
    );
    assert!(
        table
            .meta("ort_version")
            .is_some_and(|v| v.starts_with("1.24"))
    );
    assert!(
        table
            .meta("ep_options")
            .is_some_and(|o| o.contains("device_type=CPU"))
    );
    for row in &table.rows {
        assert_eq!(row.provider, "OpenVINOExecutionProvider", "{}", row.key);
    }

    // int8 as QDQ graphs, as NPUs take them: OpenVINO runs every op of nb201 itself.
    let int8_path = dir.path().join("ov-int8.csv");
    let out = ok(&[
        "profile",
        "--device",
        s(&device),
        "--space",
        "nb201",
        "--precision",
        "int8",
        "--out",
        s(&int8_path),
    ]);
    assert!(out.contains("measured 22 ops"), "{out}");
    let int8 = LatencyTable::read(&int8_path).unwrap();
    assert_eq!(int8.meta("precision"), Some("int8"));
    for row in &int8.rows {
        assert_eq!(row.provider, "OpenVINOExecutionProvider", "{}", row.key);
    }
    // Tables of two precisions are two devices to `table merge`.
    let err = fails(&[
        "table",
        "merge",
        s(&table_path),
        s(&int8_path),
        "--out",
        s(&dir.path().join("mixed.csv")),
    ]);
    assert!(err.contains("precision") && err.contains("int8"), "{err}");

    // A lone channel slice is one op OpenVINO hands back to ORT's CPU EP: flagged in the
    // table and on stderr, refused with --require-ep.
    let slice = "slice-in:1x16x8x8-out:8-at:4";
    let flagged = dir.path().join("flagged.csv");
    let run = hwnas(&[
        "profile",
        "--device",
        s(&device),
        "--op",
        slice,
        "--out",
        s(&flagged),
    ]);
    assert!(run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("did not run on OpenVINOExecutionProvider") && stderr.contains(slice),
        "{stderr}"
    );
    let rows = LatencyTable::read(&flagged).unwrap().rows;
    assert!(
        rows[0].provider.contains("CPUExecutionProvider"),
        "{:?}",
        rows[0]
    );
    let refused = dir.path().join("refused.csv");
    let err = fails(&[
        "profile",
        "--device",
        s(&device),
        "--op",
        slice,
        "--out",
        s(&refused),
        "--require-ep",
    ]);
    assert!(
        err.contains("--require-ep") && err.contains("CPUExecutionProvider"),
        "{err}"
    );
    assert!(
        LatencyTable::read(&refused).unwrap().rows.is_empty(),
        "nothing recorded under OpenVINO's name"
    );

    // An EP this library lacks names the ones it has.
    let cuda = dir.path().join("cuda.toml");
    std::fs::write(
        &cuda,
        format!("name = \"x\"\nbackend = \"ort\"\n[ort]\nexecution_provider = \"cuda\"\nlibrary = \"{}\"\n", s(&venv)),
    )
    .unwrap();
    let err = fails(&[
        "profile",
        "--device",
        s(&cuda),
        "--space",
        "nb201",
        "--out",
        s(&refused),
    ]);
    assert!(
        err.contains("CUDAExecutionProvider")
            && err.contains("OpenVINOExecutionProvider")
            && err.contains("cuda.toml"),
        "{err}"
    );
}
