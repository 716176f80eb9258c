//! Continuous batching on the reference model: generations stepped together, with prompts
//! read in chunks between the others' tokens, produce exactly what each produces alone (every
//! kernel gives bit-identical sums whatever the batch).

mod common;

use common::batching::{start, PROMPTS};

use rill_engine::engine::FinishReason;
use rill_engine::model::{KvType, LoadOptions};
use rill_engine::scheduler::{End, Scheduler, StepLimits};
use rill_engine::Engine;
use rill_kernels::KernelPath;
use std::sync::Arc;

fn engine() -> Arc<Engine> {
    Arc::new(Engine::load(common::model_bytes(), KernelPath::best(), &LoadOptions::default()).unwrap())
}

#[test]
fn batched_generations_equal_each_one_alone() {
    common::batching::batched_generations_equal_each_one_alone(&engine(), 10);
}

#[test]
fn a_step_takes_the_oldest_generations_up_to_its_limit() {
    let engine = engine();
    let mut scheduler = Scheduler::default();
    let first = start(&engine, &mut scheduler, PROMPTS[0], 5, KvType::F16);
    let second = start(&engine, &mut scheduler, PROMPTS[2], 5, KvType::F16);
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
    let short = start(&engine, &mut scheduler, "Hi", 20, KvType::F16);
    let long_prompt = PROMPTS[1].repeat(4);
    let long = start(&engine, &mut scheduler, &long_prompt, 2, KvType::F16);
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
