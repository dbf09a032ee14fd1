//! Where a search's accuracy comes from: a table of measured accuracies, a regression fitted on
//! (architecture, accuracy) samples, an external command, or a named proxy.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use hwnas_core::network::Network;
use hwnas_core::rng::SplitMix64;
use hwnas_predictor::gbdt::{Gbdt, GbdtParams, records};
use hwnas_predictor::metrics::kendall_tau;
use linfa::dataset::DatasetBase;
use linfa::traits::Fit;
use ndarray::Array1;

use crate::arch_table::{ArchTable, ValueKind};
use crate::ask_file;
use crate::space::{Gene, SearchSpace};

#[derive(Debug, Clone)]
pub enum AccuracySource {
    /// Measured accuracies (`table:FILE.csv[#COLUMN]`); every architecture must be in it.
    Table(ArchTable),
    /// A gradient-boosted tree ensemble on the genome (`fit:FILE.csv[#COLUMN]`).
    Fitted(FittedAccuracy),
    /// `cmd:COMMAND`: run through `sh -c`, given one architecture per line on stdin, answering
    /// one accuracy per line on stdout.
    Command(String),
    /// No accuracy source: the network's FLOPs in millions stand in, and are named so.
    FlopsProxy,
    /// `ask`: each batch is written to `ask.txt` in this folder and answered in `tell.csv`
    /// ([`crate::ask_file`]).
    Ask(PathBuf),
    /// Told by whoever drives the search ([`crate::ask_tell`]), never evaluated here.
    Told,
}

#[derive(Debug, thiserror::Error)]
pub enum AccuracyError {
    #[error(
        "--accuracy `{0}`: expected table:FILE.csv[#COLUMN], fit:FILE.csv[#COLUMN], cmd:COMMAND, ask or proxy"
    )]
    Spec(String),
    #[error(transparent)]
    Table(#[from] crate::arch_table::ArchTableError),
    #[error("fitting accuracy on {path}: {why}")]
    Fit { path: String, why: String },
    #[error("accuracy command `{command}`: {why}")]
    Command { command: String, why: String },
    #[error("--accuracy ask: {path}: {why}")]
    Ask { path: String, why: String },
}

impl AccuracySource {
    /// Parses the `--accuracy` value.
    pub fn parse(spec: &str, space: &dyn SearchSpace, seed: u64) -> Result<Self, AccuracyError> {
        if let Some(file) = spec.strip_prefix("table:") {
            let t = ArchTable::from_spec(file, ValueKind::Accuracy, space)?;
            Ok(AccuracySource::Table(t))
        } else if let Some(file) = spec.strip_prefix("fit:") {
            let t = ArchTable::from_spec(file, ValueKind::Accuracy, space)?;
            Ok(AccuracySource::Fitted(FittedAccuracy::fit(
                &t, space, seed,
            )?))
        } else if let Some(cmd) = spec.strip_prefix("cmd:") {
            if cmd.trim().is_empty() {
                return Err(AccuracyError::Spec(spec.into()));
            }
            Ok(AccuracySource::Command(cmd.into()))
        } else if spec == "proxy" {
            Ok(AccuracySource::FlopsProxy)
        } else if spec == "ask" {
            Ok(AccuracySource::Ask(PathBuf::from(".")))
        } else {
            Err(AccuracyError::Spec(spec.into()))
        }
    }

    /// What the accuracy column means, for the output.
    pub fn describe(&self) -> String {
        match self {
            AccuracySource::Table(t) => {
                format!("measured: column `{}` of {}", t.column, t.path.display())
            }
            AccuracySource::Fitted(f) => format!(
                "predicted by a GBDT fitted on {} samples of {} (5-fold CV: Kendall tau {:.3}, RMSE {:.3})",
                f.samples, f.source, f.cv_kendall_tau, f.cv_rmse
            ),
            AccuracySource::Command(c) => format!("from the command `{c}`"),
            AccuracySource::FlopsProxy => {
                "PROXY: MFLOPs stand in for accuracy (no --accuracy given); not an accuracy".into()
            }
            AccuracySource::Ask(dir) => format!(
                "asked for in {} and told in {}",
                dir.join(ask_file::ASK).display(),
                dir.join(ask_file::TELL).display()
            ),
            AccuracySource::Told => "told by the search's driver (ask/tell)".into(),
        }
    }

    pub fn is_proxy(&self) -> bool {
        matches!(self, AccuracySource::FlopsProxy)
    }

    /// Accuracies of a batch: canonical encodings, their genomes and networks.
    pub fn evaluate(
        &self,
        archs: &[String],
        genomes: &[Vec<u8>],
        nets: &[Network],
    ) -> Result<Vec<f64>, AccuracyError> {
        match self {
            AccuracySource::Table(t) => {
                Ok(archs.iter().map(|a| t.get(a)).collect::<Result<_, _>>()?)
            }
            AccuracySource::Fitted(f) => Ok(genomes.iter().map(|g| f.predict(g)).collect()),
            AccuracySource::Command(c) => run_command(c, archs),
            AccuracySource::FlopsProxy => Ok(nets.iter().map(|n| n.flops() as f64 / 1e6).collect()),
            AccuracySource::Ask(dir) => ask_file::exchange(dir, archs),
            AccuracySource::Told => Err(AccuracyError::Spec(
                "told (the search's driver answers every accuracy)".into(),
            )),
        }
    }
}

/// A regression from genome to accuracy.
#[derive(Debug, Clone)]
pub struct FittedAccuracy {
    pub source: String,
    pub samples: usize,
    pub cv_kendall_tau: f64,
    pub cv_rmse: f64,
    genes: Vec<Gene>,
    model: Gbdt,
}

const FOLDS: usize = 5;

impl FittedAccuracy {
    pub fn fit(
        table: &ArchTable,
        space: &dyn SearchSpace,
        seed: u64,
    ) -> Result<FittedAccuracy, AccuracyError> {
        let genes = space.genes();
        let fail = |why: String| AccuracyError::Fit {
            path: table.path.display().to_string(),
            why,
        };
        let mut rows: Vec<(Vec<f64>, f64)> = table
            .iter()
            .map(|(arch, acc)| {
                let genome = space
                    .encode(arch)
                    .expect("the table holds canonical encodings");
                (features(&genes, &genome), acc)
            })
            .collect();
        // The table's order is a hash map's: sort, then shuffle with the seed.
        rows.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        let mut rng = SplitMix64::new(seed ^ 0xacc);
        for i in (1..rows.len()).rev() {
            rows.swap(i, rng.below(i + 1));
        }
        if rows.len() < 2 * FOLDS {
            return Err(fail(format!(
                "{} samples; at least {} are needed",
                rows.len(),
                2 * FOLDS
            )));
        }
        let params = GbdtParams {
            n_trees: 200,
            max_depth: 4,
            learning_rate: 0.1,
            min_leaf: 3,
        };
        let train = |rows: &[&(Vec<f64>, f64)]| -> Result<Gbdt, AccuracyError> {
            let x: Vec<Vec<f64>> = rows.iter().map(|r| r.0.clone()).collect();
            let y: Array1<f64> = rows.iter().map(|r| r.1).collect();
            params
                .fit(&DatasetBase::new(records(&x), y))
                .map_err(|e| fail(e.to_string()))
        };
        let (mut predicted, mut actual) = (Vec::new(), Vec::new());
        for fold in 0..FOLDS {
            let (held, kept): (Vec<_>, Vec<_>) = rows
                .iter()
                .enumerate()
                .partition(|(i, _)| i % FOLDS == fold);
            let model = train(&kept.into_iter().map(|(_, r)| r).collect::<Vec<_>>())?;
            for (_, (x, y)) in held {
                predicted.push(model.predict_one(x));
                actual.push(*y);
            }
        }
        let mse = predicted
            .iter()
            .zip(&actual)
            .map(|(p, a)| (p - a).powi(2))
            .sum::<f64>()
            / actual.len() as f64;
        let model = train(&rows.iter().collect::<Vec<_>>())?;
        Ok(FittedAccuracy {
            source: table.path.display().to_string(),
            samples: rows.len(),
            cv_kendall_tau: kendall_tau(&predicted, &actual),
            cv_rmse: mse.sqrt(),
            genes,
            model,
        })
    }

    pub fn predict(&self, genome: &[u8]) -> f64 {
        self.model.predict_one(&features(&self.genes, genome))
    }
}

/// Ordered genes as their position in [0, 1], unordered ones one-hot.
fn features(genes: &[Gene], genome: &[u8]) -> Vec<f64> {
    let mut x = Vec::new();
    for (g, v) in genes.iter().zip(genome) {
        if g.ordered {
            x.push(*v as f64 / (g.levels.max(2) - 1) as f64);
        } else {
            x.extend((0..g.levels).map(|l| f64::from(u8::from(l == *v))));
        }
    }
    x
}

fn run_command(command: &str, archs: &[String]) -> Result<Vec<f64>, AccuracyError> {
    let fail = |why: String| AccuracyError::Command {
        command: command.into(),
        why,
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let input = archs.join("\n") + "\n";
    // Write from a thread: a command that answers as it reads would fill its stdout pipe
    // while we are still writing.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("did not finish: {e}")))?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(fail(format!("exited with {}", out.status)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let values: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if values.len() != archs.len() {
        return Err(fail(format!(
            "answered {} lines for {} architectures (one accuracy per input line expected)",
            values.len(),
            archs.len()
        )));
    }
    values
        .iter()
        .zip(archs)
        .map(|(v, a)| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| fail(format!("`{v}` for `{a}` is not a number")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::nb201::Nb201;

    #[test]
    fn a_command_answers_a_batch_in_order() {
        let archs: Vec<String> = vec!["a".into(), "bb".into(), "ccc".into()];
        // The length of each line: 2, 3, 4 (awk counts the characters of each line read).
        let acc = run_command("awk '{ print length($0) + 1 }'", &archs).unwrap();
        assert_eq!(acc, vec![2.0, 3.0, 4.0]);
        let e = run_command("head -n 1", &archs).unwrap_err();
        assert!(e.to_string().contains("answered 1 lines for 3"), "{e}");
        let e = run_command("exit 3", &archs).unwrap_err();
        assert!(e.to_string().contains("exited"), "{e}");
    }

    #[test]
    fn fitted_accuracy_learns_an_additive_law_and_reports_its_cv() {
        // Accuracy = 60 + 5 × (number of 3x3 convs): a table of 400 cells.
        let mut rng = SplitMix64::new(2);
        let mut text = String::from("arch,acc\n");
        let mut seen = std::collections::HashSet::new();
        while seen.len() < 400 {
            let a = Nb201.sample(&mut rng);
            if seen.insert(a.clone()) {
                let convs = a.matches("nor_conv_3x3").count();
                text += &format!("{a},{}\n", 60 + 5 * convs);
            }
        }
        let f = crate::arch_table::temp_file(&text);
        let spec = format!("fit:{}", f.path().display());
        let AccuracySource::Fitted(fitted) = AccuracySource::parse(&spec, &Nb201, 1).unwrap()
        else {
            panic!("expected a fitted source");
        };
        // Seven distinct accuracies, many ties: tau-b stays below 1 even for exact predictions.
        assert!(fitted.cv_kendall_tau > 0.8, "{}", fitted.cv_kendall_tau);
        assert!(fitted.cv_rmse < 1.0, "{}", fitted.cv_rmse);
        // Cells it never saw, inside the range it saw (trees do not extrapolate).
        let mut checked = 0;
        while checked < 50 {
            let a = Nb201.sample(&mut rng);
            let convs = a.matches("nor_conv_3x3").count();
            if seen.contains(&a) || convs > 3 {
                continue;
            }
            let p = fitted.predict(&Nb201.encode(&a).unwrap());
            assert!((p - (60 + 5 * convs) as f64).abs() < 2.5, "{a}: {p}");
            checked += 1;
        }
        assert!(AccuracySource::parse("oracle", &Nb201, 1).is_err());
    }
}
