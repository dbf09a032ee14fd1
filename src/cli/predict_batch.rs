//! `hwnas predict --archs FILE` and `--all`: many architectures, one CSV line each. Latency
//! comes from the model compiled for the space where it is a sum of units (table lookups from
//! the genome), else from each network; `--sizes` builds every network for its FLOPs,
//! parameters and peak memory.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use hwnas_predictor::LatencyModel;
use hwnas_search::lut::ENUMERABLE;
use hwnas_search::objective::LatencySource;
use hwnas_search::space::{SearchSpace, genome_count};

/// Where the architectures come from.
pub enum Input<'a> {
    /// One per line of a file, or of standard input (`-`), answered line by line.
    Lines(&'a Path),
    /// Every architecture of a space small enough to enumerate.
    All,
}

pub fn run(
    model: &LatencyModel,
    space: &dyn SearchSpace,
    input: Input,
    sizes: bool,
) -> anyhow::Result<ExitCode> {
    let source = LatencySource::model(model.device.clone(), model.clone(), space);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut header = String::from("arch,latency_ms");
    if sizes {
        header += ",mflops,mparams,peak_memory_mb";
    }
    writeln!(out, "{header}")?;
    // A program driving `--archs -` reads the header before it writes its first line.
    out.flush()?;
    let answer = |genome: &[u8], out: &mut BufWriter<_>| -> anyhow::Result<()> {
        let arch = space.decode(genome);
        let net = if sizes || source.needs_network() {
            Some(space.network(&arch)?)
        } else {
            None
        };
        let ms = source
            .latency_ms(&arch, genome, net.as_ref())
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("predicting `{arch}`"))?;
        write!(out, "\"{arch}\",{ms:.6}")?;
        if let Some(net) = net.filter(|_| sizes) {
            write!(
                out,
                ",{:.6},{:.6},{:.6}",
                net.flops() as f64 / 1e6,
                net.params() as f64 / 1e6,
                net.peak_activation_bytes() as f64 / 1e6
            )?;
        }
        writeln!(out)?;
        Ok(())
    };
    match input {
        Input::All => {
            let genes = space.genes();
            let count = genome_count(&genes);
            if count > ENUMERABLE as f64 {
                bail!(
                    "--all: {} has {count:.3e} architectures (at most {ENUMERABLE} are listed); give them with --archs",
                    space.name()
                );
            }
            let mut genome = vec![0u8; genes.len()];
            for flat in 0..count as usize {
                // Row-major, the last gene fastest.
                let mut rest = flat;
                for (g, gene) in genome.iter_mut().zip(&genes).rev() {
                    *g = (rest % usize::from(gene.levels)) as u8;
                    rest /= usize::from(gene.levels);
                }
                answer(&genome, &mut out)?;
            }
        }
        Input::Lines(path) => {
            let interactive = path == Path::new("-");
            let reader: Box<dyn BufRead> = if interactive {
                Box::new(std::io::stdin().lock())
            } else {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("reading --archs {}", path.display()))?;
                Box::new(std::io::BufReader::new(file))
            };
            for (n, line) in reader.lines().enumerate() {
                let line = line.with_context(|| format!("reading --archs {}", path.display()))?;
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let genome = genome_of(space, line).with_context(|| {
                    format!("--archs {} line {}: `{line}`", path.display(), n + 1)
                })?;
                answer(&genome, &mut out)?;
                if interactive {
                    out.flush()?;
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A line's genome: comma-separated gene values, or an encoding of the space.
pub(super) fn genome_of(space: &dyn SearchSpace, line: &str) -> anyhow::Result<Vec<u8>> {
    let is_genome = line
        .chars()
        .all(|c| c.is_ascii_digit() || c == ',' || c == ' ');
    if !is_genome {
        return Ok(space.encode(line)?);
    }
    let genes = space.genes();
    let values: Vec<&str> = line.split(',').map(str::trim).collect();
    if values.len() != genes.len() {
        bail!(
            "a genome of {} has {} genes, this line {} values",
            space.name(),
            genes.len(),
            values.len()
        );
    }
    values
        .iter()
        .zip(&genes)
        .enumerate()
        .map(|(i, (v, gene))| match v.parse::<u8>() {
            Ok(x) if x < gene.levels => Ok(x),
            _ => bail!("gene {i} is `{v}`, not one of 0..{}", gene.levels),
        })
        .collect()
}
