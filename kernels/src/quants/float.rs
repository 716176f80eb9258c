//! Unquantised formats as one-value "blocks": F32, F16, BF16.
//!
//! ggml pairs each with itself in `vec_dot`; the scalar reference accumulates in f64
//! as ggml's `ggml_vec_dot_f16` does with `ggml_float`.

use super::{ActivationBlock, Block, WeightBlock};
use crate::QuantType;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

impl Block for f32 {
    const TYPE: QuantType = QuantType::F32;
    const BLOCK_SIZE: usize = 1;
    fn to_float(blocks: &[Self], out: &mut [f32]) {
        out.copy_from_slice(blocks);
    }
}

impl ActivationBlock for f32 {
    fn from_float(x: &[f32], out: &mut [Self]) {
        out.copy_from_slice(x);
    }
}

impl WeightBlock for f32 {
    type Act = f32;
    fn vec_dot(x: &[f32], y: &[f32]) -> f32 {
        x.iter().zip(y).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() as f32
    }
}

/// F16 and BF16 differ only in their conversions.
macro_rules! half_format {
    ($t:ty, $qt:expr, $to_f32:expr) => {
        impl Block for $t {
            const TYPE: QuantType = $qt;
            const BLOCK_SIZE: usize = 1;
            fn to_float(blocks: &[Self], out: &mut [f32]) {
                $to_f32(blocks, out);
            }
        }

        impl ActivationBlock for $t {
            fn from_float(x: &[f32], out: &mut [Self]) {
                out.convert_from_f32_slice(x);
            }
        }

        impl WeightBlock for $t {
            type Act = $t;
            fn vec_dot(x: &[Self], y: &[Self]) -> f32 {
                x.iter().zip(y).map(|(a, b)| a.to_f64() * b.to_f64()).sum::<f64>() as f32
            }
        }
    };
}

/// half's slice conversion: F16C where the CPU has it, exact either way.
fn half_to_f32<T: HalfFloatSliceExt + ?Sized>(blocks: &T, out: &mut [f32]) {
    blocks.convert_to_f32_slice(out);
}

/// F16 is the KV cache's format, read every decode step: half has no wasm SIMD, so wasm uses
/// the simd128 conversion (the same values).
fn f16_to_f32(blocks: &[f16], out: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return crate::simd128::f16_to_f32(blocks, out);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    half_to_f32(blocks, out);
}

half_format!(f16, QuantType::F16, f16_to_f32);
half_format!(bf16, QuantType::BF16, half_to_f32);

/// `out = Σ_j weights[j] · rows[j]`, row `j` being `rows[j·stride..][..out.len()]`: each value
/// summed in order of `j`, a product and an add at a time. The SIMD paths keep that order lane
/// by lane, so a weight of 0 anywhere changes no sum (attention's weights are 0 outside a
/// token's view, and batched and lone sequences see different spans of 0).
pub fn weighted_sum(weights: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    let n = out.len();
    out.fill(0.0);
    for (j, &w) in weights.iter().enumerate() {
        for (o, v) in out.iter_mut().zip(&rows[j * stride..][..n]) {
            *o += w * v;
        }
    }
}
