//! A predicted-vs-measured scatter plot as a self-contained SVG (no plotting dependency).

use std::fmt::Write;

/// Points are (measured, predicted) in ms; the plot has the y = x line and the ±10% band.
pub fn scatter(title: &str, points: &[(f64, f64)]) -> String {
    let (w, h, m) = (560.0, 560.0, 60.0);
    let max = points
        .iter()
        .flat_map(|p| [p.0, p.1])
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.08;
    let min = points
        .iter()
        .flat_map(|p| [p.0, p.1])
        .fold(f64::MAX, f64::min)
        .min(max)
        * 0.92;
    let (lo, hi) = (min.max(0.0), max);
    let sx = |v: f64| m + (v - lo) / (hi - lo) * (w - 2.0 * m);
    let sy = |v: f64| h - m - (v - lo) / (hi - lo) * (h - 2.0 * m);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    // The ±10% band between y = 1.1x and y = 0.9x, clipped to the plot square.
    let band = [
        (lo, lo * 1.1),
        (hi / 1.1, hi),
        (hi, hi),
        (hi, hi * 0.9),
        (lo / 0.9, lo),
        (lo, lo),
    ];
    let poly: Vec<String> = band
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
        .collect();
    let _ = write!(
        s,
        r##"<polygon points="{}" fill="#dbeafe"/>"##,
        poly.join(" ")
    );
    let _ = write!(
        s,
        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#64748b"/>"##,
        sx(lo),
        sy(lo),
        sx(hi),
        sy(hi)
    );
    for i in 0..=5 {
        let v = lo + (hi - lo) * i as f64 / 5.0;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{v:.2}</text>"#,
            sx(v),
            h - m + 18.0
        );
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{v:.2}</text>"#,
            m - 6.0,
            sy(v) + 4.0
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{m}" y="{m}" width="{}" height="{}" fill="none" stroke="#334155"/>"##,
        w - 2.0 * m,
        h - 2.0 * m
    );
    for (meas, pred) in points {
        let inside = (pred / meas - 1.0).abs() <= 0.1;
        let color = if inside { "#2563eb" } else { "#dc2626" };
        let _ = write!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}" fill-opacity="0.7"/>"#,
            sx(*meas),
            sy(pred.clamp(lo, hi))
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="14">{}</text>"#,
        w / 2.0,
        escape(title)
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">measured end to end (ms)</text>"#,
        w / 2.0,
        h - 16.0
    );
    let _ = write!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">predicted (ms); band: ±10%</text>"#,
        h / 2.0,
        h / 2.0
    );
    s.push_str("</svg>\n");
    s
}

/// Text made safe inside SVG markup.
pub fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_circle_per_point_colored_by_the_band() {
        let svg = super::scatter("a <b>", &[(1.0, 1.05), (2.0, 2.5), (3.0, 3.0)]);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert_eq!(svg.matches("#dc2626").count(), 1);
        assert!(svg.contains("a &lt;b&gt;") && svg.ends_with("</svg>\n"));
    }
}
