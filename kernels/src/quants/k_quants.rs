//! The 256-value "k-quant" super-block formats: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (weights) and
//! Q8_K (activations).
//!
//! A super-block holds 256 small integers `q` in sub-blocks of 16 or 32, each sub-block with its
//! own integer scale (and, for Q2_K/Q4_K/Q5_K, an integer min) under one f16 super-scale:
//! `x = d·sc·q − dmin·m`. Q8_K keeps the sums of each 16 of its values (`bsums`) so the min
//! term of a dot product costs 16 multiplies instead of 256.

use super::{nearest_int, ActivationBlock, Block, WeightBlock};
use crate::quant_type::QK_K;
use crate::QuantType;
use bytemuck::{Pod, Zeroable};
use half::f16;

/// Bytes of packed 6-bit scales and mins in Q4_K/Q5_K.
pub const K_SCALE_SIZE: usize = 12;

#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ2K {
    /// Per 16 values: scale in the low nibble, min in the high nibble.
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}
const _: () = assert!(size_of::<BlockQ2K>() == 84, "the size of ggml's block_q2_K");

#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ3K {
    /// Third bit of each value (set means no −4 offset).
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    /// Sixteen 6-bit scales, biased by 32.
    pub scales: [u8; 12],
    pub d: f16,
}
const _: () = assert!(size_of::<BlockQ3K>() == 110, "the size of ggml's block_q3_K");

#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins.
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ4K>() == 144, "the size of ggml's block_q4_K");

#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ5K>() == 176, "the size of ggml's block_q5_K");

#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ6K {
    /// Low 4 bits.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits.
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}
const _: () = assert!(size_of::<BlockQ6K>() == 210, "the size of ggml's block_q6_K");

#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    /// Sum of each 16 consecutive `qs`.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(size_of::<BlockQ8K>() == 292, "the size of ggml's block_q8_K");

/// 2-bit fields as Q2_K and Q3_K lay them out: each 32 bytes of `qs` hold four runs of 32 values,
/// at bit shifts 0, 2, 4, 6.
fn two_bit_values(qs: &[u8; QK_K / 4]) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for (half, bytes) in qs.chunks_exact(32).enumerate() {
        for shift in 0..4 {
            for (l, b) in bytes.iter().enumerate() {
                q[half * 128 + shift * 32 + l] = (b >> (2 * shift)) & 3;
            }
        }
    }
    q
}

/// Nibbles as Q4_K and Q5_K lay them out: each 32 bytes of `qs` hold 32 values in the low
/// nibbles, then the next 32 in the high nibbles.
fn nibble_values(qs: &[u8; QK_K / 2]) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for (c, bytes) in qs.chunks_exact(32).enumerate() {
        for (l, b) in bytes.iter().enumerate() {
            q[c * 64 + l] = b & 0x0f;
            q[c * 64 + 32 + l] = b >> 4;
        }
    }
    q
}

/// ggml's `get_scale_min_k4` for all eight sub-blocks: (scales, mins), each 0..=63.
#[inline]
fn scales_and_mins_k4(s: &[u8; K_SCALE_SIZE]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0f) | ((s[j] >> 6) << 4);
        m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, m)
}

impl BlockQ2K {
    /// The quants, 0..=3; value k uses `scales[k / 16]`.
    pub fn values(&self) -> [i8; QK_K] {
        two_bit_values(&self.qs).map(|v| v as i8)
    }
}

impl BlockQ3K {
    /// The quants, −4..=3; value k uses `scales()[k / 16]`.
    pub fn values(&self) -> [i8; QK_K] {
        let low = two_bit_values(&self.qs);
        let mut q = [0i8; QK_K];
        for (k, v) in q.iter_mut().enumerate() {
            // Value k = 32·bit + l takes its high bit from bit `bit` of hmask[l].
            let high = (self.hmask[k % 32] >> (k / 32)) & 1;
            *v = low[k] as i8 - if high == 1 { 0 } else { 4 };
        }
        q
    }

    /// The sixteen scales, −32..=31: low 4 bits from the first 8 bytes (low nibbles, then high
    /// nibbles), high 2 bits from the last 4 bytes.
    pub fn scales(&self) -> [i8; 16] {
        let s = &self.scales;
        let mut out = [0i8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let low = if i < 8 { s[i] & 0x0f } else { s[i - 8] >> 4 };
            let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
            *o = (low | (high << 4)) as i8 - 32;
        }
        out
    }
}

impl BlockQ4K {
    /// The quants, 0..=15; value k uses sub-block `k / 32`.
    pub fn values(&self) -> [i8; QK_K] {
        nibble_values(&self.qs).map(|v| v as i8)
    }

    #[inline]
    pub fn scales_and_mins(&self) -> ([u8; 8], [u8; 8]) {
        scales_and_mins_k4(&self.scales)
    }
}

impl BlockQ5K {
    /// The quants, 0..=31; value k uses sub-block `k / 32`.
    pub fn values(&self) -> [i8; QK_K] {
        let mut q = nibble_values(&self.qs);
        for (k, v) in q.iter_mut().enumerate() {
            // Sub-block j = k/32 takes its fifth bit from bit j of qh[k % 32].
            *v |= ((self.qh[k % 32] >> (k / 32)) & 1) << 4;
        }
        q.map(|v| v as i8)
    }

    #[inline]
    pub fn scales_and_mins(&self) -> ([u8; 8], [u8; 8]) {
        scales_and_mins_k4(&self.scales)
    }
}

impl BlockQ6K {
    /// The quants, −32..=31; value k uses `scales[k / 16]`.
    ///
    /// Each half of 128 values takes 64 bytes of `ql` and 32 of `qh`: value `32·m + l`
    /// has its low nibble in `ql[l + 32·(m % 2)]` (low nibble for m < 2, high otherwise)
    /// and its high 2 bits in `qh[l]` at shift `2·m`.
    pub fn values(&self) -> [i8; QK_K] {
        let mut q = [0i8; QK_K];
        for half in 0..2 {
            let ql = &self.ql[half * 64..half * 64 + 64];
            let qh = &self.qh[half * 32..half * 32 + 32];
            for m in 0..4 {
                for l in 0..32 {
                    let byte = ql[l + 32 * (m % 2)];
                    let low = if m < 2 { byte & 0x0f } else { byte >> 4 };
                    let high = (qh[l] >> (2 * m)) & 3;
                    q[half * 128 + m * 32 + l] = (low | (high << 4)) as i8 - 32;
                }
            }
        }
        q
    }
}

/// Integer dot products of each 16-value sub-block.
fn sums_of_16(x: &[i8; QK_K], y: &[i8; QK_K]) -> [i32; 16] {
    let mut s = [0i32; 16];
    for (k, (a, b)) in x.iter().zip(y).enumerate() {
        s[k / 16] += *a as i32 * *b as i32;
    }
    s
}

/// Integer dot products of each 32-value sub-block.
fn sums_of_32(x: &[i8; QK_K], y: &[i8; QK_K]) -> [i32; 8] {
    let s16 = sums_of_16(x, y);
    std::array::from_fn(|j| s16[2 * j] + s16[2 * j + 1])
}

/// Writes `d·sc[k/n]·q[k] − dmin·m[k/n]` for a super-block with sub-blocks of `n` values.
fn write_scaled(out: &mut [f32], q: &[i8; QK_K], n: usize, scale: impl Fn(usize) -> f32, min: impl Fn(usize) -> f32) {
    for (k, (o, &q)) in out.iter_mut().zip(q).enumerate() {
        *o = scale(k / n) * q as f32 - min(k / n);
    }
}

impl Block for BlockQ2K {
    const TYPE: QuantType = QuantType::Q2K;
    const BLOCK_SIZE: usize = QK_K;
    fn to_float(blocks: &[Self], out: &mut [f32]) {
        for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
            let scale = |k: usize| d * (b.scales[k] & 0x0f) as f32;
            let min = |k: usize| dmin * (b.scales[k] >> 4) as f32;
            write_scaled(out, &b.values(), 16, scale, min);
        }
    }
}

impl WeightBlock for BlockQ2K {
    type Act = BlockQ8K;
    fn vec_dot(x: &[Self], y: &[BlockQ8K]) -> f32 {
        let mut sumf = 0.0;
        for (x, y) in x.iter().zip(y) {
            let sums = sums_of_16(&x.values(), &y.qs);
            let (mut isum, mut msum) = (0i32, 0i32);
            for k in 0..16 {
                isum += (x.scales[k] & 0x0f) as i32 * sums[k];
                msum += (x.scales[k] >> 4) as i32 * y.bsums[k] as i32;
            }
            sumf += y.d * (x.d.to_f32() * isum as f32 - x.dmin.to_f32() * msum as f32);
        }
        sumf
    }
}

impl Block for BlockQ3K {
    const TYPE: QuantType = QuantType::Q3K;
    const BLOCK_SIZE: usize = QK_K;
    fn to_float(blocks: &[Self], out: &mut [f32]) {
        for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            let d = b.d.to_f32();
            let sc = b.scales();
            write_scaled(out, &b.values(), 16, |k| d * sc[k] as f32, |_| 0.0);
        }
    }
}

impl WeightBlock for BlockQ3K {
    type Act = BlockQ8K;
    fn vec_dot(x: &[Self], y: &[BlockQ8K]) -> f32 {
        let mut sumf = 0.0;
        for (x, y) in x.iter().zip(y) {
            let sums = sums_of_16(&x.values(), &y.qs);
            let isum: i32 = x.scales().iter().zip(sums).map(|(&s, v)| s as i32 * v).sum();
            sumf += (x.d.to_f32() * y.d) * isum as f32;
        }
        sumf
    }
}

/// Q4_K and Q5_K differ only in how their quants unpack.
macro_rules! k4_format {
    ($block:ty, $qt:expr) => {
        impl Block for $block {
            const TYPE: QuantType = $qt;
            const BLOCK_SIZE: usize = QK_K;
            fn to_float(blocks: &[Self], out: &mut [f32]) {
                for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
                    let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
                    let (sc, m) = b.scales_and_mins();
                    write_scaled(out, &b.values(), 32, |j| d * sc[j] as f32, |j| dmin * m[j] as f32);
                }
            }
        }

        impl WeightBlock for $block {
            type Act = BlockQ8K;
            fn vec_dot(x: &[Self], y: &[BlockQ8K]) -> f32 {
                let mut sumf = 0.0;
                for (x, y) in x.iter().zip(y) {
                    let sums = sums_of_32(&x.values(), &y.qs);
                    let (sc, m) = x.scales_and_mins();
                    let (mut isum, mut msum) = (0i32, 0i32);
                    for j in 0..8 {
                        isum += sc[j] as i32 * sums[j];
                        msum += m[j] as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
                    }
                    sumf += y.d * (x.d.to_f32() * isum as f32 - x.dmin.to_f32() * msum as f32);
                }
                sumf
            }
        }
    };
}

k4_format!(BlockQ4K, QuantType::Q4K);
k4_format!(BlockQ5K, QuantType::Q5K);

impl Block for BlockQ6K {
    const TYPE: QuantType = QuantType::Q6K;
    const BLOCK_SIZE: usize = QK_K;
    fn to_float(blocks: &[Self], out: &mut [f32]) {
        for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            let d = b.d.to_f32();
            write_scaled(out, &b.values(), 16, |k| d * b.scales[k] as f32, |_| 0.0);
        }
    }
}

impl WeightBlock for BlockQ6K {
    type Act = BlockQ8K;
    fn vec_dot(x: &[Self], y: &[BlockQ8K]) -> f32 {
        let mut sumf = 0.0;
        for (x, y) in x.iter().zip(y) {
            let sums = sums_of_16(&x.values(), &y.qs);
            let isum: i32 = x.scales.iter().zip(sums).map(|(&s, v)| s as i32 * v).sum();
            sumf += (x.d.to_f32() * y.d) * isum as f32;
        }
        sumf
    }
}

impl Block for BlockQ8K {
    const TYPE: QuantType = QuantType::Q8K;
    const BLOCK_SIZE: usize = QK_K;
    fn to_float(blocks: &[Self], out: &mut [f32]) {
        for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            for (o, &q) in out.iter_mut().zip(&b.qs) {
                *o = b.d * q as f32;
            }
        }
    }
}

impl ActivationBlock for BlockQ8K {
    /// ggml's `quantize_row_q8_K_ref`: scale by the signed value of largest magnitude so that
    /// it maps to −127, round half to even.
    fn from_float(x: &[f32], out: &mut [Self]) {
        for (b, x) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
            let (mut amax, mut max) = (0f32, 0f32);
            for &v in x {
                if v.abs() > amax {
                    amax = v.abs();
                    max = v;
                }
            }
            *b = BlockQ8K::zeroed();
            if amax == 0.0 {
                continue;
            }
            let iscale = -127.0 / max;
            for (q, &v) in b.qs.iter_mut().zip(x) {
                *q = nearest_int(iscale * v).min(127) as i8;
            }
            for (s, qs) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
                *s = qs.iter().map(|&q| q as i16).sum();
            }
            b.d = 1.0 / iscale;
        }
    }
}
