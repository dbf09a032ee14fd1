//! A ViT space like AutoFormer-Tiny's (Chen et al., ICCV 2021): a 224×224 image cut into
//! 16×16 patches (196 tokens and a class token), a stack of pre-norm encoder blocks, a final
//! LayerNorm and a 1000-way classifier on the class token.
//!
//! Choices: the embedding width {192, 216, 240} (the whole network's), the depth {12, 13, 14},
//! and per layer the heads {3, 4} (64 channels each, as AutoFormer keeps them) and the MLP
//! ratio {3.5, 4} (hidden width `ratio × embedding`).
//!
//! Encoding: `e192-d12-h<14 digits>-m<14 digits>`: the width, the depth, one digit per layer
//! for the heads (3 or 4) and one for the MLP ratio in halves (7 = 3.5, 8 = 4). Layers beyond
//! the depth keep their digits but do not run.

use hwnas_core::network::{Network, Value};
use hwnas_core::op::{Encoder, Linear, PatchEmbed};
use hwnas_core::{Op, Tensor};

use super::{Additive, Gene, SearchSpace, SpaceError, Unit, distinct};

pub const EMBEDS: [u32; 3] = [192, 216, 240];
pub const DEPTHS: [u32; 3] = [12, 13, 14];
pub const HEADS: [u32; 2] = [3, 4];
/// MLP ratios in halves (7 = 3.5).
pub const MLP_HALVES: [u32; 2] = [7, 8];
pub const MAX_DEPTH: usize = 14;
pub const HEAD_DIM: u32 = 64;
pub const RESOLUTION: u32 = 224;
pub const PATCH: u32 = 16;
const CLASSES: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VitArch {
    pub embed: u32,
    pub depth: u32,
    pub heads: [u32; MAX_DEPTH],
    pub mlp_halves: [u32; MAX_DEPTH],
}

impl VitArch {
    pub fn parse(s: &str) -> Result<VitArch, SpaceError> {
        let bad = |why: String| SpaceError::BadArch {
            space: "vit".into(),
            arch: s.into(),
            why,
        };
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [e, d, h, m] = parts[..] else {
            return Err(bad(
                "expected `e<width>-d<depth>-h<14 digits>-m<14 digits>`".into(),
            ));
        };
        let number = |field: &str, prefix: char, allowed: &[u32]| {
            field
                .strip_prefix(prefix)
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|v| allowed.contains(v))
                .ok_or_else(|| bad(format!("`{field}` must be {prefix} and one of {allowed:?}")))
        };
        let digits = |field: &str, prefix: char, allowed: &[u32]| {
            let body = field.strip_prefix(prefix).unwrap_or("");
            let values: Vec<u32> = body.chars().filter_map(|c| c.to_digit(10)).collect();
            if body.len() != MAX_DEPTH
                || values.len() != MAX_DEPTH
                || values.iter().any(|v| !allowed.contains(v))
            {
                return Err(bad(format!(
                    "`{field}` must be {prefix} and {MAX_DEPTH} digits, each one of {allowed:?}"
                )));
            }
            Ok(std::array::from_fn(|i| values[i]))
        };
        Ok(VitArch {
            embed: number(e, 'e', &EMBEDS)?,
            depth: number(d, 'd', &DEPTHS)?,
            heads: digits(h, 'h', &HEADS)?,
            mlp_halves: digits(m, 'm', &MLP_HALVES)?,
        })
    }

    /// Encoder block `i`.
    pub fn layer(&self, i: usize) -> Op {
        encoder(self.embed, self.heads[i], self.mlp_halves[i])
    }

    /// The network: patch embedding, the blocks, the head.
    pub fn network(&self) -> Network {
        let mut net = Network::new(self.to_string(), image());
        let mut x = Value::Input;
        let (patch, head) = (patch(self.embed), head_ops(self.embed));
        let blocks = (0..self.depth as usize).map(|i| self.layer(i));
        for op in std::iter::once(patch).chain(blocks).chain(head) {
            x = net.push(op, &[x]);
        }
        net
    }
}

impl std::fmt::Display for VitArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<String>();
        write!(
            f,
            "e{}-d{}-h{}-m{}",
            self.embed,
            self.depth,
            join(&self.heads),
            join(&self.mlp_halves)
        )
    }
}

fn image() -> Tensor {
    Tensor::new(1, 3, RESOLUTION, RESOLUTION)
}

fn patch(embed: u32) -> Op {
    Op::Patch(PatchEmbed {
        input: image(),
        cout: embed,
        patch: PATCH,
        cls: true,
    })
}

fn tokens(embed: u32) -> Tensor {
    patch(embed).output()
}

fn encoder(embed: u32, heads: u32, mlp_halves: u32) -> Op {
    Op::Encoder(Encoder {
        input: tokens(embed),
        heads,
        head_dim: HEAD_DIM,
        hidden: embed * mlp_halves / 2,
    })
}

/// The final LayerNorm, the class token, the classifier.
fn head_ops(embed: u32) -> Vec<Op> {
    let t = tokens(embed);
    let cls = Op::ClassToken(t);
    let classifier = Op::Linear(Linear {
        input: cls.output(),
        cout: CLASSES,
    });
    vec![Op::LayerNorm(t), cls, classifier]
}

/// The AutoFormer-Tiny-like ViT space.
pub struct Vit;

const FIRST_HEADS_GENE: usize = 2;
const FIRST_MLP_GENE: usize = FIRST_HEADS_GENE + MAX_DEPTH;

impl SearchSpace for Vit {
    fn name(&self) -> &str {
        "vit"
    }

    fn describe(&self) -> String {
        "AutoFormer-Tiny-like ViT: 224x224, patch 16, width {192,216,240}, depth {12,13,14}, per layer heads {3,4} and MLP ratio {3.5,4}"
            .into()
    }

    fn genes(&self) -> Vec<Gene> {
        let gene = |levels: usize| Gene {
            levels: levels as u8,
            ordered: true,
        };
        let mut genes = vec![gene(EMBEDS.len()), gene(DEPTHS.len())];
        genes.extend([gene(HEADS.len()); MAX_DEPTH]);
        genes.extend([gene(MLP_HALVES.len()); MAX_DEPTH]);
        genes
    }

    fn gene_labels(&self) -> Vec<(String, Vec<String>)> {
        let labels = |values: &[u32]| values.iter().map(u32::to_string).collect::<Vec<_>>();
        let mut out = vec![
            ("embed".to_string(), labels(&EMBEDS)),
            ("depth".to_string(), labels(&DEPTHS)),
        ];
        out.extend((0..MAX_DEPTH).map(|i| (format!("heads{i}"), labels(&HEADS))));
        out.extend((0..MAX_DEPTH).map(|i| (format!("mlp{i}"), vec!["3.5".into(), "4".into()])));
        out
    }

    fn decode(&self, genome: &[u8]) -> String {
        let pick = |values: &[u32], g: u8| values[g as usize];
        VitArch {
            embed: pick(&EMBEDS, genome[0]),
            depth: pick(&DEPTHS, genome[1]),
            heads: std::array::from_fn(|i| pick(&HEADS, genome[FIRST_HEADS_GENE + i])),
            mlp_halves: std::array::from_fn(|i| pick(&MLP_HALVES, genome[FIRST_MLP_GENE + i])),
        }
        .to_string()
    }

    fn encode(&self, arch: &str) -> Result<Vec<u8>, SpaceError> {
        let a = VitArch::parse(arch)?;
        let level = |values: &[u32], v: u32| {
            values
                .iter()
                .position(|x| *x == v)
                .expect("parse checked the value") as u8
        };
        let mut genome = vec![level(&EMBEDS, a.embed), level(&DEPTHS, a.depth)];
        genome.extend(a.heads.iter().map(|v| level(&HEADS, *v)));
        genome.extend(a.mlp_halves.iter().map(|v| level(&MLP_HALVES, *v)));
        Ok(genome)
    }

    fn ops(&self) -> Vec<Op> {
        let mut ops = Vec::new();
        for e in EMBEDS {
            ops.push(patch(e));
            ops.extend(head_ops(e));
            for h in HEADS {
                ops.extend(MLP_HALVES.map(|m| encoder(e, h, m)));
            }
        }
        distinct(ops)
    }

    fn network(&self, arch: &str) -> Result<Network, SpaceError> {
        Ok(VitArch::parse(arch)?.network())
    }

    fn additive(&self) -> Option<&dyn Additive> {
        Some(self)
    }
}

impl Additive for Vit {
    /// The patch embedding, each layer, the head.
    fn units(&self) -> Vec<Unit> {
        let mut units = vec![Unit {
            name: "patch".into(),
            genes: vec![0],
        }];
        for i in 0..MAX_DEPTH {
            let mut genes = vec![0];
            // Layers every depth runs do not depend on the depth.
            if i >= DEPTHS[0] as usize {
                genes.push(1);
            }
            genes.extend([FIRST_HEADS_GENE + i, FIRST_MLP_GENE + i]);
            units.push(Unit {
                name: format!("layer{i}"),
                genes,
            });
        }
        units.push(Unit {
            name: "head".into(),
            genes: vec![0],
        });
        units
    }

    fn unit_network(&self, u: usize, genome: &[u8]) -> Network {
        let arch = VitArch::parse(&self.decode(genome)).expect("a decoded genome parses");
        let ops = match u {
            0 => vec![patch(arch.embed)],
            u if u <= MAX_DEPTH => {
                let runs = u - 1 < arch.depth as usize;
                runs.then(|| arch.layer(u - 1)).into_iter().collect()
            }
            _ => head_ops(arch.embed),
        };
        let input = ops.first().map_or(tokens(arch.embed), Op::input);
        let mut net = Network::new(format!("unit{u}"), input);
        let mut x = Value::Input;
        for op in ops {
            x = net.push(op, &[x]);
        }
        net
    }

    fn resolution(&self) -> (Option<usize>, Vec<u32>) {
        (None, vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwnas_core::rng::SplitMix64;
    use std::collections::HashSet;

    #[test]
    fn encoding_round_trips_and_rejects_bad_input() {
        let mut rng = SplitMix64::new(3);
        for _ in 0..200 {
            let arch = Vit.sample(&mut rng);
            assert_eq!(VitArch::parse(&arch).unwrap().to_string(), arch);
            assert_eq!(Vit.decode(&Vit.encode(&arch).unwrap()), arch);
        }
        let good = format!("e216-d13-h{}-m{}", "34".repeat(7), "78".repeat(7));
        assert!(VitArch::parse(&good).is_ok());
        for bad in [
            good.replace("e216", "e200"),
            good.replace("d13", "d15"),
            good.replacen('3', "5", 2),
            good.replacen('7', "6", 1),
            good.replace("-m", "-x"),
            format!("e216-d13-h{}-m{}", "3".repeat(13), "7".repeat(14)),
            String::new(),
        ] {
            assert!(VitArch::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_network_uses_only_enumerated_ops_and_the_units_sum_to_it() {
        let listed: HashSet<String> = Vit.ops().iter().map(Op::key).collect();
        // Per width: patch, LayerNorm, class token, classifier, 2 x 2 encoder blocks.
        assert_eq!(listed.len(), 3 * (4 + 4));
        let mut rng = SplitMix64::new(11);
        for _ in 0..300 {
            let arch = Vit.sample(&mut rng);
            let net = Vit.network(&arch).unwrap();
            net.validate().unwrap();
            let mut keys: Vec<String> = net.ops().map(Op::key).collect();
            assert!(keys.iter().all(|k| listed.contains(k)), "{arch}");
            let genome = Vit.encode(&arch).unwrap();
            let mut unit_keys: Vec<String> = (0..Vit.units().len())
                .flat_map(|u| {
                    Vit.unit_network(u, &genome)
                        .ops()
                        .map(Op::key)
                        .collect::<Vec<_>>()
                })
                .collect();
            keys.sort();
            unit_keys.sort();
            assert_eq!(keys, unit_keys, "{arch}");
        }
    }

    #[test]
    fn deit_tiny_is_in_the_space_with_its_published_size() {
        // DeiT-Tiny: width 192, 12 layers of 3 heads and MLP ratio 4.
        let arch = format!("e192-d12-h{}-m{}", "3".repeat(14), "8".repeat(14));
        let net = Vit.network(&arch).unwrap();
        assert_eq!(net.nodes.len(), 1 + 12 + 3);
        // timm's deit_tiny_patch16_224: 5,717,416 parameters, 1.3 GFLOPs (multiply-adds).
        assert_eq!(net.params(), 5_717_416);
        let gmacs = net.macs() as f64 / 1e9;
        assert!((1.2..1.3).contains(&gmacs), "{gmacs}");
    }
}
