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
        let wdims = self.weight_dims(node)?;
        let [cout, _, kh, kw] = wdims[..] else {
            return unmapped(format!("a {}-D weight (2-D convs only)", wdims.len()));
        };
        let ints = |k: &str| node.attr(k).map(|a| a.ints.clone());
        let dilation = ints("dilations").unwrap_or_else(|| vec![1, 1]);
        if dilation.len() != 2 || dilation[0] != dilation[1] || dilation[0] < 1 {
            return unmapped(format!(
                "dilations {dilation:?} (the same on both axes only)"
            ));
        }
        let stride = ints("strides").unwrap_or_else(|| vec![1, 1]);
        if stride.len() != 2 || stride[0] != stride[1] {
            return unmapped(format!("strides {stride:?}"));
        }
        let d = dilation[0];
        let same = [d * (kh / 2), d * (kw / 2)];
        let auto = node
            .attr("auto_pad")
            .map(|a| a.s.clone())
            .unwrap_or_default();
        let mut pads = match auto.as_slice() {
            b"" | b"NOTSET" => ints("pads").unwrap_or_else(|| vec![0; 4]),
            // TensorFlow's "same": the output is ceil(size / stride), the padding split with
            // the odd pixel at the end (UPPER) or the start (LOWER).
            mode @ (b"SAME_UPPER" | b"SAME_LOWER") => {
                let total = |size: u32, k: i64| {
                    let (size, s) = (i64::from(size), stride[0].max(1));
                    ((size + s - 1) / s - 1) * s + d * (k - 1) + 1 - size
                };
                let (th, tw) = (total(shape.h, kh).max(0), total(shape.w, kw).max(0));
                let (h0, w0) = if mode == b"SAME_UPPER" {
                    (th / 2, tw / 2)
                } else {
                    (th - th / 2, tw - tw / 2)
                };
                vec![h0, w0, th - h0, tw - w0]
            }
            b"VALID" => vec![0; 4],
            other => return unmapped(format!("auto_pad {}", String::from_utf8_lossy(other))),
        };
        if pads.len() != 4 {
            return unmapped(format!("pads {pads:?}"));
        }
        // A Pad node before the conv adds to its padding: (top, left, bottom, right).
        for (p, e) in pads.iter_mut().zip(extra) {
            *p += e as i64;
        }
        let symmetric = pads[0] == pads[2] && pads[1] == pads[3];
        let pad = if symmetric && pads[..2] == same {
            None
        } else if pads.iter().all(|&p| p == pads[0]) {
            Some(pads[0])
        } else {
            return unmapped(format!(
                "padding {pads:?} for a {kh}x{kw} kernel (the same padding on every side, or \"same\" per axis)"
            ));
        };
        let groups = node.attr("group").map_or(1, |a| a.i);
        let num = |v: i64, what: &str| {
            u32::try_from(v).map_err(|_| Problem::Invalid(format!("conv `{name}`: {what} {v}")))
        };
        let conv = Conv {
            input: shape,
            cout: num(cout, "outputs")?,
            k: num(kh, "kernel")?,
            stride: num(stride[0], "stride")?,
            groups: num(groups, "groups")?,
            kw: None,
            dilation: num(d, "dilation")?,
            pad: None,
            pre_act: Activation::None,
            act: Activation::None,
        }
        .with_kernel(num(kh, "kernel")?, num(kw, "kernel")?);
        let op = Op::Conv(match pad {
            Some(p) => conv.with_pad(num(p, "padding")?),
            None => conv,
        });
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
            "Tanh" => Activation::Tanh,
            "LeakyRelu" => Activation::LeakyRelu,
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

    /// Add, Sub, Mul, Div, and n-input Sum, Max, Min: of activations of one shape `add`s (a
    /// `scale` for a squeeze-excitation's per-channel Mul); with a constant operand an affine
    /// step.
    pub(super) fn binary(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let (node, name, out) = (at.node, at.name.clone(), at.out);
        let operands: Vec<Val> = (0..node.input.len())
            .map(|k| self.get(node, k).cloned())
            .collect::<Result<_, _>>()?;
        if let [only] = &operands[..] {
            self.set(out, only.clone());
            return Ok(1);
        }
        let is_const = |v: &Val| matches!(v, Val::Const(_) | Val::Opaque);
        if operands.len() == 2 && operands.iter().any(is_const) {
            if node.op_type == "Add"
                && let Some(consumed) = self.position_embedding(at)
            {
                return Ok(consumed);
            }
            return self.affine(at);
        }
        let parts: Vec<(Value, Tensor)> = (0..node.input.len())
            .map(|k| self.act_in(node, k))
            .collect::<Result<_, _>>()?;
        let (va, ta) = parts[0];
        if node.op_type == "Mul" && parts[1].1 != ta {
            let (vb, tb) = parts[1];
            return self.scale(at, (va, ta), (vb, tb));
        }
        // Sub, Div, Max, Min (and a Mul of equal shapes) move the same bytes and do one
        // operation per element, as an add does: timed as one.
        let mut value = va;
        for &(vb, tb) in &parts[1..] {
            if tb != ta {
                return unmapped(format!("adding {ta} and {tb} (broadcasting)"));
            }
            value = self.push(Op::Add(ta), &[value, vb], vec![name.clone()])?;
        }
        self.act_val(out, value, ta);
        Ok(1)
    }

    /// Mul of an activation by an `N x C x 1 x 1` one (squeeze-excitation), either way round.
    fn scale(
        &mut self,
        at: &At<'_, 'g>,
        (va, ta): (Value, Tensor),
        (vb, tb): (Value, Tensor),
    ) -> Result<usize, Problem> {
        let ((vx, tx), (vs, ts)) = if tb.h * tb.w == 1 && ta.h * ta.w > 1 {
            ((va, ta), (vb, tb))
        } else {
            ((vb, tb), (va, ta))
        };
        if (ts.n, ts.c, ts.h, ts.w) != (tx.n, tx.c, 1, 1) {
            return unmapped(format!("multiplying {ta} by {tb}"));
        }
        let v = self.push(Op::Scale(tx), &[vx, vs], vec![at.name.clone()])?;
        self.act_val(at.out, v, tx);
        Ok(1)
    }

    /// An activation and a constant (scalar or per channel) combined element-wise: a batch
    /// norm written out (Caffe2's and many converters' Mul + Add). Folded into the conv before
    /// it as ONNX Runtime's ConvMulFusion and ConvAddFusion do, or into the affine step before
    /// it; otherwise timed as an `act` op with its affine batch norm.
    fn affine(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let node = at.node;
        let k = usize::from(matches!(self.get(node, 0)?, Val::Const(_) | Val::Opaque));
        let (value, shape) = self.act_in(node, k)?;
        let per_channel = match self.get(node, 1 - k)? {
            Val::Const(c) => {
                let d = &c.dims;
                let numel: i64 = d.iter().product();
                let flat = shape.h * shape.w == 1 && d.last() == Some(&numel);
                let spatial = d.len() >= 3 && d[d.len() - 3] == numel;
                numel == 1 || (numel == shape.c as i64 && (flat || spatial))
            }
            _ => false,
        };
        if !per_channel {
            return unmapped(format!(
                "{} of {shape} and a constant that is not per channel",
                node.op_type
            ));
        }
        let source = self.get(node, k).cloned()?;
        if let Value::Node(p) = value
            && self.readers(&node.input[k]) == 1
        {
            let absorbs = match &self.network.nodes[p].op {
                Op::Conv(c) => c.act == Activation::None,
                Op::Act(a) => a.bn && a.act == Activation::None,
                _ => false,
            };
            if absorbs {
                self.layers[p].push(at.name.clone());
                self.set(at.out, source);
                return Ok(1);
            }
        }
        let op = Op::Act(ActOp {
            input: shape,
            act: Activation::None,
            bn: true,
        });
        let v = self.push(op, &[value], vec![at.name.clone()])?;
        match source {
            Val::Flat { n, f, .. } => self.set(at.out, Val::Flat { value: v, n, f }),
            _ => self.act_val(at.out, v, shape),
        }
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
        let p: Vec<u32> = p
            .iter()
            .map(|&v| u32::try_from(v).unwrap_or(u32::MAX))
            .collect();
        // Extra padding at the end (Caffe's way of writing ceil mode) only adds a last window.
        if p[0] != p[1] || p[2] < p[0] || p[3] < p[1] {
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
            pad: p[0],
        };
        let ceil = node.attr("ceil_mode").is_some_and(|a| a.i != 0);
        let size = |side, end| window_output(side, pool.k, pool.stride, pool.pad, end, ceil);
        // An average over the whole image (Inception v1's last pool) is a global pool.
        if pool.kind == PoolKind::Avg
            && (size(shape.h, p[2]), size(shape.w, p[3])) == (Some(1), Some(1))
            && pool.k >= shape.h.max(shape.w)
        {
            let v = self.push(Op::GlobalAvgPool(shape), &[value], vec![name])?;
            self.act_val(out, v, Tensor::new(shape.n, shape.c, 1, 1));
            return Ok(1);
        }
        let op = Op::Pool(pool);
        let mut output = op.output();
        // Ceil mode and extra end padding add a last, partial window where the op (floor mode,
        // symmetric padding) stops short. The op is timed one row and column smaller; the
        // tensor after it keeps its true size.
        if let (Some(h), Some(w)) = (size(shape.h, p[2]), size(shape.w, p[3]))
            && (h, w) != (output.h, output.w)
        {
            self.notes.push(format!(
                "`{name}`: a pool with a last, partial window timed without it ({}x{} outputs instead of {h}x{w})",
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
        let wdims = self.weight_dims(node)?;
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
                .any(|x| matches!(self.vals.get(x.as_str()), Some(Val::Const(_))))
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
        let rank = shape.dims().len() as i64;
        for a in axes.iter_mut() {
            if *a < 0 {
                *a += rank;
            }
        }
        if shape.is_tokens() && axes == [1] && node.attr("keepdims").is_some_and(|k| k.i == 0) {
            return self.token_mean(at, value, shape);
        }
        // The first node of a LayerNorm written out.
        if shape.is_tokens() && axes == [2] {
            return self.layer_norm(at);
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
