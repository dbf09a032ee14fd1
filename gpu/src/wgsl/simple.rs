//! Pools, global pooling, element-wise ops, copies, channel shuffle, softmax.

use super::*;

pub(super) fn pool(p: &PoolStep) -> Kernel {
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

pub(super) fn gap(x: usize, y: usize, planes: u32, hw: u32) -> Kernel {
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

pub(super) fn eltwise(e: &EltwiseStep) -> Kernel {
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
        Operand::AddRepeat(o, period) => (
            vec![e.x, o],
            vec!["x", "o"],
            format!("x[i] + o[i % {period}u]"),
        ),
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

pub(super) fn copy(
    x: usize,
    y: usize,
    rows: u32,
    len: u32,
    src: (u32, u32),
    dst: (u32, u32),
) -> Kernel {
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

pub(super) fn shuffle(x: usize, y: usize, total: u32, c: u32, groups: u32, hw: u32) -> Kernel {
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

pub(super) fn softmax(x: usize, y: usize, rows: u32, cols: u32) -> Kernel {
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
