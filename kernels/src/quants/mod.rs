//! Block formats, byte for byte the layouts of ggml's `ggml-common.h`.
//!
//! Each format is one `#[repr(C)]` block type with its scalar reference code:
//! `to_float` (dequantise), `from_float` (quantise, for the activation formats) and
//! `vec_dot` (dot product against the activation format ggml pairs it with).
//! The SIMD versions of `vec_dot` live in one file per instruction set.

mod float;
pub use float::weighted_sum;
mod k_quants;
mod legacy;

pub use k_quants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};
pub use legacy::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};

use crate::QuantType;
use bytemuck::Pod;

/// One block of a format: `BLOCK_SIZE` values packed into `size_of::<Self>()` bytes.
pub trait Block: Pod + Send + Sync {
    const TYPE: QuantType;
    const BLOCK_SIZE: usize;

    /// Dequantises `blocks` into `out` (`blocks.len() * BLOCK_SIZE` values).
    fn to_float(blocks: &[Self], out: &mut [f32]);
}

/// A format activations are quantised into before a dot product.
pub trait ActivationBlock: Block {
    /// Quantises `x` (`out.len() * BLOCK_SIZE` values) exactly as ggml's reference code does.
    fn from_float(x: &[f32], out: &mut [Self]);

    /// Each block's f16 scale as f32, for kernels that read the scales apart from the blocks
    /// (empty for formats without f16 scales).
    fn scales(_blocks: &[Self]) -> Vec<f32> {
        Vec::new()
    }

    /// Each block's values split by sign, for kernels that multiply them as two unsigned parts
    /// (empty for the formats that have none).
    fn signed_parts(_blocks: &[Self]) -> Vec<SignedParts> {
        Vec::new()
    }
}

/// A 32-value block of signed 8-bit activations `q` as two unsigned parts, `q = positive −
/// negative`: both in 0..=127 for the values the quantisers make (|q| ≤ 127).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SignedParts {
    pub positive: [u8; 32],
    pub negative: [u8; 32],
}

/// One activation row as the 32-value formats' SIMD kernels take it: its blocks, their scales
/// as f32 ([`ActivationBlock::scales`]) and, where the path's kernels take them, the blocks'
/// [`SignedParts`] (empty otherwise). A matmul makes both once per row of activations instead
/// of once per weight row, which in decode is the 262,144 rows of the output matrix.
#[derive(Clone, Copy)]
pub struct ScaledRow<'a, A> {
    pub blocks: &'a [A],
    pub scales: &'a [f32],
    pub parts: &'a [SignedParts],
}

/// A weight format, with its scalar reference dot product.
pub trait WeightBlock: Block {
    type Act: ActivationBlock;

    /// Σ x·y over the blocks, with integer sums per block where the format allows.
    fn vec_dot(x: &[Self], y: &[Self::Act]) -> f32;
}

/// ggml's `nearest_int`: round half to even via the 1.5·2²³ trick (valid for |x| < 2²²).
pub(crate) fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_ggml() {
        fn check<B: Block>() {
            assert_eq!(std::mem::size_of::<B>(), B::TYPE.type_size(), "{}", B::TYPE);
            assert_eq!(B::BLOCK_SIZE, B::TYPE.block_size(), "{}", B::TYPE);
        }
        check::<f32>();
        check::<half::f16>();
        check::<half::bf16>();
        check::<BlockQ4_0>();
        check::<BlockQ4_1>();
        check::<BlockQ5_0>();
        check::<BlockQ5_1>();
        check::<BlockQ8_0>();
        check::<BlockQ8_1>();
        check::<BlockQ2K>();
        check::<BlockQ3K>();
        check::<BlockQ4K>();
        check::<BlockQ5K>();
        check::<BlockQ6K>();
        check::<BlockQ8K>();
    }

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(3.5), 4);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-126.7), -127);
    }
}
