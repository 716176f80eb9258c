#!/usr/bin/env python3
"""Writes fixtures that pin rill-kernels to the `gguf` Python package (ggml's numpy port).

    python3 tests/quant_fixtures.py MODEL.gguf OUT_DIR

OUT_DIR/index.tsv lists one case a line: `kind  name  type  n_values`, with
`name.in` and `name.out` beside it:
  dequant:  .in = blocks of `type`,  .out = f32 values (gguf.quants.dequantize)
  quantize: .in = f32 values,        .out = blocks of `type` (gguf.quants.quantize, or a numpy
            port of ggml's reference quantiser where the package has none: Q8_1, Q8_K)
Cases: random blocks (random bits, finite scales) of every format, and the first rows of every
tensor of the reference model.
"""
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf import quants

# Byte offsets of f16 scale fields per block (ggml-common.h).
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
# gguf-py still lists Q8_1 at 40 bytes; ggml's block_q8_1 is 36 (two f16, 32 i8).
BLOCK = {**{t: GGML_QUANT_SIZES[t] for t in T if t in GGML_QUANT_SIZES}, T.Q8_1: (32, 36)}


def random_blocks(rng, qtype, n_blocks):
    size = BLOCK[qtype][1]
    if qtype in (T.F16, T.BF16):
        vals = rng.uniform(-4, 4, n_blocks).astype(np.float32)
        return vals.astype(np.float16).view(np.uint8) if qtype == T.F16 else quants.quantize(vals, T.BF16).view(np.uint8)
    data = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    for off in F16_FIELDS.get(qtype, []):
        data[:, off:off + 2] = rng.uniform(-0.1, 0.1, n_blocks).astype(np.float16).view(np.uint8).reshape(-1, 2)
    return data.reshape(-1)


def nearest_int(x):
    """ggml's nearest_int: round half to even in f32."""
    return np.rint(x.astype(np.float32)).astype(np.int32)


def quantize_q8_1(x):
    """Port of ggml's quantize_row_q8_1_ref."""
    b = x.reshape(-1, 32).astype(np.float32)
    d = (np.abs(b).max(axis=1, keepdims=True) / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    qs = quants.np_roundf(b * idv).astype(np.int8)
    s = (qs.astype(np.int32).sum(axis=1, keepdims=True).astype(np.float32) * d).astype(np.float16)
    return np.concatenate([d.astype(np.float16).view(np.uint8), s.view(np.uint8), qs.view(np.uint8)], axis=1).reshape(-1)


def quantize_q8_k(x):
    """Port of ggml's quantize_row_q8_K_ref."""
    out = []
    for b in x.reshape(-1, 256).astype(np.float32):
        i = int(np.argmax(np.abs(b)))  # first index of the largest magnitude, as ggml's strict '>'
        mx = b[i]
        if mx == 0:
            d, qs = np.float32(0), np.zeros(256, np.int8)
        else:
            iscale = np.float32(-127) / mx
            qs = np.minimum(127, nearest_int(iscale * b)).astype(np.int8)
            d = np.float32(1) / iscale
        bsums = qs.astype(np.int16).reshape(16, 16).sum(axis=1).astype(np.int16)
        out.append(np.concatenate([np.array([d], np.float32).view(np.uint8), qs.view(np.uint8), bsums.view(np.uint8)]))
    return np.concatenate(out)


def dequantize(data, qtype):
    if qtype in (T.Q8_1, T.Q8_K):  # not in gguf-py: d · q
        size = BLOCK[qtype][1]
        b = data.reshape(-1, size)
        d = b[:, :2].copy().view(np.float16).astype(np.float32) if qtype == T.Q8_1 else b[:, :4].copy().view(np.float32)
        qs = b[:, 4:36].copy().view(np.int8) if qtype == T.Q8_1 else b[:, 4:260].copy().view(np.int8)
        return (d * qs.astype(np.float32)).reshape(-1)
    return quants.dequantize(data, qtype).reshape(-1).astype(np.float32)


def quantize(x, qtype):
    if qtype == T.Q8_1:
        return quantize_q8_1(x)
    if qtype == T.Q8_K:
        return quantize_q8_k(x)
    return quants.quantize(x, qtype).view(np.uint8).reshape(-1)


def main():
    model, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    index = []

    def case(kind, name, qtype, n, data_in, data_out):
        (out / f"{name}.in").write_bytes(np.ascontiguousarray(data_in).tobytes())
        (out / f"{name}.out").write_bytes(np.ascontiguousarray(data_out).tobytes())
        index.append(f"{kind}\t{name}\t{qtype.name}\t{n}")

    for qtype in (T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q8_1,
                  T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_K):
        bs, _ = BLOCK[qtype]
        n_blocks = 4096 // bs if bs > 1 else 1024
        if qtype in (T.Q8_1, T.Q8_K):
            blocks = quantize(rng.normal(0, 1, n_blocks * bs).astype(np.float32), qtype)
        else:
            blocks = random_blocks(rng, qtype, n_blocks)
        case("dequant", f"random-{qtype.name}", qtype, n_blocks * bs, blocks, dequantize(blocks, qtype))

    for qtype in (T.F16, T.BF16, T.Q8_0, T.Q8_1, T.Q8_K):
        # Normal values, plus exact ties and zero blocks that expose rounding differences.
        x = rng.normal(0, 2, 8 * 256).astype(np.float32)
        x[:32] = np.arange(-16, 16, dtype=np.float32) * np.float32(127 / 16 / 2)
        x[256:512] = 0
        case("quantize", f"quantize-{qtype.name}", qtype, x.size, x, quantize(x, qtype))

    reader = GGUFReader(model)
    for t in reader.tensors:
        qtype = T(t.tensor_type)
        row = int(t.shape[0])
        bs, ts = BLOCK[qtype]
        rows = min(16, int(t.n_elements) // row)
        raw = np.asarray(t.data).reshape(-1).view(np.uint8)[: rows * row // bs * ts]
        case("dequant", f"model-{t.name}", qtype, rows * row, raw, dequantize(raw.copy(), qtype))

    (out / "index.tsv").write_text("\n".join(index) + "\n")
    print(f"{len(index)} cases in {out}")


if __name__ == "__main__":
    main()
