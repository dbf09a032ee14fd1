//! The op vocabulary: every operator a search space can produce, with its full shape.
//!
//! An [`Op`] is the unit that is profiled: the group of ONNX nodes a runtime executes together
//! (a convolution with its folded batch norm and activation, a whole MBConv block), so that
//! fusion inside the block is measured rather than guessed.
//!
//! Every op has a canonical key (see [`Op::key`] and [`Op::from_key`]) such as
//! `mbconv-in:1x24x56x56-out:40-e:4-k:5-s:2-se:1-act:relu-res:0`, analytic FLOPs, parameters and
//! bytes moved. Shapes are NCHW feature maps, keyed `NxCxHxW`, or the token sequences of the
//! transformer ops ([`transformer`]), keyed `NxLxC`.
//!
//! FLOPs count a multiply-add as two operations. Convolutions and linear layers count only their
//! multiply-adds (bias, folded batch norm and a fused activation are free, as they are in a fused
//! kernel); element-wise ops count one operation per output element and per arithmetic step
//! (`add`: 1, `act`: 1, plus 2 for an affine batch norm), pooling counts one per window element.

use serde::{Deserialize, Serialize};

mod activation;
pub mod convnext;
mod cost;
mod key;
mod tensor;
pub mod transformer;

pub use activation::{Activation, LEAKY_RELU_ALPHA};
pub use convnext::CnBlock;
pub use tensor::{Layout, Tensor};
pub use transformer::{Encoder, Mhsa, Mlp, PatchEmbed};

/// Bytes per element: every op is fp32 for now (the table records the precision).
pub const BYTES_PER_ELEMENT: u64 = 4;

/// The number format an op runs in: fp32, fp16, or int8 as the QuantizeLinear /
/// DequantizeLinear (QDQ) graphs NPUs and ONNX Runtime's int8 kernels take
/// (`hwnas_onnx::precision`). One table, model and device profile hold one precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Fp16,
    Int8,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Fp16, Precision::Int8];

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("precision `{s}` is not one of fp32, fp16, int8"))
    }
}

/// Convolution with symmetric padding ("same", `dilation * (k / 2)` per axis, unless `pad` says
/// otherwise), folded batch norm (a bias), an optional pre-activation on its input
/// (NAS-Bench-201's ReLU-Conv-BN) and an optional activation after. The kernel is `k x k`, or
/// `k x kw` (height x width, e.g. Inception's 1x7 and 7x1), optionally dilated (DeepLab's atrous
/// convolutions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Conv {
    pub input: Tensor,
    pub cout: u32,
    /// The kernel's height (and width, unless `kw` is set).
    pub k: u32,
    pub stride: u32,
    pub groups: u32,
    /// The kernel's width when it differs from its height; `None` for a square kernel (keep it
    /// canonical: never `Some(k)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kw: Option<u32>,
    /// Spacing of the kernel's taps (1: a plain convolution).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub dilation: u32,
    /// Padding on every side when it is not "same" (e.g. SqueezeNet's unpadded stem); `None`
    /// is "same". Keep it canonical (see [`Conv::with_pad`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad: Option<u32>,
    pub pre_act: Activation,
    pub act: Activation,
}

/// An inverted-residual (MBConv) block as in MobileNetV2/V3 and Once-for-All: 1x1 expand
/// (skipped when `expand == 1`) + act, depthwise k x k + act, optional squeeze-excitation
/// (reduce 4, ReLU, hard sigmoid), 1x1 project, optional identity residual.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MbConv {
    pub input: Tensor,
    pub cout: u32,
    pub expand: u32,
    pub k: u32,
    pub stride: u32,
    pub se: bool,
    pub act: Activation,
    pub residual: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    Avg,
    Max,
}

/// Average or max pooling. Average pooling excludes padding from the divisor (as PyTorch's
/// `count_include_pad=False`, which NAS-Bench-201 uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pool {
    pub input: Tensor,
    pub kind: PoolKind,
    pub k: u32,
    pub stride: u32,
    pub pad: u32,
}

/// A fully connected layer on a flattened `N x C x 1 x 1` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Linear {
    pub input: Tensor,
    pub cout: u32,
}

/// A standalone activation, optionally preceded by an inference batch norm (per-channel affine),
/// e.g. NAS-Bench-201's final BN + ReLU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Act {
    pub input: Tensor,
    pub act: Activation,
    pub bn: bool,
}

/// One operator of the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Op {
    Conv(Conv),
    MbConv(MbConv),
    Pool(Pool),
    /// Global average pooling to `N x C x 1 x 1`.
    GlobalAvgPool(Tensor),
    Linear(Linear),
    /// Element-wise sum of two tensors of the same shape (residuals, NAS-Bench-201 node sums).
    Add(Tensor),
    Act(Act),
    /// Identity: no kernel runs (a runtime elides it). Never profiled.
    Skip(Tensor),
    /// NAS-Bench-201's `none` edge: contributes nothing. Never profiled.
    Zero(Tensor),
    /// Channel-wise scaling `x * s` with `s` of shape `N x C x 1 x 1` (squeeze-excitation's
    /// multiply, when a model's SE is not part of an MBConv block).
    Scale(Tensor),
    /// Concatenation along channels of `input` and a second tensor of `cout - input.c` channels.
    Concat(Concat),
    /// ShuffleNet's channel shuffle: reshape to `N x g x C/g x H x W`, swap the two channel axes,
    /// reshape back.
    Shuffle(Shuffle),
    /// `cout` channels of a tensor from channel `start` on (one output of a channel split).
    Slice(Slice),
    /// Softmax over the channels.
    Softmax(Tensor),
    /// Local response normalization across channels (AlexNet, GoogLeNet).
    Lrn(Lrn),
    /// A spatial resize (ONNX Resize or Upsample), e.g. a segmentation head's upsampling.
    Resize(Resize),
    /// A transposed convolution (a decoder's learned upsampling).
    ConvTranspose(ConvTranspose),
    /// A ViT patch embedding: an image to tokens.
    Patch(PatchEmbed),
    /// LayerNormalization over each token's channels (scale and shift included).
    LayerNorm(Tensor),
    /// Multi-head self-attention, projections included.
    Mhsa(Mhsa),
    /// The transformer MLP (Linear, GELU, Linear).
    Mlp(Mlp),
    /// A pre-norm transformer encoder block.
    Encoder(Encoder),
    /// The class token (token 0) as an `N x C x 1 x 1` feature, for a classifier head.
    ClassToken(Tensor),
    /// A feature map's pixels as tokens: `N x C x H x W` to `N x HW x C`.
    ToTokens(Tensor),
    /// The mean of the tokens, `N x C x 1 x 1` (a head without a class token).
    TokenMean(Tensor),
    /// LayerNormalization over a feature map's channels (ConvNeXt's stem, downsampling and
    /// head: a Transpose to channels-last, LayerNorm, a Transpose back).
    ChannelNorm(Tensor),
    /// A ConvNeXt block.
    CnBlock(CnBlock),
}

/// Transposed convolution, k×k, stride s, padding p on every side, groups g, with a bias: the
/// output is `(size - 1) * s - 2p + k` per axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConvTranspose {
    pub input: Tensor,
    pub cout: u32,
    pub k: u32,
    pub stride: u32,
    pub pad: u32,
    pub groups: u32,
}

impl ConvTranspose {
    pub fn output(&self) -> Tensor {
        let side = |v: u32| ((v.max(1) - 1) * self.stride + self.k).saturating_sub(2 * self.pad);
        Tensor::new(
            self.input.n,
            self.cout,
            side(self.input.h),
            side(self.input.w),
        )
    }
    /// Each input element feeds `cout / g` output channels through `k x k` taps.
    pub fn macs(&self) -> u64 {
        self.input.numel() * (self.cout / self.groups.max(1)) as u64 * (self.k * self.k) as u64
    }
    pub fn params(&self) -> u64 {
        self.input.c as u64 * (self.cout / self.groups.max(1)) as u64 * (self.k * self.k) as u64
            + self.cout as u64
    }
}

/// Local response normalization: every element divided by a power of the sum of squares of
/// the `size` channels around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Lrn {
    pub input: Tensor,
    pub size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// The nearest input pixel.
    Nearest,
    /// Bilinear interpolation of the 4 nearest input pixels.
    Linear,
}

impl ResizeMode {
    pub fn name(self) -> &'static str {
        match self {
            ResizeMode::Nearest => "nearest",
            ResizeMode::Linear => "linear",
        }
    }
}

/// Resize every channel to `h x w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Resize {
    pub input: Tensor,
    pub h: u32,
    pub w: u32,
    pub mode: ResizeMode,
}

/// Two tensors joined along channels: `input` and one of the same batch and size with
/// `cout - input.c` channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Concat {
    pub input: Tensor,
    pub cout: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shuffle {
    pub input: Tensor,
    pub groups: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Slice {
    pub input: Tensor,
    pub cout: u32,
    /// The first channel taken (the key's `at`, left out when 0).
    pub start: u32,
}

/// Why an op or a key is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error(
        "unknown op kind `{0}` (known: conv, mbconv, avgpool, maxpool, gap, linear, add, act, skip, zero, scale, concat, shuffle, slice, softmax, lrn, resize, convt, patch, ln, mhsa, mlp, encoder, cls, tokens, tokmean, ln2d, cnblock)"
    )]
    UnknownKind(String),
    #[error("op key `{key}`: missing field `{field}`")]
    Missing { key: String, field: &'static str },
    #[error("op key field `{field}` has value `{value}`; expected {expected}")]
    Field {
        field: String,
        value: String,
        expected: String,
    },
    #[error("op key `{key}`: unexpected field `{field}`")]
    Unexpected { key: String, field: String },
    #[error("invalid op `{key}`: {why}")]
    Invalid { key: String, why: String },
}

/// The conventional rounding of channel counts to a multiple of `divisor` (MobileNet's
/// `make_divisible`): never below `divisor`, never more than 10% below `v`.
pub fn make_divisible(v: f64, divisor: u32) -> u32 {
    let d = divisor as f64;
    let mut r = ((v + d / 2.0) / d).floor() * d;
    r = r.max(d);
    if r < 0.9 * v {
        r += d;
    }
    r as u32
}

/// Output size along one axis of a window op as ONNX defines it, for any model: floor mode, or
/// with `ceil` the extra, partial last window when it would start inside the input or its
/// leading padding. `None` when the window does not fit the padded input.
pub fn window_output(
    size: u32,
    k: u32,
    stride: u32,
    pad_begin: u32,
    pad_end: u32,
    ceil: bool,
) -> Option<u32> {
    let (begin, stride) = (pad_begin as u64, stride.max(1) as u64);
    let span = (size as u64 + begin + pad_end as u64).checked_sub(k as u64)?;
    let floor = span / stride + 1;
    let partial = ceil && span % stride != 0 && floor * stride < size as u64 + begin;
    u32::try_from(floor + u64::from(partial)).ok()
}

/// Output size of a window op with symmetric padding. A stride of 0 is refused by
/// `Op::validate`, but a network's shapes are wired first, so it must not divide by it here.
fn out_size(size: u32, k: u32, stride: u32, pad: u32) -> u32 {
    (size + 2 * pad).saturating_sub(k) / stride.max(1) + 1
}

fn one() -> u32 {
    1
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

impl Conv {
    /// The kernel's width.
    pub fn kw(&self) -> u32 {
        self.kw.unwrap_or(self.k)
    }
    /// The "same" padding of each axis (height, width).
    fn same_pad(&self) -> (u32, u32) {
        (
            self.dilation * (self.k / 2),
            self.dilation * (self.kw() / 2),
        )
    }
    /// Padding on each side along the height and along the width.
    pub fn pads(&self) -> (u32, u32) {
        self.pad.map_or(self.same_pad(), |p| (p, p))
    }
    /// The extent of the dilated kernel (height, width).
    pub fn span(&self) -> (u32, u32) {
        let d = self.dilation;
        (d * (self.k - 1) + 1, d * (self.kw().max(1) - 1) + 1)
    }

    fn with_pad_field(self, pad: Option<u32>) -> Conv {
        match pad {
            Some(p) => self.with_pad(p),
            None => self,
        }
    }

    /// The same conv with `pad` on every side, stored canonically.
    pub fn with_pad(self, pad: u32) -> Conv {
        Conv {
            pad: (self.same_pad() != (pad, pad)).then_some(pad),
            ..self
        }
    }
    /// The same conv with a `k x kw` kernel, stored canonically.
    pub fn with_kernel(self, k: u32, kw: u32) -> Conv {
        Conv {
            k,
            kw: (kw != k).then_some(kw),
            ..self
        }
    }
    pub fn output(&self) -> Tensor {
        let ((ph, pw), (sh, sw)) = (self.pads(), self.span());
        Tensor::new(
            self.input.n,
            self.cout,
            out_size(self.input.h, sh, self.stride, ph),
            out_size(self.input.w, sw, self.stride, pw),
        )
    }
    fn taps(&self) -> u64 {
        (self.input.c / self.groups) as u64 * self.k as u64 * self.kw() as u64
    }
    pub fn macs(&self) -> u64 {
        self.output().numel() * self.taps()
    }
    pub fn params(&self) -> u64 {
        self.cout as u64 * self.taps() + self.cout as u64
    }
}

impl MbConv {
    /// Channels after the expansion (`make_divisible(cin * expand, 8)`; `cin` when expand is 1).
    pub fn mid(&self) -> u32 {
        if self.expand == 1 {
            self.input.c
        } else {
            make_divisible(self.input.c as f64 * self.expand as f64, 8)
        }
    }
    /// Channels inside the squeeze-excitation (`make_divisible(mid / 4, 8)`).
    pub fn se_mid(&self) -> u32 {
        make_divisible(self.mid() as f64 / 4.0, 8)
    }
    /// The block as its convolutions (expand, depthwise, project), used for FLOPs and by
    /// backends that run a block as a sequence of kernels.
    pub fn convs(&self) -> Vec<Conv> {
        let mid = self.mid();
        let mut convs = Vec::with_capacity(3);
        let mut x = self.input;
        if self.expand != 1 {
            let c = Conv {
                input: x,
                cout: mid,
                k: 1,
                stride: 1,
                groups: 1,
                kw: None,
                dilation: 1,
                pad: None,
                pre_act: Activation::None,
                act: self.act,
            };
            x = c.output();
            convs.push(c);
        }
        let dw = Conv {
            input: x,
            cout: mid,
            k: self.k,
            stride: self.stride,
            groups: mid,
            kw: None,
            dilation: 1,
            pad: None,
            pre_act: Activation::None,
            act: self.act,
        };
        x = dw.output();
        convs.push(dw);
        convs.push(Conv {
            input: x,
            cout: self.cout,
            k: 1,
            stride: 1,
            groups: 1,
            kw: None,
            dilation: 1,
            pad: None,
            pre_act: Activation::None,
            act: Activation::None,
        });
        convs
    }
    pub fn output(&self) -> Tensor {
        let dw_out = out_size(self.input.h, self.k, self.stride, self.k / 2);
        let dw_out_w = out_size(self.input.w, self.k, self.stride, self.k / 2);
        Tensor::new(self.input.n, self.cout, dw_out, dw_out_w)
    }
    /// Multiply-adds of the squeeze-excitation's two 1x1 convolutions.
    pub(super) fn se_macs(&self) -> u64 {
        if !self.se {
            return 0;
        }
        2 * self.input.n as u64 * self.mid() as u64 * self.se_mid() as u64
    }
    fn se_params(&self) -> u64 {
        if !self.se {
            return 0;
        }
        let (mid, sm) = (self.mid() as u64, self.se_mid() as u64);
        mid * sm + sm + sm * mid + mid
    }
}

impl Pool {
    pub fn output(&self) -> Tensor {
        Tensor::new(
            self.input.n,
            self.input.c,
            out_size(self.input.h, self.k, self.stride, self.pad),
            out_size(self.input.w, self.k, self.stride, self.pad),
        )
    }
}

#[cfg(test)]
mod tests;
