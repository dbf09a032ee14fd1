//! Robust statistics of repeated timings: median, percentiles, MAD, and a distribution-free
//! confidence interval of the median.

use serde::{Deserialize, Serialize};

/// Summary of one op's samples, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    /// Median absolute deviation from the median (unscaled).
    pub mad: f64,
    pub min: f64,
    pub n: usize,
    /// Half-width of the 95% confidence interval of the median, relative to the median;
    /// infinite when there is no interval (too few samples, a zero median).
    #[serde(with = "infinite_as_null")]
    pub ci_rel: f64,
    /// Samples further than 5 scaled MADs above the median (reported, never dropped).
    pub outliers: usize,
}

/// JSON has no infinity: a missing interval is written `null` and read back as infinite.
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

/// Linear-interpolated quantile of sorted data (Hyndman & Fan type 7, as numpy's default).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

/// Relative half-width of the 95% confidence interval of the median, from order statistics:
/// the ranks `n/2 ± 0.98·√n` bound the median with about 95% probability whatever the
/// distribution (the normal approximation to the binomial).
pub fn median_ci_rel(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n < 6 {
        return f64::INFINITY;
    }
    let half = 0.98 * (n as f64).sqrt();
    let lo = ((n as f64 / 2.0 - half).floor().max(0.0)) as usize;
    let hi = ((n as f64 / 2.0 + half).ceil() as usize).min(n - 1);
    let median = quantile_sorted(sorted, 0.5);
    if median <= 0.0 {
        return f64::INFINITY;
    }
    (sorted[hi] - sorted[lo]) / 2.0 / median
}

impl Stats {
    /// Statistics of `samples`; `None` when there are none.
    pub fn from_samples(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = quantile_sorted(&sorted, 0.5);
        let mut dev: Vec<f64> = sorted.iter().map(|v| (v - median).abs()).collect();
        dev.sort_by(f64::total_cmp);
        let mad = quantile_sorted(&dev, 0.5);
        // 1.4826 scales the MAD to a standard deviation for normal data.
        let limit = median + 5.0 * 1.4826 * mad;
        Some(Stats {
            median,
            p10: quantile_sorted(&sorted, 0.1),
            p90: quantile_sorted(&sorted, 0.9),
            mad,
            min: sorted[0],
            n: sorted.len(),
            ci_rel: median_ci_rel(&sorted),
            outliers: if mad > 0.0 {
                sorted.iter().filter(|&&v| v > limit).count()
            } else {
                0
            },
        })
    }

    /// The same statistics of samples all multiplied by `factor` (> 0): relative ones (CI,
    /// counts) do not change.
    pub fn scaled(self, factor: f64) -> Stats {
        Stats {
            median: self.median * factor,
            p10: self.p10 * factor,
            p90: self.p90 * factor,
            mad: self.mad * factor,
            min: self.min * factor,
            ..self
        }
    }

    /// MAD relative to the median: the noise this op saw.
    pub fn mad_rel(&self) -> f64 {
        if self.median > 0.0 {
            self.mad / self.median
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let s = Stats::from_samples(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!(s.mad, 1.0);
        assert_eq!(s.min, 1.0);
        assert!((s.p10 - 1.4).abs() < 1e-12);
        assert!((s.p90 - 4.6).abs() < 1e-12);
        assert!(s.ci_rel.is_infinite(), "too few samples for an interval");
    }

    #[test]
    fn ci_shrinks_with_more_samples() {
        let data = |n: usize| -> Vec<f64> { (0..n).map(|i| 100.0 + (i % 10) as f64).collect() };
        let a = Stats::from_samples(&data(50)).unwrap().ci_rel;
        let b = Stats::from_samples(&data(5000)).unwrap().ci_rel;
        assert!(a > 0.0 && b <= a, "{a} vs {b}");
        let constant = Stats::from_samples(&[7.0; 100]).unwrap();
        assert_eq!(
            (constant.ci_rel, constant.mad, constant.outliers),
            (0.0, 0.0, 0)
        );
    }

    #[test]
    fn outliers_are_counted_not_dropped() {
        let mut data: Vec<f64> = (0..100).map(|i| 10.0 + (i % 5) as f64 * 0.1).collect();
        data.extend([100.0, 200.0]);
        let s = Stats::from_samples(&data).unwrap();
        assert_eq!((s.outliers, s.n), (2, 102));
        assert!(s.median < 10.5);
    }

    #[test]
    fn stats_without_an_interval_survive_json() {
        let few = Stats::from_samples(&[1.0, 2.0]).unwrap();
        assert!(few.ci_rel.is_infinite());
        let json = serde_json::to_string(&few).unwrap();
        assert!(json.contains("\"ci_rel\":null"), "{json}");
        assert_eq!(serde_json::from_str::<Stats>(&json).unwrap(), few);
        let many =
            Stats::from_samples(&(0..50).map(|i| 100.0 + (i % 10) as f64).collect::<Vec<_>>())
                .unwrap();
        let back: Stats = serde_json::from_str(&serde_json::to_string(&many).unwrap()).unwrap();
        assert_eq!(back, many);
    }
}
