//! The nodes of the transformer ops: LayerNormalization, Transpose, Gather of one index,
//! GELU (written out as torch exports it, or opset 20's node), batched MatMul, and the mean
//! over tokens.

use super::lowering::{At, Lowering, eltwise, epilogue_slot};
use super::{Act, Operand, PlanError, Step};

impl Lowering {
    pub(super) fn layer_norm(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let node = at.node;
        let axis = node.attr("axis").map_or(-1, |a| a.i);
        let x = self.input(at, 0)?;
        let dims = self.buffers[x].dims.clone();
        if axis != -1 && axis != dims.len() as i64 - 1 {
            return Err(at.bad("only a LayerNorm over the last axis runs on the GPU".into()));
        }
        let (scale, bias) = (self.input(at, 1)?, self.input(at, 2)?);
        let cols = *dims.last().unwrap_or(&1);
        if self.buffers[scale].numel() != cols || self.buffers[bias].numel() != cols {
            return Err(at.bad(format!("scale and bias must have {cols} values")));
        }
        let y = self.define(&at.out, dims.clone(), None);
        self.push(Step::LayerNorm {
            x,
            scale,
            bias,
            y,
            rows: (dims.iter().product::<usize>() / cols.max(1)) as u32,
            cols: cols as u32,
            eps: node.attr("epsilon").map_or(1e-5, |a| a.f),
        });
        Ok(1)
    }

    pub(super) fn transpose(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let x = self.input(at, 0)?;
        let dims = self.buffers[x].dims.clone();
        let rank = dims.len();
        let perm: Vec<usize> = match at.node.attr("perm") {
            Some(a) => a.ints.iter().map(|&p| p as usize).collect(),
            None => (0..rank).rev().collect(),
        };
        let mut seen = vec![false; rank];
        if perm.len() != rank
            || perm
                .iter()
                .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
        {
            return Err(at.bad(format!("perm {perm:?} for a rank-{rank} tensor")));
        }
        let out: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
        let y = self.define(&at.out, out, None);
        self.push(Step::Transpose {
            x,
            y,
            dims: dims.iter().map(|&d| d as u32).collect(),
            perm: perm.iter().map(|&p| p as u32).collect(),
        });
        Ok(1)
    }

    /// Gather of one (scalar) index along an axis: a strided copy.
    pub(super) fn gather(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let x = self.input(at, 0)?;
        let dims = self.buffers[x].dims.clone();
        let index = at.node.input.get(1).and_then(|n| self.ints.get(n));
        let rank = dims.len() as i64;
        let axis = at.node.attr("axis").map_or(0, |a| a.i);
        let axis = if axis < 0 { axis + rank } else { axis };
        let (Some([i]), true) = (index.map(Vec::as_slice), (0..rank).contains(&axis)) else {
            return Err(at.bad("only a Gather of one constant index runs on the GPU".into()));
        };
        let axis = axis as usize;
        let extent = dims[axis] as i64;
        let i = if *i < 0 { i + extent } else { *i };
        if !(0..extent).contains(&i) {
            return Err(at.bad(format!("index {i} out of {extent}")));
        }
        let inner: usize = dims[axis + 1..].iter().product();
        let outer: usize = dims[..axis].iter().product();
        let mut out = dims.clone();
        out.remove(axis);
        let y = self.define(&at.out, out, None);
        self.push(Step::Copy {
            x,
            y,
            rows: outer as u32,
            len: inner as u32,
            src: ((i as usize * inner) as u32, (dims[axis] * inner) as u32),
            dst: (0, inner as u32),
        });
        Ok(1)
    }

    /// `Div(x, sqrt 2) -> Erf -> Add(1) -> Mul(x) -> Mul(0.5)`, torch's exact GELU, as one
    /// activation (in the epilogue of the kernel that made `x` when it can take one).
    pub(super) fn gelu_pattern(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let (nodes, i, node) = (at.nodes, at.i, at.node);
        let x_name = node.input.first().cloned().unwrap_or_default();
        let types: Vec<&str> = nodes[i..]
            .iter()
            .take(5)
            .map(|n| n.op_type.as_str())
            .collect();
        let chained = types == ["Div", "Erf", "Add", "Mul", "Mul"]
            && (1..5).all(|k| nodes[i + k].input.contains(&nodes[i + k - 1].output[0]))
            && nodes[i + 3].input.contains(&x_name);
        if !chained {
            return Err(at.bad("only the division of torch's GELU runs on the GPU".into()));
        }
        let out = nodes[i + 4].output[0].clone();
        let x = self.input(at, 0)?;
        if self.readers(&x_name) == 2
            && let Some(&s) = self.producer.get(&x)
            && let Some(slot) = epilogue_slot(&mut self.steps[s])
        {
            *slot = Act::Gelu;
            self.names.insert(out, x);
            return Ok(5);
        }
        let dims = self.buffers[x].dims.clone();
        let y = self.define(&out, dims.clone(), None);
        self.push(Step::Eltwise(eltwise(
            x,
            Operand::None,
            y,
            &dims,
            Act::Gelu,
        )));
        Ok(5)
    }

    /// MatMul of two activations of 3 or more dims with equal batches (attention's `Q K^T`
    /// and `A V`), or of an activation by a 2-D weight shared by the batch.
    pub(super) fn batched_matmul(
        &mut self,
        at: &At<'_>,
        a: usize,
        b: usize,
    ) -> Result<usize, PlanError> {
        let (da, db) = (self.buffers[a].dims.clone(), self.buffers[b].dims.clone());
        let (ra, rb) = (da.len(), db.len());
        let (m, k, k2, n) = (da[ra - 2], da[ra - 1], db[rb - 2], db[rb - 1]);
        let batch: usize = da[..ra - 2].iter().product();
        let b_batch: usize = db[..rb - 2].iter().product();
        if k != k2 || (b_batch != 1 && (db[..rb - 2] != da[..ra - 2])) {
            return Err(at.bad(format!("MatMul of {da:?} and {db:?}")));
        }
        let mut out = da[..ra - 2].to_vec();
        out.extend([m, n]);
        let y = self.define(&at.out, out, None);
        self.push(Step::MatMul {
            a,
            b,
            y,
            batch: batch as u32,
            m: m as u32,
            k: k as u32,
            n: n as u32,
            b_batched: b_batch != 1,
        });
        Ok(1)
    }

    /// A bias of the last axis added to a matrix product nothing else reads: the product's bias.
    pub(super) fn bias_into_gemm(&mut self, at: &At<'_>, x: usize, bias: usize) -> bool {
        let n = self.buffers[bias].numel();
        let product = at.node.input.iter().find(|i| self.lookup(i) == Some(x));
        if self.buffers[bias].dims.len() != 1 || product.is_none_or(|p| self.readers(p) != 1) {
            return false;
        }
        if let Some(&s) = self.producer.get(&x)
            && let Step::Gemm(g) = &mut self.steps[s]
            && g.b.is_none()
            && g.act == Act::None
            && g.n as usize == n
        {
            g.b = Some(bias);
            self.names.insert(at.out.clone(), x);
            return true;
        }
        false
    }

    /// The mean over the tokens of `N x L x C`: to `N x C x L`, then a mean per row.
    pub(super) fn token_mean(&mut self, at: &At<'_>, x: usize) -> Result<usize, PlanError> {
        let dims = self.buffers[x].dims.clone();
        let [n, l, c] = dims[..] else {
            return Err(at.bad(format!("a mean over axis 1 of {dims:?}")));
        };
        let t = self.define(&format!("{}/tokens_t", at.out), vec![n, c, l], None);
        self.push(Step::Transpose {
            x,
            y: t,
            dims: vec![n as u32, l as u32, c as u32],
            perm: vec![0, 2, 1],
        });
        let y = self.define(&at.out, vec![n, c], None);
        self.push(Step::GlobalAvgPool {
            x: t,
            y,
            planes: (n * c) as u32,
            hw: l as u32,
        });
        Ok(1)
    }
}
