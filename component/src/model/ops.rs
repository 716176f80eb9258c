//! The element-wise pieces of the forward pass.

use rill_kernels::{matmul, weighted_sum, KernelPath, QuantType};

/// RMSNorm of each `w.len()`-wide row of `x` in place: `x · w / √(mean(x²) + eps)`.
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(w.len()) {
        let inv = inverse_rms(row, eps);
        for (v, w) in row.iter_mut().zip(w) {
            *v *= inv * w;
        }
    }
}

/// 1 / the root mean square of `row` (with `eps` added to the mean square).
pub fn inverse_rms(row: &[f32], eps: f32) -> f32 {
    let mean_sq = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
    1.0 / (mean_sq + eps).sqrt()
}

/// The gated feed-forward activation, in place: `gate = gelu(gate) · up`, with GELU's tanh
/// approximation written as the logistic function it is, `0.5·x·(1 + tanh(u)) = x / (1 + e^(−2u))`
/// with `u = √(2/π)·(x + 0.044715·x³)`: no cancellation for negative x, and with [`exp`] below
/// the loop vectorises (libm's `tanhf` was an eighth of native prompt time).
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for (g, u) in gate.iter_mut().zip(up) {
        let x = *g;
        let two_u = 2.0 * SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
        *g = x / (1.0 + exp(-two_u)) * u;
    }
}

/// `e^x` within 2 ulp, by arithmetic only (so loops over it vectorise, where libm's `expf` is a
/// call per value): `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, Cephes' polynomial for `e^r`, and
/// `2^n` put into the exponent bits. `x` is clamped to [−87, 88], where `e^x` is a normal f32.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // Adding 1.5·2^23 rounds to an integer (to nearest) and leaves it in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    // ln 2 in two parts, so r = x − n·ln 2 stays exact to f32 precision.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p =
        ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    let two_n = f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
    e_r * two_n
}

pub fn softmax(x: &mut [f32]) {
    // A comparison, not `f32::max`, which is a libm call (`fmaxf`) in wasm.
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// `out = x · wᵀ` for f32 matrices on the fastest kernel path: `w` is (rows, k), `x` is
/// (n, k), `out` is (n, rows).
pub fn matmul_f32(path: KernelPath, w: &[f32], x: &[f32], k: usize, out: &mut [f32]) {
    matmul(path, QuantType::F32, bytemuck::cast_slice(w), x, k, out).expect("f32 matrices of matching shapes")
}

/// `out = Σ_j weights[j] · rows[j·stride..][..out.len()]` on the fastest kernel path, each value
/// summed in order of `j`.
pub fn weighted_rows(path: KernelPath, weights: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    weighted_sum(path, weights, rows, stride, out).expect("rows that hold out.len() values each")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place (both finite, same sign).
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn exp_is_within_2_ulp() {
        for i in -870_000..=880_000 {
            let x = i as f32 / 10_000.0;
            let exact = (x as f64).exp() as f32;
            assert!(ulps(exp(x), exact) <= 2, "e^{x}: {} vs {exact}", exp(x));
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), exp(-87.0));
    }

    #[test]
    fn geglu_is_gelu_times_up() {
        // In f64, and in the logistic form: 1 + tanh(u) cancels to nothing below x ≈ −6 even in f64.
        let gelu = |x: f64| x / (1.0 + (-2.0 * (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).exp());
        let mut xs: Vec<f32> = (-2000..2000).map(|i| i as f32 / 100.0).collect();
        xs.extend((-60..60).map(|e| (e as f32 / 4.0).exp2() * if e % 2 == 0 { 1.0 } else { -1.0 }));
        let up: Vec<f32> = xs.iter().map(|x| 1.5 + x / 10.0).collect();
        let mut gate = xs.clone();
        geglu(&mut gate, &up);
        for ((&x, &u), &got) in xs.iter().zip(&up).zip(&gate) {
            let expected = (gelu(x as f64) * u as f64) as f32;
            // Below x ≈ −9 the value is negligible (and `exp`'s clamp keeps it from reaching 0).
            if expected.abs() < 1e-30 {
                assert!(got.abs() < 1e-29, "gelu({x})·{u}: {got}");
            } else {
                // The f32 rounding of 2u (its ulp is ~1e-7·|2u|) becomes a relative error of e^(−2u).
                let two_u = 1.6 * (x as f64 + 0.044715 * (x as f64).powi(3));
                let tolerance = 2e-7 * (4.0 + two_u.abs());
                assert!(
                    ((got as f64 - expected as f64) / expected as f64).abs() <= tolerance,
                    "gelu({x})·{u}: {got} vs {expected}"
                );
            }
        }
    }
}
