//! A user's ONNX model: imported into vocabulary ops, and predicted layer by layer. Shared by
//! `predict --onnx`, `profile --onnx` and `validate --onnx`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use hwnas_onnx::import::{ImportOptions, Imported, import, read_model};
use hwnas_predictor::model::Source;
use hwnas_predictor::{LatencyModel, Prediction};
use serde_json::json;

/// How `--onnx` files are read.
#[derive(clap::Args, Clone)]
pub struct OnnxArgs {
    /// An ONNX model (repeatable): its layers are mapped to hwnas ops.
    #[arg(long)]
    pub onnx: Vec<PathBuf>,
    /// The batch size for a model whose batch dimension is symbolic.
    #[arg(long)]
    pub batch: Option<u32>,
    /// Fail on a node hwnas cannot map, instead of reporting and skipping it.
    #[arg(long)]
    pub strict: bool,
}

impl OnnxArgs {
    pub fn options(&self) -> ImportOptions {
        ImportOptions {
            batch: self.batch,
            strict: self.strict,
        }
    }
}

/// Read and map one file; what did not map is reported on stderr.
pub fn load(path: &Path, opts: ImportOptions) -> anyhow::Result<Imported> {
    let model = read_model(path)?;
    let m = import(&model, &path.display().to_string(), opts)?;
    let counts = m.unmapped_counts();
    if !counts.is_empty() {
        let list: Vec<String> = counts.iter().map(|(t, n)| format!("{t} x{n}")).collect();
        eprintln!(
            "note: {}: {} nodes not mapped and left out of the latency ({}); --strict makes this an error",
            path.display(),
            m.unmapped.len(),
            list.join(", ")
        );
        for u in &m.unmapped {
            eprintln!("  {} ({}): {}", u.node, u.op_type, u.why);
        }
    }
    for note in &m.notes {
        eprintln!("note: {}: {note}", path.display());
    }
    Ok(m)
}

/// One layer's predicted latency and where it came from.
pub struct LayerPrediction<'a> {
    pub key: String,
    pub us: f64,
    pub source: Source,
    pub nodes: &'a [String],
}

/// The whole model's prediction and each layer's (uncalibrated) latency.
pub fn predict<'a>(
    model: &LatencyModel,
    m: &'a Imported,
    path: &Path,
) -> anyhow::Result<(Prediction, Vec<LayerPrediction<'a>>)> {
    let total = model
        .predict(&model.terms(&m.network))
        .with_context(|| format!("predicting {}", path.display()))?;
    let layers = m
        .network
        .ops()
        .zip(&m.layers)
        .map(|(op, nodes)| {
            let (us, source) = model.op_us(op).unwrap_or((f64::NAN, Source::Regressed));
            LayerPrediction {
                key: op.key(),
                us,
                source,
                nodes,
            }
        })
        .collect();
    Ok((total, layers))
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Measured => "table",
        Source::Regressed => "predicted",
        Source::Free => "free",
    }
}

pub fn summary_line(path: &Path, m: &Imported) -> String {
    format!(
        "{}: input {}, {} ONNX nodes (opset {}) -> {} ops, {} unmapped",
        path.display(),
        m.network.input,
        m.onnx_nodes,
        m.opset,
        m.network.nodes.len(),
        m.unmapped.len()
    )
}

/// The per-layer table: latency, source (table or predicted), op key, ONNX nodes.
pub fn print_layers(layers: &[LayerPrediction<'_>], sum_us: f64) {
    println!(
        "  {:>4} {:>11} {:>6}  {:<10} {:<70} onnx nodes",
        "#", "us", "share", "source", "op"
    );
    for (i, l) in layers.iter().enumerate() {
        println!(
            "  {i:>4} {:>11.1} {:>5.1}%  {:<10} {:<70} {}",
            l.us,
            100.0 * l.us / sum_us.max(1e-9),
            source_name(l.source),
            l.key,
            l.nodes.join(", ")
        );
    }
}

pub fn layers_json(layers: &[LayerPrediction<'_>]) -> serde_json::Value {
    layers
        .iter()
        .map(|l| json!({"op": l.key, "us": l.us, "source": source_name(l.source), "onnx_nodes": l.nodes}))
        .collect()
}

pub fn unmapped_json(m: &Imported) -> serde_json::Value {
    m.unmapped
        .iter()
        .map(|u| json!({"node": u.node, "op_type": u.op_type, "why": u.why}))
        .collect()
}
