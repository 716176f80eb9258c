//! The 32-value formats: Q4_0, Q4_1, Q5_0, Q5_1 (weights), Q8_0, Q8_1 (activations; Q8_0 also weights).
//!
//! Each weight block unpacks to 32 small integers `q`; the value is `d·q` (symmetric formats)
//! or `d·q + m` (the `_1` formats, whose `q` is unsigned).

use super::{ActivationBlock, Block, SignedParts, WeightBlock};
use crate::QuantType;
use bytemuck::{Pod, Zeroable};
use half::f16;

pub const QK: usize = 32;

#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: f16,
    /// Value j in the low nibble of byte j, value j+16 in the high nibble.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18, "the size of ggml's block_q4_0");

#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20, "the size of ggml's block_q4_1");

#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: f16,
    /// Fifth bit of value j in bit j (a little-endian u32).
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22, "the size of ggml's block_q5_0");

#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_1>() == 24, "the size of ggml's block_q5_1");

#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34, "the size of ggml's block_q8_0");

#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_1 {
    pub d: f16,
    /// `d · Σ qs`, so `_1` weights can add their offset `m` without touching the values.
    pub s: f16,
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_1>() == 36, "the size of ggml's block_q8_1");

/// The 4-bit values of a nibble-packed block, in order.
fn nibbles(qs: &[u8; QK / 2]) -> [u8; QK] {
    let mut q = [0u8; QK];
    for (j, b) in qs.iter().enumerate() {
        q[j] = b & 0x0f;
        q[j + QK / 2] = b >> 4;
    }
    q
}

/// Adds the fifth bits in `qh` to nibble values.
fn with_high_bits(mut q: [u8; QK], qh: [u8; 4]) -> [u8; QK] {
    let qh = u32::from_le_bytes(qh);
    for (j, v) in q.iter_mut().enumerate() {
        *v |= (((qh >> j) & 1) as u8) << 4;
    }
    q
}

impl BlockQ4_0 {
    /// The quants, -8..=7.
    pub fn values(&self) -> [i8; QK] {
        nibbles(&self.qs).map(|v| v as i8 - 8)
    }
}

impl BlockQ4_1 {
    /// The quants, 0..=15.
    pub fn values(&self) -> [i8; QK] {
        nibbles(&self.qs).map(|v| v as i8)
    }
}

impl BlockQ5_0 {
    /// The quants, -16..=15.
    pub fn values(&self) -> [i8; QK] {
        with_high_bits(nibbles(&self.qs), self.qh).map(|v| v as i8 - 16)
    }
}

impl BlockQ5_1 {
    /// The quants, 0..=31.
    pub fn values(&self) -> [i8; QK] {
        with_high_bits(nibbles(&self.qs), self.qh).map(|v| v as i8)
    }
}

fn int_dot(a: &[i8; QK], b: &[i8; QK]) -> i32 {
    a.iter().zip(b).map(|(&a, &b)| a as i32 * b as i32).sum()
}

/// Formats whose value is `d·q`.
macro_rules! symmetric_format {
    ($block:ty, $qt:expr, $act:ty) => {
        impl Block for $block {
            const TYPE: QuantType = $qt;
            const BLOCK_SIZE: usize = QK;
            fn to_float(blocks: &[Self], out: &mut [f32]) {
                for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
                    let d = b.d.to_f32();
                    for (o, q) in out.iter_mut().zip(b.values()) {
                        *o = d * q as f32;
                    }
                }
            }
        }

        impl WeightBlock for $block {
            type Act = $act;
            fn vec_dot(x: &[Self], y: &[$act]) -> f32 {
                x.iter()
                    .zip(y)
                    .map(|(x, y)| (x.d.to_f32() * y.d.to_f32()) * int_dot(&x.values(), &y.qs) as f32)
                    .sum()
            }
        }
    };
}

/// Formats whose value is `d·q + m`: paired with Q8_1, whose `s` carries `d_y·Σq_y` for the `m` term.
macro_rules! offset_format {
    ($block:ty, $qt:expr) => {
        impl Block for $block {
            const TYPE: QuantType = $qt;
            const BLOCK_SIZE: usize = QK;
            fn to_float(blocks: &[Self], out: &mut [f32]) {
                for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
                    let (d, m) = (b.d.to_f32(), b.m.to_f32());
                    for (o, q) in out.iter_mut().zip(b.values()) {
                        *o = d * q as f32 + m;
                    }
                }
            }
        }

        impl WeightBlock for $block {
            type Act = BlockQ8_1;
            fn vec_dot(x: &[Self], y: &[BlockQ8_1]) -> f32 {
                x.iter()
                    .zip(y)
                    .map(|(x, y)| {
                        let sumi = int_dot(&x.values(), &y.qs) as f32;
                        (x.d.to_f32() * y.d.to_f32()) * sumi + x.m.to_f32() * y.s.to_f32()
                    })
                    .sum()
            }
        }
    };
}

impl BlockQ8_0 {
    pub fn values(&self) -> [i8; QK] {
        self.qs
    }
}

impl BlockQ8_1 {
    pub fn values(&self) -> [i8; QK] {
        self.qs
    }
}

symmetric_format!(BlockQ4_0, QuantType::Q4_0, BlockQ8_0);
symmetric_format!(BlockQ5_0, QuantType::Q5_0, BlockQ8_0);
symmetric_format!(BlockQ8_0, QuantType::Q8_0, BlockQ8_0);
offset_format!(BlockQ4_1, QuantType::Q4_1);
offset_format!(BlockQ5_1, QuantType::Q5_1);

impl Block for BlockQ8_1 {
    const TYPE: QuantType = QuantType::Q8_1;
    const BLOCK_SIZE: usize = QK;
    fn to_float(blocks: &[Self], out: &mut [f32]) {
        for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = b.d.to_f32();
            for (o, q) in out.iter_mut().zip(b.qs) {
                *o = d * q as f32;
            }
        }
    }
}

/// ggml's symmetric 8-bit quantisation of one 32-value block: `d = max|x|/127`, `q = roundf(x/d)`.
/// Returns `(d, qs)` with `d` still in f32 (Q8_1's `s` is computed from it).
fn quantize_q8(x: &[f32]) -> (f32, [i8; QK]) {
    // A comparison, not `f32::max` (a libm call in wasm); NaN is skipped either way.
    let amax = x.iter().fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m });
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0i8; QK];
    for (q, v) in qs.iter_mut().zip(x) {
        *q = round_half_away(v * id) as i8;
    }
    (d, qs)
}

/// C's `roundf` (half away from zero), from truncation: `f32::round` is a libm call in wasm,
/// which made quantising activations cost 16 ns a value. `v - trunc(v)` is exact.
fn round_half_away(v: f32) -> f32 {
    let t = v.trunc();
    if (v - t).abs() >= 0.5 {
        t + 1f32.copysign(v)
    } else {
        t
    }
}

impl ActivationBlock for BlockQ8_0 {
    fn from_float(x: &[f32], out: &mut [Self]) {
        for (b, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
            let (d, qs) = quantize_q8(x);
            *b = BlockQ8_0 {
                d: f16::from_f32(d),
                qs,
            };
        }
    }

    fn scales(blocks: &[Self]) -> Vec<f32> {
        blocks.iter().map(|b| b.d.to_f32()).collect()
    }

    fn signed_parts(blocks: &[Self]) -> Vec<SignedParts> {
        let part = |b: &Self, sign: i8| b.qs.map(|q| (q as i16 * sign as i16).max(0) as u8);
        blocks
            .iter()
            .map(|b| SignedParts {
                positive: part(b, 1),
                negative: part(b, -1),
            })
            .collect()
    }
}

impl ActivationBlock for BlockQ8_1 {
    fn from_float(x: &[f32], out: &mut [Self]) {
        for (b, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
            let (d, qs) = quantize_q8(x);
            let sum: i32 = qs.iter().map(|&q| q as i32).sum();
            *b = BlockQ8_1 {
                d: f16::from_f32(d),
                s: f16::from_f32(sum as f32 * d),
                qs,
            };
        }
    }

    fn scales(blocks: &[Self]) -> Vec<f32> {
        blocks.iter().map(|b| b.d.to_f32()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{round_half_away, BlockQ8_0};
    use crate::quants::ActivationBlock;
    use half::f16;

    #[test]
    fn signed_parts_are_the_values_split_by_sign() {
        let blocks: Vec<BlockQ8_0> = (-128..128)
            .collect::<Vec<i32>>()
            .chunks(32)
            .map(|q| BlockQ8_0 {
                d: f16::ONE,
                qs: std::array::from_fn(|i| q[i] as i8),
            })
            .collect();
        for (b, p) in blocks.iter().zip(BlockQ8_0::signed_parts(&blocks)) {
            for i in 0..32 {
                assert_eq!(p.positive[i] as i32 - p.negative[i] as i32, b.qs[i] as i32);
                assert!(p.positive[i] == 0 || p.negative[i] == 0);
            }
        }
    }

    #[test]
    fn rounds_as_c_roundf() {
        let halves = (-300..=300).map(|i| i as f32 / 2.0);
        let near_halves = (-300..=300).flat_map(|i| {
            let h = i as f32 / 2.0;
            [
                f32::from_bits(h.to_bits().wrapping_sub(1)),
                f32::from_bits(h.to_bits() + 1),
            ]
        });
        let spread = (0..100_000).map(|i| (i as f32 * 0.0137).sin() * 130.0);
        for v in halves
            .chain(near_halves)
            .chain(spread)
            .chain([0.0, -0.0, 0.49999997, -0.49999997, 8_388_609.0])
        {
            assert_eq!(round_half_away(v).to_bits(), v.round().to_bits(), "{v}");
        }
    }
}
