//! The WGSL kernels the GPU device runs (`wgsl/`), composed into modules: a weight format's
//! `dequant` (32 values of a row to f32) with the byte readers, then the kernel that uses it;
//! the KV cache's page layout before the two kernels that address it.
//!
//! Every kernel reads f32 activations; a weight matrix is bound as the file's bytes (`array<u32>`),
//! so the device holds the weights exactly as the CPU kernels read them.

use crate::QuantType;

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
    let scales = if matches!(ty, QuantType::Q4K | QuantType::Q5K) { K_SCALES } else { "" };
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

/// `y (n, rows) = x (n, cols) · wᵀ` for weights in format `ty`.
pub fn matmul(ty: QuantType) -> Option<Kernel> {
    Some(kernel("matmul", &[&dequant(ty)?, include_str!("wgsl/matmul.wgsl")]))
}

/// Embedding rows of a table in format `ty`.
pub fn embed(ty: QuantType) -> Option<Kernel> {
    Some(kernel("embed", &[&dequant(ty)?, include_str!("wgsl/embed.wgsl")]))
}

const NORM: &str = include_str!("wgsl/norm.wgsl");
const ELEMENTWISE: &str = include_str!("wgsl/elementwise.wgsl");
const KV_PAGES: &str = include_str!("wgsl/kv_pages.wgsl");

pub fn rms_norm() -> Kernel {
    kernel("rms_norm", &[NORM])
}

pub fn rms_norm_in_place() -> Kernel {
    kernel("rms_norm_in_place", &[NORM])
}

pub fn geglu() -> Kernel {
    kernel("geglu", &[ELEMENTWISE])
}

pub fn add() -> Kernel {
    kernel("add", &[ELEMENTWISE])
}

pub fn gather() -> Kernel {
    kernel("gather", &[ELEMENTWISE])
}

pub fn rope() -> Kernel {
    kernel("rope", &[include_str!("wgsl/rope.wgsl")])
}

pub fn kv_store() -> Kernel {
    kernel("store", &[KV_PAGES, include_str!("wgsl/kv_store.wgsl")])
}

pub fn attention() -> Kernel {
    kernel("attend", &[KV_PAGES, include_str!("wgsl/attention.wgsl")])
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
