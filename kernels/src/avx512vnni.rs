//! x86-64 AVX-512 VNNI: the AVX2 kernels with each integer multiply-add fused into one
//! instruction. `vpdpbusd` sums four u8 × i8 products into an i32 lane (AVX2 needs `maddubs`
//! then `madd`), `vpdpwssd` adds i16 pair products to an accumulator (`madd` then `add`).
//! Both give the same exact integer sums as AVX2, so results are bit-identical to that path.
//! The vectors stay 256 bits wide (AVX-512VL): one legacy block is 32 bytes.
//!
//! SAFETY (whole file): callers must have checked AVX2, FMA, F16C, AVX-512F/VL/BW and VNNI
//! (`KernelPath` does).

use crate::avx2::{band_dots, Avx2Dot, IntDots};
use crate::quants::ScaledRow;
use std::arch::x86_64::*;

pub struct Vnni;

impl IntDots for Vnni {
    #[inline(always)]
    unsafe fn dot_unsigned(x: __m256i, y: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y)
    }

    #[inline(always)]
    unsafe fn madd_add(acc: __m256i, p: __m256i, s: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, p, s)
    }
}

/// Every row of `band` against `ys`, as `avx2::band_avx2` but with VNNI's multiply-adds.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
pub unsafe fn band_vnni<B: Avx2Dot, const N: usize>(
    band: &[B],
    blocks_per_row: usize,
    ys: [ScaledRow<B::Act>; N],
    out: &mut [[f32; N]],
) {
    band_dots::<Vnni, B, N>(band, blocks_per_row, ys, out)
}
