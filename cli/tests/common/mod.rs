//! What the host tests share: running `rill`, the reference model and llama.cpp's outputs.
#![allow(dead_code)]

pub mod server;

use serde_json::{json, Value};
use server::Server;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

/// `rill` as a user runs it, but blind to the user's own rill.toml, and writing its metrics
/// store (`rill serve` records there) under the temp folder, not the user's.
pub fn rill_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rill"));
    cmd.env_remove("RILL_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent/rill-tests");
    cmd.env("XDG_DATA_HOME", std::env::temp_dir().join("rill-tests-data"));
    cmd
}

pub fn rill(args: &[&str]) -> Output {
    rill_command().args(args).output().unwrap()
}

/// What `scripts/NAME` prints: the path of a pinned tool it installs when missing.
pub fn tool(name: &str) -> String {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/").to_string() + name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// stdout of a `rill` run that must succeed.
pub fn ok_stdout(args: &[&str]) -> String {
    let out = rill(args);
    assert!(
        out.status.success(),
        "rill {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Checks that `rill args` fails cleanly (exit 1, no panic) saying `message`.
pub fn assert_fails_saying(out: &Output, args: &[&str], message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "rill {args:?}: {stderr}");
    assert!(
        stderr.contains(message),
        "rill {args:?} should say {message:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The reference model (fetched by `rill pull` in tests/run; `RILL_MODEL` overrides the path).
pub fn model() -> String {
    std::env::var("RILL_MODEL")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../models/gemma-3-270m-q4_k_m.gguf").into())
}

/// A JSON file of shared/reference/ (`RILL_REFERENCE` overrides the folder).
pub fn reference(name: &str) -> Value {
    let dir = std::env::var("RILL_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference")));
    serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}

/// Runs tests/clients/`script` with `args`; what it printed, as JSON.
pub fn python(script: &str, args: &[&str]) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/clients/").to_string() + script;
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Checks what tests/clients/openai_client.py got from a server of `model_id`: models, chat
/// (plain and streamed alike), the completion as `rill run` makes it with its log-probabilities,
/// and a 404 for an unknown model.
pub fn check_openai_client(out: &Value, model_id: &str) {
    assert_eq!(out["models"], json!([model_id]));

    let (plain, streamed) = (&out["chat"], &out["chat_stream"]);
    assert_eq!(
        (plain["role"].as_str(), plain["finish_reason"].as_str()),
        (Some("assistant"), Some("length"))
    );
    assert_eq!(plain["usage"]["completion_tokens"], 8);
    assert!(plain["content"].as_str().is_some_and(|c| !c.is_empty()), "{plain}");
    // Greedy: streaming changes how the reply travels, not what it is.
    assert_eq!(streamed["content"], plain["content"]);
    assert_eq!(
        (streamed["role"].as_str(), streamed["finish_reason"].as_str()),
        (Some("assistant"), Some("length"))
    );
    assert_eq!(streamed["usage"], plain["usage"]);
    assert!(streamed["chunks"].as_u64().unwrap() >= 3, "{streamed}");

    // The completion is the CLI's greedy continuation, token by token with log-probabilities.
    let completion = &out["completion"];
    let cli = ok_stdout(&[
        "run",
        "--model",
        &model(),
        "--prompt",
        "Once upon a time",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
    ]);
    assert_eq!(completion["text"].as_str().unwrap(), cli.trim_end_matches('\n'));
    let tokens: Vec<&str> = completion["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens.len(), 8);
    assert_eq!(tokens.concat(), completion["text"].as_str().unwrap());
    for (lp, top) in completion["token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(completion["top_logprobs"].as_array().unwrap())
    {
        let lp = lp.as_f64().unwrap();
        let best = top
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert_eq!(top.as_object().unwrap().len(), 2);
        assert!(
            lp <= 0.0 && (lp - best).abs() < 1e-6,
            "greedy picks the most likely token: {lp} vs {best}"
        );
    }
    for step in out["chat_logprobs"].as_array().unwrap() {
        let top: Vec<f64> = step["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(top.len(), 3);
        assert!(top.windows(2).all(|w| w[0] >= w[1]), "most likely first: {top:?}");
        assert!((step["logprob"].as_f64().unwrap() - top[0]).abs() < 1e-6);
    }
    assert_eq!(
        out["unknown_model"],
        json!({ "status": 404, "code": "model_not_found" })
    );
}

/// curl streams a 24-token completion: most tokens arrive as their own SSE event, spread over
/// the decoding (not sent together at the end), then the finish chunk and `[DONE]`.
pub fn check_curl_sse(server: &Server, model_id: &str) {
    let body =
        json!({ "model": model_id, "prompt": "Once upon a time", "max_tokens": 24, "temperature": 0, "stream": true })
            .to_string();
    let mut curl = Command::new("curl")
        .args([
            "-sN",
            &server.url("/v1/completions"),
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut events: Vec<(Instant, String)> = Vec::new();
    for line in BufReader::new(curl.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(data) = line.strip_prefix("data: ") {
            events.push((Instant::now(), data.to_string()));
        }
    }
    assert!(curl.wait().unwrap().success());
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    let text_events = chunks
        .iter()
        .filter(|c| c["choices"][0]["text"].as_str().is_some_and(|t| !t.is_empty()))
        .count();
    assert!(
        text_events >= 12,
        "curl reads as fast as tokens come: most tokens get their own event ({text_events} of 24)"
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    // Events were spread over the decoding, not sent together at the end: the first arrived
    // at least half the decode time before the last.
    let decode_ms = last["timings"]["decode_ms"].as_f64().unwrap();
    let spread_ms = (events[events.len() - 2].0 - events[0].0).as_secs_f64() * 1e3;
    assert!(
        spread_ms >= 0.5 * decode_ms,
        "events arrived within {spread_ms:.0} ms of a {decode_ms:.0} ms decode"
    );
}
