//! The transformer kernels: LayerNorm (one workgroup per row, two tree reductions), a
//! general transpose (one element per invocation, the source index from baked strides), and
//! a tiled, batched matrix product for the token GEMMs and attention's `Q K^T` and `A V`.

use std::fmt::Write;

use super::{Epilogue, Kernel, bindings, consts, flat_groups, lit, tile_fma, tree_reduce};

pub(super) fn layer_norm(
    (x, scale, bias, y): (usize, usize, usize, usize),
    rows: u32,
    cols: u32,
    eps: f32,
) -> Kernel {
    let (groups, wg) = flat_groups(rows);
    let mut s = consts(&[("ROWS", rows), ("COLS", cols)]);
    let reduce = tree_reduce("acc", "part[li] + part[li + half]");
    s += &bindings(&["x", "g", "b"]);
    let _ = write!(
        s,
        r#"
var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{
    {wg}
    if (wg >= ROWS) {{ return; }}
    let row = wg * COLS;
    var acc = 0.0;
    for (var i = li; i < COLS; i += 64u) {{ acc += x[row + i]; }}
    {reduce}
    let mean = part[0] / f32(COLS);
    workgroupBarrier();
    acc = 0.0;
    for (var i = li; i < COLS; i += 64u) {{ let d = x[row + i] - mean; acc += d * d; }}
    {reduce}
    let inv = inverseSqrt(part[0] / f32(COLS) + {eps});
    for (var i = li; i < COLS; i += 64u) {{ y[row + i] = (x[row + i] - mean) * inv * g[i] + b[i]; }}
}}
"#,
        eps = lit(eps)
    );
    Kernel {
        name: "layernorm",
        source: s,
        reads: vec![x, scale, bias],
        write: y,
        workgroups: groups,
    }
}

pub(super) fn transpose(x: usize, y: usize, dims: &[u32], perm: &[u32]) -> Kernel {
    let total: u32 = dims.iter().product();
    let rank = dims.len();
    let mut in_strides = vec![1u32; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * dims[i + 1];
    }
    // Output axis j walks input axis perm[j]: peel the output index from the last axis.
    let mut body = String::new();
    for j in (0..rank).rev() {
        let p = perm[j] as usize;
        let _ = write!(
            body,
            "src += (rest % {d}u) * {st}u; rest /= {d}u;\n        ",
            d = dims[p],
            st = in_strides[p]
        );
    }
    let (groups, wg) = flat_groups(total.div_ceil(64));
    let mut s = consts(&[("TOTAL", total)]);
    s += &bindings(&["x"]);
    let _ = write!(
        s,
        r#"
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{
    {wg}
    let i = wg * 64u + li;
    if (i >= TOTAL) {{ return; }}
    var rest = i;
    var src = 0u;
    {body}y[i] = x[src];
}}
"#
    );
    Kernel {
        name: "transpose",
        source: s,
        reads: vec![x],
        write: y,
        workgroups: groups,
    }
}

/// The shapes of a (batched) matrix product: `batch` products of `m x k` by `k x n`, the right
/// operand shared by the batch unless `b_batched`, stored `n x k` when `trans_b`.
pub(super) struct Product {
    pub batch: u32,
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub b_batched: bool,
    pub trans_b: bool,
}

/// A matrix product in 64 x 64 output tiles through workgroup memory, 4 x 4 outputs per
/// invocation, the batch over the dispatch's z: the token GEMMs (projections, MLP) and
/// attention's two products.
pub(super) fn gemm_tiled(
    (a, b, bias, y): (usize, usize, Option<usize>, usize),
    p: &Product,
    epi: &Epilogue,
) -> Kernel {
    let mut s = consts(&[
        ("M", p.m),
        ("K", p.k),
        ("N", p.n),
        ("B_STRIDE", if p.b_batched { p.k * p.n } else { 0 }),
    ]);
    let (reads, names) = match bias {
        Some(o) => (vec![a, b, o], vec!["a", "b", "o"]),
        None => (vec![a, b], vec!["a", "b"]),
    };
    s += &bindings(&names);
    s += &epi.functions();
    let load_b = if p.trans_b {
        "let bn = e / 8u; let bk = k0 + e % 8u;
            bs[(e % 8u) * 64u + bn] = select(0.0, b[b0 + min(n0 + bn, N - 1u) * K + min(bk, K - 1u)], n0 + bn < N && bk < K);"
    } else {
        "let bk = k0 + e / 64u; let bn = e % 64u;
            bs[e] = select(0.0, b[b0 + min(bk, K - 1u) * N + min(n0 + bn, N - 1u)], n0 + bn < N && bk < K);"
    };
    let bias = if bias.is_some() { "o[nn]" } else { "0.0" };
    let fma = tile_fma("as_", "bs");
    let _ = write!(
        s,
        r#"
var<workgroup> as_: array<f32, 512>; // [k][m] of the 8 x 64 tile of a
var<workgroup> bs: array<f32, 512>; // [k][n] of the 8 x 64 tile of b

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{
    let n0 = wid.x * 64u;
    let m0 = wid.y * 64u;
    let bt = wid.z;
    let a0 = bt * M * K;
    let b0 = bt * B_STRIDE;
    let tx = li % 16u;
    let ty = li / 16u;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < K; k0 += 8u) {{
        for (var r = 0u; r < 2u; r++) {{
            let e = li + r * 256u;
            let am = e / 8u;
            let ak = k0 + e % 8u;
            as_[(e % 8u) * 64u + am] = select(0.0, a[a0 + min(m0 + am, M - 1u) * K + min(ak, K - 1u)], m0 + am < M && ak < K);
            {load_b}
        }}
        workgroupBarrier();
        {fma}
        workgroupBarrier();
    }}
    for (var t = 0u; t < 4u; t++) {{
        let m = m0 + ty * 4u + t;
        if (m >= M) {{ break; }}
        for (var j = 0u; j < 4u; j++) {{
            let nn = n0 + tx * 4u + j;
            if (nn < N) {{
                y[(bt * M + m) * N + nn] = post(acc[t][j] + {bias});
            }}
        }}
    }}
}}
"#
    );
    Kernel {
        name: "gemm_tiled",
        source: s,
        reads,
        write: y,
        workgroups: (p.n.div_ceil(64), p.m.div_ceil(64), p.batch),
    }
}
