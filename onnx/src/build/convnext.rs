//! ConvNeXt's ops as torchvision's `convnext_*` export them (opset 17): the channel LayerNorm
//! as Transpose(0, 2, 3, 1), LayerNormalization over the last axis, Transpose(0, 3, 1, 2); the
//! block as its depthwise Conv, that Transpose, LayerNorm, the MLP as MatMul + Add, exact
//! GELU, MatMul + Add, the Transpose back, Mul by the layer scale, and the residual Add.

use hwnas_core::op::{CnBlock, Op};

use super::GraphBuilder;
use crate::proto::AttributeProto;

impl GraphBuilder {
    /// The nodes of a ConvNeXt op reading `x`; returns its output.
    pub(super) fn convnext_op(&mut self, x: &str, op: &Op) -> String {
        match op {
            Op::ChannelNorm(t) => {
                let h = self.permute(x, &[0, 2, 3, 1]);
                let h = self.layer_norm(&h, t.c);
                self.permute(&h, &[0, 3, 1, 2])
            }
            Op::CnBlock(b) => self.cnblock(x, b),
            other => unreachable!("`{other}` is not a ConvNeXt op"),
        }
    }

    fn permute(&mut self, x: &str, perm: &[i64]) -> String {
        self.node("Transpose", &[x], vec![AttributeProto::ints("perm", perm)])
    }

    fn cnblock(&mut self, x: &str, b: &CnBlock) -> String {
        let c = b.input.c;
        let h = self.conv(x, &b.dwconv());
        let h = self.permute(&h, &[0, 2, 3, 1]);
        let h = self.layer_norm(&h, c);
        let h = self.mlp(&h, &b.mlp());
        let h = self.permute(&h, &[0, 3, 1, 2]);
        // torchvision initialises the layer scale to 1e-6; values near 1 keep the block's
        // output away from its input in conformance checks.
        let gamma: Vec<f32> = (0..c).map(|_| 0.5 + self.rng.uniform(0.25)).collect();
        let gamma = self.constant(&[c as i64, 1, 1], &gamma);
        let h = self.node("Mul", &[&gamma, &h], vec![]);
        self.node("Add", &[&h, x], vec![])
    }
}
