//! Comparing a model's outputs with llama.cpp's on the reference prompts (shared/reference),
//! with the tolerances of its README: used by the CPU conformance tests and the GPU's.

use rill_engine::model::{KvType, Logits, Model};

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn reference_logits(prompt: usize, fa: &str) -> Vec<f32> {
    let path = super::reference_dir().join(format!("gemma-3-270m-q4_k_m.prompt{prompt}.step0.logits.fa-{fa}.f32le"));
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn top(logits: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    idx.truncate(k);
    idx
}

/// Top-1 and top-2 logit difference.
fn margin(logits: &[f32]) -> f32 {
    let t = top(logits, 2);
    logits[t[0] as usize] - logits[t[1] as usize]
}

pub fn step0_logits_match(model: &Model, ty: KvType, mean_limit: f32) {
    let greedy = super::reference_json("gemma-3-270m-q4_k_m.greedy.fa-off.json");
    for (p, result) in greedy["results"].as_array().unwrap().iter().enumerate() {
        let prompt = ids(&result["prompt_token_ids"]);
        let mut cache = model.new_cache(ty, 512).unwrap();
        let logits = model.forward(&prompt, &mut cache, Logits::Last).unwrap();
        let mut best = f32::MAX;
        for fa in ["off", "on"] {
            let reference = reference_logits(p, fa);
            assert_eq!(reference.len(), logits.len());
            let mean = logits
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs() as f64)
                .sum::<f64>()
                / logits.len() as f64;
            best = best.min(mean as f32);
            let (ours, theirs) = (top(&logits, 20), top(&reference, 20));
            assert_eq!(ours[0], theirs[0], "prompt {p}: top-1 differs from fa-{fa}");
            let shared = ours.iter().filter(|id| theirs.contains(id)).count();
            assert!(
                shared >= 18,
                "prompt {p}: only {shared} of the top-20 shared with fa-{fa}"
            );
        }
        eprintln!("prompt {p}: mean |Δ| {best:.4}");
        assert!(
            best <= mean_limit,
            "{ty:?} KV, prompt {p}: mean |Δ| {best} against the closer reference"
        );
    }
}

/// Greedy decoding: every step's argmax under teacher forcing, and free-running tokens until
/// the first step whose reference margin is under 0.5.
pub fn greedy_decoding_matches(model: &Model, ty: KvType) {
    let greedy = super::reference_json("gemma-3-270m-q4_k_m.greedy.fa-off.json");
    for (p, result) in greedy["results"].as_array().unwrap().iter().enumerate() {
        let prompt = ids(&result["prompt_token_ids"]);
        let expected = ids(&result["generated_token_ids"]);
        let steps = result["per_step_top5"].as_array().unwrap();
        let ref_margin = |i: usize| {
            let s = steps[i].as_array().unwrap();
            (s[0][1].as_f64().unwrap() - s[1][1].as_f64().unwrap()) as f32
        };

        // Teacher forcing: feed llama.cpp's tokens, compare every step's argmax.
        let mut cache = model.new_cache(ty, 512).unwrap();
        let mut input = prompt.clone();
        input.extend(&expected[..expected.len() - 1]);
        let all = model.forward(&input, &mut cache, Logits::All).unwrap();
        let vocab = model.config.vocab_size;
        for (i, want) in expected.iter().enumerate() {
            let row = &all[(prompt.len() - 1 + i) * vocab..][..vocab];
            if ref_margin(i) > 0.5 {
                assert_eq!(
                    top(row, 1)[0],
                    *want,
                    "{ty:?} KV, prompt {p} teacher-forced step {i} (margin {})",
                    ref_margin(i)
                );
            }
        }

        // Free running: identical until the first step whose reference margin is under 0.5.
        let mut cache = model.new_cache(ty, 512).unwrap();
        let mut logits = model.forward(&prompt, &mut cache, Logits::Last).unwrap();
        for (i, want) in expected.iter().enumerate() {
            if ref_margin(i) < 0.5 {
                break;
            }
            let got = top(&logits, 1)[0];
            assert_eq!(
                got,
                *want,
                "{ty:?} KV, prompt {p} free-running step {i} (our margin {})",
                margin(&logits)
            );
            logits = model.forward(&[got], &mut cache, Logits::Last).unwrap();
        }
    }
}
