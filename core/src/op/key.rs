//! The canonical key of an op (`kind-field:value-...`), written and parsed back.

use std::fmt;
use std::str::FromStr;

use super::*;

impl Op {
    /// The canonical, human-readable key: `kind-field:value-...`. Parsing it with
    /// [`Op::from_key`] gives back the same op.
    pub fn key(&self) -> String {
        let b = |v: bool| u8::from(v);
        match self {
            Op::Conv(c) => format!(
                "conv-in:{}-out:{}-k:{}{}-s:{}-g:{}{}{}-pre:{}-act:{}",
                c.input,
                c.cout,
                c.k,
                c.kw.map_or(String::new(), |w| format!("x{w}")),
                c.stride,
                c.groups,
                if c.dilation == 1 {
                    String::new()
                } else {
                    format!("-d:{}", c.dilation)
                },
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
            Op::Lrn(l) => format!("lrn-in:{}-size:{}", l.input, l.size),
            Op::ConvTranspose(c) => format!(
                "convt-in:{}-out:{}-k:{}-s:{}-p:{}-g:{}",
                c.input, c.cout, c.k, c.stride, c.pad, c.groups
            ),
            Op::Resize(r) => format!(
                "resize-in:{}-to:{}x{}-mode:{}",
                r.input,
                r.h,
                r.w,
                r.mode.name()
            ),
            Op::Patch(p) => format!(
                "patch-in:{}-out:{}-p:{}-cls:{}",
                p.input,
                p.cout,
                p.patch,
                b(p.cls)
            ),
            Op::Mhsa(m) => format!("mhsa-in:{}-h:{}-hd:{}", m.input, m.heads, m.head_dim),
            Op::Mlp(m) => format!("mlp-in:{}-hidden:{}", m.input, m.hidden),
            Op::Encoder(e) => format!(
                "encoder-in:{}-h:{}-hd:{}-mlp:{}",
                e.input, e.heads, e.head_dim, e.hidden
            ),
            Op::CnBlock(b) => format!("cnblock-in:{}-hidden:{}-k:{}", b.input, b.hidden, b.k),
            Op::GlobalAvgPool(t)
            | Op::Add(t)
            | Op::Skip(t)
            | Op::Zero(t)
            | Op::Scale(t)
            | Op::Softmax(t)
            | Op::LayerNorm(t)
            | Op::ClassToken(t)
            | Op::ToTokens(t)
            | Op::TokenMean(t)
            | Op::ChannelNorm(t) => {
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
            "conv" => {
                let cout = fields.num("out")?;
                let (k, kw) = kernel(fields.take("k")?)?;
                Op::Conv(
                    Conv {
                        input,
                        cout,
                        k,
                        stride: fields.num("s")?,
                        groups: fields.num("g")?,
                        kw: None,
                        dilation: fields.optional_num("d")?.unwrap_or(1),
                        pad: None,
                        pre_act: fields.take("pre")?.parse()?,
                        act: fields.take("act")?.parse()?,
                    }
                    .with_kernel(k, kw)
                    .with_pad_field(fields.optional_num("p")?),
                )
            }
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
            "convt" => Op::ConvTranspose(ConvTranspose {
                input,
                cout: fields.num("out")?,
                k: fields.num("k")?,
                stride: fields.num("s")?,
                pad: fields.num("p")?,
                groups: fields.num("g")?,
            }),
            "lrn" => Op::Lrn(Lrn {
                input,
                size: fields.num("size")?,
            }),
            "resize" => resize(&mut fields, input)?,
            "patch" | "ln" | "mhsa" | "mlp" | "encoder" | "cls" | "tokens" | "tokmean" => {
                transformer(kind, &mut fields, input)?
            }
            "ln2d" => Op::ChannelNorm(input),
            "cnblock" => Op::CnBlock(crate::op::CnBlock {
                input,
                hidden: fields.num("hidden")?,
                k: fields.num("k")?,
            }),
            other => return Err(OpError::UnknownKind(other.into())),
        };
        fields.finish()?;
        op.validate()?;
        Ok(op)
    }
}

/// The fields of a transformer op.
fn transformer(kind: &str, fields: &mut KeyFields<'_>, input: Tensor) -> Result<Op, OpError> {
    Ok(match kind {
        "patch" => Op::Patch(PatchEmbed {
            input,
            cout: fields.num("out")?,
            patch: fields.num("p")?,
            cls: fields.flag("cls")?,
        }),
        "ln" => Op::LayerNorm(input),
        "mhsa" => Op::Mhsa(Mhsa {
            input,
            heads: fields.num("h")?,
            head_dim: fields.num("hd")?,
        }),
        "mlp" => Op::Mlp(Mlp {
            input,
            hidden: fields.num("hidden")?,
        }),
        "encoder" => Op::Encoder(Encoder {
            input,
            heads: fields.num("h")?,
            head_dim: fields.num("hd")?,
            hidden: fields.num("mlp")?,
        }),
        "cls" => Op::ClassToken(input),
        "tokens" => Op::ToTokens(input),
        "tokmean" => Op::TokenMean(input),
        other => return Err(OpError::UnknownKind(other.into())),
    })
}

/// A resize's fields: `to:HxW` and `mode`.
fn resize(fields: &mut KeyFields<'_>, input: Tensor) -> Result<Op, OpError> {
    let to = fields.take("to")?;
    let size = to
        .split_once('x')
        .and_then(|(h, w)| Some((h.parse().ok()?, w.parse().ok()?)));
    let Some((h, w)) = size else {
        return Err(OpError::Field {
            field: "to".into(),
            value: to.into(),
            expected: "HxW, e.g. 56x56".into(),
        });
    };
    let mode = match fields.take("mode")? {
        "nearest" => ResizeMode::Nearest,
        "linear" => ResizeMode::Linear,
        v => {
            return Err(OpError::Field {
                field: "mode".into(),
                value: v.into(),
                expected: "nearest or linear".into(),
            });
        }
    };
    Ok(Op::Resize(Resize { input, h, w, mode }))
}

/// A conv's `k` field: `3` (square) or `1x7` (height x width).
fn kernel(v: &str) -> Result<(u32, u32), OpError> {
    let bad = || OpError::Field {
        field: "k".into(),
        value: v.into(),
        expected: "a kernel size, e.g. 3, or HxW, e.g. 1x7".into(),
    };
    let num = |s: &str| s.parse::<u32>().map_err(|_| bad());
    match v.split_once('x') {
        Some((h, w)) => Ok((num(h)?, num(w)?)),
        None => num(v).map(|k| (k, k)),
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
