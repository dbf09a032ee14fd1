//! Predicted against measured latency, as `hwnas validate` writes it.

use plotters::prelude::*;

use crate::{BAND, BLUE, FONT, PlotError, SLATE, log_range, tick};

/// Points are (measured, predicted) in ms, drawn on log-log axes over the same range, with the
/// y = x line and the ±10% band around it. Points that are not positive are left out (a log
/// axis cannot show them).
pub fn predicted_vs_measured(title: &str, points: &[(f64, f64)]) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let (lo, hi) =
            log_range(points.iter().flat_map(|p| [p.0, p.1]), 1.08).unwrap_or((0.1, 10.0));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 15))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d((lo..hi).log_scale(), (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("measured (ms)")
            .y_desc("predicted (ms)")
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .label_style((FONT, 12))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        // The band between y = 1.1x and y = 0.9x, clipped to the square.
        let band = vec![
            (lo, lo * 1.1),
            (hi / 1.1, hi),
            (hi, hi),
            (hi, hi * 0.9),
            (lo / 0.9, lo),
            (lo, lo),
        ];
        chart.draw_series(std::iter::once(Polygon::new(band, BAND.filled())))?;
        chart.draw_series(LineSeries::new([(lo, lo), (hi, hi)], SLATE.stroke_width(1)))?;
        chart.draw_series(
            points
                .iter()
                .filter(|(m, p)| *m > 0.0 && *p > 0.0)
                .map(|&(m, p)| Circle::new((m, p), 3, BLUE.mix(0.7).filled())),
        )?;
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scatter_has_its_points_band_and_labels() {
        let pts = [(0.1, 0.105), (1.0, 0.95), (12.0, 13.5), (0.0, 1.0)];
        let svg = predicted_vs_measured("nb201 on cpu: 67% within ±10% (n = 3)", &pts).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 3, "the zero is left out");
        assert!(svg.contains("measured (ms)") && svg.contains("predicted (ms)"));
        assert!(svg.contains("within ±10%"));
        assert!(svg.contains("<polygon"), "the ±10% band");
        assert!(!svg.contains(">-"), "no negative tick on a latency axis");
    }
}
