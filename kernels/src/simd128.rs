//! WebAssembly simd128 dot products, selected at compile time (`-C target-feature=+simd128`).
//!
//! Quantised formats are unpacked 16 values at a time into i8 lanes. Unsigned values with an
//! offset (Q4_0, Q5_0, the k-quants) go through [`dot_biased`], which with `+relaxed-simd` is one
//! `i16x8.relaxed_dot_i8x16_i7x16_s` per 16 values; signed ones (Q8_0) through
//! [`dot_signed_32`], two of them on the activations' sign-split parts; without relaxed SIMD
//! both are widened to i16 and multiplied with `i32x4.dot_i16x8_s`. Every integer sum is exact
//! either way; sub-block scales multiply the i32 partial sums. Only the per-block f32 scaling
//! rounds differently from the scalar reference. Each block's result is [`settled`], which
//! keeps wasmtime's code from loading a whole group before computing any of it.

use crate::quants::*;
use core::arch::wasm32::*;
use half::{bf16, f16};
use std::ops::Range;

/// f16 → f32 without half's branches for zero and subnormals: the f16's magnitude bits, shifted
/// into an f32 and multiplied by 2^112, are its exact value for every finite f16.
#[inline]
fn f32_of(h: f16) -> f32 {
    let bits = h.to_bits() as u32;
    if bits & 0x7c00 == 0x7c00 {
        return h.to_f32(); // infinity or NaN
    }
    let magnitude = f32::from_bits((bits & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(magnitude.to_bits() | (bits & 0x8000) << 16)
}

#[inline]
fn load(p: &[u8]) -> v128 {
    assert!(p.len() >= 16);
    // SAFETY: 16 readable bytes, checked above; v128_load has no alignment requirement.
    unsafe { v128_load(p.as_ptr() as *const v128) }
}

#[inline]
fn load_i8(p: &[i8]) -> v128 {
    load(bytemuck::cast_slice(p))
}

/// i32x4 partial sums of 16 signed bytes times 16 signed bytes.
#[cfg(not(target_feature = "relaxed-simd"))]
#[inline]
fn dot_i8x16(a: v128, b: v128) -> v128 {
    let lo = i32x4_dot_i16x8(i16x8_extend_low_i8x16(a), i16x8_extend_low_i8x16(b));
    let hi = i32x4_dot_i16x8(i16x8_extend_high_i8x16(a), i16x8_extend_high_i8x16(b));
    i32x4_add(lo, hi)
}

/// i16x8 pair sums of `(xu - bias) · y` over 16 values, `xu` unsigned weights in 0..=63 and `y`
/// signed activations: `i16x8.relaxed_dot_i8x16_i7x16_s` (one `pmaddubsw` on x86) multiplies
/// and pairs in one step; its result is the same on every CPU because `xu` stays below 128, and
/// no i16 sum can saturate: |2·63·127| + |2·32·127| < 2^15.
#[cfg(target_feature = "relaxed-simd")]
#[inline]
fn pairs_biased(xu: v128, y: v128, bias: i8) -> v128 {
    let products = i16x8_relaxed_dot_i8x16_i7x16(y, xu);
    if bias == 0 {
        return products;
    }
    i16x8_sub(products, i16x8_relaxed_dot_i8x16_i7x16(y, i8x16_splat(bias)))
}

/// i32x4 partial sums of `(xu - bias) · y` over 16 values, `xu` unsigned weights in 0..=63 and
/// `y` signed activations: [`pairs_biased`] widened with relaxed SIMD, both widened to i16
/// without.
#[inline]
fn dot_biased(xu: v128, y: v128, bias: i8) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        i32x4_extadd_pairwise_i16x8(pairs_biased(xu, y, bias))
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        dot_i8x16(i8x16_sub(xu, i8x16_splat(bias)), y)
    }
}

/// [`dot_biased`] over a whole 32-value block of values in 0..=31: with relaxed SIMD the two
/// halves' pair sums are added as i16 and widened once (no i16 sum overflows:
/// 2·(|2·31·127| + |2·16·127|) < 2^15).
#[inline]
fn dot_biased_32(xu: [v128; 2], y: [v128; 2], bias: i8) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        i32x4_extadd_pairwise_i16x8(i16x8_add(
            pairs_biased(xu[0], y[0], bias),
            pairs_biased(xu[1], y[1], bias),
        ))
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        i32x4_add(dot_biased(xu[0], y[0], bias), dot_biased(xu[1], y[1], bias))
    }
}

/// i32x4 partial sums of a block of 32 signed weights times its signed activations: with
/// relaxed SIMD the activations come as their [`SignedParts`], both in 0..=127 for every
/// activation the quantiser makes (|y| ≤ 127), so `x·y = x·y⁺ − x·y⁻` is two
/// `i16x8.relaxed_dot_i8x16_i7x16_s` (`pmaddubsw`) per 16 values, whose results are the same on
/// every CPU. No i16 sum overflows: each pair's true sum is within ±2·128·127. Without relaxed
/// SIMD, both are widened to i16.
#[inline]
fn dot_signed_32(x: [v128; 2], y: &[i8; 32], parts: Option<&SignedParts>) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        let _ = y;
        let parts = parts.expect("signed weights take their activations as signed parts");
        let half = |h: usize| {
            let products = |part: &[u8; 32]| i16x8_relaxed_dot_i8x16_i7x16(x[h], load(&part[16 * h..]));
            i32x4_extadd_pairwise_i16x8(i16x8_sub(products(&parts.positive), products(&parts.negative)))
        };
        i32x4_add(half(0), half(1))
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        let _ = parts;
        i32x4_add(dot_i8x16(x[0], load_i8(&y[..16])), dot_i8x16(x[1], load_i8(&y[16..])))
    }
}

#[inline]
fn hsum_i32(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v) + i32x4_extract_lane::<1>(v) + i32x4_extract_lane::<2>(v) + i32x4_extract_lane::<3>(v)
}

#[inline]
fn hsum_f32(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v) + f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v)
}

/// 16 bytes of nibbles → (values 0..16 from the low nibbles, values 16..32 from the high).
#[inline]
fn nibbles(qs: &[u8; 16]) -> [v128; 2] {
    let q = load(qs);
    [v128_and(q, u8x16_splat(0x0f)), u8x16_shr(q, 4)]
}

/// Bits 0..16 and 16..32 of `qh` as bytes, 0x10 where set (the fifth bit of Q5 values): each
/// byte of `qh` looked up in [`FIFTH_BITS`] (as llama.cpp's wasm code does). Spreading the bits
/// with swizzles and compares took twice the instructions in wasmtime's x86 code.
#[inline]
fn fifth_bits(qh: [u8; 4]) -> [v128; 2] {
    let spread = |b: u8| FIFTH_BITS[b as usize];
    [u64x2(spread(qh[0]), spread(qh[1])), u64x2(spread(qh[2]), spread(qh[3]))]
}

/// For each byte value, its eight bits as eight bytes (little-endian), 0x10 where set.
static FIFTH_BITS: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let mut i = 0;
        while i < 8 {
            if b >> i & 1 == 1 {
                table[b] |= 0x10 << (8 * i);
            }
            i += 1;
        }
        b += 1;
    }
    table
};

/// The f32 values of four f16, one per lane: [`f32_of`] on each, infinity and NaN included.
/// Each f16 is loaded straight into the low half of its lane.
#[inline]
fn f32x4_of(h: [&f16; 4]) -> v128 {
    let lane = |h: &f16| h as *const f16 as *const u16;
    // SAFETY: each pointer is to a readable f16.
    let bits = unsafe {
        let v = v128_load16_lane::<0>(u32x4_splat(0), lane(h[0]));
        let v = v128_load16_lane::<2>(v, lane(h[1]));
        let v = v128_load16_lane::<4>(v, lane(h[2]));
        v128_load16_lane::<6>(v, lane(h[3]))
    };
    f32x4_of_bits(bits)
}

/// [`f32x4_of`] for f16 bits in the low halves of four u32 lanes (the high halves are ignored).
#[inline]
fn f32x4_of_bits(bits: v128) -> v128 {
    // Shifted to the top, then arithmetically back by 3: the sign stays at bit 31 and the
    // exponent and mantissa land at bits 13..28, under copies of the sign that the mask clears.
    // That is the f16's value as an f32 2^112 times too small, exactly, subnormals included.
    let scaled_down = v128_and(i32x4_shr(i32x4_shl(bits, 16), 3), u32x4_splat(0x8fff_e000));
    let value = f32x4_mul(scaled_down, f32x4_splat(f32::from_bits(0x7780_0000)));
    // An all-ones f16 exponent (infinity, NaN) becomes an all-ones f32 exponent.
    let exponent = v128_and(bits, u32x4_splat(0x7c00));
    let inf_nan = v128_and(i32x4_eq(exponent, u32x4_splat(0x7c00)), u32x4_splat(0x7f80_0000));
    v128_or(value, inf_nan)
}

/// A weight format's kernel on simd128: its dot products with `N` activation rows at once, each
/// weight block unpacked once for all of them (the float formats' one row at a time): for the
/// legacy formats one impl over their [`Legacy`] facts (`legacy_dot`), for the others an impl
/// each here (from `k_dot`, `float_dot`); `dispatch` runs it for every row of a band. The
/// impls only forward, always inlined: one more call level between the band and the kernel
/// left LLVM's inliner with other choices and halved Q5_K/Q6_K matmul ×8 in wasmtime.
pub trait Simd128Dot: WeightBlock {
    fn dot<const N: usize>(x: &[Self], ys: [ScaledRow<Self::Act>; N]) -> [f32; N];
}

impl Simd128Dot for BlockQ2K {
    #[inline(always)]
    fn dot<const N: usize>(x: &[Self], ys: [ScaledRow<BlockQ8K>; N]) -> [f32; N] {
        vec_dot_q2_k(x, ys.map(|y| y.blocks))
    }
}

impl Simd128Dot for BlockQ3K {
    #[inline(always)]
    fn dot<const N: usize>(x: &[Self], ys: [ScaledRow<BlockQ8K>; N]) -> [f32; N] {
        vec_dot_q3_k(x, ys.map(|y| y.blocks))
    }
}

impl Simd128Dot for BlockQ4K {
    #[inline(always)]
    fn dot<const N: usize>(x: &[Self], ys: [ScaledRow<BlockQ8K>; N]) -> [f32; N] {
        vec_dot_q4_k(x, ys.map(|y| y.blocks))
    }
}

impl Simd128Dot for BlockQ5K {
    #[inline(always)]
    fn dot<const N: usize>(x: &[Self], ys: [ScaledRow<BlockQ8K>; N]) -> [f32; N] {
        vec_dot_q5_k(x, ys.map(|y| y.blocks))
    }
}

impl Simd128Dot for BlockQ6K {
    #[inline(always)]
    fn dot<const N: usize>(x: &[Self], ys: [ScaledRow<BlockQ8K>; N]) -> [f32; N] {
        vec_dot_q6_k(x, ys.map(|y| y.blocks))
    }
}

impl Simd128Dot for f32 {
    #[inline(always)]
    fn dot<const N: usize>(x: &[Self], ys: [ScaledRow<f32>; N]) -> [f32; N] {
        ys.map(|y| vec_dot_f32(x, y.blocks))
    }
}

impl Simd128Dot for f16 {
    #[inline(always)]
    fn dot<const N: usize>(x: &[Self], ys: [ScaledRow<f16>; N]) -> [f32; N] {
        ys.map(|y| vec_dot_f16(x, y.blocks))
    }
}

impl Simd128Dot for bf16 {
    #[inline(always)]
    fn dot<const N: usize>(x: &[Self], ys: [ScaledRow<bf16>; N]) -> [f32; N] {
        ys.map(|y| vec_dot_bf16(x, y.blocks))
    }
}

/// The legacy formats: their kernel is [`legacy_dot`], from the format's [`Legacy`] facts.
impl<X: Legacy> Simd128Dot for X {
    #[inline(always)]
    fn dot<const N: usize>(x: &[Self], ys: [ScaledRow<X::Act>; N]) -> [f32; N] {
        legacy_dot(x, ys)
    }
}

/// What the kernels need to know of a 32-value weight format and its activation format.
trait Legacy: WeightBlock<Act: LegacyAct> {
    /// `Some(bias)`: values are unsigned, worth their value minus `bias`; `None`: signed.
    const BIAS: Option<i8>;
    fn d(&self) -> &f16;
    /// The 32 values, as two halves of 16.
    fn values(&self) -> [v128; 2];
    /// The block's term beyond `d_x·d_y·(x_q · y_q)`, for the formats that have one (a constant,
    /// so the others add nothing: not even `+ 0.0`, which the compiler must keep).
    const OFFSET: Option<fn(&Self, &Self::Act) -> f32> = None;
}

trait LegacyAct {
    fn qs(&self) -> &[i8; 32];
}

impl LegacyAct for BlockQ8_0 {
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
}

impl LegacyAct for BlockQ8_1 {
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
}

impl Legacy for BlockQ4_0 {
    const BIAS: Option<i8> = Some(8);
    fn d(&self) -> &f16 {
        &self.d
    }
    fn values(&self) -> [v128; 2] {
        nibbles(&self.qs)
    }
}

impl Legacy for BlockQ4_1 {
    const BIAS: Option<i8> = Some(0);
    const OFFSET: Option<fn(&Self, &BlockQ8_1) -> f32> = Some(|x, y| f32_of(x.m) * f32_of(y.s));
    fn d(&self) -> &f16 {
        &self.d
    }
    fn values(&self) -> [v128; 2] {
        nibbles(&self.qs)
    }
}

impl Legacy for BlockQ5_0 {
    const BIAS: Option<i8> = Some(16);
    fn d(&self) -> &f16 {
        &self.d
    }
    fn values(&self) -> [v128; 2] {
        or(nibbles(&self.qs), fifth_bits(self.qh))
    }
}

impl Legacy for BlockQ5_1 {
    const BIAS: Option<i8> = Some(0);
    const OFFSET: Option<fn(&Self, &BlockQ8_1) -> f32> = Some(|x, y| f32_of(x.m) * f32_of(y.s));
    fn d(&self) -> &f16 {
        &self.d
    }
    fn values(&self) -> [v128; 2] {
        or(nibbles(&self.qs), fifth_bits(self.qh))
    }
}

impl Legacy for BlockQ8_0 {
    const BIAS: Option<i8> = None;
    fn d(&self) -> &f16 {
        &self.d
    }
    fn values(&self) -> [v128; 2] {
        [load_i8(&self.qs[..16]), load_i8(&self.qs[16..])]
    }
}

fn or(a: [v128; 2], b: [v128; 2]) -> [v128; 2] {
    [v128_or(a[0], b[0]), v128_or(a[1], b[1])]
}

/// i32x4 partial sums of one block's integer dot product; `parts` are the activations'
/// [`SignedParts`] where the weights are signed and the kernels take them.
#[inline]
fn block_sum<X: Legacy>([a, b]: [v128; 2], y: &X::Act, parts: Option<&SignedParts>) -> v128 {
    let qy = y.qs();
    match X::BIAS {
        Some(bias) => dot_biased_32([a, b], [load_i8(&qy[..16]), load_i8(&qy[16..])], bias),
        None => dot_signed_32([a, b], qy, parts),
    }
}

/// Whether the kernels take a signed format's activations as [`SignedParts`].
pub const TAKES_SIGNED_PARTS: bool = cfg!(target_feature = "relaxed-simd");

/// `v`, computed before anything after it. Cranelift keeps loads (which may trap) and stores
/// in program order but places each pure instruction just before its first side-effecting
/// user (wasmtime#6159), so a group of blocks written out becomes all their loads, then all
/// their arithmetic, with every loaded vector live in between: more than its 16 xmm registers,
/// so they are spilled and reloaded. A volatile store of each block's result is such a user:
/// one store, and each block's arithmetic stays beside its loads (kernel bench in wasmtime,
/// Q8_0 matvec: +8%, Q5_0 +13%).
#[inline(always)]
fn settled(v: v128) -> v128 {
    let mut slot = v;
    // SAFETY: a write to a local.
    unsafe { core::ptr::write_volatile(&mut slot, v) };
    v
}

/// Σ over 32-value blocks of `d_x·d_y·(x_q · y_q) + offset(x,y)`, for `N` activation rows at
/// once: each weight block is unpacked once and used `N` times (a prompt's tokens share the
/// weight row; decode has `N = 1`). The f16 scales of four weight blocks are converted
/// together and multiplied with the activations' (converted once per matmul); each block's
/// four partial sums are then scaled and added lane by lane, as llama.cpp adds them (the
/// model's logits are sensitive to that order: adding whole-block sums instead moved them by
/// up to 0.15 mean |Δ| from llama.cpp's).
#[inline]
fn legacy_dot<X: Legacy, const N: usize>(x: &[X], ys: [ScaledRow<X::Act>; N]) -> [f32; N] {
    let signed_parts = X::BIAS.is_none() && TAKES_SIGNED_PARTS;
    assert!(ys.iter().all(|y| y.blocks.len() == x.len()
        && y.scales.len() == x.len()
        && (!signed_parts || y.parts.len() == x.len())));
    let parts = |n: usize, blocks: Range<usize>| if signed_parts { &ys[n].parts[blocks] } else { &[] };
    let mut acc = [f32x4_splat(0.0); N];
    let mut offsets = [0.0; N];
    let groups = x.len() / 4;
    for g in 0..groups {
        let xs = &x[4 * g..4 * g + 4];
        // Tiles unpack each block once for all their tokens; one token unpacks each block where
        // it uses it, which keeps fewer vectors live (Cranelift has 16 xmm registers).
        let values = (N > 1).then(|| four(|b| xs[b].values()));
        let dx = f32x4_of(four(|b| xs[b].d()));
        for n in 0..N {
            let yb = &ys[n].blocks[4 * g..4 * g + 4];
            let scales = f32x4_mul(dx, load(bytemuck::cast_slice(&ys[n].scales[4 * g..4 * g + 4])));
            let yp = parts(n, 4 * g..4 * g + 4);
            let terms = four(|b| {
                settled(f32x4_mul(
                    splat_lane(scales, b),
                    f32x4_convert_i32x4(block_sum::<X>(
                        values.map_or_else(|| xs[b].values(), |v| v[b]),
                        &yb[b],
                        yp.get(b),
                    )),
                ))
            });
            acc[n] = f32x4_add(
                f32x4_add(f32x4_add(f32x4_add(acc[n], terms[0]), terms[1]), terms[2]),
                terms[3],
            );
            if let Some(offset) = X::OFFSET {
                offsets[n] += (0..4).map(|b| offset(&xs[b], &yb[b])).sum::<f32>();
            }
        }
    }
    for i in 4 * groups..x.len() {
        let values = x[i].values();
        for n in 0..N {
            let y = &ys[n].blocks[i];
            let scale = f32x4_splat(f32_of(*x[i].d()) * ys[n].scales[i]);
            acc[n] = f32x4_add(
                acc[n],
                f32x4_mul(
                    scale,
                    f32x4_convert_i32x4(block_sum::<X>(values, y, parts(n, i..i + 1).first())),
                ),
            );
            if let Some(offset) = X::OFFSET {
                offsets[n] += offset(&x[i], y);
            }
        }
    }
    std::array::from_fn(|n| hsum_f32(acc[n]) + offsets[n])
}

/// Lane `i` of `v` in every lane.
#[inline(always)]
fn splat_lane(v: v128, i: usize) -> v128 {
    match i {
        0 => i32x4_shuffle::<0, 0, 0, 0>(v, v),
        1 => i32x4_shuffle::<1, 1, 1, 1>(v, v),
        2 => i32x4_shuffle::<2, 2, 2, 2>(v, v),
        _ => i32x4_shuffle::<3, 3, 3, 3>(v, v),
    }
}

/// `f(k)` for k = 0, step, 2·step, … below 16, written out so that `k` is a constant in each
/// call: LLVM leaves the k-quants' 16-step loops rolled, with variable byte shifts (a table of
/// masks in wasmtime's x86 code), branches and address arithmetic in every step (kernel bench,
/// matvec: Q6_K 4.4 → 7.7 GB/s, Q5_K 5.0 → 6.9 written out). Tiles spilled their written-out
/// steps until each step's sums were [`settled`]; now they gain too (matmul ×8: Q4_K +13%, Q5_K
/// +15%, Q6_K +22%).
#[inline(always)]
fn steps_of_16(step: usize, mut f: impl FnMut(usize)) {
    sixteen(|k| {
        if k % step == 0 {
            f(k)
        }
    })
}

/// `f(0)`, `f(1)`, … `f(15)`, written out.
#[inline(always)]
fn sixteen(mut f: impl FnMut(usize)) {
    f(0);
    f(1);
    f(2);
    f(3);
    f(4);
    f(5);
    f(6);
    f(7);
    f(8);
    f(9);
    f(10);
    f(11);
    f(12);
    f(13);
    f(14);
    f(15);
}

/// `[f(0), f(1), f(2), f(3)]`, inlined (`array::map` and `from_fn` may stay calls in wasm
/// builds, which costs more than the kernel's arithmetic).
#[inline(always)]
fn four<T>(f: impl Fn(usize) -> T) -> [T; 4] {
    [f(0), f(1), f(2), f(3)]
}

/// Integer sums of a super-block against `N` activation rows; its values come as 16 sub-blocks
/// of 16, each with its scale, unsigned (0..=63) and worth their value minus `bias`. Each
/// sub-block is unpacked once and used `N` times.
#[inline]
fn scaled_sum_16<const N: usize>(
    values: impl Fn(usize) -> v128,
    bias: i8,
    scales: impl Fn(usize) -> i32,
    ys: [&BlockQ8K; N],
) -> [i32; N] {
    let mut sumi = [i32x4_splat(0); N];
    steps_of_16(1, |k| {
        let (v, scale) = (values(k), i32x4_splat(scales(k)));
        for (sum, y) in sumi.iter_mut().zip(ys) {
            *sum = settled(i32x4_add(
                *sum,
                i32x4_mul(dot_biased(v, load_i8(&y.qs[k * 16..]), bias), scale),
            ));
        }
    });
    sumi.map(hsum_i32)
}

/// [`scaled_sum_16`] for formats whose scales cover 32 values (Q4_K, Q5_K): values 0..=31, no
/// bias; each pair of 16-value halves is summed as one ([`dot_biased_32`]) and scaled once.
#[inline]
fn scaled_sum_32<const N: usize>(
    values: impl Fn(usize) -> [v128; 2],
    scales: impl Fn(usize) -> i32,
    ys: [&BlockQ8K; N],
) -> [i32; N] {
    let mut sumi = [i32x4_splat(0); N];
    steps_of_16(2, |k| {
        let j = k / 2;
        let (v, scale) = (values(j), i32x4_splat(scales(j)));
        for (sum, y) in sumi.iter_mut().zip(ys) {
            let y = [load_i8(&y.qs[j * 32..]), load_i8(&y.qs[j * 32 + 16..])];
            *sum = settled(i32x4_add(*sum, i32x4_mul(dot_biased_32(v, y, 0), scale)));
        }
    });
    sumi.map(hsum_i32)
}

/// Σ over super-blocks for `N` activation rows: `block(x, ys)` gives each row's share of one
/// super-block.
#[inline]
fn k_dot<X, const N: usize>(x: &[X], ys: [&[BlockQ8K]; N], block: impl Fn(&X, [&BlockQ8K; N]) -> [f32; N]) -> [f32; N] {
    assert!(ys.iter().all(|y| y.len() == x.len()));
    let mut sumf = [0.0; N];
    for (i, x) in x.iter().enumerate() {
        for (sum, v) in sumf.iter_mut().zip(block(x, ys.map(|y| &y[i]))) {
            *sum += v;
        }
    }
    sumf
}

/// 2-bit fields of Q2_K/Q3_K sub-block `k` (16 values), as bytes 0..=3.
#[inline]
fn two_bits(qs: &[u8; 64], k: usize) -> v128 {
    let (half, m, part) = (k / 8, (k % 8) / 2, k % 2);
    let q = load(&qs[half * 32 + part * 16..]);
    v128_and(u8x16_shr(q, 2 * m as u32), u8x16_splat(3))
}

fn vec_dot_q2_k<const N: usize>(x: &[BlockQ2K], ys: [&[BlockQ8K]; N]) -> [f32; N] {
    k_dot(x, ys, |x, ys| {
        let isums = scaled_sum_16(|k| two_bits(&x.qs, k), 0, |k| (x.scales[k] & 0x0f) as i32, ys);
        std::array::from_fn(|n| {
            let msum: i32 = (0..16).map(|k| (x.scales[k] >> 4) as i32 * ys[n].bsums[k] as i32).sum();
            ys[n].d * (f32_of(x.d) * isums[n] as f32 - f32_of(x.dmin) * msum as f32)
        })
    })
}

fn vec_dot_q3_k<const N: usize>(x: &[BlockQ3K], ys: [&[BlockQ8K]; N]) -> [f32; N] {
    k_dot(x, ys, |x, ys| {
        let sc = x.scales();
        let hmask = [load(&x.hmask[..16]), load(&x.hmask[16..])];
        let values = |k: usize| {
            // Sub-block k covers values 16k..16k+16: hmask bytes (k%2)·16.., bit k/2.
            let high = v128_and(u8x16_shr(hmask[k % 2], (k / 2) as u32), u8x16_splat(1));
            v128_or(two_bits(&x.qs, k), i8x16_shl(high, 2))
        };
        let isums = scaled_sum_16(values, 4, |k| sc[k] as i32, ys);
        std::array::from_fn(|n| (f32_of(x.d) * ys[n].d) * isums[n] as f32)
    })
}

/// Q4_K and Q5_K: `values(x, k)` gives sub-block-of-16 `k` of the quants.
#[inline]
fn k4_dot<X, const N: usize>(
    x: &[X],
    ys: [&[BlockQ8K]; N],
    parts: impl Fn(&X) -> (f32, f32, ([u8; 8], [u8; 8])),
    values: impl Fn(&X, usize) -> v128,
) -> [f32; N] {
    k_dot(x, ys, |x, ys| {
        let (d, dmin, (sc, m)) = parts(x);
        let isums = scaled_sum_32(|j| [values(x, 2 * j), values(x, 2 * j + 1)], |j| sc[j] as i32, ys);
        // Σ_j m[j]·(bsums[2j] + bsums[2j+1]) with the eight mins as i32 lanes.
        let mins = u16x8_extend_low_u8x16(u64x2(u64::from_le_bytes(m), 0));
        let (mins_lo, mins_hi) = (u32x4_extend_low_u16x8(mins), u32x4_extend_high_u16x8(mins));
        std::array::from_fn(|n| {
            let y = ys[n];
            let pairs_lo = i32x4_extadd_pairwise_i16x8(load(bytemuck::cast_slice(&y.bsums[..8])));
            let pairs_hi = i32x4_extadd_pairwise_i16x8(load(bytemuck::cast_slice(&y.bsums[8..])));
            let msum = hsum_i32(i32x4_add(i32x4_mul(mins_lo, pairs_lo), i32x4_mul(mins_hi, pairs_hi)));
            y.d * (d * isums[n] as f32 - dmin * msum as f32)
        })
    })
}

/// Nibbles of Q4_K/Q5_K sub-block-of-16 `k`: 32-value sub-block j = k/2 is in bytes 32·(j/2)..,
/// low nibbles for even j, high for odd.
#[inline]
fn k4_nibbles(qs: &[u8; 128], k: usize) -> v128 {
    let j = k / 2;
    let q = load(&qs[(j / 2) * 32 + (k % 2) * 16..]);
    if j.is_multiple_of(2) {
        v128_and(q, u8x16_splat(0x0f))
    } else {
        u8x16_shr(q, 4)
    }
}

fn vec_dot_q4_k<const N: usize>(x: &[BlockQ4K], ys: [&[BlockQ8K]; N]) -> [f32; N] {
    k4_dot(
        x,
        ys,
        |x| (f32_of(x.d), f32_of(x.dmin), x.scales_and_mins()),
        |x, k| k4_nibbles(&x.qs, k),
    )
}

fn vec_dot_q5_k<const N: usize>(x: &[BlockQ5K], ys: [&[BlockQ8K]; N]) -> [f32; N] {
    let values = |x: &BlockQ5K, k: usize| {
        let qh = load(&x.qh[(k % 2) * 16..]);
        let fifth = i8x16_shl(v128_and(u8x16_shr(qh, (k / 2) as u32), u8x16_splat(1)), 4);
        v128_or(k4_nibbles(&x.qs, k), fifth)
    };
    k4_dot(x, ys, |x| (f32_of(x.d), f32_of(x.dmin), x.scales_and_mins()), values)
}

fn vec_dot_q6_k<const N: usize>(x: &[BlockQ6K], ys: [&[BlockQ8K]; N]) -> [f32; N] {
    k_dot(x, ys, |x, ys| {
        // Sub-block k = 8·half + 2·m + part covers values 128·half + 32·m + 16·part ..+16.
        let values = |k: usize| {
            let (half, m, part) = (k / 8, (k % 8) / 2, k % 2);
            let ql = load(&x.ql[half * 64 + (m % 2) * 32 + part * 16..]);
            let low = if m < 2 {
                v128_and(ql, u8x16_splat(0x0f))
            } else {
                u8x16_shr(ql, 4)
            };
            let qh = load(&x.qh[half * 32 + part * 16..]);
            let high = i8x16_shl(v128_and(u8x16_shr(qh, 2 * m as u32), u8x16_splat(3)), 4);
            v128_or(low, high)
        };
        let isums = scaled_sum_16(values, 32, |k| x.scales[k] as i32, ys);
        std::array::from_fn(|n| (f32_of(x.d) * ys[n].d) * isums[n] as f32)
    })
}

/// f16 → f32 for a slice, four at a time: the same values as half's conversion (which has no
/// SIMD on wasm), for the KV cache's rows.
pub fn f16_to_f32(src: &[f16], out: &mut [f32]) {
    assert_eq!(src.len(), out.len());
    let (src4, out4) = (src.chunks_exact(4), out.chunks_exact_mut(4));
    for (&h, o) in src4.remainder().iter().zip(out4.into_remainder()) {
        *o = f32_of(h);
    }
    for (h, o) in src.chunks_exact(4).zip(out.chunks_exact_mut(4)) {
        // SAFETY: 4 f32 are 16 writable bytes.
        unsafe { v128_store(o.as_mut_ptr() as *mut v128, f32x4_of_bits(widen_16x4(h))) };
    }
}

/// Four 16-bit values (f16 or bf16 bits), each in the low half of a u32 lane.
#[inline]
fn widen_16x4<T: bytemuck::Pod>(v: &[T]) -> v128 {
    let bits: &[u8] = bytemuck::cast_slice(v);
    assert!(bits.len() >= 8);
    // SAFETY: 8 readable bytes, checked above.
    u32x4_extend_low_u16x8(unsafe { v128_load64_zero(bits.as_ptr() as *const u64) })
}

/// Float dot product, 4 lanes at a time, with `load4` turning 4 elements into f32x4. Four sums
/// of 16 values a step: with one, every add waits for the one before (its latency, not the
/// adds' throughput, set the pace: attention's dot products over long contexts).
#[inline]
fn float_dot<T: Copy + Into<f64>>(x: &[T], y: &[T], load4: impl Fn(&[T]) -> v128) -> f32 {
    assert_eq!(x.len(), y.len());
    let mut acc = [f32x4_splat(0.0); 4];
    let (x16, y16) = (x.chunks_exact(16), y.chunks_exact(16));
    let (x4, y4) = (x16.remainder().chunks_exact(4), y16.remainder().chunks_exact(4));
    let tail: f64 = x4
        .remainder()
        .iter()
        .zip(y4.remainder())
        .map(|(a, b)| (*a).into() * (*b).into())
        .sum();
    for (a, b) in x16.zip(y16) {
        for (i, acc) in acc.iter_mut().enumerate() {
            *acc = f32x4_add(*acc, f32x4_mul(load4(&a[4 * i..]), load4(&b[4 * i..])));
        }
    }
    for (a, b) in x4.zip(y4) {
        acc[0] = f32x4_add(acc[0], f32x4_mul(load4(a), load4(b)));
    }
    hsum_f32(f32x4_add(f32x4_add(acc[0], acc[1]), f32x4_add(acc[2], acc[3]))) + tail as f32
}

fn vec_dot_f32(x: &[f32], y: &[f32]) -> f32 {
    float_dot(x, y, |v| load(bytemuck::cast_slice(&v[..4])))
}

fn vec_dot_f16(x: &[f16], y: &[f16]) -> f32 {
    // simd128 has no half-precision conversion: the exact shift-and-multiply, four at a time.
    float_dot(x, y, |v| f32x4_of_bits(widen_16x4(v)))
}

fn vec_dot_bf16(x: &[bf16], y: &[bf16]) -> f32 {
    // bf16 is the high half of an f32: widen to 32 bits and shift into place.
    float_dot(x, y, |v| i32x4_shl(widen_16x4(v), 16))
}

/// [`crate::quants::weighted_sum`]: 16 values at a time summed over every row in four vectors
/// that stay in registers (eight, with their row's eight loads, were more than Cranelift's 16
/// and two went through the stack on every row). A product and an add per lane, in row order,
/// as the scalar reference; no fused multiply-add, which relaxed SIMD leaves to the CPU.
pub fn weighted_sum(weights: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    let whole = out.len() / 16 * 16;
    for (c, o) in out[..whole].chunks_exact_mut(16).enumerate() {
        let mut acc = [f32x4_splat(0.0); 4];
        for (j, &w) in weights.iter().enumerate() {
            let (w, row) = (f32x4_splat(w), &rows[j * stride + 16 * c..][..16]);
            for (i, acc) in acc.iter_mut().enumerate() {
                *acc = f32x4_add(*acc, f32x4_mul(w, load(bytemuck::cast_slice(&row[4 * i..4 * i + 4]))));
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            // SAFETY: 4 f32 are 16 writable bytes.
            unsafe { v128_store(o[4 * i..].as_mut_ptr() as *mut v128, *acc) };
        }
    }
    let rest = out.len() - whole;
    if rest > 0 {
        crate::quants::weighted_sum(weights, &rows[whole..], stride, &mut out[whole..]);
    }
}
