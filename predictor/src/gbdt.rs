//! Gradient-boosted regression trees on linfa's `Fit` / `PredictInplace` traits.
//!
//! linfa 0.8 has no regression tree or forest (its trees and ensembles are classifiers), and
//! nn-Meter's evidence is that tree ensembles predict kernel latency best; this is a small,
//! deterministic one: squared loss, exhaustive splits, no subsampling.
//!
//! | Name | Default | Purpose | Range |
//! |---|---|---|---|
//! | `n_trees` | 300 | boosting rounds | ≥ 1 |
//! | `max_depth` | 5 | depth of each tree | ≥ 1 |
//! | `learning_rate` | 0.1 | shrinkage of each tree's contribution | (0, 1] |
//! | `min_leaf` | 2 | fewest samples in a leaf | ≥ 1 |

use linfa::dataset::DatasetBase;
use linfa::traits::{Fit, PredictInplace};
use ndarray::{Array1, Array2, ArrayBase, Data, Ix1, Ix2};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbdtParams {
    pub n_trees: usize,
    pub max_depth: usize,
    pub learning_rate: f64,
    pub min_leaf: usize,
}

impl Default for GbdtParams {
    fn default() -> Self {
        GbdtParams {
            n_trees: 300,
            max_depth: 5,
            learning_rate: 0.1,
            min_leaf: 2,
        }
    }
}

/// A fitted ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gbdt {
    pub base: f64,
    pub learning_rate: f64,
    pub trees: Vec<Tree>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<TreeNode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TreeNode {
    /// Go left when `x[feature] <= threshold`.
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
    Leaf(f64),
}

impl Tree {
    pub fn predict(&self, x: &[f64]) -> f64 {
        let mut i = 0;
        loop {
            match self.nodes[i] {
                TreeNode::Leaf(v) => return v,
                TreeNode::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => i = if x[feature] <= threshold { left } else { right },
            }
        }
    }
}

impl Gbdt {
    pub fn predict_one(&self, x: &[f64]) -> f64 {
        self.base + self.learning_rate * self.trees.iter().map(|t| t.predict(x)).sum::<f64>()
    }
}

struct TreeBuilder<'a> {
    x: &'a [Vec<f64>],
    residual: &'a [f64],
    params: &'a GbdtParams,
    nodes: Vec<TreeNode>,
}

impl TreeBuilder<'_> {
    fn leaf(&mut self, idx: &[usize]) -> usize {
        let mean = idx.iter().map(|&i| self.residual[i]).sum::<f64>() / idx.len().max(1) as f64;
        self.nodes.push(TreeNode::Leaf(mean));
        self.nodes.len() - 1
    }

    /// The split of `idx` that most reduces the squared error: (feature, threshold, gain).
    fn best_split(&self, idx: &[usize]) -> Option<(usize, f64, f64)> {
        let n = idx.len();
        let total: f64 = idx.iter().map(|&i| self.residual[i]).sum();
        let mut best: Option<(usize, f64, f64)> = None;
        let mut sorted = idx.to_vec();
        for f in 0..self.x[0].len() {
            sorted.sort_by(|&a, &b| self.x[a][f].total_cmp(&self.x[b][f]));
            let mut left_sum = 0.0;
            for j in 0..n - 1 {
                left_sum += self.residual[sorted[j]];
                let (v, next) = (self.x[sorted[j]][f], self.x[sorted[j + 1]][f]);
                let (nl, nr) = (j + 1, n - j - 1);
                if v == next || nl < self.params.min_leaf || nr < self.params.min_leaf {
                    continue;
                }
                // SSE reduction = sum_l^2/n_l + sum_r^2/n_r - total^2/n.
                let right_sum = total - left_sum;
                let gain = left_sum * left_sum / nl as f64 + right_sum * right_sum / nr as f64
                    - total * total / n as f64;
                if best.is_none_or(|b| gain > b.2 + 1e-12) {
                    best = Some((f, (v + next) / 2.0, gain));
                }
            }
        }
        best.filter(|b| b.2 > 1e-12)
    }

    fn grow(&mut self, idx: &[usize], depth: usize) -> usize {
        if depth >= self.params.max_depth || idx.len() < 2 * self.params.min_leaf {
            return self.leaf(idx);
        }
        let Some((feature, threshold, _)) = self.best_split(idx) else {
            return self.leaf(idx);
        };
        let (l, r): (Vec<usize>, Vec<usize>) =
            idx.iter().partition(|&&i| self.x[i][feature] <= threshold);
        let at = self.nodes.len();
        self.nodes.push(TreeNode::Leaf(0.0));
        let left = self.grow(&l, depth + 1);
        let right = self.grow(&r, depth + 1);
        self.nodes[at] = TreeNode::Split {
            feature,
            threshold,
            left,
            right,
        };
        at
    }
}

impl<D: Data<Elem = f64>, T: Data<Elem = f64>>
    Fit<ArrayBase<D, Ix2>, ArrayBase<T, Ix1>, linfa::Error> for GbdtParams
{
    type Object = Gbdt;

    fn fit(
        &self,
        dataset: &DatasetBase<ArrayBase<D, Ix2>, ArrayBase<T, Ix1>>,
    ) -> Result<Gbdt, linfa::Error> {
        let records = dataset.records();
        let targets = dataset.targets();
        if records.nrows() == 0 || records.nrows() != targets.len() {
            return Err(linfa::Error::Parameters(format!(
                "need as many targets as records, at least one ({} vs {})",
                records.nrows(),
                targets.len()
            )));
        }
        let valid = self.n_trees >= 1
            && self.max_depth >= 1
            && self.min_leaf >= 1
            && self.learning_rate > 0.0
            && self.learning_rate <= 1.0;
        if !valid {
            return Err(linfa::Error::Parameters(format!(
                "invalid GBDT parameters {self:?}"
            )));
        }
        let x: Vec<Vec<f64>> = records.rows().into_iter().map(|r| r.to_vec()).collect();
        let y: Vec<f64> = targets.to_vec();
        let base = y.iter().sum::<f64>() / y.len() as f64;
        let mut prediction = vec![base; y.len()];
        let idx: Vec<usize> = (0..y.len()).collect();
        let mut trees = Vec::with_capacity(self.n_trees);
        for _ in 0..self.n_trees {
            let residual: Vec<f64> = y.iter().zip(&prediction).map(|(t, p)| t - p).collect();
            let mut b = TreeBuilder {
                x: &x,
                residual: &residual,
                params: self,
                nodes: Vec::new(),
            };
            b.grow(&idx, 0);
            let tree = Tree { nodes: b.nodes };
            for (p, row) in prediction.iter_mut().zip(&x) {
                *p += self.learning_rate * tree.predict(row);
            }
            trees.push(tree);
        }
        Ok(Gbdt {
            base,
            learning_rate: self.learning_rate,
            trees,
        })
    }
}

impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for Gbdt {
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<f64>) {
        for (row, out) in x.rows().into_iter().zip(y.iter_mut()) {
            *out = self.predict_one(&row.to_vec());
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}

/// Records from rows of features.
pub fn records(rows: &[Vec<f64>]) -> Array2<f64> {
    let d = rows.first().map_or(0, Vec::len);
    Array2::from_shape_fn((rows.len(), d), |(i, j)| rows[i][j])
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::traits::Predict;

    #[test]
    fn recovers_a_step_function_exactly() {
        // y = 3 when x0 > 0.5 else 1: one split, so boosting converges to it.
        let rows: Vec<Vec<f64>> = (0..40)
            .map(|i| vec![i as f64 / 40.0, (i % 7) as f64])
            .collect();
        let y: Array1<f64> = rows
            .iter()
            .map(|r| if r[0] > 0.5 { 3.0 } else { 1.0 })
            .collect();
        let ds = DatasetBase::new(records(&rows), y.clone());
        let model = GbdtParams {
            n_trees: 200,
            max_depth: 1,
            learning_rate: 0.5,
            min_leaf: 1,
        }
        .fit(&ds)
        .unwrap();
        let pred = model.predict(&records(&rows));
        for (p, t) in pred.iter().zip(&y) {
            assert!((p - t).abs() < 1e-6, "{p} vs {t}");
        }
        assert_eq!(
            model.trees[0].nodes.len(),
            3,
            "a stump: one split, two leaves"
        );
    }

    #[test]
    fn fits_a_smooth_law_and_round_trips_through_json() {
        let rows: Vec<Vec<f64>> = (0..200)
            .map(|i| vec![(i % 20) as f64, (i / 20) as f64])
            .collect();
        let law = |r: &[f64]| 2.0 * r[0] + 0.5 * r[1] * r[1];
        let y: Array1<f64> = rows.iter().map(|r| law(r)).collect();
        let model = GbdtParams::default()
            .fit(&DatasetBase::new(records(&rows), y))
            .unwrap();
        let err: f64 = rows
            .iter()
            .map(|r| (model.predict_one(r) - law(r)).abs())
            .sum::<f64>()
            / 200.0;
        assert!(err < 0.2, "mean abs error {err}");
        let json = serde_json::to_string(&model).unwrap();
        let back: Gbdt = serde_json::from_str(&json).unwrap();
        assert_eq!(back, model);
    }

    #[test]
    fn bad_parameters_are_errors() {
        let ds = DatasetBase::new(records(&[vec![1.0]]), Array1::from(vec![1.0]));
        let p = GbdtParams {
            learning_rate: 0.0,
            ..Default::default()
        };
        assert!(p.fit(&ds).is_err());
    }
}
