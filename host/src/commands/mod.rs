//! The `rill` subcommands, written against [`Backend`] so they run the same on either backend.

pub mod info;
pub mod run;

use crate::backend::Backend;
use serde_json::json;

pub fn tokenize(backend: &mut dyn Backend, add_bos: bool, parse_special: bool, text: &str) -> anyhow::Result<()> {
    println!("{}", json!(backend.tokenize(text, add_bos, parse_special)?));
    Ok(())
}

pub fn logits(backend: &mut dyn Backend, tokens: &[u32], top: usize) -> anyhow::Result<()> {
    let positions: Vec<_> = backend
        .top_logits(tokens, top)?
        .into_iter()
        .map(|top| json!({ "top": top.into_iter().map(|(id, logit)| json!([id, logit])).collect::<Vec<_>>() }))
        .collect();
    println!("{}", json!({ "positions": positions }));
    Ok(())
}
