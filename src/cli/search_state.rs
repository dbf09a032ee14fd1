//! `hwnas search --state FILE`, `--resume FILE` and `--accuracy ask`: a search that records
//! its arguments and every accuracy it obtains, and continues from that record after a kill
//! (`hwnas_search::journal` says why replaying gives the same result).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Parser;
use hwnas_search::journal::Journal;
use serde_json::json;

use super::search::Args;

/// `hwnas search` as parsed again from a state file.
#[derive(Parser)]
#[command(name = "hwnas search")]
struct Resumed {
    #[command(flatten)]
    args: Args,
}

/// What `hwnas search` was given after the word `search`.
fn search_arguments() -> Vec<String> {
    std::env::args()
        .skip_while(|a| a != "search")
        .skip(1)
        .collect()
}

/// The arguments to search with and the journal to record in: a new one for `--state`, the
/// state file's for `--resume`, none without either.
pub fn start(args: Args) -> anyhow::Result<(Args, Option<Journal>)> {
    if let Some(path) = &args.resume {
        return resume(path);
    }
    let Some(state) = args.state.clone() else {
        if args.accuracy == "ask" {
            bail!(
                "--accuracy ask needs --state FILE: ask.txt and tell.csv go beside it, and a stopped search resumes from it"
            );
        }
        return Ok((args, None));
    };
    if state.exists() {
        bail!(
            "--state {0}: the file exists; continue that search with `hwnas search --resume {0}`, or remove it",
            state.display()
        );
    }
    if let Some(dir) = state.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let cwd = std::env::current_dir().context("the current directory")?;
    let journal = Journal::new(json!({"args": search_arguments(), "cwd": cwd}), Some(state));
    journal.save()?;
    Ok((args, Some(journal)))
}

fn resume(path: &Path) -> anyhow::Result<(Args, Option<Journal>)> {
    if search_arguments().len() > 2 {
        bail!(
            "--resume takes no other arguments: the search goes on with those {} holds",
            path.display()
        );
    }
    let path =
        std::fs::canonicalize(path).with_context(|| format!("--resume {}", path.display()))?;
    let journal = Journal::load(&path)?;
    let settings = journal.settings();
    let bad = |what: &str| format!("{}: no {what} in the search's settings", path.display());
    let args: Vec<String> = settings["args"]
        .as_array()
        .with_context(|| bad("args"))?
        .iter()
        .map(|a| a.as_str().map(String::from).with_context(|| bad("args")))
        .collect::<anyhow::Result<_>>()?;
    let cwd = settings["cwd"].as_str().with_context(|| bad("cwd"))?;
    // The arguments' paths are relative to where the search was started.
    std::env::set_current_dir(cwd).with_context(|| {
        format!(
            "{}: the search was started in {cwd}, which is gone",
            path.display()
        )
    })?;
    let resumed = Resumed::try_parse_from(std::iter::once("hwnas search".to_string()).chain(args))
        .with_context(|| format!("the arguments {} holds", path.display()))?;
    eprintln!(
        "resuming the search of {}: {} accuracies from it, the rest evaluated",
        path.display(),
        journal.told().len()
    );
    Ok((resumed.args, Some(journal)))
}

/// Where `--accuracy ask` writes ask.txt and reads tell.csv: beside the state file.
pub fn ask_dir(journal: Option<&Journal>) -> PathBuf {
    journal
        .and_then(Journal::path)
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}
