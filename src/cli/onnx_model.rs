//! A user's ONNX model: imported into vocabulary ops, and predicted layer by layer. Shared by
//! `predict --onnx`, `profile --onnx` and `validate --onnx`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use hwnas_onnx::import::{ImportOptions, Imported, import, list_unmapped, read_model};
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
    /// Stop at the first node hwnas cannot map (without it, every unmapped node is listed).
    #[arg(long)]
    pub strict: bool,
    /// Use a partly mapped model anyway: its unmapped nodes are left out of the latency, and the
    /// output states how many there are and their share of the model's FLOPs. Without it a
    /// partly mapped model is refused.
    #[arg(long, conflicts_with = "strict")]
    pub allow_unmapped: bool,
}

impl OnnxArgs {
    pub fn options(&self) -> ImportOptions {
        ImportOptions {
            batch: self.batch,
            strict: self.strict,
        }
    }
    pub fn load(&self, path: &Path) -> anyhow::Result<Imported> {
        load(path, self.options(), self.allow_unmapped)
    }
}

/// Read and map one file. A partly mapped model is an error naming the unmapped nodes unless
/// `allow_unmapped`; then they are listed on stderr.
pub fn load(path: &Path, opts: ImportOptions, allow_unmapped: bool) -> anyhow::Result<Imported> {
    let model = read_model(path)?;
    let m = import(&model, &path.display().to_string(), opts)?;
    let counts = m.unmapped_counts();
    if !counts.is_empty() {
        let list: Vec<String> = counts.iter().map(|(t, n)| format!("{t} x{n}")).collect();
        let what = format!(
            "{}: {} of {} nodes cannot be mapped to ops hwnas can time ({}), {}",
            path.display(),
            m.unmapped.len(),
            m.onnx_nodes,
            list.join(", "),
            share_text(&m)
        );
        if !allow_unmapped {
            bail!(
                "{what}:\n{}\nA prediction without them would be low. Pass --allow-unmapped to \
                 predict the mapped part anyway (the output then says it is partial).",
                list_unmapped(&m.unmapped)
            );
        }
        eprintln!("warning: {what}; left out of the latency (--allow-unmapped):");
        eprintln!("{}", list_unmapped(&m.unmapped));
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

/// "x% of the model's FLOPs", a lower bound when some unmapped nodes have no estimate.
fn share_text(m: &Imported) -> String {
    let (share, unknown) = m.unmapped_share();
    let bound = if unknown > 0 {
        format!(" at least, {unknown} of them of unknown cost")
    } else {
        String::new()
    };
    format!("{:.1}% of the model's FLOPs{bound}", 100.0 * share)
}

/// The line that opens a partial prediction's output.
pub fn partial_line(path: &Path, m: &Imported) -> Option<String> {
    (!m.unmapped.is_empty()).then(|| {
        format!(
            "PARTIAL: {}: {} unmapped nodes left out ({})",
            path.display(),
            m.unmapped.len(),
            share_text(m)
        )
    })
}

/// What the JSON says of the mapping: the mapped multiply-adds, and of unmapped nodes their
/// count, FLOPs share and the nodes.
pub fn unmapped_fields(m: &Imported) -> serde_json::Value {
    let (share, unknown) = m.unmapped_share();
    json!({
        "macs": m.network.macs(),
        "partial": !m.unmapped.is_empty(),
        "unmapped_nodes": m.unmapped.len(),
        "unmapped_flops_share": share,
        "unmapped_flops_share_is_lower_bound": unknown > 0,
        "unmapped": unmapped_json(m),
    })
}

pub fn summary_line(path: &Path, m: &Imported) -> String {
    format!(
        "{}: input {}, {} ONNX nodes (opset {}) -> {} ops, {} unmapped; {:.3} GMACs",
        path.display(),
        m.network.input,
        m.onnx_nodes,
        m.opset,
        m.network.nodes.len(),
        m.unmapped.len(),
        m.network.macs() as f64 / 1e9
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

fn unmapped_json(m: &Imported) -> serde_json::Value {
    m.unmapped
        .iter()
        .map(|u| json!({"node": u.node, "op_type": u.op_type, "why": u.why}))
        .collect()
}
