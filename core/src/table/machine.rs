//! The machine's state while a table was measured (load, CPU clock), and the rows to doubt.

use super::*;

/// How far a row's CPU clock may stray from the table's median before the row is suspect.
pub const CLOCK_TOLERANCE: f64 = 0.10;

/// What a table's rows say of the machine they were measured on.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineReport {
    /// One line: the range of load and clock seen (absent when no row recorded them).
    pub summary: Option<String>,
    /// One line: the machine's speed the reference probe saw across rows and how much the
    /// rows were corrected by it (absent for tables measured without the probe).
    pub drift: Option<String>,
    /// Rows measured while the machine was busy, or at a clock far from the others'.
    pub problems: Vec<String>,
}

/// Rows measured with a 1-minute load above the machine's `cpus` (other work was competing
/// for the cores; a problem only without the probe, which corrects them), and rows whose CPU
/// clock is more than [`CLOCK_TOLERANCE`] from the median row's (frequency scaling, turbo or
/// thermal throttling between rows).
pub fn machine_report(rows: &[&Row], cpus: Option<usize>) -> MachineReport {
    let drift = drift_summary(rows);
    let loads: Vec<(f64, &Row)> = rows.iter().filter_map(|r| Some((r.load1?, *r))).collect();
    let clocks: Vec<(f64, &Row)> = rows.iter().filter_map(|r| Some((r.cpu_mhz?, *r))).collect();
    let range = |v: &[(f64, &Row)]| {
        v.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (x, _)| {
                (lo.min(*x), hi.max(*x))
            })
    };
    let mut parts = Vec::new();
    let mut problems = Vec::new();
    if !loads.is_empty() {
        let (lo, hi) = range(&loads);
        let on = cpus.map_or(String::new(), |c| format!(" on {c} CPUs"));
        parts.push(format!("1-min load {lo:.2}-{hi:.2}{on}"));
        if let Some(cpus) = cpus {
            let busy: Vec<&(f64, &Row)> = loads.iter().filter(|(l, _)| *l > cpus as f64).collect();
            if let Some((load, row)) = busy.first().filter(|_| drift.is_none()) {
                problems.push(format!(
                    "{} rows measured while the machine was busy (1-min load above its {cpus} CPUs), e.g. `{}` at load {load:.2}; measure them again when it is quiet",
                    busy.len(),
                    row.key
                ));
            }
        }
    }
    if !clocks.is_empty() {
        let (lo, hi) = range(&clocks);
        let mut sorted: Vec<f64> = clocks.iter().map(|(c, _)| *c).collect();
        sorted.sort_by(f64::total_cmp);
        let median = crate::stats::quantile_sorted(&sorted, 0.5);
        parts.push(format!("CPU clock {lo:.0}-{hi:.0} MHz"));
        let off: Vec<&(f64, &Row)> = clocks
            .iter()
            .filter(|(c, _)| (c - median).abs() > CLOCK_TOLERANCE * median)
            .collect();
        if let Some((mhz, row)) = off.first() {
            problems.push(format!(
                "{} rows measured at a CPU clock more than {:.0}% from the median row's {median:.0} MHz (frequency scaling or throttling), e.g. `{}` at {mhz:.0} MHz; fix the clock (performance governor) and measure them again",
                off.len(),
                100.0 * CLOCK_TOLERANCE,
                row.key
            ));
        }
    }
    MachineReport {
        summary: (!parts.is_empty()).then(|| parts.join(", ")),
        drift,
        problems,
    }
}

/// The probe's times across rows (p5, median, p95) and the correction applied to the rows
/// (median and p95 of |median_us / raw_us - 1|).
fn drift_summary(rows: &[&Row]) -> Option<String> {
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let probe = sorted(rows.iter().filter_map(|r| r.probe_us).collect());
    if probe.is_empty() {
        return None;
    }
    let fix = sorted(
        rows.iter()
            .filter_map(|r| Some((r.median_us / r.raw_us.filter(|v| *v > 0.0)? - 1.0).abs()))
            .collect(),
    );
    let q = crate::stats::quantile_sorted;
    Some(format!(
        "reference probe {:.1} us (p5-p95 {:.1}-{:.1} us) over {} rows; rows corrected by {:.1}% (p95 {:.1}%), raw_us keeps the uncorrected median",
        q(&probe, 0.5),
        q(&probe, 0.05),
        q(&probe, 0.95),
        probe.len(),
        100.0 * q(&fix, 0.5),
        100.0 * q(&fix, 0.95)
    ))
}
