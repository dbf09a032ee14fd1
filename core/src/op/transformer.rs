//! The transformer ops: patch embedding, multi-head self-attention, the MLP, and the encoder
//! block that joins them, on token sequences (`N x L x C`, see [`Layout::Tokens`]).
//!
//! FLOPs follow the module's convention: a multiply-add is 2, the attention's two batched
//! products (`Q K^T` and `A V`) count as multiply-adds like the projections, softmax is 3 per
//! score, GELU 1 per element like every activation, and LayerNorm 8 per element (mean,
//! centre, square, sum, scale, the affine's multiply and add, the divide).

use serde::{Deserialize, Serialize};

use super::{Layout, Op, Tensor};

/// Per-element cost of LayerNorm (see the module doc).
pub(super) const LAYER_NORM_FLOPS: u64 = 8;

/// A ViT patch embedding: a `p x p` stride-`p` convolution from the image to `out` channels,
/// its `H/p x W/p` grid flattened to tokens, an optional class token prepended, and a learned
/// position embedding added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PatchEmbed {
    pub input: Tensor,
    pub cout: u32,
    pub patch: u32,
    pub cls: bool,
}

impl PatchEmbed {
    /// Patches of the grid (the class token not included).
    pub fn patches(&self) -> u32 {
        (self.input.h / self.patch.max(1)) * (self.input.w / self.patch.max(1))
    }
    pub fn output(&self) -> Tensor {
        Tensor::tokens(
            self.input.n,
            self.patches() + u32::from(self.cls),
            self.cout,
        )
    }
    pub fn macs(&self) -> u64 {
        self.input.n as u64
            * self.patches() as u64
            * self.cout as u64
            * (self.input.c * self.patch * self.patch) as u64
    }
    /// Conv weight and bias, the class token, the position embedding.
    pub fn params(&self) -> u64 {
        let tokens = self.output().seq_len() as u64;
        let c = self.cout as u64;
        c * (self.input.c * self.patch * self.patch) as u64
            + c
            + u64::from(self.cls) * c
            + tokens * c
    }
}

/// Multi-head self-attention on `input` tokens: a packed QKV projection to `3 x heads x
/// head_dim`, scaled dot-product attention per head, and the output projection back to the
/// input's channels. The attention width `heads x head_dim` may differ from the embedding
/// (AutoFormer keeps 64 per head whatever the embedding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Mhsa {
    pub input: Tensor,
    pub heads: u32,
    pub head_dim: u32,
}

impl Mhsa {
    /// The attention width, `heads x head_dim`.
    pub fn width(&self) -> u32 {
        self.heads * self.head_dim
    }
    pub fn macs(&self) -> u64 {
        let (n, l, c, a) = (
            self.input.n as u64,
            self.input.seq_len() as u64,
            self.input.c as u64,
            self.width() as u64,
        );
        // QKV projection, Q K^T, A V, the output projection.
        n * (l * c * 3 * a + 2 * l * l * a + l * a * c)
    }
    /// Softmax over every score.
    pub fn other_flops(&self) -> u64 {
        let l = self.input.seq_len() as u64;
        3 * self.input.n as u64 * self.heads as u64 * l * l
    }
    pub fn params(&self) -> u64 {
        let (c, a) = (self.input.c as u64, self.width() as u64);
        c * 3 * a + 3 * a + a * c + c
    }
    /// Elements held at the widest step: input, Q, K, V, every head's scores, output.
    pub fn working_set_numel(&self) -> u64 {
        let (n, l) = (self.input.n as u64, self.input.seq_len() as u64);
        let qkv = n * l * 3 * self.width() as u64;
        2 * self.input.numel() + qkv + n * self.heads as u64 * l * l
    }
}

/// The transformer MLP: Linear to `hidden`, GELU, Linear back to the input's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Mlp {
    pub input: Tensor,
    pub hidden: u32,
}

impl Mlp {
    pub fn macs(&self) -> u64 {
        2 * self.input.numel() * self.hidden as u64
    }
    /// GELU on the hidden activations.
    pub fn other_flops(&self) -> u64 {
        self.input.numel() / self.input.c.max(1) as u64 * self.hidden as u64
    }
    pub fn params(&self) -> u64 {
        let (c, m) = (self.input.c as u64, self.hidden as u64);
        2 * c * m + m + c
    }
    /// Elements held at the widest step: input, hidden activations, output.
    pub fn working_set_numel(&self) -> u64 {
        let tokens = self.input.numel() / self.input.c.max(1) as u64;
        2 * self.input.numel() + tokens * self.hidden as u64
    }
}

/// A pre-norm transformer encoder block (ViT, DeiT, AutoFormer): `x + MHSA(LN(x))`, then
/// `x + MLP(LN(x))`. Profiled whole, because ONNX Runtime fuses across its parts (the
/// residual add into the next LayerNorm, the bias and GELU into the MatMul before them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Encoder {
    pub input: Tensor,
    pub heads: u32,
    pub head_dim: u32,
    pub hidden: u32,
}

impl Encoder {
    pub fn attention(&self) -> Mhsa {
        Mhsa {
            input: self.input,
            heads: self.heads,
            head_dim: self.head_dim,
        }
    }
    pub fn mlp(&self) -> Mlp {
        Mlp {
            input: self.input,
            hidden: self.hidden,
        }
    }
    pub fn macs(&self) -> u64 {
        self.attention().macs() + self.mlp().macs()
    }
    /// Two LayerNorms, two residual adds, softmax and GELU.
    pub fn other_flops(&self) -> u64 {
        let x = self.input.numel();
        2 * LAYER_NORM_FLOPS * x + 2 * x + self.attention().other_flops() + self.mlp().other_flops()
    }
    /// Both sub-layers and the two LayerNorms' scale and shift.
    pub fn params(&self) -> u64 {
        self.attention().params() + self.mlp().params() + 4 * self.input.c as u64
    }
}

/// Why a token op's input is not a token sequence, if it is not.
pub(super) fn needs_tokens(input: &Tensor) -> Option<String> {
    (input.layout != Layout::Tokens)
        .then(|| format!("takes a token sequence NxLxC, got the feature map {input}"))
}

/// What is wrong with a transformer op's parameters, if anything.
pub(super) fn problem(op: &Op) -> Option<String> {
    match op {
        Op::Patch(p) if p.cout == 0 || p.patch == 0 => Some("out and p must be at least 1".into()),
        Op::Patch(p)
            if !p.input.h.is_multiple_of(p.patch) || !p.input.w.is_multiple_of(p.patch) =>
        {
            Some(format!(
                "patch {} must divide the image {}x{}",
                p.patch, p.input.h, p.input.w
            ))
        }
        Op::Mhsa(Mhsa {
            heads, head_dim, ..
        })
        | Op::Encoder(Encoder {
            heads, head_dim, ..
        }) if *heads == 0 || *head_dim == 0 => Some("h and hd must be at least 1".into()),
        Op::Mlp(Mlp { hidden: 0, .. }) | Op::Encoder(Encoder { hidden: 0, .. }) => {
            Some("the MLP's hidden width must be at least 1".into())
        }
        _ => None,
    }
}
