//! Builds the engine component (`component/`, for wasm32-wasip2, release) into this build's own
//! target folder and tells the host where it is, as wasmtime's `test-programs-artifacts` does.
//! `cargo run -p rill` and `cargo install --path host` then carry the component inside `rill`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let host = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = host.parent().unwrap().to_path_buf();
    let target_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("guest");
    for watched in ["component/src", "component/Cargo.toml", "kernels/src", "kernels/Cargo.toml", "wit", "Cargo.lock", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--target", "wasm32-wasip2", "-p", "rill-engine", "--target-dir"])
        .arg(&target_dir)
        // The outer build's flags are for the host, not the guest (the guest's come from .cargo/config.toml).
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    let status = cmd.status().expect("running cargo for the engine component");
    if !status.success() {
        panic!("building the engine component failed; is the target installed? `rustup target add wasm32-wasip2`");
    }
    let wasm = target_dir.join("wasm32-wasip2/release/rill_engine.wasm");
    println!("cargo:rustc-env=RILL_ENGINE_WASM={}", wasm.display());
}
