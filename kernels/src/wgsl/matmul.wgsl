// y (n, rows) = x (n, cols) · wᵀ for a weight matrix in any format (its `dequant`, included
// before this, turns 32 values of a row into f32). Decode (n = 1) and prompts alike: a
// workgroup takes 8 rows and up to 8 tokens; each of a row's 32 lanes walks every 32nd chunk of
// 32 values, dequantises it once and multiplies it into all the tokens' sums, which the lanes
// then add up in workgroup memory. A matrix split into row slices (larger than one binding may
// be) runs once per slice, `row0` placing its rows in y.
//
// Variants, from what wgsl.rs writes before this file:
//   NORMED   x is used as RMSNorm(x)·norm (the block's input norm, computed here per token);
//            `norm_weight` reads the norm (binding 4), or is 1 without one.
//   `store`  one output (y0, with the slice's place in it), or w is several matrices stacked
//            (Q, K, V) whose rows go to y0, y1, y2 split at seg1 and seg2, each (n, its rows).
//   GEGLU    w is [gate; up] stacked (2·rows rows): y0 = gelu(x·gateᵀ) · (x·upᵀ).
//   RESIDUAL (with NORMED) the residual connection before this block, folded in: the input
//            is x_in + RMSNorm(y_res)·post_norm (POST_NORM; x_in + y_res without), made by
//            every workgroup as it reads it (`input`) and written to x by the first column
//            of workgroups for the blocks after this one. Saves a dispatch a block.

struct Params {
    rows: u32,      // rows of this slice (GEGLU: of the gate half)
    cols: u32,
    n: u32,         // tokens
    row_bytes: u32,
    row0: u32,      // the slice's first row in the whole matrix
    y_stride: u32,  // rows of the whole matrix (y0's row length, one output)
    eps: f32,
    seg1: u32,
    seg2: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read_write> y0: array<f32>;

const LANES: u32 = 32u;
const TOKENS: u32 = 8u;

var<workgroup> partial: array<f32, 256>;
// Per token of the tile, the same in every invocation: 1 / rms of the input, and with RESIDUAL
// and POST_NORM 1 / rms of y_res (read by `input`).
var<private> inv_rms: array<f32, TOKENS>;
var<private> post_rms: array<f32, TOKENS>;

// 1 / rms of each token of the tile's input, by all 256 invocations; with RESIDUAL, first that
// of y_res, and the first column of workgroups keeps the input it makes in x.
fn token_scales(t0: u32, tokens: u32, lid: u32, store_input: bool) {
    let quads = p.cols / 4u;
    for (var t = 0u; t < tokens; t++) {
        if (RESIDUAL && POST_NORM) {
            var s = 0.0;
            for (var i = lid; i < quads; i += 256u) {
                let v = residual_input((t0 + t) * quads + i);
                s += dot(v, v);
            }
            post_rms[t] = inverseSqrt(workgroup_sum(lid, s) / f32(p.cols) + p.eps);
        }
        var s = 0.0;
        for (var i = lid; i < quads; i += 256u) {
            let v = input(t, (t0 + t) * quads + i);
            s += dot(v, v);
            if (store_input) {
                keep_input((t0 + t) * quads + i, v);
            }
        }
        inv_rms[t] = inverseSqrt(workgroup_sum(lid, s) / f32(p.cols) + p.eps);
    }
}

// Σ over row `row`'s chunks of this lane, for each token: acc[t].
fn row_sums(row: u32, lane: u32, t0: u32, tokens: u32) -> array<f32, 8> {
    var acc: array<f32, 8>;
    let chunks = p.cols / 32u;
    for (var c = lane; c < chunks; c += LANES) {
        var v = dequant(row, c);
        if (NORMED) {
            for (var i = 0u; i < 8u; i++) {
                v[i] *= norm_weight(c * 8u + i);
            }
        }
        for (var t = 0u; t < tokens; t++) {
            let xo = ((t0 + t) * p.cols + c * 32u) / 4u;
            var s = 0.0;
            for (var i = 0u; i < 8u; i++) {
                s += dot(v[i], input(t, xo + i));
            }
            acc[t] += s;
        }
    }
    return acc;
}

// Adds `v` over the 32 lanes of this invocation's row; lane 0 gets the total.
fn lanes_total(lid: u32, lane: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var step = LANES / 2u; step > 0u; step /= 2u) {
        if (lane < step) {
            partial[lid] += partial[lid + step];
        }
        workgroupBarrier();
    }
    let total = partial[lid];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wg.x * 8u + lid / LANES;
    let lane = lid % LANES;
    let t0 = wg.y * TOKENS;
    let tokens = min(TOKENS, p.n - t0);
    if (NORMED) {
        token_scales(t0, tokens, lid, wg.x == 0u);
    }
    var acc: array<f32, 8>;
    var up: array<f32, 8>;
    if (r < p.rows) {
        acc = row_sums(r * p.row_bytes, lane, t0, tokens);
        if (GEGLU) {
            up = row_sums((r + p.rows) * p.row_bytes, lane, t0, tokens);
        }
    }
    for (var t = 0u; t < tokens; t++) {
        var value = lanes_total(lid, lane, acc[t]);
        if (NORMED) {
            value *= inv_rms[t];
        }
        if (GEGLU) {
            var u = lanes_total(lid, lane, up[t]);
            if (NORMED) {
                u *= inv_rms[t];
            }
            value = gelu(value) * u;
        }
        if (lane == 0u && r < p.rows) {
            store(t0 + t, r, value);
        }
    }
}
