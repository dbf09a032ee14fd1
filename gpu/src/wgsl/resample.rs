//! Local response normalization, resizing and transposed convolution: one invocation per
//! output element.

use super::*;
use crate::plan::{ConvTransposeStep, LrnStep, ResizeStep};

/// Each of the `total` outputs by `body`, which computes `y[i]` for its `i`, reading `reads`
/// (bound as `x`, then `w` and `b`).
fn per_element(
    name: &'static str,
    consts_src: String,
    reads: &[usize],
    y: usize,
    total: u32,
    body: &str,
) -> Kernel {
    let (groups, wg) = flat_groups(total.div_ceil(64));
    let mut s = consts_src;
    s += &bindings(&["x", "w", "b"][..reads.len()]);
    let _ = write!(
        s,
        r#"
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{
    {wg}
    let i = wg * 64u + li;
    if (i >= {total}u) {{ return; }}
{body}
}}
"#
    );
    Kernel {
        name,
        source: s,
        reads: reads.to_vec(),
        write: y,
        workgroups: groups,
    }
}

pub(super) fn lrn(l: &LrnStep) -> Kernel {
    let total = l.n * l.c * l.hw;
    let c = consts(&[
        ("C", l.c),
        ("HW", l.hw),
        ("BEFORE", (l.size - 1) / 2),
        ("AFTER", l.size / 2),
    ]);
    let body = format!(
        r#"    let p = i % HW;
    let ch = (i / HW) % C;
    let base = i - ch * HW;
    let lo = select(0u, ch - BEFORE, ch >= BEFORE);
    let hi = min(ch + AFTER, C - 1u);
    var sum = 0.0;
    for (var k = lo; k <= hi; k++) {{
        let v = x[base + k * HW];
        sum += v * v;
    }}
    y[i] = x[i] / pow({} + {} * sum, {});"#,
        lit(l.bias),
        lit(l.alpha / l.size as f32),
        lit(l.beta)
    );
    per_element("lrn", c, &[l.x], l.y, total, &body)
}

/// WGSL for the input coordinate of output index `o` along an axis (`IN` -> `OUT` elements),
/// as ONNX's `coordinate_transformation_mode` defines it.
fn source_coordinate(mode: &str, axis: &str) -> String {
    let (inp, out) = (format!("f32({axis}_IN)"), format!("f32({axis}_OUT)"));
    match mode {
        "asymmetric" => format!("o * {inp} / {out}"),
        "align_corners" => {
            format!("select(0.0, o * ({inp} - 1.0) / ({out} - 1.0), {axis}_OUT > 1u)")
        }
        "pytorch_half_pixel" => {
            format!("select(0.0, (o + 0.5) * {inp} / {out} - 0.5, {axis}_OUT > 1u)")
        }
        _ => format!("(o + 0.5) * {inp} / {out} - 0.5"),
    }
}

/// WGSL rounding of a coordinate to a pixel, as ONNX's `nearest_mode` defines it.
fn nearest_rounding(mode: &str) -> &'static str {
    match mode {
        "floor" => "floor(v)",
        "ceil" => "ceil(v)",
        "round_prefer_ceil" => "floor(v + 0.5)",
        _ => "ceil(v - 0.5)",
    }
}

pub(super) fn resize(r: &ResizeStep) -> Kernel {
    let total = r.planes * r.ho * r.wo;
    let mut c = consts(&[
        ("Y_IN", r.h),
        ("Y_OUT", r.ho),
        ("X_IN", r.w),
        ("X_OUT", r.wo),
    ]);
    let _ = write!(
        c,
        "fn src_y(o: f32) -> f32 {{ return {}; }}\nfn src_x(o: f32) -> f32 {{ return {}; }}\n",
        source_coordinate(&r.coordinates, "Y"),
        source_coordinate(&r.coordinates, "X")
    );
    let _ = writeln!(
        c,
        "fn pick(v: f32, size: u32) -> u32 {{ return u32(clamp({}, 0.0, f32(size - 1u))); }}",
        nearest_rounding(&r.nearest)
    );
    let head = r#"    let ox = i % X_OUT;
    let oy = (i / X_OUT) % Y_OUT;
    let base = (i / (X_OUT * Y_OUT)) * Y_IN * X_IN;
    let sy = src_y(f32(oy));
    let sx = src_x(f32(ox));"#;
    let body = if r.linear {
        format!(
            r#"{head}
    let vy = clamp(sy, 0.0, f32(Y_IN - 1u));
    let vx = clamp(sx, 0.0, f32(X_IN - 1u));
    let y0 = u32(floor(vy));
    let x0 = u32(floor(vx));
    let y1 = min(y0 + 1u, Y_IN - 1u);
    let x1 = min(x0 + 1u, X_IN - 1u);
    let fy = vy - f32(y0);
    let fx = vx - f32(x0);
    let a = x[base + y0 * X_IN + x0];
    let b = x[base + y0 * X_IN + x1];
    let c = x[base + y1 * X_IN + x0];
    let d = x[base + y1 * X_IN + x1];
    let top = a + (b - a) * fx;
    let bottom = c + (d - c) * fx;
    y[i] = top + (bottom - top) * fy;"#
        )
    } else {
        format!("{head}\n    y[i] = x[base + pick(sy, Y_IN) * X_IN + pick(sx, X_IN)];")
    };
    per_element("resize", c, &[r.x], r.y, total, &body)
}

pub(super) fn conv_transpose(c: &ConvTransposeStep) -> Kernel {
    let total = c.n * c.cout * c.ho * c.wo;
    let consts_src = consts(&[
        ("CIN", c.cin),
        ("CIN_G", c.cin / c.groups),
        ("COUT", c.cout),
        ("COUT_G", c.cout / c.groups),
        ("H", c.h),
        ("W", c.w_in),
        ("HO", c.ho),
        ("WO", c.wo),
        ("K", c.k),
        ("S", c.stride),
        ("P", c.pad),
    ]);
    let bias = if c.b.is_some() { "b[co]" } else { "0.0" };
    // Gather form: output (oy, ox) takes input (iy, ix) through tap (ky, kx) when
    // iy * S + ky = oy + P.
    let body = format!(
        r#"    let ox = i % WO;
    let oy = (i / WO) % HO;
    let co = (i / (WO * HO)) % COUT;
    let img = i / (WO * HO * COUT);
    let g = co / COUT_G;
    let cog = co % COUT_G;
    var acc = {bias};
    for (var cig = 0u; cig < CIN_G; cig++) {{
        let ci = g * CIN_G + cig;
        for (var ky = 0u; ky < K; ky++) {{
            let ty = i32(oy + P) - i32(ky);
            if (ty < 0 || u32(ty) % S != 0u || u32(ty) / S >= H) {{ continue; }}
            let iy = u32(ty) / S;
            for (var kx = 0u; kx < K; kx++) {{
                let tx = i32(ox + P) - i32(kx);
                if (tx < 0 || u32(tx) % S != 0u || u32(tx) / S >= W) {{ continue; }}
                let ix = u32(tx) / S;
                acc += x[((img * CIN + ci) * H + iy) * W + ix] * w[((ci * COUT_G + cog) * K + ky) * K + kx];
            }}
        }}
    }}
    y[i] = acc;"#
    );
    let mut reads = vec![c.x, c.w];
    reads.extend(c.b);
    per_element("convt", consts_src, &reads, c.y, total, &body)
}
