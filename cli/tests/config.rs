//! rill.toml: validation with messages that name the key, `config check|show`, and flags
//! overriding the file.

mod common;

use common::{assert_fails_saying, model, ok_stdout, rill, rill_command};
use serde_json::Value;
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn config_check_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "typo.toml",
            "[generation]\ntemprature = 0.5\n",
            "unknown field `temprature`",
        ),
        ("type.toml", "[generation]\ntop_k = \"many\"\n", "top_k"),
        (
            "range.toml",
            "[generation]\ntop_p = 1.5\n",
            "generation.top_p = 1.5 is out of range",
        ),
        (
            "bias.toml",
            "[generation]\nlogit_bias = { 818 = 200.0 }\n",
            "generation.logit_bias = 200 is out of range",
        ),
        (
            "bias-key.toml",
            "[generation.logit_bias]\nhello = 1.0\n",
            "\"hello\" is not a token id",
        ),
        ("memory.toml", "memory_limit_mib = 8192\n", "memory_limit_mib = 8192"),
        ("backend.toml", "backend = \"cuda\"\n", "unknown variant `cuda`"),
        ("syntax.toml", "model = \n", "line 1"),
    ];
    for (name, text, message) in cases {
        let path = write(dir.path(), name, text);
        let args = ["config", "check", path.as_str()];
        assert_fails_saying(&rill(&args), &args, message);
    }
    let good = write(
        dir.path(),
        "good.toml",
        "backend = \"native\"\n[generation]\ntop_k = 5\n",
    );
    assert!(ok_stdout(&["config", "check", &good]).contains(": ok"));
    // A bad file also stops every other command, before any work.
    let bad = dir.path().join("range.toml");
    let args = ["--config", bad.to_str().unwrap(), "run", "--prompt", "x"];
    assert_fails_saying(&rill(&args), &args, "generation.top_p");
}

#[test]
fn config_show_prints_the_effective_settings_which_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = ok_stdout(&["config", "show"]);
    assert!(
        defaults.contains("no rill.toml found")
            && defaults.contains("model = \"gemma-3-270m-q4_k_m\"")
            && defaults.contains("top_k = 40"),
        "{defaults}"
    );
    let file = write(dir.path(), "rill.toml", "[generation]\ntop_k = 7\n");
    // Found through RILL_CONFIG as well as --config.
    let out = rill_command()
        .env("RILL_CONFIG", &file)
        .args(["config", "show"])
        .output()
        .unwrap();
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(shown.contains("top_k = 7") && shown.contains("top_p = 0.95"), "{shown}");
    let round_trip = write(dir.path(), "shown.toml", &shown);
    assert!(ok_stdout(&["config", "check", &round_trip]).contains(": ok"));
}

fn completion_tokens(config: &str, extra: &[&str]) -> u64 {
    let mut args = vec![
        "--config",
        config,
        "run",
        "--prompt",
        "Once upon a time",
        "--ignore-eos",
        "--format",
        "jsonl",
    ];
    args.extend_from_slice(extra);
    let stdout = ok_stdout(&args);
    let done: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    done["usage"]["completion_tokens"].as_u64().unwrap()
}

#[test]
fn flags_override_the_file_and_model_paths_are_relative_to_it() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(std::fs::canonicalize(model()).unwrap(), dir.path().join("m.gguf")).unwrap();
    // Relative to the file's folder, not to where rill runs (the test's cwd is the crate).
    let config = write(
        dir.path(),
        "rill.toml",
        "model = \"m.gguf\"\nbackend = \"native\"\n[generation]\nmax_tokens = 3\ntemperature = 0.0\n",
    );
    assert_eq!(completion_tokens(&config, &[]), 3);
    assert_eq!(completion_tokens(&config, &["--max-tokens", "5"]), 5);
}
