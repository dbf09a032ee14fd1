//! LRN and Resize (also opset 7–9's Upsample) nodes.

use super::lowering::{At, Lowering, dims4};
use super::{LrnStep, PlanError, ResizeStep, Step};

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
}
