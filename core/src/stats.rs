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

/// Batches a time must be measured in before [`batch_ci_rel`] gives it an interval.
pub const MIN_BATCHES: usize = 5;

/// Relative half-width of the 95% confidence interval of a time measured in batches taken at
/// different moments (`batch_starts`: the index of each batch's first sample). Runs within a
/// batch share the machine's speed of that moment, so they are not independent samples: on a
/// busy VM the medians of one op's 25 ms batches scattered by 5-7% (sd, after the probe's
/// correction) while each batch's runs alone put its median within ±0.5%. So the interval
/// comes from the spread of the batches' medians: Student's t on the mean of their
/// logarithms. Infinite below [`MIN_BATCHES`] batches or for a non-positive median.
pub fn batch_ci_rel(samples: &[f64], batch_starts: &[usize]) -> f64 {
    let ends = batch_starts.iter().skip(1).copied().chain([samples.len()]);
    let logs: Option<Vec<f64>> = batch_starts
        .iter()
        .zip(ends)
        .filter(|(start, end)| **start < *end && *end <= samples.len())
        .map(|(start, end)| {
            let mut batch = samples[*start..end].to_vec();
            batch.sort_by(f64::total_cmp);
            let median = quantile_sorted(&batch, 0.5);
            (median > 0.0).then(|| median.ln())
        })
        .collect();
    let Some(logs) = logs.filter(|l| l.len() >= MIN_BATCHES) else {
        return f64::INFINITY;
    };
    let n = logs.len() as f64;
    let mean = logs.iter().sum::<f64>() / n;
    let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let df = n - 1.0;
    // Student's t at 97.5% for `df` degrees of freedom, within 1.5% for df >= 4.
    let t = 1.96 + 2.4 / df + 2.8 / (df * df);
    (t * (var / n).sqrt()).exp_m1()
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

    /// One estimate from the same quantity measured in several sittings (each with its own
    /// samples, which are not kept). The median is the inverse-variance weighted mean of the
    /// sittings' medians (weights from their intervals; by sample count where one has no
    /// interval). Its interval is the narrower one the sittings give together, but never
    /// narrower than half the range of their medians: sittings that disagree more than their
    /// own intervals allow (drift the probe did not correct) leave the estimate that uncertain.
    /// Spreads (p10, p90, MAD) are sample-count weighted means, `min` the least, counts summed.
    /// `None` for no parts.
    pub fn pooled(parts: &[Stats]) -> Option<Stats> {
        let first = *parts.first()?;
        if parts.len() == 1 {
            return Some(first);
        }
        let half_width = |s: &Stats| s.ci_rel * s.median;
        let by_interval = parts
            .iter()
            .all(|s| half_width(s).is_finite() && half_width(s) > 0.0);
        let weights: Vec<f64> = parts
            .iter()
            .map(|s| {
                if by_interval {
                    half_width(s).powi(-2)
                } else {
                    s.n as f64
                }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let mean = |f: fn(&Stats) -> f64, w: &[f64]| -> f64 {
            let t: f64 = w.iter().sum();
            parts.iter().zip(w).map(|(s, w)| f(s) * w).sum::<f64>() / t
        };
        let median = mean(|s| s.median, &weights);
        let counts: Vec<f64> = parts.iter().map(|s| s.n as f64).collect();
        let (lo, hi) = parts.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), s| {
            (lo.min(s.median), hi.max(s.median))
        });
        let ci_rel = if by_interval && median > 0.0 {
            (total.powf(-0.5)).max((hi - lo) / 2.0) / median
        } else {
            f64::INFINITY
        };
        Some(Stats {
            median,
            p10: mean(|s| s.p10, &counts),
            p90: mean(|s| s.p90, &counts),
            mad: mean(|s| s.mad, &counts),
            min: parts.iter().map(|s| s.min).fold(f64::INFINITY, f64::min),
            n: parts.iter().map(|s| s.n).sum(),
            ci_rel,
            outliers: parts.iter().map(|s| s.outliers).sum(),
        })
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
    fn batches_at_different_speeds_widen_the_interval_their_runs_would_give() {
        // Eight batches of 100 runs each; the machine ran each batch at its own speed, up to
        // 10% apart, while the runs of one batch agree within 0.1%.
        let speeds = [1.0, 1.1, 1.02, 1.08, 0.99, 1.1, 1.0, 1.05];
        let samples: Vec<f64> = speeds
            .iter()
            .flat_map(|s| (0..100).map(move |i| 100.0 * s * (1.0 + 1e-5 * f64::from(i))))
            .collect();
        let starts: Vec<usize> = (0..speeds.len()).map(|b| 100 * b).collect();
        let runs = Stats::from_samples(&samples).unwrap().ci_rel;
        let batches = batch_ci_rel(&samples, &starts);
        assert!(runs < 0.03 && batches > 0.03, "{runs} vs {batches}");
        // One speed throughout: the batches agree, and so does their interval.
        let steady = vec![100.0; 800];
        assert!(batch_ci_rel(&steady, &starts) < 1e-12);
        // Too few batches for an interval.
        assert!(batch_ci_rel(&samples[..400], &starts[..4]).is_infinite());
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
    fn sittings_pool_by_their_intervals() {
        let sitting = |median: f64, ci_rel: f64, n: usize| Stats {
            median,
            p10: median * 0.9,
            p90: median * 1.1,
            mad: median * 0.05,
            min: median * 0.8,
            n,
            ci_rel,
            outliers: 1,
        };
        // Two sittings that agree within their intervals: weighted 4:1 by 1/half-width^2,
        // the interval narrows as 1/sqrt(sum of weights).
        let (a, b) = (sitting(100.0, 0.01, 30), sitting(101.0, 2.0 / 101.0, 10));
        let p = Stats::pooled(&[a, b]).unwrap();
        assert!(
            (p.median - (4.0 * 100.0 + 101.0) / 5.0).abs() < 1e-9,
            "{p:?}"
        );
        let narrower = 1.0 / (1.0f64 + 1.0 / 4.0).sqrt() / p.median;
        assert!((p.ci_rel - narrower).abs() < 1e-9, "{p:?}");
        assert_eq!((p.n, p.outliers, p.min), (40, 2, 80.0));
        assert!((p.p90 - (30.0 * 110.0 + 10.0 * 1.1 * 101.0) / 40.0).abs() < 1e-9);
        // Sittings 6% apart with intervals of ±1 each: the pooled interval covers both medians.
        let p =
            Stats::pooled(&[sitting(100.0, 0.01, 30), sitting(106.0, 1.0 / 106.0, 30)]).unwrap();
        assert!((p.median - 103.0).abs() < 1e-9);
        assert!((p.ci_rel - 3.0 / 103.0).abs() < 1e-9, "{p:?}");
        // Without an interval, by sample count, and the pooled one has none either.
        let p = Stats::pooled(&[sitting(100.0, f64::INFINITY, 3), sitting(200.0, 0.01, 1)]);
        let p = p.unwrap();
        assert!(
            (p.median - 125.0).abs() < 1e-9 && p.ci_rel.is_infinite(),
            "{p:?}"
        );
        assert_eq!(Stats::pooled(&[a]), Some(a));
        assert_eq!(Stats::pooled(&[]), None);
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
