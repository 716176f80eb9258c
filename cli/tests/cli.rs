//! The `rill` command line contract, run as a user runs it, on the reference model.

mod common;

use common::{assert_fails_saying, model, ok_stdout, reference, rill};
use serde_json::Value;

fn ids(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

#[test]
fn tokenize_prints_a_json_array_with_and_without_bos() {
    let m = model();
    let with: Vec<u64> = serde_json::from_str(&ok_stdout(&["tokenize", "--model", &m, "Hello world"])).unwrap();
    assert_eq!(with, vec![2, 9259, 1902]);
    let without: Vec<u64> =
        serde_json::from_str(&ok_stdout(&["tokenize", "--model", &m, "--no-bos", "naïve café"])).unwrap();
    assert_eq!(without, vec![1789, 238527, 560, 33443]);
}

#[test]
fn run_streams_greedy_tokens_as_jsonl_matching_llama_cpp() {
    let m = model();
    let greedy = reference("gemma-3-270m-q4_k_m.greedy.fa-off.json");
    let result = &greedy["results"][0];
    let prompt = result["prompt"].as_str().unwrap();
    let out = ok_stdout(&[
        "run",
        "--model",
        &m,
        "--prompt",
        prompt,
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        "--ignore-eos",
        "--format",
        "jsonl",
    ]);
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 9, "8 token lines and a done line:\n{out}");
    let got: Vec<u64> = lines[..8].iter().map(|l| l["id"].as_u64().unwrap()).collect();
    // The reference's top-2 margin is above 0.5 for these first steps of prompt 0.
    assert_eq!(got, ids(&result["generated_token_ids"])[..8]);
    let text: String = lines[..8].iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert!(
        result["generated_text"].as_str().unwrap().starts_with(&text),
        "{text:?}"
    );
    let done = &lines[8];
    assert_eq!(done["done"], true);
    assert_eq!(done["usage"]["prompt_tokens"], 6);
    assert_eq!(done["usage"]["completion_tokens"], 8);
    assert!(done["timings"]["decode_tokens_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn run_text_is_the_concatenated_pieces_and_stops_at_stop_strings() {
    let m = model();
    let args = [
        "run",
        "--model",
        &m,
        "--prompt",
        "The capital of France is",
        "--max-tokens",
        "20",
        "--temperature",
        "0",
    ];
    let text = ok_stdout(&args);
    assert!(text.starts_with(" the capital of the country of France."), "{text:?}");
    let mut with_stop = args.to_vec();
    with_stop.extend(["--stop", "France"]);
    assert_eq!(ok_stdout(&with_stop), " the capital of the country of \n");
}

#[test]
fn logit_bias_bans_or_forces_tokens_and_bad_biases_are_errors() {
    let m = model();
    let first_ids = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--model",
            &m,
            "--prompt",
            "The capital of France is",
            "--max-tokens",
            "3",
            "--temperature",
            "0",
            "--format",
            "jsonl",
        ];
        args.extend_from_slice(extra);
        ok_stdout(&args)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_u64())
            .collect::<Vec<_>>()
    };
    let greedy = first_ids(&[]);
    let banned = format!("{}=-100", greedy[0]);
    let without_it = first_ids(&["--logit-bias", &banned]);
    assert!(!without_it.contains(&greedy[0]), "{greedy:?} then {without_it:?}");
    // A large enough bias forces a token, whatever the model prefers.
    assert_eq!(first_ids(&["--logit-bias", "9259=100"]), [9259, 9259, 9259]);
    for (bias, message) in [
        ("999999=1", "logit_bias: token id 999999 is outside the vocabulary"),
        ("818=200", "logit_bias = 200 is out of range"),
    ] {
        let args = ["run", "--model", &m, "--prompt", "x", "--logit-bias", bias];
        assert_fails_saying(&rill(&args), &args, message);
    }
    // A flag that does not parse is clap's usage error (status 2).
    let malformed = rill(&["run", "--prompt", "x", "--logit-bias", "818"]);
    assert_eq!(malformed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("\"818\" is not ID=BIAS"));
}

#[test]
fn seeded_sampling_repeats_and_chat_mode_runs() {
    let m = model();
    let args = [
        "run",
        "--model",
        &m,
        "--prompt",
        "Once upon a time",
        "--max-tokens",
        "12",
        "--temperature",
        "1.0",
        "--seed",
        "42",
        "--format",
        "jsonl",
    ];
    let ids = |out: String| {
        out.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_u64())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(ok_stdout(&args)), ids(ok_stdout(&args)));
    let chat = ok_stdout(&[
        "run",
        "--model",
        &m,
        "--prompt",
        "Hi",
        "--chat",
        "--max-tokens",
        "4",
        "--temperature",
        "0",
        "--format",
        "jsonl",
    ]);
    assert!(
        chat.lines().last().unwrap().contains("\"prompt_tokens\":10"),
        "<bos><start_of_turn>user\\nHi<end_of_turn>\\n<start_of_turn>model\\n: {chat}"
    );
}

#[test]
fn logits_gives_top_k_per_position_teacher_forced() {
    let m = model();
    let greedy = reference("gemma-3-270m-q4_k_m.greedy.fa-off.json");
    let result = &greedy["results"][1];
    let prompt = ids(&result["prompt_token_ids"]);
    let gen = ids(&result["generated_token_ids"]);
    let tokens: Vec<String> = prompt.iter().chain(&gen[..3]).map(u64::to_string).collect();
    let out: Value = serde_json::from_str(&ok_stdout(&[
        "logits",
        "--model",
        &m,
        "--tokens",
        &tokens.join(","),
        "--top",
        "5",
    ]))
    .unwrap();
    let positions = out["positions"].as_array().unwrap();
    assert_eq!(positions.len(), tokens.len());
    for (i, want) in gen[..3].iter().enumerate() {
        let top = positions[prompt.len() - 1 + i]["top"].as_array().unwrap();
        assert_eq!(top.len(), 5);
        assert_eq!(top[0][0].as_u64().unwrap(), *want, "step {i}");
        assert!(top[0][1].as_f64().unwrap() >= top[1][1].as_f64().unwrap());
    }
}

#[test]
fn bad_input_gets_a_clear_error_not_a_panic() {
    let m = model();
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--model", "/nonexistent.gguf", "--prompt", "x"],
            "nonexistent.gguf",
        ),
        (
            &["run", "--model", &m, "--prompt", "x", "--temperature", "-1"],
            "temperature",
        ),
        (&["run", "--model", &m, "--prompt", "x", "--top-p", "2"], "top_p"),
        (
            &[
                "run",
                "--model",
                &m,
                "--prompt",
                &"word ".repeat(300),
                "--context",
                "64",
            ],
            "context overflow",
        ),
        (
            &["logits", "--model", &m, "--tokens", "2,999999999"],
            "outside the vocabulary",
        ),
        (&["tokenize", "--model", "Cargo.toml", "x"], "GGUF magic"),
    ];
    for (args, message) in cases {
        assert_fails_saying(&rill(args), args, message);
    }
}

#[test]
fn info_reports_machine_kernels_and_the_models_memory_plan() {
    let m = model();
    let text = ok_stdout(&["info", "--model", &m]);
    assert!(text.contains("component:") && text.contains("simd128 yes"), "{text}");
    // 18 layers × keys and values × 256 dims × 2 bytes (f16) = 18 KiB per position.
    assert!(
        text.contains("18.0 KiB per position, 72 MiB at 4096 positions"),
        "{text}"
    );
    let json: Value = serde_json::from_str(&ok_stdout(&["info", "--model", &m, "--format", "json"])).unwrap();
    assert_eq!(json["model"]["kv_bytes_per_token"], 18 * 1024);
    assert_eq!(json["model"]["architecture"], "gemma3");
    assert_eq!(json["component"]["kernel_path"], "simd128");
    assert_eq!(json["component"]["simd128"], true);
    assert!(json["cores"].as_u64().unwrap() >= 1);
    // The GPU adapters (lavapipe at least, which the setup installs), and what `auto` does
    // with them: a software adapter only when asked for.
    let adapters = json["gpu_adapters"].as_array().unwrap();
    assert!(!adapters.is_empty(), "{json}");
    assert!(text.contains("gpu adapters:"), "{text}");
    assert_eq!(json["backend"]["configured"], "auto");
    let hardware = adapters.iter().any(|a| a["software"] == false);
    let runs = json["backend"]["runs"].as_str().unwrap();
    assert_eq!(runs.contains("CPU"), !hardware, "{json}");
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
    {
        use std::is_x86_feature_detected as has;
        let vnni = has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("avx512vnni");
        assert_eq!(json["native"]["kernel_path"], if vnni { "avx512vnni" } else { "avx2" });
        assert!(json["x86_features"].as_array().unwrap().iter().any(|f| f == "avx2"));
    }
}
