//! x86-64 AVX2 + FMA (+ F16C) dot products, selected at run time by [`crate::KernelPath`].
//!
//! Every quantised format is unpacked 32 values at a time into bytes and multiplied against the
//! activation bytes 4 products per i32 lane (legacy formats), or 2 per i16 then weighted by the
//! sub-block scales (k-quants). Those integer multiply-adds are the one thing that differs on
//! a CPU with AVX-512 VNNI: the kernels take them from an [`IntDots`] type, [`Avx2`] here and
//! `Vnni` in `avx512vnni.rs`. Integer sums are exact; only the per-block f32 scaling differs in
//! rounding from the scalar reference.
//!
//! The dot products are `#[inline(always)]` and carry no target features of their own: they are
//! compiled into [`band_avx2`] (or `avx512vnni.rs`'s `band_vnni`), which enable the features,
//! with each row's kernel inlined into the loop over rows (the model's rows are short, 640
//! values; a call per row cost ~10% of decode).
//!
//! SAFETY (whole file): callers must have checked AVX2, FMA and F16C (`KernelPath` does),
//! and pass `x` and `y` covering the same number of values (`dispatch` does).

use crate::quants::*;
use half::{bf16, f16};
use std::arch::x86_64::*;

#[inline(always)]
unsafe fn hsum_f32(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// f16 → f32 by F16C, inlined: half's `to_f32` is an out-of-line call behind a feature check,
/// which costs as much as the integer work of a small block.
#[inline(always)]
unsafe fn f32_of(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
}

#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// The integer multiply-adds of the kernels.
pub trait IntDots {
    /// 8 i32 lanes, each the sum of 4 products of unsigned `x` bytes (≤ 128) and signed `y` bytes.
    unsafe fn dot_unsigned(x: __m256i, y: __m256i) -> __m256i;
    /// `acc` plus the products of i16 `p` and `s`, summed in pairs into i32 lanes.
    unsafe fn madd_add(acc: __m256i, p: __m256i, s: __m256i) -> __m256i;
}

/// AVX2's: `maddubs` (u8 × i8 → i16 pairs) then `madd` (i16 × i16 → i32 pairs).
pub struct Avx2;

impl IntDots for Avx2 {
    #[inline(always)]
    unsafe fn dot_unsigned(x: __m256i, y: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
    }

    #[inline(always)]
    unsafe fn madd_add(acc: __m256i, p: __m256i, s: __m256i) -> __m256i {
        _mm256_add_epi32(acc, _mm256_madd_epi16(p, s))
    }
}

/// A weight format's kernel on AVX2 (and AVX-512 VNNI, through `D`): its dot products with `N`
/// activation rows at once, each weight block unpacked once for all of them. Each format
/// implements it below from its family's helper (`legacy_dot`, `k_dot`, `float_dot`).
pub trait Avx2Dot: WeightBlock {
    unsafe fn dot<D: IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<Self::Act>; N]) -> [f32; N];
}

/// Every row of `band` (rows of `blocks_per_row` blocks) against `ys`: `out[r]` for row `r`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn band_avx2<B: Avx2Dot, const N: usize>(
    band: &[B],
    blocks_per_row: usize,
    ys: [ScaledRow<B::Act>; N],
    out: &mut [[f32; N]],
) {
    band_dots::<Avx2, B, N>(band, blocks_per_row, ys, out)
}

/// [`band_avx2`]'s loop, for any [`IntDots`]: inlined into the function that enables the features.
#[inline(always)]
pub unsafe fn band_dots<D: IntDots, B: Avx2Dot, const N: usize>(
    band: &[B],
    blocks_per_row: usize,
    ys: [ScaledRow<B::Act>; N],
    out: &mut [[f32; N]],
) {
    for (row, o) in band.chunks_exact(blocks_per_row).zip(out) {
        *o = B::dot::<D, N>(row, ys);
    }
}

/// `D::dot_unsigned` of signed `x` (moves x's sign onto y).
#[inline(always)]
unsafe fn dot_signed<D: IntDots>(x: __m256i, y: __m256i) -> __m256i {
    D::dot_unsigned(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// 16 bytes of nibbles → 32 bytes: low nibbles first, then high nibbles (0..=15 each).
#[inline(always)]
unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
    let lo = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
    let hi = _mm_srli_epi16::<4>(lo);
    _mm256_and_si256(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(0x0f))
}

/// 32 bits → 32 bytes, 0x10 where the bit is set (the fifth bit of Q5 values).
#[inline(always)]
unsafe fn fifth_bits(qh: [u8; 4]) -> __m256i {
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(i32::from_le_bytes(qh)),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0),
    );
    let bit = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// Four f16 → f32, one per lane.
#[inline(always)]
unsafe fn f32x4_of(h: [f16; 4]) -> __m128 {
    let bits = |i: usize| h[i].to_bits() as i16;
    _mm_cvtph_ps(_mm_set_epi16(0, 0, 0, 0, bits(3), bits(2), bits(1), bits(0)))
}

/// Σ over 32-value blocks of `d(x)·d(y)·(x_q · y_q)` (`products` gives `x_q · y_q` as 8 i32 lanes) plus an optional per-block offset term,
/// for `N` activation rows at once: each weight block is unpacked once and used `N` times
/// (a prompt's tokens share the weight row; decode has `N = 1`). The f16 scales of four weight
/// blocks are converted together and multiplied with the activations' (converted once per
/// matmul); each block's eight partial sums are then scaled and added lane by lane, as
/// llama.cpp adds them (the model's logits are sensitive to that order).
#[inline(always)]
unsafe fn legacy_dot<D: IntDots, X, Y, const N: usize>(
    x: &[X],
    ys: [ScaledRow<Y>; N],
    x_d: impl Fn(&X) -> f16,
    values: impl Fn(&X) -> __m256i,
    products: impl Fn(__m256i, &Y) -> __m256i,
    offset: impl Fn(&X, &Y) -> f32,
) -> [f32; N] {
    assert!(ys
        .iter()
        .all(|y| y.blocks.len() == x.len() && y.scales.len() == x.len()));
    let mut acc = [_mm256_setzero_ps(); N];
    let mut offsets = [0.0; N];
    let groups = x.len() / 4;
    for g in 0..groups {
        let xs = &x[4 * g..4 * g + 4];
        // Decode streams each weight row from memory once: ask for the blocks 16 ahead now
        // (two lines' worth), which the hardware prefetcher alone fetches too late.
        _mm_prefetch::<_MM_HINT_T0>(x.as_ptr().wrapping_add(4 * g + 16) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(x.as_ptr().wrapping_add(4 * g + 18) as *const i8);
        let q = [values(&xs[0]), values(&xs[1]), values(&xs[2]), values(&xs[3])];
        let dx = f32x4_of([x_d(&xs[0]), x_d(&xs[1]), x_d(&xs[2]), x_d(&xs[3])]);
        for n in 0..N {
            let yb = &ys[n].blocks[4 * g..4 * g + 4];
            let scales: [f32; 4] =
                std::mem::transmute(_mm_mul_ps(dx, _mm_loadu_ps(ys[n].scales[4 * g..4 * g + 4].as_ptr())));
            for b in 0..4 {
                let sums = _mm256_cvtepi32_ps(products(q[b], &yb[b]));
                acc[n] = _mm256_fmadd_ps(_mm256_set1_ps(scales[b]), sums, acc[n]);
                offsets[n] += offset(&xs[b], &yb[b]);
            }
        }
    }
    for i in 4 * groups..x.len() {
        let q = values(&x[i]);
        for n in 0..N {
            let y = &ys[n].blocks[i];
            let sums = _mm256_cvtepi32_ps(products(q, y));
            acc[n] = _mm256_fmadd_ps(_mm256_set1_ps(f32_of(x_d(&x[i])) * ys[n].scales[i]), sums, acc[n]);
            offsets[n] += offset(&x[i], y);
        }
    }
    array(
        0.0,
        #[inline(always)]
        |n| hsum_f32(acc[n]) + offsets[n],
    )
}

impl Avx2Dot for BlockQ4_0 {
    #[inline(always)]
    unsafe fn dot<D: IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<BlockQ8_0>; N]) -> [f32; N] {
        legacy_dot::<D, _, _, N>(
            x,
            ys,
            #[inline(always)]
            |x| x.d,
            #[inline(always)]
            |x| _mm256_sub_epi8(nibbles(&x.qs), _mm256_set1_epi8(8)),
            #[inline(always)]
            |q, y| dot_signed::<D>(q, load(y.qs.as_ptr() as _)),
            #[inline(always)]
            |_, _| 0.0,
        )
    }
}

impl Avx2Dot for BlockQ4_1 {
    #[inline(always)]
    unsafe fn dot<D: IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<BlockQ8_1>; N]) -> [f32; N] {
        legacy_dot::<D, _, _, N>(
            x,
            ys,
            #[inline(always)]
            |x| x.d,
            #[inline(always)]
            |x| nibbles(&x.qs),
            #[inline(always)]
            |q, y| D::dot_unsigned(q, load(y.qs.as_ptr() as _)),
            #[inline(always)]
            |x, y| f32_of(x.m) * f32_of(y.s),
        )
    }
}

impl Avx2Dot for BlockQ5_0 {
    #[inline(always)]
    unsafe fn dot<D: IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<BlockQ8_0>; N]) -> [f32; N] {
        legacy_dot::<D, _, _, N>(
            x,
            ys,
            #[inline(always)]
            |x| x.d,
            #[inline(always)]
            |x| _mm256_sub_epi8(_mm256_or_si256(nibbles(&x.qs), fifth_bits(x.qh)), _mm256_set1_epi8(16)),
            #[inline(always)]
            |q, y| dot_signed::<D>(q, load(y.qs.as_ptr() as _)),
            #[inline(always)]
            |_, _| 0.0,
        )
    }
}

impl Avx2Dot for BlockQ5_1 {
    #[inline(always)]
    unsafe fn dot<D: IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<BlockQ8_1>; N]) -> [f32; N] {
        legacy_dot::<D, _, _, N>(
            x,
            ys,
            #[inline(always)]
            |x| x.d,
            #[inline(always)]
            |x| _mm256_or_si256(nibbles(&x.qs), fifth_bits(x.qh)),
            #[inline(always)]
            |q, y| D::dot_unsigned(q, load(y.qs.as_ptr() as _)),
            #[inline(always)]
            |x, y| f32_of(x.m) * f32_of(y.s),
        )
    }
}

impl Avx2Dot for BlockQ8_0 {
    #[inline(always)]
    unsafe fn dot<D: IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<BlockQ8_0>; N]) -> [f32; N] {
        legacy_dot::<D, _, _, N>(
            x,
            ys,
            #[inline(always)]
            |x| x.d,
            #[inline(always)]
            |x| load(x.qs.as_ptr() as _),
            #[inline(always)]
            |q, y| dot_signed::<D>(q, load(y.qs.as_ptr() as _)),
            #[inline(always)]
            |_, _| 0.0,
        )
    }
}

/// 2-bit fields at `shift` of 32 bytes (Q2_K/Q3_K layout), as bytes 0..=3.
#[inline(always)]
unsafe fn two_bits(q: __m256i, shift: i32) -> __m256i {
    _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(shift)), _mm256_set1_epi8(3))
}

/// One bit of each of 32 bytes, moved to bit `to` (bytes become 0 or 1<<to).
#[inline(always)]
unsafe fn bit_to(q: __m256i, bit: i32, to: i32) -> __m256i {
    let b = _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(bit)), _mm256_set1_epi8(1));
    _mm256_sll_epi16(b, _mm_cvtsi32_si128(to))
}

/// A k-quant super-block unpacked for the integer dot: 256 values as unsigned bytes in 8 chunks
/// of 32, a scale per 16 values, and a min per 16 values. Value k is worth
/// `d·scales[k/16]·u_k − dmin·mins[k/16]`. Q2_K, Q4_K and Q5_K store their mins and `dmin`;
/// Q3_K and Q6_K's signed values are unsigned ones minus 4 or 32, so their mins are that bias
/// times the scale, in units of `d` (`dmin: None`), and stay in the exact integer sum.
struct SuperBlock {
    d: f32,
    dmin: Option<f32>,
    values: [__m256i; 8],
    scales: [i16; 16],
    mins: [i16; 16],
}

/// Σ over super-blocks for `N` activation rows at once: each super-block is unpacked once and
/// used `N` times. Every product is `maddubs` of unsigned weights (≤ 63) and signed activations.
#[inline(always)]
unsafe fn k_dot<D: IntDots, X, const N: usize>(
    x: &[X],
    ys: [ScaledRow<BlockQ8K>; N],
    unpack: impl Fn(&X) -> SuperBlock,
) -> [f32; N] {
    assert!(ys.iter().all(|y| y.blocks.len() == x.len()));
    let mut acc = [_mm256_setzero_ps(); N];
    let mut offsets = [0.0; N];
    for (i, x) in x.iter().enumerate() {
        let b = unpack(x);
        let mins = _mm256_loadu_si256(b.mins.as_ptr() as *const __m256i);
        for n in 0..N {
            let y = &ys[n].blocks[i];
            let mut sumi = _mm256_setzero_si256();
            for (j, &v) in b.values.iter().enumerate() {
                // i16 pairs of products, weighted by the scales of their two 16-value halves.
                let p = _mm256_maddubs_epi16(v, load(y.qs[j * 32..].as_ptr() as _));
                let s = _mm256_set_m128i(_mm_set1_epi16(b.scales[2 * j + 1]), _mm_set1_epi16(b.scales[2 * j]));
                sumi = D::madd_add(sumi, p, s);
            }
            // Σ_k mins[k]·bsums[k], as 8 i32 lanes.
            let min_sums = _mm256_madd_epi16(mins, _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i));
            match b.dmin {
                None => sumi = _mm256_sub_epi32(sumi, min_sums),
                Some(dmin) => offsets[n] += dmin * y.d * hsum_f32(_mm256_cvtepi32_ps(min_sums)),
            }
            acc[n] = _mm256_fmadd_ps(_mm256_set1_ps(b.d * y.d), _mm256_cvtepi32_ps(sumi), acc[n]);
        }
    }
    array(
        0.0,
        #[inline(always)]
        |n| hsum_f32(acc[n]) - offsets[n],
    )
}

/// `[f(0), …, f(N−1)]`, always inlined: `array::from_fn` and `map` stayed out-of-line calls in
/// the k-quant unpacking (about 5% of native decode), their AVX2 closures called through memory.
#[inline(always)]
pub fn array<T: Copy, const N: usize>(init: T, f: impl Fn(usize) -> T) -> [T; N] {
    let mut out = [init; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = f(i);
    }
    out
}

/// Scale (or min) `k` of the eight 32-value sub-blocks, repeated for both 16-value halves.
fn per_16(v: [u8; 8]) -> [i16; 16] {
    array(
        0,
        #[inline(always)]
        |k| v[k / 2] as i16,
    )
}

impl Avx2Dot for BlockQ2K {
    #[inline(always)]
    unsafe fn dot<D: IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<BlockQ8K>; N]) -> [f32; N] {
        k_dot::<D, _, N>(
            x,
            ys,
            #[inline(always)]
            |x| {
                // Chunk j = 4·half + m: bits 2m.. of the half's 32 bytes.
                let q = [load(x.qs.as_ptr()), load(x.qs[32..].as_ptr())];
                SuperBlock {
                    d: f32_of(x.d),
                    dmin: Some(f32_of(x.dmin)),
                    values: array(
                        _mm256_setzero_si256(),
                        #[inline(always)]
                        |j| two_bits(q[j / 4], 2 * (j % 4) as i32),
                    ),
                    scales: array(
                        0,
                        #[inline(always)]
                        |k| (x.scales[k] & 0x0f) as i16,
                    ),
                    mins: array(
                        0,
                        #[inline(always)]
                        |k| (x.scales[k] >> 4) as i16,
                    ),
                }
            },
        )
    }
}

impl Avx2Dot for BlockQ3K {
    #[inline(always)]
    unsafe fn dot<D: IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<BlockQ8K>; N]) -> [f32; N] {
        k_dot::<D, _, N>(
            x,
            ys,
            #[inline(always)]
            |x| {
                // Chunk j = 4·half + m: bits 2m.. of the half's 32 bytes, high bit j of hmask.
                let q = [load(x.qs.as_ptr()), load(x.qs[32..].as_ptr())];
                let high = load(x.hmask.as_ptr());
                let sc = x.scales();
                let scales = array(
                    0,
                    #[inline(always)]
                    |k| sc[k] as i16,
                );
                SuperBlock {
                    d: f32_of(x.d),
                    dmin: None,
                    values: array(
                        _mm256_setzero_si256(),
                        #[inline(always)]
                        |j| _mm256_or_si256(two_bits(q[j / 4], 2 * (j % 4) as i32), bit_to(high, j as i32, 2)),
                    ),
                    scales,
                    mins: array(
                        0,
                        #[inline(always)]
                        |k| 4 * scales[k],
                    ),
                }
            },
        )
    }
}

/// Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins; `high(x, j)` adds Q5_K's fifth
/// bits to sub-block j.
#[inline(always)]
unsafe fn k4_unpack<X>(
    d: f32,
    dmin: f32,
    (sc, m): ([u8; 8], [u8; 8]),
    qs: &[u8; 128],
    x: &X,
    high: impl Fn(&X, usize) -> __m256i,
) -> SuperBlock {
    // Sub-block j: the low nibbles (even j) or high nibbles (odd j) of bytes 32·(j/2)...
    let values = array(
        _mm256_setzero_si256(),
        #[inline(always)]
        |j| {
            let q = load(qs[j / 2 * 32..].as_ptr());
            let q = if j % 2 == 0 { q } else { _mm256_srli_epi16::<4>(q) };
            _mm256_or_si256(_mm256_and_si256(q, _mm256_set1_epi8(0x0f)), high(x, j))
        },
    );
    SuperBlock {
        d,
        dmin: Some(dmin),
        values,
        scales: per_16(sc),
        mins: per_16(m),
    }
}

impl Avx2Dot for BlockQ4K {
    #[inline(always)]
    unsafe fn dot<D: IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<BlockQ8K>; N]) -> [f32; N] {
        k_dot::<D, _, N>(
            x,
            ys,
            #[inline(always)]
            |x| {
                k4_unpack(
                    f32_of(x.d),
                    f32_of(x.dmin),
                    x.scales_and_mins(),
                    &x.qs,
                    x,
                    #[inline(always)]
                    |_, _| _mm256_setzero_si256(),
                )
            },
        )
    }
}

impl Avx2Dot for BlockQ5K {
    #[inline(always)]
    unsafe fn dot<D: IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<BlockQ8K>; N]) -> [f32; N] {
        k_dot::<D, _, N>(
            x,
            ys,
            #[inline(always)]
            |x| {
                k4_unpack(
                    f32_of(x.d),
                    f32_of(x.dmin),
                    x.scales_and_mins(),
                    &x.qs,
                    x,
                    #[inline(always)]
                    |x, j| bit_to(load(x.qh.as_ptr()), j as i32, 4),
                )
            },
        )
    }
}

impl Avx2Dot for BlockQ6K {
    #[inline(always)]
    unsafe fn dot<D: IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<BlockQ8K>; N]) -> [f32; N] {
        k_dot::<D, _, N>(
            x,
            ys,
            #[inline(always)]
            |x| {
                // Chunk j = 4·half + m: low 4 bits from the nibbles of ql (m < 2: low nibbles of bytes
                // 32·m.., else high nibbles of bytes 32·(m−2)..), high 2 bits from bits 2m.. of qh.
                let values = array(
                    _mm256_setzero_si256(),
                    #[inline(always)]
                    |j| {
                        let (half, m) = (j / 4, j % 4);
                        let ql = load(x.ql[half * 64 + (m % 2) * 32..].as_ptr());
                        let low = if m < 2 { ql } else { _mm256_srli_epi16::<4>(ql) };
                        let high = _mm256_slli_epi16::<4>(two_bits(load(x.qh[half * 32..].as_ptr()), 2 * m as i32));
                        _mm256_or_si256(_mm256_and_si256(low, _mm256_set1_epi8(0x0f)), high)
                    },
                );
                let scales = array(
                    0,
                    #[inline(always)]
                    |k| x.scales[k] as i16,
                );
                SuperBlock {
                    d: f32_of(x.d),
                    dmin: None,
                    values,
                    scales,
                    mins: array(
                        0,
                        #[inline(always)]
                        |k| 32 * scales[k],
                    ),
                }
            },
        )
    }
}

/// Q8_0 quantisation of activations, as the scalar `from_float` (ggml's `quantize_row_q8_0_ref`)
/// does it, bit for bit: `d = max|x| / 127`, `q = roundf(x / d)` saturated as `as i8` does (NaN
/// to 0). The scalar loop calls libm's `truncf` per value on x86-64's baseline (no SSE4.1).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let sign_mask = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
    for (b, x) in out.iter_mut().zip(x.chunks_exact(32)) {
        let v: [__m256; 4] = array(
            _mm256_setzero_ps(),
            #[inline(always)]
            |i| _mm256_loadu_ps(x[8 * i..].as_ptr()),
        );
        // max|x| as the scalar fold takes it: a NaN |x| is skipped (maxps returns its second operand).
        let m = v.iter().fold(_mm256_setzero_ps(), |m, &v| {
            _mm256_max_ps(_mm256_and_ps(v, abs_mask), m)
        });
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        let q: [__m256i; 4] = array(
            _mm256_setzero_si256(),
            #[inline(always)]
            |i| {
                // Half away from zero: truncate, then step away from zero when |fraction| ≥ 0.5.
                let p = _mm256_mul_ps(v[i], id);
                let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(p);
                let half =
                    _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_and_ps(_mm256_sub_ps(p, t), abs_mask), _mm256_set1_ps(0.5));
                let step = _mm256_or_ps(_mm256_set1_ps(1.0), _mm256_and_ps(p, sign_mask));
                let r = _mm256_add_ps(t, _mm256_and_ps(half, step));
                let r = _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(r, r));
                _mm256_cvttps_epi32(_mm256_min_ps(
                    _mm256_max_ps(r, _mm256_set1_ps(-128.0)),
                    _mm256_set1_ps(127.0),
                ))
            },
        );
        // i32 → i8: the packs interleave the 128-bit halves, the permute puts the values back in order.
        let bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(b.qs.as_mut_ptr() as *mut __m256i, bytes);
        b.d = f16::from_f32(d);
    }
}

/// Float dot product, 8 lanes at a time, with `load8` turning 8 elements into f32.
#[inline(always)]
unsafe fn float_dot<T: Copy + Into<f64>>(x: &[T], y: &[T], load8: impl Fn(&[T]) -> __m256) -> f32 {
    assert_eq!(x.len(), y.len());
    // Four sums of 32 values a step, as ggml's GGML_F32_STEP: one would wait on each FMA's latency.
    let mut acc = [_mm256_setzero_ps(); 4];
    let (x32, y32) = (x.chunks_exact(32), y.chunks_exact(32));
    let (x8, y8) = (x32.remainder().chunks_exact(8), y32.remainder().chunks_exact(8));
    let tail: f64 = x8
        .remainder()
        .iter()
        .zip(y8.remainder())
        .map(|(a, b)| (*a).into() * (*b).into())
        .sum();
    for (a, b) in x32.zip(y32) {
        for (i, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_fmadd_ps(load8(&a[8 * i..]), load8(&b[8 * i..]), *acc);
        }
    }
    for (a, b) in x8.zip(y8) {
        acc[0] = _mm256_fmadd_ps(load8(a), load8(b), acc[0]);
    }
    hsum_f32(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    )) + tail as f32
}

impl Avx2Dot for f32 {
    #[inline(always)]
    unsafe fn dot<D: IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<f32>; N]) -> [f32; N] {
        array(
            0.0,
            #[inline(always)]
            |n| {
                float_dot(
                    x,
                    ys[n].blocks,
                    #[inline(always)]
                    |v| _mm256_loadu_ps(v.as_ptr()),
                )
            },
        )
    }
}

impl Avx2Dot for f16 {
    #[inline(always)]
    unsafe fn dot<D: IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<f16>; N]) -> [f32; N] {
        array(
            0.0,
            #[inline(always)]
            |n| {
                float_dot(
                    x,
                    ys[n].blocks,
                    #[inline(always)]
                    |v| _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr() as *const __m128i)),
                )
            },
        )
    }
}

impl Avx2Dot for bf16 {
    #[inline(always)]
    unsafe fn dot<D: IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<bf16>; N]) -> [f32; N] {
        // bf16 is the high half of an f32: widen to 32 bits and shift into place.
        array(
            0.0,
            #[inline(always)]
            |n| {
                float_dot(
                    x,
                    ys[n].blocks,
                    #[inline(always)]
                    |v| {
                        let w = _mm256_cvtepu16_epi32(_mm_loadu_si128(v.as_ptr() as *const __m128i));
                        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w))
                    },
                )
            },
        )
    }
}

/// [`crate::quants::weighted_sum`]: 32 values at a time summed over every row in four
/// registers, lane by lane in row order (with FMA: one rounding per row, not two).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn weighted_sum(weights: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    let whole = out.len() / 32 * 32;
    for (c, o) in out[..whole].chunks_exact_mut(32).enumerate() {
        let mut acc = [_mm256_setzero_ps(); 4];
        for (j, &w) in weights.iter().enumerate() {
            let (w, row) = (_mm256_set1_ps(w), &rows[j * stride + 32 * c..][..32]);
            for (i, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(row[8 * i..].as_ptr()), *acc);
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(o[8 * i..].as_mut_ptr(), *acc);
        }
    }
    let rest = out.len() - whole;
    if rest > 0 {
        crate::quants::weighted_sum(weights, &rows[whole..], stride, &mut out[whole..]);
    }
}
