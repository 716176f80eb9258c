//! The kernel table: for each block format, its band of dot products on each [`KernelPath`]
//! (scalar reference, simd128, AVX2, AVX-512 VNNI), and each activation format's quantiser.
//! The formats' kernels are trait impls in each instruction set's file (`Simd128Dot`,
//! `Avx2Dot`); this file only picks one by path.

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

/// The kernels a weight format must have for this target's instruction sets: one impl per
/// instruction set, in its file. A new format is its block file plus those impls.
#[cfg(target_arch = "x86_64")]
pub(super) trait TargetDots: crate::avx2::Avx2Dot {}
#[cfg(target_arch = "x86_64")]
impl<B: crate::avx2::Avx2Dot> TargetDots for B {}
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(super) trait TargetDots: crate::simd128::Simd128Dot {}
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
impl<B: crate::simd128::Simd128Dot> TargetDots for B {}
#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
pub(super) trait TargetDots {}
#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
impl<B> TargetDots for B {}

impl<B: WeightBlock<Act: Quantize> + TargetDots> Kernels for B {
    fn band_fn<const N: usize>(path: KernelPath) -> BandFn<Self, N> {
        match path.0 {
            Path::Scalar => |band, n, ys, out| each_row(band, n, out, |x| ys.map(|y| B::vec_dot(x, y.blocks))),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Path::Simd128 => |band, n, ys, out| each_row(band, n, out, |x| B::dot(x, ys)),
            // SAFETY: an Avx2 path exists only when the CPU has AVX2, FMA and F16C, an
            // Avx512Vnni path only when it also has AVX-512F/VL/BW and VNNI.
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => |band, n, ys, out| unsafe { crate::avx2::band_avx2(band, n, ys, out) },
            #[cfg(target_arch = "x86_64")]
            Path::Avx512Vnni => |band, n, ys, out| unsafe { crate::avx512vnni::band_vnni(band, n, ys, out) },
        }
    }
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
