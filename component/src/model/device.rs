//! The seam between the forward pass and what computes it.
//!
//! The forward pass (`forward.rs`) is written once, against the operations of [`Device`]; a way
//! of computing implements them. The CPU kernels (`cpu.rs`) are one implementation. A GPU device
//! (activations in buffers on the card, WGSL kernels) and a sharded one (each engine instance
//! holding a slice of every matrix's rows, the slices joined by a host collective) slot in
//! beside it without a second forward pass. The GPU (`gpu/`) is another.
//!
//! Activations are [`Device::Tensor`]s: row-major f32 matrices where the device keeps them,
//! sized per step by [`Device::resize`] and kept between steps in a [`Scratch`]. Weights are the
//! model's ([`Matrix`], norm vectors); a device that keeps its own copies resolves them to those.

use super::forward::{ForwardError, SeqInput, TopLogits};
use super::{Config, Matrix, Rope};
use crate::tokenizer::TokenId;

pub trait Device {
    /// A row-major f32 matrix of activations.
    type Tensor: Default;
    /// What attention keeps between steps besides the activations.
    type AttentionScratch: Default;

    /// Makes `t` hold `len` values, growing its storage only when it holds fewer, so that steps
    /// no larger than an earlier one allocate nothing. Running out of memory is an error, never
    /// an abort: a long prompt must not take the engine down.
    fn resize(&self, t: &mut Self::Tensor, len: usize) -> Result<(), ForwardError>;

    /// `out` (tokens, dim): each token's row of `table`, times `scale`.
    fn embed(&self, table: &Matrix, tokens: &[TokenId], scale: f32, out: &mut Self::Tensor);

    /// A block's input: for each `(w, out)` of `outs`, `out` (n, w.rows) = RMSNorm(x)·`norm`
    /// (n, w.cols) · wᵀ (Q, K and V from one norm; the logits from the output norm). `normed`
    /// is room for the normed input, where the device needs it.
    fn project(
        &self,
        x: &Self::Tensor,
        norm: &[f32],
        eps: f32,
        normed: &mut Self::Tensor,
        outs: &mut [(&Matrix, &mut Self::Tensor)],
    );

    /// The gated feed-forward's first half: `out` (n, ffn) = gelu(x̂ · gateᵀ) · (x̂ · upᵀ), with
    /// x̂ = RMSNorm(x)·`norm`; `normed` and `up` are room, where the device needs it.
    fn gated_ffn(
        &self,
        x: &Self::Tensor,
        norm: &[f32],
        eps: f32,
        gate: &Matrix,
        up: &Matrix,
        normed: &mut Self::Tensor,
        up_out: &mut Self::Tensor,
        out: &mut Self::Tensor,
    );

    /// `out` (n, w.rows) = `x` (n, w.cols) · wᵀ, over the weight's own format.
    fn matmul(&self, w: &Matrix, x: &Self::Tensor, out: &mut Self::Tensor);

    /// The residual connection: `x += RMSNorm(y)·norm` (a block's output norm), or `x += y`.
    /// A device may run it later, folded into the next operation that reads `x` (the GPU
    /// does): `y` stays as it is until then.
    fn residual(&self, x: &mut Self::Tensor, y: &Self::Tensor, norm: Option<&[f32]>, eps: f32);

    /// Layer `l`'s attention for every sequence of the batch: normalises each new query and key
    /// head (`head_norms`: the query heads' and the key heads' weights, where the model has
    /// them), rotates them to their positions, stores the keys and values (n, kv_dim) of each
    /// sequence's new tokens in its cache, then writes into `out` (n, q_dim) each token's
    /// attention over the positions it sees (causal; a sliding-window layer sees its window).
    /// Rows are the sequences' tokens in order.
    fn attention(
        &self,
        config: &Config,
        l: usize,
        head_norms: Option<(&[f32], &[f32])>,
        rope: &Rope,
        seqs: &mut [SeqInput],
        q: &mut Self::Tensor,
        k: &mut Self::Tensor,
        v: &Self::Tensor,
        scratch: &mut Self::AttentionScratch,
        out: &mut Self::Tensor,
    ) -> Result<(), ForwardError>;

    /// `out` (rows.len(), width): the listed rows of `x`, in order.
    fn gather_rows(&self, x: &Self::Tensor, width: usize, rows: &[usize], out: &mut Self::Tensor);

    /// The [`TOP_K`](rill_kernels::wgsl::TOP_K) most likely tokens of each row of `logits`
    /// (rows, vocab), with each row's log-sum-exp, where the device finds them for less than
    /// the rows cost to read (a GPU, whose rows would cross to the host: 1 MiB each for a
    /// vocabulary of 262,144); `None` where it does not. Submits the step's work. `room` is the
    /// device's to use.
    fn top_logits(
        &self,
        logits: &Self::Tensor,
        vocab: usize,
        room: &mut [Self::Tensor; 2],
    ) -> Result<Option<Vec<TopLogits>>, ForwardError>;

    /// Runs what the operations above recorded (a GPU submits the step's work at once).
    fn submit(&self) -> Result<(), ForwardError>;

    /// Values `range` of `t`, where the caller can read them (the logits), after [`Device::submit`].
    fn read(&self, t: &Self::Tensor, range: std::ops::Range<usize>) -> Result<Vec<f32>, ForwardError>;
}

/// The activations of a step, kept between steps so that a step no larger than an earlier one
/// allocates nothing. Shapes are per step, for `n` tokens in the batch.
pub struct Scratch<D: Device> {
    pub x: D::Tensor,        // (n, dim) the residual stream
    pub xb: D::Tensor,       // (n, dim) a block's normed input, then its output
    pub q: D::Tensor,        // (n, n_heads·head_dim)
    pub k: D::Tensor,        // (n, n_kv_heads·head_dim)
    pub v: D::Tensor,        // (n, n_kv_heads·head_dim)
    pub att: D::Tensor,      // (n, q_dim) attention's output per head
    pub gate: D::Tensor,     // (n, ffn_dim)
    pub up: D::Tensor,       // (n, ffn_dim)
    pub rows: D::Tensor,     // (n_out, dim) the rows whose logits are wanted
    pub logits: D::Tensor,   // (n_out, vocab)
    pub top: [D::Tensor; 2], // the device's, for top_logits
    pub attention: D::AttentionScratch,
}

impl<D: Device> Default for Scratch<D> {
    fn default() -> Self {
        Scratch {
            x: D::Tensor::default(),
            xb: D::Tensor::default(),
            q: D::Tensor::default(),
            k: D::Tensor::default(),
            v: D::Tensor::default(),
            att: D::Tensor::default(),
            gate: D::Tensor::default(),
            up: D::Tensor::default(),
            rows: D::Tensor::default(),
            logits: D::Tensor::default(),
            top: Default::default(),
            attention: D::AttentionScratch::default(),
        }
    }
}
