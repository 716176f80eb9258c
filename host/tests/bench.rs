//! `rill bench` on both backends: the figures it reports and their shape.

mod common;

use common::{assert_fails_saying, model, ok_stdout, rill};
use serde_json::Value;

#[test]
fn bench_reports_prompt_decode_load_and_first_token_figures() {
    let m = model();
    for backend in ["component", "native"] {
        let args = ["bench", "--model", &m, "--backend", backend, "--repeats", "2", "--prompt-tokens", "16", "--gen-tokens", "4", "--format", "json"];
        let report: Value = serde_json::from_str(&ok_stdout(&args)).unwrap();
        let rill = &report["rill"];
        assert_eq!(rill["backend"], backend);
        assert!(rill["load_ms"].as_f64().unwrap() > 0.0);
        for figure in ["pp16", "tg4", "time_to_first_token_ms"] {
            let (min, median, max) = (rill[figure]["min"].as_f64().unwrap(), rill[figure]["median"].as_f64().unwrap(), rill[figure]["max"].as_f64().unwrap());
            assert!(0.0 < min && min <= median && median <= max, "{backend} {figure}: {rill}");
        }
        assert!(report.get("peer").is_none());
    }
}

#[test]
fn bench_with_a_missing_peer_says_so() {
    let m = model();
    let args = ["bench", "--model", &m, "--peer", "/nonexistent/llama-bench"];
    assert_fails_saying(&rill(&args), &args, "running /nonexistent/llama-bench");
}

#[test]
fn bench_concurrency_reports_each_level() {
    let m = model();
    let args = ["bench", "--model", &m, "--concurrency", "1,3", "--prompt-tokens", "8", "--gen-tokens", "6", "--format", "json"];
    let report: Value = serde_json::from_str(&ok_stdout(&args)).unwrap();
    let levels = report["levels"].as_array().unwrap();
    assert_eq!(levels.iter().map(|l| l["streams"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 3]);
    for l in levels {
        let (all, each) = (l["aggregate_decode_tokens_per_second"].as_f64().unwrap(), l["per_stream_tokens_per_second"].as_f64().unwrap());
        assert!(all > 0.0 && (all / l["streams"].as_f64().unwrap() - each).abs() < 1e-9, "{l}");
        let itl = &l["inter_token_ms"];
        assert!(0.0 < itl["p50"].as_f64().unwrap() && itl["p50"].as_f64() <= itl["p95"].as_f64(), "{l}");
    }
    let bad = ["bench", "--model", &m, "--concurrency", "0"];
    assert_fails_saying(&rill(&bad), &bad, "at least 1");
}
