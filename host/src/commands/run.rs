//! `rill run`: stream a generation to stdout, as text or as JSON lines.

use crate::backend::{Backend, PromptInput};
use anyhow::bail;
use clap::{Args, ValueEnum};
use rill_engine::engine::FinishReason;
use rill_engine::sampler::SamplingParams;
use rill_engine::GenerateParams;
use serde_json::json;
use std::io::Write;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Jsonl,
}

/// KV cache positions when `--context` is not given.
pub const DEFAULT_CONTEXT: usize = 4096;

#[derive(Args)]
pub struct RunArgs {
    #[arg(long)]
    prompt: String,
    /// Treat the prompt as a user message and apply the model's chat template.
    #[arg(long)]
    chat: bool,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temperature: f32,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95, allow_negative_numbers = true)]
    top_p: f32,
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    frequency_penalty: f32,
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    presence_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Stop before this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// KV cache size in positions (prompt plus output).
    #[arg(long, default_value_t = DEFAULT_CONTEXT)]
    context: usize,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(backend: &mut dyn Backend, args: RunArgs) -> anyhow::Result<()> {
    if args.max_tokens == 0 {
        bail!("--max-tokens must be at least 1");
    }
    let prompt = if args.chat { PromptInput::Chat(&args.prompt) } else { PromptInput::Text(&args.prompt) };
    let sampling = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        frequency_penalty: args.frequency_penalty,
        presence_penalty: args.presence_penalty,
        seed: args.seed,
        ..SamplingParams::default()
    };
    let params = GenerateParams { sampling, max_tokens: args.max_tokens, ignore_eos: args.ignore_eos, stop: args.stop, context: args.context, logprobs: false };
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
