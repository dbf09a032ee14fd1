//! ConvNeXt as `torch.onnx.export` writes torchvision's `convnext_*`: a feature map transposed
//! to channels-last, LayerNorm over its channels, and then either
//!
//! | ONNX | op |
//! |---|---|
//! | Transpose(0, 3, 1, 2) | `ln2d` (the stem's, downsampling layers' and head's norm) |
//! | the MLP, Transpose back, Mul by the layer scale, Add of the input of the depthwise conv before | `cnblock` (with that conv) |
//!
//! The block is found as the transformer sub-layers are: every node from the LayerNorm's
//! output to the Add that joins the residual stream, an MLP by its two linear layers.

use hwnas_core::network::Value;
use hwnas_core::op::{Activation, CnBlock, Op, Tensor};

use super::mapper::{At, Mapper, Problem, unmapped};
use super::node_name;
use super::regions::{consumers, norm_at, region};
use super::tokens::Sublayer;

impl<'g> Mapper<'g> {
    /// Transpose(0, 2, 3, 1) of feature map `x`: the start of a channel LayerNorm or of a
    /// ConvNeXt block.
    pub(super) fn channels_last(
        &mut self,
        at: &At<'_, 'g>,
        x: Value,
        shape: Tensor,
    ) -> Result<usize, Problem> {
        let consumers = consumers(at.nodes);
        let is_const =
            |name: &str| matches!(self.vals.get(name), Some(super::mapper::Val::Const(_)));
        let norm = match consumers.get(at.out).map(Vec::as_slice) {
            Some(&[j]) => norm_at(at.nodes, j, &consumers, &is_const),
            _ => None,
        };
        let Some(norm) = norm else {
            return unmapped("a Transpose to channels-last not followed by a LayerNorm alone");
        };
        let back = |j: usize| {
            let n = at.nodes[j];
            n.op_type == "Transpose" && n.attr("perm").is_some_and(|p| p.ints[..] == [0, 3, 1, 2])
        };
        if let Some(&[j]) = consumers.get(norm.out).map(Vec::as_slice)
            && back(j)
        {
            let mut names = vec![at.name.clone()];
            names.extend(self.claim_norm(at.nodes, &norm));
            self.claimed.insert(j);
            names.push(node_name(at.nodes[j], j));
            let v = self.push(Op::ChannelNorm(shape), &[x], names)?;
            self.act_val(at.nodes[j].output[0].as_str(), v, shape);
            return Ok(1);
        }
        let Some((conv_input, residual, kernel)) = self.depthwise_before(at, x, shape) else {
            return unmapped(
                "a LayerNorm on a channels-last feature map that is neither transposed back \
                 (`ln2d`) nor in a block after a depthwise convolution (`cnblock`, ConvNeXt's)",
            );
        };
        let region = region(at.nodes, &[norm.out], residual, &consumers)
            .filter(|r| r.nodes.iter().any(|&j| back(j)));
        let mlp = region
            .as_ref()
            .and_then(|r| self.classify(at.nodes, r, shape.c));
        let (Some(region), Some(Sublayer::Mlp { hidden })) = (region, mlp) else {
            return unmapped("a channels-last LayerNorm whose block is not ConvNeXt's");
        };
        let block = Op::CnBlock(CnBlock {
            input: shape,
            hidden,
            k: kernel,
        });
        // The depthwise conv becomes the block's first step.
        self.network.nodes.pop();
        let mut names = self.layers.pop().unwrap_or_default();
        names.push(at.name.clone());
        names.extend(self.claim_norm(at.nodes, &norm));
        names.extend(self.claim(at.nodes, &region));
        let v = self.push(block, &[conv_input], names)?;
        self.act_val(at.nodes[region.add].output[0].as_str(), v, shape);
        Ok(1)
    }

    /// The depthwise `k x k` convolution (stride 1, "same", no activation) that made `x`, when
    /// it is the last op so far and nothing else reads it: its input, that input's ONNX name
    /// (the residual a block rejoins), and `k`.
    fn depthwise_before(
        &self,
        at: &At<'_, 'g>,
        x: Value,
        shape: Tensor,
    ) -> Option<(Value, &'g str, u32)> {
        let Value::Node(k) = x else { return None };
        let node = &self.network.nodes[k];
        let Op::Conv(c) = node.op else { return None };
        let depthwise = k + 1 == self.network.nodes.len()
            && c.groups == shape.c
            && c.cout == shape.c
            && c.stride == 1
            && c.kw.is_none()
            && c.dilation == 1
            && c.pad.is_none()
            && c.k % 2 == 1
            && c.pre_act == Activation::None
            && c.act == Activation::None
            && self.readers(&at.node.input[0]) == 1;
        let made_by = at
            .nodes
            .iter()
            .find(|n| n.output.first() == at.node.input.first())?;
        let residual = made_by.input.first()?.as_str();
        depthwise.then_some((*node.inputs.first()?, residual, c.k))
    }
}
