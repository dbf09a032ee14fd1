//! # hwnas-plot
//!
//! The two plots hwnas writes, as self-contained SVG drawn with `plotters`:
//! - [`predicted_vs_measured`]: `hwnas validate`'s networks, predicted against measured latency
//!   on log-log axes, with the y = x line and the ±10% band;
//! - [`pareto`]: a search's evaluated architectures and its Pareto front ([`Axes`] says which
//!   metrics and whether each axis is logarithmic).
//!
//! Latency, FLOPs, parameters and memory span decades across a search space (NAS-Bench-201's
//! cells run from tens of microseconds to milliseconds), so their axes are logarithmic; the
//! accuracy axis spans what the front spans.

mod pareto;
mod scatter;

pub use pareto::{Axes, pareto};
pub use scatter::predicted_vs_measured;

use plotters::style::RGBColor;

#[derive(Debug, thiserror::Error)]
#[error("drawing the plot: {0}")]
pub struct PlotError(String);

impl<E: std::error::Error + Send + Sync> From<plotters::drawing::DrawingAreaErrorKind<E>>
    for PlotError
{
    fn from(e: plotters::drawing::DrawingAreaErrorKind<E>) -> Self {
        PlotError(e.to_string())
    }
}

const FONT: &str = "sans-serif";
const GREY: RGBColor = RGBColor(148, 163, 184);
const BLUE: RGBColor = RGBColor(37, 99, 235);
const BAND: RGBColor = RGBColor(219, 234, 254);
const SLATE: RGBColor = RGBColor(100, 116, 139);

/// A tick label with as few digits as its value needs: 0.05, 0.2, 1, 2.5, 20, 300.
fn tick(v: &f64) -> String {
    let v = *v;
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    // Two significant digits, then trailing zeros dropped.
    let digits = (1 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `[lo, hi]` of the positive finite values, widened by `pad` as a factor on both sides (for a
/// log axis); `None` when there is none.
fn log_range(values: impl Iterator<Item = f64>, pad: f64) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    (lo <= hi).then(|| {
        let (lo, hi) = if lo == hi {
            (lo / 2.0, hi * 2.0)
        } else {
            (lo, hi)
        };
        (lo / pad, hi * pad)
    })
}

/// `[lo, hi]` of the finite values, widened by `pad` of the span on both sides (linear axis).
fn linear_range(values: impl Iterator<Item = f64>, pad: f64) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    (lo <= hi).then(|| {
        let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
        (lo - pad * span, hi + pad * span)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        let got: Vec<String> = [0.05, 0.2, 1.0, 2.5, 20.0, 300.0, 0.30000000000000004, 1.05]
            .iter()
            .map(tick)
            .collect();
        assert_eq!(got, ["0.05", "0.2", "1", "2.5", "20", "300", "0.3", "1.1"]);
    }

    #[test]
    fn ranges_skip_what_an_axis_cannot_show() {
        let v = [0.0, -1.0, 2.0, 8.0, f64::NAN];
        assert_eq!(log_range(v.into_iter(), 2.0), Some((1.0, 16.0)));
        assert_eq!(log_range([0.0, -1.0].into_iter(), 2.0), None);
        assert_eq!(linear_range([1.0, 3.0].into_iter(), 0.5), Some((0.0, 4.0)));
    }
}
