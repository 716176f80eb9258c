//! The kernel table: for each block format, its band of dot products on each [`KernelPath`]
//! (scalar reference, simd128, AVX2, AVX-512 VNNI), and each activation format's quantiser.

use super::path::{KernelPath, Path};
use crate::quants::*;
use crate::QuantType;
use half::{bf16, f16};

/// Dot products of each row of a band (whole rows of `blocks_per_row` blocks) with `N`
/// activation rows: `out[r][i]` for row `r` and activation row `i`. Whatever `N`, a weight row
/// and an activation row give bit for bit the same sum.
pub(super) type BandFn<B, const N: usize> =
    for<'a> fn(&[B], usize, [ScaledRow<'a, <B as WeightBlock>::Act>; N], &mut [[f32; N]]);

/// A weight format's band of dot products on each path. The loop over rows runs inside the
/// path's kernel, so each row's dot product is inlined into it, not called.
pub(super) trait Kernels: WeightBlock<Act: Quantize> {
    fn band_fn<const N: usize>(path: KernelPath) -> BandFn<Self, N>;
}

/// An activation format's quantiser on each path (the scalar `from_float` unless a path has its
/// own, bit for bit the same).
pub(super) trait Quantize: ActivationBlock {
    fn quantize_fn(_path: KernelPath) -> fn(&[f32], &mut [Self]) {
        Self::from_float
    }
}

impl Quantize for f32 {}
impl Quantize for f16 {}
impl Quantize for bf16 {}
impl Quantize for BlockQ8_1 {}
impl Quantize for BlockQ8K {}

impl Quantize for BlockQ8_0 {
    fn quantize_fn(path: KernelPath) -> fn(&[f32], &mut [Self]) {
        match path.0 {
            // SAFETY: both x86 paths vouch for AVX2, FMA and F16C.
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 | Path::Avx512Vnni => |x, out| unsafe { crate::avx2::quantize_q8_0(x, out) },
            _ => Self::from_float,
        }
    }
}

/// `out[r] = dot(row r)` for each row of `band`.
#[inline(always)]
fn each_row<B, R>(band: &[B], blocks_per_row: usize, out: &mut [R], dot: impl Fn(&[B]) -> R) {
    for (row, o) in band.chunks_exact(blocks_per_row).zip(out) {
        *o = dot(row);
    }
}

/// The kernel table: weight block => name of its function in `simd128.rs` and `avx2.rs`, and
/// how it takes activations: `scaled` functions take `N` activation rows with their f32 block
/// scales, `tiled` ones `N` rows of blocks alone (in `simd128.rs`; the AVX2 k-quants take
/// `ScaledRow`s and use only their blocks); both unpack each weight block once for all `N`.
/// `one` functions take one row and are called once per row.
macro_rules! kernel_table {
    ($($block:ty => $name:ident $mode:ident),* $(,)?) => {$(
        impl Kernels for $block {
            fn band_fn<const N: usize>(path: KernelPath) -> BandFn<Self, N> {
                match path.0 {
                    Path::Scalar => |band, n, ys, out| each_row(band, n, out, |x| ys.map(|y| <$block as WeightBlock>::vec_dot(x, y.blocks))),
                    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                    Path::Simd128 => |band, n, ys, out| each_row(band, n, out, |x| kernel_table!(@simd128 $name $mode, x, ys)),
                    // SAFETY: an Avx2 path exists only when the CPU has AVX2, FMA and F16C, an
                    // Avx512Vnni path only when it also has AVX-512F/VL/BW and VNNI.
                    #[cfg(target_arch = "x86_64")]
                    Path::Avx2 => |band, n, ys, out| unsafe { crate::avx2::band_avx2(band, n, ys, out) },
                    #[cfg(target_arch = "x86_64")]
                    Path::Avx512Vnni => |band, n, ys, out| unsafe { crate::avx512vnni::band_vnni(band, n, ys, out) },
                }
            }
        }

        #[cfg(target_arch = "x86_64")]
        impl crate::avx2::Avx2Dot for $block {
            #[inline(always)]
            unsafe fn dot<D: crate::avx2::IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<Self::Act>; N]) -> [f32; N] {
                kernel_table!(@avx2 $name $mode, x, ys)
            }
        }
    )*};
    (@simd128 $name:ident one, $x:ident, $ys:ident) => { $ys.map(|y| crate::simd128::$name($x, y.blocks)) };
    (@simd128 $name:ident tiled, $x:ident, $ys:ident) => { crate::simd128::$name($x, $ys.map(|y| y.blocks)) };
    (@simd128 $name:ident scaled, $x:ident, $ys:ident) => { crate::simd128::$name($x, $ys) };
    (@avx2 $name:ident one, $x:ident, $ys:ident) => { crate::avx2::array(0.0, #[inline(always)] |n| crate::avx2::$name($x, $ys[n].blocks)) };
    (@avx2 $name:ident $mode:ident, $x:ident, $ys:ident) => { crate::avx2::$name::<D, N>($x, $ys) };
}

kernel_table! {
    f32 => vec_dot_f32 one,
    f16 => vec_dot_f16 one,
    bf16 => vec_dot_bf16 one,
    BlockQ4_0 => vec_dot_q4_0 scaled,
    BlockQ4_1 => vec_dot_q4_1 scaled,
    BlockQ5_0 => vec_dot_q5_0 scaled,
    BlockQ5_1 => vec_dot_q5_1 scaled,
    BlockQ8_0 => vec_dot_q8_0 scaled,
    BlockQ2K => vec_dot_q2_k tiled,
    BlockQ3K => vec_dot_q3_k tiled,
    BlockQ4K => vec_dot_q4_k tiled,
    BlockQ5K => vec_dot_q5_k tiled,
    BlockQ6K => vec_dot_q6_k tiled,
}

/// The activations' [`SignedParts`] where `path`'s kernels for weights `B` take them (once per
/// matmul, not once per weight row), else none. Q8_0 is the one format with signed weights.
pub(super) fn signed_parts<B: WeightBlock>(path: KernelPath, acts: &[B::Act]) -> Vec<SignedParts> {
    let path_takes_them = match path.0 {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Path::Simd128 => crate::simd128::TAKES_SIGNED_PARTS,
        _ => false,
    };
    if B::TYPE == QuantType::Q8_0 && path_takes_them {
        B::Act::signed_parts(acts)
    } else {
        Vec::new()
    }
}
