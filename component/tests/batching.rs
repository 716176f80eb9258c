//! Continuous batching on the reference model: generations stepped together, with prompts
//! read in chunks between the others' tokens, produce exactly what each produces alone (every
//! kernel gives bit-identical sums whatever the batch).

mod common;

use rill_engine::model::LoadOptions;
use rill_engine::scheduler::Scheduler;
use rill_engine::{Engine, GenerateParams, Prompt};
use rill_kernels::KernelPath;
use std::sync::Arc;

fn engine() -> Arc<Engine> {
    Arc::new(Engine::load(common::model_bytes(), KernelPath::best(), &LoadOptions::default()).unwrap())
}

const PROMPTS: [&str; 3] = ["Once upon a time", "The capital of France is a city that", "1, 2, 3,"];

fn params(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        ignore_eos: true,
        context: 256,
        logprobs: true,
        ..GenerateParams::default()
    }
}

/// (token id, its log-probability) of each generated token.
type Trace = Vec<(u32, f32)>;

fn alone(engine: &Arc<Engine>, prompt: &str, max_tokens: usize) -> Trace {
    let tokens = engine.prompt_tokens(&Prompt::Text(prompt)).unwrap();
    let mut g = engine.generate(tokens, params(max_tokens)).unwrap();
    std::iter::from_fn(|| g.next().unwrap())
        .map(|e| (e.id, e.logprob.unwrap().logprob))
        .collect()
}

#[test]
fn batched_generations_equal_each_one_alone() {
    let engine = engine();
    let expected: Vec<Trace> = PROMPTS.iter().map(|p| alone(&engine, p, 10)).collect();

    let mut scheduler = Scheduler::default();
    scheduler.prompt_chunk = 5;
    let ids: Vec<_> = PROMPTS
        .iter()
        .map(|p| {
            scheduler.add(
                engine
                    .generate(engine.prompt_tokens(&Prompt::Text(p)).unwrap(), params(10))
                    .unwrap(),
            )
        })
        .collect();
    let mut traces: Vec<Trace> = vec![Vec::new(); ids.len()];
    // Round robin, one event per pull: each pull that finds nothing buffered steps everyone.
    while traces.iter().zip(&expected).any(|(t, e)| t.len() < e.len()) {
        for (id, trace) in ids.iter().zip(traces.iter_mut()) {
            trace.extend(
                scheduler
                    .next(*id, 1)
                    .unwrap()
                    .into_iter()
                    .map(|e| (e.id, e.logprob.unwrap().logprob)),
            );
        }
    }
    assert_eq!(traces, expected);
    for id in ids {
        assert!(
            scheduler.next(id, 1).unwrap().is_empty() && scheduler.get(id).unwrap().finish_reason().is_some(),
            "finished"
        );
        assert_eq!(scheduler.get(id).unwrap().usage().completion_tokens, 10);
    }
}

#[test]
fn a_generation_nobody_pulls_pauses_while_the_others_run() {
    let engine = engine();
    let mut scheduler = Scheduler::default();
    let tokens = engine.prompt_tokens(&Prompt::Text(PROMPTS[0])).unwrap();
    let pulled = scheduler.add(engine.generate(tokens.clone(), params(40)).unwrap());
    let ignored = scheduler.add(engine.generate(tokens, params(40)).unwrap());
    let mut n = 0;
    while scheduler.get(pulled).unwrap().finish_reason().is_none() {
        n += scheduler.next(pulled, 1).unwrap().len();
    }
    assert_eq!(n, 40);
    let waiting = scheduler.next(ignored, 100).unwrap();
    assert!(
        !waiting.is_empty() && waiting.len() <= 16,
        "it stopped at its buffer limit: {} events waited",
        waiting.len()
    );
    assert_eq!(scheduler.active(), 1);
}

#[test]
fn a_pull_runs_one_step_so_others_keep_flowing_while_a_long_prompt_is_read() {
    let engine = engine();
    let mut scheduler = Scheduler::default();
    scheduler.prompt_chunk = 4;
    let short = scheduler.add(
        engine
            .generate(engine.prompt_tokens(&Prompt::Text("Hi")).unwrap(), params(20))
            .unwrap(),
    );
    let long_prompt = engine.prompt_tokens(&Prompt::Text(&PROMPTS[1].repeat(4))).unwrap();
    assert!(long_prompt.len() > 20);
    let long = scheduler.add(engine.generate(long_prompt, params(2)).unwrap());
    // The short prompt fits the first step's budget; the long one takes several steps.
    assert_eq!(scheduler.next(short, 1).unwrap().len(), 1);
    for _ in 0..3 {
        assert!(scheduler.next(long, 1).unwrap().is_empty(), "still reading its prompt");
        assert!(scheduler.get(long).unwrap().finish_reason().is_none());
        assert_eq!(
            scheduler.next(short, 1).unwrap().len(),
            1,
            "the short one got a token from that step"
        );
    }
}
