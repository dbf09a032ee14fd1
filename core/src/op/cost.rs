//! What an op costs and touches: its kind, shapes in and out, FLOPs, parameters, bytes moved,
//! working set; and whether its shape is one the vocabulary can build.

use super::*;

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
            Op::Lrn(_) => "lrn",
            Op::Resize(_) => "resize",
            Op::ConvTranspose(_) => "convt",
            Op::Patch(_) => "patch",
            Op::LayerNorm(_) => "ln",
            Op::Mhsa(_) => "mhsa",
            Op::Mlp(_) => "mlp",
            Op::Encoder(_) => "encoder",
            Op::ClassToken(_) => "cls",
            Op::ToTokens(_) => "tokens",
            Op::TokenMean(_) => "tokmean",
            Op::ChannelNorm(_) => "ln2d",
            Op::CnBlock(_) => "cnblock",
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
            Op::Lrn(l) => l.input,
            Op::Resize(r) => r.input,
            Op::ConvTranspose(c) => c.input,
            Op::Patch(p) => p.input,
            Op::Mhsa(m) => m.input,
            Op::Mlp(m) => m.input,
            Op::Encoder(e) => e.input,
            Op::LayerNorm(t) | Op::ClassToken(t) | Op::ToTokens(t) | Op::TokenMean(t) => *t,
            Op::ChannelNorm(t) => *t,
            Op::CnBlock(b) => b.input,
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
            Op::Lrn(l) => l.input,
            Op::Resize(r) => Tensor::new(r.input.n, r.input.c, r.h, r.w),
            Op::ConvTranspose(c) => c.output(),
            Op::Patch(p) => p.output(),
            Op::LayerNorm(t) => *t,
            Op::Mhsa(m) => m.input,
            Op::Mlp(m) => m.input,
            Op::Encoder(e) => e.input,
            Op::ClassToken(t) | Op::TokenMean(t) => Tensor::new(t.n, t.c, 1, 1),
            Op::ToTokens(t) => Tensor::tokens(t.n, t.h * t.w, t.c),
            Op::ChannelNorm(t) => *t,
            Op::CnBlock(b) => b.input,
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
            // A square and an add per window element, then scale, bias, power and divide.
            Op::Lrn(l) => l.input.numel() * (2 * l.size as u64 + 4),
            Op::Resize(r) => match r.mode {
                ResizeMode::Nearest => 0,
                // Two lerps along W and one along H: 3 multiply-adds per output element.
                ResizeMode::Linear => 6 * self.output().numel(),
            },
            Op::ConvTranspose(c) => 2 * c.macs(),
            // The conv, then the position embedding's add.
            Op::Patch(p) => 2 * p.macs() + p.output().numel(),
            Op::LayerNorm(t) => transformer::LAYER_NORM_FLOPS * t.numel(),
            Op::Mhsa(m) => 2 * m.macs() + m.other_flops(),
            Op::Mlp(m) => 2 * m.macs() + m.other_flops(),
            Op::Encoder(e) => 2 * e.macs() + e.other_flops(),
            Op::ChannelNorm(t) => convnext::channel_norm_flops(t),
            Op::CnBlock(b) => 2 * b.macs() + b.other_flops(),
            Op::ClassToken(_) | Op::ToTokens(_) => 0,
            Op::TokenMean(t) => t.numel(),
        }
    }

    /// Multiply-adds of the op's convolutions and linear layers (what model zoos publish as
    /// "FLOPs" or "MACs"); 0 for everything else.
    pub fn macs(&self) -> u64 {
        match self {
            Op::Conv(c) => c.macs(),
            Op::MbConv(m) => m.convs().iter().map(Conv::macs).sum::<u64>() + m.se_macs(),
            Op::Linear(l) => l.input.numel() * l.cout as u64,
            Op::ConvTranspose(c) => c.macs(),
            Op::Patch(p) => p.macs(),
            Op::Mhsa(m) => m.macs(),
            Op::Mlp(m) => m.macs(),
            Op::Encoder(e) => e.macs(),
            Op::CnBlock(b) => b.macs(),
            _ => 0,
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
            Op::ConvTranspose(c) => c.params(),
            Op::Patch(p) => p.params(),
            Op::LayerNorm(t) => 2 * t.c as u64,
            Op::Mhsa(m) => m.params(),
            Op::Mlp(m) => m.params(),
            Op::Encoder(e) => e.params(),
            Op::ChannelNorm(t) => 2 * t.c as u64,
            Op::CnBlock(b) => b.params(),
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
            Op::Mhsa(m) => m.working_set_numel() * BYTES_PER_ELEMENT,
            Op::Mlp(m) => m.working_set_numel() * BYTES_PER_ELEMENT,
            Op::CnBlock(b) => b.working_set_numel() * BYTES_PER_ELEMENT,
            Op::Encoder(e) => {
                let numel = e.attention().working_set_numel();
                numel.max(e.mlp().working_set_numel()) * BYTES_PER_ELEMENT
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
        let problem = match self {
            Op::Conv(c) => conv_problem(c),
            Op::ConvTranspose(c) => convt_problem(c),
            Op::CnBlock(b) => convnext::problem(b).or_else(|| conv_problem(&b.dwconv())),
            _ => transformer::problem(self),
        };
        if let Some(why) = self.size_problem().or(problem) {
            return invalid(why);
        }
        match self {
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
            Op::Lrn(l) => {
                if l.size == 0 || l.size % 2 == 0 {
                    return invalid(format!("size ({}) must be odd", l.size));
                }
            }
            Op::Resize(r) => {
                if r.h == 0 || r.w == 0 || r.h as u64 * r.w as u64 > 1 << 26 {
                    return invalid(format!("output size {}x{}", r.h, r.w));
                }
            }
            Op::GlobalAvgPool(_)
            | Op::Conv(_)
            | Op::ConvTranspose(_)
            | Op::Add(_)
            | Op::Act(_)
            | Op::Skip(_)
            | Op::Zero(_)
            | Op::Scale(_)
            | Op::Softmax(_)
            | Op::Patch(_)
            | Op::LayerNorm(_)
            | Op::Mhsa(_)
            | Op::Mlp(_)
            | Op::Encoder(_)
            | Op::ClassToken(_)
            | Op::ToTokens(_)
            | Op::TokenMean(_)
            | Op::ChannelNorm(_)
            | Op::CnBlock(_) => {}
        }
        match self.layout_problem() {
            Some(why) => invalid(why),
            None => Ok(()),
        }
    }
}

impl Op {
    /// Why the input's size is unusable, if it is: an empty dimension, or more elements than
    /// any real network has (so that a typo cannot ask for terabytes).
    fn size_problem(&self) -> Option<String> {
        let t = self.input();
        if t.n == 0 || t.c == 0 || t.h == 0 || t.w == 0 {
            return Some("every input dimension must be at least 1".into());
        }
        (t.numel() > 1 << 30).then(|| format!("input has {} elements (limit 2^30)", t.numel()))
    }

    /// Why the input's layout does not suit the op, if it does not: token ops take token
    /// sequences, element-wise sums and free ops take either, every other op a feature map.
    fn layout_problem(&self) -> Option<String> {
        let input = self.input();
        match self {
            Op::LayerNorm(_)
            | Op::Mhsa(_)
            | Op::Mlp(_)
            | Op::Encoder(_)
            | Op::ClassToken(_)
            | Op::TokenMean(_) => transformer::needs_tokens(&input),
            Op::Add(_) | Op::Skip(_) | Op::Zero(_) => None,
            _ => input
                .is_tokens()
                .then(|| format!("takes a feature map NxCxHxW, got the tokens {input}")),
        }
    }
}

/// What is wrong with a convolution's parameters, if anything.
fn conv_problem(c: &Conv) -> Option<String> {
    if c.cout == 0 || c.k == 0 || c.stride == 0 || c.groups == 0 {
        return Some("cout, k, s and g must be at least 1".into());
    }
    if !c.input.c.is_multiple_of(c.groups) || !c.cout.is_multiple_of(c.groups) {
        return Some(format!(
            "groups {} must divide input channels {} and output channels {}",
            c.groups, c.input.c, c.cout
        ));
    }
    if c.kw() == 0 || c.dilation == 0 || c.kw == Some(c.k) {
        return Some("the kernel width and d must be at least 1, kw not k".into());
    }
    let ((ph, pw), (sh, sw)) = (c.pads(), c.span());
    if sh > c.input.h + 2 * ph || sw > c.input.w + 2 * pw {
        return Some("kernel larger than the padded input".into());
    }
    (ph >= sh || pw >= sw).then(|| format!("padding {} for a {}x{} kernel", ph.max(pw), sh, sw))
}

/// What is wrong with a transposed convolution's parameters, if anything.
fn convt_problem(c: &ConvTranspose) -> Option<String> {
    if c.cout == 0 || c.k == 0 || c.stride == 0 || c.groups == 0 {
        return Some("out, k, s and g must be at least 1".into());
    }
    if !c.input.c.is_multiple_of(c.groups) || !c.cout.is_multiple_of(c.groups) {
        return Some(format!(
            "groups {} must divide input channels {} and output channels {}",
            c.groups, c.input.c, c.cout
        ));
    }
    let o = c.output();
    (c.pad >= c.k || o.h == 0 || o.w == 0 || o.numel() > 1 << 30)
        .then(|| format!("padding {} for a {}x{} kernel", c.pad, c.k, c.k))
}
