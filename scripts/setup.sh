#!/usr/bin/env bash
# Installs what building and testing Rill needs on a fresh machine (idempotent, quick when done):
# the wasm32-wasip2 Rust target, the Python test packages (gguf, numpy, the wasmtime CLI) and
# jco (npm, for running the edge worker in Node.js), playwright-core and Chromium (the dashboard
# test), Firefox (a host `rill compat` checks the component in), and Mesa's Vulkan drivers (lavapipe:
# the GPU backend's tests on machines without a GPU).
# The reference model comes from `rill pull` (tests/run calls it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2 >&2
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r "$root/tests/requirements.txt" >&2
"$root/scripts/wasmtime-path" >/dev/null
command -v npm >/dev/null || { echo "setup: the jco and dashboard tests need Node.js 20+ with npm" >&2; exit 1; }
"$root/scripts/jco-path" >/dev/null
# The dashboard test: playwright-core (locked in tests/browser/) driving Debian's Chromium.
[ -d "$root/tests/browser/node_modules/playwright-core" ] || (cd "$root/tests/browser" && npm ci --silent --no-audit --no-fund) >&2
if ! command -v chromium >/dev/null || ! command -v firefox >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium firefox-esr) >&2
fi
# The GPU tests: wgpu on Vulkan, with Mesa's lavapipe (a software Vulkan driver) where there is no GPU.
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1) >&2
fi
