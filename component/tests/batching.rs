//! Continuous batching on the reference model: generations stepped together, with prompts
//! read in chunks between the others' tokens, produce exactly what each produces alone (every
//! kernel gives bit-identical sums whatever the batch).

mod common;

use rill_engine::engine::FinishReason;
use rill_engine::model::LoadOptions;
use rill_engine::scheduler::{End, Scheduler, SeqId, StepLimits};
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

/// Steps `scheduler` within `limits` until no generation is live; each generation's trace.
fn run(scheduler: &mut Scheduler, ids: &[SeqId], limits: StepLimits) -> Vec<Trace> {
    let mut traces: Vec<Trace> = vec![Vec::new(); ids.len()];
    while scheduler.active() > 0 {
        for stepped in scheduler.step(limits) {
            let trace = &mut traces[ids.iter().position(|&id| id == stepped.id).unwrap()];
            trace.extend(stepped.event.map(|e| (e.id, e.logprob.unwrap().logprob)));
        }
    }
    traces
}

fn start(engine: &Arc<Engine>, scheduler: &mut Scheduler, prompt: &str, max_tokens: usize) -> SeqId {
    let tokens = engine.prompt_tokens(&Prompt::Text(prompt)).unwrap();
    scheduler.add(engine.generate(tokens, params(max_tokens)).unwrap())
}

#[test]
fn batched_generations_equal_each_one_alone() {
    let engine = engine();
    let expected: Vec<Trace> = PROMPTS.iter().map(|p| alone(&engine, p, 10)).collect();
    let mut scheduler = Scheduler::default();
    let ids: Vec<SeqId> = PROMPTS.iter().map(|p| start(&engine, &mut scheduler, p, 10)).collect();
    // Prompts read 5 tokens a step in all, between the others' tokens.
    let limits = StepLimits {
        generations: 3,
        prompt_tokens: 5,
    };
    assert_eq!(run(&mut scheduler, &ids, limits), expected);
    for id in ids {
        let g = scheduler.get(id).unwrap();
        assert_eq!(g.finish_reason(), Some(FinishReason::Length));
        assert_eq!(g.usage().completion_tokens, 10);
    }
    assert!(scheduler.step(limits).is_empty(), "nothing left to step");
}

#[test]
fn a_step_takes_the_oldest_generations_up_to_its_limit() {
    let engine = engine();
    let mut scheduler = Scheduler::default();
    let first = start(&engine, &mut scheduler, PROMPTS[0], 5);
    let second = start(&engine, &mut scheduler, PROMPTS[2], 5);
    let one = StepLimits {
        generations: 1,
        ..StepLimits::ONE
    };
    // The first runs alone to its end, reported once, with its last token; then the second.
    let mut order = Vec::new();
    while scheduler.active() > 0 {
        let stepped = scheduler.step(one);
        assert_eq!(stepped.len(), 1);
        order.push(stepped[0].id);
        if stepped[0].id == first && stepped[0].end.is_some() {
            assert!(matches!(stepped[0].end, Some(End::Finished(FinishReason::Length))));
        }
    }
    let switch = order.iter().position(|&id| id == second).unwrap();
    assert!(order[..switch].iter().all(|&id| id == first) && order[switch..].iter().all(|&id| id == second));
    assert_eq!(scheduler.get(second).unwrap().usage().completion_tokens, 5);
}

#[test]
fn a_step_reads_at_most_its_prompt_tokens_so_others_keep_flowing() {
    let engine = engine();
    let mut scheduler = Scheduler::default();
    let short = start(&engine, &mut scheduler, "Hi", 20);
    let long_prompt = PROMPTS[1].repeat(4);
    let long = start(&engine, &mut scheduler, &long_prompt, 2);
    let limits = StepLimits {
        generations: 2,
        prompt_tokens: 4,
    };
    // The short prompt fits the first step's budget; the long one takes several steps, and the
    // short one gets a token from each of them.
    for step in 0..4 {
        let stepped = scheduler.step(limits);
        assert_eq!(stepped.iter().map(|s| s.id).collect::<Vec<_>>(), [short, long]);
        assert!(stepped[0].event.is_some(), "step {step}: a token for the short one");
        assert!(
            stepped[1].event.is_none() && stepped[1].end.is_none(),
            "step {step}: still reading"
        );
    }
    let read = scheduler.get(long).unwrap().usage();
    assert_eq!(read.completion_tokens, 0);
}
