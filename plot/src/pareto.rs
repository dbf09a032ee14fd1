//! A search's evaluated architectures (grey) and its Pareto front (blue, joined by its
//! staircase), with the legend beside the plot rather than over the points.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::{BLUE, FONT, GREY, PlotError, linear_range, log_range, tick};

/// What the axes show.
pub struct Axes<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
    /// Logarithmic axes, for metrics that span decades (latency, FLOPs, size, memory).
    pub x_log: bool,
    pub y_log: bool,
}

const LEGEND_WIDTH: u32 = 150;

/// The plot of `all` evaluated points and the `front`, both (x, y) in the axes' metrics. The
/// y axis spans the front (with a margin), so the front fills the plot; points outside it are
/// left out.
pub fn pareto(axes: &Axes, all: &[(f64, f64)], front: &[(f64, f64)]) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot, legend) = root.split_horizontally(720 - LEGEND_WIDTH);
        let range = |values: Vec<f64>, log: bool| {
            if log {
                log_range(values.into_iter(), 1.15).unwrap_or((0.1, 10.0))
            } else {
                linear_range(values.into_iter(), 0.06).unwrap_or((0.0, 1.0))
            }
        };
        let shown = if front.is_empty() { all } else { front };
        let (x0, x1) = range(all.iter().chain(front).map(|p| p.0).collect(), axes.x_log);
        let (y0, y1) = range(shown.iter().map(|p| p.1).collect(), axes.y_log);
        let visible = |p: &&(f64, f64)| {
            p.0.is_finite()
                && p.1.is_finite()
                && (x0..=x1).contains(&p.0)
                && (y0..=y1).contains(&p.1)
        };
        let evaluated = all.len();
        let all: Vec<(f64, f64)> = all.iter().filter(visible).copied().collect();
        let mut front: Vec<(f64, f64)> = front.iter().filter(visible).copied().collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        match (axes.x_log, axes.y_log) {
            (true, true) => draw(
                &plot,
                axes,
                ((x0..x1).log_scale(), (y0..y1).log_scale()),
                &all,
                &front,
            )?,
            (true, false) => draw(&plot, axes, ((x0..x1).log_scale(), y0..y1), &all, &front)?,
            (false, true) => draw(&plot, axes, (x0..x1, (y0..y1).log_scale()), &all, &front)?,
            (false, false) => draw(&plot, axes, (x0..x1, y0..y1), &all, &front)?,
        }
        draw_legend(&legend, evaluated, front.len())?;
        root.present()?;
    }
    Ok(svg)
}

fn draw<'a, X, Y>(
    area: &DrawingArea<SVGBackend<'a>, Shift>,
    axes: &Axes,
    (x, y): (X, Y),
    all: &[(f64, f64)],
    front: &[(f64, f64)],
) -> Result<(), PlotError>
where
    X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    X::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(axes.title, (FONT, 15))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(axes.x)
        .y_desc(axes.y)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .label_style((FONT, 12))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart.draw_series(
        all.iter()
            .map(|&p| Circle::new(p, 2, GREY.mix(0.6).filled())),
    )?;
    // The staircase: along x to the next member, then to its y.
    let stairs: Vec<(f64, f64)> = front
        .windows(2)
        .flat_map(|w| [w[0], (w[1].0, w[0].1)])
        .chain(front.last().copied())
        .collect();
    chart.draw_series(LineSeries::new(stairs, BLUE.stroke_width(2)))?;
    chart.draw_series(front.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))?;
    Ok(())
}

fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    evaluated: usize,
    front: usize,
) -> Result<(), PlotError> {
    let style = (FONT, 12).into_font().color(&BLACK);
    let rows = [
        (
            GREY.mix(0.6).filled(),
            2,
            format!("evaluated ({evaluated})"),
        ),
        (BLUE.filled(), 4, format!("Pareto front ({front})")),
    ];
    for (k, (color, radius, label)) in rows.into_iter().enumerate() {
        let y = 70 + 24 * k as i32;
        area.draw(&Circle::new((14, y), radius, color))?;
        area.draw(&Text::new(label, (26, y - 7), style.clone()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axes(x_log: bool) -> Axes<'static> {
        Axes {
            title: "nb201 search: 5 evaluated",
            x: "latency_cpu_ms",
            y: "accuracy",
            x_log,
            y_log: false,
        }
    }

    #[test]
    fn the_front_fills_the_plot_and_the_legend_stands_apart() {
        let all = [
            (0.05, 10.0),
            (0.3, 80.0),
            (2.0, 90.0),
            (1.0, 60.0),
            (0.2, 85.0),
        ];
        let front = [(0.2, 85.0), (2.0, 90.0)];
        let svg = pareto(&axes(true), &all, &front).unwrap();
        // The front and what lies in its accuracy range; the 10% and 60% cells fall outside.
        assert_eq!(svg.matches("<circle").count(), 2 + 2 + 2, "{svg}");
        assert!(svg.contains("evaluated (5)") && svg.contains("Pareto front (2)"));
        assert!(svg.contains("latency_cpu_ms") && svg.contains("accuracy"));
        assert!(!svg.contains(">-"), "no negative tick on a latency axis");
        // Legend to the right of the plot area (the plot is 570 px wide).
        let legend_x: Vec<f64> = svg
            .match_indices("Pareto front (2)")
            .filter_map(|(i, _)| {
                let tag = &svg[svg[..i].rfind("<text").unwrap()..i];
                let x = tag.split("x=\"").nth(1)?.split('"').next()?;
                x.parse().ok()
            })
            .collect();
        assert!(legend_x.iter().all(|x| *x > 570.0), "{legend_x:?}");
    }

    #[test]
    fn an_empty_front_still_draws() {
        let svg = pareto(&axes(false), &[(1.0, 2.0)], &[]).unwrap();
        assert!(svg.contains("Pareto front (0)"));
    }
}
