//! Search spaces declared in TOML files: layer-wise ([`layers::LayerSpace`]) and cell-based
//! ([`cells::CellSpace`]). [`load`] reads a file ([`spec`] is its form), checks everything a
//! network of the space could run (every op of every choice, the shapes between blocks), and
//! returns the space; errors name the file, the line and the key. [`block`] turns one
//! declared block into vocabulary ops.
//!
//! The README documents every key; `spaces/` holds the shipped files.

use std::collections::BTreeMap;
use std::path::Path;

use toml::Spanned;

pub mod block;
pub mod cells;
pub mod encoding;
pub mod layers;
pub mod spec;

use crate::space::SearchSpace;
use block::Site;
use block::Template;
use cells::{CellDef, CellSpace, CellStage, Edges};
use layers::{Choice, LayerSpace, Stage};
use spec::{BlockSpec, BlockType, CellOutput, CellSpec, SpaceKind, SpaceSpec, StageSpec};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpaceFileError {
    #[error("cannot read space file {path}: {why}")]
    Io { path: String, why: String },
    #[error("space file {path}: {why}")]
    Syntax { path: String, why: String },
    #[error("space file {path}, line {line}, `{key}`: {why}")]
    Invalid {
        path: String,
        line: usize,
        key: String,
        why: String,
    },
}

/// Read and check a space file.
pub fn load(path: &Path) -> Result<Box<dyn SearchSpace>, SpaceFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| SpaceFileError::Io {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    parse(&text, &path.display().to_string())
}

/// Check a space file's text; `path` names it in errors.
pub fn parse(text: &str, path: &str) -> Result<Box<dyn SearchSpace>, SpaceFileError> {
    let spec: SpaceSpec = toml::from_str(text).map_err(|e| SpaceFileError::Syntax {
        path: path.into(),
        why: e.to_string().trim_end().to_string(),
    })?;
    let ctx = Ctx { text, path };
    match spec.kind {
        SpaceKind::Layers => Ok(Box::new(ctx.layers(spec)?)),
        SpaceKind::Cells => Ok(Box::new(ctx.cells(spec)?)),
    }
}

/// The file being checked, to turn a span into a line.
struct Ctx<'a> {
    text: &'a str,
    path: &'a str,
}

type Result<T, E = SpaceFileError> = std::result::Result<T, E>;

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Ctx<'_> {
    fn err<T>(&self, at: &std::ops::Range<usize>, key: &str, why: impl Into<String>) -> Result<T> {
        let line = self.text[..at.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        Err(SpaceFileError::Invalid {
            path: self.path.into(),
            line,
            key: key.into(),
            why: why.into(),
        })
    }

    /// A block's type and keys, checked; `choices` allows lists for `k` and `expand`, `sized`
    /// says the stage or cell sets `out` and `stride`.
    fn template(
        &self,
        spec: &BlockSpec,
        at: &std::ops::Range<usize>,
        key: &str,
        choices: bool,
        sized: bool,
    ) -> Result<Template> {
        let Some(ty) = spec.ty else {
            return self.err(at, &format!("{key}.type"), "every block needs a `type`");
        };
        for k in spec.keys_set() {
            if !ty.keys().contains(&k) {
                return self.err(
                    at,
                    &format!("{key}.{k}"),
                    format!(
                        "a `{}` block takes no `{k}` (it takes: {})",
                        ty.name(),
                        ty.keys().join(", ")
                    ),
                );
            }
            if sized && (k == "out" || k == "stride") {
                return self.err(
                    at,
                    &format!("{key}.{k}"),
                    "set `out` and `stride` on the stage, not on its blocks",
                );
            }
        }
        for (k, c) in [("k", &spec.k), ("expand", &spec.expand)] {
            if !choices && c.as_ref().is_some_and(|c| c.is_choice()) {
                return self.err(
                    at,
                    &format!("{key}.{k}"),
                    "a list of choices is allowed only in a stage's `block` \
                     (declare one named block per choice and `choose` among them)",
                );
            }
        }
        if spec.groups == Some(0) || spec.repeat == Some(0) || spec.dilation == Some(0) {
            return self.err(
                at,
                key,
                "`groups`, `repeat` and `dilation` must be at least 1",
            );
        }
        if spec.repeat.is_some_and(|r| r > 8) {
            return self.err(at, &format!("{key}.repeat"), "at most 8");
        }
        if spec.groups.is_some_and(|g| g > 1) && spec.se == Some(true) {
            return self.err(at, &format!("{key}.se"), "a grouped MBConv has no SE here");
        }
        Ok(Template::new(spec, ty))
    }

    /// An error in the block (or cell) declared at `site`.
    fn at_site<T>(&self, spec: &SpaceSpec, site: Site, why: String) -> Result<T> {
        let (list, i, key) = match site {
            Site::Stem(i) => (&spec.stem, i, "stem"),
            Site::Head(i) => (&spec.head, i, "head"),
            Site::Stage(i) => {
                return self.err(&spec.stage[i].span(), &format!("stage[{}]", i + 1), why);
            }
            Site::Cell(reduction) => {
                let (cell, key) = match reduction {
                    true => (&spec.reduce_cell, "reduce_cell"),
                    false => (&spec.cell, "cell"),
                };
                let at = cell.as_ref().map_or(spec.name.span(), Spanned::span);
                return self.err(&at, key, why);
            }
        };
        self.err(&list[i].span(), &format!("{key}[{}]", i + 1), why)
    }

    fn fixed_blocks(&self, list: &[Spanned<BlockSpec>], key: &str) -> Result<Vec<Template>> {
        list.iter()
            .enumerate()
            .map(|(i, b)| {
                let t = self.template(
                    b.get_ref(),
                    &b.span(),
                    &format!("{key}[{}]", i + 1),
                    false,
                    false,
                )?;
                if t.base.ty == BlockType::None {
                    return self.err(
                        &b.span(),
                        &format!("{key}[{}].type", i + 1),
                        "`none` is only a cell's edge op",
                    );
                }
                Ok(t)
            })
            .collect()
    }

    /// The named blocks a list refers to.
    fn named(
        &self,
        spec: &SpaceSpec,
        names: &[String],
        at: &std::ops::Range<usize>,
        key: &str,
        sized: bool,
    ) -> Result<Vec<(String, Template)>> {
        if names.is_empty() {
            return self.err(at, key, "an empty list of choices");
        }
        if names.len() > spec::MAX_CHOICES {
            return self.err(at, key, format!("more than {} choices", spec::MAX_CHOICES));
        }
        let mut out: Vec<(String, Template)> = Vec::new();
        for name in names {
            if out.iter().any(|(n, _)| n == name) {
                return self.err(at, key, format!("`{name}` is listed twice"));
            }
            let Some(b) = spec.blocks.get(name) else {
                let known: Vec<&str> = spec.blocks.keys().map(String::as_str).collect();
                return self.err(
                    at,
                    key,
                    format!("no block `{name}` (declared: {})", known.join(", ")),
                );
            };
            let t = self.template(
                b.get_ref(),
                &b.span(),
                &format!("blocks.{name}"),
                false,
                sized,
            )?;
            out.push((name.clone(), t));
        }
        Ok(out)
    }

    fn check_names(&self, spec: &SpaceSpec) -> Result<()> {
        if !is_name(spec.name.get_ref()) {
            return self.err(&spec.name.span(), "name", "letters, digits and `_` only");
        }
        for (name, b) in &spec.blocks {
            if !is_name(name) {
                return self.err(
                    &b.span(),
                    &format!("blocks.{name}"),
                    "a block name is letters, digits and `_` only",
                );
            }
        }
        Ok(())
    }

    fn layers(&self, spec: SpaceSpec) -> Result<LayerSpace> {
        self.check_names(&spec)?;
        let input = spec.input.get_ref();
        if spec.cell.is_some() || spec.reduce_cell.is_some() {
            let at = spec
                .cell
                .as_ref()
                .or(spec.reduce_cell.as_ref())
                .expect("one")
                .span();
            return self.err(
                &at,
                "cell",
                "a `layers` space has no cells (kind = \"cells\")",
            );
        }
        if spec.stage.is_empty() {
            return self.err(
                &spec.input.span(),
                "stage",
                "a layer-wise space needs a [[stage]]",
            );
        }
        let stem = self.fixed_blocks(&spec.stem, "stem")?;
        let head = self.fixed_blocks(&spec.head, "head")?;
        let mut stages = Vec::new();
        for (i, st) in spec.stage.iter().enumerate() {
            stages.push(self.layer_stage(
                &spec,
                st.get_ref(),
                &st.span(),
                &format!("stage[{}]", i + 1),
            )?);
        }
        let mut space = LayerSpace {
            name: spec.name.get_ref().clone(),
            description: spec.description.clone(),
            batch: input.batch,
            channels: input.channels,
            resolutions: input.resolution.0.clone(),
            stem: stem.iter().map(Template::fixed).collect(),
            stages,
            head: head.iter().map(Template::fixed).collect(),
            layout: Default::default(),
            roles: vec![],
        };
        space.build_layout();
        if let Err((site, why)) = space.enumerate() {
            return self.at_site(&spec, site, why);
        }
        Ok(space)
    }

    fn layer_stage(
        &self,
        spec: &SpaceSpec,
        st: &StageSpec,
        at: &std::ops::Range<usize>,
        key: &str,
    ) -> Result<Stage> {
        if st.cells.is_some() || st.first.is_some() || st.reduce {
            return self.err(
                at,
                key,
                "`cells`, `first` and `reduce` belong to cell-based spaces",
            );
        }
        for s in &st.share {
            if !["k", "expand", "block"].contains(&s.as_str()) {
                return self.err(
                    at,
                    &format!("{key}.share"),
                    format!("`{s}` is not one of k, expand, block"),
                );
            }
        }
        let shared = |name: &str| st.share.iter().any(|s| s == name);
        let choice = match (&st.block, &st.choose) {
            (Some(b), None) => {
                if st.choose_first.is_some() {
                    return self.err(at, &format!("{key}.choose_first"), "goes with `choose`");
                }
                Choice::Template(self.template(b, at, &format!("{key}.block"), true, true)?)
            }
            (None, Some(names)) => {
                let rest = self.named(spec, names, at, &format!("{key}.choose"), true)?;
                let first = match &st.choose_first {
                    Some(f) if shared("block") => {
                        return self.err(
                            at,
                            &format!("{key}.choose_first"),
                            format!("cannot go with a shared block ({f:?})"),
                        );
                    }
                    Some(f) => self.named(spec, f, at, &format!("{key}.choose_first"), true)?,
                    None => rest.clone(),
                };
                Choice::Named { first, rest }
            }
            _ => return self.err(at, key, "give a stage either `block` or `choose`"),
        };
        let none = match &choice {
            Choice::Template(t) => t.base.ty == BlockType::None,
            Choice::Named { first, rest } => first
                .iter()
                .chain(rest)
                .any(|(_, t)| t.base.ty == BlockType::None),
        };
        if none {
            return self.err(
                at,
                key,
                "`none` is only a cell's edge op (a layer to drop is a `skip`)",
            );
        }
        let depths = st.depth.as_ref().map_or(vec![1], |d| d.0.clone());
        if depths.iter().any(|d| *d > 64) {
            return self.err(at, &format!("{key}.depth"), "at most 64 blocks a stage");
        }
        Ok(Stage {
            widths: st.out.0.clone(),
            depths,
            stride: st.stride.unwrap_or(1),
            choice,
            share_k: shared("k"),
            share_e: shared("expand"),
            share_block: shared("block"),
        })
    }

    fn cells(&self, spec: SpaceSpec) -> Result<CellSpace> {
        self.check_names(&spec)?;
        let input = spec.input.get_ref();
        if input.resolution.is_choice() {
            return self.err(
                &spec.input.span(),
                "input.resolution",
                "a cell space has one resolution",
            );
        }
        let Some(cell) = &spec.cell else {
            return self.err(&spec.name.span(), "cell", "a `cells` space needs a [cell]");
        };
        let normal = self.cell_def(&spec, cell.get_ref(), &cell.span(), "cell")?;
        let reduction = match &spec.reduce_cell {
            Some(r) => Some(self.cell_def(&spec, r.get_ref(), &r.span(), "reduce_cell")?),
            None => None,
        };
        let mut stages = Vec::new();
        for (i, st) in spec.stage.iter().enumerate() {
            let (s, at) = (st.get_ref(), st.span());
            let key = format!("stage[{}]", i + 1);
            if s.depth.is_some() || s.block.is_some() || s.choose.is_some() || !s.share.is_empty() {
                return self.err(
                    &at,
                    &key,
                    "`depth`, `block`, `choose` and `share` belong to layer-wise spaces",
                );
            }
            if s.out.is_choice() {
                return self.err(&at, &format!("{key}.out"), "a cell stage has one width");
            }
            if s.reduce && reduction.is_none() {
                return self.err(&at, &format!("{key}.reduce"), "needs a [reduce_cell]");
            }
            // A fixed block before the cells makes the stage's width unless it says otherwise
            // (then the cells' check names the mismatch).
            let first = match &s.first {
                Some(b) => Some(
                    self.template(b, &at, &format!("{key}.first"), false, false)?
                        .at(0, 0, b.out.or(Some(s.out.0[0])), None),
                ),
                None => None,
            };
            if s.cells.is_some_and(|c| c > 64) {
                return self.err(&at, &format!("{key}.cells"), "at most 64 cells a stage");
            }
            stages.push(CellStage {
                width: s.out.0[0],
                cells: s.cells.unwrap_or(1),
                first,
                reduce: s.reduce,
            });
        }
        let stem = self.fixed_blocks(&spec.stem, "stem")?;
        let head = self.fixed_blocks(&spec.head, "head")?;
        let r = input.resolution.0[0];
        let space = CellSpace {
            name: spec.name.get_ref().clone(),
            description: spec.description.clone(),
            input: hwnas_core::Tensor::new(input.batch, input.channels, r, r),
            stem: stem.iter().map(Template::fixed).collect(),
            stages,
            head: head.iter().map(Template::fixed).collect(),
            normal,
            reduction,
        };
        if let Err((site, why)) = space.enumerate() {
            return self.at_site(&spec, site, why);
        }
        Ok(space)
    }

    fn cell_def(
        &self,
        spec: &SpaceSpec,
        c: &CellSpec,
        at: &std::ops::Range<usize>,
        key: &str,
    ) -> Result<CellDef> {
        if !(1..=2).contains(&c.inputs) {
            return self.err(at, &format!("{key}.inputs"), "1 or 2");
        }
        if !(1..=32).contains(&c.nodes) {
            return self.err(
                at,
                &format!("{key}.nodes"),
                "between 1 and 32 computed nodes",
            );
        }
        let (inputs, nodes) = (c.inputs as usize, c.nodes as usize);
        let edges = match (c.pick, &c.edges) {
            (Some(_), Some(_)) => {
                return self.err(
                    at,
                    &format!("{key}.pick"),
                    "give `pick` or `edges`, not both",
                );
            }
            (Some(p), None) if (1..=8).contains(&p) => Edges::Pick(p as usize),
            (Some(_), None) => return self.err(at, &format!("{key}.pick"), "between 1 and 8"),
            (None, None) => Edges::Fixed((0..nodes).map(|j| (0..inputs + j).collect()).collect()),
            (None, Some(list)) => Edges::Fixed(self.explicit_edges(list, inputs, nodes, at, key)?),
        };
        let ops = self.named(spec, &c.ops, at, &format!("{key}.ops"), true)?;
        let has_none = ops.iter().any(|(_, t)| t.base.ty == BlockType::None);
        if c.output == CellOutput::Concat && has_none {
            return self.err(
                at,
                &format!("{key}.ops"),
                "a cell with a concatenated output has no `none` op: an empty node would leave a \
                 hole in the concatenation (DARTS's discrete cells never hold `none`)",
            );
        }
        Ok(CellDef {
            inputs,
            nodes,
            edges,
            ops,
            output: c.output,
        })
    }

    fn explicit_edges(
        &self,
        list: &[[u32; 2]],
        inputs: usize,
        nodes: usize,
        at: &std::ops::Range<usize>,
        key: &str,
    ) -> Result<Vec<Vec<usize>>> {
        let mut into: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &[from, to] in list {
            let (from, to) = (from as usize, to as usize);
            if to < inputs || to >= inputs + nodes {
                return self.err(
                    at,
                    &format!("{key}.edges"),
                    format!(
                        "edge {from}→{to}: node {to} is not a computed node ({inputs}..{})",
                        inputs + nodes - 1
                    ),
                );
            }
            if from >= to {
                return self.err(at, &format!("{key}.edges"), format!("edge {from}→{to} goes back: nodes run in number order, so this would be a cycle"));
            }
            let sources = into.entry(to).or_default();
            if sources.contains(&from) {
                return self.err(
                    at,
                    &format!("{key}.edges"),
                    format!("edge {from}→{to} is listed twice"),
                );
            }
            sources.push(from);
        }
        (inputs..inputs + nodes)
            .map(|n| match into.remove(&n) {
                Some(mut s) => {
                    s.sort();
                    Ok(s)
                }
                None => self.err(
                    at,
                    &format!("{key}.edges"),
                    format!("node {n} has no edge into it"),
                ),
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests;
