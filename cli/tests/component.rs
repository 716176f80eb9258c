//! The engine component in wasmtime against the native backend, and errors crossing the WIT
//! boundary as typed errors.

mod common;

use common::{assert_fails_saying, model, reference, rill, rill_command};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;

fn rill_in(cache: &std::path::Path, args: &[&str]) -> Output {
    rill_command().env("XDG_CACHE_HOME", cache).args(args).output().unwrap()
}

fn greedy_ids(backend: &str, prompt: &str, n: usize) -> Vec<u64> {
    let m = model();
    let n = n.to_string();
    let out = rill(&[
        "run",
        "--backend",
        backend,
        "--model",
        &m,
        "--prompt",
        prompt,
        "--max-tokens",
        &n,
        "--temperature",
        "0",
        "--ignore-eos",
        "--format",
        "jsonl",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_u64())
        .collect()
}

#[test]
fn component_greedy_equals_native_on_the_reference_prompts() {
    let greedy = reference("gemma-3-270m-q4_k_m.greedy.fa-off.json");
    for result in greedy["results"].as_array().unwrap() {
        let prompt = result["prompt"].as_str().unwrap();
        let (component, native) = (greedy_ids("component", prompt, 16), greedy_ids("native", prompt, 16));
        assert_eq!(component.len(), 16);
        // Identical, or parting only where llama.cpp's own top-2 margin is under 0.5.
        if let Some(i) = component.iter().zip(&native).position(|(a, b)| a != b) {
            let top = &result["per_step_top5"][i];
            let margin = top[0][1].as_f64().unwrap() - top[1][1].as_f64().unwrap();
            assert!(
                margin < 0.5,
                "{prompt:?}: component and native differ at step {i} (reference margin {margin})"
            );
        }
    }
}

#[test]
fn broken_files_are_invalid_model_errors_through_the_wit_boundary() {
    let dir = std::env::temp_dir().join(format!("rill-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::read(model()).unwrap();
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &file[..file.len() / 3]).unwrap();
    let mut bad = file[..1 << 20].to_vec();
    bad[..4].copy_from_slice(b"GGUX");
    let corrupted = dir.join("corrupted.gguf");
    std::fs::write(&corrupted, &bad).unwrap();
    for (path, detail) in [(&truncated, "past the end of the"), (&corrupted, "magic")] {
        let out = rill(&["tokenize", "--model", path.to_str().unwrap(), "x"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("invalid model") && stderr.contains(detail),
            "{}: {stderr}",
            path.display()
        );
        assert!(!stderr.contains("trapped"), "{stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_too_small_memory_limit_is_an_out_of_memory_error() {
    let m = model();
    // While loading: the weights do not fit.
    let args = ["tokenize", "--model", &m, "--memory-limit-mib", "64", "x"];
    assert_fails_saying(&rill(&args), &args, "out of memory");
    // While running: the model fits, but the logits of every position of a long input
    // (200 × 262,144 floats, 200 MiB) do not.
    let tokens = vec!["2"; 200].join(",");
    let args = [
        "logits",
        "--model",
        &m,
        "--memory-limit-mib",
        "400",
        "--tokens",
        &tokens,
    ];
    let out = rill(&args);
    assert_fails_saying(&out, &args, "out of memory");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("trapped"));
}

#[test]
fn the_compiled_component_is_cached_and_reused() {
    let cache = std::env::temp_dir().join(format!("rill-cache-{}", std::process::id()));
    let m = model();
    let run = || {
        let out = rill_in(&cache, &["tokenize", "--model", &m, "Hello"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run();
    let entries = || -> Vec<(PathBuf, std::time::SystemTime)> {
        std::fs::read_dir(cache.join("rill/compiled"))
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.path(), e.metadata().unwrap().modified().unwrap()))
            .collect()
    };
    let first = entries();
    assert_eq!(first.len(), 1, "one compiled artifact: {first:?}");
    run();
    assert_eq!(entries(), first, "the second start reuses the artifact");
    std::fs::remove_dir_all(&cache).unwrap();
}
