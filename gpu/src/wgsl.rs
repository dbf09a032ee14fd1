//! WGSL compute kernels, generated per [`Step`] with every shape baked in as a constant (as a
//! GPU runtime specialises its kernels), so the shader compiler can unroll and fold.
//!
//! Kernels, all with several outputs per invocation:
//! - `conv_gemm`: 1x1 convolutions as a GEMM, 64x64 output tiles through workgroup memory,
//!   4x4 outputs per invocation;
//! - `conv_direct`: any other convolution (k x k, strided, grouped, depthwise): 4 output
//!   channels (1 for depthwise) x 4 output columns per invocation, in registers;
//! - `gemm_rows`: a linear layer (and a 1x1 conv on a 1x1 image, as in squeeze-excitation):
//!   4 outputs per workgroup, the reduction split over 64 invocations and summed in workgroup
//!   memory;
//! - `pool`: 4 output columns per invocation; `gap`: one workgroup per plane, tree reduction;
//! - `eltwise`: 4 elements per invocation, coalesced.

use std::fmt::Write;

use crate::plan::{Act, ConvStep, EltwiseStep, Operand, PoolStep, Step};

/// Workgroups per dispatch dimension that every WebGPU device supports.
const MAX_GROUPS: u32 = 65_535;

/// One kernel, ready to compile and dispatch.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    /// Which generator made it (for reports and pipeline labels).
    pub name: &'static str,
    pub source: String,
    /// Buffers bound at bindings 0.., in order: the reads, then the one write (last).
    pub reads: Vec<usize>,
    pub write: usize,
    pub workgroups: (u32, u32, u32),
}

/// The kernel for a step.
pub fn kernel(step: &Step) -> Kernel {
    match step {
        Step::Conv(c) => conv(c),
        Step::Pool(p) => pool(p),
        Step::GlobalAvgPool { x, y, planes, hw } => gap(*x, *y, *planes, *hw),
        Step::Gemm(g) => gemm_rows(
            g.x,
            g.w,
            g.b,
            g.y,
            (g.m, g.k, g.n),
            g.trans_b,
            &Epilogue::act(g.act),
        ),
        Step::Eltwise(e) => eltwise(e),
        Step::Copy {
            x,
            y,
            rows,
            len,
            src,
            dst,
        } => copy(*x, *y, *rows, *len, *src, *dst),
        Step::Shuffle {
            x,
            y,
            n,
            c,
            groups,
            hw,
        } => shuffle(*x, *y, n * c * hw, *c, *groups, *hw),
        Step::Softmax { x, y, rows, cols } => softmax(*x, *y, *rows, *cols),
    }
}

/// What a kernel does to its inputs on load and its results on store.
struct Epilogue {
    pre: Act,
    act: Act,
    residual: Option<usize>,
    act_after_residual: Act,
}

impl Epilogue {
    fn act(act: Act) -> Epilogue {
        Epilogue {
            pre: Act::None,
            act,
            residual: None,
            act_after_residual: Act::None,
        }
    }

    /// WGSL for the helper functions `pre`, `post`, `post2`.
    fn functions(&self) -> String {
        format!(
            "fn pre(v: f32) -> f32 {{ return {}; }}\nfn post(v: f32) -> f32 {{ return {}; }}\nfn post2(v: f32) -> f32 {{ return {}; }}\n",
            act_expr(self.pre),
            act_expr(self.act),
            act_expr(self.act_after_residual)
        )
    }

    /// The statement that stores `v` (a bias-added result) at flat index `i`.
    fn store(&self) -> &'static str {
        if self.residual.is_some() {
            "y[i] = post2(post(v) + r[i]);"
        } else {
            "y[i] = post(v);"
        }
    }
}

/// A WGSL float literal.
fn lit(v: f32) -> String {
    let s = format!("{v:?}");
    if s.contains(['.', 'e', 'E']) {
        s
    } else {
        format!("{s}.0")
    }
}

fn act_expr(act: Act) -> String {
    match act {
        Act::None => "v".into(),
        Act::Relu => "max(v, 0.0)".into(),
        Act::Clip(lo, hi) => format!("clamp(v, {}, {})", lit(lo), lit(hi)),
        Act::HardSigmoid(a, b) => format!("clamp({} * v + {}, 0.0, 1.0)", lit(a), lit(b)),
        Act::HardSwish => "v * clamp(v / 6.0 + 0.5, 0.0, 1.0)".into(),
        Act::Sigmoid => "1.0 / (1.0 + exp(-v))".into(),
        Act::Swish => "v / (1.0 + exp(-v))".into(),
    }
}

/// Binding declarations: `names[i]` read-only at binding i, then `y` read-write.
fn bindings(names: &[&str]) -> String {
    let mut s = String::new();
    for (i, n) in names.iter().enumerate() {
        let _ = writeln!(
            s,
            "@group(0) @binding({i}) var<storage, read> {n}: array<f32>;"
        );
    }
    let _ = writeln!(
        s,
        "@group(0) @binding({}) var<storage, read_write> y: array<f32>;",
        names.len()
    );
    s
}

/// Spread `total` workgroups over x and y (each at most 65,535); returns the dispatch and the
/// WGSL line that recovers the flat workgroup index `wg`.
fn flat_groups(total: u32) -> ((u32, u32, u32), String) {
    let gx = total.clamp(1, MAX_GROUPS);
    let gy = total.div_ceil(gx).max(1);
    ((gx, gy, 1), format!("let wg = wid.x + wid.y * {gx}u;"))
}

/// WGSL that reduces each invocation's `value` over the 64 invocations of a workgroup into
/// `part[0]` (a `var<workgroup> part: array<_, 64>`), combining two halves with `combine`.
fn tree_reduce(value: &str, combine: &str) -> String {
    format!(
        "part[li] = {value};
    workgroupBarrier();
    for (var half = 32u; half > 0u; half >>= 1u) {{
        if (li < half) {{ part[li] = {combine}; }}
        workgroupBarrier();
    }}"
    )
}

fn consts(pairs: &[(&str, u32)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("const {k}: u32 = {v}u;\n"))
        .collect()
}

fn conv(c: &ConvStep) -> Kernel {
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
    conv_direct(c, &epi)
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
        for (var kk = 0u; kk < 8u; kk++) {{
            let a = vec4<f32>(ws[kk * 64u + ty * 4u], ws[kk * 64u + ty * 4u + 1u], ws[kk * 64u + ty * 4u + 2u], ws[kk * 64u + ty * 4u + 3u]);
            let bv = vec4<f32>(xs[kk * 64u + tx * 4u], xs[kk * 64u + tx * 4u + 1u], xs[kk * 64u + tx * 4u + 2u], xs[kk * 64u + tx * 4u + 3u]);
            acc[0] += a.x * bv;
            acc[1] += a.y * bv;
            acc[2] += a.z * bv;
            acc[3] += a.w * bv;
        }}
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

fn conv_direct(c: &ConvStep, epi: &Epilogue) -> Kernel {
    let (ids, names) = reads(c.x, c.w, c.b, c.residual);
    let cin_g = c.cin / c.groups;
    let cout_g = c.cout / c.groups;
    // Depthwise convs have one output channel per group: tile over columns only.
    let ct = if cout_g == 1 { 1 } else { 4 };
    let x_tiles = c.wo.div_ceil(4);
    let co_tiles = cout_g.div_ceil(ct);
    let total = c.n * c.groups * co_tiles * c.ho * x_tiles;
    let (groups, wg) = flat_groups(total.div_ceil(64));
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
        ("PH", c.pad.0),
        ("PW", c.pad.1),
        ("CT", ct),
        ("X_TILES", x_tiles),
        ("CO_TILES", co_tiles),
        ("TOTAL", total),
    ]);
    s += &bindings(&names);
    s += &epi.functions();
    let bias = bias_expr(c.b.is_some(), "co");
    let store = epi.store();
    let _ = write!(
        s,
        r#"
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{
    {wg}
    let idx = wg * 64u + li;
    if (idx >= TOTAL) {{ return; }}
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
    for (var ci = 0u; ci < CIN_G; ci++) {{
        let xplane = (n * CIN + g * CIN_G + ci) * H * W;
        for (var ky = 0u; ky < KH; ky++) {{
            let iy = i32(oy * SH + ky) - i32(PH);
            if (iy < 0 || iy >= i32(H)) {{ continue; }}
            let xrow = xplane + u32(iy) * W;
            for (var kx = 0u; kx < KW; kx++) {{
                var xv: vec4<f32>;
                for (var j = 0u; j < 4u; j++) {{
                    let ix = i32((ox0 + j) * SW + kx) - i32(PW);
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

fn gemm_rows(
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

fn pool(p: &PoolStep) -> Kernel {
    let x_tiles = p.wo.div_ceil(4);
    let total = p.planes * p.ho * x_tiles;
    let (groups, wg) = flat_groups(total.div_ceil(64));
    let mut s = consts(&[
        ("H", p.h),
        ("W", p.w),
        ("HO", p.ho),
        ("WO", p.wo),
        ("KH", p.k.0),
        ("KW", p.k.1),
        ("SH", p.stride.0),
        ("SW", p.stride.1),
        ("PH", p.pad.0),
        ("PW", p.pad.1),
        ("X_TILES", x_tiles),
        ("TOTAL", total),
    ]);
    s += &bindings(&["x"]);
    s += &Epilogue::act(p.act).functions();
    let (init, combine, result) = if p.max {
        ("-3.4028235e38", "acc = max(acc, v);", "acc")
    } else if p.count_include_pad {
        ("0.0", "acc += v;", "acc / f32(KH * KW)")
    } else {
        ("0.0", "acc += v;", "acc / f32(max(count, 1u))")
    };
    let _ = write!(
        s,
        r#"
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{
    {wg}
    let idx = wg * 64u + li;
    if (idx >= TOTAL) {{ return; }}
    let xt = idx % X_TILES;
    let oy = (idx / X_TILES) % HO;
    let plane = idx / (X_TILES * HO);
    for (var j = 0u; j < 4u; j++) {{
        let ox = xt * 4u + j;
        if (ox >= WO) {{ break; }}
        var acc = {init};
        var count = 0u;
        for (var ky = 0u; ky < KH; ky++) {{
            let iy = i32(oy * SH + ky) - i32(PH);
            if (iy < 0 || iy >= i32(H)) {{ continue; }}
            for (var kx = 0u; kx < KW; kx++) {{
                let ix = i32(ox * SW + kx) - i32(PW);
                if (ix < 0 || ix >= i32(W)) {{ continue; }}
                let v = x[(plane * H + u32(iy)) * W + u32(ix)];
                {combine}
                count += 1u;
            }}
        }}
        y[(plane * HO + oy) * WO + ox] = post({result});
    }}
}}
"#
    );
    Kernel {
        name: "pool",
        source: s,
        reads: vec![p.x],
        write: p.y,
        workgroups: groups,
    }
}

fn gap(x: usize, y: usize, planes: u32, hw: u32) -> Kernel {
    let (groups, wg) = flat_groups(planes);
    let mut s = consts(&[("PLANES", planes), ("HW", hw)]);
    let reduce_sum = tree_reduce("sum", "part[li] + part[li + half]");
    s += &bindings(&["x"]);
    let _ = write!(
        s,
        r#"
var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{
    {wg}
    if (wg >= PLANES) {{ return; }}
    var sum = 0.0;
    for (var i = li; i < HW; i += 64u) {{
        sum += x[wg * HW + i];
    }}
    {reduce_sum}
    if (li == 0u) {{ y[wg] = part[0] / f32(HW); }}
}}
"#
    );
    Kernel {
        name: "gap",
        source: s,
        reads: vec![x],
        write: y,
        workgroups: groups,
    }
}

fn eltwise(e: &EltwiseStep) -> Kernel {
    let (groups, wg) = flat_groups(e.numel.div_ceil(256));
    let (reads, names, combine): (Vec<usize>, Vec<&str>, String) = match e.operand {
        Operand::None => (vec![e.x], vec!["x"], "x[i]".into()),
        Operand::Add(o) => (vec![e.x, o], vec!["x", "o"], "x[i] + o[i]".into()),
        Operand::Mul(o) => (vec![e.x, o], vec!["x", "o"], "x[i] * o[i]".into()),
        Operand::MulChannel(o) => (vec![e.x, o], vec!["x", "o"], "x[i] * o[i / HW]".into()),
        Operand::Affine(sc, sh) => (
            vec![e.x, sc, sh],
            vec!["x", "s", "t"],
            "x[i] * s[(i / HW) % C] + t[(i / HW) % C]".into(),
        ),
        Operand::Scale(v) => (vec![e.x], vec!["x"], format!("x[i] * {}", lit(v))),
    };
    let mut s = consts(&[("NUMEL", e.numel), ("C", e.c.max(1)), ("HW", e.hw.max(1))]);
    s += &bindings(&names);
    s += &Epilogue::act(e.act).functions();
    let _ = write!(
        s,
        r#"
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{
    {wg}
    let base = wg * 256u + li;
    for (var j = 0u; j < 4u; j++) {{
        let i = base + j * 64u;
        if (i < NUMEL) {{ y[i] = post({combine}); }}
    }}
}}
"#
    );
    Kernel {
        name: "eltwise",
        source: s,
        reads,
        write: e.y,
        workgroups: groups,
    }
}

fn copy(x: usize, y: usize, rows: u32, len: u32, src: (u32, u32), dst: (u32, u32)) -> Kernel {
    let total = rows * len;
    let (groups, wg) = flat_groups(total.div_ceil(256));
    let mut s = consts(&[
        ("TOTAL", total),
        ("LEN", len.max(1)),
        ("SRC0", src.0),
        ("SRC_STRIDE", src.1),
        ("DST0", dst.0),
        ("DST_STRIDE", dst.1),
    ]);
    s += &bindings(&["x"]);
    let _ = write!(
        s,
        r#"
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{
    {wg}
    let base = wg * 256u + li;
    for (var j = 0u; j < 4u; j++) {{
        let i = base + j * 64u;
        if (i < TOTAL) {{
            let row = i / LEN;
            let col = i % LEN;
            y[DST0 + row * DST_STRIDE + col] = x[SRC0 + row * SRC_STRIDE + col];
        }}
    }}
}}
"#
    );
    Kernel {
        name: "copy",
        source: s,
        reads: vec![x],
        write: y,
        workgroups: groups,
    }
}

fn shuffle(x: usize, y: usize, total: u32, c: u32, groups: u32, hw: u32) -> Kernel {
    let (launch, wg) = flat_groups(total.div_ceil(256));
    let mut s = consts(&[
        ("TOTAL", total),
        ("C", c),
        ("G", groups),
        ("CG", c / groups),
        ("HW", hw),
    ]);
    s += &bindings(&["x"]);
    let _ = write!(
        s,
        r#"
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{
    {wg}
    let base = wg * 256u + li;
    for (var j = 0u; j < 4u; j++) {{
        let i = base + j * 64u;
        if (i < TOTAL) {{
            // Output channel jj * G + ii holds input channel ii * CG + jj.
            let p = i % HW;
            let co = (i / HW) % C;
            let n = i / (HW * C);
            let ci = (co % G) * CG + co / G;
            y[i] = x[(n * C + ci) * HW + p];
        }}
    }}
}}
"#
    );
    Kernel {
        name: "shuffle",
        source: s,
        reads: vec![x],
        write: y,
        workgroups: launch,
    }
}

fn softmax(x: usize, y: usize, rows: u32, cols: u32) -> Kernel {
    let (groups, wg) = flat_groups(rows);
    let mut s = consts(&[("ROWS", rows), ("COLS", cols)]);
    let reduce_sum = tree_reduce("sum", "part[li] + part[li + half]");
    let reduce_max = tree_reduce("m", "max(part[li], part[li + half])");
    s += &bindings(&["x"]);
    let _ = write!(
        s,
        r#"
var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{
    {wg}
    if (wg >= ROWS) {{ return; }}
    let row = wg * COLS;
    var m = -3.4028235e38;
    for (var i = li; i < COLS; i += 64u) {{ m = max(m, x[row + i]); }}
    {reduce_max}
    let top = part[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var i = li; i < COLS; i += 64u) {{ sum += exp(x[row + i] - top); }}
    {reduce_sum}
    let total = part[0];
    for (var i = li; i < COLS; i += 64u) {{ y[row + i] = exp(x[row + i] - top) / total; }}
}}
"#
    );
    Kernel {
        name: "softmax",
        source: s,
        reads: vec![x],
        write: y,
        workgroups: groups,
    }
}
