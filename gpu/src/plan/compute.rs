//! Nodes that compute: activations (fused where a runtime fuses them), convolutions (with
//! batch norms folded in and residual adds in the epilogue), element-wise ops, pools, global
//! pooling, matrix products, softmax.

use hwnas_onnx::patterns;
use hwnas_onnx::proto::NodeProto;

use super::lowering::{
    At, Lowering, activation, attr_ints, dims4, eltwise, epilogue_slot, out_size, pads, pair,
};
use super::{Act, ConvStep, GemmStep, Operand, PlanError, PoolStep, Step};

impl Lowering {
    /// An activation: in its producer's epilogue, in its only reader's (a conv's) load, or
    /// its own kernel.
    pub(super) fn activation_node(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let (nodes, i, node) = (at.nodes, at.i, at.node);
        let out = at.out.clone();
        let act = activation(node, self)?;
        // Swish: Sigmoid(t) read only by Mul(t, sigmoid).
        let act_in = node.input.first().cloned().unwrap_or_default();
        let mut consumed = 1;
        let mut act = act;
        let mut out = out;
        // x * HardSigmoid(x) with MobileNet's constants is hard swish (how opset 13,
        // which has no HardSwish, writes it).
        let hard_swish =
            matches!(act, Act::HardSigmoid(a, b) if (a - 1.0 / 6.0).abs() < 1e-6 && b == 0.5);
        if (act == Act::Sigmoid || hard_swish)
            && let Some(next) = patterns::gated_mul(nodes, i)
            && self.readers(&node.output[0]) == 1
            && self.readers(&act_in) == 2
        {
            act = if hard_swish {
                Act::HardSwish
            } else {
                Act::Swish
            };
            out = next.output[0].clone();
            consumed = 2;
        }
        let sole_reader = self.readers(&act_in) == consumed;
        // Into the producer's epilogue...
        if sole_reader
            && let Some(src) = self.lookup(&act_in)
            && let Some(&s) = self.producer.get(&src)
            && let Some(slot) = epilogue_slot(&mut self.steps[s])
        {
            *slot = act;
            self.names.insert(out, src);
            return Ok(consumed);
        }
        // ...or into the prologue of its only reader, a conv...
        if consumed == 1 && act != Act::Swish && self.readers(&out) == 1 {
            let reader = nodes[i + 1..].iter().find(|n| n.input.contains(&out));
            if reader.is_some_and(|r| r.op_type == "Conv" && r.input[0] == out) {
                let src = self.input(at, 0)?;
                self.deferred.insert(out, (src, act));
                return Ok(1);
            }
        }
        // ...or its own kernel.
        let x = self.input(at, 0)?;
        let dims = self.buffers[x].dims.clone();
        let y = self.define(&out, dims.clone(), None);
        self.push(Step::Eltwise(eltwise(x, Operand::None, y, &dims, act)));
        Ok(consumed)
    }

    pub(super) fn conv_node(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        self.conv(at.node, &at.out).map_err(|why| at.bad(why))?;
        Ok(1)
    }

    pub(super) fn batch_norm(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let node = at.node;
        let out = at.out.clone();
        let bad = |why: String| at.bad(why);
        let x = self.input(at, 0)?;
        let eps = node.attr("epsilon").map_or(1e-5, |a| a.f);
        let params: Vec<Vec<f32>> = (1..5)
            .map(|k| {
                let id = self.input(at, k)?;
                self.buffers[id]
                    .data
                    .clone()
                    .ok_or_else(|| bad("scale, bias, mean and var must be constants".into()))
            })
            .collect::<Result<_, _>>()?;
        let dims = self.buffers[x].dims.clone();
        let c = *dims
            .get(1)
            .ok_or_else(|| bad("input has no channel axis".into()))?;
        if params.iter().any(|p| p.len() != c) {
            return Err(bad(format!("parameters must have {c} values")));
        }
        let scale: Vec<f32> = (0..c)
            .map(|i| params[0][i] / (params[3][i] + eps).sqrt())
            .collect();
        let shift: Vec<f32> = (0..c)
            .map(|i| params[1][i] - params[2][i] * scale[i])
            .collect();
        if self.readers(&node.input[0]) == 1 && self.fold_into_conv(x, &scale, &shift) {
            self.names.insert(out, x);
            return Ok(1);
        }
        let s = self.define(&format!("{out}.scale"), vec![c], Some(scale));
        let t = self.define(&format!("{out}.shift"), vec![c], Some(shift));
        let y = self.define(&out, dims.clone(), None);
        self.push(Step::Eltwise(eltwise(
            x,
            Operand::Affine(s, t),
            y,
            &dims,
            Act::None,
        )));
        Ok(1)
    }

    pub(super) fn binary(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let (node, op) = (at.node, at.node.op_type.as_str());
        let out = at.out.clone();
        let bad = |why: String| at.bad(why);
        let (a, b) = (self.input(at, 0)?, self.input(at, 1)?);
        let (da, db) = (self.buffers[a].dims.clone(), self.buffers[b].dims.clone());
        // The bigger operand is the one the output follows.
        let (x, o, dx, dother) = if da.iter().product::<usize>() >= db.iter().product::<usize>() {
            (a, b, da, db)
        } else {
            (b, a, db, da)
        };
        let numel_o: usize = dother.iter().product();
        if op == "Add" && dother.len() == 1 && dx.last() == dother.first() && dx.len() > 1 {
            if self.bias_into_gemm(at, x, o) {
                return Ok(1);
            }
            return Err(bad("a bias add that no matrix product takes".into()));
        }
        if op == "Add" && dx == dother {
            // A residual into the conv that made one side, if nothing else reads it.
            for (side, other) in [(a, b), (b, a)] {
                let name = &node.input[usize::from(side != a)];
                if self.readers(name) == 1
                    && let Some(&s) = self.producer.get(&side)
                    && let Step::Conv(c) = &mut self.steps[s]
                    && c.residual.is_none()
                    && c.act_after_residual == Act::None
                    && other != side
                    // The other side must exist when the conv runs.
                    && self.producer.get(&other).is_none_or(|&p| p < s)
                {
                    c.residual = Some(other);
                    self.names.insert(out, side);
                    return Ok(1);
                }
            }
        }
        let operand = if dx == dother {
            if op == "Add" {
                Operand::Add(o)
            } else {
                Operand::Mul(o)
            }
        } else if op == "Add"
            && dother.len() == dx.len()
            && dother.first() == Some(&1)
            && dother[1..] == dx[1..]
        {
            Operand::AddRepeat(o, numel_o as u32)
        } else if numel_o == 1 && self.buffers[o].data.is_some() {
            let v = self.buffers[o].data.as_ref().map_or(0.0, |d| d[0]);
            if op == "Add" {
                return Err(bad("adding a scalar has no GPU kernel".into()));
            }
            Operand::Scale(v)
        } else if op == "Mul"
            && dx.len() == 4
            && dother.len() == 4
            && dother[0] == dx[0]
            && dother[1] == dx[1]
            && dother[2] * dother[3] == 1
        {
            Operand::MulChannel(o)
        } else if let Some(per_batch) = self.channel_constant(op, o, &dx) {
            Operand::MulChannel(per_batch)
        } else {
            return Err(bad(format!(
                "shapes {dx:?} and {dother:?}: only equal shapes, a scalar factor or an N x C x 1 x 1 factor run on the GPU"
            )));
        };
        let y = self.define(&out, dx.clone(), None);
        self.push(Step::Eltwise(eltwise(x, operand, y, &dx, Act::None)));
        Ok(1)
    }

    /// A constant per-channel factor shaped `C x 1 x 1` or `1 x C x 1 x 1` (ConvNeXt's layer
    /// scale), as the `N x C x 1 x 1` buffer the channel-multiply kernel reads.
    fn channel_constant(&mut self, op: &str, factor: usize, dx: &[usize]) -> Option<usize> {
        let buffer = &self.buffers[factor];
        let dims: Vec<usize> = buffer
            .dims
            .iter()
            .copied()
            .skip_while(|&d| d == 1)
            .collect();
        let channels = dx.get(1).copied()?;
        if op != "Mul" || dx.len() != 4 || buffer.dims.len() > 4 || dims != [channels, 1, 1][..] {
            return None;
        }
        let data = buffer.data.as_ref()?.repeat(dx[0]);
        let name = format!("{}#per_batch", buffer.name);
        Some(self.define(&name, vec![dx[0], channels, 1, 1], Some(data)))
    }

    pub(super) fn pool(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let (node, op) = (at.node, at.node.op_type.as_str());
        let out = at.out.clone();
        let bad = |why: String| at.bad(why);
        let (x, extra) = match self.padded.get(&node.input[0]) {
            Some(&(src, p)) => (src, p),
            None => (self.input(at, 0)?, [0; 4]),
        };
        let dims = self.buffers[x].dims.clone();
        let [n, c, h, w] = dims4(&dims).map_err(bad)?;
        let k = pair(attr_ints(node, "kernel_shape"), None).map_err(bad)?;
        let stride = pair(attr_ints(node, "strides"), Some(1)).map_err(bad)?;
        let (pad, pad_end) = pads(node).map_err(bad)?;
        let (pad, pad_end) = (
            (pad.0 + extra[0], pad.1 + extra[1]),
            (pad_end.0 + extra[2], pad_end.1 + extra[3]),
        );
        if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return Err(bad("dilations are not supported".into()));
        }
        let ceil = node.attr("ceil_mode").is_some_and(|a| a.i != 0);
        let ho = out_size(h, k.0, stride.0, (pad.0, pad_end.0), ceil).map_err(bad)?;
        let wo = out_size(w, k.1, stride.1, (pad.1, pad_end.1), ceil).map_err(bad)?;
        let y = self.define(&out, vec![n, c, ho as usize, wo as usize], None);
        self.push(Step::Pool(PoolStep {
            x,
            y,
            max: op == "MaxPool",
            count_include_pad: node.attr("count_include_pad").is_some_and(|a| a.i != 0),
            planes: (n * c) as u32,
            h: h as u32,
            w: w as u32,
            ho,
            wo,
            k,
            stride,
            pad,
            act: Act::None,
        }));
        Ok(1)
    }

    pub(super) fn global_pool(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let out = at.out.clone();
        let bad = |why: String| at.bad(why);
        let x = self.input(at, 0)?;
        let dims = self.buffers[x].dims.clone();
        let [n, c, h, w] = dims4(&dims).map_err(bad)?;
        let y = self.define(&out, vec![n, c, 1, 1], None);
        self.push(Step::GlobalAvgPool {
            x,
            y,
            planes: (n * c) as u32,
            hw: (h * w) as u32,
        });
        Ok(1)
    }

    pub(super) fn reduce_mean(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let node = at.node;
        let out = at.out.clone();
        let bad = |why: String| at.bad(why);
        let x = self.input(at, 0)?;
        let dims = self.buffers[x].dims.clone();
        if dims.len() == 3
            && self.ints_attr_or_input(node, "axes", 1).as_deref() == Some(&[1])
            && node.attr("keepdims").is_some_and(|a| a.i == 0)
        {
            return self.token_mean(at, x);
        }
        let [n, c, h, w] = dims4(&dims).map_err(bad)?;
        let mut axes = self.ints_attr_or_input(node, "axes", 1).unwrap_or_default();
        for a in axes.iter_mut() {
            if *a < 0 {
                *a += 4;
            }
        }
        axes.sort_unstable();
        if axes != [2, 3] {
            return Err(bad("only a mean over H and W runs on the GPU".into()));
        }
        let keep = node.attr("keepdims").is_none_or(|a| a.i != 0);
        let ydims = if keep { vec![n, c, 1, 1] } else { vec![n, c] };
        let y = self.define(&out, ydims, None);
        self.push(Step::GlobalAvgPool {
            x,
            y,
            planes: (n * c) as u32,
            hw: (h * w) as u32,
        });
        Ok(1)
    }

    pub(super) fn gemm(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let (node, op) = (at.node, at.node.op_type.as_str());
        let out = at.out.clone();
        let bad = |why: String| at.bad(why);
        let x = self.input(at, 0)?;
        let w = self.input(at, 1)?;
        let mut dx = self.buffers[x].dims.clone();
        let dw = self.buffers[w].dims.clone();
        if op == "MatMul" && dx.len() > 2 {
            if dw.len() != 2 || self.buffers[w].data.is_none() {
                return self.batched_matmul(at, x, w);
            }
            // A weight shared by every row of every batch: one GEMM over all the rows.
            let k = dx[dx.len() - 1];
            dx = vec![dx.iter().product::<usize>() / k.max(1), k];
        }
        if dx.len() != 2 || dw.len() != 2 {
            return Err(bad(format!("2-D operands expected, got {dx:?} and {dw:?}")));
        }
        let flag = |name: &str| node.attr(name).is_some_and(|a| a.i != 0);
        if flag("transA") {
            return Err(bad("transA is not supported".into()));
        }
        let alpha = node.attr("alpha").map_or(1.0, |a| a.f);
        let beta = node.attr("beta").map_or(1.0, |a| a.f);
        if alpha != 1.0 || beta != 1.0 {
            return Err(bad("alpha and beta other than 1 are not supported".into()));
        }
        let trans_b = op == "Gemm" && flag("transB");
        let (n_out, k_w) = if trans_b {
            (dw[0], dw[1])
        } else {
            (dw[1], dw[0])
        };
        if k_w != dx[1] {
            return Err(bad(format!("{} input features, weight has {k_w}", dx[1])));
        }
        let b = match node.input.get(2).filter(|s| !s.is_empty()) {
            Some(_) => {
                let b = self.input(at, 2)?;
                if self.buffers[b].numel() != n_out {
                    return Err(bad(format!("bias must have {n_out} values")));
                }
                Some(b)
            }
            None => None,
        };
        let mut ydims = self.buffers[x].dims.clone();
        if op == "Gemm" || ydims.len() < 2 {
            ydims = vec![dx[0], n_out];
        } else if let Some(last) = ydims.last_mut() {
            *last = n_out;
        }
        let y = self.define(&out, ydims, None);
        self.push(Step::Gemm(GemmStep {
            x,
            w,
            b,
            y,
            m: dx[0] as u32,
            k: dx[1] as u32,
            n: n_out as u32,
            trans_b,
            act: Act::None,
        }));
        Ok(1)
    }

    pub(super) fn softmax(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let node = at.node;
        let out = at.out.clone();
        let bad = |why: String| at.bad(why);
        let x = self.input(at, 0)?;
        let dims = self.buffers[x].dims.clone();
        let axis = node.attr("axis").map_or(-1, |a| a.i);
        let last = dims.len() as i64 - 1;
        if axis != -1 && axis != last {
            return Err(bad(
                "only a Softmax over the last axis runs on the GPU".into()
            ));
        }
        let cols = dims.last().copied().unwrap_or(1).max(1);
        let y = self.define(&out, dims.clone(), None);
        self.push(Step::Softmax {
            x,
            y,
            rows: (dims.iter().product::<usize>() / cols) as u32,
            cols: cols as u32,
        });
        Ok(1)
    }

    fn conv(&mut self, node: &NodeProto, out: &str) -> Result<(), String> {
        let xname = node.input.first().ok_or("no input")?;
        let extra = self.padded.get(xname).map_or([0; 4], |p| p.1);
        let (x, pre_act) = match (self.deferred.remove(xname), self.padded.get(xname)) {
            (Some((src, act)), _) => (src, act),
            (None, Some(&(src, _))) => (src, Act::None),
            (None, None) => (
                self.lookup(xname)
                    .ok_or(format!("reads `{xname}`, which nothing produced"))?,
                Act::None,
            ),
        };
        let wname = node.input.get(1).ok_or("no weight")?;
        let w = self
            .lookup(wname)
            .ok_or(format!("weight `{wname}` is missing"))?;
        let b = match node.input.get(2).filter(|s| !s.is_empty()) {
            Some(n) => Some(self.lookup(n).ok_or(format!("bias `{n}` is missing"))?),
            None => None,
        };
        let [n, cin, h, wi] = dims4(&self.buffers[x].dims)?;
        let [cout, cin_g, kh, kw] = dims4(&self.buffers[w].dims)?;
        let groups = node.attr("group").map_or(1, |a| a.i).max(1) as usize;
        if cin_g * groups != cin || cout % groups != 0 {
            return Err(format!(
                "{cin} input channels and {cout} outputs do not split into {groups} groups of weight {:?}",
                self.buffers[w].dims
            ));
        }
        if b.is_some_and(|b| self.buffers[b].numel() != cout) {
            return Err(format!("bias must have {cout} values"));
        }
        let dilation = pair(attr_ints(node, "dilations"), Some(1))?;
        if node
            .attr("auto_pad")
            .is_some_and(|a| !a.s.is_empty() && a.s != b"NOTSET")
        {
            return Err("auto_pad is not supported; write explicit pads".into());
        }
        let stride = pair(attr_ints(node, "strides"), Some(1))?;
        let (pad, pad_end) = pads(node)?;
        let (pad, pad_end) = (
            (pad.0 + extra[0], pad.1 + extra[1]),
            (pad_end.0 + extra[2], pad_end.1 + extra[3]),
        );
        let span = |k: usize, d: u32| d * (k as u32 - 1) + 1;
        let ho = out_size(h, span(kh, dilation.0), stride.0, (pad.0, pad_end.0), false)?;
        let wo = out_size(
            wi,
            span(kw, dilation.1),
            stride.1,
            (pad.1, pad_end.1),
            false,
        )?;
        let y = self.define(out, vec![n, cout, ho as usize, wo as usize], None);
        self.push(Step::Conv(ConvStep {
            x,
            w,
            b,
            y,
            residual: None,
            n: n as u32,
            cin: cin as u32,
            h: h as u32,
            w_in: wi as u32,
            cout: cout as u32,
            ho,
            wo,
            kh: kh as u32,
            kw: kw as u32,
            stride,
            dilation,
            pad,
            groups: groups as u32,
            pre_act,
            act: Act::None,
            act_after_residual: Act::None,
        }));
        Ok(())
    }

    /// Fold `y = x * scale[c] + shift[c]` into the conv that wrote `x`, when that conv has no
    /// epilogue yet. Weights are copied, so a weight shared with another conv is left intact.
    fn fold_into_conv(&mut self, x: usize, scale: &[f32], shift: &[f32]) -> bool {
        let Some(&s) = self.producer.get(&x) else {
            return false;
        };
        let Step::Conv(c) = &self.steps[s] else {
            return false;
        };
        if c.act != Act::None || c.residual.is_some() || c.act_after_residual != Act::None {
            return false;
        }
        let (w, b, cout) = (c.w, c.b, c.cout as usize);
        let Some(wdata) = self.buffers[w].data.clone() else {
            return false;
        };
        let per_out = wdata.len() / cout;
        let folded: Vec<f32> = wdata
            .iter()
            .enumerate()
            .map(|(i, &v)| v * scale[i / per_out])
            .collect();
        let bias: Vec<f32> = (0..cout)
            .map(|o| {
                let b0 = b
                    .and_then(|b| self.buffers[b].data.as_ref().map(|d| d[o]))
                    .unwrap_or(0.0);
                b0 * scale[o] + shift[o]
            })
            .collect();
        let wdims = self.buffers[w].dims.clone();
        let name = self.buffers[w].name.clone();
        let new_w = self.define(&format!("{name}.bn"), wdims, Some(folded));
        let new_b = self.define(&format!("{name}.bn_bias"), vec![cout], Some(bias));
        if let Step::Conv(c) = &mut self.steps[s] {
            c.w = new_w;
            c.b = Some(new_b);
        }
        true
    }
}
