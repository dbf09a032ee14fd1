//! Cell-based spaces (NAS-Bench-201, DARTS): one searched cell (and optionally a searched
//! reduction cell) repeated through a fixed macro skeleton.
//!
//! A cell has `inputs` input nodes (the previous cell, or the two previous cells) and `nodes`
//! computed nodes in order. Each computed node sums the edges into it; an edge runs one op of
//! the cell's list on an earlier node. Which edges exist is fixed (every earlier node, or a
//! declared list) or chosen (each node picks `pick` inputs). An edge whose op is `none`, or
//! whose source is empty, carries nothing, and no kernel runs for it.
//!
//! The architecture string is NAS-Bench-201's: per node `|op~source|...|`, nodes joined by `+`;
//! with a reduction cell, the normal and the reduction cell joined by `-`.

use hwnas_core::network::{Network, Value};
use hwnas_core::op::{Activation, Concat, Conv};
use hwnas_core::{Op, Tensor};

use super::block::{Block, Site, Template, collect, conv};
use super::spec::{BlockSpec, BlockType, CellOutput, SkipReduce};
use crate::space::{Gene, SearchSpace, SpaceError, distinct};

/// The edges into each computed node: fixed sources, or `pick` chosen ones.
#[derive(Debug, Clone, PartialEq)]
pub enum Edges {
    Fixed(Vec<Vec<usize>>),
    Pick(usize),
}

#[derive(Debug, Clone)]
pub struct CellDef {
    pub inputs: usize,
    pub nodes: usize,
    pub edges: Edges,
    pub ops: Vec<(String, Template)>,
    pub output: CellOutput,
}

/// One edge of a decoded cell: op index and source node.
type Edge = (usize, usize);

impl CellDef {
    /// Genes: per node, per edge, (the source if picked, then) the op.
    fn genes(&self) -> Vec<Gene> {
        let op = Gene {
            levels: self.ops.len() as u8,
            ordered: false,
        };
        let mut genes = Vec::new();
        for j in 0..self.nodes {
            let node = self.inputs + j;
            match &self.edges {
                Edges::Fixed(sources) => genes.extend(sources[j].iter().map(|_| op)),
                Edges::Pick(p) => {
                    let src = Gene {
                        levels: node as u8,
                        ordered: false,
                    };
                    for _ in 0..*p {
                        genes.extend([src, op]);
                    }
                }
            }
        }
        genes
    }

    fn edges_of(&self, genome: &[u8]) -> Vec<Vec<Edge>> {
        let mut at = 0;
        let mut next = || {
            at += 1;
            genome[at - 1] as usize
        };
        (0..self.nodes)
            .map(|j| match &self.edges {
                Edges::Fixed(sources) => sources[j].iter().map(|&s| (next(), s)).collect(),
                Edges::Pick(p) => (0..*p)
                    .map(|_| {
                        let src = next();
                        (next(), src)
                    })
                    .collect(),
            })
            .collect()
    }

    fn write(&self, genome: &[u8]) -> String {
        let nodes: Vec<String> = self
            .edges_of(genome)
            .iter()
            .map(|edges| {
                let body: String = edges
                    .iter()
                    .map(|&(op, src)| format!("{}~{src}|", self.ops[op].0))
                    .collect();
                format!("|{body}")
            })
            .collect();
        nodes.join("+")
    }

    fn read(&self, s: &str) -> Result<Vec<u8>, String> {
        let nodes: Vec<&str> = s.split('+').collect();
        if nodes.len() != self.nodes {
            return Err(format!(
                "expected {} nodes separated by `+`, found {}",
                self.nodes,
                nodes.len()
            ));
        }
        let mut genome = Vec::new();
        for (j, node) in nodes.iter().enumerate() {
            let here = self.inputs + j;
            let inner = node
                .strip_prefix('|')
                .and_then(|n| n.strip_suffix('|'))
                .ok_or_else(|| format!("node {here} must be written `|op~src|...|`"))?;
            let parts: Vec<&str> = inner.split('|').collect();
            let want = match &self.edges {
                Edges::Fixed(sources) => sources[j].len(),
                Edges::Pick(p) => *p,
            };
            if parts.len() != want {
                return Err(format!(
                    "node {here} needs {want} edges, found {}",
                    parts.len()
                ));
            }
            for (i, part) in parts.iter().enumerate() {
                let (name, src) = part
                    .split_once('~')
                    .ok_or_else(|| format!("edge `{part}` must be `op~source`"))?;
                let src: usize = src.parse().ok().filter(|s| *s < here).ok_or_else(|| {
                    format!("edge `{part}`: a source must be a node before {here}")
                })?;
                if let Edges::Fixed(sources) = &self.edges {
                    if sources[j][i] != src {
                        return Err(format!(
                            "edge `{part}` of node {here} must come from node {}",
                            sources[j][i]
                        ));
                    }
                } else {
                    genome.push(src as u8);
                }
                let names: Vec<&str> = self.ops.iter().map(|(n, _)| n.as_str()).collect();
                let op = names
                    .iter()
                    .position(|n| *n == name)
                    .ok_or_else(|| format!("unknown op `{name}` ({})", names.join(", ")))?;
                genome.push(op as u8);
            }
        }
        Ok(genome)
    }
}

#[derive(Debug, Clone)]
pub struct CellStage {
    pub width: u32,
    pub cells: u32,
    pub first: Option<Block>,
    pub reduce: bool,
}

pub struct CellSpace {
    pub name: String,
    pub description: String,
    pub input: Tensor,
    pub stem: Vec<Block>,
    pub stages: Vec<CellStage>,
    pub head: Vec<Block>,
    pub normal: CellDef,
    pub reduction: Option<CellDef>,
}

/// The tensors a cell reads: the outputs of the two cells before it (the same one twice at
/// the start and after a fixed block).
#[derive(Clone, Copy)]
struct States {
    prev_prev: (Value, Tensor),
    prev: (Value, Tensor),
}

impl States {
    /// After a fixed block: both inputs of the next cell are its output.
    fn of(y: (Value, Tensor)) -> States {
        States {
            prev_prev: y,
            prev: y,
        }
    }

    /// After a cell whose output is `y`.
    fn after(self, y: (Value, Tensor)) -> States {
        States {
            prev_prev: self.prev,
            prev: y,
        }
    }
}

impl CellSpace {
    fn cells(&self) -> Vec<&CellDef> {
        std::iter::once(&self.normal)
            .chain(&self.reduction)
            .collect()
    }

    /// The cells of a stage in order, each with whether it is a reduction cell.
    fn positions<'a>(&'a self, stage: &CellStage) -> impl Iterator<Item = (&'a CellDef, bool)> {
        let reduce = self.reduction.as_ref().filter(|_| stage.reduce);
        let normal = (0..stage.cells).map(|_| (&self.normal, false));
        reduce.map(|d| (d, true)).into_iter().chain(normal)
    }

    fn split<'g>(&self, genome: &'g [u8]) -> (&'g [u8], &'g [u8]) {
        genome.split_at(self.normal.genes().len())
    }

    fn write(&self, genome: &[u8]) -> String {
        let (n, r) = self.split(genome);
        match &self.reduction {
            Some(red) => format!("{}-{}", self.normal.write(n), red.write(r)),
            None => self.normal.write(n),
        }
    }

    fn read(&self, arch: &str) -> Result<Vec<u8>, SpaceError> {
        let bad = |why: String| SpaceError::BadArch {
            space: self.name.clone(),
            arch: arch.into(),
            why,
        };
        let parts: Vec<&str> = arch.trim().split('-').collect();
        let cells = self.cells();
        if parts.len() != cells.len() {
            return Err(bad(format!(
                "expected {} cell(s) joined by `-`, found {}",
                cells.len(),
                parts.len()
            )));
        }
        let mut genome = Vec::new();
        for (cell, part) in cells.iter().zip(parts) {
            genome.extend(cell.read(part).map_err(bad)?);
        }
        Ok(genome)
    }

    /// The network of a genome.
    pub fn network_of(&self, genome: &[u8]) -> Network {
        let (n, r) = self.split(genome);
        let normal = self.normal.edges_of(n);
        let reduction = self.reduction.as_ref().map(|c| c.edges_of(r));
        let mut net = Network::new(self.write(genome), self.input);
        let mut x = (Value::Input, self.input);
        for block in &self.stem {
            x = block.push(&mut net, x.0, x.1);
        }
        let mut states = States::of(x);
        for stage in &self.stages {
            if let Some(block) = &stage.first {
                states = States::of(block.push(&mut net, states.prev.0, states.prev.1));
            }
            for (def, is_reduction) in self.positions(stage) {
                let edges = match (is_reduction, &reduction) {
                    (true, Some(r)) => r,
                    _ => &normal,
                };
                let y = push_cell(&mut net, def, edges, states, stage.width, is_reduction);
                states = states.after(y);
            }
        }
        let mut x = states.prev;
        for block in &self.head {
            x = block.push(&mut net, x.0, x.1);
        }
        net
    }

    /// Every op any network can run: each cell position's shapes are fixed, so every edge op
    /// on every source of every position, and the fixed blocks.
    pub fn enumerate(&self) -> Result<Vec<Op>, (Site, String)> {
        let mut ops = Vec::new();
        let mut t = self.input;
        for (i, block) in self.stem.iter().enumerate() {
            t = collect(&mut ops, Site::Stem(i), block, t)?;
        }
        let mut states = States::of((Value::Input, t));
        for (s, stage) in self.stages.iter().enumerate() {
            if let Some(block) = &stage.first {
                let t = collect(&mut ops, Site::Stage(s), block, states.prev.1)?;
                states = States::of((Value::Input, t));
            }
            for (def, is_reduction) in self.positions(stage) {
                let y = every_edge(&mut ops, def, states, stage.width, is_reduction)
                    .map_err(|why| (Site::Cell(is_reduction), why))?;
                states = states.after(y);
            }
        }
        let mut t = states.prev.1;
        for (i, block) in self.head.iter().enumerate() {
            t = collect(&mut ops, Site::Head(i), block, t)?;
        }
        Ok(distinct(ops))
    }
}

/// The cell's inputs after preprocessing: with two inputs or a concatenated output, each input
/// goes through ReLU + 1x1 conv to the cell's width (DARTS), or a factorized reduction when it
/// is twice the size of the other (the cell before was a reduction).
fn cell_inputs(net: &mut Network, def: &CellDef, s: States, width: u32) -> Vec<(Value, Tensor)> {
    let raw = if def.inputs == 1 {
        vec![s.prev]
    } else {
        vec![s.prev_prev, s.prev]
    };
    if def.inputs == 1 && def.output == CellOutput::Last {
        return raw;
    }
    let size = s.prev.1.h;
    raw.into_iter()
        .map(|(v, t)| {
            if t.h > size {
                let factorized = BlockSpec {
                    reduce: Some(SkipReduce::Factorized),
                    ..BlockSpec::default()
                };
                let stride = t.h.div_ceil(size);
                Template::new(&factorized, BlockType::Skip)
                    .at(0, 0, Some(width), Some(stride))
                    .push(net, v, t)
            } else {
                let relu_conv = Conv {
                    pre_act: Activation::Relu,
                    ..conv(t, width, 1, 1, 1, Activation::None)
                };
                (net.push(Op::Conv(relu_conv), &[v]), relu_conv.output())
            }
        })
        .collect()
}

/// The block an edge runs: the op at the cell's width, striding when it leaves an input of a
/// reduction cell.
fn edge_block(def: &CellDef, op: usize, src: usize, width: u32, is_reduction: bool) -> Block {
    let stride = if is_reduction && src < def.inputs {
        2
    } else {
        1
    };
    def.ops[op].1.at(0, 0, Some(width), Some(stride))
}

fn push_cell(
    net: &mut Network,
    def: &CellDef,
    edges: &[Vec<Edge>],
    s: States,
    width: u32,
    is_reduction: bool,
) -> (Value, Tensor) {
    let mut nodes: Vec<Option<(Value, Tensor)>> = cell_inputs(net, def, s, width)
        .into_iter()
        .map(Some)
        .collect();
    for node_edges in edges {
        let mut terms = Vec::new();
        for &(op, src) in node_edges {
            let block = edge_block(def, op, src, width, is_reduction);
            if block.ty == BlockType::None {
                continue;
            }
            if let Some((v, t)) = nodes[src] {
                terms.push(block.push(net, v, t));
            }
        }
        nodes.push(terms.into_iter().reduce(|a, b| {
            let op = Op::Add(a.1);
            (net.push(op, &[a.0, b.0]), a.1)
        }));
    }
    let computed = &nodes[def.inputs..];
    match def.output {
        CellOutput::Last => computed.last().copied().flatten().unwrap_or_else(|| {
            let (v, t) = nodes[0].expect("an input node");
            (net.push(Op::Skip(t), &[v]), t)
        }),
        CellOutput::Concat => computed
            .iter()
            .map(|n| n.expect("a concat cell has no `none` op, so every node is live"))
            .reduce(|a, b| {
                let op = Op::Concat(Concat {
                    input: a.1,
                    cout: a.1.c + b.1.c,
                });
                (net.push(op, &[a.0, b.0]), op.output())
            })
            .expect("a cell has a computed node"),
    }
}

/// Every op a cell position can run: every edge op on every source, the sums, the
/// preprocessing and the output's join. Returns the cell's output shape, or what is wrong.
fn every_edge(
    ops: &mut Vec<Op>,
    def: &CellDef,
    s: States,
    width: u32,
    is_reduction: bool,
) -> Result<(Value, Tensor), String> {
    let mut scratch = Network::new("cell", s.prev.1);
    let inputs = cell_inputs(&mut scratch, def, s, width);
    let shapes: Vec<Tensor> = inputs.iter().map(|x| x.1).collect();
    let halve = |v: u32| if is_reduction { v.div_ceil(2) } else { v };
    let node = Tensor::new(shapes[0].n, width, halve(shapes[0].h), halve(shapes[0].w));
    for (src, t) in shapes.iter().enumerate() {
        if t.h != shapes[0].h || (t.c != width && def.output == CellOutput::Last) {
            return Err(format!(
                "cell input {src} is {t}, the cell works at {width} channels on {}x{}: \
                 give the stage a `first` block that makes the shape",
                shapes[0].h, shapes[0].w
            ));
        }
    }
    let live = def.ops.iter().any(|(_, t)| t.base.ty != BlockType::None);
    for j in 0..def.nodes {
        let here = def.inputs + j;
        for src in 0..here {
            let t = shapes.get(src).copied().unwrap_or(node);
            for (op, (name, _)) in def.ops.iter().enumerate() {
                let block = edge_block(def, op, src, width, is_reduction);
                if block.ty == BlockType::None {
                    continue;
                }
                let out = collect(ops, Site::Cell(is_reduction), &block, t)
                    .map_err(|(_, e)| format!("op `{name}` on node {src}: {e}"))?;
                if out != node {
                    return Err(format!(
                        "op `{name}` on node {src} ({t}) gives {out}, the node is {node}"
                    ));
                }
            }
        }
    }
    let many = match &def.edges {
        Edges::Fixed(sources) => sources.iter().any(|s| s.len() > 1),
        Edges::Pick(p) => *p > 1,
    };
    if live && many {
        scratch.push(Op::Add(node), &[Value::Input, Value::Input]);
    }
    let out = match def.output {
        CellOutput::Last => {
            if def.ops.iter().any(|(_, t)| t.base.ty == BlockType::None) {
                scratch.push(Op::Skip(shapes[0]), &[Value::Input]);
            }
            node
        }
        CellOutput::Concat => {
            let mut acc = node;
            for _ in 1..def.nodes {
                let op = Op::Concat(Concat {
                    input: acc,
                    cout: acc.c + width,
                });
                scratch.push(op, &[Value::Input, Value::Input]);
                acc = op.output();
            }
            acc
        }
    };
    ops.extend(scratch.ops().copied());
    Ok((Value::Input, out))
}

impl SearchSpace for CellSpace {
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
        Ok(self.network_of(&self.read(arch)?))
    }

    fn genes(&self) -> Vec<Gene> {
        self.cells().iter().flat_map(|c| c.genes()).collect()
    }

    fn decode(&self, genome: &[u8]) -> String {
        self.write(genome)
    }

    fn encode(&self, arch: &str) -> Result<Vec<u8>, SpaceError> {
        self.read(arch)
    }

    /// `edge<src>to<node>` (fixed edges) or `node<n>.in<p>` and `node<n>.in<p>.op` (picked),
    /// prefixed by `reduce.` for the reduction cell.
    fn gene_labels(&self) -> Vec<(String, Vec<String>)> {
        let mut labels = Vec::new();
        for (c, def) in self.cells().into_iter().enumerate() {
            let prefix = if c == 0 { "" } else { "reduce." };
            let ops: Vec<String> = def.ops.iter().map(|(n, _)| n.clone()).collect();
            for j in 0..def.nodes {
                let node = def.inputs + j;
                match &def.edges {
                    Edges::Fixed(sources) => labels.extend(
                        sources[j]
                            .iter()
                            .map(|s| (format!("{prefix}edge{s}to{node}"), ops.clone())),
                    ),
                    Edges::Pick(p) => {
                        for i in 0..*p {
                            let name = format!("{prefix}node{node}.in{i}");
                            let sources = (0..node).map(|s| s.to_string()).collect();
                            labels.push((name.clone(), sources));
                            labels.push((format!("{name}.op"), ops.clone()));
                        }
                    }
                }
            }
        }
        labels
    }
}
