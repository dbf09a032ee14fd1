//! The whole pipeline on the simulated device (profile, fit, lut export, search, predict)
//! gives byte for byte what the same script gave before the crate split: a refactoring must
//! not change behaviour. `scripts/mock_outputs.sh` writes the outputs with the fields that
//! change from run to run (clocks, load, timings, paths) blanked; `tests/golden/mock/` holds
//! what it wrote with the binary before the split. A change that is meant to alter these
//! outputs rewrites the goldens with the same script, in its own commit.

use std::path::Path;
use std::process::Command;

use crate::util::one_at_a_time;

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn mock_pipeline_outputs_are_unchanged_byte_for_byte() {
    let _serial = one_at_a_time();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(root.join("scripts/mock_outputs.sh"))
        .arg(env!("CARGO_BIN_EXE_hwnas"))
        .arg(out.path())
        .current_dir(root)
        .status()
        .expect("bash runs scripts/mock_outputs.sh");
    assert!(status.success(), "scripts/mock_outputs.sh failed");
    let golden = root.join("tests/golden/mock");
    let (want, got) = (files(&golden), files(out.path()));
    assert_eq!(got, want, "the pipeline wrote other files than before");
    for name in &want {
        let (a, b) = (
            std::fs::read_to_string(golden.join(name)).unwrap(),
            std::fs::read_to_string(out.path().join(name)).unwrap(),
        );
        if a != b {
            let line = a.lines().zip(b.lines()).position(|(x, y)| x != y);
            panic!(
                "{name} differs from tests/golden/mock/{name} (first at line {}): \n  before: {}\n  now:    {}",
                line.map_or(a.lines().count().min(b.lines().count()), |l| l) + 1,
                line.and_then(|l| a.lines().nth(l))
                    .unwrap_or("(end of file)"),
                line.and_then(|l| b.lines().nth(l))
                    .unwrap_or("(end of file)"),
            );
        }
    }
}
