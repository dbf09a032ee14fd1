//! Layer-wise spaces (Once-for-All, ProxylessNAS, FBNet): a stem, stages of blocks with depth,
//! width and per-block choices, a head. Every network is a chain.
//!
//! The genome, field by field (see [`super::encoding`]): `r` the resolution, `d` each stage's
//! depth, `w` each stage's width, `k` and `e` the kernel and expand ratio of every block slot
//! (the deepest choice's slots; one per stage when shared), `b:` the named block of every slot.
//! Only fields with a choice appear. Slots beyond a stage's depth keep their genes and do not
//! run.

use hwnas_core::network::{Network, Value};
use hwnas_core::{Op, Tensor};

use super::block::{Block, Checked, Site, Template, collect};
use super::encoding::{Field, Layout};
use crate::space::{Additive, Gene, SearchSpace, SpaceError, Unit, distinct};

/// A bound on the blocks [`LayerSpace::enumerate`] builds: a space past it has more distinct
/// ops than a device could be profiled on.
const MAX_BLOCK_SHAPES: usize = 100_000;

/// What a stage's blocks choose among.
#[derive(Debug, Clone)]
pub enum Choice {
    /// One block type; its `k` and `expand` lists are the choices.
    Template(Template),
    /// Named blocks: `first` for the stage's first block, `rest` for the others.
    Named {
        first: Vec<(String, Template)>,
        rest: Vec<(String, Template)>,
    },
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub widths: Vec<u32>,
    pub depths: Vec<u32>,
    pub stride: u32,
    pub choice: Choice,
    pub share_k: bool,
    pub share_e: bool,
    pub share_block: bool,
}

impl Stage {
    pub fn max_depth(&self) -> usize {
        *self.depths.iter().max().expect("checked non-empty") as usize
    }

    /// Candidates of slot `b`: (name, template, how many k × e combinations).
    fn candidates(&self, b: usize) -> Vec<&Template> {
        self.named_candidates(b)
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Candidates of slot `b` with their names (`block` for a stage's one template).
    fn named_candidates(&self, b: usize) -> Vec<(&str, &Template)> {
        match &self.choice {
            Choice::Template(t) => vec![("block", t)],
            Choice::Named { first, rest } => {
                let list = if b == 0 { first } else { rest };
                list.iter().map(|(n, t)| (n.as_str(), t)).collect()
            }
        }
    }
}

/// What one gene decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Resolution,
    Depth(usize),
    Width(usize),
    /// Stage, slot (`None`: shared by the stage).
    K(usize, Option<usize>),
    E(usize, Option<usize>),
    Block(usize, Option<usize>),
}

pub struct LayerSpace {
    pub name: String,
    pub description: String,
    pub batch: u32,
    pub channels: u32,
    pub resolutions: Vec<u32>,
    pub stem: Vec<Block>,
    pub stages: Vec<Stage>,
    pub head: Vec<Block>,
    pub layout: Layout,
    pub roles: Vec<Role>,
}

/// One decoded architecture: a value per role.
struct Arch<'a> {
    space: &'a LayerSpace,
    genome: &'a [u8],
}

impl Arch<'_> {
    fn gene(&self, role: Role) -> Option<usize> {
        let i = self.space.roles.iter().position(|r| *r == role)?;
        Some(self.genome[i] as usize)
    }

    fn resolution(&self) -> u32 {
        self.space.resolutions[self.gene(Role::Resolution).unwrap_or(0)]
    }

    fn width(&self, s: usize) -> u32 {
        self.space.stages[s].widths[self.gene(Role::Width(s)).unwrap_or(0)]
    }

    fn depth(&self, s: usize) -> usize {
        self.space.stages[s].depths[self.gene(Role::Depth(s)).unwrap_or(0)] as usize
    }

    fn pick(&self, role: impl Fn(Option<usize>) -> Role, shared: bool, b: usize) -> usize {
        let slot = if shared { None } else { Some(b) };
        self.gene(role(slot)).unwrap_or(0)
    }

    /// The block in slot `b` of stage `s`.
    fn block(&self, s: usize, b: usize) -> Block {
        let stage = &self.space.stages[s];
        let stride = Some(if b == 0 { stage.stride } else { 1 });
        let out = Some(self.width(s));
        let t = stage.candidates(b)[self.pick(|x| Role::Block(s, x), stage.share_block, b)];
        let k = self.pick(|x| Role::K(s, x), stage.share_k, b);
        let e = self.pick(|x| Role::E(s, x), stage.share_e, b);
        t.at(k, e, out, stride)
    }
}

impl LayerSpace {
    /// The genes and fields of the declared choices.
    pub fn build_layout(&mut self) {
        let mut layout = Layout::default();
        let mut roles = Vec::new();
        let nums = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>();
        let mut field = |prefix, ordered, entries: Vec<(Role, Vec<String>)>| {
            let entries: Vec<_> = entries.into_iter().filter(|(_, c)| c.len() > 1).collect();
            roles.extend(entries.iter().map(|(r, _)| *r));
            layout.push(Field {
                prefix,
                entries: entries.into_iter().map(|(_, c)| c).collect(),
                ordered,
            });
        };
        field("r", true, vec![(Role::Resolution, nums(&self.resolutions))]);
        let stages = &self.stages;
        let per_stage = |f: &dyn Fn(usize, &Stage) -> Vec<String>, role: fn(usize) -> Role| {
            stages
                .iter()
                .enumerate()
                .map(|(s, st)| (role(s), f(s, st)))
                .collect()
        };
        field("d", true, per_stage(&|_, st| nums(&st.depths), Role::Depth));
        field("w", true, per_stage(&|_, st| nums(&st.widths), Role::Width));
        let slots = |shared: fn(&Stage) -> bool,
                     role: fn(usize, Option<usize>) -> Role,
                     values: &dyn Fn(&Stage, usize) -> Vec<String>| {
            let mut out = Vec::new();
            for (s, st) in stages.iter().enumerate() {
                if shared(st) {
                    out.push((role(s, None), values(st, 1)));
                } else {
                    out.extend((0..st.max_depth()).map(|b| (role(s, Some(b)), values(st, b))));
                }
            }
            out
        };
        let template = |st: &Stage| match &st.choice {
            Choice::Template(t) => Some(t.clone()),
            Choice::Named { .. } => None,
        };
        let ks = slots(|st| st.share_k, Role::K, &|st, _| {
            template(st).map_or(vec![], |t| nums(&t.ks))
        });
        let es = slots(|st| st.share_e, Role::E, &|st, _| {
            template(st).map_or(vec![], |t| nums(&t.expands))
        });
        let bs = slots(
            |st| st.share_block,
            Role::Block,
            &|st, b| match &st.choice {
                Choice::Named { first, rest } => {
                    let list = if b == 0 { first } else { rest };
                    list.iter().map(|(n, _)| n.clone()).collect()
                }
                Choice::Template(_) => vec![],
            },
        );
        field("k", true, ks);
        field("e", true, es);
        field("b:", false, bs);
        self.layout = layout;
        self.roles = roles;
    }

    fn input(&self, resolution: u32) -> Tensor {
        Tensor::new(self.batch, self.channels, resolution, resolution)
    }

    /// The network of a genome, as a chain.
    pub fn network_of(&self, genome: &[u8]) -> Network {
        let arch = Arch {
            space: self,
            genome,
        };
        let mut net = Network::new(self.layout.write(genome), self.input(arch.resolution()));
        let (mut x, mut t) = (Value::Input, net.input);
        let mut chain = |block: &Block, x: &mut Value, t: &mut Tensor| {
            (*x, *t) = block.push(&mut net, *x, *t);
        };
        for block in &self.stem {
            chain(block, &mut x, &mut t);
        }
        for s in 0..self.stages.len() {
            for b in 0..arch.depth(s) {
                chain(&arch.block(s, b), &mut x, &mut t);
            }
        }
        for block in &self.head {
            chain(block, &mut x, &mut t);
        }
        net
    }

    /// Every op any network can run, each with where it is declared; stops at the first op
    /// that is invalid or a stage whose candidates disagree on the output shape.
    pub fn enumerate(&self) -> Result<Vec<Op>, (Site, String)> {
        let mut ops = Vec::new();
        let mut blocks = 0;
        let mut run = |site: Site, block: &Block, t: Tensor| {
            blocks += 1;
            if blocks > MAX_BLOCK_SHAPES {
                return Err((
                    site,
                    format!(
                        "the space has more than {MAX_BLOCK_SHAPES} block shapes (resolutions x \
                         widths x choices): too many to profile one by one"
                    ),
                ));
            }
            collect(&mut ops, site, block, t)
        };
        for &r in &self.resolutions {
            let mut t = self.input(r);
            for (i, block) in self.stem.iter().enumerate() {
                t = run(Site::Stem(i), block, t)?;
            }
            let mut inputs = vec![t];
            for (s, stage) in self.stages.iter().enumerate() {
                let mut outputs = Vec::new();
                for &w in &stage.widths {
                    for &x in &inputs {
                        let after = self.enumerate_stage(s, w, x, &mut run)?;
                        outputs.push(after);
                    }
                }
                outputs.sort();
                outputs.dedup();
                inputs = outputs;
            }
            for x in inputs {
                let mut t = x;
                for (i, block) in self.head.iter().enumerate() {
                    t = run(Site::Head(i), block, t)?;
                }
            }
        }
        Ok(distinct(ops))
    }

    /// Every candidate of every slot of stage `s` at width `w` on input `x`; the shape after.
    fn enumerate_stage(
        &self,
        s: usize,
        w: u32,
        x: Tensor,
        run: &mut dyn FnMut(Site, &Block, Tensor) -> Checked,
    ) -> Checked {
        let stage = &self.stages[s];
        let mut t = x;
        // Slots after the second share its input shape, so two slots cover every op.
        for b in 0..stage.max_depth().min(2) {
            let stride = Some(if b == 0 { stage.stride } else { 1 });
            let mut shape: Option<Tensor> = None;
            for (name, template) in stage.named_candidates(b) {
                for k in 0..template.ks.len() {
                    for e in 0..template.expands.len() {
                        let block = template.at(k, e, Some(w), stride);
                        let out = run(Site::Stage(s), &block, t)
                            .map_err(|(site, why)| (site, format!("`{name}`: {why}")))?;
                        if shape.is_some_and(|sh| sh != out) {
                            return Err((
                                Site::Stage(s),
                                format!(
                                    "`{name}` gives {out} in block {b} where the candidates \
                                     before it give {} (every candidate must give the stage's \
                                     `out` channels at its stride)",
                                    shape.expect("set")
                                ),
                            ));
                        }
                        shape = Some(out);
                    }
                }
            }
            t = shape.expect("a stage has a candidate");
        }
        Ok(t)
    }

    pub fn genes_of(&self) -> Vec<Gene> {
        self.layout
            .levels()
            .into_iter()
            .map(|(levels, ordered)| Gene { levels, ordered })
            .collect()
    }

    fn bad(&self, arch: &str, why: String) -> SpaceError {
        SpaceError::BadArch {
            space: self.name.clone(),
            arch: arch.into(),
            why,
        }
    }
}

impl SearchSpace for LayerSpace {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn ops(&self) -> Vec<Op> {
        self.enumerate().expect("checked when the space was loaded")
    }

    fn network(&self, arch: &str) -> Result<Network, SpaceError> {
        let genome = self.layout.read(arch).map_err(|why| self.bad(arch, why))?;
        Ok(self.network_of(&genome))
    }

    fn genes(&self) -> Vec<Gene> {
        self.genes_of()
    }

    fn decode(&self, genome: &[u8]) -> String {
        self.layout.write(genome)
    }

    fn encode(&self, arch: &str) -> Result<Vec<u8>, SpaceError> {
        self.layout.read(arch).map_err(|why| self.bad(arch, why))
    }

    fn gene_labels(&self) -> Vec<(String, Vec<String>)> {
        let choices = self
            .layout
            .fields
            .iter()
            .flat_map(|f| f.entries.iter().cloned());
        self.roles.iter().map(|r| r.name()).zip(choices).collect()
    }

    fn additive(&self) -> Option<&dyn Additive> {
        Some(self)
    }
}

impl Role {
    fn name(self) -> String {
        let slot = |s: usize, b: Option<usize>| match b {
            Some(b) => format!("stage{}.block{b}", s + 1),
            None => format!("stage{}", s + 1),
        };
        match self {
            Role::Resolution => "resolution".into(),
            Role::Depth(s) => format!("stage{}.depth", s + 1),
            Role::Width(s) => format!("stage{}.width", s + 1),
            Role::K(s, b) => format!("{}.k", slot(s, b)),
            Role::E(s, b) => format!("{}.expand", slot(s, b)),
            Role::Block(s, b) => format!("{}.block", slot(s, b)),
        }
    }

    /// Does this gene shape block `b` of stage `s`?
    fn shapes(self, s: usize, b: usize) -> bool {
        let mine = |st: usize, slot: Option<usize>| st == s && slot.is_none_or(|x| x == b);
        match self {
            Role::Resolution => true,
            // Depth decides whether the block runs; the width before a stage is its input.
            Role::Depth(st) => st == s,
            Role::Width(st) => st == s || (b == 0 && st + 1 == s),
            Role::K(st, slot) | Role::E(st, slot) | Role::Block(st, slot) => mine(st, slot),
        }
    }
}

impl Additive for LayerSpace {
    /// The stem, every block slot, the head (which reads the last stage's width).
    fn units(&self) -> Vec<Unit> {
        let genes = |keep: &dyn Fn(Role) -> bool| -> Vec<usize> {
            (0..self.roles.len())
                .filter(|&i| keep(self.roles[i]))
                .collect()
        };
        let mut units = vec![Unit {
            name: "stem".into(),
            genes: genes(&|r| r == Role::Resolution),
        }];
        for (s, stage) in self.stages.iter().enumerate() {
            for b in 0..stage.max_depth() {
                let runs_always = b < *stage.depths.iter().min().expect("non-empty") as usize;
                units.push(Unit {
                    name: format!("stage{}.block{b}", s + 1),
                    genes: genes(&|r| r.shapes(s, b) && !(runs_always && r == Role::Depth(s))),
                });
            }
        }
        let last = self.stages.len() - 1;
        units.push(Unit {
            name: "head".into(),
            genes: genes(&|r| r == Role::Resolution || r == Role::Width(last)),
        });
        units
    }

    fn unit_network(&self, u: usize, genome: &[u8]) -> Network {
        let arch = Arch {
            space: self,
            genome,
        };
        let mut t = self.input(arch.resolution());
        let mut blocks: Vec<Block> = self.stem.clone();
        let mut at = 0;
        let mut mine = if u == 0 { 0..self.stem.len() } else { 0..0 };
        for s in 0..self.stages.len() {
            for b in 0..self.stages[s].max_depth() {
                at += 1;
                if b < arch.depth(s) {
                    if at == u {
                        mine = blocks.len()..blocks.len() + 1;
                    }
                    blocks.push(arch.block(s, b));
                }
            }
        }
        if u == at + 1 {
            mine = blocks.len()..blocks.len() + self.head.len();
        }
        blocks.extend(self.head.iter().cloned());
        // Run the chain up to the unit for its input shape; keep the unit's ops only.
        let mut scratch = Network::new("scratch", t);
        for block in &blocks[..mine.start] {
            t = block.push(&mut scratch, Value::Input, t).1;
        }
        let mut net = Network::new(format!("unit{u}"), t);
        let mut x = Value::Input;
        for block in &blocks[mine] {
            (x, t) = block.push(&mut net, x, t);
        }
        net
    }

    fn resolution(&self) -> (Option<usize>, Vec<u32>) {
        let gene = self.roles.iter().position(|r| *r == Role::Resolution);
        (gene, self.resolutions.clone())
    }
}
