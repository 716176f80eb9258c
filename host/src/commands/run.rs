//! `rill run`: stream a generation to stdout, as text or as JSON lines.

use crate::backend::{Backend, PromptInput};
use clap::{Args, ValueEnum};
use rill_engine::chat::Message;
use rill_engine::engine::FinishReason;
use rill_engine::settings::GenerationSettings;
use rill_engine::GenerateParams;
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
    /// Flags that override `[generation]` in rill.toml (`rill config show` prints the defaults).
    #[command(flatten)]
    pub generation: GenerationSettings,
}

/// Runs with `params` (rill.toml with the flags applied, already validated).
pub fn run(backend: &mut dyn Backend, args: RunArgs, params: GenerateParams) -> anyhow::Result<()> {
    let messages = [Message::new("user", &args.prompt)];
    let prompt = if args.chat {
        PromptInput::Chat(&messages)
    } else {
        PromptInput::Text(&args.prompt)
    };
    let params = GenerateParams {
        ignore_eos: args.ignore_eos,
        stop: args.stop,
        ..params
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
