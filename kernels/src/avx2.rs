//! x86-64 AVX2 + FMA (+ F16C) dot products, selected at run time by [`crate::KernelPath`].
//!
//! Every quantised format is unpacked 32 values at a time into bytes and multiplied against the
//! activation bytes with `maddubs` (u8 × i8 → i16 pairs); `madd` with the sub-block scales then
//! widens to i32. Integer sums are exact; only the per-block f32 scaling differs in rounding
//! from the scalar reference.
//!
//! SAFETY (whole file): callers must have checked AVX2, FMA and F16C (`KernelPath` does),
//! and pass `x` and `y` covering the same number of values (`dispatch` does).

use crate::quants::*;
use half::{bf16, f16};
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_f32(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// f16 → f32 by F16C, inlined: half's `to_f32` is an out-of-line call behind a feature check,
/// which costs as much as the integer work of a small block.
#[inline]
#[target_feature(enable = "f16c")]
fn f32_of(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// i16 pair sums of unsigned `x` (0..=127 after any offset) times signed `y`.
#[inline]
#[target_feature(enable = "avx2")]
fn mul_unsigned(x: __m256i, y: __m256i) -> __m256i {
    _mm256_maddubs_epi16(x, y)
}

/// i16 pair sums of signed `x` times signed `y` (moves x's sign onto y).
#[inline]
#[target_feature(enable = "avx2")]
fn mul_signed(x: __m256i, y: __m256i) -> __m256i {
    _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// Widens i16 pair sums to i32, weighting the first 16 values by `lo` and the last 16 by `hi`.
#[inline]
#[target_feature(enable = "avx2")]
fn scale_halves(p: __m256i, lo: i16, hi: i16) -> __m256i {
    _mm256_madd_epi16(p, _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo)))
}

#[inline]
#[target_feature(enable = "avx2")]
fn widen(p: __m256i) -> __m256i {
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// 16 bytes of nibbles → 32 bytes: low nibbles first, then high nibbles (0..=15 each).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
    let lo = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
    let hi = _mm_srli_epi16::<4>(lo);
    _mm256_and_si256(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(0x0f))
}

/// 32 bits → 32 bytes, 0x10 where the bit is set (the fifth bit of Q5 values).
#[inline]
#[target_feature(enable = "avx2")]
fn fifth_bits(qh: [u8; 4]) -> __m256i {
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(i32::from_le_bytes(qh)),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0),
    );
    let bit = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// Σ over 32-value blocks of `d(x)·d(y)·(x_q · y_q)` plus an optional per-block offset term.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn legacy_dot<X, Y>(
    x: &[X],
    y: &[Y],
    scale: impl Fn(&X, &Y) -> f32,
    products: impl Fn(&X, &Y) -> __m256i,
    offset: impl Fn(&X, &Y) -> f32,
) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut offsets = 0.0;
    for (x, y) in x.iter().zip(y) {
        let sums = _mm256_cvtepi32_ps(widen(products(x, y)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(scale(x, y)), sums, acc);
        offsets += offset(x, y);
    }
    hsum_f32(acc) + offsets
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    legacy_dot(
        x,
        y,
        |x, y| f32_of(x.d) * f32_of(y.d),
        |x, y| mul_signed(_mm256_sub_epi8(nibbles(&x.qs), _mm256_set1_epi8(8)), load(y.qs.as_ptr() as _)),
        |_, _| 0.0,
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    legacy_dot(
        x,
        y,
        |x, y| f32_of(x.d) * f32_of(y.d),
        |x, y| mul_unsigned(nibbles(&x.qs), load(y.qs.as_ptr() as _)),
        |x, y| f32_of(x.m) * f32_of(y.s),
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    legacy_dot(
        x,
        y,
        |x, y| f32_of(x.d) * f32_of(y.d),
        |x, y| {
            let q = _mm256_or_si256(nibbles(&x.qs), fifth_bits(x.qh));
            mul_signed(_mm256_sub_epi8(q, _mm256_set1_epi8(16)), load(y.qs.as_ptr() as _))
        },
        |_, _| 0.0,
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    legacy_dot(
        x,
        y,
        |x, y| f32_of(x.d) * f32_of(y.d),
        |x, y| mul_unsigned(_mm256_or_si256(nibbles(&x.qs), fifth_bits(x.qh)), load(y.qs.as_ptr() as _)),
        |x, y| f32_of(x.m) * f32_of(y.s),
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    legacy_dot(
        x,
        y,
        |x, y| f32_of(x.d) * f32_of(y.d),
        |x, y| mul_signed(load(x.qs.as_ptr() as _), load(y.qs.as_ptr() as _)),
        |_, _| 0.0,
    )
}

/// 2-bit fields at `shift` of 32 bytes (Q2_K/Q3_K layout), as bytes 0..=3.
#[inline]
#[target_feature(enable = "avx2")]
fn two_bits(q: __m256i, shift: i32) -> __m256i {
    _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(shift)), _mm256_set1_epi8(3))
}

/// One bit of each of 32 bytes, moved to bit `to` (bytes become 0 or 1<<to).
#[inline]
#[target_feature(enable = "avx2")]
fn bit_to(q: __m256i, bit: i32, to: i32) -> __m256i {
    let b = _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(bit)), _mm256_set1_epi8(1));
    _mm256_sll_epi16(b, _mm_cvtsi32_si128(to))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q2_k(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0.0;
    for (x, y) in x.iter().zip(y) {
        let mut sumi = _mm256_setzero_si256();
        for half in 0..2 {
            let q = load(x.qs[half * 32..].as_ptr());
            for m in 0..4 {
                let k = half * 8 + m * 2; // first of the two 16-value sub-blocks
                let p = mul_unsigned(two_bits(q, 2 * m as i32), load(y.qs[half * 128 + m * 32..].as_ptr() as _));
                let (lo, hi) = ((x.scales[k] & 0x0f) as i16, (x.scales[k + 1] & 0x0f) as i16);
                sumi = _mm256_add_epi32(sumi, scale_halves(p, lo, hi));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f32_of(x.d) * y.d), _mm256_cvtepi32_ps(sumi), acc);
        let msum: i32 = (0..16).map(|k| (x.scales[k] >> 4) as i32 * y.bsums[k] as i32).sum();
        mins += f32_of(x.dmin) * y.d * msum as f32;
    }
    hsum_f32(acc) - mins
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q3_k(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let hmask = |x: &BlockQ3K| load(x.hmask.as_ptr());
    for (x, y) in x.iter().zip(y) {
        let sc = x.scales();
        let high = hmask(x);
        let mut sumi = _mm256_setzero_si256();
        for half in 0..2 {
            let q = load(x.qs[half * 32..].as_ptr());
            for m in 0..4 {
                let k = half * 8 + m * 2;
                let h = bit_to(high, (half * 4 + m) as i32, 2);
                let v = _mm256_sub_epi8(_mm256_or_si256(two_bits(q, 2 * m as i32), h), _mm256_set1_epi8(4));
                let p = mul_signed(v, load(y.qs[half * 128 + m * 32..].as_ptr() as _));
                sumi = _mm256_add_epi32(sumi, scale_halves(p, sc[k] as i16, sc[k + 1] as i16));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f32_of(x.d) * y.d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32(acc)
}

/// Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins; `high` adds Q5_K's fifth bits.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_dot<X>(
    x: &[X],
    y: &[BlockQ8K],
    parts: impl Fn(&X) -> (f32, f32, ([u8; 8], [u8; 8]), &[u8; 128]),
    high: impl Fn(&X, usize) -> __m256i,
) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0.0;
    for (x, y) in x.iter().zip(y) {
        let (d, dmin, (sc, m), qs) = parts(x);
        let mut sumi = _mm256_setzero_si256();
        for c in 0..4 {
            let q = load(qs[c * 32..].as_ptr());
            let lo = _mm256_or_si256(_mm256_and_si256(q, _mm256_set1_epi8(0x0f)), high(x, 2 * c));
            let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q), _mm256_set1_epi8(0x0f)), high(x, 2 * c + 1));
            let plo = mul_unsigned(lo, load(y.qs[c * 64..].as_ptr() as _));
            let phi = mul_unsigned(hi, load(y.qs[c * 64 + 32..].as_ptr() as _));
            let (slo, shi) = (sc[2 * c] as i16, sc[2 * c + 1] as i16);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(scale_halves(plo, slo, slo), scale_halves(phi, shi, shi)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), _mm256_cvtepi32_ps(sumi), acc);
        let msum: i32 = (0..8).map(|j| m[j] as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32)).sum();
        mins += dmin * y.d * msum as f32;
    }
    hsum_f32(acc) - mins
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    k4_dot(x, y, |x| (f32_of(x.d), f32_of(x.dmin), x.scales_and_mins(), &x.qs), |_, _| _mm256_setzero_si256())
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    k4_dot(x, y, |x| (f32_of(x.d), f32_of(x.dmin), x.scales_and_mins(), &x.qs), |x, j| {
        bit_to(load(x.qh.as_ptr()), j as i32, 4)
    })
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q6_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let nib = _mm256_set1_epi8(0x0f);
    for (x, y) in x.iter().zip(y) {
        let mut sumi = _mm256_setzero_si256();
        for half in 0..2 {
            let ql = [load(x.ql[half * 64..].as_ptr()), load(x.ql[half * 64 + 32..].as_ptr())];
            let qh = load(x.qh[half * 32..].as_ptr());
            for m in 0..4 {
                let low = if m < 2 { _mm256_and_si256(ql[m % 2], nib) } else { _mm256_and_si256(_mm256_srli_epi16::<4>(ql[m % 2]), nib) };
                let high = _mm256_sll_epi16(two_bits(qh, 2 * m as i32), _mm_cvtsi32_si128(4));
                let v = _mm256_sub_epi8(_mm256_or_si256(low, high), _mm256_set1_epi8(32));
                let p = mul_signed(v, load(y.qs[half * 128 + m * 32..].as_ptr() as _));
                let k = half * 8 + m * 2;
                sumi = _mm256_add_epi32(sumi, scale_halves(p, x.scales[k] as i16, x.scales[k + 1] as i16));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f32_of(x.d) * y.d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32(acc)
}

/// Float dot product, 8 lanes at a time, with `load8` turning 8 elements into f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn float_dot<T: Copy + Into<f64>>(x: &[T], y: &[T], load8: impl Fn(&[T]) -> __m256) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f64 = xc.remainder().iter().zip(yc.remainder()).map(|(a, b)| (*a).into() * (*b).into()).sum();
    for (a, b) in xc.zip(yc) {
        acc = _mm256_fmadd_ps(load8(a), load8(b), acc);
    }
    hsum_f32(acc) + tail as f32
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_f32(x: &[f32], y: &[f32]) -> f32 {
    float_dot(x, y, |v| _mm256_loadu_ps(v.as_ptr()))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_f16(x: &[f16], y: &[f16]) -> f32 {
    float_dot(x, y, |v| _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr() as *const __m128i)))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_bf16(x: &[bf16], y: &[bf16]) -> f32 {
    // bf16 is the high half of an f32: widen to 32 bits and shift into place.
    float_dot(x, y, |v| {
        let w = _mm256_cvtepu16_epi32(_mm_loadu_si128(v.as_ptr() as *const __m128i));
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w))
    })
}
