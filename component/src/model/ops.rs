//! The element-wise pieces of the forward pass.

use rill_kernels::{vec_dot, KernelPath, QuantType};

/// RMSNorm of each `w.len()`-wide row of `x` in place: `x · w / √(mean(x²) + eps)`.
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(w.len()) {
        let mean_sq = row.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        let inv = 1.0 / (mean_sq + eps).sqrt();
        for (v, w) in row.iter_mut().zip(w) {
            *v *= inv * w;
        }
    }
}

/// GELU, tanh approximation.
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// Σ a·b on the fastest kernel path.
pub fn dot(path: KernelPath, a: &[f32], b: &[f32]) -> f32 {
    vec_dot(path, QuantType::F32, bytemuck::cast_slice(a), bytemuck::cast_slice(b)).expect("equal lengths")
}
