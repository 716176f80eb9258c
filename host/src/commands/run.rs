//! `rill run`: stream a generation to stdout, as text or as JSON lines.

use crate::backend::{Backend, PromptInput};
use crate::config::Generation;
use clap::{Args, ValueEnum};
use rill_engine::chat::Message;
use rill_engine::engine::FinishReason;
use rill_engine::model::KvType;
use rill_engine::sampler::LogitBias;
use rill_engine::{ContextPolicy, GenerateParams};
use serde_json::json;
use std::io::Write;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Jsonl,
}

#[derive(Args)]
pub struct RunArgs {
    #[arg(long)]
    prompt: String,
    /// Treat the prompt as a user message and apply the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Stop before this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    pub generation: GenerationFlags,
}

/// Flags that override `[generation]` in rill.toml (`rill config show` prints the defaults).
#[derive(Args)]
pub struct GenerationFlags {
    #[arg(long)]
    max_tokens: Option<usize>,
    /// 0 is greedy.
    #[arg(long, allow_negative_numbers = true)]
    temperature: Option<f32>,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long, allow_negative_numbers = true)]
    top_p: Option<f32>,
    #[arg(long, allow_negative_numbers = true)]
    min_p: Option<f32>,
    #[arg(long, allow_negative_numbers = true)]
    repeat_penalty: Option<f32>,
    #[arg(long, allow_negative_numbers = true)]
    frequency_penalty: Option<f32>,
    #[arg(long, allow_negative_numbers = true)]
    presence_penalty: Option<f32>,
    #[arg(long)]
    seed: Option<u64>,
    /// KV cache size in positions (prompt plus output).
    #[arg(long)]
    context: Option<usize>,
    /// When the context fills: finish (finish reason `length`, the default), error (fail with
    /// context-overflow), or shift:N (keep the first N tokens, drop the older half of the rest,
    /// go on).
    #[arg(long, value_name = "finish|error|shift:N")]
    on_full_context: Option<ContextPolicy>,
    /// KV cache storage: f16, or q8_0 (half the memory, a small drift in the logits).
    #[arg(long, value_parser = parse_kv_type)]
    kv_type: Option<KvType>,
    /// Add BIAS (-100..=100) to token ID's logit before sampling; -100 all but bans it
    /// (repeatable; replaces rill.toml's `generation.logit_bias`).
    #[arg(long, value_name = "ID=BIAS", value_parser = parse_logit_bias, allow_hyphen_values = true)]
    logit_bias: Vec<(u32, f32)>,
}

fn parse_logit_bias(s: &str) -> Result<(u32, f32), String> {
    let (id, bias) = s.split_once('=').ok_or_else(|| format!("{s:?} is not ID=BIAS"))?;
    let id = id.trim().parse().map_err(|_| format!("{id:?} is not a token id"))?;
    let bias = bias.trim().parse().map_err(|_| format!("{bias:?} is not a number"))?;
    Ok((id, bias))
}

fn parse_kv_type(s: &str) -> Result<KvType, String> {
    match s {
        "f16" => Ok(KvType::F16),
        "q8_0" => Ok(KvType::Q8_0),
        _ => Err(format!("{s:?} is not a KV cache type: f16 or q8_0")),
    }
}

impl GenerationFlags {
    /// Writes the flags that were given over the config's values.
    pub fn apply(&self, g: &mut Generation) {
        fn set<T: Copy>(flag: Option<T>, value: &mut T) {
            if let Some(v) = flag {
                *value = v;
            }
        }
        set(self.max_tokens, &mut g.max_tokens);
        set(self.temperature, &mut g.temperature);
        set(self.top_k, &mut g.top_k);
        set(self.top_p, &mut g.top_p);
        set(self.min_p, &mut g.min_p);
        set(self.repeat_penalty, &mut g.repeat_penalty);
        set(self.frequency_penalty, &mut g.frequency_penalty);
        set(self.presence_penalty, &mut g.presence_penalty);
        set(self.seed, &mut g.seed);
        set(self.context, &mut g.context);
        set(self.kv_type, &mut g.kv_type);
        set(self.on_full_context, &mut g.on_full_context);
        if !self.logit_bias.is_empty() {
            g.logit_bias = LogitBias::from_pairs(self.logit_bias.iter().copied());
        }
    }
}

/// Runs with `generation` (the config with the flags applied, already validated).
pub fn run(backend: &mut dyn Backend, args: RunArgs, generation: &Generation) -> anyhow::Result<()> {
    let messages = [Message::new("user", &args.prompt)];
    let prompt = if args.chat {
        PromptInput::Chat(&messages)
    } else {
        PromptInput::Text(&args.prompt)
    };
    let params = GenerateParams {
        sampling: generation.sampling(),
        max_tokens: generation.max_tokens,
        ignore_eos: args.ignore_eos,
        stop: args.stop,
        context: generation.context,
        kv_type: generation.kv_type,
        on_full_context: generation.on_full_context,
        ..GenerateParams::default()
    };
    let mut out = std::io::stdout().lock();
    let format = args.format;
    let outcome = backend.generate(prompt, params, &mut |event| {
        match format {
            Format::Text => write!(out, "{}", event.text)?,
            Format::Jsonl => writeln!(out, "{}", json!({ "id": event.id, "text": event.text }))?,
        }
        Ok(out.flush()?)
    })?;
    let (usage, timings) = (outcome.usage, outcome.timings);
    let per_second = |n: usize, d: std::time::Duration| if d.is_zero() { 0.0 } else { n as f64 / d.as_secs_f64() };
    match format {
        Format::Text => writeln!(out)?,
        Format::Jsonl => writeln!(
            out,
            "{}",
            json!({
                "done": true,
                "finish_reason": match outcome.finish { Some(FinishReason::Length) => "length", Some(FinishReason::Cancelled) => "cancelled", _ => "stop" },
                "usage": {
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "total_tokens": usage.prompt_tokens + usage.completion_tokens,
                },
                "timings": {
                    "prompt_ms": timings.prompt.as_secs_f64() * 1e3,
                    "prompt_tokens_per_second": per_second(usage.prompt_tokens, timings.prompt),
                    "decode_ms": timings.decode.as_secs_f64() * 1e3,
                    "decode_tokens_per_second": per_second(usage.completion_tokens.saturating_sub(1), timings.decode),
                    "time_to_first_token_ms": timings.time_to_first_token.as_secs_f64() * 1e3,
                },
            })
        )?,
    }
    Ok(())
}
