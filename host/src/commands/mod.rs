//! The `rill` subcommands, written against [`Backend`] so they run the same on either backend.

pub mod bake;
pub mod info;
pub mod run;

use crate::backend::Backend;
use crate::config::Config;
use crate::models::{self, DEFAULT_MODEL};
use anyhow::bail;
use serde_json::json;
use std::path::Path;

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

/// `rill pull`: fetches a known model into `dir` (or lists the known models) and prints its path.
pub fn pull(name: Option<&str>, dir: &Path, list: bool) -> anyhow::Result<()> {
    if list {
        for m in models::KNOWN {
            let default = if m.name == DEFAULT_MODEL { " (default)" } else { "" };
            println!("{}{default}\t{:.0} MB\t{}", m.name, m.size as f64 / 1e6, m.description);
        }
        return Ok(());
    }
    let name = name.unwrap_or(DEFAULT_MODEL);
    let Some(model) = models::known(name) else {
        bail!("unknown model {name:?}; `rill pull --list` shows the known ones");
    };
    println!("{}", models::pull(model, dir)?.display());
    Ok(())
}

/// `rill config check`: validates the settings file at `path` (or the one rill would use).
pub fn config_check(path: Option<&Path>) -> anyhow::Result<()> {
    match Config::load(path)? {
        (_, Some(p)) => println!("{}: ok", p.display()),
        (_, None) => println!("no rill.toml found: the defaults apply (`rill config show` prints them)"),
    }
    Ok(())
}
