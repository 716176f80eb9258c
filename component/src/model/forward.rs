//! The forward pass, top to bottom: embeddings, then per layer attention and feed-forward
//! blocks with residual connections, then the final norm and the output projection.
//! A batch of `n` consecutive tokens goes through each matmul together.

use super::ops::{dot, gelu_tanh, rms_norm, rope_neox, softmax};
use super::{KvCache, Model};
use crate::tokenizer::TokenId;

/// Which positions' logits the caller wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// The last position's only (generation).
    Last,
    /// Every position's (evaluation, teacher forcing).
    All,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ForwardError {
    #[error("{needed} positions needed, the KV cache holds {capacity}")]
    ContextOverflow { needed: usize, capacity: usize },
    #[error("token id {0} is outside the vocabulary of {1}")]
    BadToken(TokenId, usize),
    #[error("no tokens to evaluate")]
    Empty,
    #[error("{0} bytes of activations for this batch do not fit in memory")]
    OutOfMemory(usize),
}

/// A zeroed buffer of `len` floats, or an error when memory is exhausted: a long prompt (or
/// all-position logits) must not abort the engine.
fn zeros(len: usize) -> Result<Vec<f32>, ForwardError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| ForwardError::OutOfMemory(len * 4))?;
    v.resize(len, 0.0);
    Ok(v)
}

impl Model {
    /// Runs `tokens` at the positions after those already in `cache`, appends their keys and
    /// values to it, and returns logits: (1, vocab) for `Last`, (n, vocab) for `All`.
    pub fn forward(&self, tokens: &[TokenId], cache: &mut KvCache, want: Logits) -> Result<Vec<f32>, ForwardError> {
        let c = &self.config;
        let (n, dim, hd) = (tokens.len(), c.dim, c.head_dim);
        let pos0 = cache.len();
        if n == 0 {
            return Err(ForwardError::Empty);
        }
        if pos0 + n > cache.capacity() {
            return Err(ForwardError::ContextOverflow { needed: pos0 + n, capacity: cache.capacity() });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(ForwardError::BadToken(bad, c.vocab_size));
        }
        let heads_per_kv = c.n_heads / c.n_kv_heads;

        let mut x = zeros(n * dim)?; // (n, dim) the residual stream
        for (row, &t) in x.chunks_exact_mut(dim).zip(tokens) {
            self.token_embd.row(t as usize, row);
            row.iter_mut().for_each(|v| *v *= c.embedding_scale);
        }
        let mut xb = zeros(n * dim)?; // (n, dim) normed input of a block
        let mut q = zeros(n * c.q_dim())?; // (n, n_heads·head_dim)
        let mut k = zeros(n * c.kv_dim())?; // (n, n_kv_heads·head_dim)
        let mut v = zeros(n * c.kv_dim())?;
        let mut att = zeros(n * c.q_dim())?; // (n, q_dim) attention output per head
        let mut scores = zeros(pos0 + n)?; // (positions) one head's attention weights
        let mut keys = zeros((pos0 + n) * c.kv_dim())?; // (positions, kv_dim) the cache's keys in f32
        let mut values = zeros((pos0 + n) * c.kv_dim())?; // (positions, kv_dim)
        let mut gate = zeros(n * c.ffn_dim)?; // (n, ffn_dim)
        let mut up = zeros(n * c.ffn_dim)?;

        for (l, layer) in self.layers.iter().enumerate() {
            // Attention block.
            xb.copy_from_slice(&x);
            rms_norm(&mut xb, &layer.attn_norm, c.rms_eps);
            layer.wq.matmul(self.path, &xb, &mut q);
            layer.wk.matmul(self.path, &xb, &mut k);
            layer.wv.matmul(self.path, &xb, &mut v);
            if let Some(w) = &layer.q_norm {
                rms_norm(&mut q, w, c.rms_eps);
            }
            if let Some(w) = &layer.k_norm {
                rms_norm(&mut k, w, c.rms_eps);
            }
            let global = c.is_global(l);
            let base = if global { c.rope_base_global } else { c.rope_base_local };
            for t in 0..n {
                rope_neox(&mut q[t * c.q_dim()..(t + 1) * c.q_dim()], hd, pos0 + t, base);
                rope_neox(&mut k[t * c.kv_dim()..(t + 1) * c.kv_dim()], hd, pos0 + t, base);
                cache.store(l, pos0 + t, &k[t * c.kv_dim()..(t + 1) * c.kv_dim()], &v[t * c.kv_dim()..(t + 1) * c.kv_dim()]);
            }
            // Causal; a sliding-window layer sees the last `window` positions, itself included.
            let first_visible = |p: usize| match c.sliding_window {
                Some(w) if !global => (p + 1).saturating_sub(w),
                _ => 0,
            };
            let seen = first_visible(pos0)..pos0 + n; // every position some token of the batch sees
            let (keys, values) = (&mut keys[..seen.len() * c.kv_dim()], &mut values[..seen.len() * c.kv_dim()]);
            cache.keys_f32(l, seen.clone(), keys);
            cache.values_f32(l, seen.clone(), values);
            for t in 0..n {
                let p = pos0 + t;
                let first = first_visible(p);
                for h in 0..c.n_heads {
                    let kv_at = |j: usize| (first + j - seen.start) * c.kv_dim() + h / heads_per_kv * hd;
                    let qh = &q[t * c.q_dim() + h * hd..][..hd];
                    let s = &mut scores[first..=p];
                    for (j, score) in s.iter_mut().enumerate() {
                        *score = dot(self.path, qh, &keys[kv_at(j)..][..hd]) * c.attention_scale;
                    }
                    softmax(s);
                    let out = &mut att[t * c.q_dim() + h * hd..][..hd];
                    out.fill(0.0);
                    for (j, &weight) in s.iter().enumerate() {
                        for (o, val) in out.iter_mut().zip(&values[kv_at(j)..][..hd]) {
                            *o += weight * val;
                        }
                    }
                }
            }
            layer.wo.matmul(self.path, &att, &mut xb);
            if let Some(w) = &layer.post_attn_norm {
                rms_norm(&mut xb, w, c.rms_eps);
            }
            x.iter_mut().zip(&xb).for_each(|(x, o)| *x += o);

            // Feed-forward block: down(gelu(gate(x)) · up(x)).
            xb.copy_from_slice(&x);
            rms_norm(&mut xb, &layer.ffn_norm, c.rms_eps);
            layer.w_gate.matmul(self.path, &xb, &mut gate);
            layer.w_up.matmul(self.path, &xb, &mut up);
            gate.iter_mut().zip(&up).for_each(|(g, u)| *g = gelu_tanh(*g) * u);
            layer.w_down.matmul(self.path, &gate, &mut xb);
            if let Some(w) = &layer.post_ffn_norm {
                rms_norm(&mut xb, w, c.rms_eps);
            }
            x.iter_mut().zip(&xb).for_each(|(x, o)| *x += o);
        }
        cache.advance(n);

        let rows = match want {
            Logits::Last => &mut x[(n - 1) * dim..],
            Logits::All => &mut x[..],
        };
        rms_norm(rows, &self.output_norm, c.rms_eps);
        let mut logits = zeros(rows.len() / dim * c.vocab_size)?; // (rows, vocab)
        self.output.matmul(self.path, rows, &mut logits);
        Ok(logits)
    }
}
