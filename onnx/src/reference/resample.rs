//! LRN and Resize (also opset 7–9's Upsample), for the reference evaluator.

use super::Nd;
use crate::proto::NodeProto;

fn dims4(x: &Nd, what: &str) -> Result<[usize; 4], String> {
    x.dims[..]
        .try_into()
        .map_err(|_| format!("{what} input must be 4-D, got {:?}", x.dims))
}

/// `y = x / (bias + alpha / size * sum of x² over the size channels around)^beta`.
pub(super) fn lrn(node: &NodeProto, x: &Nd) -> Result<Nd, String> {
    let [n, c, h, w] = dims4(x, "LRN")?;
    let size = node.attr("size").map_or(0, |a| a.i);
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .ok_or("LRN needs a positive size")?;
    let alpha = node.attr("alpha").map_or(1e-4, |a| a.f);
    let beta = node.attr("beta").map_or(0.75, |a| a.f);
    let bias = node.attr("bias").map_or(1.0, |a| a.f);
    let (before, after) = ((size - 1) / 2, size / 2);
    let hw = h * w;
    let mut data = vec![0f32; x.data.len()];
    for b in 0..n {
        for ch in 0..c {
            let (lo, hi) = (ch.saturating_sub(before), (ch + after).min(c - 1));
            for p in 0..hw {
                let sum: f32 = (lo..=hi)
                    .map(|k| x.data[(b * c + k) * hw + p].powi(2))
                    .sum();
                let i = (b * c + ch) * hw + p;
                data[i] = x.data[i] / (bias + alpha / size as f32 * sum).powf(beta);
            }
        }
    }
    Ok(Nd {
        dims: x.dims.clone(),
        data,
    })
}

/// The output size and the input coordinate of output index `o` along one axis.
struct Axis {
    size_in: usize,
    size_out: usize,
    scale: f32,
}

impl Axis {
    fn source(&self, o: usize, mode: &[u8]) -> f32 {
        let o = o as f32;
        match mode {
            b"asymmetric" => o / self.scale,
            b"align_corners" if self.size_out > 1 => {
                o * (self.size_in - 1) as f32 / (self.size_out - 1) as f32
            }
            b"align_corners" => 0.0,
            b"pytorch_half_pixel" if self.size_out == 1 => 0.0,
            _ => (o + 0.5) / self.scale - 0.5,
        }
    }
}

/// Resize (inputs X, roi, scales, sizes; opset 10: X, scales) and Upsample (X, scales), nearest
/// or linear, on the two spatial axes.
pub(super) fn resize(node: &NodeProto, a: &[&Nd]) -> Result<Nd, String> {
    let x = a[0];
    let [n, c, h, w] = dims4(x, &node.op_type)?;
    let non_empty = |k: usize| a.get(k).filter(|t| !t.data.is_empty());
    let scales_input = if node.op_type == "Upsample" || a.len() == 2 {
        1
    } else {
        2
    };
    let (ho, wo) = if let Some(sizes) = non_empty(3) {
        (sizes.data[2] as usize, sizes.data[3] as usize)
    } else {
        let s = non_empty(scales_input)
            .map(|t| t.data.clone())
            .or_else(|| node.attr("scales").map(|a| a.floats.clone()))
            .ok_or("Resize needs scales or sizes")?;
        let s = s.get(2..4).ok_or("Resize scales must have 4 values")?;
        ((h as f32 * s[0]) as usize, (w as f32 * s[1]) as usize)
    };
    let axis = |size_in: usize, size_out: usize| Axis {
        size_in,
        size_out,
        scale: size_out as f32 / size_in as f32,
    };
    let (ay, ax) = (axis(h, ho), axis(w, wo));
    let string =
        |k: &str, default: &'static [u8]| node.attr(k).map_or(default.to_vec(), |a| a.s.clone());
    let mode = string("mode", b"nearest");
    let coordinates = if node.op_type == "Upsample" {
        b"asymmetric".to_vec()
    } else {
        string("coordinate_transformation_mode", b"half_pixel")
    };
    let nearest = string("nearest_mode", b"round_prefer_floor");
    let pick = |v: f32, size: usize| -> usize {
        let i = match nearest.as_slice() {
            b"floor" => v.floor(),
            b"ceil" => v.ceil(),
            b"round_prefer_ceil" => (v + 0.5).floor(),
            _ => (v - 0.5).ceil(),
        };
        (i.max(0.0) as usize).min(size - 1)
    };
    // Linear: the two neighbours and the weight of the second, clamped to the edges.
    let lerp = |v: f32, size: usize| -> (usize, usize, f32) {
        let v = v.clamp(0.0, (size - 1) as f32);
        let i0 = v.floor() as usize;
        (i0, (i0 + 1).min(size - 1), v - i0 as f32)
    };
    let mut data = Vec::with_capacity(n * c * ho * wo);
    for plane in x.data.chunks_exact(h * w) {
        for oy in 0..ho {
            let sy = ay.source(oy, &coordinates);
            for ox in 0..wo {
                let sx = ax.source(ox, &coordinates);
                let v = if mode == b"linear" {
                    let ((y0, y1, fy), (x0, x1, fx)) = (lerp(sy, h), lerp(sx, w));
                    let at = |y: usize, x: usize| plane[y * w + x];
                    let top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * fx;
                    let bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * fx;
                    top + (bottom - top) * fy
                } else {
                    plane[pick(sy, h) * w + pick(sx, w)]
                };
                data.push(v);
            }
        }
    }
    Ok(Nd {
        dims: vec![n, c, ho, wo],
        data,
    })
}
