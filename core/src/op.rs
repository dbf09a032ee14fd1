//! The op vocabulary: every operator a search space can produce, with its full shape.
//!
//! An [`Op`] is the unit that is profiled: the group of ONNX nodes a runtime executes together
//! (a convolution with its folded batch norm and activation, a whole MBConv block), so that
//! fusion inside the block is measured rather than guessed.
//!
//! Every op has a canonical key (see [`Op::key`] and [`Op::from_key`]) such as
//! `mbconv-in:1x24x56x56-out:40-e:4-k:5-s:2-se:1-act:relu-res:0`, analytic FLOPs, parameters and
//! bytes moved. Shapes are NCHW; the key writes the input as `NxCxHxW`.
//!
//! FLOPs count a multiply-add as two operations. Convolutions and linear layers count only their
//! multiply-adds (bias, folded batch norm and a fused activation are free, as they are in a fused
//! kernel); element-wise ops count one operation per output element and per arithmetic step
//! (`add`: 1, `act`: 1, plus 2 for an affine batch norm), pooling counts one per window element.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Bytes per element: every op is fp32 for now (the table records the precision).
pub const BYTES_PER_ELEMENT: u64 = 4;

/// An NCHW activation tensor shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tensor {
    pub n: u32,
    pub c: u32,
    pub h: u32,
    pub w: u32,
}

impl Tensor {
    pub const fn new(n: u32, c: u32, h: u32, w: u32) -> Self {
        Tensor { n, c, h, w }
    }

    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.n as u64 * self.c as u64 * self.h as u64 * self.w as u64
    }

    /// The same batch and spatial size with another channel count.
    pub fn with_channels(&self, c: u32) -> Self {
        Tensor { c, ..*self }
    }

    /// The shape as ONNX dims.
    pub fn dims(&self) -> [i64; 4] {
        [self.n as i64, self.c as i64, self.h as i64, self.w as i64]
    }

    fn parse(s: &str) -> Result<Self, OpError> {
        let parts: Vec<&str> = s.split('x').collect();
        let bad = || OpError::Field {
            field: "in".into(),
            value: s.into(),
            expected: "NxCxHxW, e.g. 1x16x32x32".into(),
        };
        if parts.len() != 4 {
            return Err(bad());
        }
        let mut v = [0u32; 4];
        for (slot, p) in v.iter_mut().zip(&parts) {
            *slot = p.parse().map_err(|_| bad())?;
        }
        Ok(Tensor::new(v[0], v[1], v[2], v[3]))
    }
}

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}x{}", self.n, self.c, self.h, self.w)
    }
}

/// The number format an op runs in: fp32, fp16, or int8 as the QuantizeLinear /
/// DequantizeLinear (QDQ) graphs NPUs and ONNX Runtime's int8 kernels take
/// ([`crate::onnx::precision`]). One table, model and device profile hold one precision.
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

/// An element-wise activation (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    None,
    Relu,
    Relu6,
    /// Hard swish, `x * relu6(x + 3) / 6` (MobileNetV3).
    HSwish,
    /// Swish / SiLU, `x * sigmoid(x)`.
    Swish,
    /// Hard sigmoid, `relu6(x + 3) / 6`.
    HSigmoid,
    Sigmoid,
}

impl Activation {
    pub const ALL: [Activation; 7] = [
        Activation::None,
        Activation::Relu,
        Activation::Relu6,
        Activation::HSwish,
        Activation::Swish,
        Activation::HSigmoid,
        Activation::Sigmoid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::HSwish => "hswish",
            Activation::Swish => "swish",
            Activation::HSigmoid => "hsigmoid",
            Activation::Sigmoid => "sigmoid",
        }
    }

    /// Scalar reference semantics, shared by the plain-Rust reference and the tests.
    pub fn apply(self, x: f32) -> f32 {
        let relu6 = |v: f32| v.clamp(0.0, 6.0);
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => relu6(x),
            Activation::HSwish => x * relu6(x + 3.0) / 6.0,
            Activation::Swish => x / (1.0 + (-x).exp()),
            Activation::HSigmoid => relu6(x + 3.0) / 6.0,
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = OpError;
    fn from_str(s: &str) -> Result<Self, OpError> {
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| OpError::Field {
                field: "act".into(),
                value: s.into(),
                expected: "one of none, relu, relu6, hswish, swish, hsigmoid, sigmoid".into(),
            })
    }
}

/// Convolution with symmetric padding ("same", `k / 2`, unless `pad` says otherwise), folded
/// batch norm (a bias), an optional pre-activation on its input (NAS-Bench-201's ReLU-Conv-BN)
/// and an optional activation after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Conv {
    pub input: Tensor,
    pub cout: u32,
    pub k: u32,
    pub stride: u32,
    pub groups: u32,
    /// Padding on every side when it is not `k / 2` (e.g. SqueezeNet's unpadded stem); `None`
    /// is "same". Keep it canonical: never `Some(k / 2)` (see [`Conv::with_pad`]).
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
        "unknown op kind `{0}` (known: conv, mbconv, avgpool, maxpool, gap, linear, add, act, skip, zero, scale, concat, shuffle, slice, softmax)"
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

/// Output size of a window op with symmetric padding.
fn out_size(size: u32, k: u32, stride: u32, pad: u32) -> u32 {
    (size + 2 * pad).saturating_sub(k) / stride + 1
}

impl Conv {
    pub fn pad(&self) -> u32 {
        self.pad.unwrap_or(self.k / 2)
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
            pad: (pad != self.k / 2).then_some(pad),
            ..self
        }
    }
    pub fn output(&self) -> Tensor {
        Tensor::new(
            self.input.n,
            self.cout,
            out_size(self.input.h, self.k, self.stride, self.pad()),
            out_size(self.input.w, self.k, self.stride, self.pad()),
        )
    }
    pub fn macs(&self) -> u64 {
        self.output().numel() * (self.input.c / self.groups) as u64 * (self.k * self.k) as u64
    }
    pub fn params(&self) -> u64 {
        self.cout as u64 * (self.input.c / self.groups) as u64 * (self.k * self.k) as u64
            + self.cout as u64
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
    fn se_macs(&self) -> u64 {
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

impl Op {
    /// The short kind name used in keys and tables.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv(_) => "conv",
            Op::MbConv(_) => "mbconv",
            Op::Pool(p) => match p.kind {
                PoolKind::Avg => "avgpool",
                PoolKind::Max => "maxpool",
            },
            Op::GlobalAvgPool(_) => "gap",
            Op::Linear(_) => "linear",
            Op::Add(_) => "add",
            Op::Act(_) => "act",
            Op::Skip(_) => "skip",
            Op::Zero(_) => "zero",
            Op::Scale(_) => "scale",
            Op::Concat(_) => "concat",
            Op::Shuffle(_) => "shuffle",
            Op::Slice(_) => "slice",
            Op::Softmax(_) => "softmax",
        }
    }

    /// The (first) input tensor.
    pub fn input(&self) -> Tensor {
        match self {
            Op::Conv(c) => c.input,
            Op::MbConv(m) => m.input,
            Op::Pool(p) => p.input,
            Op::Linear(l) => l.input,
            Op::Act(a) => a.input,
            Op::Concat(c) => c.input,
            Op::Shuffle(s) => s.input,
            Op::Slice(s) => s.input,
            Op::GlobalAvgPool(t)
            | Op::Add(t)
            | Op::Skip(t)
            | Op::Zero(t)
            | Op::Scale(t)
            | Op::Softmax(t) => *t,
        }
    }

    /// Number of input tensors (2 for `add`, `scale` and `concat`).
    pub fn num_inputs(&self) -> usize {
        self.input_shapes().len()
    }

    /// The shape of every input tensor, in order.
    pub fn input_shapes(&self) -> Vec<Tensor> {
        match self {
            Op::Add(t) => vec![*t, *t],
            Op::Scale(t) => vec![*t, Tensor::new(t.n, t.c, 1, 1)],
            Op::Concat(c) => vec![
                c.input,
                c.input.with_channels(c.cout.saturating_sub(c.input.c)),
            ],
            _ => vec![self.input()],
        }
    }

    pub fn output(&self) -> Tensor {
        match self {
            Op::Conv(c) => c.output(),
            Op::MbConv(m) => m.output(),
            Op::Pool(p) => p.output(),
            Op::GlobalAvgPool(t) => Tensor::new(t.n, t.c, 1, 1),
            Op::Linear(l) => Tensor::new(l.input.n, l.cout, 1, 1),
            Op::Act(a) => a.input,
            Op::Add(t) | Op::Skip(t) | Op::Zero(t) | Op::Scale(t) | Op::Softmax(t) => *t,
            Op::Concat(c) => c.input.with_channels(c.cout),
            Op::Shuffle(s) => s.input,
            Op::Slice(s) => s.input.with_channels(s.cout),
        }
    }

    /// True for ops that run no kernel in a real runtime (identity, zero): never profiled.
    pub fn is_free(&self) -> bool {
        matches!(self, Op::Skip(_) | Op::Zero(_))
    }

    /// Floating-point operations (a multiply-add counts 2; see the module doc).
    pub fn flops(&self) -> u64 {
        match self {
            Op::Conv(c) => 2 * c.macs(),
            Op::MbConv(m) => {
                let convs: u64 = m.convs().iter().map(|c| 2 * c.macs()).sum();
                let dw_out = m.convs()[m.convs().len() - 2].output();
                // SE: global pool (one add per element), two 1x1 convs, the channel-wise scale.
                let se = if m.se {
                    dw_out.numel() + 2 * m.se_macs() + dw_out.numel()
                } else {
                    0
                };
                let residual = if m.residual { m.output().numel() } else { 0 };
                convs + se + residual
            }
            Op::Pool(p) => p.output().numel() * (p.k * p.k) as u64,
            Op::GlobalAvgPool(t) => t.numel(),
            Op::Linear(l) => 2 * l.input.numel() * l.cout as u64,
            Op::Add(t) => t.numel(),
            Op::Act(a) => {
                let per = u64::from(a.act != Activation::None) + if a.bn { 2 } else { 0 };
                a.input.numel() * per
            }
            Op::Skip(_) | Op::Zero(_) => 0,
            Op::Scale(t) => t.numel(),
            // Pure data movement: their cost is in the bytes.
            Op::Concat(_) | Op::Shuffle(_) | Op::Slice(_) => 0,
            // exp, sum and divide per element.
            Op::Softmax(t) => 3 * t.numel(),
        }
    }

    /// Learned parameters after folding batch norm into the preceding convolution.
    pub fn params(&self) -> u64 {
        match self {
            Op::Conv(c) => c.params(),
            Op::MbConv(m) => m.convs().iter().map(Conv::params).sum::<u64>() + m.se_params(),
            Op::Linear(l) => {
                (l.input.c as u64 * l.input.h as u64 * l.input.w as u64 + 1) * l.cout as u64
            }
            Op::Act(a) if a.bn => 2 * a.input.c as u64,
            _ => 0,
        }
    }

    /// Bytes read from the op's input tensors.
    pub fn bytes_in(&self) -> u64 {
        if self.is_free() {
            return 0;
        }
        self.input_shapes().iter().map(Tensor::numel).sum::<u64>() * BYTES_PER_ELEMENT
    }

    /// Bytes written to the op's output tensor.
    pub fn bytes_out(&self) -> u64 {
        if self.is_free() {
            return 0;
        }
        self.output().numel() * BYTES_PER_ELEMENT
    }

    /// Bytes of weights read.
    pub fn bytes_weights(&self) -> u64 {
        self.params() * BYTES_PER_ELEMENT
    }

    /// Total bytes moved to and from memory (inputs + outputs + weights; a block's internal
    /// intermediates are not counted).
    pub fn bytes(&self) -> u64 {
        self.bytes_in() + self.bytes_out() + self.bytes_weights()
    }

    /// The most activation bytes the op holds at once: its inputs and output, and inside a
    /// block the intermediates of the step that needs the most (each conv's input and output,
    /// plus the block input a residual keeps alive).
    pub fn working_set_bytes(&self) -> u64 {
        match self {
            Op::MbConv(m) => {
                let input = m.input.numel();
                m.convs()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let kept = if m.residual && i > 0 { input } else { 0 };
                        c.input.numel() + c.output().numel() + kept
                    })
                    .max()
                    .unwrap_or(0)
                    * BYTES_PER_ELEMENT
            }
            _ => self.bytes_in() + self.bytes_out(),
        }
    }

    /// Check the op's parameters make sense; every constructor path goes through this.
    pub fn validate(&self) -> Result<(), OpError> {
        let invalid = |why: String| {
            Err(OpError::Invalid {
                key: self.key(),
                why,
            })
        };
        let t = self.input();
        if t.n == 0 || t.c == 0 || t.h == 0 || t.w == 0 {
            return invalid("every input dimension must be at least 1".into());
        }
        // Large enough for any real network, small enough that a typo cannot ask for terabytes.
        if t.numel() > 1 << 30 {
            return invalid(format!("input has {} elements (limit 2^30)", t.numel()));
        }
        match self {
            Op::Conv(c) => {
                if c.cout == 0 || c.k == 0 || c.stride == 0 || c.groups == 0 {
                    return invalid("cout, k, s and g must be at least 1".into());
                }
                if c.input.c % c.groups != 0 || c.cout % c.groups != 0 {
                    return invalid(format!(
                        "groups {} must divide input channels {} and output channels {}",
                        c.groups, c.input.c, c.cout
                    ));
                }
                if c.k > c.input.h + 2 * c.pad() || c.k > c.input.w + 2 * c.pad() {
                    return invalid("kernel larger than the padded input".into());
                }
                if c.pad() >= c.k {
                    return invalid(format!("padding {} for a {}x{} kernel", c.pad(), c.k, c.k));
                }
            }
            Op::MbConv(m) => {
                if m.cout == 0 || m.expand == 0 || m.k == 0 || m.stride == 0 {
                    return invalid("out, e, k and s must be at least 1".into());
                }
                if m.k % 2 == 0 {
                    return invalid("MBConv kernels must be odd".into());
                }
                if m.residual && (m.stride != 1 || m.input.c != m.cout) {
                    return invalid("a residual needs stride 1 and out == input channels".into());
                }
            }
            Op::Pool(p) => {
                if p.k == 0 || p.stride == 0 {
                    return invalid("k and s must be at least 1".into());
                }
                if 2 * p.pad > p.k || p.k > p.input.h + 2 * p.pad || p.k > p.input.w + 2 * p.pad {
                    return invalid(
                        "pad must be at most k/2 and the window must fit the padded input".into(),
                    );
                }
            }
            Op::Linear(l) => {
                if l.cout == 0 {
                    return invalid("out must be at least 1".into());
                }
                if l.input.h != 1 || l.input.w != 1 {
                    return invalid(
                        "linear takes an N x C x 1 x 1 input (global-pool first)".into(),
                    );
                }
            }
            Op::Concat(c) => {
                if c.cout <= c.input.c {
                    return invalid(format!(
                        "out ({}) must exceed the first input's channels ({})",
                        c.cout, c.input.c
                    ));
                }
            }
            Op::Shuffle(s) => {
                if s.groups < 2 || s.input.c % s.groups != 0 {
                    return invalid(format!(
                        "g ({}) must be at least 2 and divide the channels ({})",
                        s.groups, s.input.c
                    ));
                }
            }
            Op::Slice(s) => {
                if s.cout == 0 || s.cout >= s.input.c || s.start + s.cout > s.input.c {
                    return invalid(format!(
                        "out ({}) from channel {} must fit in the input's {} channels, and be fewer",
                        s.cout, s.start, s.input.c
                    ));
                }
            }
            Op::GlobalAvgPool(_)
            | Op::Add(_)
            | Op::Act(_)
            | Op::Skip(_)
            | Op::Zero(_)
            | Op::Scale(_)
            | Op::Softmax(_) => {}
        }
        Ok(())
    }

    /// The canonical, human-readable key: `kind-field:value-...`. Parsing it with
    /// [`Op::from_key`] gives back the same op.
    pub fn key(&self) -> String {
        let b = |v: bool| u8::from(v);
        match self {
            Op::Conv(c) => format!(
                "conv-in:{}-out:{}-k:{}-s:{}-g:{}{}-pre:{}-act:{}",
                c.input,
                c.cout,
                c.k,
                c.stride,
                c.groups,
                c.pad.map_or(String::new(), |p| format!("-p:{p}")),
                c.pre_act,
                c.act
            ),
            Op::MbConv(m) => format!(
                "mbconv-in:{}-out:{}-e:{}-k:{}-s:{}-se:{}-act:{}-res:{}",
                m.input,
                m.cout,
                m.expand,
                m.k,
                m.stride,
                b(m.se),
                m.act,
                b(m.residual)
            ),
            Op::Pool(p) => format!(
                "{}-in:{}-k:{}-s:{}-p:{}",
                self.kind(),
                p.input,
                p.k,
                p.stride,
                p.pad
            ),
            Op::Linear(l) => format!("linear-in:{}-out:{}", l.input, l.cout),
            Op::Act(a) => format!("act-in:{}-act:{}-bn:{}", a.input, a.act, b(a.bn)),
            Op::Concat(c) => format!("concat-in:{}-out:{}", c.input, c.cout),
            Op::Shuffle(s) => format!("shuffle-in:{}-g:{}", s.input, s.groups),
            Op::Slice(s) if s.start == 0 => format!("slice-in:{}-out:{}", s.input, s.cout),
            Op::Slice(s) => format!("slice-in:{}-out:{}-at:{}", s.input, s.cout, s.start),
            Op::GlobalAvgPool(t)
            | Op::Add(t)
            | Op::Skip(t)
            | Op::Zero(t)
            | Op::Scale(t)
            | Op::Softmax(t) => {
                format!("{}-in:{}", self.kind(), t)
            }
        }
    }

    /// Parse a canonical key. Fields may come in any order; all are required.
    pub fn from_key(key: &str) -> Result<Op, OpError> {
        let mut parts = key.split('-');
        let kind = parts.next().unwrap_or_default();
        let mut fields = KeyFields::new(key);
        for part in parts {
            let (name, value) = part.split_once(':').ok_or_else(|| OpError::Field {
                field: part.into(),
                value: String::new(),
                expected: "`name:value`".into(),
            })?;
            fields.insert(name, value)?;
        }
        let input = Tensor::parse(fields.take("in")?)?;
        let op = match kind {
            "conv" => Op::Conv(
                Conv {
                    input,
                    cout: fields.num("out")?,
                    k: fields.num("k")?,
                    stride: fields.num("s")?,
                    groups: fields.num("g")?,
                    pad: None,
                    pre_act: fields.take("pre")?.parse()?,
                    act: fields.take("act")?.parse()?,
                }
                .with_pad_field(fields.optional_num("p")?),
            ),
            "mbconv" => Op::MbConv(MbConv {
                input,
                cout: fields.num("out")?,
                expand: fields.num("e")?,
                k: fields.num("k")?,
                stride: fields.num("s")?,
                se: fields.flag("se")?,
                act: fields.take("act")?.parse()?,
                residual: fields.flag("res")?,
            }),
            "avgpool" | "maxpool" => Op::Pool(Pool {
                input,
                kind: if kind == "avgpool" {
                    PoolKind::Avg
                } else {
                    PoolKind::Max
                },
                k: fields.num("k")?,
                stride: fields.num("s")?,
                pad: fields.num("p")?,
            }),
            "linear" => Op::Linear(Linear {
                input,
                cout: fields.num("out")?,
            }),
            "act" => Op::Act(Act {
                input,
                act: fields.take("act")?.parse()?,
                bn: fields.flag("bn")?,
            }),
            "gap" => Op::GlobalAvgPool(input),
            "add" => Op::Add(input),
            "skip" => Op::Skip(input),
            "zero" => Op::Zero(input),
            "scale" => Op::Scale(input),
            "softmax" => Op::Softmax(input),
            "concat" => Op::Concat(Concat {
                input,
                cout: fields.num("out")?,
            }),
            "shuffle" => Op::Shuffle(Shuffle {
                input,
                groups: fields.num("g")?,
            }),
            "slice" => Op::Slice(Slice {
                input,
                cout: fields.num("out")?,
                start: fields.optional_num("at")?.unwrap_or(0),
            }),
            other => return Err(OpError::UnknownKind(other.into())),
        };
        fields.finish()?;
        op.validate()?;
        Ok(op)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

impl FromStr for Op {
    type Err = OpError;
    fn from_str(s: &str) -> Result<Self, OpError> {
        Op::from_key(s)
    }
}

/// The `name:value` fields of a key, consumed one by one so that leftovers are reported.
struct KeyFields<'a> {
    key: &'a str,
    fields: Vec<(&'a str, &'a str)>,
}

impl<'a> KeyFields<'a> {
    fn new(key: &'a str) -> Self {
        KeyFields {
            key,
            fields: Vec::new(),
        }
    }

    fn insert(&mut self, name: &'a str, value: &'a str) -> Result<(), OpError> {
        if self.fields.iter().any(|(n, _)| *n == name) {
            return Err(OpError::Invalid {
                key: self.key.into(),
                why: format!("field `{name}` appears twice"),
            });
        }
        self.fields.push((name, value));
        Ok(())
    }

    fn take(&mut self, field: &'static str) -> Result<&'a str, OpError> {
        let pos = self
            .fields
            .iter()
            .position(|(n, _)| *n == field)
            .ok_or_else(|| OpError::Missing {
                key: self.key.into(),
                field,
            })?;
        Ok(self.fields.remove(pos).1)
    }

    fn num(&mut self, field: &'static str) -> Result<u32, OpError> {
        let v = self.take(field)?;
        v.parse().map_err(|_| OpError::Field {
            field: field.into(),
            value: v.into(),
            expected: "a non-negative integer".into(),
        })
    }

    /// A field that may be left out.
    fn optional_num(&mut self, field: &'static str) -> Result<Option<u32>, OpError> {
        if self.fields.iter().any(|(n, _)| *n == field) {
            self.num(field).map(Some)
        } else {
            Ok(None)
        }
    }

    fn flag(&mut self, field: &'static str) -> Result<bool, OpError> {
        match self.take(field)? {
            "0" => Ok(false),
            "1" => Ok(true),
            v => Err(OpError::Field {
                field: field.into(),
                value: v.into(),
                expected: "0 or 1".into(),
            }),
        }
    }

    fn finish(self) -> Result<(), OpError> {
        match self.fields.first() {
            Some((name, _)) => Err(OpError::Unexpected {
                key: self.key.into(),
                field: (*name).into(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(cin: u32, h: u32, cout: u32, k: u32, s: u32, g: u32) -> Conv {
        Conv {
            input: Tensor::new(1, cin, h, h),
            cout,
            k,
            stride: s,
            groups: g,
            pad: None,
            pre_act: Activation::None,
            act: Activation::Relu,
        }
    }

    #[test]
    fn conv_flops_match_closed_form() {
        // 3x3, 16 -> 32 channels, 32x32, stride 1: 2 * 32*32*32 * 16*9 FLOPs.
        let op = Op::Conv(conv(16, 32, 32, 3, 1, 1));
        assert_eq!(op.flops(), 2 * 32 * 32 * 32 * 16 * 9);
        assert_eq!(op.params(), 32 * 16 * 9 + 32);
        assert_eq!(op.output(), Tensor::new(1, 32, 32, 32));
        // Stride 2 halves each spatial side: 56 -> 28.
        let s2 = Op::Conv(conv(24, 56, 48, 5, 2, 1));
        assert_eq!(s2.output(), Tensor::new(1, 48, 28, 28));
        assert_eq!(s2.flops(), 2 * 48 * 28 * 28 * 24 * 25);
        // Depthwise: one input channel per group.
        let dw = Op::Conv(conv(96, 14, 96, 7, 1, 96));
        assert_eq!(dw.flops(), 2 * 96 * 14 * 14 * 49);
        assert_eq!(dw.params(), 96 * 49 + 96);
    }

    #[test]
    fn mbconv_flops_match_closed_form() {
        // OFA stage-1 block: 16 -> 24, expand 4 (mid 64), k 3, stride 2, 112 -> 56, no SE.
        let m = MbConv {
            input: Tensor::new(1, 16, 112, 112),
            cout: 24,
            expand: 4,
            k: 3,
            stride: 2,
            se: false,
            act: Activation::Relu,
            residual: false,
        };
        assert_eq!(m.mid(), 64);
        let expand = 2 * 112 * 112 * 64 * 16;
        let dw = 2 * 56 * 56 * 64 * 9;
        let project = 2 * 56 * 56 * 24 * 64;
        assert_eq!(Op::MbConv(m).flops(), expand + dw + project);
        assert_eq!(
            Op::MbConv(m).params(),
            (64 * 16 + 64) + (64 * 9 + 64) + (24 * 64 + 24)
        );

        // With SE (mid 240 -> se 64) and a residual on 40 x 28 x 28.
        let se = MbConv {
            input: Tensor::new(1, 40, 28, 28),
            cout: 40,
            expand: 6,
            k: 5,
            stride: 1,
            se: true,
            act: Activation::Relu,
            residual: true,
        };
        assert_eq!((se.mid(), se.se_mid()), (240, 64));
        let hw = 28 * 28;
        let convs = 2 * hw * 240 * 40 + 2 * hw * 240 * 25 + 2 * hw * 40 * 240;
        let se_cost = hw * 240 + 2 * 2 * 240 * 64 + hw * 240;
        assert_eq!(Op::MbConv(se).flops(), convs + se_cost + hw * 40);
    }

    #[test]
    fn elementwise_and_pool_flops() {
        let t = Tensor::new(1, 16, 32, 32);
        assert_eq!(Op::Add(t).flops(), 16 * 32 * 32);
        assert_eq!(Op::GlobalAvgPool(t).flops(), 16 * 32 * 32);
        let pool = Op::Pool(Pool {
            input: t,
            kind: PoolKind::Avg,
            k: 3,
            stride: 1,
            pad: 1,
        });
        assert_eq!(pool.output(), t);
        assert_eq!(pool.flops(), 16 * 32 * 32 * 9);
        let lin = Op::Linear(Linear {
            input: Tensor::new(1, 64, 1, 1),
            cout: 10,
        });
        assert_eq!((lin.flops(), lin.params()), (2 * 640, 650));
        assert_eq!(Op::Skip(t).flops() + Op::Skip(t).bytes(), 0);
        assert_eq!(Op::Add(t).bytes(), 3 * 16 * 32 * 32 * 4);
    }

    #[test]
    fn window_output_follows_onnx_floor_and_ceil_modes() {
        // 112 wide, 3x3 stride 2, no padding: 54.5 windows, floor 55, ceil 56.
        assert_eq!(window_output(112, 3, 2, 0, 0, false), Some(55));
        assert_eq!(window_output(112, 3, 2, 0, 0, true), Some(56));
        // Windows that fit exactly: ceil mode adds nothing.
        assert_eq!(window_output(111, 3, 2, 0, 0, true), Some(55));
        // A partial window that would start in the trailing padding is dropped: 5 wide, k 2,
        // stride 2, pad 1 both sides: windows at -1, 1, 3; one at 5 would start past the input.
        assert_eq!(window_output(5, 2, 2, 1, 1, true), Some(3));
        assert_eq!(window_output(2, 5, 1, 1, 1, false), None);
        assert_eq!(window_output(7, 3, 1, 1, 1, false), Some(7));
    }

    #[test]
    fn data_movement_ops_cost_their_bytes() {
        let t = Tensor::new(1, 64, 28, 28);
        let cat = Op::from_key("concat-in:1x64x28x28-out:96").unwrap();
        assert_eq!(cat.input_shapes(), vec![t, t.with_channels(32)]);
        assert_eq!(cat.output(), t.with_channels(96));
        assert_eq!((cat.flops(), cat.bytes()), (0, 2 * 96 * 28 * 28 * 4));
        let shuffle = Op::from_key("shuffle-in:1x64x28x28-g:2").unwrap();
        assert_eq!(shuffle.output(), t);
        let slice = Op::from_key("slice-in:1x64x28x28-out:32").unwrap();
        let second = Op::from_key("slice-in:1x64x28x28-out:32-at:32").unwrap();
        assert_ne!(slice, second);
        assert_eq!(second.key(), "slice-in:1x64x28x28-out:32-at:32");
        assert_eq!(slice.bytes(), (64 + 32) * 28 * 28 * 4);
        let scale = Op::from_key("scale-in:1x64x28x28").unwrap();
        assert_eq!(scale.bytes_in(), (64 * 28 * 28 + 64) * 4);
        assert_eq!(Op::from_key("softmax-in:1x1000x1x1").unwrap().flops(), 3000);
        for bad in [
            "concat-in:1x64x28x28-out:64",
            "shuffle-in:1x63x28x28-g:2",
            "slice-in:1x64x28x28-out:64",
            "slice-in:1x64x28x28-out:32-at:40",
        ] {
            assert!(Op::from_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn make_divisible_matches_mobilenet() {
        assert_eq!(make_divisible(16.0 * 4.0, 8), 64);
        assert_eq!(make_divisible(240.0 / 4.0, 8), 64);
        assert_eq!(make_divisible(3.0, 8), 8);
        assert_eq!(make_divisible(112.0 * 3.0, 8), 336);
        assert_eq!(make_divisible(60.0, 8), 64);
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        let err = Op::from_key("conv-in:1x16x32x32-out:16-k:3-s:1-g:3-pre:none-act:relu")
            .unwrap_err()
            .to_string();
        assert!(err.contains("groups 3 must divide"), "{err}");
        assert!(matches!(
            Op::from_key("dense-in:1x1x1x1"),
            Err(OpError::UnknownKind(_))
        ));
        assert!(matches!(
            Op::from_key("add-in:1x16x32x32-k:3"),
            Err(OpError::Unexpected { .. })
        ));
        assert!(matches!(
            Op::from_key("linear-in:1x64x1x1"),
            Err(OpError::Missing { field: "out", .. })
        ));
        assert!(Op::from_key("act-in:1x16x32x32-act:gelu-bn:0").is_err());
        assert!(Op::from_key("add-in:1x16x32").is_err());
        assert!(Op::from_key("add-in:0x16x32x32").is_err());
        assert!(Op::from_key("").is_err());
    }
}
