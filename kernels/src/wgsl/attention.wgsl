// Attention of the step's queries over the paged KV cache (after kv_pages.wgsl).

@group(0) @binding(4) var<storage, read> q: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
var<workgroup> q_head: array<f32, 512>;
var<workgroup> weights: array<f32, WG>;
var<workgroup> reduce: array<f32, WG>;

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
    for (var d = lid; d < p.head_dim; d += WG) {
        q_head[d] = q[q0 + d];
    }
    workgroupBarrier();
    var running_max = -3.0e38;
    var total = 0.0;
    var acc0 = 0.0; // output values lid and lid + WG (head_dim ≤ 512)
    var acc1 = 0.0;
    for (var start = first; start <= pos; start += WG) {
        let j = start + lid;
        var s = -3.0e38;
        if (j <= pos) {
            let row = key_row(tok.y, j) + g * p.head_dim / 2u;
            var dot_qk = 0.0;
            for (var d = 0u; d < p.head_dim / 2u; d++) {
                let k2 = unpack2x16float(kv[row + d]);
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
            let vrow = key_row(tok.y, start + i) + value_offset() + g * p.head_dim / 2u;
            if (lid < p.head_dim) {
                acc0 += weights[i] * unpack2x16float(kv[vrow + lid / 2u])[lid % 2u];
            }
            if (lid + WG < p.head_dim) {
                acc1 += weights[i] * unpack2x16float(kv[vrow + (lid + WG) / 2u])[lid % 2u];
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
