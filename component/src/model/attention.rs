//! Attention over the KV cache on the CPU: each token's query heads against the keys and values
//! of the positions it sees, sequence by sequence (each has its own cache).

use super::cpu::resize;
use super::forward::{ForwardError, SeqInput};
use super::ops::{matmul_f32, softmax, weighted_rows};
use super::Config;
use rill_kernels::KernelPath;

/// Attention's buffers, kept between steps (sized by the longest sequence of the step).
#[derive(Default)]
pub struct AttentionBuffers {
    scores: Vec<f32>, // (heads of one KV head, positions) a token's attention weights
    keys: Vec<f32>,   // (n_kv_heads, positions, head_dim) a cache's visible keys in f32
    values: Vec<f32>, // (positions, kv_dim) its visible values
}

/// Layer `l`: stores each sequence's new keys `k` and values `v` (n, kv_dim) in its cache, then
/// writes each token's attention output into `out` (n, q_dim). `q` holds the tokens' queries
/// (n, q_dim), already normed and rotated; rows are the sequences' tokens in order.
pub fn attend(
    path: KernelPath,
    c: &Config,
    l: usize,
    seqs: &mut [SeqInput],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    buffers: &mut AttentionBuffers,
    out: &mut [f32],
) -> Result<(), ForwardError> {
    let (hd, q_dim, kv_dim) = (c.head_dim, c.q_dim(), c.kv_dim());
    let heads_per_kv = c.n_heads / c.n_kv_heads;
    let longest = seqs.iter().map(|s| s.cache.len() + s.tokens.len()).max().unwrap_or(0);
    resize(&mut buffers.scores, heads_per_kv * longest)?;
    resize(&mut buffers.keys, longest * kv_dim)?;
    resize(&mut buffers.values, longest * kv_dim)?;
    let mut row0 = 0; // the batch row of the sequence's first new token
    for s in seqs.iter_mut() {
        let pos0 = s.cache.len();
        let rows = row0..row0 + s.tokens.len();
        row0 = rows.end;
        for (t, r) in rows.clone().enumerate() {
            s.cache
                .store(l, pos0 + t, &k[r * kv_dim..][..kv_dim], &v[r * kv_dim..][..kv_dim]);
        }
        // Causal; a sliding-window layer sees the last `window` positions, itself included.
        let layout = s.cache.layout().clone();
        let seen = layout.first_visible(l, pos0)..pos0 + s.tokens.len(); // every position some new token sees
        let n_seen = seen.len();
        let keys = &mut buffers.keys[..n_seen * kv_dim];
        let values = &mut buffers.values[..n_seen * kv_dim];
        s.cache.keys_by_head(l, seen.clone(), hd, keys);
        s.cache.values_f32(l, seen.clone(), values);
        for (t, r) in rows.enumerate() {
            let p = pos0 + t;
            let visible = layout.first_visible(l, p) - seen.start..p + 1 - seen.start; // of the seen positions
                                                                                       // A KV head's query heads together: their scores against its visible keys in one
                                                                                       // matmul, then each head's weighted sum of the visible values.
            for g in 0..c.n_kv_heads {
                let heads = g * heads_per_kv..(g + 1) * heads_per_kv;
                let q_g = &q[r * q_dim + heads.start * hd..][..heads.len() * hd]; // (heads, hd)
                let k_g = &keys[(g * n_seen + visible.start) * hd..(g * n_seen + visible.end) * hd]; // (visible, hd)
                let scores = &mut buffers.scores[..heads.len() * visible.len()]; // (heads, visible)
                matmul_f32(path, k_g, q_g, hd, scores);
                let v_g = &values[visible.start * kv_dim + g * hd..]; // rows of (visible, kv_dim), this head's hd of each
                for (h, head_scores) in heads.zip(scores.chunks_exact_mut(visible.len())) {
                    head_scores.iter_mut().for_each(|v| *v *= c.attention_scale);
                    softmax(head_scores);
                    weighted_rows(path, head_scores, v_g, kv_dim, &mut out[r * q_dim + h * hd..][..hd]);
                }
            }
        }
    }
    Ok(())
}
