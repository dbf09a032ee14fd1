//! Anchors: calibration networks measured again beside later networks.
//!
//! The reference probe puts every measurement at the table's speed, but a machine does not
//! slow every workload alike: on this VM the probe conv slowed 1.25× where a depthwise block
//! slowed 1.5×, and NAS-Bench-201's overhead-bound networks sped up less than the conv when the
//! host gave the core back. So networks measured in one sitting (`fit --calibrate`) and
//! networks measured in another (`validate`, `search --verify`) disagree by a few percent that
//! no op probe sees; it shows as bias. The cure is to measure the two kinds together: a later
//! sitting re-measures some of the calibration networks ("anchors"), interleaved with its own,
//! and expresses its own at the calibration's sitting — divided by the median ratio of the
//! anchors' times now to their times at calibration ([`Sitting::factor`]). What is left is
//! noise, not bias. It needs the calibration's times, which `fit` keeps in the model
//! ([`crate::LatencyModel::calibration_us`]).

use serde::{Deserialize, Serialize};

use hwnas_core::stats::quantile_sorted;

/// How a later sitting's networks compare with the calibration's, from the anchors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sitting {
    /// Median of (anchor's time now / its time at calibration): above 1, networks run slower
    /// now than when the calibration was measured, beyond what the probe corrected.
    pub factor: f64,
    /// The 10th and 90th percentiles of those ratios: how consistent the shift is.
    pub p10: f64,
    pub p90: f64,
    pub anchors: usize,
}

impl Sitting {
    /// The ratios of `now_us` to `then_us`, pair by pair; `None` without a valid pair.
    pub fn of(then_us: &[f64], now_us: &[f64]) -> Option<Sitting> {
        let mut ratios: Vec<f64> = then_us
            .iter()
            .zip(now_us)
            .filter(|(t, n)| **t > 0.0 && n.is_finite() && **n > 0.0)
            .map(|(t, n)| n / t)
            .collect();
        if ratios.is_empty() {
            return None;
        }
        ratios.sort_by(f64::total_cmp);
        Some(Sitting {
            factor: quantile_sorted(&ratios, 0.5),
            p10: quantile_sorted(&ratios, 0.1),
            p90: quantile_sorted(&ratios, 0.9),
            anchors: ratios.len(),
        })
    }

    /// A time measured in this sitting, expressed at the calibration's.
    pub fn at_calibration(&self, us: f64) -> f64 {
        us / self.factor
    }
}

/// Which calibration networks to measure again: `k` of them spread evenly over their
/// latency range (small and large networks may shift differently; the median sees both).
pub fn pick(calibration_us: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..calibration_us.len()).collect();
    order.sort_by(|a, b| calibration_us[*a].total_cmp(&calibration_us[*b]));
    let k = k.min(order.len());
    (0..k)
        // The middle of each of k equal slices of the sorted list.
        .map(|i| order[(2 * i + 1) * order.len() / (2 * k)])
        .collect()
}

/// One place in the measurement order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The sitting's own network `i`.
    Network(usize),
    /// Anchor `i` (of [`pick`]'s list).
    Anchor(usize),
}

/// The measurement order of `n` networks and `k` anchors: the anchors spread evenly among
/// the networks, so every part of the run (and every interleaved group) has some nearby.
pub fn interleave(n: usize, k: usize) -> Vec<Slot> {
    let mut out = Vec::with_capacity(n + k);
    let mut placed = 0;
    for i in 0..n {
        // Anchor j goes before network (j + 0.5) * n / k.
        while placed < k && (2 * placed + 1) * n <= 2 * i * k {
            out.push(Slot::Anchor(placed));
            placed += 1;
        }
        out.push(Slot::Network(i));
    }
    out.extend((placed..k).map(Slot::Anchor));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sitting_is_the_median_shift_of_the_anchors() {
        let then = [100.0, 200.0, 400.0, 800.0, 1600.0];
        let now = [110.0, 224.0, 440.0, 1000.0, 0.0];
        let s = Sitting::of(&then, &now).unwrap();
        // 1.10, 1.12, 1.10, 1.25 (the unmeasured one left out).
        assert_eq!(s.anchors, 4);
        assert!((s.factor - 1.11).abs() < 1e-9, "{s:?}");
        assert!(s.p10 >= 1.10 && s.p90 <= 1.25 && s.p10 < s.p90, "{s:?}");
        assert!((s.at_calibration(222.0) - 200.0).abs() < 1e-9);
        assert!(Sitting::of(&[], &[]).is_none());
    }

    #[test]
    fn anchors_span_the_calibration_range() {
        let us: Vec<f64> = (0..60).map(|i| ((i * 37) % 60) as f64).collect();
        let picked = pick(&us, 6);
        let times: Vec<f64> = picked.iter().map(|&i| us[i]).collect();
        assert_eq!(times, [5.0, 15.0, 25.0, 35.0, 45.0, 55.0]);
        assert_eq!(pick(&us, 100).len(), 60);
        assert!(pick(&[], 5).is_empty());
    }

    #[test]
    fn anchors_are_spread_through_the_order() {
        let order = interleave(10, 2);
        assert_eq!(order.len(), 12);
        let at: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Slot::Anchor(_)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at, [3, 9]);
        let networks: Vec<usize> = order
            .iter()
            .filter_map(|s| match s {
                Slot::Network(i) => Some(*i),
                Slot::Anchor(_) => None,
            })
            .collect();
        assert_eq!(networks, (0..10).collect::<Vec<_>>());
        assert_eq!(interleave(0, 2), [Slot::Anchor(0), Slot::Anchor(1)]);
        assert_eq!(interleave(3, 0).len(), 3);
    }
}
