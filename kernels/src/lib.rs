//! rill-kernels: ggml's quantised block formats and the kernels that compute with them.
//!
//! - [`quants`]: one block type per format with its scalar reference code.
//! - `simd128` / `avx2` / `avx512vnni`: the same dot products per instruction set.
//! - [`dispatch`]: the one place that picks a kernel path and runs a format by its
//!   [`QuantType`] on raw bytes (dequantise, quantise activations, dot, matmul).

pub mod dispatch;
mod quant_type;
pub mod quants;
pub mod wgsl;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512vnni;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;

pub use dispatch::{dequantize, matmul, quantize_activations, vec_dot, weighted_sum, KernelError, KernelPath};
pub use quant_type::{QuantType, QK_K};
