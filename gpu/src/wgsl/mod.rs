//! WGSL compute kernels, generated per [`Step`] with every shape baked in as a constant (as a
//! GPU runtime specialises its kernels), so the shader compiler can unroll and fold.
//!
//! Kernels, all with several outputs per invocation:
//! - `conv_gemm`: 1x1 convolutions as a GEMM, 64x64 output tiles through workgroup memory,
//!   4x4 outputs per invocation;
//! - `conv_direct`: any other convolution (k x k, strided, grouped, depthwise): 4 output
//!   channels (1 for depthwise) x 4 output columns per invocation, in registers; narrow
//!   layers split their input channels over up to 64 invocations summed in workgroup memory;
//! - `gemm_rows`: a linear layer (and a 1x1 conv on a 1x1 image, as in squeeze-excitation):
//!   4 outputs per workgroup, the reduction split over 64 invocations and summed in workgroup
//!   memory;
//! - `pool`: 4 output columns per invocation; `gap`: one workgroup per plane, tree reduction;
//! - `eltwise`: 4 elements per invocation, coalesced;
//! - `gemm_tiled`: a GEMM of 16 rows or more (tokens) and attention's batched products, 64x64
//!   output tiles through workgroup memory; `layernorm`, `transpose`.

use std::fmt::Write;

use crate::plan::{Act, ConvStep, EltwiseStep, Operand, PoolStep, Step};

mod conv;
mod resample;
mod simple;
mod tokens;

use conv::{conv, gemm_rows};
use simple::{copy, eltwise, gap, pool, shuffle, softmax};

/// From this many rows on, a GEMM runs tiled (`gemm_tiled`) rather than split over K.
const TILED_ROWS: u32 = 16;

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
pub fn kernel(step: &Step, min_invocations: u32) -> Kernel {
    match step {
        Step::Conv(c) => conv(c, min_invocations),
        Step::Pool(p) => pool(p),
        Step::GlobalAvgPool { x, y, planes, hw } => gap(*x, *y, *planes, *hw),
        // Rows of tokens: tiles through workgroup memory; a classifier's few rows: split K.
        Step::Gemm(g) if g.m >= TILED_ROWS => tokens::gemm_tiled(
            (g.x, g.w, g.b, g.y),
            &tokens::Product {
                batch: 1,
                m: g.m,
                k: g.k,
                n: g.n,
                b_batched: false,
                trans_b: g.trans_b,
            },
            &Epilogue::act(g.act),
        ),
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
        Step::Lrn(l) => resample::lrn(l),
        Step::Resize(r) => resample::resize(r),
        Step::ConvTranspose(c) => resample::conv_transpose(c),
        Step::LayerNorm {
            x,
            scale,
            bias,
            y,
            rows,
            cols,
            eps,
        } => tokens::layer_norm((*x, *scale, *bias, *y), *rows, *cols, *eps),
        Step::Transpose { x, y, dims, perm } => tokens::transpose(*x, *y, dims, perm),
        Step::MatMul {
            a,
            b,
            y,
            batch,
            m,
            k,
            n,
            b_batched,
        } => tokens::gemm_tiled(
            (*a, *b, None, *y),
            &tokens::Product {
                batch: *batch,
                m: *m,
                k: *k,
                n: *n,
                b_batched: *b_batched,
                trans_b: false,
            },
            &Epilogue::act(Act::None),
        ),
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

    /// WGSL for the helper functions `pre`, `post`, `post2` (and `gelu`, which they may call).
    fn functions(&self) -> String {
        format!(
            "{GELU}fn pre(v: f32) -> f32 {{ return {}; }}\nfn post(v: f32) -> f32 {{ return {}; }}\nfn post2(v: f32) -> f32 {{ return {}; }}\n",
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
        Act::Tanh => "tanh(v)".into(),
        Act::LeakyRelu(a) => format!("select({} * v, v, v >= 0.0)", lit(a)),
        Act::Gelu => "gelu(v)".into(),
    }
}

/// Exact GELU; WGSL has no `erf`, so Abramowitz and Stegun's 7.1.26 (error under 1.5e-7).
const GELU: &str = "fn gelu(v: f32) -> f32 {
    let z = abs(v) * 0.70710678;
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let p = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let e = 1.0 - p * exp(-z * z);
    return 0.5 * v * (1.0 + select(-e, e, v >= 0.0));
}
";

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

/// WGSL of the 4 x 4 micro-kernel shared by the tiled GEMMs (`conv_gemm`, `gemm_tiled`): over
/// the 8 staged k of a tile, invocation (`tx`, `ty`) adds rows `ty * 4..` of `a` (`[k][m]`, 8 x 64
/// in workgroup memory) times columns `tx * 4..` of `b` (`[k][n]`) into `acc`.
fn tile_fma(a: &str, b: &str) -> String {
    format!(
        "for (var kk = 0u; kk < 8u; kk++) {{
            let av = vec4<f32>({a}[kk * 64u + ty * 4u], {a}[kk * 64u + ty * 4u + 1u], {a}[kk * 64u + ty * 4u + 2u], {a}[kk * 64u + ty * 4u + 3u]);
            let bv = vec4<f32>({b}[kk * 64u + tx * 4u], {b}[kk * 64u + tx * 4u + 1u], {b}[kk * 64u + tx * 4u + 2u], {b}[kk * 64u + tx * 4u + 3u]);
            acc[0] += av.x * bv;
            acc[1] += av.y * bv;
            acc[2] += av.z * bv;
            acc[3] += av.w * bv;
        }}"
    )
}

fn consts(pairs: &[(&str, u32)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("const {k}: u32 = {v}u;\n"))
        .collect()
}
