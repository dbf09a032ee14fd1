//! Reading ORT's profiling trace: which nodes ran where, and for how long.

use super::*;

/// One `Run` as ORT's profiler saw it: the summed node kernel times, split into edge reorders
/// and the rest (profiler-inflated; used for the split, not as latencies).
#[derive(Debug, Clone, PartialEq)]
pub struct ProfiledRun {
    /// Kernel time of the nodes that are not edge reorders.
    pub inner_us: f64,
    pub edge_reorder_us: f64,
    pub providers: Vec<String>,
}

/// The node types that convert a lone op's input into the form a network keeps between ops
/// (leading) and back (trailing): layout reorders, and at fp16 the edge casts, at int8 the
/// edge (de)quantisation and the NHWC transposes ORT puts around its int8 kernels.
pub fn edge_conversions(
    precision: Precision,
) -> (&'static [&'static str], &'static [&'static str]) {
    match precision {
        Precision::Fp32 => (&["ReorderInput"], &["ReorderOutput"]),
        Precision::Fp16 => (&["ReorderInput", "Cast"], &["ReorderOutput", "Cast"]),
        Precision::Int8 => (
            &["ReorderInput", "QuantizeLinear", "Transpose"],
            &["ReorderOutput", "DequantizeLinear", "Transpose"],
        ),
    }
}

/// What a table's `median_us` means at `precision`: which edge nodes are taken out.
pub(super) fn latency_basis(precision: Precision) -> String {
    if precision == Precision::Fp32 {
        return "in-network: (wall - run overhead) x (1 - share of edge NCHWc reorders in ORT's profile)".into();
    }
    let (leading, trailing) = edge_conversions(precision);
    let kinds: std::collections::BTreeSet<&str> = leading.iter().chain(trailing).copied().collect();
    format!(
        "in-network: (wall - run overhead) x (1 - share of edge conversions in ORT's profile: {})",
        kinds.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// Split an ORT profile (Chrome trace JSON) into runs: node kernel events are assigned to the
/// `model_run` event whose time span contains them.
pub fn parse_profile(text: &str, precision: Precision) -> Result<Vec<ProfiledRun>, String> {
    let (leading_kinds, trailing_kinds) = edge_conversions(precision);
    let events: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let num = |e: &serde_json::Value, k: &str| e.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
    let mut runs: Vec<(f64, f64)> = events
        .iter()
        .filter(|e| e["cat"] == "Session" && e["name"] == "model_run")
        .map(|e| (num(e, "ts"), num(e, "ts") + num(e, "dur")))
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // (start ts, duration, op_name, provider) of each node kernel, per run.
    let mut nodes: Vec<Vec<(f64, f64, String, String)>> = vec![Vec::new(); runs.len()];
    for e in &events {
        let is_kernel = e["cat"] == "Node"
            && e["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("_kernel_time"));
        if !is_kernel {
            continue;
        }
        let ts = num(e, "ts");
        let Some(i) = runs.iter().position(|(s, end)| ts >= *s && ts <= *end) else {
            return Err(format!(
                "a node event at ts {ts} lies outside every model_run"
            ));
        };
        let args = &e["args"];
        nodes[i].push((
            ts,
            num(e, "dur"),
            args["op_name"].as_str().unwrap_or("").to_string(),
            args["provider"].as_str().unwrap_or("").to_string(),
        ));
    }
    Ok(nodes
        .into_iter()
        .map(|mut run| {
            run.sort_by(|a, b| a.0.total_cmp(&b.0));
            let leading = run
                .iter()
                .take_while(|n| leading_kinds.contains(&n.2.as_str()))
                .count();
            let trailing = run[leading..]
                .iter()
                .rev()
                .take_while(|n| trailing_kinds.contains(&n.2.as_str()))
                .count();
            // ORT truncates each duration to whole microseconds: add half a microsecond per node
            // so that sums are unbiased.
            let sum =
                |nodes: &[(f64, f64, String, String)]| nodes.iter().map(|n| n.1 + 0.5).sum::<f64>();
            let edge = sum(&run[..leading]) + sum(&run[run.len() - trailing..]);
            let total = sum(&run);
            let mut providers: Vec<String> = run
                .iter()
                .map(|n| n.3.clone())
                .filter(|p| !p.is_empty())
                .collect();
            providers.sort();
            providers.dedup();
            ProfiledRun {
                inner_us: total - edge,
                edge_reorder_us: edge,
                providers,
            }
        })
        .collect())
}

/// Each node's kernel time in an ORT profile, median over its runs, in execution order.
pub fn node_times(text: &str) -> Result<Vec<NodeTime>, String> {
    let events: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut order: Vec<(String, String)> = Vec::new();
    let mut times: std::collections::HashMap<String, Vec<f64>> = std::collections::HashMap::new();
    for e in &events {
        let Some(name) = e["name"]
            .as_str()
            .and_then(|n| n.strip_suffix("_kernel_time"))
        else {
            continue;
        };
        if e["cat"] != "Node" {
            continue;
        }
        let samples = times.entry(name.to_string()).or_default();
        if samples.is_empty() {
            let op = e["args"]["op_name"].as_str().unwrap_or("").to_string();
            order.push((name.to_string(), op));
        }
        // Durations are truncated to whole microseconds: half a microsecond unbiases them.
        samples.push(e["dur"].as_f64().unwrap_or(0.0) + 0.5);
    }
    Ok(order
        .into_iter()
        .map(|(name, op_type)| {
            let mut v = times.remove(&name).unwrap_or_default();
            v.sort_by(f64::total_cmp);
            let us = v.get(v.len() / 2).copied().unwrap_or(0.0);
            NodeTime { name, op_type, us }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_runs_exclude_edge_reorders_only() {
        let ev = |name: &str, op: &str, ts: u64, dur: u64| {
            format!(
                r#"{{"cat":"Node","name":"{name}_kernel_time","ts":{ts},"dur":{dur},"args":{{"op_name":"{op}","provider":"CPUExecutionProvider"}}}}"#
            )
        };
        let text = format!(
            "[{},{},{},{},{},{},{},{}]",
            r#"{"cat":"Session","name":"model_run","ts":100,"dur":100}"#,
            ev("r_in", "ReorderInput", 101, 5),
            ev("conv", "Conv", 110, 50),
            ev("mid_out", "ReorderOutput", 161, 3),
            ev("mul", "Mul", 165, 4),
            ev("r_out", "ReorderOutput", 170, 7),
            r#"{"cat":"Session","name":"model_run","ts":300,"dur":30}"#,
            ev("add", "Add", 301, 9),
        );
        let runs = parse_profile(&text, Precision::Fp32).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].inner_us, runs[0].edge_reorder_us), (58.5, 13.0));
        assert_eq!((runs[1].inner_us, runs[1].edge_reorder_us), (9.5, 0.0));
        assert_eq!(runs[0].providers, vec!["CPUExecutionProvider".to_string()]);
        assert!(parse_profile("[{", Precision::Fp32).is_err());
    }
}
