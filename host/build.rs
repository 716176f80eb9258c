//! Builds the guest components (for wasm32-wasip2, release) into this build's own target
//! folders and tells the host where they are, as wasmtime's `test-programs-artifacts` does:
//! the engine component (`component/`, carried inside `rill`) and the edge worker (`edge/`).
//! `cargo run -p rill` and `cargo install --path host` then just work.
//!
//! Each has its own target folder: building the worker also builds the engine crate's cdylib,
//! without its WIT export, which must not replace the engine component.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let host = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = host.parent().unwrap().to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for watched in [
        "component/src",
        "component/Cargo.toml",
        "kernels/src",
        "kernels/Cargo.toml",
        "api/src",
        "api/Cargo.toml",
        "edge/src",
        "edge/Cargo.toml",
        "wit",
        "Cargo.lock",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let engine = build_guest(&root, "rill-engine", &out.join("guest"));
    println!("cargo:rustc-env=RILL_ENGINE_WASM={}", engine.display());
    let worker = build_guest(&root, "rill-edge", &out.join("edge"));
    println!("cargo:rustc-env=RILL_EDGE_WASM={}", worker.display());
}

/// Builds `package` for wasm32-wasip2 into `target_dir`; the path of its `.wasm`.
fn build_guest(root: &Path, package: &str, target_dir: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            package,
            "--target-dir",
        ])
        .arg(target_dir)
        // The outer build's flags are for the host, not the guest (the guest's come from .cargo/config.toml).
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .status()
        .unwrap_or_else(|e| panic!("running cargo for {package}: {e}"));
    if !status.success() {
        panic!(
            "building {package} for wasm32-wasip2 failed; is the target installed? `rustup target add wasm32-wasip2`"
        );
    }
    target_dir.join(format!("wasm32-wasip2/release/{}.wasm", package.replace('-', "_")))
}
