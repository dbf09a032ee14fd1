//! A space file as written: the TOML's keys and their types (serde). Unknown keys, wrong types
//! and unknown names (block types, activations) are refused here, by the TOML reader, with the
//! line; what needs the whole file (shapes, references, cycles) is checked by [`super::load`].

use std::collections::BTreeMap;

use hwnas_core::op::Activation;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceSpec {
    pub name: Spanned<String>,
    pub kind: SpaceKind,
    #[serde(default)]
    pub description: String,
    pub input: Spanned<InputSpec>,
    #[serde(default)]
    pub stem: Vec<Spanned<BlockSpec>>,
    #[serde(default)]
    pub stage: Vec<Spanned<StageSpec>>,
    #[serde(default)]
    pub head: Vec<Spanned<BlockSpec>>,
    /// Named blocks: the candidates a layer-wise stage chooses among, or a cell's edge ops.
    #[serde(default)]
    pub blocks: BTreeMap<String, Spanned<BlockSpec>>,
    pub cell: Option<Spanned<CellSpec>>,
    pub reduce_cell: Option<Spanned<CellSpec>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpaceKind {
    Layers,
    Cells,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    #[serde(default = "three")]
    pub channels: u32,
    pub resolution: Choices,
    #[serde(default = "one")]
    pub batch: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Output channels, or a choice of them (layer-wise); a cell stage's width per node.
    pub out: Choices,
    /// Layer-wise: how many blocks run (the first `d` of the deepest choice).
    pub depth: Option<Choices>,
    /// The stride of the stage's first block.
    pub stride: Option<u32>,
    /// Layer-wise: one block type whose `k` and `expand` may be lists of choices.
    pub block: Option<BlockSpec>,
    /// Layer-wise: the named blocks (`[blocks.NAME]`) every block of the stage chooses among.
    pub choose: Option<Vec<String>>,
    /// Layer-wise: the first block's candidates when they differ (e.g. no `skip` where the
    /// shape changes).
    pub choose_first: Option<Vec<String>>,
    /// Choices made once per stage instead of per block: any of `k`, `expand`, `block`.
    #[serde(default)]
    pub share: Vec<String>,
    /// Cell-based: how many normal cells.
    pub cells: Option<u32>,
    /// Cell-based: a fixed block before the cells (NAS-Bench-201's residual reduction).
    pub first: Option<BlockSpec>,
    /// Cell-based: the stage starts with a reduction cell (`[reduce_cell]`, stride 2).
    #[serde(default)]
    pub reduce: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockType {
    Conv,
    Dwsep,
    Mbconv,
    ResnetBasic,
    Skip,
    None,
    Pool,
    Gap,
    Linear,
    Act,
}

impl BlockType {
    pub fn name(self) -> &'static str {
        match self {
            BlockType::Conv => "conv",
            BlockType::Dwsep => "dwsep",
            BlockType::Mbconv => "mbconv",
            BlockType::ResnetBasic => "resnet_basic",
            BlockType::Skip => "skip",
            BlockType::None => "none",
            BlockType::Pool => "pool",
            BlockType::Gap => "gap",
            BlockType::Linear => "linear",
            BlockType::Act => "act",
        }
    }

    /// The keys a block of this type takes besides `type`.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            BlockType::Conv => &[
                "out",
                "k",
                "stride",
                "groups",
                "depthwise",
                "dilation",
                "pre_act",
                "act",
            ],
            BlockType::Dwsep => &["out", "k", "stride", "dilation", "pre_act", "act", "repeat"],
            BlockType::Mbconv => &[
                "out", "k", "expand", "stride", "groups", "se", "act", "residual",
            ],
            BlockType::ResnetBasic => &["out", "k", "stride", "pre_act"],
            BlockType::Skip => &["out", "stride", "reduce"],
            BlockType::None => &[],
            BlockType::Pool => &["pool", "k", "stride", "pad"],
            BlockType::Gap => &[],
            BlockType::Linear => &["out"],
            BlockType::Act => &["act", "bn"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolType {
    Avg,
    Max,
}

/// How a `skip` that changes the shape (stride or width) is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SkipReduce {
    /// A 1x1 convolution with the stride, then ReLU (FBNet's `Identity`).
    #[default]
    Conv,
    /// DARTS's FactorizedReduce: ReLU, two 1x1 stride-2 convs of half the width, concatenated.
    Factorized,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSpec {
    #[serde(rename = "type")]
    pub ty: Option<BlockType>,
    pub out: Option<u32>,
    pub k: Option<Choices>,
    pub expand: Option<Choices>,
    pub stride: Option<u32>,
    pub groups: Option<u32>,
    pub depthwise: Option<bool>,
    pub dilation: Option<u32>,
    pub se: Option<bool>,
    pub act: Option<Activation>,
    pub pre_act: Option<Activation>,
    pub residual: Option<bool>,
    pub pool: Option<PoolType>,
    pub pad: Option<u32>,
    pub bn: Option<bool>,
    pub repeat: Option<u32>,
    pub reduce: Option<SkipReduce>,
}

impl BlockSpec {
    /// The keys this spec sets (besides `type`), to check them against its type's.
    pub fn keys_set(&self) -> Vec<&'static str> {
        let set = [
            ("out", self.out.is_some()),
            ("k", self.k.is_some()),
            ("expand", self.expand.is_some()),
            ("stride", self.stride.is_some()),
            ("groups", self.groups.is_some()),
            ("depthwise", self.depthwise.is_some()),
            ("dilation", self.dilation.is_some()),
            ("se", self.se.is_some()),
            ("act", self.act.is_some()),
            ("pre_act", self.pre_act.is_some()),
            ("residual", self.residual.is_some()),
            ("pool", self.pool.is_some()),
            ("pad", self.pad.is_some()),
            ("bn", self.bn.is_some()),
            ("repeat", self.repeat.is_some()),
            ("reduce", self.reduce.is_some()),
        ];
        set.into_iter().filter(|s| s.1).map(|s| s.0).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellOutput {
    /// The last node (NAS-Bench-201).
    Last,
    /// Every computed node, concatenated along channels (DARTS).
    Concat,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellSpec {
    /// Computed nodes (the cell's inputs not counted).
    pub nodes: u32,
    /// Cell inputs: 1 (the previous cell) or 2 (the two previous cells, DARTS).
    #[serde(default = "one")]
    pub inputs: u32,
    /// Each node picks this many inputs from earlier nodes (DARTS: 2).
    pub pick: Option<u32>,
    /// The edges that exist, `[from, to]` by node number (inputs first); without `pick` or
    /// `edges`, every earlier node feeds every later one (NAS-Bench-201).
    pub edges: Option<Vec<[u32; 2]>>,
    /// The edge ops, names of `[blocks.NAME]` (order is the genome's).
    pub ops: Vec<String>,
    pub output: CellOutput,
}

fn one() -> u32 {
    1
}

fn three() -> u32 {
    3
}

/// The most choices one gene may have (a gene is a byte).
pub const MAX_CHOICES: usize = 250;

/// One value or a non-empty list of choices, written `3` or `[3, 5, 7]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choices(pub Vec<u32>);

impl Choices {
    pub fn is_choice(&self) -> bool {
        self.0.len() > 1
    }
}

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Choices;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a positive integer or a non-empty list of them")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Choices, E> {
                positive(v).map(|v| Choices(vec![v]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Choices, A::Error> {
                let mut values = Vec::new();
                while let Some(v) = seq.next_element::<i64>()? {
                    let v = positive(v)?;
                    if values.contains(&v) {
                        return Err(de::Error::custom(format!("{v} is listed twice")));
                    }
                    values.push(v);
                }
                if values.is_empty() {
                    return Err(de::Error::custom("an empty list of choices"));
                }
                if values.len() > MAX_CHOICES {
                    return Err(de::Error::custom(format!(
                        "more than {MAX_CHOICES} choices"
                    )));
                }
                Ok(Choices(values))
            }
        }
        d.deserialize_any(V)
    }
}

fn positive<E: de::Error>(v: i64) -> Result<u32, E> {
    u32::try_from(v)
        .ok()
        .filter(|v| (1..=1 << 20).contains(v))
        .ok_or_else(|| E::custom(format!("{v} is not a positive integer (at most 2^20)")))
}
