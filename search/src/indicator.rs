//! How close a found front is to a reference front (the true front where it is known, else the
//! best front any run found), in the two indicators EvoXBench reports (Lu et al., 2023): the
//! normalised hypervolume and IGD+ (Ishibuchi et al., 2015). Both work in the objective space
//! normalised by the reference front's ideal and nadir points, so objectives of any unit weigh
//! alike; all objectives are minimised.

use crate::hypervolume::{Normalizer, hypervolume};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrontQuality {
    /// HV(found) / HV(reference front), both under EvoXBench's reference point `1 + 1/H` in
    /// every normalised objective; 1 when the found front covers the reference front.
    pub normalised_hv: f64,
    /// Mean over the reference front of the distance to the nearest found point, counting only
    /// the objectives where the found point is worse (0: every reference point is matched or
    /// dominated).
    pub igd_plus: f64,
}

/// The quality of `found` against `reference` (a non-dominated set); `None` when either is empty.
pub fn quality(found: &[Vec<f64>], reference: &[Vec<f64>]) -> Option<FrontQuality> {
    if found.is_empty() {
        return None;
    }
    let norm = Normalizer::of(reference)?;
    let found: Vec<Vec<f64>> = found.iter().map(|p| norm.apply(p)).collect();
    let reference: Vec<Vec<f64>> = reference.iter().map(|p| norm.apply(p)).collect();
    let m = norm.ideal.len();
    let r = 1.0 + 1.0 / lattice_divisions(m, reference.len()) as f64;
    let point = vec![r; m];
    let hv_reference = hypervolume(&reference, &point);
    let igd_plus = reference
        .iter()
        .map(|z| {
            found
                .iter()
                .map(|a| {
                    a.iter()
                        .zip(z)
                        .map(|(a, z)| (a - z).max(0.0).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .fold(f64::INFINITY, f64::min)
        })
        .sum::<f64>()
        / reference.len() as f64;
    Some(FrontQuality {
        normalised_hv: hypervolume(&found, &point) / hv_reference,
        igd_plus,
    })
}

/// EvoXBench's `H` (after PlatEMO's uniform points): the most divisions of a simplex lattice in
/// `m` objectives with at most `n` points, at least 1. For two objectives, `n - 1`.
fn lattice_divisions(m: usize, n: usize) -> usize {
    let choose = |n: usize, k: usize| -> f64 {
        (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
    };
    let mut h = 1;
    while choose(h + m, m - 1) <= n as f64 {
        h += 1;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_front_against_itself_and_against_less() {
        let truth = vec![
            vec![0.0, 4.0],
            vec![1.0, 2.0],
            vec![2.0, 1.0],
            vec![4.0, 0.0],
        ];
        let q = quality(&truth, &truth).unwrap();
        assert_eq!(q.normalised_hv, 1.0);
        assert_eq!(q.igd_plus, 0.0);
        // Without (1, 2): normalised, it is (0.25, 0.5); the nearest found point (2, 1) →
        // (0.5, 0.25) is worse in one objective by 0.25.
        let found = vec![truth[0].clone(), truth[2].clone(), truth[3].clone()];
        let q = quality(&found, &truth).unwrap();
        assert!((q.igd_plus - 0.25 / 4.0).abs() < 1e-12, "{q:?}");
        // Four points: H = 3, reference point 4/3; the missing point alone dominates
        // [0.25, 0.5) × [0.5, 1).
        let r = 4.0 / 3.0;
        let hv = |pts: &[Vec<f64>]| {
            let n: Vec<Vec<f64>> = pts
                .iter()
                .map(|p| p.iter().map(|v| v / 4.0).collect())
                .collect();
            hypervolume(&n, &[r, r])
        };
        assert!((q.normalised_hv - hv(&found) / hv(&truth)).abs() < 1e-12);
        assert!((hv(&truth) - hv(&found) - 0.25 * 0.5).abs() < 1e-12);
        // A found point that dominates the reference front scores IGD+ 0.
        let better = vec![vec![-1.0, -1.0]];
        assert_eq!(quality(&better, &truth).unwrap().igd_plus, 0.0);
        assert!(quality(&[], &truth).is_none());
    }

    #[test]
    fn lattice_divisions_as_evoxbench() {
        assert_eq!(lattice_divisions(2, 21), 20);
        assert_eq!(lattice_divisions(2, 1), 1);
        // Three objectives: C(H + 2, 2) <= 21 up to H = 5.
        assert_eq!(lattice_divisions(3, 21), 5);
    }
}
