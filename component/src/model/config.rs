//! Hyperparameters from GGUF metadata, and what differs between architectures.

use crate::gguf::{Gguf, GgufError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    Gemma3,
}

impl Architecture {
    pub const SUPPORTED: &'static [&'static str] = &["gemma3"];

    pub fn from_name(name: &str) -> Option<Architecture> {
        match name {
            "gemma3" => Some(Architecture::Gemma3),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub arch: Architecture,
    pub n_layers: usize,
    /// Model width (`embedding_length`).
    pub dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rms_eps: f32,
    /// RoPE base on global (full-attention) layers and on sliding-window layers.
    pub rope_base_global: f32,
    pub rope_base_local: f32,
    /// Positions a sliding-window layer sees (itself included); `None` when no layer slides.
    pub sliding_window: Option<usize>,
    /// Every `n`th layer (the last of each group) attends globally; the others slide.
    pub global_every: usize,
    /// Multiplier on token embeddings (Gemma: √dim).
    pub embedding_scale: f32,
    pub attention_scale: f32,
}

impl Config {
    pub fn from_gguf(g: &Gguf) -> Result<Config, ConfigError> {
        let name = g.architecture()?;
        let arch = Architecture::from_name(name).ok_or_else(|| ConfigError::Unsupported(name.to_string()))?;
        let u = |k: &str| -> Result<usize, ConfigError> { Ok(g.arch_u32(k)? as usize) };
        let dim = u("embedding_length")?;
        let n_heads = u("attention.head_count")?;
        let head_dim = g.arch_u32("attention.key_length").map(|v| v as usize).unwrap_or(dim / n_heads.max(1));
        let vocab_size = g.array("tokenizer.ggml.tokens")?.len();
        let config = match arch {
            Architecture::Gemma3 => Config {
                arch,
                n_layers: u("block_count")?,
                dim,
                n_heads,
                n_kv_heads: u("attention.head_count_kv")?,
                head_dim,
                ffn_dim: u("feed_forward_length")?,
                vocab_size,
                context_length: u("context_length")?,
                rms_eps: g.arch_f32("attention.layer_norm_rms_epsilon")?,
                rope_base_global: g.arch_f32("rope.freq_base").unwrap_or(1_000_000.0),
                // Not in the GGUF: Gemma 3's local layers use 10,000 (as llama.cpp hard-codes).
                rope_base_local: 10_000.0,
                sliding_window: Some(u("attention.sliding_window")?),
                global_every: 6,
                embedding_scale: (dim as f32).sqrt(),
                attention_scale: 1.0 / (head_dim as f32).sqrt(),
            },
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: String| Err(ConfigError::Invalid(what));
        if self.n_layers == 0 || self.dim == 0 || self.n_heads == 0 || self.n_kv_heads == 0 || self.head_dim == 0 || self.ffn_dim == 0 {
            return bad(format!("zero-sized hyperparameter in {self:?}"));
        }
        if self.n_heads % self.n_kv_heads != 0 {
            return bad(format!("{} heads do not share {} KV heads evenly", self.n_heads, self.n_kv_heads));
        }
        if self.head_dim % 2 != 0 {
            return bad(format!("head dimension {} is odd (RoPE rotates pairs)", self.head_dim));
        }
        Ok(())
    }

    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// KV cache bytes per position: keys and values in f16 for every layer.
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.n_layers * self.kv_dim() * 2
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Whether layer `l` attends to the whole context (otherwise only its sliding window).
    pub fn is_global(&self, l: usize) -> bool {
        self.sliding_window.is_none() || (l + 1) % self.global_every == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("architecture {0:?} is not supported (supported: {list})", list = Architecture::SUPPORTED.join(", "))]
    Unsupported(String),
    #[error(transparent)]
    Metadata(#[from] GgufError),
    #[error("model hyperparameters: {0}")]
    Invalid(String),
}
