//! RoPE scaling (linear, YaRN) against llama.cpp: teacher-forced through llama-server's greedy
//! continuation of a 559-token prompt, each step's log-probabilities of llama.cpp's top 5
//! (tests/fixtures/rope-scaling.llama-cpp.json, made by rope_scaling_reference.py).

mod common;

use rill_engine::gguf::Gguf;
use rill_engine::model::{KvType, LoadOptions, Logits, Model, RopeScalingOptions};
use rill_kernels::KernelPath;
use std::sync::Arc;

fn model(file: &Arc<Vec<u8>>, rope_scaling: Option<RopeScalingOptions>) -> Model {
    Model::new(
        &Gguf::parse(file).unwrap(),
        file.clone(),
        KernelPath::best(),
        &LoadOptions { rope_scaling },
    )
    .unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Mean |Δ| between this model's log-probabilities and llama.cpp's, over llama.cpp's top 5 of
/// every step; and whether every confident step (top-2 margin over 0.5) has the same argmax.
fn compare(model: &Model, prompt: &[u32], steps: &[serde_json::Value]) -> (f32, bool) {
    let generated: Vec<u32> = steps.iter().map(|s| s["id"].as_u64().unwrap() as u32).collect();
    let tokens: Vec<u32> = prompt
        .iter()
        .chain(&generated[..generated.len() - 1])
        .copied()
        .collect();
    let mut cache = model.new_cache(KvType::F16, tokens.len()).unwrap();
    let logits = model.forward(&tokens, &mut cache, Logits::All).unwrap();
    let vocab = model.config.vocab_size;
    let (mut sum, mut n, mut same_argmax) = (0.0, 0, true);
    for (i, step) in steps.iter().enumerate() {
        let row = &logits[(prompt.len() - 1 + i) * vocab..][..vocab];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_sum = max + row.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
        let top = step["top"].as_array().unwrap();
        for t in top {
            let (id, lp) = (t[0].as_u64().unwrap() as usize, t[1].as_f64().unwrap() as f32);
            sum += (row[id] - log_sum - lp).abs();
            n += 1;
        }
        let margin = top[0][1].as_f64().unwrap() - top[1][1].as_f64().unwrap();
        let argmax = (0..vocab).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        if margin > 0.5 && argmax as u64 != top[0][0].as_u64().unwrap() {
            same_argmax = false;
        }
    }
    (sum / n as f32, same_argmax)
}

#[test]
fn linear_and_yarn_scaling_match_llama_cpp() {
    let reference = common::fixture_json("rope-scaling.llama-cpp.json");
    let prompt = ids(&reference["prompt"]);
    let file = Arc::new(common::model_bytes());
    let unscaled = model(&file, None);
    for run in reference["runs"].as_array().unwrap() {
        let scaling: RopeScalingOptions = run["scaling"].as_str().unwrap().parse().unwrap();
        let steps = run["steps"].as_array().unwrap();
        let scaled = model(&file, Some(scaling));
        let (drift, same_argmax) = compare(&scaled, &prompt, steps);
        println!("{scaling:?}: mean |Δ logprob| {drift:.3}");
        assert!(drift <= 0.3, "{scaling:?}: mean |Δ| {drift} over llama.cpp's top 5");
        assert!(same_argmax, "{scaling:?}: a confident step's argmax differs");
        // The reference tells the scalings apart: without scaling the drift is much larger.
        let (unscaled_drift, _) = compare(&unscaled, &prompt, steps);
        println!("  unscaled: {unscaled_drift:.3}");
        assert!(
            unscaled_drift > 2.0 * drift.max(0.1),
            "{scaling:?}: {unscaled_drift} unscaled vs {drift} scaled"
        );
    }
}

#[test]
fn scaling_extends_the_context() {
    let file = Arc::new(common::model_bytes());
    let trained = model(&file, None).config.context_length;
    let yarn = model(&file, Some("yarn:4".parse().unwrap()));
    assert_eq!(yarn.config.context_length, 4 * trained);
    let from_8k = model(&file, Some("linear:2:8192".parse().unwrap()));
    assert_eq!(
        from_8k.config.context_length, trained,
        "never below the trained context"
    );
    let gguf = Gguf::parse(&file).unwrap();
    let bad = Model::new(
        &gguf,
        file.clone(),
        KernelPath::best(),
        &LoadOptions {
            rope_scaling: Some("linear:0.5".parse().unwrap()),
        },
    );
    assert!(bad.err().unwrap().to_string().contains("RoPE scaling factor 0.5"));
    assert!("cubic:2"
        .parse::<RopeScalingOptions>()
        .unwrap_err()
        .contains("KIND:FACTOR"));
}
