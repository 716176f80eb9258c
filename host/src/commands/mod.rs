//! The `rill` subcommands.

pub mod run;

use anyhow::Context;
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
    let positions: Vec<_> = engine
        .top_logits(tokens, top)?
        .into_iter()
        .map(|top| json!({ "top": top.into_iter().map(|(id, logit)| json!([id, logit])).collect::<Vec<_>>() }))
        .collect();
    println!("{}", json!({ "positions": positions }));
    Ok(())
}
