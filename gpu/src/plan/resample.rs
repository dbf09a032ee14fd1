//! LRN, Resize (also opset 7–9's Upsample) and ConvTranspose nodes.

use super::lowering::attr_ints;
use super::lowering::{At, Lowering, dims4};
use super::{ConvTransposeStep, LrnStep, PlanError, ResizeStep, Step};

impl Lowering {
    pub(super) fn lrn(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let node = at.node;
        let x = self.input(at, 0)?;
        let dims = self.buffers[x].dims.clone();
        let [n, c, h, w] = dims4(&dims).map_err(|why| at.bad(why))?;
        let size = node.attr("size").map_or(0, |a| a.i);
        let size = u32::try_from(size)
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| at.bad(format!("size {size}")))?;
        let y = self.define(&at.out, dims, None);
        self.push(Step::Lrn(LrnStep {
            x,
            y,
            n: n as u32,
            c: c as u32,
            hw: (h * w) as u32,
            size,
            alpha: node.attr("alpha").map_or(1e-4, |a| a.f),
            beta: node.attr("beta").map_or(0.75, |a| a.f),
            bias: node.attr("bias").map_or(1.0, |a| a.f),
        }));
        Ok(1)
    }

    /// Resize (X, roi, scales, sizes; opset 10: X, scales) or Upsample (X, scales; opset
    /// 7–8: a `scales` attribute), nearest or linear, on H and W.
    pub(super) fn resize(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let node = at.node;
        let x = self.input(at, 0)?;
        let dims = self.buffers[x].dims.clone();
        let [n, c, h, w] = dims4(&dims).map_err(|why| at.bad(why))?;
        let name = |k: usize| node.input.get(k).filter(|s| !s.is_empty());
        let floats = |k: usize| {
            name(k)
                .and_then(|s| self.lookup(s))
                .and_then(|b| self.buffers[b].data.clone())
                .filter(|d| !d.is_empty())
        };
        let scales_input = if node.op_type == "Upsample" || node.input.len() == 2 {
            1
        } else {
            2
        };
        let (ho, wo) = if let Some(sizes) = name(3).and_then(|s| self.ints.get(s)) {
            match sizes[..] {
                [sn, sc, ho, wo] if (sn, sc) == (n as i64, c as i64) => (ho as usize, wo as usize),
                _ => return Err(at.bad(format!("sizes {sizes:?} must keep N and C"))),
            }
        } else {
            let scales = floats(scales_input)
                .or_else(|| node.attr("scales").map(|a| a.floats.clone()))
                .ok_or_else(|| at.bad("scales or sizes must be constants".into()))?;
            match scales[..] {
                [1.0, 1.0, sh, sw] => ((h as f32 * sh) as usize, (w as f32 * sw) as usize),
                _ => return Err(at.bad(format!("scales {scales:?} must keep N and C"))),
            }
        };
        let string = |k: &str, default: &str| {
            node.attr(k).map_or(default.to_string(), |a| {
                String::from_utf8_lossy(&a.s).into_owned()
            })
        };
        let mode = string("mode", "nearest");
        if !matches!(mode.as_str(), "nearest" | "linear" | "bilinear") || ho == 0 || wo == 0 {
            return Err(at.bad(format!("a {mode} resize to {ho}x{wo}")));
        }
        let coordinates = if node.op_type == "Upsample" {
            "asymmetric".to_string()
        } else {
            string("coordinate_transformation_mode", "half_pixel")
        };
        let y = self.define(&at.out, vec![n, c, ho, wo], None);
        self.push(Step::Resize(ResizeStep {
            x,
            y,
            planes: (n * c) as u32,
            h: h as u32,
            w: w as u32,
            ho: ho as u32,
            wo: wo as u32,
            linear: mode != "nearest",
            coordinates,
            nearest: string("nearest_mode", "round_prefer_floor"),
        }));
        Ok(1)
    }

    /// ConvTranspose: square kernel, uniform stride and padding, no dilation or output padding.
    pub(super) fn conv_transpose(&mut self, at: &At<'_>) -> Result<usize, PlanError> {
        let node = at.node;
        let x = self.input(at, 0)?;
        let w = self.input(at, 1)?;
        let b = match node.input.get(2).filter(|s| !s.is_empty()) {
            Some(_) => Some(self.input(at, 2)?),
            None => None,
        };
        let [n, cin, h, wi] = dims4(&self.buffers[x].dims).map_err(|why| at.bad(why))?;
        let [wcin, cout_g, kh, kw] = dims4(&self.buffers[w].dims).map_err(|why| at.bad(why))?;
        let groups = node.attr("group").map_or(1, |a| a.i).max(1) as usize;
        let stride = attr_ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
        let pads = attr_ints(node, "pads").unwrap_or_else(|| vec![0; 4]);
        let uniform = |v: &[i64]| !v.is_empty() && v.iter().all(|&x| x == v[0] && x >= 0);
        let plain =
            |k: &str, one: i64| attr_ints(node, k).is_none_or(|v| v.iter().all(|&x| x == one));
        if wcin != cin || kh != kw || !uniform(&stride) || !uniform(&pads) || stride[0] == 0 {
            return Err(at.bad(format!(
                "weight {:?}, strides {stride:?}, pads {pads:?}: square, uniform only",
                self.buffers[w].dims
            )));
        }
        if !plain("dilations", 1) || !plain("output_padding", 0) {
            return Err(at.bad("dilations and output padding are not supported".into()));
        }
        let (s, p) = (stride[0] as usize, pads[0] as usize);
        let side = |v: usize| ((v - 1) * s + kh).checked_sub(2 * p).filter(|&o| o > 0);
        let (Some(ho), Some(wo)) = (side(h), side(wi)) else {
            return Err(at.bad(format!("padding {p} leaves no output")));
        };
        let cout = cout_g * groups;
        let y = self.define(&at.out, vec![n, cout, ho, wo], None);
        self.push(Step::ConvTranspose(ConvTransposeStep {
            x,
            w,
            b,
            y,
            n: n as u32,
            cin: cin as u32,
            h: h as u32,
            w_in: wi as u32,
            cout: cout as u32,
            ho: ho as u32,
            wo: wo as u32,
            k: kh as u32,
            stride: s as u32,
            pad: p as u32,
            groups: groups as u32,
        }));
        Ok(1)
    }
}
