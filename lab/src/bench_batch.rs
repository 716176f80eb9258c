//! `rill bench --concurrency 1,2,4,8`: N generations at once on the one engine thread
//! (continuous batching), per level: aggregate decode speed and inter-token latency.

use rill_api::Latency;
use rill_engine::sampler::SamplingParams;
use rill_engine::scheduler::{StepLimits, DEFAULT_PROMPT_CHUNK};
use rill_engine::GenerateParams;
use rill_host::backend::{Backend, PromptInput};
use serde_json::{json, Value};
use std::time::Instant;

/// One concurrency level's figures, measured in the steady state: from the moment every
/// stream has its first token (prompts read) to the last token.
pub struct Level {
    pub streams: usize,
    /// Decode tokens per second, all streams together.
    pub aggregate: f64,
    pub inter_token_ms: Latency,
}

impl Level {
    pub fn json(&self) -> Value {
        json!({ "streams": self.streams, "aggregate_decode_tokens_per_second": self.aggregate, "per_stream_tokens_per_second": self.aggregate / self.streams as f64, "inter_token_ms": self.inter_token_ms })
    }
}

/// Runs `streams` greedy generations of `gen_tokens` tokens each from `prompt`, stepped together
/// as a server steps them.
pub fn level(backend: &mut dyn Backend, streams: usize, prompt: &[u32], gen_tokens: usize) -> anyhow::Result<Level> {
    let params = GenerateParams {
        sampling: SamplingParams::greedy(),
        max_tokens: gen_tokens,
        ignore_eos: true,
        context: prompt.len() + gen_tokens + 1,
        ..GenerateParams::default()
    };
    let handles = (0..streams)
        .map(|_| backend.start(PromptInput::Tokens(prompt), params.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    // Per stream: arrival time of each token.
    let mut arrivals: Vec<Vec<Instant>> = vec![Vec::new(); streams];
    let limits = StepLimits {
        generations: streams,
        prompt_tokens: DEFAULT_PROMPT_CHUNK,
    };
    let mut running = streams;
    while running > 0 {
        let stepped = backend.step(limits)?;
        let now = Instant::now();
        for progress in stepped {
            let i = handles.iter().position(|&h| h == progress.handle).expect("one of ours");
            arrivals[i].extend(progress.event.map(|_| now));
            if let Some(end) = progress.end {
                end?;
                backend.finish(progress.handle)?;
                running -= 1;
            }
        }
    }
    Level::from_arrivals(&arrivals)
}

impl Level {
    /// The figures of streams whose tokens arrived at `arrivals` (one list per stream).
    pub fn from_arrivals(arrivals: &[Vec<Instant>]) -> anyhow::Result<Level> {
        let steady_from = arrivals
            .iter()
            .filter_map(|a| a.first().copied())
            .max()
            .ok_or_else(|| anyhow::anyhow!("no tokens"))?;
        let end = arrivals
            .iter()
            .filter_map(|a| a.last().copied())
            .max()
            .unwrap_or(steady_from);
        let mut gaps_ms = Vec::new();
        let mut tokens = 0;
        for a in arrivals {
            for w in a.windows(2).filter(|w| w[0] >= steady_from) {
                gaps_ms.push((w[1] - w[0]).as_secs_f64() * 1e3);
                tokens += 1;
            }
        }
        let seconds = (end - steady_from).as_secs_f64();
        Ok(Level {
            streams: arrivals.len(),
            aggregate: if seconds > 0.0 { tokens as f64 / seconds } else { 0.0 },
            inter_token_ms: Latency::of(&gaps_ms),
        })
    }
}

/// The most streams whose p95 inter-token latency meets `target_ms`: where `rill serve`'s
/// adaptive batch size (`--target-itl-ms`) settles on this machine (1 when none does).
pub fn settled_limit(levels: &[Level], target_ms: f64) -> usize {
    levels
        .iter()
        .filter(|l| l.inter_token_ms.p95 <= target_ms)
        .map(|l| l.streams)
        .max()
        .unwrap_or(1)
}

pub fn print(levels: &[Level]) {
    println!(
        "{:<10}{:>18}{:>14}{:>12}{:>12}{:>12}",
        "streams", "decode tok/s (all)", "per stream", "ITL p50 ms", "ITL p95 ms", "vs 1 stream"
    );
    let base = levels.first().map_or(1.0, |l| l.aggregate / l.streams as f64);
    for l in levels {
        println!(
            "{:<10}{:>18.2}{:>14.2}{:>12.1}{:>12.1}{:>11.2}×",
            l.streams,
            l.aggregate,
            l.aggregate / l.streams as f64,
            l.inter_token_ms.p50,
            l.inter_token_ms.p95,
            l.aggregate / base
        );
    }
}
