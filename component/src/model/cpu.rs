//! The forward pass's operations on the CPU: activations in `Vec<f32>`, matmuls by the
//! `rill-kernels` path chosen at load (scalar, simd128, AVX2, AVX-512 VNNI), one core.

use super::attention::{attend, AttentionBuffers};
use super::device::Device;
use super::forward::{ForwardError, SeqInput};
use super::ops::{geglu, rms_norm};
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

impl Device for Cpu {
    type Tensor = Vec<f32>;
    type AttentionScratch = AttentionBuffers;

    fn resize(&self, t: &mut Vec<f32>, len: usize) -> Result<(), ForwardError> {
        resize(t, len)
    }

    fn release(&self, t: &mut Vec<f32>) {
        *t = Vec::new();
    }

    fn embed(&self, table: &Matrix, tokens: &[TokenId], scale: f32, out: &mut Vec<f32>) {
        for (row, &t) in out.chunks_exact_mut(table.cols).zip(tokens) {
            table.row(t as usize, row);
            row.iter_mut().for_each(|v| *v *= scale);
        }
    }

    fn matmul(&self, w: &Matrix, x: &Vec<f32>, out: &mut Vec<f32>) {
        w.matmul(self.path, x, out);
    }

    fn rms_norm(&self, x: &Vec<f32>, w: &[f32], eps: f32, out: &mut Vec<f32>) {
        out.copy_from_slice(x);
        rms_norm(out, w, eps);
    }

    fn rms_norm_in_place(&self, x: &mut Vec<f32>, w: &[f32], eps: f32) {
        rms_norm(x, w, eps);
    }

    fn rope(&self, rope: &Rope, positions: &[usize], q: &mut Vec<f32>, k: &mut Vec<f32>) {
        let (q_dim, kv_dim) = (q.len() / positions.len(), k.len() / positions.len());
        for ((q, k), &p) in q.chunks_exact_mut(q_dim).zip(k.chunks_exact_mut(kv_dim)).zip(positions) {
            rope.apply([q, k], p);
        }
    }

    fn attention(
        &self,
        config: &Config,
        l: usize,
        seqs: &mut [SeqInput],
        q: &Vec<f32>,
        k: &Vec<f32>,
        v: &Vec<f32>,
        buffers: &mut AttentionBuffers,
        out: &mut Vec<f32>,
    ) -> Result<(), ForwardError> {
        attend(self.path, config, l, seqs, q, k, v, buffers, out)
    }

    fn geglu(&self, gate: &mut Vec<f32>, up: &Vec<f32>) {
        geglu(gate, up);
    }

    fn add(&self, x: &mut Vec<f32>, y: &Vec<f32>) {
        x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
    }

    fn gather_rows(&self, x: &Vec<f32>, width: usize, rows: &[usize], out: &mut Vec<f32>) {
        for (dst, &r) in out.chunks_exact_mut(width).zip(rows) {
            dst.copy_from_slice(&x[r * width..(r + 1) * width]);
        }
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
