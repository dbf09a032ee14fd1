//! Transformer layers as `torch.onnx.export` writes them (opsets 17–21), mapped to the token
//! ops:
//!
//! | ONNX | op |
//! |---|---|
//! | Reshape `N x C x H x W` → `N x C x HW`, Transpose(0, 2, 1) | `tokens` |
//! | Conv (`k x k`, stride `k`) → `tokens` (→ Concat of a class token) (→ Add of a position embedding) | `patch` |
//! | LayerNormalization → attention → Add(residual) → LayerNormalization → MLP → Add(residual) | `encoder` |
//! | LayerNormalization → attention → Add(residual), or → MLP → Add(residual) | `ln`, then `mhsa` or `mlp`, and `add` |
//! | attention → Add(residual), or MLP → Add(residual), the LayerNorm after it (post-norm) | `mhsa` or `mlp`, and `add` (then `ln`) |
//! | LayerNormalization | `ln` |
//! | Gather(axis 1, index 0) of tokens | `cls` |
//! | ReduceMean over the tokens (axis 1) | `tokmean` |
//!
//! A sub-layer is found as a region: every node reachable from its LayerNorm's output up to
//! the Add that joins it with the residual stream. Whatever nodes the exporter wrote inside
//! (nn.MultiheadAttention's transposes and squeezes, timm's packed QKV and gathers,
//! `scaled_dot_product_attention`'s scaled MatMuls, GELU as Erf or Tanh) its size is read from
//! its weights: the projections before the Softmax give the attention width, the one after
//! it gives the output, the heads come from the per-head reshape, and a region without a
//! Softmax but with two linear layers is the MLP.

use std::collections::HashMap;

use hwnas_core::network::Value;
use hwnas_core::op::{Encoder, Mhsa, Mlp, Op, PatchEmbed, Tensor};

use super::fold::{self, Constant};
use super::mapper::{At, Mapper, Problem, Val, unmapped};
use super::node_name;
use super::regions::{Norm, Region, consumers, norm_at, region};
use crate::proto::NodeProto;

/// What a sub-layer computes.
pub(super) enum Sublayer {
    Attention { heads: u32, head_dim: u32 },
    Mlp { hidden: u32 },
}

/// The op of a sub-layer on tokens `shape`.
fn sublayer_op(kind: Sublayer, shape: Tensor) -> Op {
    match kind {
        Sublayer::Attention { heads, head_dim } => Op::Mhsa(Mhsa {
            input: shape,
            heads,
            head_dim,
        }),
        Sublayer::Mlp { hidden } => Op::Mlp(Mlp {
            input: shape,
            hidden,
        }),
    }
}

impl<'g> Mapper<'g> {
    /// `N x C x H x W` seen as `N x C x HW` (the first step of `flatten(2).transpose(1, 2)`).
    pub(super) fn sequence_view(&mut self, at: &At<'_, 'g>, value: Value, shape: Tensor) {
        let sole = self.readers(&at.node.input[0]) == 1;
        self.set(at.out, Val::Seq { value, shape, sole });
    }

    /// Transpose(0, 2, 1) of a sequence view: the pixels as tokens; with the strided conv
    /// that made them, a patch embedding.
    pub(super) fn tokens_from_pixels(
        &mut self,
        at: &At<'_, 'g>,
        (value, shape, sole): (Value, Tensor, bool),
    ) -> Result<usize, Problem> {
        let tokens = Op::ToTokens(shape).output();
        if let Value::Node(k) = value
            && sole
            && k + 1 == self.network.nodes.len()
            && let Op::Conv(c) = self.network.nodes[k].op
            && c.k == c.stride
            && c.kw.is_none()
            && c.groups == 1
            && c.dilation == 1
            && c.pads() == (0, 0)
            && c.pre_act == hwnas_core::op::Activation::None
            && c.act == hwnas_core::op::Activation::None
        {
            self.network.nodes[k].op = Op::Patch(PatchEmbed {
                input: c.input,
                cout: c.cout,
                patch: c.k,
                cls: false,
            });
            self.layers[k].push(at.name.clone());
            self.act_val(at.out, value, tokens);
            return Ok(1);
        }
        let v = self.push(Op::ToTokens(shape), &[value], vec![at.name.clone()])?;
        self.act_val(at.out, v, tokens);
        Ok(1)
    }

    /// The patch embedding that made `value`, if it is the last op so far.
    fn patch_at(&self, value: Value) -> Option<(usize, PatchEmbed)> {
        match value {
            Value::Node(k) if k + 1 == self.network.nodes.len() => match self.network.nodes[k].op {
                Op::Patch(p) => Some((k, p)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Concat(axis 1) of a learned class token and a patch embedding's tokens: the patch
    /// embedding gains its class token. `None` when the node is not that.
    pub(super) fn class_token_concat(&mut self, at: &At<'_, 'g>) -> Option<usize> {
        let [first, second] = &at.node.input[..] else {
            return None;
        };
        if !matches!(
            self.vals.get(first.as_str()),
            Some(Val::Const(_) | Val::Opaque)
        ) {
            return None;
        }
        let Some(Val::Act { value, shape, .. }) = self.vals.get(second.as_str()).cloned() else {
            return None;
        };
        let (k, p) = self
            .patch_at(value)
            .filter(|(_, p)| !p.cls && shape.is_tokens())?;
        let with_cls = PatchEmbed { cls: true, ..p };
        self.network.nodes[k].op = Op::Patch(with_cls);
        self.layers[k].push(at.name.clone());
        self.act_val(at.out, value, with_cls.output());
        Some(1)
    }

    /// Add of a constant to tokens: a position embedding, part of the patch embedding that
    /// made the tokens (or an add of its own after any other op).
    pub(super) fn position_embedding(&mut self, at: &At<'_, 'g>) -> Option<usize> {
        let [a, b] = &at.node.input[..] else {
            return None;
        };
        let (tokens, other) = match self.vals.get(a.as_str()) {
            Some(Val::Act { .. }) => (a, b),
            _ => (b, a),
        };
        if !matches!(self.vals.get(other.as_str()), Some(Val::Const(_))) {
            return None;
        }
        let Some(Val::Act { value, shape, .. }) = self.vals.get(tokens.as_str()).cloned() else {
            return None;
        };
        if !shape.is_tokens() {
            return None;
        }
        if let Some((k, _)) = self.patch_at(value) {
            self.layers[k].push(at.name.clone());
            self.act_val(at.out, value, shape);
            return Some(1);
        }
        // Elsewhere (a hybrid's pixels as tokens) it is an add kernel of its own, reading a
        // constant as large as the tokens: timed as an add of two activations.
        let v = self
            .push(Op::Add(shape), &[value, value], vec![at.name.clone()])
            .ok()?;
        self.act_val(at.out, v, shape);
        Some(1)
    }

    /// A LayerNorm on tokens (one node, or written out from its first ReduceMean): a whole
    /// encoder block when the graph has one here, else the sub-layer it starts, else the
    /// LayerNorm alone.
    pub(super) fn layer_norm(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let (x, shape) = match self.get(at.node, 0)? {
            Val::Act { value, shape, .. } if shape.is_tokens() => (*value, *shape),
            Val::Unknown => return unmapped("reads the output of an unmapped node"),
            _ => return unmapped("a LayerNormalization of something other than tokens"),
        };
        let consumers = consumers(at.nodes);
        let is_const = |name: &str| matches!(self.vals.get(name), Some(Val::Const(_)));
        let Some(norm) = norm_at(at.nodes, at.i, &consumers, &is_const) else {
            return unmapped("a ReduceMean over the channels of tokens that is not a LayerNorm");
        };
        let residual = at.node.input[0].as_str();
        let Some((first, kind)) = self.sublayer(at, norm.out, residual, &consumers, shape) else {
            let names = self.claim_norm(at.nodes, &norm);
            let v = self.push(Op::LayerNorm(shape), &[x], names)?;
            self.act_val(norm.out, v, shape);
            return Ok(1);
        };
        let mid = at.nodes[first.add].output[0].as_str();
        let second_norm = consumers
            .get(mid)
            .into_iter()
            .flatten()
            .find_map(|&j| norm_at(at.nodes, j, &consumers, &is_const));
        let second = second_norm
            .as_ref()
            .and_then(|n| self.sublayer(at, n.out, mid, &consumers, shape));
        match (kind, second, second_norm) {
            (
                Sublayer::Attention { heads, head_dim },
                Some((region, Sublayer::Mlp { hidden })),
                Some(norm2),
            ) => {
                let op = Op::Encoder(Encoder {
                    input: shape,
                    heads,
                    head_dim,
                    hidden,
                });
                let mut names = self.claim_norm(at.nodes, &norm);
                names.extend(self.claim(at.nodes, &first));
                names.extend(self.claim_norm(at.nodes, &norm2));
                names.extend(self.claim(at.nodes, &region));
                let v = self.push(op, &[x], names)?;
                let out = at.nodes[region.add].output[0].as_str();
                self.act_val(out, v, shape);
            }
            (kind, ..) => self.sublayer_ops(at, (x, shape), &norm, &first, kind)?,
        }
        Ok(1)
    }

    /// A sub-layer that starts at tokens `x` themselves and rejoins them (`x + f(x)`, with the
    /// LayerNorm after the Add: a post-norm block, torch's `nn.TransformerEncoderLayer` by
    /// default): `mhsa` or `mlp` and its `add`, the LayerNorm left to its own node. Tried at
    /// `nodes[i]`, the first node reading `x`; `None` when no such sub-layer starts there.
    pub(super) fn post_norm_sublayer(
        &mut self,
        nodes: &[&'g NodeProto],
        i: usize,
    ) -> Option<Result<usize, Problem>> {
        let node = nodes[i];
        // A LayerNorm reading x starts a pre-norm sub-layer instead (`layer_norm`).
        if matches!(node.op_type.as_str(), "LayerNormalization" | "ReduceMean") {
            return None;
        }
        // A cheap test first (most nodes read no tokens): the consumer map `tokens_read` needs
        // costs a pass over the whole graph, and this runs for every node.
        let reads_tokens = node
            .input
            .iter()
            .any(|name| match self.vals.get(name.as_str()) {
                Some(Val::Act { shape, .. }) => shape.is_tokens() && self.readers(name) >= 2,
                Some(Val::Seq { .. }) => true,
                _ => false,
            });
        if !reads_tokens {
            return None;
        }
        let consumers = consumers(nodes);
        let (name, starts) = node
            .input
            .iter()
            .find_map(|input| self.tokens_read(nodes, input, &consumers))?;
        let Some(Val::Act {
            value: x, shape, ..
        }) = self.vals.get(name).cloned()
        else {
            return None;
        };
        let residual_add = consumers
            .get(name)?
            .iter()
            .any(|&j| j != i && nodes[j].op_type == "Add");
        if !residual_add {
            return None;
        }
        let mut region = region(nodes, &starts, name, &consumers)?;
        if !region.nodes.contains(&i) {
            return None;
        }
        // Nodes before this one were mapped already: the transpose that made the tokens from
        // the feature map, a Shape of the tokens.
        region.nodes.retain(|&j| j >= i);
        let kind = self.classify(nodes, &region, shape.c)?;
        let out = nodes[region.add].output.first()?.as_str();
        let op = sublayer_op(kind, shape);
        let mut names = self.claim(nodes, &region);
        let add_name = names.pop().expect("a region ends at its Add");
        let pushed = self.push(op, &[x], names).and_then(|y| {
            let sum = self.push(Op::Add(shape), &[y, x], vec![add_name])?;
            self.act_val(out, sum, shape);
            Ok(1)
        });
        Some(pushed)
    }

    /// The tokens `input` is (when read more than once), or the tokens it was transposed into
    /// (torch writes `nn.MultiheadAttention`'s own transpose straight from the feature map
    /// before `flatten(2).transpose(1, 2)`): their name, and the values a sub-layer on them
    /// may start from.
    fn tokens_read(
        &self,
        nodes: &[&'g NodeProto],
        input: &'g str,
        consumers: &HashMap<&str, Vec<usize>>,
    ) -> Option<(&'g str, Vec<&'g str>)> {
        // Read by the sub-layer and by the residual Add, or by the Add alone (the sub-layer
        // reads the feature map).
        let is_tokens = |name: &str, readers: usize| {
            matches!(self.vals.get(name), Some(Val::Act { shape, .. }) if shape.is_tokens())
                && self.readers(name) >= readers
        };
        match self.vals.get(input)? {
            Val::Act { .. } if is_tokens(input, 2) => Some((input, vec![input])),
            Val::Seq { .. } => consumers.get(input)?.iter().find_map(|&j| {
                let out = nodes[j].output.first()?.as_str();
                (nodes[j].op_type == "Transpose" && is_tokens(out, 1))
                    .then(|| (out, vec![out, input]))
            }),
            _ => None,
        }
    }

    /// Marks a LayerNorm's nodes as mapped; returns their names.
    pub(super) fn claim_norm(&mut self, nodes: &[&NodeProto], norm: &Norm<'_>) -> Vec<String> {
        norm.nodes
            .iter()
            .map(|&j| {
                self.claimed.insert(j);
                node_name(nodes[j], j)
            })
            .collect()
    }

    /// LayerNorm, one sub-layer and its residual Add, as three ops.
    fn sublayer_ops(
        &mut self,
        at: &At<'_, 'g>,
        (x, shape): (Value, Tensor),
        norm: &Norm<'_>,
        region: &Region,
        kind: Sublayer,
    ) -> Result<(), Problem> {
        let names = self.claim_norm(at.nodes, norm);
        let ln = self.push(Op::LayerNorm(shape), &[x], names)?;
        let op = sublayer_op(kind, shape);
        let mut names = self.claim(at.nodes, region);
        let add_name = names.pop().expect("a region ends at its Add");
        let y = self.push(op, &[ln], names)?;
        let sum = self.push(Op::Add(shape), &[y, x], vec![add_name])?;
        let out = at.nodes[region.add].output[0].as_str();
        self.act_val(out, sum, shape);
        Ok(())
    }

    /// Marks a region's nodes (and its Add) as mapped; returns their names, the Add last.
    pub(super) fn claim(&mut self, nodes: &[&NodeProto], region: &Region) -> Vec<String> {
        let mut names = Vec::with_capacity(region.nodes.len() + 1);
        for &j in region.nodes.iter().chain([&region.add]) {
            self.claimed.insert(j);
            names.push(node_name(nodes[j], j));
        }
        names
    }

    /// The sub-layer that starts at a LayerNorm's output `start`, rejoining the residual stream
    /// `residual`, and what it computes; `None` when there is none.
    fn sublayer(
        &self,
        at: &At<'_, 'g>,
        start: &str,
        residual: &str,
        consumers: &HashMap<&str, Vec<usize>>,
        shape: Tensor,
    ) -> Option<(Region, Sublayer)> {
        let region = region(at.nodes, &[start], residual, consumers)?;
        let kind = self.classify(at.nodes, &region, shape.c)?;
        Some((region, kind))
    }

    /// Attention or MLP, from the region's weights and reshapes.
    pub(super) fn classify(
        &self,
        nodes: &[&NodeProto],
        region: &Region,
        c: u32,
    ) -> Option<Sublayer> {
        let softmax = region
            .nodes
            .iter()
            .position(|&j| nodes[j].op_type == "Softmax");
        let linears: Vec<(usize, i64, i64)> = region
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(pos, &j)| Some((pos, self.linear_dims(nodes[j])?)))
            .map(|(pos, (cin, cout))| (pos, cin, cout))
            .collect();
        let Some(s) = softmax else {
            let [(_, cin, hidden), (_, hin, cout)] = linears[..] else {
                return None;
            };
            let ok = cin == c as i64 && hin == hidden && cout == c as i64;
            return ok.then_some(Sublayer::Mlp {
                hidden: u32::try_from(hidden).ok()?,
            });
        };
        let qkv: i64 = linears
            .iter()
            .filter(|(pos, cin, _)| *pos < s && *cin == c as i64)
            .map(|(_, _, cout)| cout)
            .sum();
        let after: Vec<_> = linears.iter().filter(|(pos, ..)| *pos > s).collect();
        let width = qkv / 3;
        let [(_, win, wout)] = after[..] else {
            return None;
        };
        if qkv % 3 != 0 || *win != width || *wout != c as i64 {
            return None;
        }
        let head_dim = self.head_dim(nodes, region, width)?;
        Some(Sublayer::Attention {
            heads: u32::try_from(width / head_dim).ok()?,
            head_dim: u32::try_from(head_dim).ok()?,
        })
    }

    /// `(in, out)` features of a MatMul or Gemm with a constant 2-D weight.
    fn linear_dims(&self, node: &NodeProto) -> Option<(i64, i64)> {
        if !matches!(node.op_type.as_str(), "MatMul" | "Gemm") {
            return None;
        }
        let Some(Val::Const(w)) = self.vals.get(node.input.get(1)?.as_str()) else {
            return None;
        };
        let [a, b] = w.dims[..] else {
            return None;
        };
        let trans_b = node.op_type == "Gemm" && node.attr("transB").is_some_and(|t| t.i != 0);
        Some(if trans_b { (b, a) } else { (a, b) })
    }

    /// The per-head width: the last dimension of the reshapes that split the attention
    /// width into heads (the most common one that divides it and is smaller).
    fn head_dim(&self, nodes: &[&NodeProto], region: &Region, width: i64) -> Option<i64> {
        let mut counts: HashMap<i64, usize> = HashMap::new();
        for &j in &region.nodes {
            let node = nodes[j];
            if node.op_type != "Reshape" {
                continue;
            }
            let target = node.input.get(1).and_then(|t| self.constant(nodes, t));
            if let Some(&last) = target.as_ref().and_then(|t| t.int_values()?.last())
                && last > 1
                && last < width
                && width % last == 0
            {
                *counts.entry(last).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|&(d, n)| (n, d))
            .map(|(d, _)| d)
    }

    /// A constant by name: known already, or the value of the Constant node that makes it
    /// (the walk has not reached the nodes inside a region yet).
    fn constant(&self, nodes: &[&NodeProto], name: &str) -> Option<Constant> {
        if let Some(Val::Const(c)) = self.vals.get(name) {
            return Some(c.clone());
        }
        let node = nodes
            .iter()
            .find(|n| n.op_type == "Constant" && n.output.first().is_some_and(|o| o == name))?;
        fold::fold(node, &[]).into_iter().next().flatten()
    }

    /// Gather(axis 1) of one token: the class token, `N x C`.
    pub(super) fn gather(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let (value, shape) = match self.get(at.node, 0)? {
            Val::Act { value, shape, .. } if shape.is_tokens() => (*value, *shape),
            _ => return unmapped("a Gather from an activation other than tokens"),
        };
        let index = match self.get(at.node, 1)? {
            Val::Const(c) if c.dims.is_empty() => c.int_values().map(<[i64]>::to_vec),
            _ => None,
        };
        if at.node.attr("axis").map_or(0, |a| a.i) != 1 || index.as_deref() != Some(&[0]) {
            return unmapped("a Gather other than of the first token (the class token)");
        }
        let v = self.push(Op::ClassToken(shape), &[value], vec![at.name.clone()])?;
        let (n, f) = (shape.n, shape.c);
        self.set(at.out, Val::Flat { value: v, n, f });
        Ok(1)
    }

    /// ReduceMean over the tokens: the mean token, `N x C`.
    pub(super) fn token_mean(
        &mut self,
        at: &At<'_, 'g>,
        value: Value,
        shape: Tensor,
    ) -> Result<usize, Problem> {
        let v = self.push(Op::TokenMean(shape), &[value], vec![at.name.clone()])?;
        let (n, f) = (shape.n, shape.c);
        self.set(at.out, Val::Flat { value: v, n, f });
        Ok(1)
    }
}
