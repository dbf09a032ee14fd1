//! A Pareto plot as a self-contained SVG: every evaluated architecture in grey, the front in
//! blue joined by its staircase.

use std::fmt::Write;

use hwnas_predictor::svg::escape;

pub struct Axes<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

pub fn pareto(axes: &Axes, all: &[(f64, f64)], front: &[(f64, f64)]) -> String {
    let (w, h, m) = (640.0, 480.0, 64.0);
    let finite = |v: &f64| v.is_finite();
    let xs = || all.iter().chain(front).map(|p| p.0).filter(finite);
    let ys = || all.iter().chain(front).map(|p| p.1).filter(finite);
    let (x0, x1) = bounds(xs());
    let (y0, y1) = bounds(ys());
    let sx = |v: f64| m + (v - x0) / (x1 - x0) * (w - 1.5 * m);
    let sy = |v: f64| h - m - (v - y0) / (y1 - y0) * (h - 1.7 * m);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="{w}" height="{h}" fill="white"/>"#
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="14">{}</text>"#,
        w / 2.0,
        escape(axes.title)
    );
    for i in 0..=5 {
        let (vx, vy) = (
            x0 + (x1 - x0) * i as f64 / 5.0,
            y0 + (y1 - y0) * i as f64 / 5.0,
        );
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><line x1="{m}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#eef2f7"/>"##,
            sx(vx),
            h - m + 18.0,
            tick(vx),
            m - 6.0,
            sy(vy) + 4.0,
            tick(vy),
            w - 0.5 * m,
            sy(vy),
            sy(vy)
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{m}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#64748b"/>"##,
        0.7 * m,
        w - 1.5 * m,
        h - 1.7 * m
    );
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        m + (w - 1.5 * m) / 2.0,
        h - 20.0,
        escape(axes.x),
        h / 2.0,
        escape(axes.y)
    );
    for p in all.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="#94a3b8" fill-opacity="0.5"/>"##,
            sx(p.0),
            sy(p.1)
        );
    }
    let mut sorted: Vec<(f64, f64)> = front.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut path = String::new();
    for (i, p) in sorted.iter().enumerate() {
        if i == 0 {
            let _ = write!(path, "M{:.1},{:.1}", sx(p.0), sy(p.1));
        } else {
            // Hold the previous y until this x: the region the front dominates.
            let _ = write!(path, " H{:.1} V{:.1}", sx(p.0), sy(p.1));
        }
    }
    if !path.is_empty() {
        let _ = write!(
            s,
            r##"<path d="{path}" fill="none" stroke="#2563eb" stroke-width="1.2"/>"##
        );
    }
    for p in &sorted {
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3.2" fill="#2563eb"/>"##,
            sx(p.0),
            sy(p.1)
        );
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" fill="#2563eb">● front ({})</text><text x="{:.1}" y="{:.1}" fill="#64748b">● evaluated ({})</text></svg>"##,
        m + 8.0,
        0.7 * m + 16.0,
        front.len(),
        m + 8.0,
        0.7 * m + 32.0,
        all.len()
    );
    s
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-3).max(1e-9);
    (lo - pad, hi + pad)
}

fn tick(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_point_and_the_staircase() {
        let axes = Axes {
            title: "a < b",
            x: "latency ms",
            y: "accuracy",
        };
        let svg = pareto(
            &axes,
            &[(1.0, 2.0), (3.0, 1.0), (2.0, 3.0)],
            &[(1.0, 2.0), (2.0, 3.0)],
        );
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(svg.contains(" H") && svg.contains("a &lt; b") && svg.ends_with("</svg>"));
    }
}
