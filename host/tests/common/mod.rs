//! Paths the host tests share: the reference model and llama.cpp's reference outputs.
#![allow(dead_code)]

use serde_json::Value;
use std::path::PathBuf;

/// The reference model (fetched by scripts/fetch-model.sh; `RILL_MODEL` overrides the path).
pub fn model() -> String {
    std::env::var("RILL_MODEL").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../models/gemma-3-270m-q4_k_m.gguf").into())
}

/// A JSON file of shared/reference/ (`RILL_REFERENCE` overrides the folder).
pub fn reference(name: &str) -> Value {
    let dir = std::env::var("RILL_REFERENCE").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference")));
    serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}
