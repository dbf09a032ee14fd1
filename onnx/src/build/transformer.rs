//! The transformer ops as `torch.onnx.export` (opset 17) writes them: a Linear on tokens as
//! MatMul + Add, LayerNormalization as one node, GELU as `x * (1 + erf(x / sqrt 2)) / 2`, and
//! attention as timm and AutoFormer write it (a packed QKV projection, reshaped, transposed and
//! split per head, `softmax(Q K^T * scale) V`), so that ONNX Runtime fuses these graphs as it
//! fuses the same layers of a real export (Gemm, Gelu, FusedMatMul; see the README).

use hwnas_core::op::{Encoder, Mhsa, Mlp, Op, PatchEmbed, Tensor};

use super::GraphBuilder;
use crate::proto::AttributeProto;

/// LayerNorm's epsilon in torchvision's and timm's ViTs.
const LAYER_NORM_EPSILON: f32 = 1e-6;

impl GraphBuilder {
    /// The nodes of a transformer op reading `x`; returns its output.
    pub(super) fn transformer_op(&mut self, x: &str, op: &Op) -> String {
        match op {
            Op::Patch(p) => self.patch_embed(x, p),
            Op::LayerNorm(t) => self.layer_norm(x, t.c),
            Op::Mhsa(m) => self.attention(x, m),
            Op::Mlp(m) => self.mlp(x, m),
            Op::Encoder(e) => self.encoder(x, e),
            Op::ClassToken(_) => self.class_token(x),
            Op::ToTokens(t) => self.tokens_of(x, t),
            Op::TokenMean(_) => self.token_mean(x),
            other => unreachable!("`{other}` is not a transformer op"),
        }
    }

    /// A Linear layer on the last axis of `x`: `x W + b`, `W` stored `[cin, cout]` as torch
    /// exports it.
    fn token_linear(&mut self, x: &str, cin: u32, cout: u32) -> String {
        let w = self.weight(&[cin as i64, cout as i64], cin);
        let b = self.weight(&[cout as i64], cin);
        let y = self.node("MatMul", &[x, &w], vec![]);
        self.node("Add", &[&b, &y], vec![])
    }

    pub(super) fn layer_norm(&mut self, x: &str, c: u32) -> String {
        let c = c as usize;
        let scale: Vec<f32> = (0..c).map(|_| 1.0 + self.rng.uniform(0.2)).collect();
        let shift: Vec<f32> = (0..c).map(|_| self.rng.uniform(0.2)).collect();
        let scale = self.constant(&[c as i64], &scale);
        let shift = self.constant(&[c as i64], &shift);
        self.node(
            "LayerNormalization",
            &[x, &scale, &shift],
            vec![
                AttributeProto::int("axis", -1),
                AttributeProto::float("epsilon", LAYER_NORM_EPSILON),
            ],
        )
    }

    /// Exact GELU as torch exports `nn.GELU()`.
    fn gelu(&mut self, x: &str) -> String {
        let sqrt2 = self.constant(&[], &[std::f32::consts::SQRT_2]);
        let one = self.constant(&[], &[1.0]);
        let half = self.constant(&[], &[0.5]);
        let d = self.node("Div", &[x, &sqrt2], vec![]);
        let e = self.node("Erf", &[&d], vec![]);
        let a = self.node("Add", &[&e, &one], vec![]);
        let m = self.node("Mul", &[x, &a], vec![]);
        self.node("Mul", &[&m, &half], vec![])
    }

    pub(super) fn mlp(&mut self, x: &str, m: &Mlp) -> String {
        let h = self.token_linear(x, m.input.c, m.hidden);
        let h = self.gelu(&h);
        self.token_linear(&h, m.hidden, m.input.c)
    }

    fn attention(&mut self, x: &str, m: &Mhsa) -> String {
        let t = m.input;
        let (n, l, a) = (t.n as i64, t.seq_len() as i64, m.width() as i64);
        let (h, hd) = (m.heads as i64, m.head_dim as i64);
        let qkv = self.token_linear(x, t.c, 3 * m.width());
        let split = self.int64_constant(&[n, l, 3, h, hd]);
        let qkv = self.node("Reshape", &[&qkv, &split], vec![]);
        let qkv = self.node(
            "Transpose",
            &[&qkv],
            vec![AttributeProto::ints("perm", &[2, 0, 3, 1, 4])],
        );
        let [q, k, v] = [0, 1, 2].map(|i| {
            let index = self.int64_scalar(i);
            self.node(
                "Gather",
                &[&qkv, &index],
                vec![AttributeProto::int("axis", 0)],
            )
        });
        let kt = self.node(
            "Transpose",
            &[&k],
            vec![AttributeProto::ints("perm", &[0, 1, 3, 2])],
        );
        let scores = self.node("MatMul", &[&q, &kt], vec![]);
        let scale = self.constant(&[], &[1.0 / (m.head_dim as f32).sqrt()]);
        let scores = self.node("Mul", &[&scores, &scale], vec![]);
        let p = self.node("Softmax", &[&scores], vec![AttributeProto::int("axis", -1)]);
        let o = self.node("MatMul", &[&p, &v], vec![]);
        let o = self.node(
            "Transpose",
            &[&o],
            vec![AttributeProto::ints("perm", &[0, 2, 1, 3])],
        );
        let merged = self.int64_constant(&[n, l, a]);
        let o = self.node("Reshape", &[&o, &merged], vec![]);
        self.token_linear(&o, m.width(), t.c)
    }

    fn encoder(&mut self, x: &str, e: &Encoder) -> String {
        let h = self.layer_norm(x, e.input.c);
        let h = self.attention(&h, &e.attention());
        let x = self.node("Add", &[x, &h], vec![]);
        let h = self.layer_norm(&x, e.input.c);
        let h = self.mlp(&h, &e.mlp());
        self.node("Add", &[&x, &h], vec![])
    }

    fn patch_embed(&mut self, x: &str, p: &PatchEmbed) -> String {
        let t = p.input;
        let (k, c) = (p.patch as i64, p.cout as i64);
        let fan_in = t.c * p.patch * p.patch;
        let w = self.weight(&[c, t.c as i64, k, k], fan_in);
        let b = self.weight(&[c], fan_in);
        let y = self.node(
            "Conv",
            &[x, &w, &b],
            vec![
                AttributeProto::ints("kernel_shape", &[k, k]),
                AttributeProto::ints("strides", &[k, k]),
                AttributeProto::ints("pads", &[0; 4]),
            ],
        );
        let flat = self.int64_constant(&[t.n as i64, c, p.patches() as i64]);
        let y = self.node("Reshape", &[&y, &flat], vec![]);
        let mut y = self.node(
            "Transpose",
            &[&y],
            vec![AttributeProto::ints("perm", &[0, 2, 1])],
        );
        if p.cls {
            let token = self.weight(&[t.n as i64, 1, c], p.cout);
            y = self.node(
                "Concat",
                &[&token, &y],
                vec![AttributeProto::int("axis", 1)],
            );
        }
        let tokens = p.output().seq_len() as i64;
        let position = self.weight(&[1, tokens, c], p.cout);
        self.node("Add", &[&y, &position], vec![])
    }

    /// `x[:, 0]`: the class token, `N x C`.
    fn class_token(&mut self, x: &str) -> String {
        let zero = self.int64_scalar(0);
        self.node("Gather", &[x, &zero], vec![AttributeProto::int("axis", 1)])
    }

    /// `x.flatten(2).transpose(1, 2)`: a feature map's pixels as tokens.
    fn tokens_of(&mut self, x: &str, t: &Tensor) -> String {
        let flat = self.int64_constant(&[t.n as i64, t.c as i64, (t.h * t.w) as i64]);
        let y = self.node("Reshape", &[x, &flat], vec![]);
        self.node(
            "Transpose",
            &[&y],
            vec![AttributeProto::ints("perm", &[0, 2, 1])],
        )
    }

    /// `x.mean(dim=1)`: the mean token, `N x C`.
    fn token_mean(&mut self, x: &str) -> String {
        self.node(
            "ReduceMean",
            &[x],
            vec![
                AttributeProto::ints("axes", &[1]),
                AttributeProto::int("keepdims", 0),
            ],
        )
    }
}
