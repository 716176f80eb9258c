//! The KV cache on the reference model: sliding-window layers keep only their window, a
//! Q8_0 cache stays close to the f16 one, and prompts that share a prefix reuse its blocks.

mod common;

use rill_engine::gguf::Gguf;
use rill_engine::model::{KvType, LoadOptions, Logits, Model, BLOCK};
use rill_engine::scheduler::{End, Scheduler, StepLimits, DEFAULT_PROMPT_CHUNK};
use rill_engine::{ContextPolicy, Engine, EngineError, GenerateParams, Prompt};
use rill_kernels::KernelPath;
use std::sync::Arc;

fn engine() -> Arc<Engine> {
    Arc::new(Engine::load(common::model_bytes(), KernelPath::best(), &LoadOptions::default()).unwrap())
}

/// `n` tokens of ordinary text (ids of a repeated sentence).
fn text_tokens(engine: &Engine, n: usize) -> Vec<u32> {
    let sentence = engine
        .prompt_tokens(&Prompt::Text(
            "The river ran past the mill, and the miller counted the sacks of grain one by one. ",
        ))
        .unwrap();
    sentence.iter().cycle().take(n).copied().collect()
}

fn model() -> Model {
    let file = Arc::new(common::model_bytes());
    Model::new(
        &Gguf::parse(&file).unwrap(),
        file,
        KernelPath::best(),
        &LoadOptions::default(),
    )
    .unwrap()
}

#[test]
fn sliding_window_layers_hold_only_their_window() {
    let (engine, model) = (engine(), model());
    let window = model.config.sliding_window.expect("Gemma 3 has sliding-window layers");
    let tokens = text_tokens(&engine, window + 200);

    // Read in chunks: after each, the blocks that slid out of the window are let go.
    let mut cache = model.new_cache(KvType::F16, 4096).unwrap();
    let mut held = Vec::new(); // (positions, bytes of the sliding layers' parts)
    let mut chunked = Vec::new();
    for chunk in tokens.chunks(100) {
        let last = cache.len() + chunk.len() == tokens.len();
        chunked = model
            .forward(chunk, &mut cache, if last { Logits::Last } else { Logits::None })
            .unwrap();
        held.push((cache.len(), cache.bytes().1));
    }
    let (global_part, sliding_part) = cache.layout().block_bytes();
    let at_window = held.iter().find(|(len, _)| *len >= window).unwrap();
    let at_end = held.last().unwrap();
    assert_eq!(
        at_window.1, at_end.1,
        "sliding layers hold as much at {} positions as at {}: {held:?}",
        at_end.0, at_window.0
    );
    assert!(at_end.1 <= (window / BLOCK + 2) * sliding_part, "{held:?}");
    assert_eq!(
        cache.bytes().0,
        tokens.len().div_ceil(BLOCK) * global_part,
        "global layers keep every position"
    );

    // The same tokens in one pass (every position stored before any is read) give the same logits.
    let mut whole = model.new_cache(KvType::F16, 4096).unwrap();
    assert_eq!(model.forward(&tokens, &mut whole, Logits::Last).unwrap(), chunked);
}

/// (token id, log-probability) of each of 8 greedy tokens, and the prompt tokens reused.
fn generate(engine: &Arc<Engine>, prompt: &[u32], kv_type: KvType) -> (Vec<(u32, f32)>, usize) {
    let params = GenerateParams {
        max_tokens: 8,
        ignore_eos: true,
        logprobs: true,
        kv_type,
        context: 1024,
        ..GenerateParams::default()
    };
    let mut g = engine.generate(prompt.to_vec(), params).unwrap();
    let trace = std::iter::from_fn(|| g.next().unwrap())
        .map(|e| (e.id, e.logprob.unwrap().logprob))
        .collect();
    (trace, g.usage().cached_tokens)
}

#[test]
fn prompts_sharing_a_prefix_reuse_its_blocks_and_get_the_same_tokens() {
    let engine = engine();
    let prefix = text_tokens(&engine, 300);
    let with_suffix = |s: &str| {
        [
            prefix.clone(),
            engine.prompt_tokens(&Prompt::Text(s)).unwrap()[1..].to_vec(),
        ]
        .concat()
    };
    let (a, b) = (
        with_suffix("So the first question is"),
        with_suffix("Then the miller said"),
    );
    let expected_b = generate(&engine, &b, KvType::F16);
    assert_eq!(expected_b.1, 0, "nothing cached yet");

    let engine = self::engine(); // a fresh engine: an empty prefix cache
    let (first_a, cached) = generate(&engine, &a, KvType::F16);
    assert_eq!(cached, 0);
    // B shares A's first 300 tokens: the whole blocks among them are reused, the rest computed.
    assert_eq!(generate(&engine, &b, KvType::F16), (expected_b.0, 300 / BLOCK * BLOCK));
    // A again: all its whole blocks but the one holding the last prompt token (run for logits).
    assert_eq!(
        generate(&engine, &a, KvType::F16),
        (first_a, (a.len() - 1) / BLOCK * BLOCK)
    );
    // A cache of another type does not take f16 blocks.
    assert_eq!(generate(&engine, &a, KvType::Q8_0).1, 0);
}

#[test]
fn under_a_kv_budget_younger_generations_are_preempted_and_recomputed_without_changing_results() {
    let engine = engine();
    let prompts: Vec<Vec<u32>> = (0..3).map(|i| text_tokens(&engine, 100 + 20 * i)).collect();
    let params = GenerateParams {
        max_tokens: 40,
        ignore_eos: true,
        logprobs: true,
        context: 512,
        ..GenerateParams::default()
    };
    let trace = |g: &mut rill_engine::Generation| -> Vec<(u32, f32)> {
        std::iter::from_fn(|| g.next().unwrap())
            .map(|e| (e.id, e.logprob.unwrap().logprob))
            .collect()
    };
    let alone: Vec<_> = prompts
        .iter()
        .map(|p| trace(&mut engine.generate(p.clone(), params.clone()).unwrap()))
        .collect();

    // Room for 9 blocks of 32 positions: any two of the three fit (up to 5 blocks each), not all.
    let engine = self::engine();
    let (global, sliding) = engine.model.kv_layout(KvType::F16).unwrap().block_bytes();
    engine.model.kv_memory.set_budget(9 * (global + sliding));
    let mut scheduler = Scheduler::default();
    let ids: Vec<_> = prompts
        .iter()
        .map(|p| scheduler.add(engine.generate(p.clone(), params.clone()).unwrap()))
        .collect();
    let mut traces = vec![Vec::new(); ids.len()];
    let limits = StepLimits {
        generations: 3,
        prompt_tokens: DEFAULT_PROMPT_CHUNK,
    };
    while scheduler.active() > 0 {
        for stepped in scheduler.step(limits) {
            let trace = &mut traces[ids.iter().position(|&id| id == stepped.id).unwrap()];
            trace.extend(stepped.event.map(|e| (e.id, e.logprob.unwrap().logprob)));
            assert!(stepped.end.is_none() || matches!(stepped.end, Some(End::Finished(_))));
        }
        assert!(engine.model.kv_memory.used() <= engine.model.kv_memory.budget());
    }
    assert_eq!(traces, alone);
    let preemptions: Vec<usize> = ids
        .iter()
        .map(|id| scheduler.get(*id).unwrap().usage().preemptions)
        .collect();
    assert_eq!(preemptions[0], 0, "the oldest is never preempted: {preemptions:?}");
    assert!(preemptions.iter().sum::<usize>() > 0, "{preemptions:?}");
}

#[test]
fn a_full_context_shifts_and_the_generation_goes_on_as_from_the_kept_tokens() {
    let engine = engine();
    let prompt = text_tokens(&engine, 20);
    let params = |on_full_context| GenerateParams {
        sampling: rill_engine::sampler::SamplingParams::greedy(),
        max_tokens: 100,
        ignore_eos: true,
        context: 64,
        on_full_context,
        ..GenerateParams::default()
    };
    let run = |prompt: &[u32], on_full_context| {
        let mut g = engine.generate(prompt.to_vec(), params(on_full_context)).unwrap();
        let ids: Vec<u32> = std::iter::from_fn(|| g.next().unwrap()).map(|e| e.id).collect();
        (ids, g.usage())
    };
    // By default the generation finishes when the 64 positions are full.
    let (mut stopped, usage) = run(&prompt, ContextPolicy::Finish);
    assert_eq!((usage.completion_tokens, usage.context_shifts), (64 - 20 + 1, 0));
    stopped.truncate(usage.completion_tokens); // without a last event flushing held text

    let (shifted, usage) = run(&prompt, ContextPolicy::Shift { keep: 8 });
    assert_eq!(usage.completion_tokens, 100);
    assert!(usage.context_shifts >= 2, "{usage:?}");
    assert_eq!(
        shifted[..stopped.len()],
        stopped[..],
        "the same until the context is full"
    );
    // The first shift kept the first 8 of the 65 tokens and the newer 28 of the rest: what
    // follows is what a generation from those 36 tokens makes.
    let all: Vec<u32> = prompt.iter().chain(&stopped).copied().collect();
    let kept: Vec<u32> = all[..8].iter().chain(&all[8 + 29..]).copied().collect();
    assert_eq!(kept.len(), 36);
    let (fresh, _) = run(&kept, ContextPolicy::Finish);
    assert_eq!(shifted[stopped.len()..stopped.len() + 10], fresh[..10]);

    // The error policy: the same tokens, then `context-overflow`, and nothing after it.
    let mut g = engine.generate(prompt.clone(), params(ContextPolicy::Error)).unwrap();
    let mut before = Vec::new();
    let e = loop {
        match g.next() {
            Ok(Some(event)) => before.push(event.id),
            Ok(None) => panic!("finished without an error"),
            Err(e) => break e,
        }
    };
    assert_eq!(before, stopped[..64 - 20 + 1]);
    assert!(
        matches!(e, EngineError::ContextOverflow(_)) && e.to_string().contains("64 positions"),
        "{e}"
    );
    assert!(g.next().unwrap().is_none());
}
