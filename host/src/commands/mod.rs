//! The `rill` subcommands.

pub mod run;

use anyhow::Context;
use rill_engine::model::Logits;
use rill_engine::Engine;
use rill_kernels::KernelPath;
use serde_json::json;
use std::path::Path;

/// Loads a GGUF file into the engine (the native backend: the engine crate in this process).
pub fn load(model: &Path) -> anyhow::Result<Engine> {
    let file = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    Engine::load(file, KernelPath::best()).with_context(|| format!("loading {}", model.display()))
}

pub fn tokenize(model: &Path, add_bos: bool, parse_special: bool, text: &str) -> anyhow::Result<()> {
    let engine = load(model)?;
    println!("{}", json!(engine.tokenizer.encode(text, add_bos, parse_special)));
    Ok(())
}

pub fn logits(model: &Path, tokens: &[u32], top: usize) -> anyhow::Result<()> {
    let engine = load(model)?;
    let mut cache = engine.model.new_cache(tokens.len())?;
    let all = engine.model.forward(tokens, &mut cache, Logits::All)?;
    let vocab = engine.model.config.vocab_size;
    let positions: Vec<_> = all
        .chunks_exact(vocab)
        .map(|row| {
            let mut idx: Vec<usize> = (0..vocab).collect();
            let k = top.clamp(1, vocab);
            idx.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
            idx.truncate(k);
            idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            json!({ "top": idx.iter().map(|&i| json!([i, row[i]])).collect::<Vec<_>>() })
        })
        .collect();
    println!("{}", json!({ "positions": positions }));
    Ok(())
}
