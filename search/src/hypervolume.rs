//! Hypervolume: the volume of objective space a set of points dominates, up to a reference
//! point (all objectives minimised). Exact in any dimension: a sweep in 2-D, slicing by the
//! last objective above that (Hypervolume by Slicing Objectives, While et al. 2006), which is
//! plenty for fronts of a few hundred points and up to five objectives.

/// The hypervolume dominated by `points` and bounded by `reference`. Points that do not
/// strictly dominate the reference contribute nothing.
pub fn hypervolume(points: &[Vec<f64>], reference: &[f64]) -> f64 {
    let inside: Vec<&[f64]> = points
        .iter()
        .filter(|p| p.len() == reference.len() && p.iter().zip(reference).all(|(v, r)| v < r))
        .map(Vec::as_slice)
        .collect();
    slice(inside, reference)
}

fn slice(mut points: Vec<&[f64]>, reference: &[f64]) -> f64 {
    let d = reference.len();
    if points.is_empty() {
        return 0.0;
    }
    match d {
        0 => 0.0,
        1 => reference[0] - points.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min),
        2 => {
            points.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
            let (mut area, mut best_y) = (0.0, reference[1]);
            for p in points {
                if p[1] < best_y {
                    area += (reference[0] - p[0]) * (best_y - p[1]);
                    best_y = p[1];
                }
            }
            area
        }
        _ => {
            // Slabs along the last objective: between consecutive values, the points at or
            // below the slab's bottom dominate a (d-1)-dimensional region.
            points.sort_by(|a, b| a[d - 1].total_cmp(&b[d - 1]));
            let mut volume = 0.0;
            for i in 0..points.len() {
                let top = points.get(i + 1).map_or(reference[d - 1], |p| p[d - 1]);
                let depth = top - points[i][d - 1];
                if depth > 0.0 {
                    let below: Vec<&[f64]> = points[..=i].iter().map(|p| &p[..d - 1]).collect();
                    volume += depth * slice(below, &reference[..d - 1]);
                }
            }
            volume
        }
    }
}

/// Maps objectives onto a common scale so hypervolumes are comparable: `ideal` to 0, `nadir`
/// to 1, and the reference point at 1.1 in every objective.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalizer {
    pub ideal: Vec<f64>,
    pub nadir: Vec<f64>,
}

pub const REFERENCE: f64 = 1.1;

impl Normalizer {
    /// The bounding box of the points (at least one point, all of one dimension).
    pub fn of<'a>(points: impl IntoIterator<Item = &'a Vec<f64>>) -> Option<Normalizer> {
        let mut it = points.into_iter();
        let first = it.next()?;
        let (mut ideal, mut nadir) = (first.clone(), first.clone());
        for p in it {
            for (i, v) in p.iter().enumerate() {
                ideal[i] = ideal[i].min(*v);
                nadir[i] = nadir[i].max(*v);
            }
        }
        Some(Normalizer { ideal, nadir })
    }

    pub fn apply(&self, p: &[f64]) -> Vec<f64> {
        p.iter()
            .enumerate()
            .map(|(i, v)| {
                let range = self.nadir[i] - self.ideal[i];
                if range > 0.0 {
                    (v - self.ideal[i]) / range
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// The hypervolume of `points` in normalised space, with the reference at 1.1.
    pub fn hypervolume(&self, points: &[Vec<f64>]) -> f64 {
        let normalised: Vec<Vec<f64>> = points.iter().map(|p| self.apply(p)).collect();
        hypervolume(&normalised, &vec![REFERENCE; self.ideal.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwnas_core::rng::SplitMix64;

    /// Counts the unit cells of an integer grid that some point dominates.
    fn grid_count(points: &[Vec<f64>], reference: &[f64]) -> f64 {
        let d = reference.len();
        let sizes: Vec<usize> = reference.iter().map(|r| *r as usize).collect();
        let total: usize = sizes.iter().product();
        let mut count = 0;
        for cell in 0..total {
            let mut rest = cell;
            let corner: Vec<f64> = (0..d)
                .map(|i| {
                    let c = rest % sizes[i];
                    rest /= sizes[i];
                    c as f64
                })
                .collect();
            if points
                .iter()
                .any(|p| p.iter().zip(&corner).all(|(v, c)| v <= c))
            {
                count += 1;
            }
        }
        count as f64
    }

    #[test]
    fn two_dimensional_staircase() {
        let pts = vec![
            vec![1.0, 3.0],
            vec![2.0, 2.0],
            vec![3.0, 1.0],
            vec![2.5, 2.5],
        ];
        // Staircase under (4, 4), row by row: 3x1 + 2x1 + 1x1; (2.5, 2.5) is dominated.
        assert_eq!(hypervolume(&pts, &[4.0, 4.0]), 6.0);
        assert_eq!(hypervolume(&pts, &[1.0, 4.0]), 0.0);
        assert_eq!(hypervolume(&[], &[1.0, 1.0]), 0.0);
    }

    #[test]
    fn matches_a_grid_count_in_three_and_four_dimensions() {
        let mut rng = SplitMix64::new(3);
        for d in [3usize, 4] {
            for _ in 0..20 {
                let reference = vec![6.0; d];
                let pts: Vec<Vec<f64>> = (0..8)
                    .map(|_| (0..d).map(|_| rng.below(6) as f64).collect())
                    .collect();
                assert_eq!(
                    hypervolume(&pts, &reference),
                    grid_count(&pts, &reference),
                    "{pts:?}"
                );
            }
        }
    }

    #[test]
    fn normaliser_puts_the_box_on_the_unit_cube() {
        let pts = vec![vec![10.0, -5.0], vec![20.0, -9.0]];
        let n = Normalizer::of(&pts).unwrap();
        assert_eq!(n.apply(&pts[0]), vec![0.0, 1.0]);
        assert_eq!(n.apply(&pts[1]), vec![1.0, 0.0]);
        // Two corners of the unit square under (1.1, 1.1): two 1.1 x 0.1 strips that overlap by 0.1 x 0.1.
        let hv = n.hypervolume(&pts);
        assert!((hv - (1.1 * 0.1 + 0.1 * 1.1 - 0.01)).abs() < 1e-12, "{hv}");
    }
}
