// Attention of the step's queries over the paged KV cache (after kv_pages.wgsl, and what
// wgsl.rs writes before it: FUSED, the bindings of q and out, and `ready`).
//
// FUSED (a decode step: one new token per sequence): `ready` does what attention_input does for
// the token's own query, key and value (head_input.wgsl), keeps the key and value as they are
// stored (f16) for its own position, and the group's first query head stores them. No other
// workgroup reads that position, so one dispatch a layer does both (the results are the same
// bits as attention_input's then attend's). Otherwise `ready` copies the query attention_input
// readied.

const WG: u32 = 256u;
var<workgroup> q_head: array<f32, 512>;
var<workgroup> weights: array<f32, WG>;
var<workgroup> reduce: array<f32, WG>;
// FUSED: the token's own key and value head, encoded as the cache keeps them.
var<workgroup> own_key: array<u32, 256>;
var<workgroup> own_value: array<u32, 256>;

// Pair `d` of the key head at word `start` of the cache; from own_key at the token's own position.
fn key_pair(start: u32, d: u32, own: bool) -> vec2<f32> {
    let at = pair_words(d);
    if (FUSED && own) {
        return decode_pair(d, vec2<u32>(own_key[at.x], own_key[at.y]));
    }
    return decode_pair(d, vec2<u32>(kv[start + at.x], kv[start + at.y]));
}

fn value_pair(start: u32, d: u32, own: bool) -> vec2<f32> {
    let at = pair_words(d);
    if (FUSED && own) {
        return decode_pair(d, vec2<u32>(own_value[at.x], own_value[at.y]));
    }
    return decode_pair(d, vec2<u32>(kv[start + at.x], kv[start + at.y]));
}

// A reduction over the workgroup: the maximum (max_not_sum) or the sum of `v`.
fn workgroup_reduce(lid: u32, v: f32, max_not_sum: bool) -> f32 {
    reduce[lid] = v;
    workgroupBarrier();
    for (var step = WG / 2u; step > 0u; step /= 2u) {
        if (lid < step) {
            reduce[lid] = select(reduce[lid] + reduce[lid + step], max(reduce[lid], reduce[lid + step]), max_not_sum);
        }
        workgroupBarrier();
    }
    let r = reduce[0];
    workgroupBarrier();
    return r;
}

// One workgroup per (token, query head): softmax(q·Kᵀ·scale)·V over the positions the token
// sees, WG positions at a time with a running maximum (online softmax). Invocation j scores
// position j of a run; invocation d accumulates value d of the output.
@compute @workgroup_size(256)
fn attend(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wg.x;
    let h = wg.y;
    let g = h / (p.q_heads / p.kv_heads); // its KV head
    let tok = tokens[t];
    let pos = tok.x;
    var first = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        first = pos + 1u - p.window;
    }
    let q0 = (t * p.q_heads + h) * p.head_dim;
    ready(t, h, g, q0, lid);
    var running_max = -3.0e38;
    var total = 0.0;
    var acc0 = 0.0; // output values lid and lid + WG (head_dim ≤ 512)
    var acc1 = 0.0;
    for (var start = first; start <= pos; start += WG) {
        let j = start + lid;
        var s = -3.0e38;
        if (j <= pos) {
            let row = key_row(tok.y, j) + g * head_words();
            var dot_qk = 0.0;
            for (var d = 0u; d < p.head_dim / 2u; d++) {
                let k2 = key_pair(row, d, j == pos);
                dot_qk += q_head[2u * d] * k2.x + q_head[2u * d + 1u] * k2.y;
            }
            s = dot_qk * p.scale;
        }
        let new_max = max(running_max, workgroup_reduce(lid, s, true));
        let e = select(0.0, exp(s - new_max), j <= pos);
        let rescale = exp(running_max - new_max);
        total = total * rescale + workgroup_reduce(lid, e, false);
        weights[lid] = e;
        workgroupBarrier();
        acc0 *= rescale;
        acc1 *= rescale;
        let count = min(WG, pos + 1u - start);
        for (var i = 0u; i < count; i++) {
            let vrow = key_row(tok.y, start + i) + value_offset() + g * head_words();
            let own = start + i == pos;
            if (lid < p.head_dim) {
                acc0 += weights[i] * value_pair(vrow, lid / 2u, own)[lid % 2u];
            }
            if (lid + WG < p.head_dim) {
                acc1 += weights[i] * value_pair(vrow, (lid + WG) / 2u, own)[lid % 2u];
            }
        }
        running_max = new_max;
        workgroupBarrier();
    }
    if (lid < p.head_dim) {
        out[q0 + lid] = acc0 / total;
    }
    if (lid + WG < p.head_dim) {
        out[q0 + lid + WG] = acc1 / total;
    }
}
