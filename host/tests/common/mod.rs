//! What the host tests share: running `rill`, the reference model and llama.cpp's outputs.
#![allow(dead_code)]

pub mod server;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

/// `rill` as a user runs it, but blind to the user's own rill.toml.
pub fn rill_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rill"));
    cmd.env_remove("RILL_CONFIG").env("XDG_CONFIG_HOME", "/nonexistent/rill-tests");
    cmd
}

pub fn rill(args: &[&str]) -> Output {
    rill_command().args(args).output().unwrap()
}

/// stdout of a `rill` run that must succeed.
pub fn ok_stdout(args: &[&str]) -> String {
    let out = rill(args);
    assert!(out.status.success(), "rill {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Checks that `rill args` fails cleanly (exit 1, no panic) saying `message`.
pub fn assert_fails_saying(out: &Output, args: &[&str], message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "rill {args:?}: {stderr}");
    assert!(stderr.contains(message), "rill {args:?} should say {message:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The reference model (fetched by `rill pull` in tests/run; `RILL_MODEL` overrides the path).
pub fn model() -> String {
    std::env::var("RILL_MODEL").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../models/gemma-3-270m-q4_k_m.gguf").into())
}

/// A JSON file of shared/reference/ (`RILL_REFERENCE` overrides the folder).
pub fn reference(name: &str) -> Value {
    let dir = std::env::var("RILL_REFERENCE").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference")));
    serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}
