//! Nodes that move or describe data without computing: constants and shape arithmetic,
//! identities, flattening and reshapes (and the channel shuffle they spell), concatenation,
//! splits and slices, zero padding.

use hwnas_core::network::Value;
use hwnas_core::op::{Concat, Op, Shuffle, Slice, Tensor};

use super::fold;
use super::mapper::{At, Mapper, Problem, Val, unmapped};

impl<'g> Mapper<'g> {
    pub(super) fn identity(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let v = self.get(at.node, 0)?.clone();
        self.set(at.out, v);
        Ok(1)
    }

    pub(super) fn flatten(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let (value, shape) = self.act_in(at.node, 0)?;
        if at.node.attr("axis").map_or(1, |a| a.i) != 1 {
            return unmapped("Flatten on an axis other than 1");
        }
        let f = (shape.c as u64 * shape.h as u64 * shape.w as u64) as u32;
        let n = shape.n;
        self.set(at.out, Val::Flat { value, n, f });
        Ok(1)
    }

    pub(super) fn concat(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let node = at.node;
        if node.attr("axis").map(|a| a.i) != Some(1) {
            return unmapped("a Concat that is not along channels (axis 1)");
        }
        if let Some(consumed) = self.class_token_concat(at) {
            return Ok(consumed);
        }
        let parts: Vec<(Value, Tensor)> = (0..node.input.len())
            .map(|k| self.act_in(node, k))
            .collect::<Result<_, _>>()?;
        let (mut value, mut shape) = parts[0];
        for &(v2, t2) in &parts[1..] {
            if (t2.n, t2.h, t2.w) != (shape.n, shape.h, shape.w) {
                return unmapped(format!("concatenating {shape} and {t2}"));
            }
            let op = Op::Concat(Concat {
                input: shape,
                cout: shape.c + t2.c,
            });
            value = self.push(op, &[value, v2], vec![at.name.clone()])?;
            shape = shape.with_channels(shape.c + t2.c);
        }
        self.act_val(at.out, value, shape);
        Ok(1)
    }

    /// A zero Pad around H and W, left pending for the conv or pool that reads it.
    pub(super) fn pad(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let node = at.node;
        let (value, shape) = self.act_in(node, 0)?;
        let mode_ok = node
            .attr("mode")
            .is_none_or(|a| a.s.is_empty() || a.s == b"constant");
        let pads = self.ints_attr_or_input(node, "pads", 1);
        // The fill value: input 2 (opset 11 on) or the `value` attribute (before).
        let zero_value = match node.input.get(2).and_then(|n| self.vals.get(n.as_str())) {
            None => node.attr("value").is_none_or(|a| a.f == 0.0),
            Some(Val::Const(c)) => c
                .float_values()
                .is_some_and(|f| f.iter().all(|&v| v == 0.0)),
            _ => false,
        };
        match pads.as_deref() {
            Some([0, 0, t, l, 0, 0, b, r]) if mode_ok && zero_value => {
                let p = [*t, *l, *b, *r].map(|v| u32::try_from(v).unwrap_or(u32::MAX));
                if p.iter().any(|&v| v > 64) {
                    return unmapped(format!("padding {p:?}"));
                }
                self.set(
                    at.out,
                    Val::Act {
                        value,
                        shape,
                        pad: p,
                    },
                );
                Ok(1)
            }
            _ => unmapped("a Pad other than zeros around H and W"),
        }
    }

    /// Reshape: a flatten to `N x F`, or one step of a channel shuffle (to
    /// `N x g x C/g x H x W`, and after the Transpose back to `N x C x H x W`).
    pub(super) fn reshape(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let (nodes, i, out) = (at.nodes, at.i, at.out);
        let node = nodes[i];
        let target = match self.get(node, 1)? {
            Val::Const(c) => c.int_values().map(<[i64]>::to_vec),
            _ => None,
        };
        if let Val::Grouped {
            value,
            shape,
            groups,
            transposed,
        } = *self.get(node, 0)?
        {
            let (n, c, h, w) = (
                shape.n as i64,
                shape.c as i64,
                shape.h as i64,
                shape.w as i64,
            );
            let g = groups as i64;
            let grouped = if transposed {
                [n, c / g, g, h, w]
            } else {
                [n, g, c / g, h, w]
            };
            let back = target
                .as_deref()
                .and_then(|t| fold::reshape_dims(&grouped, t, false));
            if back.as_deref() != Some(&shape.dims()[..]) {
                return unmapped(format!("a reshape of a grouped {shape} to {target:?}"));
            }
            let v = if transposed {
                let op = Op::Shuffle(Shuffle {
                    input: shape,
                    groups,
                });
                self.push(op, &[value], vec![at.name.clone()])?
            } else {
                value
            };
            self.act_val(out, v, shape);
            return Ok(1);
        }
        let (value, shape) = self.act_in(node, 0)?;
        let dims = target
            .as_deref()
            .and_then(|t| fold::reshape_dims(&shape.dims(), t, false));
        // The first step of a channel shuffle: N x g x C/g x H x W.
        if let Some([n, g, _, h, w]) = dims.as_deref()
            && [*n, *h, *w] == [shape.n as i64, shape.h as i64, shape.w as i64]
        {
            self.set(
                out,
                Val::Grouped {
                    value,
                    shape,
                    groups: u32::try_from(*g).unwrap_or(0),
                    transposed: false,
                },
            );
            return Ok(1);
        }
        // The first step of `flatten(2).transpose(1, 2)`: N x C x HW.
        if let Some([n, c, l]) = dims.as_deref()
            && !shape.is_tokens()
            && [*n, *c, *l] == [shape.n as i64, shape.c as i64, (shape.h * shape.w) as i64]
        {
            self.sequence_view(at, value, shape);
            return Ok(1);
        }
        // Flattening to N x F (a constant shape, or a computed one feeding a linear layer).
        let flat = match dims.as_deref() {
            Some([n, _]) => *n == shape.n as i64,
            Some(d) if d == shape.dims() => {
                self.act_val(out, value, shape);
                return Ok(1);
            }
            Some(other) => {
                return unmapped(format!("a reshape of {shape} to {other:?}"));
            }
            None => nodes[i + 1..]
                .iter()
                .find(|n| n.input.iter().any(|x| x == out))
                .is_some_and(|n| matches!(n.op_type.as_str(), "Gemm" | "MatMul")),
        };
        if !flat {
            return unmapped(format!("a reshape of {shape} other than a flatten"));
        }
        let f = (shape.c as u64 * shape.h as u64 * shape.w as u64) as u32;
        self.set(
            out,
            Val::Flat {
                value,
                n: shape.n,
                f,
            },
        );
        Ok(1)
    }

    /// The middle of a channel shuffle: `Transpose(0, 2, 1, 3, 4)` of a grouped view.
    pub(super) fn transpose(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let perm = at.node.attr("perm").map(|a| a.ints.clone());
        match *self.get(at.node, 0)? {
            Val::Grouped {
                value,
                shape,
                groups,
                transposed: false,
            } if perm.as_deref() == Some(&[0, 2, 1, 3, 4]) => {
                self.set(
                    at.out,
                    Val::Grouped {
                        value,
                        shape,
                        groups,
                        transposed: true,
                    },
                );
                Ok(1)
            }
            Val::Seq { value, shape, sole } if perm.as_deref() == Some(&[0, 2, 1]) => {
                self.tokens_from_pixels(at, (value, shape, sole))
            }
            Val::Act {
                value,
                shape,
                pad: [0, 0, 0, 0],
            } if !shape.is_tokens() && perm.as_deref() == Some(&[0, 2, 3, 1]) => {
                self.channels_last(at, value, shape)
            }
            _ => unmapped(format!(
                "a Transpose {:?} (only a channel shuffle's, pixels to tokens, or ConvNeXt's to channels-last)",
                perm.unwrap_or_default()
            )),
        }
    }

    /// Split (any number of outputs) or Slice along channels: one `slice` op per output.
    pub(super) fn split(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let (node, name) = (at.node, at.name.clone());
        let (value, shape) = self.act_in(node, 0)?;
        let const_ints = |this: &Self, k: usize| -> Option<Vec<i64>> {
            match node.input.get(k).and_then(|n| this.vals.get(n.as_str())) {
                Some(Val::Const(c)) => c.int_values().map(<[i64]>::to_vec),
                _ => None,
            }
        };
        let mut start = 0i64;
        let sizes: Vec<i64> = if node.op_type == "Slice" {
            let (starts, ends) = (const_ints(self, 1), const_ints(self, 2));
            let axes = const_ints(self, 3).unwrap_or_else(|| vec![0]);
            let (Some([s]), Some([e])) = (starts.as_deref(), ends.as_deref()) else {
                return unmapped("a Slice with computed or several bounds");
            };
            if axes != [1] || const_ints(self, 4).is_some_and(|st| st != [1]) {
                return unmapped("a Slice that is not along channels with step 1");
            }
            let c = shape.c as i64;
            let clamp = |v: i64| if v < 0 { (v + c).max(0) } else { v.min(c) };
            start = clamp(*s);
            vec![clamp(*e) - start]
        } else {
            if node.attr("axis").map_or(0, |a| a.i) != 1 {
                return unmapped("a Split that is not along channels");
            }
            match node
                .attr("split")
                .map(|a| a.ints.clone())
                .or_else(|| const_ints(self, 1))
            {
                Some(s) => s,
                None => {
                    let parts = node.output.len().max(1) as i64;
                    vec![shape.c as i64 / parts; node.output.len()]
                }
            }
        };
        if sizes.len() != node.output.len()
            || sizes.iter().sum::<i64>() > shape.c as i64 && node.op_type == "Split"
        {
            return Err(Problem::Invalid(format!(
                "`{name}`: split sizes {sizes:?} for {} channels and {} outputs",
                shape.c,
                node.output.len()
            )));
        }
        for (o, &size) in node.output.iter().zip(&sizes) {
            let cout = u32::try_from(size).unwrap_or(0);
            let out_shape = shape.with_channels(cout);
            if cout == shape.c {
                self.act_val(o.as_str(), value, shape);
                continue;
            }
            let op = Op::Slice(Slice {
                input: shape,
                cout,
                start: u32::try_from(start).unwrap_or(u32::MAX),
            });
            let v = self.push(op, &[value], vec![name.clone()])?;
            self.act_val(o.as_str(), v, out_shape);
            start += size;
        }
        Ok(1)
    }
}
