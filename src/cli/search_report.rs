//! What `hwnas search` prints, and `--verify`'s measurement on the device; the files and
//! everything they hold are `hwnas_search::report`.

use std::fmt::Write as _;
use std::path::Path;

use hwnas_profiler::device::DeviceProfile;
use hwnas_profiler::networks::Speed;
use hwnas_search::objective::{ArchProblem, LatencySource, Metrics};
use hwnas_search::problem::Outcome;
use hwnas_search::report::{Report, Verification, members_to_verify, verification_source};
use serde_json::Value;

use super::anchors::Anchors;
use super::e2e;

/// Measures front members on the device of `profile_path`: all of them, or `max` spread
/// evenly along the front's latency.
pub fn verify(
    problem: &ArchProblem,
    outcome: &Outcome<Metrics>,
    profile_path: &Path,
    library: Option<&Path>,
    max: usize,
    anchors: usize,
) -> anyhow::Result<Verification> {
    let profile = DeviceProfile::load(profile_path)?;
    let (source, precision) =
        verification_source(problem, &profile.name, profile_path, profile.precision)?;
    let mut profile = profile
        .with_precision(precision)
        .map_err(|e| anyhow::anyhow!("device profile {}: {e}", profile_path.display()))?;
    // Energy is measured too where the search predicted it for this device.
    let energy = problem.uses_energy() && problem.latency[source].has_energy();
    profile.energy.enabled |= energy;
    let mut rt = e2e::open(&profile, profile_path, library)?;
    let chosen = members_to_verify(outcome, source, max);
    let nets = chosen
        .iter()
        .map(|p| {
            problem
                .space
                .network(&outcome.archive[outcome.front[*p]].info.arch)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // At the speed of the table the predictions come from (a measured architecture table
    // carries no probe: its networks are compared raw).
    let (speed, anchors) = match &problem.latency[source] {
        LatencySource::Model { model, .. } => (
            model.probe_nominal_us(),
            Anchors::in_space(model, problem.space, anchors),
        ),
        LatencySource::Table { .. } => (
            None,
            Err("the latency source is a table of measured architectures".into()),
        ),
    };
    let speed = Speed {
        probe_nominal_us: speed,
    };
    let anchored = super::anchors::measure(
        rt.as_mut(),
        &nets,
        anchors,
        &profile.measure,
        speed,
        "verifying the front",
    )?;
    let times = &anchored.times;
    let mut measured_ms = vec![None; outcome.front.len()];
    let mut measured_mj = vec![None; if energy { outcome.front.len() } else { 0 }];
    for (p, t) in chosen.iter().zip(times) {
        measured_ms[*p] = Some(t.latency.median / 1e3);
        if let Some(mj) = measured_mj.get_mut(*p) {
            *mj = t.energy.map(|e| e.per_run_uj / 1e3);
        }
    }
    Ok(Verification {
        device: profile.name,
        source,
        measured_ms,
        measured_mj,
        precision: anchored.measured.precision_json(&profile.measure),
        sitting: anchored.sitting,
        energy_sitting: anchored.energy_sitting,
    })
}

/// The summary on stdout: counts, the front (or a sample of it), verification, comparison.
pub fn print(report: &Report, comparison: Option<&Value>, dir: &Path) {
    let ordered = report.ordered();
    let verification = report.verification.map(|v| report.verification_json(v));
    let p = report.problem;
    let o = report.outcome;
    println!(
        "{} architectures evaluated in {:.1} s{}; front: {} architectures",
        o.archive.len(),
        report.seconds,
        o.history.last().map_or(String::new(), |g| format!(
            " over {} generations (hypervolume {:.4})",
            g.index, g.hypervolume
        )),
        o.front.len()
    );
    let closest = o
        .archive
        .iter()
        .min_by(|a, b| a.eval.violation.total_cmp(&b.eval.violation));
    if o.front.is_empty()
        && let Some(best) = closest
    {
        println!(
            "no architecture met the constraints; the closest ({:.1}% over its bounds): {}",
            100.0 * best.eval.violation,
            best.info.arch
        );
    }
    if p.accuracy.is_proxy() {
        println!("note: accuracy is a PROXY (MFLOPs); give --accuracy for a real one");
    }
    let header = table_header(report);
    if !ordered.is_empty() {
        println!("{header}");
    }
    // A long front: an even sample of it (the members measured, when verified); the files
    // have all.
    let measured: Vec<&(usize, usize)> = ordered
        .iter()
        .filter(|(pos, _)| {
            report
                .verification
                .is_some_and(|v| v.measured_ms[*pos].is_some())
        })
        .collect();
    let pool: Vec<&(usize, usize)> = if measured.is_empty() {
        ordered.iter().collect()
    } else {
        measured
    };
    let step = pool.len().div_ceil(20).max(1);
    let rows: Vec<&(usize, usize)> = pool.into_iter().step_by(step).collect();
    for (pos, i) in &rows {
        let m = &o.archive[*i].info;
        let mut line = format!("{:>10.3}", m.accuracy);
        for ms in &m.latency_ms {
            let _ = write!(line, " {ms:>12.3}");
        }
        if let Some(v) = report.verification {
            match v.measured_ms[*pos] {
                Some(ms) => _ = write!(line, " {ms:>12.3}"),
                None => _ = write!(line, " {:>12}", "-"),
            }
        }
        for s in report.energy_sources() {
            let _ = write!(line, " {:>12.3}", m.energy_mj[s]);
        }
        let _ = write!(
            line,
            " {:>8.1} {:>8.2} {:>8.2}  {}",
            m.mflops, m.mparams, m.memory_mb, m.arch
        );
        println!("{line}");
    }
    if rows.len() < ordered.len() {
        println!(
            "({} of {} shown; every one is in front.csv)",
            rows.len(),
            ordered.len()
        );
    }
    if let Some(v) = verification {
        print_verification(&v);
    }
    if let Some(c) = comparison {
        println!(
            "hypervolume vs {}: {:.2}% ({:.4} vs {:.4}); {} of this front's architectures are on that front ({} there)",
            c["reference"].as_str().unwrap_or(""),
            100.0 * c["ratio"].as_f64().unwrap_or(f64::NAN),
            c["hypervolume"].as_f64().unwrap_or(f64::NAN),
            c["reference_hypervolume"].as_f64().unwrap_or(f64::NAN),
            c["found_in_reference_front"],
            c["reference_front"],
        );
        println!(
            "against that front (EvoXBench's indicators): normalised hypervolume {:.5}, IGD+ {:.5}",
            c["normalised_hypervolume"].as_f64().unwrap_or(f64::NAN),
            c["igd_plus"].as_f64().unwrap_or(f64::NAN),
        );
    }
    println!(
        "wrote {0}/front.csv, {0}/front.json, {0}/front.svg, {0}/history.csv",
        dir.display()
    );
}

/// The front table's header: accuracy, each latency source, the measured device, size.
fn table_header(report: &Report) -> String {
    let p = report.problem;
    let mut header = format!(
        "{:>10}",
        if p.accuracy.is_proxy() {
            "proxy"
        } else {
            "accuracy"
        }
    );
    for src in &p.latency {
        let _ = write!(header, " {:>12}", format!("{} ms", src.name()));
    }
    if let Some(v) = report.verification {
        let _ = write!(header, " {:>12}", format!("{} meas.", v.device));
    }
    for s in report.energy_sources() {
        let _ = write!(header, " {:>12}", format!("{} mJ", p.latency[s].name()));
    }
    let _ = write!(
        header,
        " {:>8} {:>8} {:>8}  arch",
        "MFLOPs", "Mparams", "mem MB"
    );
    header
}

/// How `--verify`'s networks compared with the calibration's sitting (the anchors).
fn print_sitting(sitting: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let Some(factor) = sitting["factor"].as_f64() else {
        println!(
            "  as the probe left them, not compared with the calibration's sitting: {}",
            sitting["why_none"].as_str().unwrap_or("")
        );
        return;
    };
    let p = &sitting["probe_only"];
    println!(
        "  at the calibration's sitting: {} of its networks, measured again among these, ran {factor:.3}x          their time at calibration (p10-p90 {:.3}-{:.3}x); against the times not divided by it,          {:.0}% within ±10% (median |error| {:.1}%)",
        sitting["anchors"],
        f(&sitting["p10"]),
        f(&sitting["p90"]),
        100.0 * f(&p["within_10"]),
        100.0 * f(&p["median_abs_error"]),
    );
}

/// `--verify`'s lines: latency, the sitting, energy.
fn print_verification(v: &Value) {
    println!(
        "verify on `{}`: {} of {} front networks measured, {:.0}% within ±10% of the prediction (median |error| {:.1}%, max {:.1}%, Kendall tau {:.3})",
        v["device"].as_str().unwrap_or(""),
        v["networks"],
        v["front"],
        100.0 * v["within_10"].as_f64().unwrap_or(f64::NAN),
        100.0 * v["median_abs_error"].as_f64().unwrap_or(f64::NAN),
        100.0 * v["max_abs_error"].as_f64().unwrap_or(f64::NAN),
        v["kendall_tau"].as_f64().unwrap_or(f64::NAN),
    );
    print_sitting(&v["sitting"]);
    if let Some(line) = e2e::precision_line(&v["precision"]) {
        println!("{line}");
    }
    let e = &v["energy"];
    if !e.is_null() {
        println!(
            "  and its energy: {:.0}% within ±10% of the prediction (median |error| {:.1}%, max {:.1}%, Kendall tau {:.3})",
            100.0 * e["within_10"].as_f64().unwrap_or(f64::NAN),
            100.0 * e["median_abs_error"].as_f64().unwrap_or(f64::NAN),
            100.0 * e["max_abs_error"].as_f64().unwrap_or(f64::NAN),
            e["kendall_tau"].as_f64().unwrap_or(f64::NAN),
        );
    }
}
