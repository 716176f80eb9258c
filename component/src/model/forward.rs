//! The forward pass, top to bottom: embeddings, then per layer attention and feed-forward
//! blocks with residual connections, then the final norm and the output projection.
//! A batch of `n` consecutive tokens goes through each matmul together.

use super::ops::{geglu, matmul_f32, rms_norm, softmax, weighted_rows};
use super::{KvCache, Model};
use crate::tokenizer::TokenId;

/// Which positions' logits the caller wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// The last position's only (generation).
    Last,
    /// Every position's (evaluation, teacher forcing).
    All,
    /// None: a prompt chunk that is not the prompt's last.
    None,
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
    v.try_reserve_exact(len)
        .map_err(|_| ForwardError::OutOfMemory(len * 4))?;
    v.resize(len, 0.0);
    Ok(v)
}

/// One sequence's part of a batched forward pass: the tokens it adds, at the positions after
/// those already in its cache, and which logits it wants back.
pub struct SeqInput<'a> {
    pub tokens: &'a [TokenId],
    pub cache: &'a mut KvCache,
    pub want: Logits,
}

impl Model {
    /// Runs `tokens` at the positions after those already in `cache`, appends their keys and
    /// values to it, and returns logits: (1, vocab) for `Last`, (n, vocab) for `All`.
    pub fn forward(&self, tokens: &[TokenId], cache: &mut KvCache, want: Logits) -> Result<Vec<f32>, ForwardError> {
        let mut logits = self.forward_batch(&mut [SeqInput { tokens, cache, want }])?;
        Ok(logits.remove(0))
    }

    /// One forward pass over several sequences at once: every matmul (the output projection
    /// included) reads its weights once for all their tokens; attention stays per sequence,
    /// over its own cache. Returns each sequence's logits, as [`Model::forward`] does.
    pub fn forward_batch(&self, seqs: &mut [SeqInput]) -> Result<Vec<Vec<f32>>, ForwardError> {
        let c = &self.config;
        let (dim, hd) = (c.dim, c.head_dim);
        for s in seqs.iter() {
            if s.tokens.is_empty() {
                return Err(ForwardError::Empty);
            }
            if s.cache.len() + s.tokens.len() > s.cache.capacity() {
                return Err(ForwardError::ContextOverflow {
                    needed: s.cache.len() + s.tokens.len(),
                    capacity: s.cache.capacity(),
                });
            }
            if let Some(&bad) = s.tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
                return Err(ForwardError::BadToken(bad, c.vocab_size));
            }
        }
        for s in seqs.iter_mut() {
            let end = s.cache.len() + s.tokens.len();
            s.cache.reserve(end).map_err(|e| ForwardError::OutOfMemory(e.0))?;
        }
        let heads_per_kv = c.n_heads / c.n_kv_heads;
        // Row `r` of the batch is token `r - first_row[i]` of sequence `i`.
        let first_row: Vec<usize> = seqs
            .iter()
            .scan(0, |row, s| Some(std::mem::replace(row, *row + s.tokens.len())))
            .collect();
        let n: usize = seqs.iter().map(|s| s.tokens.len()).sum();
        let longest = seqs.iter().map(|s| s.cache.len() + s.tokens.len()).max().unwrap_or(0);

        let mut x = zeros(n * dim)?; // (n, dim) the residual stream
        for (row, &t) in x.chunks_exact_mut(dim).zip(seqs.iter().flat_map(|s| s.tokens)) {
            self.token_embd.row(t as usize, row);
            row.iter_mut().for_each(|v| *v *= c.embedding_scale);
        }
        let mut xb = zeros(n * dim)?; // (n, dim) normed input of a block
        let mut q = zeros(n * c.q_dim())?; // (n, n_heads·head_dim)
        let mut k = zeros(n * c.kv_dim())?; // (n, n_kv_heads·head_dim)
        let mut v = zeros(n * c.kv_dim())?;
        let mut att = zeros(n * c.q_dim())?; // (n, q_dim) attention output per head
        let mut scores = zeros(heads_per_kv * longest)?; // (heads of one KV head, positions) a token's attention weights
        let mut keys = zeros(longest * c.kv_dim())?; // (n_kv_heads, positions, head_dim) a cache's keys in f32
        let mut values = zeros(longest * c.kv_dim())?; // (positions, kv_dim) its values
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
            let rope = if c.is_global(l) {
                &self.rope_global
            } else {
                &self.rope_local
            };
            for (s, &row0) in seqs.iter_mut().zip(&first_row) {
                // Causal; a sliding-window layer sees the last `window` positions, itself included.
                let layout = s.cache.layout().clone();
                let first_visible = |p: usize| layout.first_visible(l, p);
                let pos0 = s.cache.len();
                let rows = row0..row0 + s.tokens.len();
                for (t, r) in rows.clone().enumerate() {
                    rope.apply(
                        [
                            &mut q[r * c.q_dim()..(r + 1) * c.q_dim()],
                            &mut k[r * c.kv_dim()..(r + 1) * c.kv_dim()],
                        ],
                        pos0 + t,
                    );
                    s.cache.store(
                        l,
                        pos0 + t,
                        &k[r * c.kv_dim()..(r + 1) * c.kv_dim()],
                        &v[r * c.kv_dim()..(r + 1) * c.kv_dim()],
                    );
                }
                let seen = first_visible(pos0)..pos0 + s.tokens.len(); // every position some token of this sequence sees
                let n_seen = seen.len();
                let (keys, values) = (&mut keys[..n_seen * c.kv_dim()], &mut values[..n_seen * c.kv_dim()]);
                s.cache.keys_by_head(l, seen.clone(), hd, keys);
                s.cache.values_f32(l, seen.clone(), values);
                for (t, r) in rows.enumerate() {
                    let p = pos0 + t;
                    let visible = first_visible(p) - seen.start..p + 1 - seen.start; // of the seen positions
                                                                                     // A KV head's query heads together: their scores against its visible keys in
                                                                                     // one matmul, then each head's weighted sum of the visible values.
                    for g in 0..c.n_kv_heads {
                        let heads = g * heads_per_kv..(g + 1) * heads_per_kv;
                        let q_g = &q[r * c.q_dim() + heads.start * hd..][..heads.len() * hd]; // (heads, hd)
                        let k_g = &keys[(g * n_seen + visible.start) * hd..(g * n_seen + visible.end) * hd]; // (visible, hd)
                        let scores = &mut scores[..heads.len() * visible.len()]; // (heads, visible)
                        matmul_f32(self.path, k_g, q_g, hd, scores);
                        let v_g = &values[visible.start * c.kv_dim() + g * hd..]; // rows of (visible, kv_dim), this head's hd of each
                        for (h, head_scores) in heads.zip(scores.chunks_exact_mut(visible.len())) {
                            head_scores.iter_mut().for_each(|v| *v *= c.attention_scale);
                            softmax(head_scores);
                            weighted_rows(
                                self.path,
                                head_scores,
                                v_g,
                                c.kv_dim(),
                                &mut att[r * c.q_dim() + h * hd..][..hd],
                            );
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
            geglu(&mut gate, &up);
            layer.w_down.matmul(self.path, &gate, &mut xb);
            if let Some(w) = &layer.post_ffn_norm {
                rms_norm(&mut xb, w, c.rms_eps);
            }
            x.iter_mut().zip(&xb).for_each(|(x, o)| *x += o);
        }
        for s in seqs.iter_mut() {
            s.cache.advance(s.tokens.len());
        }

        // The rows whose logits are wanted, gathered so the output projection runs once.
        let wanted: Vec<std::ops::Range<usize>> = seqs
            .iter()
            .zip(&first_row)
            .map(|(s, &row0)| match s.want {
                Logits::Last => row0 + s.tokens.len() - 1..row0 + s.tokens.len(),
                Logits::All => row0..row0 + s.tokens.len(),
                Logits::None => row0..row0,
            })
            .collect();
        let n_out: usize = wanted.iter().map(|r| r.len()).sum();
        if n_out == 0 {
            return Ok(seqs.iter().map(|_| Vec::new()).collect());
        }
        let mut rows = zeros(n_out * dim)?; // (n_out, dim)
        for (dst, r) in rows.chunks_exact_mut(dim).zip(wanted.iter().flat_map(|r| r.clone())) {
            dst.copy_from_slice(&x[r * dim..(r + 1) * dim]);
        }
        rms_norm(&mut rows, &self.output_norm, c.rms_eps);
        let mut logits = zeros(n_out * c.vocab_size)?; // (n_out, vocab)
        self.output.matmul(self.path, &rows, &mut logits);
        if seqs.len() == 1 {
            return Ok(vec![logits]);
        }
        let mut out = Vec::with_capacity(seqs.len());
        let mut at = 0;
        for r in &wanted {
            let len = r.len() * c.vocab_size;
            let mut one = zeros(len)?;
            one.copy_from_slice(&logits[at..at + len]);
            out.push(one);
            at += len;
        }
        Ok(out)
    }
}
