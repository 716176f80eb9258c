//! The one dispatch point: from a [`QuantType`] and raw bytes to the typed block code, and from
//! a [`KernelPath`] to the scalar, simd128, AVX2 or AVX-512 VNNI version of each operation.
//!
//! - `path.rs`: which kernels this machine runs (CPU feature detection).
//! - `table.rs`: the kernel table, each format's kernels on each path.
//! - `matmul.rs`: the tiled matmul.
//! - here: the public entry points on raw bytes, and their checks.

mod matmul;
mod path;
mod table;

pub use path::KernelPath;

use crate::quants::*;
use crate::QuantType;
use half::{bf16, f16};
use matmul::matmul_typed;
use path::Path;
use table::{signed_parts, Kernels};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("{ty} has no {what}")]
    Unsupported { ty: QuantType, what: &'static str },
    #[error("{ty} data: {len} bytes is not a whole number of {size}-byte blocks")]
    Length { ty: QuantType, len: usize, size: usize },
    #[error("{ty} data is not aligned to {align} bytes")]
    Alignment { ty: QuantType, align: usize },
    #[error("shape mismatch: {0}")]
    Shape(String),
}

/// Views `bytes` as blocks of `B`.
pub(super) fn blocks<B: Block>(bytes: &[u8]) -> Result<&[B], KernelError> {
    whole_blocks::<B>(bytes.len())?;
    bytemuck::try_cast_slice(bytes).map_err(|_| misaligned::<B>())
}

fn blocks_mut<B: Block>(bytes: &mut [u8]) -> Result<&mut [B], KernelError> {
    whole_blocks::<B>(bytes.len())?;
    bytemuck::try_cast_slice_mut(bytes).map_err(|_| misaligned::<B>())
}

fn whole_blocks<B: Block>(len: usize) -> Result<(), KernelError> {
    let size = std::mem::size_of::<B>();
    if len.is_multiple_of(size) {
        Ok(())
    } else {
        Err(KernelError::Length { ty: B::TYPE, len, size })
    }
}

fn misaligned<B: Block>() -> KernelError {
    KernelError::Alignment {
        ty: B::TYPE,
        align: std::mem::align_of::<B>(),
    }
}

/// Calls `$f::<Block>` for the block type of `$ty`; `$other` handles the types `$f` does not take.
macro_rules! with_block {
    ($ty:expr, $f:ident, [$($variant:ident => $block:ty),*], $args:tt, $other:expr) => {
        match $ty {
            $(QuantType::$variant => $f::<$block> $args,)*
            #[allow(unreachable_patterns)]
            _ => $other,
        }
    };
}

fn dequantize_typed<B: Block>(data: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    let blocks = blocks::<B>(data)?;
    if out.len() != blocks.len() * B::BLOCK_SIZE {
        return Err(KernelError::Shape(format!(
            "{} blocks of {} need {} outputs, got {}",
            blocks.len(),
            B::TYPE,
            blocks.len() * B::BLOCK_SIZE,
            out.len()
        )));
    }
    B::to_float(blocks, out);
    Ok(())
}

/// Dequantises `data` (whole blocks of `ty`) into `out`.
pub fn dequantize(ty: QuantType, data: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    with_block!(ty, dequantize_typed, [
        F32 => f32, F16 => f16, BF16 => bf16, Q4_0 => BlockQ4_0, Q4_1 => BlockQ4_1, Q5_0 => BlockQ5_0,
        Q5_1 => BlockQ5_1, Q8_0 => BlockQ8_0, Q8_1 => BlockQ8_1, Q2K => BlockQ2K, Q3K => BlockQ3K,
        Q4K => BlockQ4K, Q5K => BlockQ5K, Q6K => BlockQ6K, Q8K => BlockQ8K
    ], (data, out), unreachable!("every QuantType dequantises"))
}

fn quantize_typed<B: ActivationBlock>(x: &[f32], out: &mut [u8]) -> Result<(), KernelError> {
    let blocks = blocks_mut::<B>(out)?;
    if x.len() != blocks.len() * B::BLOCK_SIZE {
        return Err(KernelError::Shape(format!(
            "{} values do not fill {} blocks of {}",
            x.len(),
            blocks.len(),
            B::TYPE
        )));
    }
    B::from_float(x, blocks);
    Ok(())
}

/// Quantises `x` into `out` in activation format `ty` (F32, F16, BF16, Q8_0, Q8_1 or Q8_K).
pub fn quantize_activations(ty: QuantType, x: &[f32], out: &mut [u8]) -> Result<(), KernelError> {
    with_block!(ty, quantize_typed, [
        F32 => f32, F16 => f16, BF16 => bf16, Q8_0 => BlockQ8_0, Q8_1 => BlockQ8_1, Q8K => BlockQ8K
    ], (x, out), Err(KernelError::Unsupported { ty, what: "activation quantiser" }))
}

fn vec_dot_typed<B: Kernels>(path: KernelPath, w: &[u8], a: &[u8]) -> Result<f32, KernelError> {
    let (w, a) = (blocks::<B>(w)?, blocks::<B::Act>(a)?);
    if w.len() * B::BLOCK_SIZE != a.len() * B::Act::BLOCK_SIZE {
        return Err(KernelError::Shape(format!(
            "{} weights against {} activations",
            w.len() * B::BLOCK_SIZE,
            a.len() * B::Act::BLOCK_SIZE
        )));
    }
    let (scales, parts) = (B::Act::scales(a), signed_parts::<B>(path, a));
    let mut out = [[0.0]];
    B::band_fn::<1>(path)(
        w,
        w.len(),
        [ScaledRow {
            blocks: a,
            scales: &scales,
            parts: &parts,
        }],
        &mut out,
    );
    Ok(out[0][0])
}

/// Dot product of a weight row `w` (format `ty`) with an activation row `a`, already quantised
/// to `ty.vec_dot_type()`.
pub fn vec_dot(path: KernelPath, ty: QuantType, w: &[u8], a: &[u8]) -> Result<f32, KernelError> {
    with_block!(ty, vec_dot_typed, [
        F32 => f32, F16 => f16, BF16 => bf16, Q4_0 => BlockQ4_0, Q4_1 => BlockQ4_1, Q5_0 => BlockQ5_0,
        Q5_1 => BlockQ5_1, Q8_0 => BlockQ8_0, Q2K => BlockQ2K, Q3K => BlockQ3K, Q4K => BlockQ4K,
        Q5K => BlockQ5K, Q6K => BlockQ6K
    ], (path, w, a), Err(KernelError::Unsupported { ty, what: "vec_dot (it is an activation format)" }))
}

/// `out = Σ_j weights[j] · rows[j·stride..][..out.len()]` on `path`, each value summed in order
/// of `j` (see [`crate::quants::weighted_sum`]): attention's weighted sum of value rows.
pub fn weighted_sum(
    path: KernelPath,
    weights: &[f32],
    rows: &[f32],
    stride: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let needed = weights.len().checked_sub(1).map_or(0, |last| last * stride + out.len());
    if out.len() > stride || rows.len() < needed {
        return Err(KernelError::Shape(format!(
            "{} rows of {} values {stride} apart need {needed} values, got {}",
            weights.len(),
            out.len(),
            rows.len()
        )));
    }
    match path.0 {
        Path::Scalar => crate::quants::weighted_sum(weights, rows, stride, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Path::Simd128 => crate::simd128::weighted_sum(weights, rows, stride, out),
        // SAFETY: both x86 paths vouch for AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 | Path::Avx512Vnni => unsafe { crate::avx2::weighted_sum(weights, rows, stride, out) },
    }
    Ok(())
}

/// `out = x · wᵀ`: `w` is (n_rows, k) in format `ty`, `x` is (n_tokens, k) f32,
/// `out` is (n_tokens, n_rows).
pub fn matmul(
    path: KernelPath,
    ty: QuantType,
    w: &[u8],
    x: &[f32],
    k: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    with_block!(ty, matmul_typed, [
        F32 => f32, F16 => f16, BF16 => bf16, Q4_0 => BlockQ4_0, Q4_1 => BlockQ4_1, Q5_0 => BlockQ5_0,
        Q5_1 => BlockQ5_1, Q8_0 => BlockQ8_0, Q2K => BlockQ2K, Q3K => BlockQ3K, Q4K => BlockQ4K,
        Q5K => BlockQ5K, Q6K => BlockQ6K
    ], (path, w, x, k, out), Err(KernelError::Unsupported { ty, what: "matmul (it is an activation format)" }))
}
