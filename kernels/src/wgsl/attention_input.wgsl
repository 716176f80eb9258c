// Readies the step's new queries and keys for attention and stores keys and values (after
// kv_pages.wgsl): per (token, head), the head's RMS norm (where the model has per-head norms:
// `head_norm` reads them, query heads' then key heads'), its rotation to the token's position
// (NeoX pairs: value i with i + half, from a table of cos and sin made on the CPU, where sin and
// cos of large angles are exact), then the query written back, or the key and the value rows
// written into the token's KV slot as f16.

@group(0) @binding(4) var<storage, read_write> q: array<f32>;
@group(0) @binding(5) var<storage, read> k: array<f32>;
@group(0) @binding(6) var<storage, read> v: array<f32>;
// (n, half) cos and sin pairs, already times the magnitude scale.
@group(0) @binding(7) var<storage, read> cos_sin: array<vec2<f32>>;

var<workgroup> head: array<f32, 512>;
var<workgroup> sums: array<f32, 256>;

@compute @workgroup_size(256)
fn attention_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wg.x;
    let is_query = wg.y < p.q_heads;
    let h = select(wg.y - p.q_heads, wg.y, is_query);
    let hd = p.head_dim;
    let half = hd / 2u;
    let base = select((t * p.kv_heads + h) * hd, (t * p.q_heads + h) * hd, is_query);
    var s = 0.0;
    for (var d = lid; d < hd; d += 256u) {
        let value = select(k[base + d], q[base + d], is_query);
        head[d] = value;
        s += value * value;
    }
    sums[lid] = s;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step /= 2u) {
        if (lid < step) {
            sums[lid] += sums[lid + step];
        }
        workgroupBarrier();
    }
    let scale = select(1.0, inverseSqrt(sums[0] / f32(hd) + p.eps), HEAD_NORMS);
    var rotated: array<vec2<f32>, 2>; // pairs (f, f + half) of this invocation, f = lid, lid + 256
    for (var j = 0u; j < 2u; j++) {
        let f = lid + 256u * j;
        if (f < half) {
            let norm_at = select(hd, 0u, is_query);
            let a = head[f] * scale * head_norm(norm_at + f);
            let b = head[f + half] * scale * head_norm(norm_at + f + half);
            let cs = cos_sin[t * half + f];
            rotated[j] = vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
        }
    }
    workgroupBarrier();
    for (var j = 0u; j < 2u; j++) {
        let f = lid + 256u * j;
        if (f < half) {
            head[f] = rotated[j].x;
            head[f + half] = rotated[j].y;
        }
    }
    workgroupBarrier();
    if (is_query) {
        for (var d = lid; d < hd; d += 256u) {
            q[base + d] = head[d];
        }
        return;
    }
    let tok = tokens[t];
    let row = key_row(tok.y, tok.x) + h * hd / 2u;
    for (var i = lid; i < hd / 2u; i += 256u) {
        kv[row + i] = pack2x16float(vec2<f32>(head[2u * i], head[2u * i + 1u]));
        kv[row + value_offset() + i] = pack2x16float(vec2<f32>(v[base + 2u * i], v[base + 2u * i + 1u]));
    }
}
