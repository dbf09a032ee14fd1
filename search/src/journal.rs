//! A search's memory of the accuracies it was given, so that it can stop and go on.
//!
//! Every strategy is deterministic given its seed and the values of what it evaluates, and
//! latency, size and table accuracies are recomputed in microseconds; only accuracies from
//! outside (a command, a training run, `ask`/`tell`) are dear. So the state of a search is its
//! settings and the accuracies told so far, in order: a resumed search runs again from the
//! start, answering from the [`Journal`] until it reaches what was never told, and takes the
//! same path as a run never stopped. The journal is written atomically after every batch (one
//! generation), so a kill loses at most the batch being evaluated.
//!
//! In ask mode ([`Journal::asking`]) an architecture the journal lacks is not evaluated: the
//! batch is left [`Journal::pending`] and the search stops with [`ASKED`], for a driver (the
//! Python `Search`) to hand out and answer with [`Journal::tell`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hwnas_core::files::write_atomic;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The schema of a state file.
pub const SCHEMA: &str = "hwnas-search-state/1";

/// The message of the error that stops a search in ask mode.
pub const ASKED: &str = "waiting for the accuracies of the architectures asked";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{}: {why}", path.display())]
    File { path: PathBuf, why: String },
    #[error("{0}")]
    Tell(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Told {
    pub arch: String,
    pub accuracy: f64,
}

/// What a state file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateFile {
    schema: String,
    /// What the search was started with (the CLI's arguments, or the Python settings).
    search: Value,
    accuracies: Vec<Told>,
}

#[derive(Debug, Clone, Default)]
pub struct Journal {
    path: Option<PathBuf>,
    settings: Value,
    told: Vec<Told>,
    index: HashMap<String, f64>,
    asking: bool,
    pending: Vec<String>,
}

impl Journal {
    /// A new journal of a search started with `settings`, saved to `path` after every batch
    /// where one is given.
    pub fn new(settings: Value, path: Option<PathBuf>) -> Journal {
        Journal {
            path,
            settings,
            ..Journal::default()
        }
    }

    /// The journal a state file holds; it goes on saving to the same file.
    pub fn load(path: &Path) -> Result<Journal, JournalError> {
        let fail = |why: String| JournalError::File {
            path: path.to_path_buf(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let state: StateFile = serde_json::from_str(&text)
            .map_err(|e| fail(format!("not a search state file ({e})")))?;
        if state.schema != SCHEMA {
            return Err(fail(format!(
                "schema `{}`, this hwnas reads `{SCHEMA}`",
                state.schema
            )));
        }
        let mut journal = Journal::new(state.search, Some(path.to_path_buf()));
        for t in state.accuracies {
            journal.record(t.arch, t.accuracy);
        }
        Ok(journal)
    }

    /// In ask mode, architectures the journal lacks are asked for instead of evaluated.
    pub fn asking(mut self) -> Journal {
        self.asking = true;
        self
    }

    pub fn settings(&self) -> &Value {
        &self.settings
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Every accuracy told, in order.
    pub fn told(&self) -> &[Told] {
        &self.told
    }

    /// The architectures asked for and not yet told (ask mode).
    pub fn pending(&self) -> &[String] {
        &self.pending
    }

    fn record(&mut self, arch: String, accuracy: f64) {
        if self.index.insert(arch.clone(), accuracy).is_none() {
            self.told.push(Told { arch, accuracy });
        }
    }

    /// Accuracies of a batch: from the journal where told, else from `fresh` (given the
    /// positions of the rest), which are recorded and saved. In ask mode the rest are left
    /// pending and the answer is an error saying [`ASKED`].
    pub fn accuracies(
        &mut self,
        archs: &[String],
        fresh: impl FnOnce(&[usize]) -> Result<Vec<f64>, String>,
    ) -> Result<Vec<f64>, String> {
        let missing: Vec<usize> = (0..archs.len())
            .filter(|i| !self.index.contains_key(&archs[*i]))
            .collect();
        if !missing.is_empty() {
            if self.asking {
                self.pending = missing.iter().map(|i| archs[*i].clone()).collect();
                return Err(ASKED.into());
            }
            let values = fresh(&missing)?;
            for (i, v) in missing.iter().zip(values) {
                self.record(archs[*i].clone(), v);
            }
            self.save().map_err(|e| e.to_string())?;
        }
        Ok(archs.iter().map(|a| self.index[a]).collect())
    }

    /// Answers the pending architectures: every one of them, each once, with a finite
    /// accuracy.
    pub fn tell(&mut self, archs: &[String], accuracies: &[f64]) -> Result<(), JournalError> {
        if archs.len() != accuracies.len() {
            return Err(JournalError::Tell(format!(
                "{} architectures and {} accuracies",
                archs.len(),
                accuracies.len()
            )));
        }
        let mut answers: HashMap<&str, f64> = HashMap::new();
        for (a, v) in archs.iter().zip(accuracies) {
            if !self.pending.contains(a) {
                return Err(JournalError::Tell(format!(
                    "`{a}` was not asked for (or was told already)"
                )));
            }
            if !v.is_finite() {
                return Err(JournalError::Tell(format!(
                    "the accuracy of `{a}` is {v}; give a finite number (a failed run's worst accuracy, say)"
                )));
            }
            answers.insert(a, *v);
        }
        if let Some(missing) = self
            .pending
            .iter()
            .find(|p| !answers.contains_key(p.as_str()))
        {
            return Err(JournalError::Tell(format!(
                "`{missing}` was asked for and not told ({} of {} told)",
                answers.len(),
                self.pending.len()
            )));
        }
        for arch in std::mem::take(&mut self.pending) {
            let v = answers[arch.as_str()];
            self.record(arch, v);
        }
        self.save()
    }

    /// Writes the state file (atomically), where the journal has one.
    pub fn save(&self) -> Result<(), JournalError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let state = StateFile {
            schema: SCHEMA.into(),
            search: self.settings.clone(),
            accuracies: self.told.clone(),
        };
        let text = serde_json::to_string_pretty(&state).expect("a state serialises");
        write_atomic(path, text).map_err(|e| JournalError::File {
            path: path.clone(),
            why: format!("saving the search state: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn archs(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn answers_from_the_journal_and_asks_only_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut j = Journal::new(json!({"seed": 1}), Some(path.clone()));
        let got = j
            .accuracies(&archs(&["a", "b"]), |m| {
                Ok(m.iter().map(|i| *i as f64).collect())
            })
            .unwrap();
        assert_eq!(got, [0.0, 1.0]);
        // Only `c` is new; `fresh` sees its position.
        let got = j
            .accuracies(&archs(&["b", "c"]), |m| {
                assert_eq!(m, [1]);
                Ok(vec![7.0])
            })
            .unwrap();
        assert_eq!(got, [1.0, 7.0]);
        let again = Journal::load(&path).unwrap();
        assert_eq!(again.told(), j.told());
        assert_eq!(again.settings(), &json!({"seed": 1}));
    }

    #[test]
    fn ask_mode_leaves_the_batch_pending_until_told_whole() {
        let mut j = Journal::new(json!({}), None).asking();
        let batch = archs(&["x", "y"]);
        let err = j.accuracies(&batch, |_| unreachable!()).unwrap_err();
        assert_eq!(err, ASKED);
        assert_eq!(j.pending(), batch.as_slice());
        let e = |r: Result<(), JournalError>| r.unwrap_err().to_string();
        assert!(e(j.tell(&archs(&["x"]), &[0.5])).contains("`y` was asked for and not told"));
        assert!(e(j.tell(&archs(&["z"]), &[0.5])).contains("`z` was not asked"));
        assert!(e(j.tell(&batch, &[0.5, f64::NAN])).contains("finite"));
        j.tell(&archs(&["y", "x"]), &[0.2, 0.1]).unwrap();
        assert!(j.pending().is_empty());
        assert_eq!(
            j.accuracies(&batch, |_| unreachable!()).unwrap(),
            [0.1, 0.2]
        );
    }

    #[test]
    fn a_bad_state_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(
            &path,
            "{\"schema\": \"other/9\", \"search\": {}, \"accuracies\": []}",
        )
        .unwrap();
        let err = Journal::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("state.json") && err.contains("other/9"),
            "{err}"
        );
        std::fs::write(&path, "{").unwrap();
        assert!(
            Journal::load(&path)
                .unwrap_err()
                .to_string()
                .contains("not a search state")
        );
    }
}
