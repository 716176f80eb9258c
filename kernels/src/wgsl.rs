//! The WGSL kernels the GPU device runs (`wgsl/`), composed into modules: a weight format's
//! `dequant` (32 values of a row to f32) with the byte readers, then the kernel that uses it;
//! the KV cache's page layout before the two kernels that address it.
//!
//! Every kernel reads f32 activations; a weight matrix is bound as its blocks (`array<u32>`), as
//! the file has them but padded where a block or one of its wide fields would not start on a
//! 4-byte boundary ([`repack`]), so that the kernels read whole words.

use crate::QuantType;
use std::borrow::Cow;

/// Where the device's copy of a block of `ty` has zero bytes inserted: (at byte, how many);
/// `None` for formats whose blocks are aligned as they are.
fn padding(ty: QuantType) -> Option<(usize, usize)> {
    match ty {
        // f16 scale, then 2 bytes, so that the high bits and quants start on a word.
        QuantType::Q4_0 | QuantType::Q5_0 | QuantType::Q8_0 => Some((2, 2)),
        // 110- and 210-byte blocks, padded at their end.
        QuantType::Q3K | QuantType::Q6K => Some((ty.type_size(), 2)),
        _ => None,
    }
}

/// Bytes that `len` bytes of whole blocks of `ty` take once repacked.
pub fn repacked_len(ty: QuantType, len: usize) -> usize {
    padding(ty).map_or(len, |(_, pad)| len / ty.type_size() * (ty.type_size() + pad))
}

/// `bytes` (whole blocks of `ty`) as the GPU kernels read them.
pub fn repack(ty: QuantType, bytes: &[u8]) -> Cow<'_, [u8]> {
    let Some((at, pad)) = padding(ty) else {
        return Cow::Borrowed(bytes);
    };
    let size = ty.type_size();
    let mut out = Vec::with_capacity(repacked_len(ty, bytes.len()));
    for block in bytes.chunks_exact(size) {
        out.extend_from_slice(&block[..at]);
        out.extend(std::iter::repeat_n(0, pad));
        out.extend_from_slice(&block[at..]);
    }
    Cow::Owned(out)
}

const BYTES: &str = include_str!("wgsl/bytes.wgsl");
const K_SCALES: &str = include_str!("wgsl/formats/k_scales.wgsl");

/// A format's `dequant`, with what it needs; `None` for formats that are not weight formats.
fn dequant(ty: QuantType) -> Option<String> {
    let own = match ty {
        QuantType::F32 => include_str!("wgsl/formats/f32.wgsl"),
        QuantType::F16 => include_str!("wgsl/formats/f16.wgsl"),
        QuantType::BF16 => include_str!("wgsl/formats/bf16.wgsl"),
        QuantType::Q4_0 => include_str!("wgsl/formats/q4_0.wgsl"),
        QuantType::Q4_1 => include_str!("wgsl/formats/q4_1.wgsl"),
        QuantType::Q5_0 => include_str!("wgsl/formats/q5_0.wgsl"),
        QuantType::Q5_1 => include_str!("wgsl/formats/q5_1.wgsl"),
        QuantType::Q8_0 => include_str!("wgsl/formats/q8_0.wgsl"),
        QuantType::Q2K => include_str!("wgsl/formats/q2_k.wgsl"),
        QuantType::Q3K => include_str!("wgsl/formats/q3_k.wgsl"),
        QuantType::Q4K => include_str!("wgsl/formats/q4_k.wgsl"),
        QuantType::Q5K => include_str!("wgsl/formats/q5_k.wgsl"),
        QuantType::Q6K => include_str!("wgsl/formats/q6_k.wgsl"),
        QuantType::Q8_1 | QuantType::Q8K => return None,
    };
    let scales = if matches!(ty, QuantType::Q4K | QuantType::Q5K) {
        K_SCALES
    } else {
        ""
    };
    Some([BYTES, scales, own].concat())
}

/// A compute kernel: its module's source and its entry point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    pub source: String,
    pub entry: &'static str,
}

fn kernel(entry: &'static str, parts: &[&str]) -> Kernel {
    Kernel {
        source: parts.concat(),
        entry,
    }
}

/// What a mat-mul does around its product (see matmul.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulVariant {
    /// x is used as RMSNorm(x)·norm, the norm bound at 4.
    pub normed: bool,
    /// Stacked matrices whose rows go to this many outputs (bindings 3, 5, 6); 1: one output.
    pub outputs: u32,
    /// `[gate; up]` stacked: one output, gelu(gate) · up.
    pub geglu: bool,
    /// With `normed`: the residual connection before this block, folded in (x, bound at 1, is
    /// written as x_in + RMSNorm(y_res)·post_norm; bound at 7, 8 and 9).
    pub residual: Residual,
}

/// The residual connection a normed mat-mul folds in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Residual {
    None,
    /// x = x_in + y_res.
    Plain,
    /// x = x_in + RMSNorm(y_res)·post_norm (a block's output norm).
    Normed,
}

impl MatmulVariant {
    pub const PLAIN: MatmulVariant = MatmulVariant {
        normed: false,
        outputs: 1,
        geglu: false,
        residual: Residual::None,
    };
}

/// The mat-mul's input x (binding 1): `input(t, i)` gives its quad `i` (of tile token `t`),
/// `keep_input` stores it back where it is made here (RESIDUAL).
fn matmul_input(residual: Residual) -> &'static str {
    match residual {
        Residual::None => concat!(
            "@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;\n",
            "fn input(t: u32, i: u32) -> vec4<f32> { return x[i]; }\n",
            "fn residual_input(i: u32) -> vec4<f32> { return vec4<f32>(0.0); }\n",
            "fn keep_input(i: u32, v: vec4<f32>) {}\n",
        ),
        Residual::Plain => concat!(
            "@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;\n",
            "@group(0) @binding(7) var<storage, read> x_in: array<vec4<f32>>;\n",
            "@group(0) @binding(8) var<storage, read> y_res: array<vec4<f32>>;\n",
            "fn input(t: u32, i: u32) -> vec4<f32> { return x_in[i] + y_res[i]; }\n",
            "fn residual_input(i: u32) -> vec4<f32> { return y_res[i]; }\n",
            "fn keep_input(i: u32, v: vec4<f32>) { x[i] = v; }\n",
        ),
        Residual::Normed => concat!(
            "@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;\n",
            "@group(0) @binding(7) var<storage, read> x_in: array<vec4<f32>>;\n",
            "@group(0) @binding(8) var<storage, read> y_res: array<vec4<f32>>;\n",
            "@group(0) @binding(9) var<storage, read> post_norm: array<vec4<f32>>;\n",
            "fn input(t: u32, i: u32) -> vec4<f32> {\n",
            "    return x_in[i] + y_res[i] * post_rms[t] * post_norm[i % (p.cols / 4u)];\n",
            "}\n",
            "fn residual_input(i: u32) -> vec4<f32> { return y_res[i]; }\n",
            "fn keep_input(i: u32, v: vec4<f32>) { x[i] = v; }\n",
        ),
    }
}

/// `y (n, rows) = x (n, cols) · wᵀ` for weights in format `ty`, as `variant` says.
pub fn matmul(ty: QuantType, variant: MatmulVariant) -> Option<Kernel> {
    if variant.residual != Residual::None && !variant.normed {
        return None;
    }
    let flags = format!(
        "const NORMED: bool = {};\nconst GEGLU: bool = {};\nconst RESIDUAL: bool = {};\nconst POST_NORM: bool = {};\n",
        variant.normed,
        variant.geglu,
        variant.residual != Residual::None,
        variant.residual == Residual::Normed,
    );
    let norm = if variant.normed {
        "@group(0) @binding(4) var<storage, read> norm: array<vec4<f32>>;\nfn norm_weight(i: u32) -> vec4<f32> { return norm[i]; }\n"
    } else {
        "fn norm_weight(i: u32) -> vec4<f32> { return vec4<f32>(1.0); }\n"
    };
    let store = match variant.outputs {
        1 => "fn store(t: u32, r: u32, value: f32) { y0[t * p.y_stride + p.row0 + r] = value; }\n",
        2 => concat!(
            "@group(0) @binding(5) var<storage, read_write> y1: array<f32>;\n",
            "fn store(t: u32, r: u32, value: f32) {\n",
            "    if (r < p.seg1) { y0[t * p.seg1 + r] = value; } else { y1[t * (p.rows - p.seg1) + r - p.seg1] = value; }\n",
            "}\n"
        ),
        3 => concat!(
            "@group(0) @binding(5) var<storage, read_write> y1: array<f32>;\n",
            "@group(0) @binding(6) var<storage, read_write> y2: array<f32>;\n",
            "fn store(t: u32, r: u32, value: f32) {\n",
            "    if (r < p.seg1) { y0[t * p.seg1 + r] = value; }\n",
            "    else if (r < p.seg2) { y1[t * (p.seg2 - p.seg1) + r - p.seg1] = value; }\n",
            "    else { y2[t * (p.rows - p.seg2) + r - p.seg2] = value; }\n",
            "}\n"
        ),
        _ => return None,
    };
    Some(kernel(
        "matmul",
        &[
            &flags,
            matmul_input(variant.residual),
            norm,
            store,
            GELU,
            &dequant(ty)?,
            WORKGROUP_SUM,
            include_str!("wgsl/matmul.wgsl"),
        ],
    ))
}

/// Embedding rows of a table in format `ty`.
pub fn embed(ty: QuantType) -> Option<Kernel> {
    Some(kernel("embed", &[&dequant(ty)?, include_str!("wgsl/embed.wgsl")]))
}

const GELU: &str = include_str!("wgsl/gelu.wgsl");
const RESIDUAL: &str = include_str!("wgsl/residual.wgsl");
/// `workgroup_sum`, for kernels that norm a row or add up a run.
const WORKGROUP_SUM: &str = include_str!("wgsl/workgroup_sum.wgsl");
const KV_PAGES: &str = include_str!("wgsl/kv_pages.wgsl");

/// `x = x_in + RMSNorm(y)·w`, or `x = x_in + y` without a norm.
pub fn residual(normed: bool) -> Kernel {
    kernel(
        if normed { "residual_normed" } else { "residual" },
        &[WORKGROUP_SUM, RESIDUAL],
    )
}

/// `a = gelu(a) · b`.
pub fn geglu() -> Kernel {
    kernel("geglu", &[GELU, include_str!("wgsl/geglu.wgsl")])
}

pub fn gather() -> Kernel {
    kernel("gather", &[include_str!("wgsl/gather.wgsl")])
}

/// The per-head norms where the model has them (`head_norms`), bound at 8.
fn head_norms(head_norms: bool) -> &'static str {
    if head_norms {
        "const HEAD_NORMS: bool = true;\n@group(0) @binding(8) var<storage, read> norms: array<f32>;\nfn head_norm(i: u32) -> f32 { return norms[i]; }\n"
    } else {
        "const HEAD_NORMS: bool = false;\nfn head_norm(i: u32) -> f32 { return 1.0; }\n"
    }
}

const HEAD_INPUT: &str = include_str!("wgsl/head_input.wgsl");

/// The KV cache formats the GPU keeps.
pub const KV_FORMATS: [QuantType; 2] = [QuantType::F16, QuantType::Q8_0];

/// How KV rows of `ty` are read (`head_words`, `pair_words`, `decode_pair`) and stored
/// (`encode`); `None` for formats the GPU does not keep.
fn kv_format(ty: QuantType) -> Option<(&'static str, &'static str)> {
    match ty {
        QuantType::F16 => Some((include_str!("wgsl/kv/f16.wgsl"), include_str!("wgsl/kv/f16_store.wgsl"))),
        QuantType::Q8_0 => Some((
            include_str!("wgsl/kv/q8_0.wgsl"),
            include_str!("wgsl/kv/q8_0_store.wgsl"),
        )),
        _ => None,
    }
}

/// Per-head norms (where the model has them), rotation, and the keys and values stored in
/// their slots, for a cache of `kv`.
pub fn attention_input(norms: bool, kv: QuantType) -> Option<Kernel> {
    let (read, store) = kv_format(kv)?;
    Some(kernel(
        "attention_input",
        &[
            head_norms(norms),
            read,
            store,
            KV_PAGES,
            WORKGROUP_SUM,
            HEAD_INPUT,
            include_str!("wgsl/attention_input.wgsl"),
        ],
    ))
}

/// Attention over the paged KV cache of `kv`, of queries `attention_input` readied.
pub fn attention(kv: QuantType) -> Option<Kernel> {
    const PRELUDE: &str = concat!(
        "const FUSED: bool = false;\n",
        "@group(0) @binding(4) var<storage, read> q: array<f32>;\n",
        "@group(0) @binding(5) var<storage, read_write> out: array<f32>;\n",
        "fn ready(t: u32, h: u32, g: u32, q0: u32, lid: u32) {\n",
        "    for (var d = lid; d < p.head_dim; d += WG) { q_head[d] = q[q0 + d]; }\n",
        "    workgroupBarrier();\n",
        "}\n",
    );
    let (read, _) = kv_format(kv)?;
    Some(kernel(
        "attend",
        &[PRELUDE, read, KV_PAGES, include_str!("wgsl/attention.wgsl")],
    ))
}

/// A decode step's attention over a cache of `kv`, `attention_input`'s work included (see
/// attention.wgsl).
pub fn attention_fused(norms: bool, kv: QuantType) -> Option<Kernel> {
    let (read, store) = kv_format(kv)?;
    Some(kernel(
        "attend",
        &[
            "const FUSED: bool = true;\n@group(0) @binding(9) var<storage, read_write> out: array<f32>;\n",
            head_norms(norms),
            read,
            store,
            KV_PAGES,
            WORKGROUP_SUM,
            HEAD_INPUT,
            include_str!("wgsl/ready_own.wgsl"),
            include_str!("wgsl/attention.wgsl"),
        ],
    ))
}

/// Candidates `top_k` keeps per row, and logits (or merged candidates) per workgroup.
pub const TOP_K: usize = 64;
pub const TOP_K_RUN: usize = 1024;

/// The most likely tokens of each row of logits: a first pass over the logits, or a merge of
/// an earlier pass's candidates (see top_k.wgsl).
pub fn top_k(merge: bool) -> Kernel {
    let entry = if merge { "top_k_merge" } else { "top_k_logits" };
    kernel(entry, &[WORKGROUP_SUM, include_str!("wgsl/top_k.wgsl")])
}

/// The weight formats the GPU kernels run.
pub const WEIGHT_FORMATS: [QuantType; 13] = [
    QuantType::F32,
    QuantType::F16,
    QuantType::BF16,
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::Q2K,
    QuantType::Q3K,
    QuantType::Q4K,
    QuantType::Q5K,
    QuantType::Q6K,
];
