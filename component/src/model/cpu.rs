//! The forward pass's operations on the CPU: activations in `Vec<f32>`, matmuls by the
//! `rill-kernels` path chosen at load (scalar, simd128, AVX2, AVX-512 VNNI), one core.

use super::attention::{attend, AttentionBuffers};
use super::device::Device;
use super::forward::{ForwardError, SeqInput, TopLogits};
use super::ops::{geglu, inverse_rms, rms_norm};
use super::{Config, Matrix, Rope};
use crate::tokenizer::TokenId;
use rill_kernels::KernelPath;

#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    pub path: KernelPath,
}

/// Makes `v` hold `len` values; its storage grows only when it holds fewer.
pub(super) fn resize(v: &mut Vec<f32>, len: usize) -> Result<(), ForwardError> {
    v.try_reserve_exact(len.saturating_sub(v.len()))
        .map_err(|_| ForwardError::OutOfMemory(len * 4))?;
    v.resize(len, 0.0);
    Ok(())
}

/// `normed` = RMSNorm of each `norm.len()`-wide row of `x`, scaled by `norm`.
fn normalised(x: &[f32], norm: &[f32], eps: f32, normed: &mut Vec<f32>) {
    normed.clear();
    normed.extend_from_slice(x);
    rms_norm(normed, norm, eps);
}

impl Device for Cpu {
    type Tensor = Vec<f32>;
    type AttentionScratch = AttentionBuffers;

    fn resize(&self, t: &mut Vec<f32>, len: usize) -> Result<(), ForwardError> {
        resize(t, len)
    }

    fn embed(&self, table: &Matrix, tokens: &[TokenId], scale: f32, out: &mut Vec<f32>) {
        for (row, &t) in out.chunks_exact_mut(table.cols).zip(tokens) {
            table.row(t as usize, row);
            row.iter_mut().for_each(|v| *v *= scale);
        }
    }

    fn project(
        &self,
        x: &Vec<f32>,
        norm: &[f32],
        eps: f32,
        normed: &mut Vec<f32>,
        outs: &mut [(&Matrix, &mut Vec<f32>)],
    ) {
        normalised(x, norm, eps, normed);
        for (w, out) in outs {
            w.matmul(self.path, normed, out);
        }
    }

    fn gated_ffn(
        &self,
        x: &Vec<f32>,
        norm: &[f32],
        eps: f32,
        gate: &Matrix,
        up: &Matrix,
        normed: &mut Vec<f32>,
        up_out: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) {
        normalised(x, norm, eps, normed);
        gate.matmul(self.path, normed, out);
        up.matmul(self.path, normed, up_out);
        geglu(out, up_out);
    }

    fn matmul(&self, w: &Matrix, x: &Vec<f32>, out: &mut Vec<f32>) {
        w.matmul(self.path, x, out);
    }

    fn residual(&self, x: &mut Vec<f32>, y: &Vec<f32>, norm: Option<&[f32]>, eps: f32) {
        match norm {
            Some(w) => {
                for (x, y) in x.chunks_exact_mut(w.len()).zip(y.chunks_exact(w.len())) {
                    let scale = inverse_rms(y, eps);
                    x.iter_mut().zip(y).zip(w).for_each(|((x, y), w)| *x += y * scale * w);
                }
            }
            None => x.iter_mut().zip(y).for_each(|(x, y)| *x += y),
        }
    }

    fn attention(
        &self,
        config: &Config,
        l: usize,
        head_norms: Option<(&[f32], &[f32])>,
        rope: &Rope,
        seqs: &mut [SeqInput],
        q: &mut Vec<f32>,
        k: &mut Vec<f32>,
        v: &Vec<f32>,
        buffers: &mut AttentionBuffers,
        out: &mut Vec<f32>,
    ) -> Result<(), ForwardError> {
        if let Some((q_norm, k_norm)) = head_norms {
            rms_norm(q, q_norm, config.rms_eps);
            rms_norm(k, k_norm, config.rms_eps);
        }
        let positions = seqs.iter().flat_map(|s| s.cache.len()..s.cache.len() + s.tokens.len());
        for ((q, k), p) in q
            .chunks_exact_mut(config.q_dim())
            .zip(k.chunks_exact_mut(config.kv_dim()))
            .zip(positions)
        {
            rope.apply([q, k], p);
        }
        attend(self.path, config, l, seqs, q, k, v, buffers, out)
    }

    fn gather_rows(&self, x: &Vec<f32>, width: usize, rows: &[usize], out: &mut Vec<f32>) {
        for (dst, &r) in out.chunks_exact_mut(width).zip(rows) {
            dst.copy_from_slice(&x[r * width..(r + 1) * width]);
        }
    }

    /// The logits are in the caller's memory already: the sampler reads them whole.
    fn top_logits(
        &self,
        _logits: &Vec<f32>,
        _vocab: usize,
        _room: &mut [Vec<f32>; 2],
    ) -> Result<Option<Vec<TopLogits>>, ForwardError> {
        Ok(None)
    }

    fn submit(&self) -> Result<(), ForwardError> {
        Ok(())
    }

    fn read(&self, t: &Vec<f32>, range: std::ops::Range<usize>) -> Result<Vec<f32>, ForwardError> {
        let mut out = Vec::new();
        resize(&mut out, range.len())?;
        out.copy_from_slice(&t[range]);
        Ok(out)
    }
}
