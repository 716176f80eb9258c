//! The forward pass, top to bottom: embeddings, then per layer attention and feed-forward
//! blocks with residual connections, then the final norm and the output projection.
//! The tokens of every sequence in the batch (`n` in all) go through each matmul together.
//! Written once, against the operations of a [`Device`].

use super::cpu::Cpu;
use super::device::{Device, Scratch};
use super::{Config, KvCache, KvType, Model};
use crate::gpu::GpuError;
use crate::tokenizer::TokenId;
pub use rill_kernels::wgsl::TOP_K;

/// Which positions' logits the caller wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// The last position's only (generation).
    Last,
    /// Every position's (evaluation, teacher forcing).
    All,
    /// None: a prompt chunk that is not the prompt's last.
    None,
    /// The last position's most likely tokens ([`TopLogits`]), where the device finds them
    /// without reading the row back (a GPU); the row itself, as `Last`, where it does not.
    Top,
}

/// A row of logits' [`TOP_K`] most likely tokens, most likely first (ties: the lower id), and
/// ln Σ exp over the whole row, for log-probabilities.
#[derive(Clone, Debug, PartialEq)]
pub struct TopLogits {
    pub candidates: Vec<(TokenId, f32)>,
    pub log_sum_exp: f32,
}

/// What a step gives a sequence back, as its [`Logits`] asked.
#[derive(Clone, Debug, PartialEq)]
pub enum SeqLogits {
    /// (rows, vocab): none, the last position's, or every position's.
    Rows(Vec<f32>),
    /// The last position's most likely tokens.
    Top(TopLogits),
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
    #[error(transparent)]
    Gpu(#[from] GpuError),
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
    /// values to it, and returns logits: (1, vocab) for `Last` (and `Top`), (n, vocab) for `All`.
    pub fn forward(&self, tokens: &[TokenId], cache: &mut KvCache, want: Logits) -> Result<Vec<f32>, ForwardError> {
        let want = if want == Logits::Top { Logits::Last } else { want };
        match self.forward_batch(&mut [SeqInput { tokens, cache, want }])?.remove(0) {
            SeqLogits::Rows(rows) => Ok(rows),
            SeqLogits::Top(_) => unreachable!("only Logits::Top asks for the top logits"),
        }
    }

    /// One forward pass over several sequences at once: every matmul (the output projection
    /// included) reads its weights once for all their tokens; attention stays per sequence,
    /// over its own cache. Returns each sequence's logits, as its `want` asked.
    pub fn forward_batch(&self, seqs: &mut [SeqInput]) -> Result<Vec<SeqLogits>, ForwardError> {
        if let Some(gpu) = &self.gpu {
            let mut scratch = gpu.scratch.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            return forward_per_kv_type(&gpu.device, self, seqs, &mut scratch);
        }
        let mut scratch = self.scratch.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        forward(&Cpu { path: self.path }, self, seqs, &mut scratch)
    }
}

/// [`forward`] once per KV cache type in the batch (a GPU dispatch's attention reads one type),
/// the results in the batch's order.
fn forward_per_kv_type<D: Device>(
    device: &D,
    model: &Model,
    seqs: &mut [SeqInput],
    s: &mut Scratch<D>,
) -> Result<Vec<SeqLogits>, ForwardError> {
    let mut types: Vec<KvType> = Vec::new();
    for seq in seqs.iter() {
        if !types.contains(&seq.cache.layout().ty) {
            types.push(seq.cache.layout().ty);
        }
    }
    if types.len() <= 1 {
        return forward(device, model, seqs, s);
    }
    let mut out: Vec<Option<SeqLogits>> = seqs.iter().map(|_| None).collect();
    for ty in types {
        let (order, mut part): (Vec<usize>, Vec<SeqInput>) = seqs
            .iter_mut()
            .enumerate()
            .filter(|(_, seq)| seq.cache.layout().ty == ty)
            .map(|(i, seq)| {
                let input = SeqInput {
                    tokens: seq.tokens,
                    cache: &mut *seq.cache,
                    want: seq.want,
                };
                (i, input)
            })
            .unzip();
        for (i, logits) in order.into_iter().zip(forward(device, model, &mut part, s)?) {
            out[i] = Some(logits);
        }
    }
    Ok(out
        .into_iter()
        .map(|l| l.expect("each type's pass answers its sequences"))
        .collect())
}

/// The forward pass on `device`, its activations in `s`.
fn forward<D: Device>(
    device: &D,
    model: &Model,
    seqs: &mut [SeqInput],
    s: &mut Scratch<D>,
) -> Result<Vec<SeqLogits>, ForwardError> {
    if seqs.is_empty() {
        return Ok(Vec::new()); // every sequence of the step waits (for KV memory)
    }
    let c = &model.config;
    check(c, seqs)?;
    for seq in seqs.iter_mut() {
        let end = seq.cache.len() + seq.tokens.len();
        seq.cache.reserve(end).map_err(|e| ForwardError::OutOfMemory(e.0))?;
    }
    let n: usize = seqs.iter().map(|s| s.tokens.len()).sum();
    for (t, width) in [
        (&mut s.x, c.dim),
        (&mut s.xb, c.dim),
        (&mut s.q, c.q_dim()),
        (&mut s.k, c.kv_dim()),
        (&mut s.v, c.kv_dim()),
        (&mut s.att, c.q_dim()),
        (&mut s.gate, c.ffn_dim),
        (&mut s.up, c.ffn_dim),
    ] {
        device.resize(t, n * width)?;
    }
    let tokens: Vec<TokenId> = seqs.iter().flat_map(|s| s.tokens.iter().copied()).collect(); // (n)

    device.embed(&model.token_embd, &tokens, c.embedding_scale, &mut s.x);
    for (l, layer) in model.layers.iter().enumerate() {
        // Attention block: x += post_norm(wo · attention(q, k, v)), q, k, v from norm(x).
        device.project(
            &s.x,
            &layer.attn_norm,
            c.rms_eps,
            &mut s.xb,
            &mut [(&layer.wq, &mut s.q), (&layer.wk, &mut s.k), (&layer.wv, &mut s.v)],
        );
        let rope = if c.is_global(l) {
            &model.rope_global
        } else {
            &model.rope_local
        };
        let head_norms = layer.q_norm.as_deref().zip(layer.k_norm.as_deref());
        device.attention(
            c,
            l,
            head_norms,
            rope,
            seqs,
            &mut s.q,
            &mut s.k,
            &s.v,
            &mut s.attention,
            &mut s.att,
        )?;
        device.matmul(&layer.wo, &s.att, &mut s.xb);
        device.residual(&mut s.x, &s.xb, layer.post_attn_norm.as_deref(), c.rms_eps);

        // Feed-forward block: x += post_norm(down(gelu(gate(norm(x))) · up(norm(x)))).
        device.gated_ffn(
            &s.x,
            &layer.ffn_norm,
            c.rms_eps,
            &layer.w_gate,
            &layer.w_up,
            &mut s.xb,
            &mut s.up,
            &mut s.gate,
        );
        device.matmul(&layer.w_down, &s.gate, &mut s.xb);
        device.residual(&mut s.x, &s.xb, layer.post_ffn_norm.as_deref(), c.rms_eps);
    }
    for seq in seqs.iter_mut() {
        seq.cache.advance(seq.tokens.len());
    }

    // The rows whose logits are wanted, gathered so the output projection reads its weights
    // once for many of them.
    let mut wanted = Vec::new(); // (n_out) batch rows, and whether only their top logits are
    let mut counts = Vec::with_capacity(seqs.len()); // how many of them each sequence wants
    let mut row0 = 0;
    for seq in seqs.iter() {
        let rows = row0..row0 + seq.tokens.len();
        row0 = rows.end;
        let start = match seq.want {
            Logits::Last | Logits::Top => rows.end - 1,
            Logits::All => rows.start,
            Logits::None => rows.end,
        };
        wanted.extend((start..rows.end).map(|r| (r, seq.want == Logits::Top)));
        counts.push(rows.end - start);
    }
    if wanted.is_empty() {
        device.submit()?;
        return Ok(seqs.iter().map(|_| SeqLogits::Rows(Vec::new())).collect());
    }
    // At most LOGIT_ROWS rows at a time, so that the logits held between steps stay small
    // (all-position logits of a long input are n_out × vocab floats) and fit one GPU binding.
    let mut values = Vec::new(); // (rows read back, vocab)
    let mut tops = Vec::with_capacity(wanted.len()); // (n_out) the row's top logits, if found
    for chunk in wanted.chunks(LOGIT_ROWS) {
        let rows: Vec<usize> = chunk.iter().map(|&(r, _)| r).collect();
        device.resize(&mut s.rows, rows.len() * c.dim)?;
        device.resize(&mut s.logits, rows.len() * c.vocab_size)?;
        device.gather_rows(&s.x, c.dim, &rows, &mut s.rows);
        device.project(
            &s.rows,
            &model.output_norm,
            c.rms_eps,
            &mut s.xb,
            &mut [(&model.output, &mut s.logits)],
        );
        if chunk.iter().all(|&(_, top)| top) {
            if let Some(found) = device.top_logits(&s.logits, c.vocab_size, &mut s.top)? {
                tops.extend(found.into_iter().map(Some));
                continue;
            }
        }
        device.submit()?;
        let len = rows.len() * c.vocab_size;
        values
            .try_reserve(len)
            .map_err(|_| ForwardError::OutOfMemory(len * 4))?;
        values.extend(device.read(&s.logits, 0..len)?);
        tops.extend(rows.iter().map(|_| None));
    }
    // Each sequence's part: its top logits, or its rows.
    let mut tops = tops.into_iter();
    let mut rest = values.as_slice();
    Ok(counts
        .into_iter()
        .map(|count| {
            // A sequence that asked for its top logits has one row.
            if let Some(top) = tops.by_ref().take(count).flatten().next() {
                return SeqLogits::Top(top);
            }
            let (rows, others) = rest.split_at(count * c.vocab_size);
            rest = others;
            SeqLogits::Rows(rows.to_vec())
        })
        .collect())
}

/// Rows of logits computed at a time: 32 MiB of them for a 262,144-token vocabulary.
const LOGIT_ROWS: usize = 32;

/// Refuses a batch the model cannot run: an empty sequence, one that outgrows its cache, or a
/// token outside the vocabulary.
fn check(c: &Config, seqs: &[SeqInput]) -> Result<(), ForwardError> {
    for s in seqs {
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
    Ok(())
}
