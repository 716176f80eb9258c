//! `rill serve` end to end: a real server process on the reference model, driven by real
//! clients (the `openai` Python package, curl, the `websockets` Python package) and by raw
//! HTTP for what well-behaved clients never send.

mod common;

use common::server::Server;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

const MODEL_ID: &str = "gemma-3-270m-q4_k_m";

fn chat(content: &str, max_tokens: u32) -> Value {
    json!({ "model": MODEL_ID, "messages": [{ "role": "user", "content": content }], "max_tokens": max_tokens, "temperature": 0 })
}

#[test]
fn the_openai_python_client_chats_streams_and_completes() {
    let server = Server::start(&[], &[]);
    let out = common::python("openai_client.py", &[&server.url(""), MODEL_ID]);
    common::check_openai_client(&out, MODEL_ID);
    // The second conversation with the same long system prompt starts from its cached blocks.
    let shared = out["shared_prefix"].as_array().unwrap();
    assert_eq!(shared[0]["cached_tokens"], 0, "{shared:?}");
    let (prompt, cached) = (
        shared[1]["prompt_tokens"].as_u64().unwrap(),
        shared[1]["cached_tokens"].as_u64().unwrap(),
    );
    assert!(cached >= 64 && cached < prompt, "{shared:?}");
    assert_eq!(server.metric("rill_cached_prompt_tokens_total"), cached as f64);
    server.assert_healthy();
}

#[test]
fn curl_receives_sse_events_one_by_one_as_they_are_generated() {
    let server = Server::start(&[], &[]);
    common::check_curl_sse(&server, MODEL_ID);
}

#[test]
fn a_websocket_runs_two_generations_at_once_and_cancels_one() {
    let server = Server::start(&[], &[]);
    let out = common::python("ws_client.py", &[&format!("ws://{}/v1/ws", server.addr)]);
    let (long, short) = (&out["ends"]["long"], &out["ends"]["short"]);
    assert_eq!(
        (long["type"].as_str(), long["finish_reason"].as_str()),
        (Some("done"), Some("cancelled")),
        "{out}"
    );
    assert!(
        out["tokens"]["long"].as_u64().unwrap() < 40,
        "cancelled within a step or two: {out}"
    );
    assert_eq!(
        (short["type"].as_str(), short["finish_reason"].as_str()),
        (Some("done"), Some("length")),
        "{out}"
    );
    assert_eq!(short["usage"]["completion_tokens"], 6);
    assert_eq!(out["tokens"]["short"], 6);
    assert!(short["timings"]["time_to_first_token_ms"].as_f64().unwrap() > 0.0);
    let refusals = out["refusals"].as_array().unwrap();
    assert!(
        refusals
            .iter()
            .all(|r| r["type"] == "error" && r["error"]["message"].is_string()),
        "{refusals:?}"
    );
    assert_eq!(refusals[1]["id"], "nothing-running");
    assert_eq!(refusals[3]["error"]["param"], "messages");
    server.assert_healthy();
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_keeps_serving() {
    let server = Server::start(&["--max-body-kib", "64"], &[]);
    let chat_url = "/v1/chat/completions";
    let post = |body: &[u8]| server.request("POST", chat_url, &[], body);
    let with = |field: &str, value: Value| {
        let mut b = chat("Hi", 2);
        b[field] = value;
        server.post_json(chat_url, &b)
    };
    let cases: Vec<(&str, common::server::Reply, u16, &str, Option<&str>)> = vec![
        ("malformed JSON", post(b"{\"messages\": ["), 400, "not valid JSON", None),
        ("not an object", post(b"[1, 2]"), 400, "JSON object", None),
        (
            "wrong type",
            with("temperature", json!("hot")),
            400,
            "temperature",
            Some("temperature"),
        ),
        (
            "unsupported field",
            with("tools", json!([{ "type": "function", "function": { "name": "f" } }])),
            400,
            "tool calls",
            Some("tools"),
        ),
        (
            "unknown model",
            with("model", json!("gpt-4o")),
            404,
            "gpt-4o",
            Some("model"),
        ),
        (
            "empty messages",
            with("messages", json!([])),
            400,
            "empty",
            Some("messages"),
        ),
        (
            "out-of-range sampling",
            with("top_p", json!(1.5)),
            400,
            "top_p",
            Some("top_p"),
        ),
        (
            "logit_bias out of range",
            with("logit_bias", json!({ "818": 200 })),
            400,
            "logit_bias = 200 is out of range",
            Some("logit_bias"),
        ),
        (
            "logit_bias for a token outside the vocabulary",
            with("logit_bias", json!({ "999999": 1 })),
            400,
            "logit_bias: token id 999999 is outside the vocabulary",
            Some("logit_bias"),
        ),
        (
            "zero max_tokens",
            with("max_tokens", json!(0)),
            400,
            "max_tokens",
            Some("max_tokens"),
        ),
        (
            "invalid UTF-8",
            post(b"{\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}"),
            400,
            "UTF-8",
            None,
        ),
        (
            "prompt longer than the context",
            with(
                "messages",
                json!([{ "role": "user", "content": "hello ".repeat(5000) }]),
            ),
            400,
            "context",
            None,
        ),
        (
            "body over the limit",
            post(&vec![b' '; 100 << 10]),
            413,
            "larger than",
            None,
        ),
        ("no such endpoint", server.get("/v1/nothing"), 404, "/v1/nothing", None),
    ];
    for (case, reply, status, says, param) in cases {
        let error = reply.assert_error(status, says);
        assert_eq!(error["param"].as_str(), param, "{case}: {error}");
        server.assert_healthy();
    }
    // And it still generates.
    let ok = server.post_json(chat_url, &chat("Hi", 2));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(server.metric("rill_requests_total{endpoint=\"chat_completions\",status=\"400\"}") >= 8.0);
}

#[test]
fn a_configured_api_key_is_required_on_v1() {
    let server = Server::start(&[], &[("RILL_API_KEY", "sk-test-123")]);
    server.get("/v1/models").assert_error(401, "API key");
    server
        .request("GET", "/v1/models", &[("Authorization", "Bearer wrong")], b"")
        .assert_error(401, "API key");
    let ok = server.request("GET", "/v1/models", &[("Authorization", "Bearer sk-test-123")], b"");
    assert_eq!(ok.json()["data"][0]["id"], MODEL_ID);
    server.assert_healthy(); // /health needs no key
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let server = Server::start(&["--queue", "1", "--max-batch", "1"], &[]);
    let addr = server.addr.clone();
    // The first request keeps the engine busy for seconds, the second waits in the one queue
    // slot, the third finds the queue full.
    let busy = |expected: &[(&str, f64)]| {
        let addr = addr.clone();
        let request = std::thread::spawn(move || {
            let mut conn = std::net::TcpStream::connect(addr).unwrap();
            let body = json!({ "prompt": "Once upon a time", "max_tokens": 48, "ignore_eos": true }).to_string();
            write!(conn, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
            let mut reply = String::new();
            conn.read_to_string(&mut reply).unwrap();
            reply
        });
        assert!(server.metrics_become(expected, Duration::from_secs(60)), "{expected:?}");
        request
    };
    let running = busy(&[("rill_active_sequences", 1.0), ("rill_queue_depth", 0.0)]);
    let waiting = busy(&[("rill_active_sequences", 1.0), ("rill_queue_depth", 1.0)]);
    let full = server.post_json("/v1/completions", &json!({ "prompt": "Hi", "max_tokens": 2 }));
    let error = full.assert_error(429, "busy");
    assert_eq!(error["code"], "queue_full");
    assert_eq!(full.header("retry-after"), Some("1"));
    for request in [running, waiting] {
        assert!(
            request.join().unwrap().starts_with("HTTP/1.1 200"),
            "the queued requests complete"
        );
    }
    server.assert_healthy();
}

#[test]
fn a_client_that_disconnects_mid_stream_cancels_its_generation() {
    let server = Server::start(&[], &[]);
    let mut conn = std::net::TcpStream::connect(&server.addr).unwrap();
    let body =
        json!({ "prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": true, "stream": true }).to_string();
    write!(conn, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    while !line.starts_with("data: ") {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    assert_eq!(server.metric("rill_active_sequences"), 1.0);
    drop(reader); // the client goes away mid-stream
    assert!(
        server.metrics_become(&[("rill_active_sequences", 0.0)], Duration::from_secs(20)),
        "the generation stops"
    );
    assert_eq!(
        server.metric("rill_cancelled_total"),
        1.0,
        "it was cancelled, not run to the end"
    );
    assert_eq!(server.metric("rill_kv_cache_bytes"), 0.0, "its KV cache is freed");
    server.assert_healthy();
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the test build: --features fault-injection"
)]
fn a_trapped_engine_is_replaced_and_the_next_request_succeeds() {
    let server = Server::start(&[], &[]);
    // A trap mid-stream: the stream ends with an error event.
    let body = json!({ "prompt": "Once upon a time", "max_tokens": 16, "stream": true }).to_string();
    let reply = server.request(
        "POST",
        "/v1/completions",
        &[("x-rill-inject-trap", "3")],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 200);
    let events: Vec<&str> = reply.body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"].as_str().unwrap().contains("trapped"),
        "{}",
        reply.body
    );
    assert_eq!(events.len(), 4, "three tokens, then the error: {}", reply.body);
    // A trap before the first token: a 500 with an error body.
    let reply = server.request(
        "POST",
        "/v1/completions",
        &[("x-rill-inject-trap", "0")],
        body.replace("true", "false").as_bytes(),
    );
    reply.assert_error(500, "trapped");
    // A fresh instance serves the next request.
    let ok = server.post_json(
        "/v1/completions",
        &json!({ "prompt": "Once upon a time", "max_tokens": 4 }),
    );
    assert_eq!(
        (ok.status, ok.json()["usage"]["completion_tokens"].as_u64()),
        (200, Some(4)),
        "{}",
        ok.body
    );
    assert_eq!(server.metric("rill_engine_restarts_total"), 2.0);
    server.assert_healthy();
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the test build: --features fault-injection"
)]
fn a_lost_gpu_moves_serving_to_the_cpu_and_running_streams_go_on() {
    // On the GPU (lavapipe where there is no hardware one); the GPU is lost after 4 tokens.
    let server = Server::start(&["--backend", "gpu"], &[]);
    assert_eq!(server.metric("rill_on_gpu"), 1.0);
    let ask = |stream: bool, headers: &[(&str, &str)]| {
        let body = json!({ "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0, "ignore_eos": true, "stream": stream });
        server.request("POST", "/v1/completions", headers, body.to_string().as_bytes())
    };
    let lost = ask(true, &[("x-rill-lose-gpu", "4")]);
    assert_eq!(lost.status, 200, "{}", lost.body);
    let chunks: Vec<Value> = lost
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c.get("error").is_none()), "{}", lost.body);
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length",
        "{}",
        lost.body
    );
    assert_eq!(server.metric("rill_gpu_fallbacks_total"), 1.0);
    assert_eq!(server.metric("rill_on_gpu"), 0.0);
    // The same request on the CPU now: the moved generation read its first 4 tokens there as
    // prompt and went on, so the stream is the greedy continuation.
    let again = ask(false, &[]).json();
    assert_eq!(text, again["choices"][0]["text"].as_str().unwrap(), "{}", lost.body);
    assert_eq!(again["usage"]["completion_tokens"], 12);
    server.assert_healthy();
}

/// Greedy completions of `prompts` (`max_tokens` each, past EOS): asked one after another,
/// then all at once.
fn alone_and_together<P: AsRef<str> + Sync>(
    server: &Server,
    prompts: &[P],
    max_tokens: u32,
) -> (Vec<String>, Vec<String>) {
    let ask = |prompt: &str| {
        let r = server.post_json(
            "/v1/completions",
            &json!({ "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": true }),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["choices"][0]["text"].as_str().unwrap().to_string()
    };
    let alone = prompts.iter().map(|p| ask(p.as_ref())).collect();
    let together = std::thread::scope(|s| {
        let handles: Vec<_> = prompts.iter().map(|p| s.spawn(|| ask(p.as_ref()))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    (alone, together)
}

#[test]
fn concurrent_requests_are_batched_and_each_gets_its_own_answer() {
    // All at once whatever the step times (no adaptive limit).
    let server = Server::start(&["--target-itl-ms", "0"], &[]);
    let (alone, together) = alone_and_together(
        &server,
        &[
            "Once upon a time",
            "The capital of France is",
            "1, 2, 3,",
            "My favourite food is",
        ],
        12,
    );
    assert_eq!(together, alone);
    assert_eq!(server.metric("rill_completion_tokens_total"), 96.0);
}

#[test]
fn under_a_kv_budget_requests_are_preempted_not_failed() {
    // 3 MiB: about five 32-position blocks of the reference model's f16 KV cache. Each prompt
    // (~23 tokens) fits one block, so all four start; each needs a second block as it decodes
    // past 32 positions, and eight do not fit: the younger ones are preempted.
    let server = Server::start(
        &["--kv-budget-mib", "3", "--max-batch", "4", "--target-itl-ms", "0"],
        &[],
    );
    let long = |topic: &str| format!("{topic} The river ran past the mill, and the miller counted the sacks of grain.");
    let prompts: Vec<String> = ["First.", "Second.", "Third.", "Fourth."]
        .iter()
        .map(|t| long(t))
        .collect();
    let (alone, together) = alone_and_together(&server, &prompts, 24);
    assert_eq!(together, alone);
    assert!(server.metric("rill_preemptions_total") > 0.0);
    assert_eq!(server.metric("rill_kv_budget_bytes"), (3 << 20) as f64);
    assert!(server.metric("rill_kv_cache_bytes") <= (3 << 20) as f64);
    server.assert_healthy();
}

#[test]
fn a_load_of_concurrent_clients_loses_no_request() {
    // CI's short version (16 clients × 2 requests); the full one is 64 × 4 (README).
    let server = Server::start(&["--queue", "8", "--kv-budget-mib", "24"], &[]);
    let out = common::python(
        "load_test.py",
        &[&server.url(""), MODEL_ID, "--clients", "16", "--requests", "2"],
    );
    eprintln!("load test: {out}");
    assert_eq!(out["requests"], 32);
    assert_eq!(
        (
            out["lost"].as_u64(),
            out["failed"].as_u64(),
            out["bad-refusal"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{out}"
    );
    assert!(out["completed"].as_u64().unwrap() >= 8, "{out}");
    let metrics = &out["metrics"];
    assert_eq!(metrics["rill_engine_restarts_total"], 0.0, "{out}");
    assert!(
        metrics["rill_kv_cache_bytes"].as_f64().unwrap() <= (24 << 20) as f64,
        "{out}"
    );
    server.assert_healthy();
}

#[test]
fn a_long_prompt_is_read_in_smaller_chunks_while_another_stream_decodes() {
    let server = Server::start(&["--target-itl-ms", "1000", "--max-batch", "2"], &[]);
    let decoding = std::thread::scope(|s| {
        let first = s.spawn(|| {
            server.post_json(
                "/v1/completions",
                &json!({ "prompt": "Once upon a time", "max_tokens": 120, "ignore_eos": true }),
            )
        });
        assert!(server.metrics_become(&[("rill_active_sequences", 1.0)], Duration::from_secs(30)));
        // ~600 tokens: read in full 256-token chunks a step would take seconds, far over the
        // 1000 ms target for the stream that is decoding.
        let long = "The river ran past the mill, and the miller counted the sacks of grain one by one. ".repeat(30);
        let second = server.post_json("/v1/completions", &json!({ "prompt": long, "max_tokens": 4 }));
        assert_eq!(second.status, 200, "{}", second.body);
        let chunk = server.metric("rill_prompt_chunk");
        assert!(
            (32.0..256.0).contains(&chunk),
            "prompt chunk {chunk} while another stream decodes"
        );
        first.join().unwrap()
    });
    assert_eq!(decoding.json()["usage"]["completion_tokens"], 120, "{}", decoding.body);
    server.assert_healthy();
}
