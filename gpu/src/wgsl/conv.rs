//! Convolutions (a tiled GEMM for 1x1, direct for the rest) and matrix products.

use super::*;

pub(super) fn conv(c: &ConvStep, min_invocations: u32) -> Kernel {
    let epi = Epilogue {
        pre: c.pre_act,
        act: c.act,
        residual: c.residual,
        act_after_residual: c.act_after_residual,
    };
    let pointwise = c.kh == 1 && c.kw == 1 && c.pad == (0, 0) && c.groups == 1;
    if pointwise && c.ho * c.wo == 1 && c.stride == (1, 1) && c.h * c.w_in == 1 {
        // A 1x1 conv on a 1x1 image is a linear layer on N rows.
        return gemm_rows(c.x, c.w, c.b, c.y, (c.n, c.cin, c.cout), true, &epi);
    }
    let p = c.ho * c.wo;
    if pointwise
        && p.div_ceil(64) <= MAX_GROUPS
        && c.cout.div_ceil(64) <= MAX_GROUPS
        && c.n <= MAX_GROUPS
    {
        return conv_gemm(c, &epi);
    }
    conv_direct(c, &epi, min_invocations)
}

fn reads(
    x: usize,
    w: usize,
    b: Option<usize>,
    residual: Option<usize>,
) -> (Vec<usize>, Vec<&'static str>) {
    let mut ids = vec![x, w];
    let mut names = vec!["x", "w"];
    if let Some(b) = b {
        ids.push(b);
        names.push("b");
    }
    if let Some(r) = residual {
        ids.push(r);
        names.push("r");
    }
    (ids, names)
}

fn bias_expr(has_bias: bool, index: &str) -> String {
    if has_bias {
        format!("b[{index}]")
    } else {
        "0.0".into()
    }
}

fn conv_gemm(c: &ConvStep, epi: &Epilogue) -> Kernel {
    let (ids, names) = reads(c.x, c.w, c.b, c.residual);
    let p = c.ho * c.wo;
    let mut s = consts(&[
        ("K", c.cin),
        ("M", c.cout),
        ("P", p),
        ("H", c.h),
        ("W", c.w_in),
        ("WO", c.wo),
        ("SH", c.stride.0),
        ("SW", c.stride.1),
    ]);
    s += &bindings(&names);
    s += &epi.functions();
    let bias = bias_expr(c.b.is_some(), "m");
    let store = epi.store();
    let fma = tile_fma("ws", "xs");
    let _ = write!(
        s,
        r#"
var<workgroup> ws: array<f32, 512>; // [k][m] of the 8 x 64 weight tile
var<workgroup> xs: array<f32, 512>; // [k][p] of the 8 x 64 input tile

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{
    let p0 = wid.x * 64u;
    let m0 = wid.y * 64u;
    let n = wid.z;
    let tx = li % 16u;
    let ty = li / 16u;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < K; k0 += 8u) {{
        for (var r = 0u; r < 2u; r++) {{
            let e = li + r * 256u;
            // Weights: 8 consecutive k of one row per 8 invocations (contiguous reads).
            let wm = e / 8u;
            let wk = k0 + e % 8u;
            let m = m0 + wm;
            ws[(e % 8u) * 64u + wm] = select(0.0, w[min(m, M - 1u) * K + min(wk, K - 1u)], m < M && wk < K);
            // Inputs: 64 consecutive pixels of one channel.
            let xk = k0 + e / 64u;
            let pp = p0 + e % 64u;
            let pc = min(pp, P - 1u);
            let xi = ((n * K + min(xk, K - 1u)) * H + (pc / WO) * SH) * W + (pc % WO) * SW;
            xs[e] = select(0.0, pre(x[xi]), pp < P && xk < K);
        }}
        workgroupBarrier();
        {fma}
        workgroupBarrier();
    }}
    for (var t = 0u; t < 4u; t++) {{
        let m = m0 + ty * 4u + t;
        if (m >= M) {{ break; }}
        let bias = {bias};
        for (var j = 0u; j < 4u; j++) {{
            let pp = p0 + tx * 4u + j;
            if (pp < P) {{
                let i = (n * M + m) * P + pp;
                let v = acc[t][j] + bias;
                {store}
            }}
        }}
    }}
}}
"#
    );
    Kernel {
        name: "conv_gemm",
        source: s,
        reads: ids,
        write: c.y,
        workgroups: (p.div_ceil(64), c.cout.div_ceil(64), c.n),
    }
}

/// How many ways `conv_direct` splits its input channels: a power of two up to 64 that brings
/// `tasks` output tiles to `min_invocations`. Unsplit, on an H200, a 64x8x8 3x3 conv ran 256
/// invocations of 576 serial steps each and took 515 µs (ONNX Runtime's CPU EP: 26 µs): its
/// time followed the channels, not the pixels, a few multiprocessors busy and the rest idle.
fn input_splits(tasks: u32, cin_g: u32, min_invocations: u32) -> u32 {
    let mut s = 1;
    while s < 64 && s * 2 <= cin_g && tasks.saturating_mul(s) < min_invocations {
        s *= 2;
    }
    s
}

/// The workgroup memory and the code that end a `conv_direct` invocation's reduction: nothing to
/// sum unsplit; split, the S slices of each tile summed pairwise. Barriers need every
/// invocation, so a split kernel masks the tiles past the end instead of returning early.
fn split_sum(splits: u32) -> (String, String) {
    if splits == 1 {
        return (String::new(), "if (!valid) { return; }".into());
    }
    (
        "var<workgroup> part: array<vec4<f32>, 1024>;\n".into(),
        "for (var t = 0u; t < CT; t++) { part[li * CT + t] = acc[t]; }
    workgroupBarrier();
    for (var half = S / 2u; half > 0u; half >>= 1u) {
        if (slice < half) {
            for (var t = 0u; t < CT; t++) { part[li * CT + t] += part[(li + half) * CT + t]; }
        }
        workgroupBarrier();
    }
    if (!valid || slice != 0u) { return; }
    for (var t = 0u; t < CT; t++) { acc[t] = part[li * CT + t]; }"
            .into(),
    )
}

fn conv_direct(c: &ConvStep, epi: &Epilogue, min_invocations: u32) -> Kernel {
    let (ids, names) = reads(c.x, c.w, c.b, c.residual);
    let cin_g = c.cin / c.groups;
    let cout_g = c.cout / c.groups;
    // Depthwise convs have one output channel per group: tile over columns only.
    let ct = if cout_g == 1 { 1 } else { 4 };
    let x_tiles = c.wo.div_ceil(4);
    let co_tiles = cout_g.div_ceil(ct);
    let total = c.n * c.groups * co_tiles * c.ho * x_tiles;
    // A split tile's S partial sums meet in workgroup memory (256 x CT vec4s: 16 KiB at most,
    // WebGPU's least limit); an unsplit one keeps 64 invocations a workgroup.
    let splits = input_splits(total, cin_g, min_invocations);
    let size = if splits == 1 { 64 } else { 256 };
    let (groups, wg) = flat_groups(total.saturating_mul(splits).div_ceil(size));
    let mut s = consts(&[
        ("CIN", c.cin),
        ("COUT", c.cout),
        ("CIN_G", cin_g),
        ("COUT_G", cout_g),
        ("G", c.groups),
        ("H", c.h),
        ("W", c.w_in),
        ("HO", c.ho),
        ("WO", c.wo),
        ("KH", c.kh),
        ("KW", c.kw),
        ("SH", c.stride.0),
        ("SW", c.stride.1),
        ("DH", c.dilation.0),
        ("DW", c.dilation.1),
        ("PH", c.pad.0),
        ("PW", c.pad.1),
        ("CT", ct),
        ("X_TILES", x_tiles),
        ("CO_TILES", co_tiles),
        ("TOTAL", total),
        ("S", splits),
        ("SIZE", size),
    ]);
    s += &bindings(&names);
    s += &epi.functions();
    let bias = bias_expr(c.b.is_some(), "co");
    let store = epi.store();
    let (shared, reduce) = split_sum(splits);
    let _ = write!(
        s,
        r#"
{shared}
@compute @workgroup_size({size})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{
    {wg}
    let idx = wg * (SIZE / S) + li / S;
    let slice = li % S;
    let valid = idx < TOTAL;
    let xt = idx % X_TILES;
    var rest = idx / X_TILES;
    let oy = rest % HO;
    rest = rest / HO;
    let ct = rest % CO_TILES;
    rest = rest / CO_TILES;
    let g = rest % G;
    let n = rest / G;
    let ox0 = xt * 4u;
    var acc: array<vec4<f32>, CT>;
    for (var ci = slice; ci < CIN_G && valid; ci += S) {{
        let xplane = (n * CIN + g * CIN_G + ci) * H * W;
        for (var ky = 0u; ky < KH; ky++) {{
            let iy = i32(oy * SH + ky * DH) - i32(PH);
            if (iy < 0 || iy >= i32(H)) {{ continue; }}
            let xrow = xplane + u32(iy) * W;
            for (var kx = 0u; kx < KW; kx++) {{
                var xv: vec4<f32>;
                for (var j = 0u; j < 4u; j++) {{
                    let ix = i32((ox0 + j) * SW + kx * DW) - i32(PW);
                    let v = x[xrow + u32(clamp(ix, 0, i32(W) - 1))];
                    xv[j] = select(0.0, pre(v), ix >= 0 && ix < i32(W));
                }}
                for (var t = 0u; t < CT; t++) {{
                    let col = min(ct * CT + t, COUT_G - 1u);
                    acc[t] += w[(((g * COUT_G + col) * CIN_G + ci) * KH + ky) * KW + kx] * xv;
                }}
            }}
        }}
    }}
    {reduce}
    for (var t = 0u; t < CT; t++) {{
        let col = ct * CT + t;
        if (col >= COUT_G) {{ break; }}
        let co = g * COUT_G + col;
        let bias = {bias};
        for (var j = 0u; j < 4u; j++) {{
            let ox = ox0 + j;
            if (ox < WO) {{
                let i = ((n * COUT + co) * HO + oy) * WO + ox;
                let v = acc[t][j] + bias;
                {store}
            }}
        }}
    }}
}}
"#
    );
    Kernel {
        name: "conv_direct",
        source: s,
        reads: ids,
        write: c.y,
        workgroups: groups,
    }
}

pub(super) fn gemm_rows(
    x: usize,
    w: usize,
    b: Option<usize>,
    y: usize,
    (m, k, n): (u32, u32, u32),
    trans_b: bool,
    epi: &Epilogue,
) -> Kernel {
    let (ids, names) = reads(x, w, b, epi.residual);
    let tiles = n.div_ceil(4);
    let (groups, wg) = flat_groups(tiles * m);
    let mut s = consts(&[("M", m), ("K", k), ("NO", n), ("TILES", tiles)]);
    s += &bindings(&names);
    s += &epi.functions();
    let weight = if trans_b {
        "w[nj * K + kk]"
    } else {
        "w[kk * NO + nj]"
    };
    let bias = bias_expr(b.is_some(), "o");
    let store = epi.store();
    let reduce = tree_reduce("acc", "part[li] + part[li + half]");
    let _ = write!(
        s,
        r#"
var<workgroup> part: array<vec4<f32>, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{
    {wg}
    if (wg >= TILES * M) {{ return; }}
    let n0 = (wg % TILES) * 4u;
    let row = wg / TILES;
    var acc = vec4<f32>(0.0);
    for (var kk = li; kk < K; kk += 64u) {{
        let xv = pre(x[row * K + kk]);
        for (var j = 0u; j < 4u; j++) {{
            let nj = min(n0 + j, NO - 1u);
            acc[j] += xv * {weight};
        }}
    }}
    {reduce}
    if (li == 0u) {{
        for (var j = 0u; j < 4u; j++) {{
            let o = n0 + j;
            if (o < NO) {{
                let i = row * NO + o;
                let v = part[0][j] + {bias};
                {store}
            }}
        }}
    }}
}}
"#
    );
    Kernel {
        name: "gemm_rows",
        source: s,
        reads: ids,
        write: y,
        workgroups: groups,
    }
}

#[cfg(test)]
mod tests {
    use super::input_splits;
    use crate::settings::DEFAULT_MIN_INVOCATIONS as GPU;

    #[test]
    fn narrow_layers_split_their_input_channels_until_the_gpu_is_busy() {
        // The H200's 64x8x8 3x3 conv: 256 tiles of 64 channels.
        assert_eq!(input_splits(256, 64, GPU), 32);
        // Never more slices than channels (a power of two), never more than 64.
        assert_eq!(input_splits(256, 12, GPU), 8);
        assert_eq!(input_splits(1, 1024, GPU), 64);
        assert_eq!(input_splits(10, 1, GPU), 1);
        // Wide layers already fill the GPU; a software rasteriser asks for no split.
        assert_eq!(input_splits(8192, 64, GPU), 1);
        assert_eq!(input_splits(5000, 64, GPU), 2);
        assert_eq!(input_splits(256, 64, 1), 1);
        assert_eq!(input_splits(u32::MAX, 64, u32::MAX), 1);
    }
}
