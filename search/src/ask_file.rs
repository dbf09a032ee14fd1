//! `--accuracy ask`: a search hands each batch's architectures to whoever evaluates them
//! through two files beside its state file, so a shell loop or a cluster scheduler can train
//! them: the search writes `ask.txt` (one canonical encoding a line) and waits for `tell.csv`
//! (`arch,accuracy`, every asked architecture once), which it reads and removes.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use hwnas_core::files::write_atomic;

use crate::accuracy::AccuracyError;

pub const ASK: &str = "ask.txt";
pub const TELL: &str = "tell.csv";

/// How often the search looks for `tell.csv`.
const POLL: Duration = Duration::from_millis(100);

/// Asks for the accuracies of `archs` in `dir` and waits for the answer.
pub fn exchange(dir: &Path, archs: &[String]) -> Result<Vec<f64>, AccuracyError> {
    let (ask, tell) = (dir.join(ASK), dir.join(TELL));
    let fail = |why: String| AccuracyError::Ask {
        path: tell.display().to_string(),
        why,
    };
    write_atomic(&ask, archs.join("\n") + "\n").map_err(|e| AccuracyError::Ask {
        path: ask.display().to_string(),
        why: e.to_string(),
    })?;
    eprintln!(
        "asked for {} accuracies in {}; waiting for {} (arch,accuracy; write it under another name and rename it into place)",
        archs.len(),
        ask.display(),
        tell.display()
    );
    while !tell.exists() {
        std::thread::sleep(POLL);
    }
    let text = std::fs::read_to_string(&tell).map_err(|e| fail(e.to_string()))?;
    let values = parse_tell(&text, archs).map_err(fail)?;
    // ask.txt goes first: whoever answers sees no question without its answer pending.
    let _ = std::fs::remove_file(&ask);
    std::fs::remove_file(&tell).map_err(|e| fail(format!("removing it: {e}")))?;
    Ok(values)
}

/// The accuracies of `archs` in a `tell.csv`: a header naming `arch` and `accuracy`, then
/// one row per asked architecture.
fn parse_tell(text: &str, archs: &[String]) -> Result<Vec<f64>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("no `{name}` column (the header must name arch and accuracy)"))
    };
    let (arch_col, acc_col) = (column("arch")?, column("accuracy")?);
    let mut told: HashMap<String, f64> = HashMap::new();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| format!("row {line}: {e}"))?;
        let arch = row.get(arch_col).unwrap_or_default().to_string();
        let value = row.get(acc_col).unwrap_or_default();
        let accuracy: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| format!("row {line}: accuracy `{value}` is not a finite number"))?;
        if !archs.contains(&arch) {
            return Err(format!("row {line}: `{arch}` was not asked for"));
        }
        if told.insert(arch.clone(), accuracy).is_some() {
            return Err(format!("row {line}: `{arch}` is told twice"));
        }
    }
    archs
        .iter()
        .map(|a| {
            told.get(a).copied().ok_or_else(|| {
                format!(
                    "`{a}` was asked for and not told ({} of {} told)",
                    told.len(),
                    archs.len()
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asked_architecture_is_told_once() {
        let archs = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            parse_tell("accuracy,arch\n0.5, b\n0.25,a\n", &archs).unwrap(),
            [0.25, 0.5]
        );
        let err = |t: &str| parse_tell(t, &archs).unwrap_err();
        assert!(err("arch,acc\na,1\n").contains("no `accuracy` column"));
        assert!(err("arch,accuracy\na,1\n").contains("`b` was asked for and not told"));
        assert!(err("arch,accuracy\na,1\nb,x\n").contains("row 3"));
        assert!(err("arch,accuracy\na,1\nc,2\n").contains("`c` was not asked"));
        assert!(err("arch,accuracy\na,1\na,2\n").contains("told twice"));
    }

    #[test]
    fn the_search_waits_for_the_answer_and_clears_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let answer = std::thread::spawn(move || {
            while !d.join(ASK).exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
            let asked = std::fs::read_to_string(d.join(ASK)).unwrap();
            let rows: String = asked
                .lines()
                .map(|a| format!("{a},{}\n", a.len()))
                .collect();
            std::fs::write(d.join("tmp.csv"), format!("arch,accuracy\n{rows}")).unwrap();
            std::fs::rename(d.join("tmp.csv"), d.join(TELL)).unwrap();
        });
        let archs = vec!["abc".to_string(), "de".to_string()];
        assert_eq!(exchange(dir.path(), &archs).unwrap(), [3.0, 2.0]);
        answer.join().unwrap();
        assert!(!dir.path().join(ASK).exists() && !dir.path().join(TELL).exists());
    }
}
