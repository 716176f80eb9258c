//! Rotary position embeddings (NeoX layout), with the context-extension scalings llama.cpp
//! implements: linear (positions divided by the factor) and YaRN (low frequencies interpolated,
//! high frequencies left alone, a ramp between, and a magnitude correction).

use serde::{Deserialize, Serialize};

/// How positions are stretched past the context a model was trained for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeScalingKind {
    #[default]
    None,
    Linear,
    Yarn,
}

impl RopeScalingKind {
    pub const NAMES: &'static [&'static str] = &["none", "linear", "yarn"];

    /// A GGUF `rope.scaling.type` value's (or a flag's) meaning; `None` for one this engine does
    /// not know.
    pub fn from_name(name: &str) -> Option<RopeScalingKind> {
        match name {
            "none" => Some(RopeScalingKind::None),
            "linear" => Some(RopeScalingKind::Linear),
            "yarn" => Some(RopeScalingKind::Yarn),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeScaling {
    pub kind: RopeScalingKind,
    /// How many times longer the usable context becomes.
    pub factor: f32,
    /// The context the model was trained for (YaRN's ramp depends on it).
    pub original_context: usize,
    /// A multiplier on the rotated queries and keys (GGUF `rope.scaling.attn_factor`).
    pub attn_factor: f32,
}

impl RopeScaling {
    pub fn none(original_context: usize) -> RopeScaling {
        RopeScaling {
            kind: RopeScalingKind::None,
            factor: 1.0,
            original_context,
            attn_factor: 1.0,
        }
    }

    /// The context these positions reach: the original times the factor when scaled.
    pub fn context(&self) -> usize {
        match self.kind {
            RopeScalingKind::None => self.original_context,
            _ => (self.original_context as f64 * self.factor.max(1.0) as f64) as usize,
        }
    }
}

/// YaRN's band edges: pairs rotating more than `BETA_FAST` times over the original context keep
/// their frequency, pairs rotating fewer than `BETA_SLOW` times are fully interpolated
/// (llama.cpp's defaults, from the YaRN paper).
const BETA_FAST: f32 = 32.0;
const BETA_SLOW: f32 = 1.0;

/// One layer kind's rotation: an angle per position for each pair of a head.
#[derive(Clone, Debug)]
pub struct Rope {
    head_dim: usize,
    /// (head_dim / 2) radians per position of pair `i` (dimensions `i` and `i + head_dim/2`).
    freqs: Vec<f32>,
    /// Multiplier of cos and sin: YaRN's magnitude correction times the attention factor.
    mscale: f32,
}

impl Rope {
    pub fn new(head_dim: usize, base: f32, scaling: &RopeScaling) -> Rope {
        let half = head_dim / 2;
        let freq_scale = match scaling.kind {
            RopeScalingKind::None => 1.0,
            RopeScalingKind::Linear | RopeScalingKind::Yarn => 1.0 / scaling.factor,
        };
        // How much of each pair keeps its own (extrapolated) frequency: 0 everywhere but YaRN.
        let extrapolated: Box<dyn Fn(usize) -> f32> = match scaling.kind {
            RopeScalingKind::Yarn => {
                // The pair index at which a pair turns `rotations` times over the original context.
                let dim_at = |rotations: f32| {
                    head_dim as f32 * (scaling.original_context as f32 / (rotations * 2.0 * std::f32::consts::PI)).ln()
                        / (2.0 * base.ln())
                };
                let low = dim_at(BETA_FAST).floor().max(0.0);
                let high = dim_at(BETA_SLOW).ceil().min(head_dim as f32 - 1.0);
                Box::new(move |i| 1.0 - ((i as f32 - low) / (high - low).max(0.001)).clamp(0.0, 1.0))
            }
            _ => Box::new(|_| 0.0),
        };
        let freqs = (0..half)
            .map(|i| {
                let theta = base.powf(-2.0 * i as f32 / head_dim as f32);
                let mix = extrapolated(i);
                theta * (freq_scale * (1.0 - mix) + mix)
            })
            .collect();
        let magnitude = match scaling.kind {
            RopeScalingKind::Yarn => 1.0 + 0.1 * scaling.factor.ln(),
            _ => 1.0,
        };
        Rope {
            head_dim,
            freqs,
            mscale: magnitude * scaling.attn_factor,
        }
    }

    /// Per pair of a head: the cosine and sine it is rotated by at position `pos`, times the
    /// magnitude scale (what the GPU's rope kernel reads from a table).
    pub fn cos_sin(&self, pos: usize) -> impl Iterator<Item = (f32, f32)> + '_ {
        self.freqs.iter().map(move |&freq| {
            let (sin, cos) = (pos as f32 * freq).sin_cos();
            (cos * self.mscale, sin * self.mscale)
        })
    }

    /// Rotates each `head_dim`-wide head of each of `rows` (a token's queries and its key) to
    /// position `pos`. The angles are the same for every head, so each pair's sine and cosine
    /// are computed once for all of them (libm's `sin_cos` per head was 1% of batched decode).
    pub fn apply(&self, mut rows: [&mut [f32]; 2], pos: usize) {
        let half = self.head_dim / 2;
        for (i, (cos, sin)) in self.cos_sin(pos).enumerate() {
            for head in rows.iter_mut().flat_map(|x| x.chunks_exact_mut(self.head_dim)) {
                let (a, b) = (head[i], head[i + half]);
                head[i] = a * cos - b * sin;
                head[i + half] = a * sin + b * cos;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HD: usize = 256;
    const BASE: f32 = 1_000_000.0;

    fn rotated(rope: &Rope, pos: usize) -> Vec<f32> {
        let mut x = head();
        rope.apply([&mut x, &mut []], pos);
        x
    }

    fn head() -> Vec<f32> {
        (0..HD).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect()
    }

    #[test]
    fn every_head_of_both_rows_turns_alike() {
        let rope = Rope::new(HD, BASE, &RopeScaling::none(32768));
        let (mut q, mut k) = (head().repeat(4), head());
        rope.apply([&mut q, &mut k], 321);
        let alone = rotated(&rope, 321);
        assert_ne!(alone, head());
        for h in q.chunks_exact(HD).chain([&k[..]]) {
            assert_eq!(h, alone);
        }
    }

    fn scaling(kind: RopeScalingKind, factor: f32) -> RopeScaling {
        RopeScaling {
            kind,
            factor,
            original_context: 32768,
            attn_factor: 1.0,
        }
    }

    #[test]
    fn no_scaling_is_plain_rope() {
        let rope = Rope::new(HD, BASE, &RopeScaling::none(32768));
        let x = rotated(&rope, 1000);
        // Pair 0 turns by exactly `pos` radians.
        let x0 = rotated(&rope, 0);
        let (s, c) = 1000f32.sin_cos();
        assert!((x[0] - (x0[0] * c - x0[HD / 2] * s)).abs() < 1e-4);
        // Rotation keeps each pair's length.
        for i in 0..HD / 2 {
            let len = |v: &[f32]| (v[i] * v[i] + v[i + HD / 2] * v[i + HD / 2]).sqrt();
            assert!((len(&x) - len(&x0)).abs() < 1e-5);
        }
    }

    #[test]
    fn linear_scaling_divides_positions() {
        let plain = Rope::new(HD, BASE, &RopeScaling::none(32768));
        let linear = Rope::new(HD, BASE, &scaling(RopeScalingKind::Linear, 4.0));
        for (a, b) in rotated(&linear, 4 * 777).iter().zip(rotated(&plain, 777)) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn yarn_keeps_fast_pairs_and_interpolates_slow_ones() {
        let plain = Rope::new(HD, BASE, &RopeScaling::none(32768));
        let yarn = Rope::new(HD, BASE, &scaling(RopeScalingKind::Yarn, 4.0));
        let linear = Rope::new(HD, BASE, &scaling(RopeScalingKind::Linear, 4.0));
        let mscale = 1.0 + 0.1 * 4f32.ln();
        assert_eq!(yarn.freqs[0], plain.freqs[0], "the fastest pair is not interpolated");
        assert_eq!(
            yarn.freqs[HD / 2 - 1],
            linear.freqs[HD / 2 - 1],
            "the slowest pair is fully interpolated"
        );
        // Between, a pair's frequency never rises as the pairs slow down, and lies between the two.
        for i in 0..HD / 2 {
            assert!(yarn.freqs[i] <= plain.freqs[i] && yarn.freqs[i] >= linear.freqs[i] * 0.999_999);
        }
        assert!((yarn.mscale - mscale).abs() < 1e-6);
        let (y, p) = (rotated(&yarn, 0), rotated(&plain, 0));
        assert!(
            (y[5] - p[5] * mscale).abs() < 1e-5,
            "at position 0 only the magnitude changes"
        );
    }
}
