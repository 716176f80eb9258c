//! Continuous batching checks shared by the CPU and GPU tests.

use rill_engine::engine::FinishReason;
use rill_engine::model::KvType;
use rill_engine::scheduler::{Scheduler, SeqId, StepLimits};
use rill_engine::{Engine, GenerateParams, Prompt};
use std::sync::Arc;

pub const PROMPTS: [&str; 3] = ["Once upon a time", "The capital of France is a city that", "1, 2, 3,"];
/// The KV cache each of PROMPTS keeps in the batched test: a batch of both types.
const KV_TYPES: [KvType; 3] = [KvType::F16, KvType::Q8_0, KvType::F16];

pub fn params(max_tokens: usize, kv_type: KvType) -> GenerateParams {
    GenerateParams {
        max_tokens,
        ignore_eos: true,
        context: 256,
        logprobs: true,
        kv_type,
        ..GenerateParams::default()
    }
}

/// (token id, its log-probability) of each generated token.
pub type Trace = Vec<(u32, f32)>;

pub fn alone(engine: &Arc<Engine>, prompt: &str, max_tokens: usize, kv_type: KvType) -> Trace {
    let tokens = engine.prompt_tokens(&Prompt::Text(prompt)).unwrap();
    let mut g = engine.generate(tokens, params(max_tokens, kv_type)).unwrap();
    std::iter::from_fn(|| g.next().unwrap())
        .map(|e| (e.id, e.logprob.unwrap().logprob))
        .collect()
}

/// Steps `scheduler` within `limits` until no generation is live; each generation's trace.
pub fn run(scheduler: &mut Scheduler, ids: &[SeqId], limits: StepLimits) -> Vec<Trace> {
    let mut traces: Vec<Trace> = vec![Vec::new(); ids.len()];
    while scheduler.active() > 0 {
        for stepped in scheduler.step(limits) {
            let trace = &mut traces[ids.iter().position(|&id| id == stepped.id).unwrap()];
            trace.extend(stepped.event.map(|e| (e.id, e.logprob.unwrap().logprob)));
        }
    }
    traces
}

pub fn start(
    engine: &Arc<Engine>,
    scheduler: &mut Scheduler,
    prompt: &str,
    max_tokens: usize,
    kv_type: KvType,
) -> SeqId {
    let tokens = engine.prompt_tokens(&Prompt::Text(prompt)).unwrap();
    scheduler.add(engine.generate(tokens, params(max_tokens, kv_type)).unwrap())
}

/// Generations stepped together (`max_tokens` each; f16 and Q8_0 KV caches in one batch),
/// prompts read 5 tokens a step between the others' tokens, make exactly the tokens and
/// log-probabilities each makes alone.
pub fn batched_generations_equal_each_one_alone(engine: &Arc<Engine>, max_tokens: usize) {
    let engine = engine.clone();
    let expected: Vec<Trace> = PROMPTS
        .iter()
        .zip(KV_TYPES)
        .map(|(p, kv)| alone(&engine, p, max_tokens, kv))
        .collect();
    let mut scheduler = Scheduler::default();
    let ids: Vec<SeqId> = PROMPTS
        .iter()
        .zip(KV_TYPES)
        .map(|(p, kv)| start(&engine, &mut scheduler, p, max_tokens, kv))
        .collect();
    // Prompts read 5 tokens a step in all, between the others' tokens.
    let limits = StepLimits {
        generations: 3,
        prompt_tokens: 5,
    };
    assert_eq!(run(&mut scheduler, &ids, limits), expected);
    for id in ids {
        let g = scheduler.get(id).unwrap();
        assert_eq!(g.finish_reason(), Some(FinishReason::Length));
        assert_eq!(g.usage().completion_tokens, max_tokens);
    }
    assert!(scheduler.step(limits).is_empty(), "nothing left to step");
}
