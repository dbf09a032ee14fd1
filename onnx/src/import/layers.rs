//! Node groups that compute: convolutions (with the BN and activation folded in),
//! activations, element-wise adds and scales, pools, linear layers, softmax.

use hwnas_core::network::Value;
use hwnas_core::op::{
    Act as ActOp, Activation, Conv, Linear, Op, Pool, PoolKind, Tensor, window_output,
};

use super::mapper::{At, Mapper, Problem, Val, unmapped};
use super::node_name;
use crate::patterns;

impl<'g> Mapper<'g> {
    pub(super) fn conv(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let (node, name, out) = (at.node, at.name.clone(), at.out);
        let (value, shape, extra) = match self.get(node, 0)? {
            Val::Act { value, shape, pad } => (*value, *shape, *pad),
            Val::Unknown => return unmapped("reads the output of an unmapped node"),
            _ => return unmapped("input is not an N x C x H x W activation"),
        };
        let wdims = match self.get(node, 1)? {
            Val::Const { dims, .. } => dims.clone(),
            _ => return unmapped("weights that are not constants"),
        };
        let [cout, _, kh, kw] = wdims[..] else {
            return unmapped(format!("a {}-D weight (2-D convs only)", wdims.len()));
        };
        let ints = |k: &str| node.attr(k).map(|a| a.ints.clone());
        if ints("dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return unmapped("a dilated convolution");
        }
        if kh != kw {
            return unmapped(format!("a {kh}x{kw} kernel (square kernels only)"));
        }
        let stride = ints("strides").unwrap_or_else(|| vec![1, 1]);
        if stride.len() != 2 || stride[0] != stride[1] {
            return unmapped(format!("strides {stride:?}"));
        }
        let k = kh;
        let auto = node
            .attr("auto_pad")
            .map(|a| a.s.clone())
            .unwrap_or_default();
        let mut pads = match auto.as_slice() {
            b"" | b"NOTSET" => ints("pads").unwrap_or_else(|| vec![0; 4]),
            b"SAME_UPPER" | b"SAME_LOWER" if k % 2 == 1 => vec![k / 2; 4],
            b"VALID" => vec![0; 4],
            other => return unmapped(format!("auto_pad {}", String::from_utf8_lossy(other))),
        };
        if pads.len() != 4 {
            return unmapped(format!("pads {pads:?}"));
        }
        // A Pad node before the conv adds to its padding: (top, left, bottom, right).
        for (p, e) in pads
            .iter_mut()
            .zip([extra[0], extra[1], extra[2], extra[3]])
        {
            *p += e as i64;
        }
        if pads.iter().any(|&p| p != pads[0]) || !(0..k).contains(&pads[0]) {
            return unmapped(format!(
                "padding {pads:?} for a {k}x{k} kernel (only the same padding on every side, less than k)"
            ));
        }
        let groups = node.attr("group").map_or(1, |a| a.i);
        let op = Op::Conv(
            Conv {
                input: shape,
                cout: u32::try_from(cout)
                    .map_err(|_| Problem::Invalid(format!("conv `{name}` has {cout} outputs")))?,
                k: u32::try_from(k)
                    .map_err(|_| Problem::Invalid(format!("conv `{name}` kernel {k}")))?,
                stride: u32::try_from(stride[0]).unwrap_or(0),
                groups: u32::try_from(groups).unwrap_or(0),
                pad: None,
                pre_act: Activation::None,
                act: Activation::None,
            }
            .with_pad(pads[0] as u32),
        );
        let output = op.output();
        let v = self.push(op, &[value], vec![name])?;
        self.act_val(out, v, output);
        Ok(1)
    }

    pub(super) fn activation(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let (nodes, i, name, out) = (at.nodes, at.i, at.name.clone(), at.out);
        let node = nodes[i];
        let (value, shape) = self.act_in(node, 0)?;
        let input = node.input[0].as_str();
        let mut act = match node.op_type.as_str() {
            "Relu" => Activation::Relu,
            "Clip" => Activation::Relu6,
            "HardSwish" => Activation::HSwish,
            "HardSigmoid" => Activation::HSigmoid,
            _ => Activation::Sigmoid,
        };
        let (mut out, mut names, mut consumed) = (out, vec![name], 1);
        // Swish: x * Sigmoid(x), the Mul right after.
        // x * Sigmoid(x) is swish; x * HardSigmoid(x) hard swish (opset 13 has no HardSwish).
        if matches!(act, Activation::Sigmoid | Activation::HSigmoid)
            && let Some(next) = patterns::gated_mul(nodes, i)
            && self.readers(out) == 1
        {
            act = if act == Activation::Sigmoid {
                Activation::Swish
            } else {
                Activation::HSwish
            };
            names.push(node_name(next, i + 1));
            out = next.output[0].as_str();
            consumed = 2;
        }
        // Into the conv or act op that made its input, when nothing else reads that.
        if let Value::Node(k) = value
            && self.readers(input) == consumed
        {
            let fused = match &mut self.network.nodes[k].op {
                Op::Conv(c) if c.act == Activation::None => Some(&mut c.act),
                Op::Act(a) if a.act == Activation::None => Some(&mut a.act),
                _ => None,
            };
            if let Some(slot) = fused {
                *slot = act;
                self.layers[k].extend(names);
                self.act_val(out, value, shape);
                return Ok(consumed);
            }
        }
        let op = Op::Act(ActOp {
            input: shape,
            act,
            bn: false,
        });
        let v = self.push(op, &[value], names)?;
        match self.get(node, 0)? {
            Val::Flat { n, f, .. } => {
                let (n, f) = (*n, *f);
                self.set(out, Val::Flat { value: v, n, f });
            }
            _ => self.act_val(out, v, shape),
        }
        Ok(consumed)
    }

    pub(super) fn binary(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let (node, name, out) = (at.node, at.name.clone(), at.out);
        let a = self.get(node, 0)?.clone();
        let b = self.get(node, 1)?.clone();
        let is_const = |v: &Val| matches!(v, Val::Const { .. });
        if is_const(&a) || is_const(&b) {
            return unmapped(format!("{} with a constant", node.op_type));
        }
        let (va, ta) = self.act_in(node, 0)?;
        let (vb, tb) = self.act_in(node, 1)?;
        if node.op_type == "Add" {
            if ta != tb {
                return unmapped(format!("adding {ta} and {tb} (broadcasting)"));
            }
            let v = self.push(Op::Add(ta), &[va, vb], vec![name])?;
            self.act_val(out, v, ta);
            return Ok(1);
        }
        // Mul: a per-channel scale (squeeze-excitation) either way round.
        let ((vx, tx), (vs, ts)) = if tb.h * tb.w == 1 && ta.h * ta.w > 1 {
            ((va, ta), (vb, tb))
        } else {
            ((vb, tb), (va, ta))
        };
        if (ts.n, ts.c, ts.h, ts.w) != (tx.n, tx.c, 1, 1) {
            return unmapped(format!("multiplying {ta} by {tb}"));
        }
        let v = self.push(Op::Scale(tx), &[vx, vs], vec![name])?;
        self.act_val(out, v, tx);
        Ok(1)
    }

    pub(super) fn pool(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let (node, name, out) = (at.node, at.name.clone(), at.out);
        let (value, shape, extra) = match self.get(node, 0)? {
            Val::Act { value, shape, pad } => (*value, *shape, *pad),
            Val::Unknown => return unmapped("reads the output of an unmapped node"),
            _ => return unmapped("input is not an N x C x H x W activation"),
        };
        let ints = |k: &str| node.attr(k).map(|a| a.ints.clone());
        let k = ints("kernel_shape").unwrap_or_default();
        let s = ints("strides").unwrap_or_else(|| vec![1, 1]);
        let mut p = ints("pads").unwrap_or_else(|| vec![0; 4]);
        if k.len() != 2 || k[0] != k[1] || s.len() != 2 || s[0] != s[1] || p.len() != 4 {
            return unmapped(format!(
                "kernel {k:?}, strides {s:?}, pads {p:?} (square windows only)"
            ));
        }
        for (v, e) in p.iter_mut().zip(extra) {
            *v += e as i64;
        }
        if p.iter().any(|&v| v != p[0]) {
            return unmapped(format!("asymmetric padding {p:?}"));
        }
        let pool = Pool {
            input: shape,
            kind: if node.op_type == "MaxPool" {
                PoolKind::Max
            } else {
                PoolKind::Avg
            },
            k: u32::try_from(k[0]).unwrap_or(0),
            stride: u32::try_from(s[0]).unwrap_or(0),
            pad: u32::try_from(p[0]).unwrap_or(u32::MAX),
        };
        let op = Op::Pool(pool);
        let mut output = op.output();
        // Ceil mode adds a last, partial window where floor mode stops short. The op is timed
        // in floor mode (one row and column fewer); the tensor after it keeps its true size.
        let ceil = |side| window_output(side, pool.k, pool.stride, pool.pad, pool.pad, true);
        if node.attr("ceil_mode").is_some_and(|a| a.i != 0)
            && let (Some(h), Some(w)) = (ceil(shape.h), ceil(shape.w))
            && (h, w) != (output.h, output.w)
        {
            self.notes.push(format!(
                "`{name}`: ceil-mode pooling timed in floor mode ({}x{} outputs instead of {h}x{w})",
                output.h, output.w
            ));
            output = Tensor::new(output.n, output.c, h, w);
        }
        let v = self.push(op, &[value], vec![name])?;
        self.act_val(out, v, output);
        Ok(1)
    }

    pub(super) fn linear(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let (nodes, i, name, out) = (at.nodes, at.i, at.name.clone(), at.out);
        let node = nodes[i];
        let (value, n, f) = match self.get(node, 0)? {
            Val::Flat { value, n, f } => (*value, *n, *f),
            Val::Act { value, shape, pad } if shape.h * shape.w == 1 && *pad == [0; 4] => {
                (*value, shape.n, shape.c)
            }
            Val::Unknown => return unmapped("reads the output of an unmapped node"),
            _ => return unmapped("a matrix product of a spatial tensor (flatten it first)"),
        };
        let wdims = match self.get(node, 1)? {
            Val::Const { dims, .. } => dims.clone(),
            _ => return unmapped("weights that are not constants"),
        };
        let trans_b = node.op_type == "Gemm" && node.attr("transB").is_some_and(|a| a.i != 0);
        let [a, b] = wdims[..] else {
            return unmapped(format!("a {}-D weight", wdims.len()));
        };
        let (k, cout) = if trans_b { (b, a) } else { (a, b) };
        if k != f as i64 {
            return Err(Problem::Invalid(format!(
                "`{name}`: {f} input features, weight {wdims:?}"
            )));
        }
        let mut names = vec![name];
        let mut consumed = 1;
        let mut out = out;
        // MatMul + Add(bias) is a linear layer with a bias.
        if node.op_type == "MatMul"
            && let Some(next) = nodes.get(i + 1)
            && next.op_type == "Add"
            && next.input.iter().any(|x| x == out)
            && self.readers(out) == 1
            && next
                .input
                .iter()
                .any(|x| matches!(self.vals.get(x.as_str()), Some(Val::Const { .. })))
            && let Some(o) = next.output.first()
        {
            names.push(node_name(next, i + 1));
            out = o.as_str();
            consumed = 2;
        }
        let cout = u32::try_from(cout).map_err(|_| Problem::Invalid(format!("{cout} outputs")))?;
        let op = Op::Linear(Linear {
            input: Tensor::new(n, f, 1, 1),
            cout,
        });
        let v = self.push(op, &[value], names)?;
        self.set(
            out,
            Val::Flat {
                value: v,
                n,
                f: cout,
            },
        );
        Ok(consumed)
    }

    pub(super) fn batch_norm(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let (value, shape) = self.act_in(at.node, 0)?;
        // Folded into the conv that made its input, as every runtime does.
        if let Value::Node(k) = value
            && self.readers(&at.node.input[0]) == 1
            && let Op::Conv(c) = self.network.nodes[k].op
            && c.act == Activation::None
        {
            self.layers[k].push(at.name.clone());
            self.act_val(at.out, value, shape);
            return Ok(1);
        }
        let op = Op::Act(ActOp {
            input: shape,
            act: Activation::None,
            bn: true,
        });
        let v = self.push(op, &[value], vec![at.name.clone()])?;
        self.act_val(at.out, v, shape);
        Ok(1)
    }

    pub(super) fn global_pool(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let (value, shape) = self.act_in(at.node, 0)?;
        let v = self.push(Op::GlobalAvgPool(shape), &[value], vec![at.name.clone()])?;
        self.act_val(at.out, v, Tensor::new(shape.n, shape.c, 1, 1));
        Ok(1)
    }

    pub(super) fn reduce_mean(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let node = at.node;
        let (value, shape) = self.act_in(node, 0)?;
        let mut axes = self.ints_attr_or_input(node, "axes", 1).unwrap_or_default();
        for a in axes.iter_mut() {
            if *a < 0 {
                *a += 4;
            }
        }
        axes.sort_unstable();
        if axes != [2, 3] {
            return unmapped(format!("a mean over axes {axes:?}, not over H and W"));
        }
        let v = self.push(Op::GlobalAvgPool(shape), &[value], vec![at.name.clone()])?;
        if node.attr("keepdims").is_none_or(|a| a.i != 0) {
            self.act_val(at.out, v, Tensor::new(shape.n, shape.c, 1, 1));
        } else {
            let (n, f) = (shape.n, shape.c);
            self.set(at.out, Val::Flat { value: v, n, f });
        }
        Ok(1)
    }

    pub(super) fn softmax(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let (value, shape) = self.act_in(at.node, 0)?;
        if shape.h * shape.w != 1 {
            return unmapped("a softmax over a spatial tensor");
        }
        let v = self.push(Op::Softmax(shape), &[value], vec![at.name.clone()])?;
        let (n, f) = (shape.n, shape.c);
        self.set(at.out, Val::Flat { value: v, n, f });
        Ok(1)
    }
}
