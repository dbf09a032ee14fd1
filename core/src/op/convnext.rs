//! ConvNeXt's ops, as torchvision writes them: the block, and the LayerNorm over a feature
//! map's channels that its stem, downsampling layers and head use. Both take and give feature
//! maps (`N x C x H x W`); inside, they run channels-last (a Transpose to `N x H x W x C` and
//! back), which is why they are ops of their own and not tokens.

use serde::{Deserialize, Serialize};

use super::transformer::LAYER_NORM_FLOPS;
use super::{Activation, Conv, Mlp, Tensor};

/// A ConvNeXt block on a feature map: a `k x k` depthwise convolution (with bias), LayerNorm
/// over the channels, Linear to `hidden`, GELU, Linear back (each pixel on its own,
/// channels-last), a learned per-channel scale (layer scale), and the residual add. Profiled
/// whole, as the encoder block is, because ORT 1.31 fuses across its parts: the first
/// Transpose into the NCHWc reorder after the depthwise conv, each Linear's bias into a Gemm,
/// GELU's erf pattern into one Gelu kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CnBlock {
    pub input: Tensor,
    pub hidden: u32,
    pub k: u32,
}

impl CnBlock {
    /// The depthwise convolution that starts the block.
    pub fn dwconv(&self) -> Conv {
        Conv {
            input: self.input,
            cout: self.input.c,
            k: self.k,
            stride: 1,
            groups: self.input.c,
            kw: None,
            dilation: 1,
            pad: None,
            pre_act: Activation::None,
            act: Activation::None,
        }
    }
    /// The MLP on the pixels, as on tokens: `N x HW x C`.
    pub fn mlp(&self) -> Mlp {
        let t = self.input;
        Mlp {
            input: Tensor::tokens(t.n, t.h * t.w, t.c),
            hidden: self.hidden,
        }
    }
    pub fn macs(&self) -> u64 {
        self.dwconv().macs() + self.mlp().macs()
    }
    /// LayerNorm, GELU, the layer scale and the residual add.
    pub fn other_flops(&self) -> u64 {
        let x = self.input.numel();
        LAYER_NORM_FLOPS * x + self.mlp().other_flops() + 2 * x
    }
    /// The depthwise conv's weights and bias, LayerNorm's scale and shift, the MLP, the
    /// layer scale.
    pub fn params(&self) -> u64 {
        self.dwconv().params() + 3 * self.input.c as u64 + self.mlp().params()
    }
    /// Elements held at the widest step: the MLP's, plus the block input the residual keeps.
    pub fn working_set_numel(&self) -> u64 {
        self.mlp().working_set_numel() + self.input.numel()
    }
}

/// LayerNorm's cost on a feature map; the transposes around it only move data (bytes, not
/// FLOPs).
pub(super) fn channel_norm_flops(t: &Tensor) -> u64 {
    LAYER_NORM_FLOPS * t.numel()
}

/// What is wrong with a block's parameters, if anything.
pub(super) fn problem(b: &CnBlock) -> Option<String> {
    if b.hidden == 0 {
        return Some("the MLP's hidden width must be at least 1".into());
    }
    (b.k == 0 || b.k.is_multiple_of(2)).then(|| format!("k ({}) must be odd", b.k))
}
