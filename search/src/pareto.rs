//! Non-dominated sorting and crowding distance, the two orders NSGA-II and the surrogate's
//! screening rank by.
//!
//! The sort is ENS-BS (Zhang et al., "An efficient approach to non-dominated sorting for
//! evolutionary multi-objective optimization", IEEE TEVC 2015): after a presort in which no
//! point can dominate one before it, each point joins the first front none of whose members
//! dominates it, found by binary search (if a front dominates a point, so does every front
//! before it). Deb's sort compares every pair, O(n²) for any input; this one compares a point
//! with a few fronts, which is what lets the screening rank thousands of predicted children a
//! generation. Written here: no maintained crate sorts under Deb's constraint domination.

use crate::problem::Evaluation;

/// Non-dominated fronts under constraint domination ([`Evaluation::dominates`]): positions
/// into `evals`, best front first, each front in ascending position order.
pub fn fronts(evals: &[&Evaluation]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..evals.len()).collect();
    // Feasible first, then by violation, then lexicographically by objectives: a point can
    // only be dominated by points before it.
    order.sort_by(|a, b| {
        let (x, y) = (evals[*a], evals[*b]);
        // Every feasible point at exactly 0: `total_cmp` puts -0.0 (or any negative
        // violation) before 0.0, which would sort a feasible point after one it dominates.
        let v = |e: &Evaluation| if e.feasible() { 0.0 } else { e.violation };
        v(x).total_cmp(&v(y)).then_with(|| {
            x.objectives
                .iter()
                .zip(&y.objectives)
                .map(|(p, q)| p.total_cmp(q))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    });
    // A front is all feasible or all infeasible at one violation (anything else dominates
    // within it). With two objectives or fewer, its members' later objectives fall as their
    // first rises, so if any member dominates a point, the newest one does.
    let newest_decides = evals.first().is_some_and(|e| e.objectives.len() <= 2);
    let mut out: Vec<Vec<usize>> = Vec::new();
    for i in order {
        let dominated_by = |front: &Vec<usize>| {
            // The newest member is the nearest in the presort, the likeliest to dominate.
            let mut members = front.iter().rev();
            if newest_decides {
                members
                    .next()
                    .is_some_and(|j| evals[*j].dominates(evals[i]))
            } else {
                members.any(|j| evals[*j].dominates(evals[i]))
            }
        };
        let k = out.partition_point(dominated_by);
        match out.get_mut(k) {
            Some(front) => front.push(i),
            None => out.push(vec![i]),
        }
    }
    for front in &mut out {
        front.sort_unstable();
    }
    out
}

/// Crowding distance of each member of one front: the normalised perimeter of the box to its
/// neighbours, summed over objectives; the extremes get infinity.
pub fn crowding_distance(objectives: &[&[f64]]) -> Vec<f64> {
    let n = objectives.len();
    let mut distance = vec![0.0; n];
    if n <= 2 {
        return vec![f64::INFINITY; n];
    }
    for m in 0..objectives[0].len() {
        let column: Vec<f64> = objectives.iter().map(|o| o[m]).collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|a, b| column[*a].total_cmp(&column[*b]));
        let (lo, hi) = (column[order[0]], column[order[n - 1]]);
        distance[order[0]] = f64::INFINITY;
        distance[order[n - 1]] = f64::INFINITY;
        if hi > lo {
            for w in order.windows(3) {
                distance[w[1]] += (column[w[2]] - column[w[0]]) / (hi - lo);
            }
        }
    }
    distance
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn eval(objectives: Vec<f64>, violation: f64) -> Evaluation {
        Evaluation {
            objectives,
            violation,
        }
    }

    /// The definition: front k holds the points dominated only by points of fronts before it.
    fn by_definition(evals: &[&Evaluation]) -> Vec<Vec<usize>> {
        let mut left: Vec<usize> = (0..evals.len()).collect();
        let mut out = Vec::new();
        while !left.is_empty() {
            let (front, rest): (Vec<usize>, Vec<usize>) = left
                .iter()
                .partition(|i| !left.iter().any(|j| evals[*j].dominates(evals[**i])));
            out.push(front);
            left = rest;
        }
        out
    }

    #[test]
    fn sorts_fronts_and_crowding_as_by_hand() {
        let pts = [
            eval(vec![1.0, 4.0], 0.0),
            eval(vec![2.0, 2.0], 0.0),
            eval(vec![4.0, 1.0], 0.0),
            eval(vec![3.0, 3.0], 0.0),
            eval(vec![0.0, 0.0], 2.0),
            eval(vec![0.0, 0.0], 1.0),
        ];
        let refs: Vec<&Evaluation> = pts.iter().collect();
        assert_eq!(
            fronts(&refs),
            vec![vec![0, 1, 2], vec![3], vec![5], vec![4]]
        );
        let objs: Vec<&[f64]> = pts[..3].iter().map(|p| p.objectives.as_slice()).collect();
        let d = crowding_distance(&objs);
        assert!(d[0].is_infinite() && d[2].is_infinite());
        // Middle point: (4 - 1)/3 + (4 - 1)/3.
        assert_eq!(d[1], 2.0);
    }

    proptest! {
        /// Any mix of objectives (ties and duplicates included, on a coarse grid), of two to
        /// four objectives, feasible or not: the same fronts as the definition.
        #[test]
        fn fronts_match_the_definition(
            m in 2usize..5,
            points in prop::collection::vec((prop::collection::vec(0u8..6, 4), 0u8..5), 0..60),
        ) {
            let evals: Vec<Evaluation> = points
                .iter()
                .map(|(f, v)| {
                    // Feasible as 0, -0 or negative (all alike); infeasible at three levels.
                    let violation = match v {
                        0 => 0.0,
                        1 => -0.0,
                        2 => -1.0,
                        _ => f64::from(f[0] % 3 + 1),
                    };
                    eval(f[..m].iter().map(|x| f64::from(*x)).collect(), violation)
                })
                .collect();
            let refs: Vec<&Evaluation> = evals.iter().collect();
            prop_assert_eq!(fronts(&refs), by_definition(&refs));
        }
    }
}
