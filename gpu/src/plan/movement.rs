//! Nodes that move or view data: identities and flattens (views), zero padding (left for the
//! conv or pool after it), splits, slices and concatenation (copies), reshapes (views, or the
//! channel shuffle they spell with a transpose).

use hwnas_onnx::patterns;
use hwnas_onnx::proto::NodeProto;

use super::lowering::{At, Lowering, dims4, reshaped};
use super::{PlanError, Step};

impl Lowering {
    pub(super) fn view(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let (node, op) = (at.node, at.node.op_type.as_str());
        let out = at.out.clone();
        let bad = |why: String| at.bad(why);
        let x = self.input(at, 0)?;
        let dims = self.buffers[x].dims.clone();
        if op != "Flatten" {
            self.names.insert(out, x);
            return Ok(1);
        }
        let axis = node.attr("axis").map_or(1, |a| a.i);
        let axis = if axis < 0 {
            axis + dims.len() as i64
        } else {
            axis
        };
        if !(0..=dims.len() as i64).contains(&axis) {
            return Err(bad(format!("axis {axis} out of range for {dims:?}")));
        }
        let (a, b) = dims.split_at(axis as usize);
        let view = vec![a.iter().product(), b.iter().product()];
        let id = self.define(&out, view, None);
        self.buffers[id].alias = Some(self.buffers[x].alias.unwrap_or(x));
        Ok(1)
    }

    pub(super) fn pad(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let (nodes, i, node) = (at.nodes, at.i, at.node);
        let out = at.out.clone();
        let bad = |why: String| at.bad(why);
        let x = self.input(at, 0)?;
        let pads = self.ints_attr_or_input(node, "pads", 1);
        let zero = node.input.get(2).filter(|n| !n.is_empty()).is_none_or(|n| {
            self.lookup(n)
                .and_then(|id| self.buffers[id].data.as_ref())
                .is_some_and(|d| d.iter().all(|&v| v == 0.0))
        });
        let constant = node
            .attr("mode")
            .is_none_or(|a| a.s.is_empty() || a.s == b"constant");
        let readers_fold = nodes[i + 1..]
            .iter()
            .filter(|n| n.input.contains(&out))
            .all(|n| matches!(n.op_type.as_str(), "Conv" | "AveragePool" | "MaxPool"));
        match pads.as_deref() {
            Some(&[0, 0, t, l, 0, 0, b, r])
                if zero
                    && constant
                    && readers_fold
                    && [t, l, b, r].iter().all(|v| (0..64).contains(v)) =>
            {
                self.padded.insert(out, (x, [t, l, b, r].map(|v| v as u32)));
                Ok(1)
            }
            _ => Err(bad(
                "only a zero Pad of H and W read by convs or pools runs on the GPU".into(),
            )),
        }
    }

    pub(super) fn split(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let node = at.node;
        let bad = |why: String| at.bad(why);
        let x = self.input(at, 0)?;
        let dims = self.buffers[x].dims.clone();
        if node.attr("axis").map_or(0, |a| a.i) != 1 || dims.len() < 2 {
            return Err(bad("only a Split along axis 1 runs on the GPU".into()));
        }
        let parts = node.output.len().max(1);
        let sizes: Vec<usize> = self
            .ints_attr_or_input(node, "split", 1)
            .map(|v| v.iter().map(|&s| s.max(0) as usize).collect())
            .unwrap_or_else(|| vec![dims[1] / parts; parts]);
        if sizes.len() != parts || sizes.iter().sum::<usize>() != dims[1] {
            return Err(bad(format!(
                "split sizes {sizes:?} for {} channels",
                dims[1]
            )));
        }
        let rest: usize = dims[2..].iter().product();
        let mut start = 0;
        for (o, &size) in node.output.iter().zip(&sizes) {
            let mut ydims = dims.clone();
            ydims[1] = size;
            let y = self.define(o, ydims, None);
            let len = size * rest;
            self.push(Step::Copy {
                x,
                y,
                rows: dims[0] as u32,
                len: len as u32,
                src: ((start * rest) as u32, (dims[1] * rest) as u32),
                dst: (0, len as u32),
            });
            start += size;
        }
        Ok(1)
    }

    pub(super) fn concat(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let node = at.node;
        let out = at.out.clone();
        let bad = |why: String| at.bad(why);
        let parts: Vec<usize> = (0..node.input.len())
            .map(|k| self.input(at, k))
            .collect::<Result<_, _>>()?;
        let dims0 = self.buffers[parts[0]].dims.clone();
        let axis = node.attr("axis").map_or(0, |a| a.i);
        let same_but_channels = parts.iter().all(|&p| {
            let d = &self.buffers[p].dims;
            d.len() == dims0.len() && d[0] == dims0[0] && d[2..] == dims0[2..]
        });
        if axis != 1 || dims0.len() < 2 || !same_but_channels {
            return Err(bad(
                "only a Concat of same-sized tensors along axis 1 runs on the GPU".into(),
            ));
        }
        let rest: usize = dims0[2..].iter().product();
        let total: usize = parts.iter().map(|&p| self.buffers[p].dims[1]).sum();
        let mut dims = dims0.clone();
        dims[1] = total;
        let y = self.define(&out, dims, None);
        let mut offset = 0;
        for &p in &parts {
            let len = self.buffers[p].dims[1] * rest;
            self.push(Step::Copy {
                x: p,
                y,
                rows: dims0[0] as u32,
                len: len as u32,
                src: (0, len as u32),
                dst: (offset as u32, (total * rest) as u32),
            });
            offset += len;
        }
        Ok(1)
    }

    pub(super) fn slice(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let node = at.node;
        let out = at.out.clone();
        let bad = |why: String| at.bad(why);
        let x = self.input(at, 0)?;
        let dims = self.buffers[x].dims.clone();
        let int = |k: usize| -> Option<i64> {
            node.input
                .get(k)
                .and_then(|n| self.ints.get(n))
                .and_then(|v| v.first().copied())
        };
        let (axis, step) = (int(3).unwrap_or(0), int(4).unwrap_or(1));
        let (Some(start), Some(end)) = (int(1), int(2)) else {
            return Err(bad("starts and ends must be constants".into()));
        };
        if axis != 1 || step != 1 || dims.len() < 2 {
            return Err(bad(
                "only a Slice along axis 1 with step 1 runs on the GPU".into()
            ));
        }
        let c = dims[1] as i64;
        let clamp = |v: i64| if v < 0 { (v + c).max(0) } else { v.min(c) };
        let (start, end) = (clamp(start) as usize, clamp(end) as usize);
        if end <= start {
            return Err(bad("the slice is empty".into()));
        }
        let rest: usize = dims[2..].iter().product();
        let mut ydims = dims.clone();
        ydims[1] = end - start;
        let y = self.define(&out, ydims, None);
        let len = (end - start) * rest;
        self.push(Step::Copy {
            x,
            y,
            rows: dims[0] as u32,
            len: len as u32,
            src: ((start * rest) as u32, (dims[1] * rest) as u32),
            dst: (0, len as u32),
        });
        Ok(1)
    }

    pub(super) fn reshape(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let (nodes, i, node) = (at.nodes, at.i, at.node);
        let out = at.out.clone();
        let bad = |why: String| at.bad(why);
        let x = self.input(at, 0)?;
        let dims = self.buffers[x].dims.clone();
        let shape = node
            .input
            .get(1)
            .and_then(|n| self.ints.get(n))
            .ok_or_else(|| bad("the shape must be a constant".into()))?
            .clone();
        if let Some((y, groups)) = self.shuffle_pattern(nodes, i, &dims, &shape) {
            let [n, c, h, w] = dims4(&dims).map_err(bad)?;
            let y = self.define(&y, dims.clone(), None);
            self.push(Step::Shuffle {
                x,
                y,
                n: n as u32,
                c: c as u32,
                groups,
                hw: (h * w) as u32,
            });
            return Ok(3);
        }
        // Any other reshape is a view of the same memory.
        let new_dims = reshaped(&dims, &shape).map_err(bad)?;
        let id = self.define(&out, new_dims, None);
        self.buffers[id].alias = Some(self.buffers[x].alias.unwrap_or(x));
        Ok(1)
    }

    /// `Reshape(N x g x C/g x H x W) -> Transpose(0, 2, 1, 3, 4) -> Reshape(N x C x H x W)`
    /// starting at `nodes[i]`: the last node's output name and `g`.
    fn shuffle_pattern(
        &self,
        nodes: &[&NodeProto],
        i: usize,
        dims: &[usize],
        shape: &[i64],
    ) -> Option<(String, u32)> {
        let ([n, c, h, w], [sn, g, cg, sh, sw]) = (dims, shape) else {
            return None;
        };
        let (_, back) = patterns::shuffle_tail(nodes, i)?;
        let back_shape = self.ints.get(back.input.get(1)?)?;
        let matches = (*sn, *sh, *sw) == (*n as i64, *h as i64, *w as i64)
            && *g > 0
            && g * cg == *c as i64
            && reshaped(&[*n, *g as usize, *cg as usize, *h, *w], back_shape).ok()?
                == [*n, *c, *h, *w];
        matches.then(|| (back.output[0].clone(), *g as u32))
    }
}
