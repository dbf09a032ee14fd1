//! The Once-for-All MobileNetV3 space (Cai et al., ICLR 2020; `ofa_mbv3_d234_e346_k357_w1.0`).
//!
//! The network: a 3x3 stride-2 stem conv to 16 channels (h-swish), one MBConv 16→16 (expand 1,
//! k 3, ReLU, residual), five stages of MBConv blocks with the MobileNetV3-Large widths
//! 24/40/80/112/160, strides 2/2/2/1/2, ReLU in the first two stages and h-swish after,
//! squeeze-excitation in stages 2, 4 and 5; then a 1x1 conv to 960 (h-swish), global average
//! pooling, a 1x1 conv to 1280 (h-swish) and a 1000-way classifier.
//!
//! Choices: input resolution {160, 176, 192, 208, 224}; per stage a depth {2, 3, 4} (the
//! first `d` of its 4 blocks run); per block a kernel {3, 5, 7} and an expand ratio {3, 4, 6}.
//!
//! Encoding: `r224-d23443-k<20 digits>-e<20 digits>`, one digit per stage for the depth and one
//! per block (4 per stage, stage by stage) for kernel and expand. Blocks beyond a stage's depth
//! keep their digits but do not run.

use hwnas_core::network::{Network, Value};
use hwnas_core::op::{Activation, Conv, Linear, MbConv};
use hwnas_core::rng::SplitMix64;
use hwnas_core::{Op, Tensor};

use super::{Gene, SearchSpace, SpaceError, distinct};

pub const RESOLUTIONS: [u32; 5] = [160, 176, 192, 208, 224];
pub const DEPTHS: [u32; 3] = [2, 3, 4];
pub const KERNELS: [u32; 3] = [3, 5, 7];
pub const EXPANDS: [u32; 3] = [3, 4, 6];
pub const STAGES: usize = 5;

/// The choice index of each digit 0-9 among `values` (single digits), `u8::MAX` where it is
/// not one.
const fn levels_of(values: [u32; 3]) -> [u8; 10] {
    let mut table = [u8::MAX; 10];
    let mut i = 0;
    while i < values.len() {
        table[values[i] as usize] = i as u8;
        i += 1;
    }
    table
}
const DEPTH_LEVELS: [u8; 10] = levels_of(DEPTHS);
const KERNEL_LEVELS: [u8; 10] = levels_of(KERNELS);
const EXPAND_LEVELS: [u8; 10] = levels_of(EXPANDS);
pub const MAX_DEPTH: usize = 4;
pub const BLOCKS: usize = STAGES * MAX_DEPTH;

const WIDTHS: [u32; STAGES] = [24, 40, 80, 112, 160];
const STRIDES: [u32; STAGES] = [2, 2, 2, 1, 2];
const SE: [bool; STAGES] = [false, true, false, true, true];
const ACTS: [Activation; STAGES] = [
    Activation::Relu,
    Activation::Relu,
    Activation::HSwish,
    Activation::HSwish,
    Activation::HSwish,
];
const STEM: u32 = 16;
const FINAL_EXPAND: u32 = 960;
const FEATURE_MIX: u32 = 1280;
const CLASSES: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mbv3Arch {
    pub resolution: u32,
    pub depths: [u32; STAGES],
    pub kernels: [u32; BLOCKS],
    pub expands: [u32; BLOCKS],
}

impl Mbv3Arch {
    /// The largest network: 224, depth 4, kernel 7, expand 6 everywhere.
    pub fn largest() -> Mbv3Arch {
        Mbv3Arch {
            resolution: 224,
            depths: [4; STAGES],
            kernels: [7; BLOCKS],
            expands: [6; BLOCKS],
        }
    }

    /// Every choice uniformly at random.
    pub fn random(rng: &mut SplitMix64) -> Mbv3Arch {
        let mut pick = |v: &[u32]| v[rng.below(v.len())];
        Mbv3Arch {
            resolution: pick(&RESOLUTIONS),
            depths: std::array::from_fn(|_| pick(&DEPTHS)),
            kernels: std::array::from_fn(|_| pick(&KERNELS)),
            expands: std::array::from_fn(|_| pick(&EXPANDS)),
        }
    }

    pub fn parse(s: &str) -> Result<Mbv3Arch, SpaceError> {
        let bad = |why: String| SpaceError::BadArch {
            space: "mbv3".into(),
            arch: s.into(),
            why,
        };
        // Without allocating: `predict_batch` parses millions of these a second.
        let mut parts = s.trim().split('-');
        let (Some(r), Some(d), Some(k), Some(e), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad(
                "expected `r<res>-d<5 digits>-k<20 digits>-e<20 digits>`".into(),
            ));
        };
        let resolution: u32 = r
            .strip_prefix('r')
            .and_then(|v| v.parse().ok())
            .filter(|v| RESOLUTIONS.contains(v))
            .ok_or_else(|| {
                bad(format!(
                    "resolution `{r}` must be r followed by one of {RESOLUTIONS:?}"
                ))
            })?;
        fn digits<const N: usize>(
            field: &str,
            prefix: char,
            (allowed, levels): (&[u32], &[u8; 10]),
            bad: &dyn Fn(String) -> SpaceError,
        ) -> Result<[u32; N], SpaceError> {
            let body = field
                .strip_prefix(prefix)
                .ok_or_else(|| bad(format!("`{field}` must start with `{prefix}`")))?;
            let bytes = body.as_bytes();
            if bytes.len() != N || !bytes.iter().all(u8::is_ascii_digit) {
                return Err(bad(format!("`{prefix}` needs {N} digits, found `{body}`")));
            }
            let mut values = [0u32; N];
            for (v, b) in values.iter_mut().zip(bytes) {
                *v = u32::from(b - b'0');
            }
            if let Some(v) = values.iter().find(|v| levels[**v as usize] == u8::MAX) {
                return Err(bad(format!(
                    "`{prefix}` value {v} is not one of {allowed:?}"
                )));
            }
            Ok(values)
        }
        Ok(Mbv3Arch {
            resolution,
            depths: digits::<STAGES>(d, 'd', (&DEPTHS, &DEPTH_LEVELS), &bad)?,
            kernels: digits::<BLOCKS>(k, 'k', (&KERNELS, &KERNEL_LEVELS), &bad)?,
            expands: digits::<BLOCKS>(e, 'e', (&EXPANDS, &EXPAND_LEVELS), &bad)?,
        })
    }

    /// The network: a chain of its ops.
    pub fn network(&self) -> Network {
        let ops = self.ops();
        let mut net = Network::new(self.to_string(), ops[0].input());
        let mut x = Value::Input;
        for op in ops {
            x = net.push(op, &[x]);
        }
        net
    }

    /// The ops of this network, in execution order.
    pub fn ops(&self) -> Vec<Op> {
        let (mut ops, mut x) = stem_ops(self.resolution);
        for s in 0..STAGES {
            for b in 0..self.depths[s] as usize {
                let i = s * MAX_DEPTH + b;
                let op = stage_block(x, s, b, self.kernels[i], self.expands[i]);
                x = op.output();
                ops.push(op);
            }
        }
        ops.extend(head_ops(x));
        ops
    }
}

impl std::fmt::Display for Mbv3Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<String>();
        write!(
            f,
            "r{}-d{}-k{}-e{}",
            self.resolution,
            join(&self.depths),
            join(&self.kernels),
            join(&self.expands)
        )
    }
}

/// The ops every network of one resolution runs (stem, first block, head), and the input
/// tensor of each of the 20 searchable blocks, stage by stage. A block's input does not depend
/// on the other blocks' choices (blocks after a stage's first keep its shape), so at a fixed
/// resolution a network's ops are the fixed ones plus one op per running block: what
/// per-choice latency tables (ProxylessNAS, FBNet) rely on.
pub fn skeleton(resolution: u32) -> (Vec<Op>, [Tensor; BLOCKS]) {
    let (mut fixed, mut x) = stem_ops(resolution);
    let mut inputs = [x; BLOCKS];
    for s in 0..STAGES {
        for b in 0..MAX_DEPTH {
            inputs[s * MAX_DEPTH + b] = x;
            x = stage_block(x, s, b, KERNELS[0], EXPANDS[0]).output();
        }
    }
    fixed.extend(head_ops(x));
    (fixed, inputs)
}

/// Stem conv and the first (fixed) block; returns the ops and the tensor after them.
fn stem_ops(resolution: u32) -> (Vec<Op>, Tensor) {
    let stem = Op::Conv(Conv {
        input: Tensor::new(1, 3, resolution, resolution),
        cout: STEM,
        k: 3,
        stride: 2,
        groups: 1,
        kw: None,
        dilation: 1,
        pad: None,
        pre_act: Activation::None,
        act: Activation::HSwish,
    });
    let first = Op::MbConv(MbConv {
        input: stem.output(),
        cout: STEM,
        expand: 1,
        k: 3,
        stride: 1,
        se: false,
        act: Activation::Relu,
        residual: true,
    });
    let x = first.output();
    (vec![stem, first], x)
}

/// Block `b` of stage `s` with kernel `k` and expand ratio `e` on input `x` (the one
/// [`skeleton`] gives it): the first block of a stage changes width and strides; the others
/// keep the shape and add a residual.
pub fn stage_block(x: Tensor, s: usize, b: usize, k: u32, e: u32) -> Op {
    Op::MbConv(MbConv {
        input: x,
        cout: WIDTHS[s],
        expand: e,
        k,
        stride: if b == 0 { STRIDES[s] } else { 1 },
        se: SE[s],
        act: ACTS[s],
        residual: b > 0,
    })
}

fn head_ops(x: Tensor) -> Vec<Op> {
    let pointwise = |input: Tensor, cout: u32| {
        Op::Conv(Conv {
            input,
            cout,
            k: 1,
            stride: 1,
            groups: 1,
            kw: None,
            dilation: 1,
            pad: None,
            pre_act: Activation::None,
            act: Activation::HSwish,
        })
    };
    let expand = pointwise(x, FINAL_EXPAND);
    let pooled = Op::GlobalAvgPool(expand.output());
    let mix = pointwise(pooled.output(), FEATURE_MIX);
    let classifier = Op::Linear(Linear {
        input: mix.output(),
        cout: CLASSES,
    });
    vec![expand, pooled, mix, classifier]
}

/// The Once-for-All MobileNetV3 space.
pub struct Mbv3;

impl SearchSpace for Mbv3 {
    fn name(&self) -> &str {
        "mbv3"
    }

    fn describe(&self) -> String {
        "Once-for-All MobileNetV3: resolution {160..224}, 5 stages of depth {2,3,4}, kernel {3,5,7}, expand {3,4,6}"
            .into()
    }

    fn genes(&self) -> Vec<Gene> {
        let gene = |levels: usize| Gene {
            levels: levels as u8,
            ordered: true,
        };
        let mut genes = vec![gene(RESOLUTIONS.len())];
        genes.extend([gene(DEPTHS.len()); STAGES]);
        genes.extend([gene(KERNELS.len()); BLOCKS]);
        genes.extend([gene(EXPANDS.len()); BLOCKS]);
        genes
    }

    fn decode(&self, genome: &[u8]) -> String {
        let pick = |values: &[u32], g: u8| values[g as usize];
        let (d, rest) = genome[1..].split_at(STAGES);
        let (k, e) = rest.split_at(BLOCKS);
        Mbv3Arch {
            resolution: pick(&RESOLUTIONS, genome[0]),
            depths: std::array::from_fn(|i| pick(&DEPTHS, d[i])),
            kernels: std::array::from_fn(|i| pick(&KERNELS, k[i])),
            expands: std::array::from_fn(|i| pick(&EXPANDS, e[i])),
        }
        .to_string()
    }

    fn encode(&self, arch: &str) -> Result<Vec<u8>, SpaceError> {
        let a = Mbv3Arch::parse(arch)?;
        let resolution = RESOLUTIONS
            .iter()
            .position(|x| *x == a.resolution)
            .expect("parse checked the value") as u8;
        // Single digits to choice indices by table: `predict_batch` encodes millions a second.
        let level = |table: &[u8; 10], v: u32| table[v as usize];
        let mut genome = Vec::with_capacity(1 + STAGES + 2 * BLOCKS);
        genome.push(resolution);
        genome.extend(a.depths.iter().map(|v| level(&DEPTH_LEVELS, *v)));
        genome.extend(a.kernels.iter().map(|v| level(&KERNEL_LEVELS, *v)));
        genome.extend(a.expands.iter().map(|v| level(&EXPAND_LEVELS, *v)));
        Ok(genome)
    }

    fn ops(&self) -> Vec<Op> {
        let mut ops = Vec::new();
        for r in RESOLUTIONS {
            let (stem, mut x) = stem_ops(r);
            ops.extend(stem);
            for s in 0..STAGES {
                // The first block (stride, new width) and the repeated block (same shape).
                for b in 0..2 {
                    for k in KERNELS {
                        for e in EXPANDS {
                            ops.push(stage_block(x, s, b, k, e));
                        }
                    }
                    x = stage_block(x, s, b, 3, 3).output();
                }
            }
            ops.extend(head_ops(x));
        }
        distinct(ops)
    }

    fn sample(&self, rng: &mut SplitMix64) -> String {
        Mbv3Arch::random(rng).to_string()
    }

    fn network(&self, arch: &str) -> Result<Network, SpaceError> {
        Ok(Mbv3Arch::parse(arch)?.network())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn random_arch(rng: &mut SplitMix64) -> Mbv3Arch {
        Mbv3Arch::random(rng)
    }

    #[test]
    fn encoding_round_trips_and_rejects_bad_input() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..200 {
            let a = random_arch(&mut rng);
            assert_eq!(Mbv3Arch::parse(&a.to_string()).unwrap(), a);
        }
        let good = Mbv3Arch::largest().to_string();
        assert_eq!(
            good,
            format!("r224-d44444-k{}-e{}", "7".repeat(20), "6".repeat(20))
        );
        for bad in [
            good.replace("r224", "r225"),
            good.replace("d44444", "d4444"),
            good.replace("d44444", "d44445"),
            good.replacen('7', "4", 1),
            good.replacen("-e", "-x", 1),
            good.replacen('6', "a", 1),
            String::new(),
        ] {
            assert!(Mbv3Arch::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_sampled_network_uses_only_enumerated_ops() {
        let listed: HashSet<String> = Mbv3.ops().iter().map(Op::key).collect();
        // 5 resolutions x (stem + first block + 5 stages x 2 block kinds x 9 + 2 head convs
        // + pool) + the resolution-independent feature mix and classifier, less what coincides:
        // 176 and 192 (and 208 and 224) both end at 6x6 (7x7), sharing the last stage's repeated
        // blocks (9), the final expand and the pool.
        assert_eq!(listed.len(), 5 * (2 + 90 + 2) + 2 - 2 * 11);
        let mut rng = SplitMix64::new(7);
        let mut used = HashSet::new();
        for _ in 0..3000 {
            for op in random_arch(&mut rng).ops() {
                assert!(listed.contains(&op.key()), "{op} is not enumerated");
                used.insert(op.key());
            }
        }
        assert_eq!(
            used.len(),
            listed.len(),
            "every enumerated op occurs in some network"
        );
    }

    #[test]
    fn largest_network_matches_the_published_shape() {
        let ops = Mbv3Arch::largest().ops();
        assert_eq!(ops.len(), 2 + 20 + 4);
        let last_block = ops[21].output();
        assert_eq!(last_block, Tensor::new(1, 160, 7, 7));
        let macs: u64 = ops.iter().map(|o| o.flops()).sum::<u64>() / 2;
        let params: u64 = ops.iter().map(Op::params).sum();
        // OFA reports ~7.7M parameters for its largest MobileNetV3 subnet (BN folded here).
        assert!((7_000_000..8_500_000).contains(&params), "{params}");
        assert!((400_000_000..700_000_000).contains(&macs), "{macs}");
    }
}
