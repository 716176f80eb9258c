//! Hyperparameters from GGUF metadata, and what differs between architectures.

use super::rope::{RopeScaling, RopeScalingKind};
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
    /// Positions the model can attend over: the trained context, or the scaled one.
    pub context_length: usize,
    pub rms_eps: f32,
    /// RoPE base on global (full-attention) layers and on sliding-window layers.
    pub rope_base_global: f32,
    pub rope_base_local: f32,
    /// Context extension of the global layers (sliding-window layers never need it).
    pub rope_scaling: RopeScaling,
    /// Positions a sliding-window layer sees (itself included); `None` when no layer slides.
    pub sliding_window: Option<usize>,
    /// Every `n`th layer (the last of each group) attends globally; the others slide.
    pub global_every: usize,
    /// Multiplier on token embeddings (Gemma: √dim).
    pub embedding_scale: f32,
    pub attention_scale: f32,
}

/// RoPE scaling asked for at load time, replacing what the file says.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RopeScalingOptions {
    pub kind: RopeScalingKind,
    pub factor: f32,
    /// The context the model was trained for; default: the file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_context: Option<usize>,
}

impl std::str::FromStr for RopeScalingOptions {
    type Err = String;
    /// `KIND:FACTOR[:ORIGINAL_CONTEXT]`, e.g. `yarn:4` or `linear:2:8192`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not a RoPE scaling: KIND:FACTOR[:ORIGINAL_CONTEXT] with KIND one of {}",
                RopeScalingKind::NAMES.join(", ")
            )
        };
        let mut parts = s.split(':');
        let kind = parts.next().and_then(RopeScalingKind::from_name).ok_or_else(bad)?;
        let factor = parts.next().map_or(Ok(1.0), str::parse).map_err(|_| bad())?;
        let original_context = parts.next().map(str::parse).transpose().map_err(|_| bad())?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(RopeScalingOptions {
            kind,
            factor,
            original_context,
        })
    }
}

/// What a caller may set when a model is built, over the file's metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadOptions {
    pub rope_scaling: Option<RopeScalingOptions>,
}

/// The file's RoPE scaling (`{arch}.rope.scaling.*`, as llama.cpp reads them), or the one asked for.
fn rope_scaling(
    g: &Gguf,
    trained_context: usize,
    asked: Option<&RopeScalingOptions>,
) -> Result<RopeScaling, ConfigError> {
    let kind = match g.arch_opt("rope.scaling.type", Gguf::str)? {
        None => RopeScalingKind::None,
        Some(name) => RopeScalingKind::from_name(name).ok_or_else(|| {
            ConfigError::Unsupported(format!(
                "RoPE scaling {name:?} (supported: {})",
                RopeScalingKind::NAMES.join(", ")
            ))
        })?,
    };
    let file = RopeScaling {
        kind,
        factor: g
            .arch_opt("rope.scaling.factor", Gguf::f32)?
            .filter(|&f| f != 0.0)
            .unwrap_or(1.0),
        original_context: g
            .arch_opt("rope.scaling.original_context_length", Gguf::u32)?
            .map_or(trained_context, |n| n as usize),
        attn_factor: g.arch_opt("rope.scaling.attn_factor", Gguf::f32)?.unwrap_or(1.0),
    };
    Ok(match asked {
        None => file,
        Some(a) => RopeScaling {
            kind: a.kind,
            factor: a.factor,
            original_context: a.original_context.unwrap_or(file.original_context),
            attn_factor: file.attn_factor,
        },
    })
}

impl Config {
    pub fn from_gguf(g: &Gguf, options: &LoadOptions) -> Result<Config, ConfigError> {
        let name = g.architecture()?;
        let arch = Architecture::from_name(name).ok_or_else(|| ConfigError::Unsupported(name.to_string()))?;
        let u = |k: &str| -> Result<usize, ConfigError> { Ok(g.arch_u32(k)? as usize) };
        let dim = u("embedding_length")?;
        let n_heads = u("attention.head_count")?;
        let head_dim = g
            .arch_u32("attention.key_length")
            .map(|v| v as usize)
            .unwrap_or(dim / n_heads.max(1));
        let vocab_size = g.array("tokenizer.ggml.tokens")?.len();
        let trained_context = u("context_length")?;
        let rope_scaling = rope_scaling(g, trained_context, options.rope_scaling.as_ref())?;
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
                context_length: trained_context.max(rope_scaling.context()),
                rms_eps: g.arch_f32("attention.layer_norm_rms_epsilon")?,
                rope_base_global: g.arch_opt("rope.freq_base", Gguf::f32)?.unwrap_or(1_000_000.0),
                // Usually not in the GGUF: Gemma 3's local layers use 10,000 (llama.cpp's default).
                rope_base_local: g.arch_opt("rope.freq_base_swa", Gguf::f32)?.unwrap_or(10_000.0),
                rope_scaling,
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
        if self.n_layers == 0
            || self.dim == 0
            || self.n_heads == 0
            || self.n_kv_heads == 0
            || self.head_dim == 0
            || self.ffn_dim == 0
        {
            return bad(format!("zero-sized hyperparameter in {self:?}"));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "{} heads do not share {} KV heads evenly",
                self.n_heads, self.n_kv_heads
            ));
        }
        let r = &self.rope_scaling;
        let valid = r.factor.is_finite()
            && r.factor >= 1.0
            && r.attn_factor.is_finite()
            && r.attn_factor > 0.0
            && r.original_context > 0;
        if !valid {
            return bad(format!(
                "RoPE scaling factor {} (must be ≥ 1), attention factor {}, original context {}",
                r.factor, r.attn_factor, r.original_context
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
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
        self.sliding_window.is_none() || (l + 1).is_multiple_of(self.global_every)
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
