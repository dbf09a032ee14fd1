//! Activation tensor shapes: NCHW feature maps and `N x L x C` token sequences.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::OpError;

/// How a tensor's elements are laid out, which decides its ONNX rank and how its key reads.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// A 4-D feature map, `N x C x H x W`.
    #[default]
    Nchw,
    /// A 3-D token sequence, `N x L x C` (a transformer's activations): stored with `h = L`
    /// and `w = 1`, so sizes, element counts and channel counts mean the same in both layouts.
    Tokens,
}

/// An activation tensor shape: NCHW, or a token sequence (see [`Layout::Tokens`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tensor {
    pub n: u32,
    pub c: u32,
    pub h: u32,
    pub w: u32,
    #[serde(default, skip_serializing_if = "is_nchw")]
    pub layout: Layout,
}

fn is_nchw(layout: &Layout) -> bool {
    *layout == Layout::Nchw
}

impl Tensor {
    /// An NCHW feature map.
    pub const fn new(n: u32, c: u32, h: u32, w: u32) -> Self {
        Tensor {
            n,
            c,
            h,
            w,
            layout: Layout::Nchw,
        }
    }

    /// A sequence of `l` tokens of `c` channels.
    pub const fn tokens(n: u32, l: u32, c: u32) -> Self {
        Tensor {
            n,
            c,
            h: l,
            w: 1,
            layout: Layout::Tokens,
        }
    }

    pub fn is_tokens(&self) -> bool {
        self.layout == Layout::Tokens
    }

    /// Sequence length of a token tensor (its `h`).
    pub fn seq_len(&self) -> u32 {
        self.h
    }

    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.n as u64 * self.c as u64 * self.h as u64 * self.w as u64
    }

    /// The same batch and spatial size (or sequence length) with another channel count.
    pub fn with_channels(&self, c: u32) -> Self {
        Tensor { c, ..*self }
    }

    /// The shape as ONNX dims: `[N, C, H, W]`, or `[N, L, C]` for tokens.
    pub fn dims(&self) -> Vec<i64> {
        let (n, c, h, w) = (self.n as i64, self.c as i64, self.h as i64, self.w as i64);
        match self.layout {
            Layout::Nchw => vec![n, c, h, w],
            Layout::Tokens => vec![n, h, c],
        }
    }

    /// [`Tensor::dims`] as sizes.
    pub fn shape(&self) -> Vec<usize> {
        self.dims().into_iter().map(|d| d as usize).collect()
    }

    /// `NxCxHxW`, or `NxLxC` for a token sequence.
    pub(super) fn parse(s: &str) -> Result<Self, OpError> {
        let bad = || OpError::Field {
            field: "in".into(),
            value: s.into(),
            expected: "NxCxHxW (a feature map, e.g. 1x16x32x32) or NxLxC (tokens, e.g. 1x197x192)"
                .into(),
        };
        let parts = s
            .split('x')
            .map(|p| p.parse::<u32>().map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        match parts[..] {
            [n, c, h, w] => Ok(Tensor::new(n, c, h, w)),
            [n, l, c] => Ok(Tensor::tokens(n, l, c)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.layout {
            Layout::Nchw => write!(f, "{}x{}x{}x{}", self.n, self.c, self.h, self.w),
            Layout::Tokens => write!(f, "{}x{}x{}", self.n, self.h, self.c),
        }
    }
}
